//! The proxy process: the current runtime table, the running listeners, and how a new table
//! replaces the old one. A table is compiled and its new sockets bound before anything changes;
//! then each listener's table is swapped in place (connections and requests in flight keep the
//! table they started with), new listeners start, and removed ones drain.
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use ferry_api::v1;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Notify, watch};
use tokio::task::JoinHandle;

use crate::access_log::SinkRegistry;
use crate::discovery::Discovery;
use crate::envoy_stats::{self, StatsSettings, StatsView};
use crate::http::{ListenerCtx, serve_connection};
use crate::metrics::Metrics;
use crate::table::{CompileError, ListenerSpec, RuntimeTable, compile_with};
use crate::tracing_export::Tracer;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Invalid(#[from] CompileError),
    #[error("listeners[{index}].address: cannot listen on {address}: {source}")]
    Bind {
        index: usize,
        address: SocketAddr,
        source: io::Error,
    },
    /// The compiler panicked (a bug): the table is rejected and the last good one kept.
    #[error("the table compiler failed: {0}")]
    Compiler(String),
}

impl ApplyError {
    /// The field path the error is about.
    pub fn field_path(&self) -> String {
        match self {
            ApplyError::Invalid(e) => e.path.clone(),
            ApplyError::Bind { index, .. } => format!("listeners[{index}].address"),
            ApplyError::Compiler(_) => String::new(),
        }
    }

    pub fn message(&self) -> String {
        match self {
            ApplyError::Invalid(e) => e.message.clone(),
            ApplyError::Bind {
                address, source, ..
            } => format!("cannot listen on {address}: {source}"),
            ApplyError::Compiler(_) => self.to_string(),
        }
    }
}

struct RunningListener {
    ctx: Arc<ListenerCtx>,
    /// The address as configured (port 0 stays 0), to tell whether a new table moved it.
    configured: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct ControlState {
    listeners: HashMap<String, RunningListener>,
    /// Listeners removed by a table change, still draining their connections.
    retired: Vec<JoinHandle<()>>,
    sinks: SinkRegistry,
    drained: bool,
}

pub struct Proxy {
    pub metrics: Arc<Metrics>,
    /// Which names and labels `/stats/prometheus` shows.
    pub stats: StatsSettings,
    /// DNS resolution loops of the DNS clusters.
    pub discovery: Arc<Discovery>,
    current: ArcSwapOption<RuntimeTable>,
    control: Mutex<ControlState>,
    started: Instant,
    /// Set once the first table's DNS names have all had a first answer (or failure).
    dns_warm: AtomicBool,
    draining: AtomicBool,
    shutdown: Notify,
    /// Span export, when configured: handed to every listener.
    tracer: Option<Arc<Tracer>>,
}

/// The longest a starting proxy waits for its DNS names before it says it is ready anyway; the
/// first resolutions end well within this (a resolution gives up after 15 s).
const DNS_WARM_UP_LIMIT: Duration = Duration::from_secs(20);

/// One listener as seen from the admin API.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ListenerStatus {
    pub name: String,
    pub address: SocketAddr,
    pub connections: usize,
}

impl Default for Proxy {
    fn default() -> Self {
        Self::new()
    }
}

impl Proxy {
    pub fn new() -> Proxy {
        Self::with_dns_servers(Vec::new())
    }

    /// A proxy whose DNS clusters ask `dns_servers` (`--dns-resolver`; they win over a table's
    /// `dns.servers`); empty: the table's servers, else the system's /etc/resolv.conf.
    pub fn with_dns_servers(dns_servers: Vec<SocketAddr>) -> Proxy {
        let metrics = Arc::new(Metrics::new());
        metrics.live.set(1);
        Proxy {
            discovery: Arc::new(Discovery::new(metrics.registry(), dns_servers)),
            metrics,
            stats: StatsSettings::default(),
            current: ArcSwapOption::empty(),
            control: Mutex::new(ControlState::default()),
            started: Instant::now(),
            dns_warm: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            shutdown: Notify::new(),
            tracer: None,
        }
    }

    /// Sets how `/stats/prometheus` names and labels series (`--stats-compat`,
    /// `ENABLE_ENVOY_STATS_TAGS`).
    pub fn with_stats(mut self, stats: StatsSettings) -> Proxy {
        self.stats = stats;
        self
    }

