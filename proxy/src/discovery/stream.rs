//! One resolution loop per name (and IP preference), shared by every cluster that follows the name.
//! The loop resolves, hands the addresses to its clusters, then sleeps for the answer's TTL clamped
//! to the refresh bounds. After a failure (NXDOMAIN, SERVFAIL, timeout) the clusters keep their last
//! good endpoints and the loop retries with a growing backoff.
//!
//! The loop holds its stream only weakly: the clusters own it (through their `Subscription`), so
//! when the last cluster that follows a name is dropped, the stream drops and aborts its loop.
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::DnsConfig;
use super::metrics::NameMetrics;
use super::resolve::{Answer, FailureKind, RESOLUTION_DEADLINE, ResolveError, resolve};
use super::settings::{IpPreference, NameSpec, Refresh, RefreshOverride, ResponseType};
use crate::cluster::Cluster;

/// What one resolution loop resolves.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub hostname: String,
    pub pref: IpPreference,
}

/// The outcome of the latest resolutions, read lock-free by `/clusters` and by the 503 path.
#[derive(Clone, Debug, Default)]
pub struct State {
    /// The last good answer; `None` until the name first resolves.
    pub addrs: Option<Vec<IpAddr>>,
    pub last_success: Option<Instant>,
    /// The error of the latest resolution, if it failed.
    pub last_error: Option<ResolveError>,
    pub consecutive_failures: u32,
}

/// A cluster that follows the name, and how it turns addresses into endpoints.
struct Subscriber {
    cluster: Weak<Cluster>,
    port: u16,
    response_type: ResponseType,
    refresh: RefreshOverride,
}

pub struct Stream {
    pub key: Key,
    config: ArcSwap<DnsConfig>,
    subscribers: Mutex<Vec<Subscriber>>,
    state: ArcSwap<State>,
    /// Wakes the loop early (the resolver settings changed).
    wake: Arc<Notify>,
    task: OnceLock<AbortHandle>,
    metrics: NameMetrics,
}

impl Stream {
    /// Creates the stream and starts its loop (on the current tokio runtime).
    pub fn start(key: Key, config: Arc<DnsConfig>, metrics: NameMetrics) -> Arc<Stream> {
        let stream = Arc::new(Stream {
            key,
            config: ArcSwap::new(config),
            subscribers: Mutex::new(Vec::new()),
            state: ArcSwap::from_pointee(State::default()),
            wake: Arc::new(Notify::new()),
            task: OnceLock::new(),
            metrics,
        });
        let task = tokio::spawn(run(Arc::downgrade(&stream), Arc::clone(&stream.wake)));
        let _ = stream.task.set(task.abort_handle());
        stream
    }

    pub fn state(&self) -> Arc<State> {
        self.state.load_full()
    }

    pub fn config(&self) -> Arc<DnsConfig> {
        self.config.load_full()
    }

    /// Switches to new resolver settings and re-resolves at once if they differ.
    pub fn set_config(&self, config: &Arc<DnsConfig>) {
        if !Arc::ptr_eq(&self.config.load(), config) {
            self.config.store(Arc::clone(config));
            self.wake.notify_one();
        }
    }

    /// Clusters following this name now.
    pub fn subscribers(&self) -> usize {
        self.lock()
            .iter()
            .filter(|s| s.cluster.strong_count() > 0)
            .count()
    }

