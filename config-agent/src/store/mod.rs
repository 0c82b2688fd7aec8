//! The resource store: reads a directory of App Mesh resource files into a validated [`Model`],
//! and keeps the last valid model while it follows the directory's changes (see [`watch`]).
mod watch;

use std::path::{Path, PathBuf};

pub use watch::{Store, StoreState, spawn_watcher};

use crate::model::{Model, Problem, Problems, parse_text};

/// Resource files under `dir`: `*.yaml`, `*.yml`, `*.json`, recursively, sorted by path. Entries
/// whose names start with '.' are skipped: editors' temporary files, and the `..data` directories
/// of a Kubernetes ConfigMap mount (whose files are also reachable by their plain names).
pub fn resource_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    walk(dir, &mut out, 0)?;
    out.sort();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) -> std::io::Result<()> {
    if depth > 16 {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        // Follows symlinks, as a ConfigMap's files are symlinks.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            walk(&path, out, depth + 1)?;
        } else if meta.is_file()
            && path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "yaml" | "yml" | "json"))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// The files' contents, for change detection: (path, text) sorted by path.
pub fn read_files(dir: &Path) -> Result<Vec<(String, String)>, Problems> {
    let files = resource_files(dir).map_err(|e| {
        Problems(vec![Problem {
            file: dir.display().to_string(),
            position: None,
            subject: None,
            field: String::new(),
            message: format!("cannot read the resource directory: {e}"),
        }])
    })?;
    let mut out = Vec::with_capacity(files.len());
    let mut problems = Vec::new();
    for f in files {
        let name = f.display().to_string();
        match std::fs::read_to_string(&f) {
            Ok(text) => out.push((name, text)),
            Err(e) => problems.push(Problem {
                file: name,
                position: None,
                subject: None,
                field: String::new(),
                message: format!("cannot read: {e}"),
            }),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(Problems(problems))
    }
}

/// Parses and gathers the given files, without validating them.
pub fn parse_files(files: &[(String, String)]) -> Result<Model, Problems> {
    let mut resources = Vec::new();
    let mut problems = Vec::new();
    for (name, text) in files {
        let json = name.to_ascii_lowercase().ends_with(".json");
        match parse_text(name, text, json) {
            Ok(r) => resources.extend(r),
            Err(p) => problems.extend(p),
        }
    }
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    Model::build(resources)
}

/// Parses, gathers and validates the given files.
pub fn load_files(files: &[(String, String)]) -> Result<Model, Problems> {
    let model = parse_files(files)?;
    crate::validate::validate(&model)?;
    Ok(model)
}

/// Reads, parses and validates every resource file under `dir`.
pub fn load_dir(dir: &Path) -> Result<Model, Problems> {
    load_files(&read_files(dir)?)
}
