//! A value built from files (a TLS config from certificate and key files) that is rebuilt when the
//! files change, as App Mesh's file and SDS rotation expects. Connections already made keep the
//! config they were made with; new handshakes use the new one. A rebuild that fails (a key and a
//! certificate caught mid-rotation) keeps the old value and tries again on the next change.
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use super::TlsError;

/// How often the files are checked.
const POLL: Duration = Duration::from_secs(1);

type Build<T> = Box<dyn Fn() -> Result<T, TlsError> + Send + Sync>;

pub struct Reloadable<T> {
    current: ArcSwap<T>,
    files: Vec<PathBuf>,
    build: Build<T>,
    what: String,
}

/// A file's identity for change detection: modification time and length.
fn stamp(path: &PathBuf) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl<T: Send + Sync + 'static> Reloadable<T> {
    /// Builds the value now (an error here is a config error) and watches `files` for changes.
    pub fn new(what: String, files: Vec<PathBuf>, build: Build<T>) -> Result<Arc<Self>, TlsError> {
        let first = build()?;
        let me = Arc::new(Reloadable {
            current: ArcSwap::from_pointee(first),
            files,
            build,
            what,
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(watch(Arc::downgrade(&me)));
        }
        Ok(me)
    }

    pub fn load(&self) -> Arc<T> {
        self.current.load_full()
    }

    fn stamps(&self) -> Vec<Option<(SystemTime, u64)>> {
        self.files.iter().map(stamp).collect()
    }

    fn rebuild(&self) {
        match (self.build)() {
            Ok(v) => {
                self.current.store(Arc::new(v));
                tracing::info!(what = %self.what, "reloaded TLS files");
            }
            Err(e) => {
                tracing::error!(what = %self.what, "cannot reload TLS files, keeping the previous ones: {e}")
            }
        }
    }
}

async fn watch<T: Send + Sync + 'static>(me: Weak<Reloadable<T>>) {
    let mut seen = match me.upgrade() {
        Some(m) => m.stamps(),
        None => return,
    };
    loop {
        tokio::time::sleep(POLL).await;
        let Some(m) = me.upgrade() else { return };
        let now = m.stamps();
        if now != seen {
            // Let a rotation that writes several files finish before reading them.
            tokio::time::sleep(Duration::from_millis(100)).await;
            seen = m.stamps();
            m.rebuild();
        }
    }
}