    /// Adds a cluster, giving it the last good addresses at once if there are any.
    pub fn add(&self, cluster: &Arc<Cluster>, spec: &NameSpec) {
        let sub = Subscriber {
            cluster: Arc::downgrade(cluster),
            port: spec.port,
            response_type: spec.response_type,
            refresh: spec.refresh,
        };
        let mut subs = self.lock();
        if let Some(addrs) = &self.state.load().addrs {
            apply(&sub, cluster, addrs);
        }
        subs.push(sub);
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Subscriber>> {
        // Nothing panics while holding it; if something did, the list is still valid.
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a resolution's outcome, updates the clusters, and returns when to resolve next.
    fn record(
        &self,
        result: Result<Answer, ResolveError>,
        took: Duration,
        table: Refresh,
    ) -> Duration {
        let host = &self.key.hostname;
        let mut subs = self.lock();
        subs.retain(|s| s.cluster.strong_count() > 0);
        let bounds = bounds(&subs, table);
        let prev = self.state.load_full();
        self.metrics.resolutions.inc();
        match result {
            Ok(answer) => {
                for sub in subs.iter() {
                    if let Some(c) = sub.cluster.upgrade() {
                        apply(sub, &c, &answer.addrs);
                    }
                }
                self.state.store(Arc::new(State {
                    addrs: Some(answer.addrs.clone()),
                    last_success: Some(Instant::now()),
                    last_error: None,
                    consecutive_failures: 0,
                }));
                drop(subs);
                let next = bounds.clamp(answer.ttl);
                let addrs = list(&answer.addrs);
                let again = match prev.consecutive_failures {
                    0 => String::new(),
                    n => format!("; it resolves again after {n} failed attempts"),
                };
                match &prev.addrs {
                    None => tracing::info!(
                        hostname = %host, ip_preference = %self.key.pref,
                        "DNS: {host} resolved to {addrs} in {took:.0?} (ttl {:?}; next in {next:?}){again}",
                        answer.ttl
                    ),
                    // Compared as sets: a server that rotates its answers is not a change (a
                    // LOADBALANCER cluster still follows the new first address, see `apply`).
                    Some(old) if !same_set(old, &answer.addrs) => tracing::info!(
                        hostname = %host,
                        "DNS: {host} changed from {} to {addrs} (next in {next:?}){again}",
                        list(old)
                    ),
                    Some(_) if !again.is_empty() => tracing::info!(
                        hostname = %host,
                        "DNS: {host} resolves again after {} failed attempts: {addrs}",
                        prev.consecutive_failures
                    ),
                    Some(_) => {
                        tracing::debug!(hostname = %host, "DNS: {host} unchanged: {addrs} (next in {next:?})")
                    }
                }
                next
            }
            Err(e) => {
                self.metrics.failures.inc();
                let failures = prev.consecutive_failures.saturating_add(1);
                let retry = backoff(bounds, failures);
                self.state.store(Arc::new(State {
                    addrs: prev.addrs.clone(),
                    last_success: prev.last_success,
                    last_error: Some(e.clone()),
                    consecutive_failures: failures,
                }));
                drop(subs);
                match (&prev.addrs, prev.last_success) {
                    (Some(addrs), Some(at)) => tracing::warn!(
                        hostname = %host, failures,
                        "DNS: resolving {host} failed: {e}; keeping its last {} address(es) {} \
                         (resolved {:.0?} ago); retrying in {retry:.1?}",
                        addrs.len(), list(addrs), at.elapsed()
                    ),
                    _ => tracing::warn!(
                        hostname = %host, failures,
                        "DNS: resolving {host} failed: {e}; its clusters have no endpoint until it \
                         resolves; retrying in {retry:.1?}"
                    ),
                }
                retry
            }
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if let Some(task) = self.task.get() {
            task.abort();
        }
    }
}

async fn run(stream: Weak<Stream>, wake: Arc<Notify>) {
    loop {
        let Some(s) = stream.upgrade() else { return };
        let (config, key) = (s.config(), s.key.clone());
        // Not held across the query: the stream may go away meanwhile.
        drop(s);
        let started = Instant::now();
        let query = resolve(&config.resolver, &key.hostname, key.pref);
        let result = tokio::time::timeout(RESOLUTION_DEADLINE, query)
            .await
            .unwrap_or_else(|_| {
                Err(ResolveError {
                    kind: FailureKind::Timeout,
                    message: format!(
                        "resolving {} took longer than {RESOLUTION_DEADLINE:?}",
                        key.hostname
                    ),
                })
            });
        let Some(s) = stream.upgrade() else { return };
        let next = s.record(result, started.elapsed(), config.refresh);
        drop(s);
        tokio::select! {
            () = tokio::time::sleep(next) => {}
            () = wake.notified() => {}
        }
    }
}

/// The bounds a shared name is refreshed within: as often as its most demanding cluster asks.
fn bounds(subs: &[Subscriber], table: Refresh) -> Refresh {
    let mut it = subs.iter().map(|s| s.refresh.over(table));
    let Some(first) = it.next() else { return table };
    let (min, max) = it.fold((first.min, first.max), |(lo, hi), r| {
        (lo.min(r.min), hi.min(r.max))
    });
    Refresh {
        min: min.min(max),
        max,
    }
}

/// Retry delay after `failures` consecutive failures: the floor, doubling up to the ceiling, with
/// up to 10% jitter so that many names failing together do not retry in lockstep.
fn backoff(bounds: Refresh, failures: u32) -> Duration {
    let base = bounds.min.max(Duration::from_millis(100));
    let exp = failures.saturating_sub(1).min(16);
    let delay = base.saturating_mul(1 << exp).min(bounds.max.max(base));
    delay.mul_f64(1.0 + fastrand::f64() * 0.1)
}

/// Turns addresses into the cluster's endpoints; a no-op when they are the same set already.
fn apply(sub: &Subscriber, cluster: &Cluster, addrs: &[IpAddr]) {
    let want: Vec<SocketAddr> = match sub.response_type {
        ResponseType::Endpoints => addrs
            .iter()
            .map(|ip| SocketAddr::new(*ip, sub.port))
            .collect(),
        ResponseType::LoadBalancer => addrs
            .first()
            .map(|ip| SocketAddr::new(*ip, sub.port))
            .into_iter()
            .collect(),
    };
    let have = cluster.endpoints();
    if have.len() == want.len() && want.iter().all(|a| have.iter().any(|e| e.addr == *a)) {
        return;
    }
    cluster.set_endpoints(&want);
}

fn same_set(a: &[IpAddr], b: &[IpAddr]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

fn list(addrs: &[IpAddr]) -> String {
    let parts: Vec<String> = addrs.iter().map(IpAddr::to_string).collect();
    format!("[{}]", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn sub(min: Option<u64>, max: Option<u64>) -> Subscriber {
        Subscriber {
            cluster: Weak::new(),
            port: 80,
            response_type: ResponseType::Endpoints,
            refresh: RefreshOverride {
                min: min.map(secs),
                max: max.map(secs),
            },
        }
    }

    #[test]
    fn the_most_demanding_cluster_sets_the_pace() {
        let table = Refresh::default();
        assert_eq!(bounds(&[], table), table);
        let b = bounds(&[sub(None, None), sub(Some(5), Some(10))], table);
        assert_eq!((b.min, b.max), (secs(1), secs(10)));
        let b = bounds(&[sub(Some(5), None), sub(Some(3), Some(4))], table);
        assert_eq!((b.min, b.max), (secs(3), secs(4)));
    }

    #[test]
    fn backoff_doubles_up_to_the_ceiling() {
        let b = Refresh::default();
        let within = |d: Duration, lo: u64| d >= secs(lo) && d <= secs(lo).mul_f64(1.1);
        assert!(within(backoff(b, 1), 1));
        assert!(within(backoff(b, 2), 2));
        assert!(within(backoff(b, 4), 8));
        assert!(within(backoff(b, 30), 60));
    }
}
