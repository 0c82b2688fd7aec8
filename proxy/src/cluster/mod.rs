//! Clusters: a named set of upstream endpoints, how to pick one, and how to talk to it.
//!
//! A cluster outlives routing tables: when a new table defines a cluster exactly as before, the
//! same `Arc<Cluster>` is reused, so its pools, counters and (later) health state carry over.
mod endpoint;
mod pool;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use ferry_api::v1;

pub use endpoint::{ActiveRequest, Endpoint};
pub use pool::{PooledConn, UpstreamError, send};

use crate::metrics::ClusterMetrics;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Http1,
    /// HTTP/2 with prior knowledge (h2c); gRPC clusters use this too.
    Http2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LbPolicy {
    RoundRobin,
    /// Power of two choices: the endpoint with fewer requests in flight of two picked at random.
    LeastRequest,
}

pub struct Cluster {
    pub name: String,
    /// The definition this cluster was built from; an identical definition in a new table reuses
    /// this cluster.
    pub definition: v1::Cluster,
    pub protocol: UpstreamProtocol,
    pub lb: LbPolicy,
    pub connect_timeout: Option<Duration>,
    /// Pooled connections idle longer than this are not reused.
    pub idle_timeout: Duration,
    pub metrics: ClusterMetrics,
    next: AtomicUsize,
    endpoints: ArcSwap<Vec<Arc<Endpoint>>>,
}

impl Cluster {
    pub fn new(
        definition: v1::Cluster,
        protocol: UpstreamProtocol,
        lb: LbPolicy,
        connect_timeout: Option<Duration>,
        idle_timeout: Duration,
        metrics: ClusterMetrics,
    ) -> Cluster {
        Cluster {
            name: definition.name.clone(),
            definition,
            protocol,
            lb,
            connect_timeout,
            idle_timeout,
            metrics,
            next: AtomicUsize::new(0),
            endpoints: ArcSwap::from_pointee(Vec::new()),
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

    /// Picks the endpoint for one request, or `None` when the cluster has none.
    pub fn pick(&self) -> Option<Arc<Endpoint>> {
        let eps = self.endpoints.load();
        let n = eps.len();
        let i = match n {
            0 => return None,
            1 => 0,
            _ => match self.lb {
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
            },
        };
        Some(Arc::clone(&eps[i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn cluster(lb: LbPolicy, n: u16) -> Cluster {
        let m = Metrics::new();
        let c = Cluster::new(
            v1::Cluster {
                name: "c".into(),
                ..Default::default()
            },
            UpstreamProtocol::Http1,
            lb,
            None,
            Duration::from_secs(60),
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
