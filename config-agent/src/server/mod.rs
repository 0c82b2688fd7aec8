//! Distribution: the agent's state (the model, a compiled table per identity, every connected
//! proxy), the gRPC stream each proxy holds (`grpc`), and the admin HTTP server (`admin`).
pub mod admin;
pub mod grpc;
pub mod http;
pub mod metrics;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

pub use metrics::AgentMetrics;

use crate::compile::{self, Compiled, Identity, Options};
use crate::store::{Store, StoreState};

/// A proxy identity's table for one model generation, or why there is none.
pub type TableResult = Arc<Result<Compiled, String>>;

pub struct Agent {
    pub store: Arc<Store>,
    pub metrics: Arc<AgentMetrics>,
    pub options: Options,
    proxies: Mutex<BTreeMap<u64, ProxyStatus>>,
    next_id: AtomicU64,
    cache: Mutex<HashMap<Identity, (u64, TableResult)>>,
    /// Set at shutdown: every stream ends, so that the gRPC server can stop.
    shutdown: tokio::sync::watch::Sender<bool>,
}

/// One connected proxy, as `/proxies` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ProxyStatus {
    pub node: String,
    pub instance: String,
    pub peer: String,
    pub proxy_version: String,
    /// Unix seconds.
    pub connected_at: u64,
    /// IN_SYNC (runs the latest table), PENDING (a snapshot awaits its ACK), NACKED (refused the
    /// latest table: see last_nack), NO_TABLE (the agent has no table for it: see error), or
    /// WAITING (the agent has no valid resources yet).
    pub state: &'static str,
    /// The version the proxy runs: its last ACK, or what it said it served when it connected.
    pub serving_version: String,
    /// The version the agent has for it now.
    pub latest_version: String,
    pub last_sent: Option<Event>,
    pub last_ack: Option<Event>,
    pub last_nack: Option<Event>,
    /// Why the agent has no table for this proxy.
    pub error: Option<String>,
    pub snapshots_sent: u64,
    pub acks: u64,
    pub nacks: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Event {
    pub version: String,
    pub nonce: String,
    /// Unix seconds, with milliseconds.
    pub at: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

impl Agent {
    pub fn new(store: Arc<Store>, options: Options) -> Arc<Agent> {
        Arc::new(Agent {
            store,
            metrics: Arc::new(AgentMetrics::new()),
            options,
            proxies: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            cache: Mutex::new(HashMap::new()),
            shutdown: tokio::sync::watch::channel(false).0,
        })
    }

    /// Ends every proxy stream (at shutdown; the proxies keep serving and reconnect later).
    pub fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }

    pub(crate) fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// The table of `identity` in `state`, compiled once per model generation.
    pub fn table_for(&self, identity: &Identity, state: &StoreState) -> TableResult {
        let Some(model) = &state.model else {
            return Arc::new(Err(match &state.last_error {
                Some(_) => {
                    "the agent has no valid resources yet (see its log or /status)".to_owned()
                }
                None => "the agent has not loaded its resources yet".to_owned(),
            }));
        };
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((g, t)) = cache.get(identity)
                && *g == state.generation
            {
                return Arc::clone(t);
            }
        }
        let result = match compile::compile(model, identity, self.options) {
            Ok(c) => {
                for w in &c.warnings {
                    tracing::warn!(node = %identity, "{w}");
                }
                Ok(c)
            }
            Err(e) => {
                self.metrics.compile_errors.inc();
                tracing::error!(node = %identity, "no table for this proxy: {e}");
                Err(e.to_string())
            }
        };
        let result = Arc::new(result);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        // Tables of older models are never asked for again.
        cache.retain(|_, (g, _)| *g == state.generation);
        cache.insert(identity.clone(), (state.generation, Arc::clone(&result)));
        result
    }

    pub(crate) fn register(&self, status: ProxyStatus) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.proxies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, status);
        self.metrics.connected.inc();
        id
    }

    pub(crate) fn update(&self, id: u64, f: impl FnOnce(&mut ProxyStatus)) {
        if let Some(p) = self
            .proxies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&id)
        {
            f(p);
        }
    }

    pub(crate) fn unregister(&self, id: u64) {
        if self
            .proxies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id)
            .is_some()
        {
            self.metrics.connected.dec();
        }
    }

    /// Every connected proxy, by node then connection order.
    pub fn proxies(&self) -> Vec<ProxyStatus> {
        let mut v: Vec<ProxyStatus> = self
            .proxies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| {
            a.node
                .cmp(&b.node)
                .then(a.connected_at.cmp(&b.connected_at))
        });
        v
    }

    /// Refreshes the model gauges (at scrape time).
    pub fn refresh_gauges(&self) {
        let s = self.store.current();
        self.metrics.ready.set(i64::from(s.model.is_some()));
        self.metrics.resources.set(
            s.model
                .as_ref()
                .map_or(0, |m| i64::try_from(m.len()).unwrap_or(i64::MAX)),
        );
        self.metrics
            .generation
            .set(i64::try_from(s.generation).unwrap_or(i64::MAX));
        let accepted = self.store.accepted.load(Ordering::Relaxed);
        let rejected = self.store.rejected.load(Ordering::Relaxed);
        for (label, n) in [("accepted", accepted), ("rejected", rejected)] {
            let c = self.metrics.reloads.with_label_values(&[label]);
            let seen = c.get();
            if n > seen {
                c.inc_by(n - seen);
            }
        }
    }
}

/// A peer address for display.
pub(crate) fn peer_name(peer: Option<SocketAddr>) -> String {
    peer.map(|p| p.to_string()).unwrap_or_default()
}
