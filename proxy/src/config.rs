//! Loading a routing table from a file, and following the file as it changes.
//!
//! A table that fails to read, parse, validate or bind is rejected whole: the error names the file,
//! line and field path, `ferry_config_rejected_total` counts it, and the previous table serves on.
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_api::{DecodeError, Format, v1};
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};

use crate::server::{ApplyError, Proxy};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(#[from] DecodeError),
}

/// A file's table, as applied.
pub struct Applied {
    /// The version now served.
    pub version: String,
    /// The hash of the text applied: [`watch`] applies the file again only when it differs.
    text_hash: u64,
}

/// Reads, decodes and applies `path`.
pub async fn apply_file(proxy: &Proxy, path: &Path) -> Result<Applied, LoadError> {
    let (name, text) = read(path).await?;
    let version = apply_text(proxy, &name, &text, Format::from_path(path)).await?;
    Ok(Applied {
        version,
        text_hash: content_hash(&text),
    })
}

/// Reads, decodes and compiles `path` without applying it (`--validate`).
pub async fn check_file(proxy: &Proxy, path: &Path) -> Result<String, LoadError> {
    let (name, text) = read(path).await?;
    let table = decode(&name, &text, Format::from_path(path))?;
    proxy.check(table).map_err(|e| located(&name, &text, &e))
}

/// Decodes and applies `text` (named `name` in errors).
pub async fn apply_text(
    proxy: &Proxy,
    name: &str,
    text: &str,
    format: Format,
) -> Result<String, LoadError> {
    // Decoding a large table (a 10,000-route YAML file is ~2 MB) takes tens of milliseconds: it
    // runs on the blocking pool, off the thread that serves connections.
    let (owned, label) = (text.to_owned(), name.to_owned());
    let table = tokio::task::spawn_blocking(move || decode(&label, &owned, format))
        .await
        .map_err(|e| DecodeError::at(name, text, "", format!("the decoder failed: {e}")))??;
    proxy
        .apply(table)
        .await
        .map_err(|e| located(name, text, &e))
}

/// The file's name as errors give it, and its text.
async fn read(path: &Path) -> Result<(String, String), LoadError> {
    let name = path.display().to_string();
    match tokio::fs::read_to_string(path).await {
        Ok(text) => Ok((name, text)),
        Err(source) => Err(LoadError::Read { path: name, source }),
    }
}

fn decode(name: &str, text: &str, format: Format) -> Result<v1::RoutingTable, LoadError> {
    if text.trim().is_empty() {
        // Almost always a file caught mid-write; an empty table would answer 404 to everything.
        return Err(DecodeError::at(name, text, "", "the file is empty").into());
    }
    Ok(ferry_api::decode(text, format, name)?)
}

/// A table the proxy refused, pointed at the line of `text` its field path names.
fn located(name: &str, text: &str, e: &ApplyError) -> LoadError {
    DecodeError::at(name, text, &e.field_path(), e.message()).into()
}

fn content_hash(text: &str) -> u64 {
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// Whether `event`, seen in the config file's directory, may have changed the file named
/// `file_name`.
///
/// Reading the file is not a change: inotify reports opening it, and counting that made the
/// watcher's own read wake it again, re-reading the file every 50 ms for as long as it ran. Nor is
/// a write to another file of the directory (a log, an editor's swap file). A Kubernetes ConfigMap
/// swap renames `..data`, a sibling of the file, so names starting with `..` count.
fn may_change(event: &notify::Event, file_name: &std::ffi::OsStr) -> bool {
    if event.need_rescan() {
        return true;
    }
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
        EventKind::Access(_) => return false,
        _ => {}
    }
    event.paths.iter().any(|p| {
        p.file_name()
            .is_some_and(|name| name == file_name || name.as_encoded_bytes().starts_with(b".."))
    })
}

/// Watches `path` and applies each new version of it. The watcher stops when the returned handle
/// is dropped.
///
/// The file's directory is watched rather than the file, so that editors that write a new file and
/// rename it over the old one, and Kubernetes ConfigMap symlink swaps, are both seen. Events are
/// debounced, and content already seen (applied or rejected) is not applied twice.
///
/// `applied` is what [`apply_file`] loaded: the file is checked once more as soon as the watch is
/// in place, so that a write between that load and the watch is not lost.
pub fn watch(
    proxy: Arc<Proxy>,
    path: PathBuf,
    applied: &Applied,
) -> anyhow::Result<notify::RecommendedWatcher> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let recheck = tx.clone();
    let file_name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| may_change(&e, &file_name)) {
            let _ = tx.send(());
        }
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    let _ = recheck.send(());
    let initial = applied.text_hash;
    tokio::spawn(async move {
        let mut last_seen = initial;
        while rx.recv().await.is_some() {
            // Let a burst of events (truncate, write, close, rename) settle.
            tokio::time::sleep(Duration::from_millis(50)).await;
            while rx.try_recv().is_ok() {}
            let text = match tokio::fs::read_to_string(&path).await {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    tracing::warn!(file = %path.display(), "cannot read the config file: {e}");
                    continue;
                }
            };
            let hash = content_hash(&text);
            if hash == last_seen {
                continue;
            }
            last_seen = hash;
            let name = path.display().to_string();
            let format = Format::from_path(&path);
            let applied = apply_text(&proxy, &name, &text, format).await;
            match applied {
                Ok(version) => {
                    tracing::info!(file = %name, %version, "applied the new routing table")
                }
                Err(e) => {
                    proxy.metrics.config_rejected.inc();
                    let serving = proxy
                        .current()
                        .map(|t| t.version.clone())
                        .unwrap_or_default();
                    tracing::error!("rejected {e}; still serving version {serving}");
                }
            }
        }
    });
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use notify::event::{CreateKind, ModifyKind, RenameMode};
    use notify::{Event, EventKind};

    use super::*;

    fn event(kind: EventKind, paths: &[&str]) -> Event {
        paths
            .iter()
            .fold(Event::new(kind), |e, p| e.add_path(PathBuf::from(p)))
    }

    #[test]
    fn only_changes_to_the_file_or_a_configmap_swap_count() {
        let name = std::ffi::OsStr::new("table.yaml");
        let modify = EventKind::Modify(ModifyKind::Any);
        let renamed = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        let created = EventKind::Create(CreateKind::File);
        let closed_written = EventKind::Access(AccessKind::Close(AccessMode::Write));
        for (kind, paths) in [
            (modify, &["/etc/ferry/table.yaml"][..]),
            (renamed, &["/etc/ferry/.table.tmp", "/etc/ferry/table.yaml"]),
            (created, &["/etc/ferry/table.yaml"]),
            (closed_written, &["/etc/ferry/table.yaml"]),
            (renamed, &["/etc/ferry/..data"]),
        ] {
            assert!(may_change(&event(kind, paths), name), "{kind:?} {paths:?}");
        }
        let opened = EventKind::Access(AccessKind::Open(AccessMode::Any));
        let closed_read = EventKind::Access(AccessKind::Close(AccessMode::Read));
        for (kind, paths) in [
            (opened, &["/etc/ferry/table.yaml"][..]),
            (closed_read, &["/etc/ferry/table.yaml"]),
            (modify, &["/etc/ferry/proxy.log"]),
            (renamed, &["/etc/ferry/.table.tmp"]),
        ] {
            assert!(!may_change(&event(kind, paths), name), "{kind:?} {paths:?}");
        }
        let overflow = Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan);
        assert!(
            may_change(&overflow, name),
            "a lost event may have been a change"
        );
    }
}
