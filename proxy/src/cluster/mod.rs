//! Clusters: a named set of upstream endpoints, how to pick one, and how to talk to it.
//!
//! A cluster outlives routing tables: when a new table defines a cluster exactly as before, the
//! same `Arc<Cluster>` is reused, so its pools, counters and (later) health state carry over.
mod counted;
mod endpoint;
mod h1;
mod h2_client;
mod handoff;
mod incoming;
mod pool;
mod source;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use ferry_api::v1;

pub use endpoint::{ActiveRequest, Endpoint};
/// Public for the fuzz targets (fuzz/): the direct HTTP/1.1 client's response-head parser and
/// chunked decoder.
pub use h1::{
    ChunkError, ChunkedDecoder, Decoded, Framing, HeadError, ResponseHead, parse_response,
};
pub use incoming::UpstreamIncoming;
pub use pool::{PooledConn, UpstreamError, can_borrow, connect_stream, send, send_borrowed};

use crate::metrics::ClusterMetrics;
use crate::resilience::health::HealthPolicy;
use crate::resilience::limits::CircuitBreakers;
use crate::resilience::now_ms;
use crate::resilience::outlier::OutlierPolicy;
use crate::resilience::retry::RetryBudget;
use crate::tls::client::ClientTls;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Http1,
    /// HTTP/2 with prior knowledge (h2c), or by ALPN under TLS; gRPC clusters use this too.
    Http2,
    /// Plain TCP: only TCP routes may use the cluster.
    Tcp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LbPolicy {
    RoundRobin,
    /// Power of two choices: the endpoint with fewer requests in flight of two picked at random.
    LeastRequest,
}

/// How a cluster talks to and protects its endpoints (everything but the endpoints themselves).
pub struct ClusterSettings {
    pub protocol: UpstreamProtocol,
    pub lb: LbPolicy,
    pub connect_timeout: Option<Duration>,
    /// Pooled connections idle longer than this are not reused.
    pub idle_timeout: Duration,
    pub outlier: Option<OutlierPolicy>,
    pub health: Option<HealthPolicy>,
    pub breakers: Option<CircuitBreakers>,
    /// TLS origination (App Mesh clientPolicy tls).
    pub tls: Option<ClientTls>,
    /// Endpoints are the destinations clients dialled (transparent passthrough), not a list.
    pub original_dst: bool,
}

pub struct Cluster {
    pub name: String,
    /// The definition this cluster was built from; an identical definition in a new table reuses
    /// this cluster.
    pub definition: v1::Cluster,
    pub protocol: UpstreamProtocol,
    pub lb: LbPolicy,
    pub connect_timeout: Option<Duration>,
    pub idle_timeout: Duration,
    pub outlier: Option<OutlierPolicy>,
    pub health: Option<HealthPolicy>,
    pub breakers: Option<CircuitBreakers>,
    pub tls: Option<ClientTls>,
    pub original_dst: bool,
    pub retry_budget: RetryBudget,
    pub metrics: ClusterMetrics,
    next: AtomicUsize,
    endpoints: ArcSwap<Vec<Arc<Endpoint>>>,
    /// The DNS name whose addresses are the endpoints (see `source.rs`); unset: static endpoints.
    dns: std::sync::OnceLock<crate::discovery::Subscription>,
}

impl Cluster {
    pub fn new(
        definition: v1::Cluster,
        settings: ClusterSettings,
        metrics: ClusterMetrics,
    ) -> Cluster {
        Cluster {
            name: definition.name.clone(),
            definition,
            protocol: settings.protocol,
            lb: settings.lb,
            connect_timeout: settings.connect_timeout,
            idle_timeout: settings.idle_timeout,
            outlier: settings.outlier,
            health: settings.health,
            breakers: settings.breakers,
            tls: settings.tls,
            original_dst: settings.original_dst,
            retry_budget: RetryBudget::default(),
            metrics,
            next: AtomicUsize::new(0),
            endpoints: ArcSwap::from_pointee(Vec::new()),
            dns: std::sync::OnceLock::new(),
        }
    }

    /// The current endpoints.
    pub fn endpoints(&self) -> Arc<Vec<Arc<Endpoint>>> {
        self.endpoints.load_full()
    }