    /// The `/stats/prometheus` body: the gauges refreshed, then Ferry's families and, with
    /// `--stats-compat envoy`, Envoy's derived from them (see [`envoy_stats`]).
    pub async fn stats_exposition(&self) -> String {
        self.refresh_gauges().await;
        let native = self.metrics.registry().gather();
        if self.stats.compat == envoy_stats::StatsCompat::None && !self.stats.tags {
            return crate::metrics::encode_families(&native);
        }
        let bound: HashMap<String, SocketAddr> = self
            .listeners()
            .await
            .into_iter()
            .map(|l| (l.name, l.address))
            .collect();
        let table = self.current();
        let view = StatsView::new(
            table.as_ref().map(|t| t.source.outline()),
            &bound,
            &self.stats,
        );
        crate::metrics::encode_families(&envoy_stats::expose(native, &self.stats, &view))
    }

    /// Records and exports a span per HTTP request on every listener (`--otlp-endpoint`).
    pub fn with_tracer(mut self, tracer: Option<Arc<Tracer>>) -> Proxy {
        self.tracer = tracer;
        self
    }

    /// The table being served, if one was applied.
    pub fn current(&self) -> Option<Arc<RuntimeTable>> {
        self.current.load_full()
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Ready: a table is loaded, its DNS names have had their first answer or failure (as Envoy
    /// waits for its DNS clusters to warm up, so that the first requests do not find them empty),
    /// and the proxy is not draining.
    pub fn is_ready(&self) -> bool {
        self.current.load().is_some() && !self.is_draining() && self.dns_warmed()
    }

    fn dns_warmed(&self) -> bool {
        if self.dns_warm.load(Ordering::Relaxed) {
            return true;
        }
        // Once warm, always: a DNS cluster that a later table adds does not unready the proxy.
        let warm = self.discovery.warmed() || self.started.elapsed() > DNS_WARM_UP_LIMIT;
        if warm {
            self.dns_warm.store(true, Ordering::Relaxed);
        }
        warm
    }

    /// Compiles `source` as [`Proxy::apply`] would, without binding its ports or serving it:
    /// `--validate`, which may run beside a proxy that serves the same file. Returns the version.
    pub fn check(&self, source: v1::RoutingTable) -> Result<String, ApplyError> {
        let mut sinks = SinkRegistry::default();
        let previous = self.current.load_full();
        let table = compile_with(
            source,
            previous.as_deref(),
            &self.metrics,
            &mut sinks,
            Some(&self.discovery),
        )?;
        Ok(table.version.clone())
    }

    /// Compiles and applies `source`; on error nothing changes. Returns the applied version.
    pub async fn apply(&self, source: v1::RoutingTable) -> Result<String, ApplyError> {
        let mut control = self.control.lock().await;
        let previous = self.current.load_full();
        // Compiling a large table takes tens of milliseconds: it runs on the blocking pool, so
        // that the thread serving connections (the only one at `--concurrency 1`) keeps serving.
        let (metrics, discovery) = (Arc::clone(&self.metrics), Arc::clone(&self.discovery));
        let mut sinks = std::mem::take(&mut control.sinks);
        let old = previous.clone();
        let (compiled, sinks) = tokio::task::spawn_blocking(move || {
            let compiled = compile_with(
                source,
                old.as_deref(),
                &metrics,
                &mut sinks,
                Some(&discovery),
            );
            // The decoded source is freed by now: megabytes for a large table.
            graveyard::trim_soon();
            (compiled, sinks)
        })
        .await
        .map_err(|e| ApplyError::Compiler(e.to_string()))?;
        control.sinks = sinks;
        let table = compiled?;

        // Bind every new socket first, so a port in use rejects the whole table.
        let mut bound: HashMap<String, TcpListener> = HashMap::new();
        if !control.drained {
            for (index, spec) in table.listeners.iter().enumerate() {
                let reusable = control
                    .listeners
                    .get(&spec.name)
                    .is_some_and(|r| r.configured == spec.address);
                if !reusable {
                    let listener = bind(spec.address).map_err(|source| ApplyError::Bind {
                        index,
                        address: spec.address,
                        source,
                    })?;
                    bound.insert(spec.name.clone(), listener);
                }
            }
        }

        // Commit.
        let mut keep = HashSet::new();
        let mut replaced = Vec::new();
        for spec in &table.listeners {
            keep.insert(spec.name.clone());
            if let Some(socket) = bound.remove(&spec.name) {
                if let Some(old) = control.listeners.remove(&spec.name) {
                    control.retired.push(retire(old));
                }
                let local = socket.local_addr().unwrap_or(spec.address);
                let ctx = Arc::new(ListenerCtx::new(
                    spec.name.clone(),
                    Arc::clone(&spec.table),
                    local,
                    self.tracer.clone(),
                ));
                let (stop, stopped) = watch::channel(false);
                let task = tokio::spawn(accept_loop(socket, Arc::clone(&ctx), stopped));
                tracing::info!(listener = %spec.name, address = %local, "listening");
                control.listeners.insert(
                    spec.name.clone(),
                    RunningListener {
                        ctx,
                        configured: spec.address,
                        stop,
                        task,
                    },
                );
            } else if let Some(running) = control.listeners.get(&spec.name) {
                replaced.push(running.ctx.table.swap(Arc::clone(&spec.table)));
            }
        }
        let gone: Vec<String> = control
            .listeners
            .keys()
            .filter(|n| !keep.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            if let Some(old) = control.listeners.remove(&name) {
                tracing::info!(listener = %name, "listener removed; draining its connections");
                control.retired.push(retire(old));
            }
        }
        control.retired.retain(|t| !t.is_finished());

        if let Some(dns) = &table.dns {
            self.discovery.commit(dns);
        }
        let version = table.version.clone();
        let table = Arc::new(table);
        // Walking both tables takes ~6 ms at 10,000 routes: a stall for every connection if it
        // ran here, on the thread that serves them. It is done before the new version shows, so
        // that whoever sees the version sees the old series gone.
        let (metrics, next, old) = (
            Arc::clone(&self.metrics),
            Arc::clone(&table),
            previous.clone(),
        );
        let forgotten = tokio::task::spawn_blocking(move || {
            forget_metrics(&metrics, old.as_deref(), &next);
        });
        if let Err(e) = forgotten.await {
            // The listeners serve the new table already; only stale series can be left.
            tracing::warn!(error = %e, "clearing the replaced table's metrics failed");
        }
        self.current.store(Some(table));
        self.metrics.config_swaps.inc();
        self.metrics.set_config_version(&version);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.metrics
            .config_last_swap
            .set(i64::try_from(now.as_secs()).unwrap_or(i64::MAX));
        // Freed off this thread too, for the same reason.
        if let Some(previous) = previous {
            graveyard::bury(previous);
        }
        for table in replaced {
            graveyard::bury(table);
        }
        // Access-log files that no table (nor a request still in flight) refers to are closed.
        control.sinks.prune_unused();
        Ok(version)
    }
    /// The running listeners with their bound addresses.
    pub async fn listeners(&self) -> Vec<ListenerStatus> {
        let control = self.control.lock().await;
        let mut out: Vec<ListenerStatus> = control
            .listeners
            .values()
            .map(|r| ListenerStatus {
                name: r.ctx.name.clone(),
                address: r.ctx.local_addr,
                connections: r.ctx.connections(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Stops accepting on every listener; open connections go on until they finish (a later
    /// [`drain`](Self::drain) waits for them). When this returns, no listener is listed and no
    /// table brings one back.
    pub async fn stop_listeners(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.metrics.live.set(0);
        let mut control = self.control.lock().await;
        control.drained = true;
        let stopped: Vec<JoinHandle<()>> =
            control.listeners.drain().map(|(_, r)| retire(r)).collect();
        control.retired.extend(stopped);
    }

    /// Stops accepting on every listener and lets open connections finish, up to `timeout`.
    /// Returns whether everything finished in time.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.stop_listeners().await;
        let tasks = std::mem::take(&mut self.control.lock().await.retired);
        let all = futures_util::future::join_all(tasks);
        tokio::time::timeout(timeout, all).await.is_ok()
    }

    /// Flushes the access logs (at exit).
    pub async fn flush_logs(&self, timeout: Duration) {
        let control = self.control.lock().await;
        for (_, sink) in control.sinks.all() {
            sink.flush_blocking(timeout);
        }
    }

    /// Asks the process to shut down (admin `/quitquitquit`).
    pub fn request_shutdown(&self) {
        self.shutdown.notify_one();
    }

    /// Resolves when a shutdown was requested.
    pub async fn shutdown_requested(&self) {
        self.shutdown.notified().await;
    }

    /// Access-log sink and DNS metrics, refreshed at scrape time.
    pub async fn refresh_gauges(&self) {
        self.discovery.refresh_gauges();
        self.metrics
            .uptime
            .set(i64::try_from(self.uptime().as_secs()).unwrap_or(i64::MAX));
        if let Some(bytes) = crate::metrics::anonymous_memory() {
            self.metrics
                .memory
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        if let Some(table) = self.current() {
            for c in table.clusters.values() {
                let (healthy, ejected) = c.membership();
                c.metrics
                    .healthy
                    .set(i64::try_from(healthy).unwrap_or(i64::MAX));
                c.metrics
                    .ejected
                    .set(i64::try_from(ejected).unwrap_or(i64::MAX));
            }
        }
        let control = self.control.lock().await;
        for (path, sink) in control.sinks.all() {
            let counter = self.metrics.access_log_dropped(path);
            let seen = counter.get();
            let dropped = sink.dropped();
            if dropped > seen {
                counter.inc_by(dropped - seen);
            }
        }
    }
}

/// Stops a listener's accept loop; the returned task ends when its connections have drained.
fn retire(listener: RunningListener) -> JoinHandle<()> {
    let _ = listener.stop.send(true);
    listener.task
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

async fn accept_loop(socket: TcpListener, ctx: Arc<ListenerCtx>, mut stop: watch::Receiver<bool>) {
    // Connections hold receivers; draining sends `true` and waits until they are all gone.
    let (drain, draining) = watch::channel(false);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            accepted = socket.accept() => match accepted {
                Ok((stream, remote)) => serve_connection(&ctx, stream, remote, &draining),
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(listener = %ctx.name, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    // Closing the socket refuses new connections from here on.
    drop(socket);
    drop(draining);
    drain.send_replace(true);
    drain.closed().await;
}

// === mod graveyard ===

pub use graveyard::after_tables_freed;

/// Where a replaced table goes to be freed. Freeing a 10,000-route table takes ~5 ms: done by
/// the thread that swapped it, or by the last request in flight that held it, that is a stall for
/// every connection of a worker. A thread of its own frees each table once nothing else holds it,
/// and hands free heap pages back to the kernel, at most once per [`TRIM_INTERVAL`].
mod graveyard {
    use std::sync::mpsc::{self, RecvTimeoutError};
    use std::sync::{Arc, OnceLock};
    use std::time::{Duration, Instant};

    /// The least time between two trims. A trim walks every arena under its lock (the serving
    /// thread's included) and the pages it returns fault back in as the next table is built:
    /// ~10 ms of CPU a swap when a 10,000-route table was swapped every 100 ms and trimmed after
    /// each (two trims a swap: after the compile and after the free). Swapping JSON that fast, four
    /// trims a second instead took 15% off the loader's CPU and gave the serving thread ~5% more
    /// requests, for a peak resident memory 7 MB higher (54 MB against 47); once a second saved a
    /// little more CPU but let the peak reach 77 MB.
    const TRIM_INTERVAL: Duration = Duration::from_millis(250);
    /// How often tables still held by requests in flight are looked at again.
    const RECHECK: Duration = Duration::from_millis(20);

    trait Held: Send {
        fn only_here(&self) -> bool;
    }

    impl<T: Send + Sync> Held for Arc<T> {
        fn only_here(&self) -> bool {
            Arc::strong_count(self) == 1
        }
    }

    /// What the freeing thread is sent.
    enum Grave {
        /// A replaced table, freed once nothing else holds it.
        Table(Box<dyn Held>),
        /// Memory was freed elsewhere (a compile frees the decoded table): trim soon.
        Trim,
    }

    static GRAVEYARD: OnceLock<Option<mpsc::Sender<Grave>>> = OnceLock::new();
    static AFTER_FREE: OnceLock<fn()> = OnceLock::new();

    /// Sets what the freeing thread runs after it has freed tables; the first call wins. A table
    /// is thousands of small allocations spread over the heap, and the holes they leave are kept
    /// by the allocator: the binary hands glibc's `malloc_trim` here (this crate has no unsafe
    /// code), so that resident memory does not ratchet up with every swap.
    pub fn after_tables_freed(release: fn()) {
        let _ = AFTER_FREE.set(release);
    }

    /// Runs the hook set by [`after_tables_freed`], if any. Called off the serving threads only.
    fn release_free_memory() {
        if let Some(release) = AFTER_FREE.get() {
            release();
        }
    }

    fn graveyard() -> Option<&'static mpsc::Sender<Grave>> {
        GRAVEYARD
            .get_or_init(|| {
                let (tx, rx) = mpsc::channel::<Grave>();
                std::thread::Builder::new()
                    .name("ferry-free".to_owned())
                    .spawn(move || keeper(rx))
                    .ok()
                    .map(|_| tx)
            })
            .as_ref()
    }

    pub(super) fn bury<T: Send + Sync + 'static>(table: Arc<T>) {
        if let Some(tx) = graveyard() {
            // A send fails only if the thread is gone; the table is then dropped here.
            let _ = tx.send(Grave::Table(Box::new(table)));
        }
    }

    /// Asks the freeing thread for a trim (paced by [`TRIM_INTERVAL`]); without that thread, trims
    /// here.
    pub(super) fn trim_soon() {
        match graveyard() {
            Some(tx) if tx.send(Grave::Trim).is_ok() => {}
            _ => release_free_memory(),
        }
    }

    fn keeper(rx: mpsc::Receiver<Grave>) {
        let mut held: Vec<Box<dyn Held>> = Vec::new();
        let mut pacer = TrimPacer::new(TRIM_INTERVAL);
        loop {
            let now = Instant::now();
            let wait = [
                (!held.is_empty()).then_some(RECHECK),
                pacer.due().map(|d| d.saturating_duration_since(now)),
            ]
            .into_iter()
            .flatten()
            .min();
            let next = match wait {
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(wait) => rx.recv_timeout(wait),
            };
            let mut freed = false;
            match next {
                Ok(Grave::Table(table)) => held.push(table),
                Ok(Grave::Trim) => freed = true,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            // `retain` drops, so frees, here on this thread.
            let before = held.len();
            held.retain(|t| !t.only_here());
            freed |= held.len() < before;
            if pacer.trim_now(freed, Instant::now()) {
                release_free_memory();
            }
        }
    }

    /// When to trim: at once after a free if the last trim is at least `interval` old, otherwise
    /// `interval` after the last one, so that a burst of swaps is trimmed once per interval and
    /// the last free of a burst is always followed by a trim.
    struct TrimPacer {
        interval: Duration,
        last: Option<Instant>,
        /// Memory was freed since the last trim.
        owed: bool,
    }

    impl TrimPacer {
        fn new(interval: Duration) -> Self {
            TrimPacer {
                interval,
                last: None,
                owed: false,
            }
        }

        /// When a deferred trim is due, if one is.
        fn due(&self) -> Option<Instant> {
            self.last
                .filter(|_| self.owed)
                .map(|last| last + self.interval)
        }

        /// Whether to trim at `now`; `freed` says that memory was freed since the last call.
        fn trim_now(&mut self, freed: bool, now: Instant) -> bool {
            self.owed |= freed;
            let trim = self.owed && self.last.is_none_or(|last| now >= last + self.interval);
            if trim {
                self.last = Some(now);
                self.owed = false;
            }
            trim
        }
    }

    #[cfg(test)]
    mod tests {
        use std::time::Instant;

        use super::*;

        /// Reports the name of the thread that drops it.
        struct Probe(std::sync::mpsc::Sender<String>);
        impl Drop for Probe {
            fn drop(&mut self) {
                let name = std::thread::current().name().unwrap_or("").to_owned();
                let _ = self.0.send(name);
            }
        }

        #[test]
        fn frees_once_the_last_holder_lets_go_off_its_thread() {
            let (tx, rx) = mpsc::channel();
            let table = Arc::new(Probe(tx));
            let in_flight = Arc::clone(&table);
            bury(table);
            drop(in_flight);
            let deadline = Instant::now() + Duration::from_secs(5);
            let freed_on = rx.recv_timeout(deadline - Instant::now());
            assert_eq!(freed_on.as_deref(), Ok("ferry-free"));
        }

        #[test]
        fn the_release_hook_runs_on_the_freeing_thread_after_a_free() {
            static RAN_ON: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
            fn record() {
                let name = std::thread::current().name().unwrap_or("").to_owned();
                RAN_ON.lock().unwrap_or_else(|e| e.into_inner()).push(name);
            }
            after_tables_freed(record);
            let (tx, rx) = mpsc::channel();
            bury(Arc::new(Probe(tx)));
            assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok());
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let ran = RAN_ON.lock().unwrap_or_else(|e| e.into_inner()).clone();
                if let Some(name) = ran.first() {
                    assert_eq!(name, "ferry-free");
                    break;
                }
                assert!(Instant::now() < deadline, "the hook never ran");
                std::thread::sleep(Duration::from_millis(5));
            }
        }

        #[test]
        fn trims_after_a_lone_free_at_once_and_a_burst_once_per_interval() {
            let second = Duration::from_secs(1);
            let t0 = Instant::now();
            let at = |ms: u64| t0 + Duration::from_millis(ms);
            let mut p = TrimPacer::new(second);
            assert!(!p.trim_now(false, at(0)), "nothing freed, nothing to trim");
            assert!(p.trim_now(true, at(0)), "the first free is trimmed at once");
            // A burst: frees every 100 ms for 1.5 s.
            let trims: Vec<u64> = (1..=15)
                .map(|i| i * 100)
                .filter(|&ms| p.trim_now(true, at(ms)))
                .collect();
            assert_eq!(trims, [1000], "once a second during the burst");
            assert_eq!(
                p.due(),
                Some(at(2000)),
                "the burst's last frees are still owed a trim"
            );
            assert!(!p.trim_now(false, at(1900)));
            assert!(
                p.trim_now(false, at(2000)),
                "paid when due, with nothing new freed"
            );
            assert_eq!(p.due(), None);
            assert!(
                p.trim_now(true, at(3500)),
                "a free after a quiet second: at once"
            );
        }

        #[test]
        fn a_table_nothing_else_holds_is_freed_off_the_burying_thread_too() {
            let (tx, rx) = mpsc::channel();
            bury(Arc::new(Probe(tx)));
            let freed_on = rx.recv_timeout(Duration::from_secs(5));
            assert_eq!(freed_on.as_deref(), Ok("ferry-free"));
        }
    }
}

/// Drops the metric series of routes and clusters that the new table no longer has.
fn forget_metrics(metrics: &Metrics, previous: Option<&RuntimeTable>, next: &RuntimeTable) {
    let Some(prev) = previous else { return };
    for name in prev.clusters.keys() {
        if !next.clusters.contains_key(name) {
            metrics.remove_cluster(name);
        }
    }
    for l in &prev.listeners {
        let kept = next.listeners.iter().find(|n| n.name == l.name);
        // The common swap (a weight, a timeout, a retry changed) keeps every route's name in the
        // same order: compared pairwise, that is settled without hashing 10,000 names.
        if kept.is_some_and(|n| route_names(l).eq(route_names(n))) {
            continue;
        }
        let still: HashSet<&str> = kept.into_iter().flat_map(route_names).collect();
        // Retired first: a request still running on the old table must not create a removed
        // route's series after they are removed (route series are created on first use). Route
        // names are unique within a listener, so each is removed once.
        let mut gone = Vec::new();
        for r in routes(l) {
            if !still.contains(r.name.as_str()) {
                r.metrics.retire();
                gone.push(r.name.as_str());
            }
        }
        for route in gone {
            metrics.remove_route(&l.name, route);
        }
    }
}

/// Every HTTP route of listener `l`, in its table's order.
fn routes(l: &ListenerSpec) -> impl Iterator<Item = &crate::route::Route> {
    l.table.vhosts.hosts.iter().flat_map(|v| v.routes.iter())
}

/// The names of [`routes`].
fn route_names(l: &ListenerSpec) -> impl Iterator<Item = &str> {
    routes(l).map(|r| r.name.as_str())
}
