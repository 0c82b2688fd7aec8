//! Following the resource directory: each change is read whole, parsed and validated; a valid
//! set replaces the model, an invalid one is rejected whole (logged with every problem) and the
//! last valid model keeps being served.
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::watch;

use crate::model::{Model, Problems};

/// What the store serves.
#[derive(Clone, Debug, Default)]
pub struct StoreState {
    /// The last valid model; `None` until one was loaded.
    pub model: Option<Arc<Model>>,
    /// Increments each time a different valid model is accepted.
    pub generation: u64,
    /// Why the latest change was rejected (cleared when a valid one is accepted).
    pub last_error: Option<String>,
    pub loaded_at: Option<SystemTime>,
    pub files: usize,
}

pub struct Store {
    pub dir: PathBuf,
    tx: watch::Sender<Arc<StoreState>>,
    last_hash: Mutex<Option<u64>>,
    /// Held for a whole reload, so that a reload which returns has published what it read: the
    /// API reloads right after writing a file, while the watcher may be reloading the same change.
    reloading: Mutex<()>,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
}

/// How a reload went.
#[derive(Debug)]
pub enum Reload {
    /// The files did not change since the last reload.
    Unchanged,
    /// A new valid model is served.
    Accepted {
        resources: usize,
    },
    /// The files changed but say nothing new (same model).
    Same,
    Rejected(Problems),
}

impl Store {
    pub fn new(dir: PathBuf) -> Arc<Store> {
        let (tx, _) = watch::channel(Arc::new(StoreState::default()));
        Arc::new(Store {
            dir,
            tx,
            last_hash: Mutex::new(None),
            reloading: Mutex::new(()),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        })
    }

    pub fn current(&self) -> Arc<StoreState> {
        self.tx.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<StoreState>> {
        self.tx.subscribe()
    }

    /// Reads the directory again; a valid, different model replaces the current one.
    pub fn reload(&self) -> Reload {
        let _reloading = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let files = match super::read_files(&self.dir) {
            Ok(f) => f,
            Err(p) => return self.reject(p, None),
        };
        let mut h = DefaultHasher::new();
        files.hash(&mut h);
        let hash = h.finish();
        {
            let mut last = self.last_hash.lock().unwrap_or_else(|e| e.into_inner());
            if *last == Some(hash) {
                return Reload::Unchanged;
            }
            *last = Some(hash);
        }
        match super::load_files(&files) {
            Err(p) => self.reject(p, Some(files.len())),
            Ok(model) => {
                self.accepted.fetch_add(1, Ordering::Relaxed);
                let resources = model.len();
                let current = self.current();
                if current.model.as_deref() == Some(&model) {
                    self.tx.send_modify(|s| {
                        let mut n = (**s).clone();
                        n.last_error = None;
                        *s = Arc::new(n);
                    });
                    return Reload::Same;
                }
                let next = StoreState {
                    model: Some(Arc::new(model)),
                    generation: current.generation + 1,
                    last_error: None,
                    loaded_at: Some(SystemTime::now()),
                    files: files.len(),
                };
                self.tx.send_replace(Arc::new(next));
                Reload::Accepted { resources }
            }
        }
    }

    fn reject(&self, problems: Problems, _files: Option<usize>) -> Reload {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        let text = problems.to_string();
        self.tx.send_modify(|s| {
            let mut n = (**s).clone();
            n.last_error = Some(text);
            *s = Arc::new(n);
        });
        Reload::Rejected(problems)
    }

    /// Reloads and logs the outcome.
    pub fn reload_and_log(&self) {
        match self.reload() {
            Reload::Unchanged | Reload::Same => {}
            Reload::Accepted { resources } => {
                let g = self.current().generation;
                tracing::info!(dir = %self.dir.display(), resources, generation = g, "resources loaded");
            }
            Reload::Rejected(p) => {
                let serving = self.current();
                let keep = if serving.model.is_some() {
                    format!("still serving generation {}", serving.generation)
                } else {
                    "no valid resources yet: serving nothing".to_owned()
                };
                tracing::error!(
                    "rejected the resources in {} ({} problem(s)); {keep}:\n{p}",
                    self.dir.display(),
                    p.0.len()
                );
            }
        }
    }
}

/// Whether `event` may have changed the resources. Reading a file is not a change: inotify
/// reports opening it, and counting that made every reload's own reads start the next one, 20 ms
/// later, for as long as the agent ran.
fn may_change(event: &notify::Event) -> bool {
    event.need_rescan()
        || !matches!(event.kind, EventKind::Access(kind)
            if kind != AccessKind::Close(AccessMode::Write))
}

/// Follows the directory (recursively; editors' renames and ConfigMap symlink swaps alike) and
/// reloads on every change, debounced; also re-reads it every `poll` as a safety net. Stops when
/// the returned watcher is dropped.
pub fn spawn_watcher(
    store: Arc<Store>,
    poll: Duration,
) -> notify::Result<notify::RecommendedWatcher> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| may_change(&e)) {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&store.dir, RecursiveMode::Recursive)?;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                ev = rx.recv() => {
                    if ev.is_none() {
                        break;
                    }
                    // Let a burst of events (write, close, rename) settle.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    while rx.try_recv().is_ok() {}
                }
                _ = tick.tick() => {}
            }
            let s = Arc::clone(&store);
            let _ = tokio::task::spawn_blocking(move || s.reload_and_log()).await;
        }
    });
    Ok(watcher)
}