    /// Replaces the endpoint set. Endpoints whose address stays keep their state and pooled
    /// connections; removed ones are dropped once their in-flight requests finish, which closes
    /// their idle connections.
    pub fn set_endpoints(&self, addrs: &[SocketAddr]) {
        let current = self.endpoints.load();
        let next: Vec<Arc<Endpoint>> = addrs
            .iter()
            .map(|a| {
                current
                    .iter()
                    .find(|e| e.addr == *a)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Endpoint::new(*a)))
            })
            .collect();
        self.metrics
            .endpoints
            .set(i64::try_from(next.len()).unwrap_or(i64::MAX));
        self.endpoints.store(Arc::new(next));
    }

    /// The endpoint for a destination a client dialled (passthrough clusters): found among the
    /// ones seen before, so their pools are reused, or added (the 256 most recent are kept).
    pub fn endpoint_for(&self, addr: SocketAddr) -> Arc<Endpoint> {
        if let Some(e) = self.endpoints.load().iter().find(|e| e.addr == addr) {
            return Arc::clone(e);
        }
        let ep = Arc::new(Endpoint::new(addr));
        self.endpoints.rcu(|current| {
            let mut next: Vec<Arc<Endpoint>> =
                current.iter().filter(|e| e.addr != addr).cloned().collect();
            if next.len() >= 256 {
                next.remove(0);
            }
            next.push(Arc::clone(&ep));
            next
        });
        ep
    }

    /// Picks the endpoint for one request, or `None` when the cluster has none.
    pub fn pick(&self) -> Option<Arc<Endpoint>> {
        self.pick_excluding(&[])
    }

    /// Picks an endpoint, avoiding those in `exclude` (tried already by this request), unhealthy
    /// and ejected ones. When every endpoint is unusable, any endpoint not yet tried is used
    /// (Envoy's panic mode: better a doubtful endpoint than a certain 503).
    pub fn pick_excluding(&self, exclude: &[Arc<Endpoint>]) -> Option<Arc<Endpoint>> {
        let eps = self.endpoints.load();
        let n = eps.len();
        if n == 0 {
            return None;
        }
        if self.outlier.is_none() && self.health.is_none() && exclude.is_empty() {
            return Some(Arc::clone(&eps[self.choose(&eps)]));
        }
        let now = now_ms();
        let tried = |e: &Arc<Endpoint>| exclude.iter().any(|x| Arc::ptr_eq(x, e));
        let usable =
            |e: &Arc<Endpoint>| e.health.is_healthy() && !e.outlier.is_ejected(now) && !tried(e);
        // The balancer's own choice first, a few times; then a scan.
        for _ in 0..3 {
            let e = &eps[self.choose(&eps)];
            if usable(e) {
                return Some(Arc::clone(e));
            }
        }
        let start = fastrand::usize(..n);
        let ring = || (0..n).map(|i| &eps[(start + i) % n]);
        let chosen = ring()
            .find(|e| usable(e))
            .or_else(|| ring().find(|e| !tried(e)))
            .unwrap_or(&eps[start]);
        Some(Arc::clone(chosen))
    }

    /// The balancer's choice among all `eps` (non-empty).
    fn choose(&self, eps: &[Arc<Endpoint>]) -> usize {
        let n = eps.len();
        if n == 1 {
            return 0;
        }
        match self.lb {
            LbPolicy::RoundRobin => self.next.fetch_add(1, Ordering::Relaxed) % n,
            LbPolicy::LeastRequest => {
                let a = fastrand::usize(..n);
                // A second, distinct index: shift by 1..n.
                let b = (a + 1 + fastrand::usize(..n - 1)) % n;
                if eps[b].active_requests() < eps[a].active_requests() {
                    b
                } else {
                    a
                }
            }
        }
    }

    /// Feeds one outcome to outlier detection: `failed` for a 5xx, connect failure or reset.
    pub fn report(&self, ep: &Endpoint, failed: bool) {
        let Some(policy) = &self.outlier else { return };
        if !failed {
            ep.outlier.success();
            return;
        }
        if !ep.outlier.error(policy) {
            return;
        }
        let eps = self.endpoints.load();
        let now = now_ms();
        if ep.outlier.is_ejected(now) {
            return;
        }
        let ejected = eps.iter().filter(|e| e.outlier.is_ejected(now)).count();
        // At least one endpoint may always be ejected, as in Envoy.
        let within =
            ejected == 0 || (ejected + 1) * 100 <= policy.max_ejection_percent as usize * eps.len();
        if within {
            let length = ep.outlier.eject(policy);
            self.metrics.ejections.inc();
            tracing::warn!(cluster = %self.name, endpoint = %ep.addr, ?length, "endpoint ejected after {} consecutive errors", policy.max_server_errors);
        }
    }

    /// (healthy, ejected) endpoint counts, for metrics and /clusters.
    pub fn membership(&self) -> (usize, usize) {
        let eps = self.endpoints.load();
        let now = now_ms();
        let healthy = eps
            .iter()
            .filter(|e| e.health.is_healthy() && !e.outlier.is_ejected(now))
            .count();
        let ejected = eps.iter().filter(|e| e.outlier.is_ejected(now)).count();
        (healthy, ejected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn cluster(lb: LbPolicy, n: u16) -> Cluster {
        let m = Metrics::new();
        let settings = ClusterSettings {
            protocol: UpstreamProtocol::Http1,
            lb,
            connect_timeout: None,
            idle_timeout: Duration::from_secs(60),
            outlier: None,
            health: None,
            breakers: None,
            tls: None,
            original_dst: false,
        };
        let c = Cluster::new(
            v1::Cluster {
                name: "c".into(),
                ..Default::default()
            },
            settings,
            m.cluster("c"),
        );
        let addrs: Vec<SocketAddr> = (0..n)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 9000 + i)))
            .collect();
        c.set_endpoints(&addrs);
        c
    }

    #[test]
    fn round_robin_cycles() {
        let c = cluster(LbPolicy::RoundRobin, 3);
        let ports: Vec<u16> = (0..6)
            .filter_map(|_| c.pick())
            .map(|e| e.addr.port())
            .collect();
        assert_eq!(ports, [9000, 9001, 9002, 9000, 9001, 9002]);
    }

    #[test]
    fn least_request_avoids_the_busy_endpoint() {
        let c = cluster(LbPolicy::LeastRequest, 2);
        let busy = c.endpoints()[0].clone();
        let _held: Vec<_> = (0..5).map(|_| ActiveRequest::new(busy.clone())).collect();
        for _ in 0..100 {
            assert_eq!(c.pick().map(|e| e.addr.port()), Some(9001));
        }
    }

    #[test]
    fn set_endpoints_keeps_surviving_endpoints() {
        let c = cluster(LbPolicy::RoundRobin, 2);
        let kept = c.endpoints()[1].clone();
        c.set_endpoints(&[kept.addr, SocketAddr::from(([127, 0, 0, 1], 9100))]);
        assert!(Arc::ptr_eq(&c.endpoints()[0], &kept));
        c.set_endpoints(&[]);
        assert!(c.pick().is_none());
    }
}
