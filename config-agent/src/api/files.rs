//! Writing resources back to the resource directory, the single source of truth.
//!
//! A resource the API creates gets its own file, laid out like the API's paths:
//! ```text
//! DIR/MESH/mesh.json
//! DIR/MESH/virtualNodes/NAME.json           (virtualRouters, virtualServices, virtualGateways alike)
//! DIR/MESH/virtualRouters/ROUTER/routes/NAME.json
//! DIR/MESH/virtualGateways/GATEWAY/gatewayRoutes/NAME.json
//! ```
//! A resource that already lives in a file (hand-written, a dump, several per file) is changed
//! where it is: a JSON file is rewritten whole, a YAML file only in the document that holds the
//! resource (rewritten as JSON, which is YAML too); the other resources and documents stay as they
//! were. Every file is written atomically: a temporary file in the same directory (a dot file,
//! which the watcher skips), fsync, rename, fsync of the directory.
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::error::ApiError;
use super::resources::{Target, list_key, parse_doc, split_path};
use crate::model::{Kind, Origin, parse};

/// One change to the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOp {
    Write { path: String, text: String },
    Remove { path: String },
}

/// A file name part: `A-Za-z0-9-_.` kept, anything else (and a leading dot, which the watcher
/// would skip) as `%XX`.
fn segment(name: &str) -> String {
    let mut s = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && i > 0) {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// Where the API puts a new resource (before making the name unique).
pub fn layout_path(dir: &Path, t: &Target) -> PathBuf {
    let mesh = dir.join(segment(&t.mesh));
    match t.kind {
        Kind::Mesh => mesh.join("mesh.json"),
        Kind::Route => mesh
            .join(list_key(Kind::VirtualRouter))
            .join(segment(&t.parent))
            .join("routes")
            .join(format!("{}.json", segment(&t.name))),
        Kind::GatewayRoute => mesh
            .join(list_key(Kind::VirtualGateway))
            .join(segment(&t.parent))
            .join("gatewayRoutes")
            .join(format!("{}.json", segment(&t.name))),
        k => mesh
            .join(list_key(k))
            .join(format!("{}.json", segment(&t.name))),
    }
}

/// The file text of a new resource: describe output, `{"virtualNode": {...}}`.
pub fn new_file_text(kind: Kind, obj: Map<String, Value>) -> String {
    let mut wrapper = Map::new();
    wrapper.insert(kind.describe_key().to_owned(), Value::Object(obj));
    pretty(&Value::Object(wrapper))
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

/// `text` (the content of `origin.file`) with the resource at `origin` replaced by `replacement`
/// (describe output of `kind`), or removed when `None`. `None` as the result: nothing is left.
pub fn rewrite(
    text: &str,
    origin: &Origin,
    kind: Kind,
    replacement: Option<Map<String, Value>>,
) -> Result<Option<String>, ApiError> {
    let item = replacement.map(|obj| {
        let mut w = Map::new();
        w.insert(kind.describe_key().to_owned(), Value::Object(obj));
        Value::Object(w)
    });
    let (index, _) = split_path(&origin.json_path);
    let edit = |doc: Value| -> Result<Option<Value>, ApiError> {
        match (index, doc) {
            (None, _) => Ok(item.clone()),
            (Some(i), Value::Array(mut items)) if i < items.len() => {
                match &item {
                    Some(v) => items[i] = v.clone(),
                    None => {
                        items.remove(i);
                    }
                }
                Ok(if items.is_empty() {
                    None
                } else {
                    Some(Value::Array(items))
                })
            }
            _ => Err(ApiError::conflict(format!(
                "{} changed while it was being updated; retry",
                origin.file
            ))),
        }
    };
    let reparse = |t: &str| {
        parse_doc(&origin.file, t).map_err(|e| {
            ApiError::conflict(format!("{} cannot be read back: {e}; retry", origin.file))
        })
    };
    if origin.file.to_ascii_lowercase().ends_with(".json") {
        return Ok(edit(reparse(text)?)?.map(|v| pretty(&v)));
    }
    // YAML: only the document holding the resource changes.
    let docs = parse::yaml_documents(text);
    let mut out = String::new();
    let mut found = false;
    for (n, (start, doc)) in docs.into_iter().enumerate() {
        let doc = if start == origin.line_offset && !found {
            found = true;
            match edit(reparse(&doc)?)? {
                Some(v) => pretty(&v),
                None => continue,
            }
        } else {
            doc
        };
        if n > 0 && !out.is_empty() {
            out.push_str("---\n");
        }
        out.push_str(&doc);
    }
    if !found {
        return Err(ApiError::conflict(format!(
            "{} changed while it was being updated; retry",
            origin.file
        )));
    }
    // A file left with comments only is removed.
    let has_content = out
        .lines()
        .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#') && l.trim() != "---");
    Ok(has_content.then_some(out))
}

/// Applies `ops` to the in-memory file list (to validate the result before touching the disk).
pub fn apply_in_memory(files: &mut Vec<(String, String)>, ops: &[FileOp]) {
    for op in ops {
        match op {
            FileOp::Write { path, text } => match files.iter_mut().find(|(p, _)| p == path) {
                Some(f) => f.1 = text.clone(),
                None => files.push((path.clone(), text.clone())),
            },
            FileOp::Remove { path } => files.retain(|(p, _)| p != path),
        }
    }
    files.sort();
}

/// Applies `ops` to the disk, each write atomic; directories left empty by a removal under `root`
/// are removed too.
pub fn apply_on_disk(root: &Path, ops: &[FileOp]) -> std::io::Result<()> {
    for op in ops {
        match op {
            FileOp::Write { path, text } => write_atomic(Path::new(path), text.as_bytes())?,
            FileOp::Remove { path } => {
                let p = Path::new(path);
                std::fs::remove_file(p)?;
                let mut dir = p.parent();
                while let Some(d) = dir {
                    if d == root || !d.starts_with(root) || std::fs::remove_dir(d).is_err() {
                        break;
                    }
                    dir = d.parent();
                }
                if let Some(d) = p.parent() {
                    sync_dir(d);
                }
            }
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) {
    // Makes the rename durable; a file system that cannot fsync a directory still renamed.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `path` as a temporary file in its directory, fsynced, then renamed over it.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        fastrand::u32(..)
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn origin(file: &str, text: &str, line_offset: usize, json_path: &str) -> Origin {
        Origin {
            file: file.into(),
            doc_text: Arc::from(text),
            line_offset,
            json_path: json_path.into(),
        }
    }

    #[test]
    fn layout_and_names() {
        let t = Target {
            kind: Kind::Route,
            mesh: "m".into(),
            parent: "r".into(),
            name: ".x/y".into(),
        };
        assert_eq!(
            layout_path(Path::new("/d"), &t),
            Path::new("/d/m/virtualRouters/r/routes/%2Ex%2Fy.json")
        );
    }

    #[test]
    fn yaml_keeps_the_other_documents() {
        let text = "# nodes\nmeshName: m\nvirtualNodeName: a\nspec: {}\n---\nmeshName: m\nvirtualNodeName: b\nspec: {}\n";
        let second = "meshName: m\nvirtualNodeName: b\nspec: {}\n";
        let o = origin("f.yaml", second, 5, "");
        let out = rewrite(text, &o, Kind::VirtualNode, None).unwrap().unwrap();
        assert_eq!(out, "# nodes\nmeshName: m\nvirtualNodeName: a\nspec: {}\n");
        let mut obj = Map::new();
        obj.insert("meshName".into(), "m".into());
        let out = rewrite(text, &o, Kind::VirtualNode, Some(obj))
            .unwrap()
            .unwrap();
        assert!(
            out.starts_with("# nodes\nmeshName: m\nvirtualNodeName: a\nspec: {}\n---\n{\n"),
            "{out}"
        );
        let first = "# nodes\nmeshName: m\nvirtualNodeName: a\nspec: {}\n";
        let o = origin("f.yaml", first, 0, "");
        let out = rewrite(text, &o, Kind::VirtualNode, None).unwrap().unwrap();
        assert_eq!(out, second);
    }

    #[test]
    fn json_list_loses_one_item() {
        let text = r#"[{"mesh": {"meshName": "m"}}, {"virtualNode": {"meshName": "m", "virtualNodeName": "a", "spec": {}}}]"#;
        let o = origin("f.json", text, 0, "[1].virtualNode");
        let out = rewrite(text, &o, Kind::VirtualNode, None).unwrap().unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v, serde_json::json!([{"mesh": {"meshName": "m"}}]));
        let o = origin("f.json", &out, 0, "[0].mesh");
        assert_eq!(rewrite(&out, &o, Kind::Mesh, None).unwrap(), None);
    }
}
