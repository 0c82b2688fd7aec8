//! A steady load for tests that change things under traffic (hot swaps, DNS changes, killed
//! endpoints): concurrent request loops, each on its own keep-alive connection, counting
//! successes (200) and printing and counting every failure.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::task::JoinHandle;

use crate::Client;

pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    workers: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts `workers` loops of GET `url` with `headers`.
    pub fn start(url: &str, workers: usize, headers: &[(&str, &str)]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let workers = (0..workers)
            .map(|_| {
                let (url, stop, ok, failed, headers) = (
                    url.to_owned(),
                    Arc::clone(&stop),
                    Arc::clone(&ok),
                    Arc::clone(&failed),
                    headers.clone(),
                );
                tokio::spawn(async move {
                    let client = Client::http1();
                    let headers: Vec<(&str, &str)> = headers
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    while !stop.load(Ordering::Relaxed) {
                        match client.get_with(&url, &headers).await {
                            Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                            Ok(r) => {
                                eprintln!("client-visible failure: {} {}", r.status, r.body);
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                            Err(e) => {
                                eprintln!("client-visible failure: {e}");
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            workers,
        }
    }

    /// Successful requests so far.
    pub fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Stops the loops and returns (succeeded, failed).
    pub async fn stop(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            let _ = w.await;
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}
