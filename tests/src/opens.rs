//! Counts the opens of files in a directory (inotify), to show that a process leaves files it
//! watches alone while nobody changes them.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use notify::event::{AccessKind, EventKind};
use notify::{RecursiveMode, Watcher};

pub struct FileOpens {
    count: Arc<AtomicUsize>,
    _watcher: notify::RecommendedWatcher,
}

impl FileOpens {
    /// Counts opens of files under `dir` (recursively), or only of `file` when given. The
    /// directory is watched, not the file, so that a file replaced by a rename is still followed.
    pub fn watch(dir: &Path, file: Option<PathBuf>) -> FileOpens {
        let count = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&count);
        let mut watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
            let Ok(e) = e else { return };
            let opened = matches!(e.kind, EventKind::Access(AccessKind::Open(_)));
            if opened && file.as_ref().is_none_or(|f| e.paths.contains(f)) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        })
        .expect("watcher");
        watcher
            .watch(dir, RecursiveMode::Recursive)
            .expect("watch the directory");
        FileOpens {
            count,
            _watcher: watcher,
        }
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}
