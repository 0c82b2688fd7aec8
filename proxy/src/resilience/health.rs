//! Active health checks (App Mesh `healthCheck`): every `interval` each endpoint of the cluster is
//! probed (HTTP GET of `path`, a TCP connect, or the gRPC health protocol). `unhealthy_threshold`
//! failures in a row mark it unhealthy; `healthy_threshold` successes in a row bring it back.
//! Unhealthy endpoints get no traffic while a healthy one exists (see `Cluster::pick`).
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::cluster::{Cluster, Endpoint};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// GET `path` over HTTP/1.1; any 2xx is healthy.
    Http { path: String },
    /// GET `path` over HTTP/2 (prior knowledge); any 2xx is healthy.
    Http2 { path: String },
    /// grpc.health.v1.Health/Check with an empty service name; SERVING is healthy.
    Grpc,
    /// A TCP connection can be opened.
    Tcp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthPolicy {
    pub probe: Probe,
    /// `None`: the endpoint's own port.
    pub port: Option<u16>,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    pub interval: Duration,
    pub timeout: Duration,
}

/// One endpoint's health, as the checker last saw it. Endpoints start healthy.
#[derive(Debug)]
pub struct HealthState {
    healthy: AtomicBool,
    successes: AtomicU32,
    failures: AtomicU32,
}

impl Default for HealthState {
    fn default() -> Self {
        HealthState {
            healthy: AtomicBool::new(true),
            successes: AtomicU32::new(0),
            failures: AtomicU32::new(0),
        }
    }
}

impl HealthState {
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Applies one probe result; returns `Some(new state)` when the endpoint changed state.
    pub fn record(&self, ok: bool, policy: &HealthPolicy) -> Option<bool> {
        if ok {
            self.failures.store(0, Ordering::Relaxed);
            let n = self.successes.fetch_add(1, Ordering::Relaxed) + 1;
            if !self.is_healthy() && n >= policy.healthy_threshold {
                self.healthy.store(true, Ordering::Relaxed);
                return Some(true);
            }
        } else {
            self.successes.store(0, Ordering::Relaxed);
            let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
            if self.is_healthy() && n >= policy.unhealthy_threshold {
                self.healthy.store(false, Ordering::Relaxed);
                return Some(false);
            }
        }
        None
    }
}

/// Starts checking `cluster`'s endpoints; the task ends when the cluster is dropped.
pub fn spawn(cluster: Weak<Cluster>, policy: HealthPolicy) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("health checks need the async runtime; not started");
        return;
    };
    runtime.spawn(async move {
        loop {
            let Some(c) = cluster.upgrade() else { return };
            let endpoints = c.endpoints();
            let name = c.name.clone();
            drop(c);
            let checks = endpoints
                .iter()
                .map(|ep| check_one(Arc::clone(ep), &policy, &name));
            futures_util::future::join_all(checks).await;
            // Jitter (up to 10%) keeps many proxies from probing in lockstep.
            let jitter = policy.interval.mul_f64(fastrand::f64() * 0.1);
            tokio::time::sleep(policy.interval + jitter).await;
        }
    });
}

async fn check_one(ep: Arc<Endpoint>, policy: &HealthPolicy, cluster: &str) {
    let addr = SocketAddr::new(ep.addr.ip(), policy.port.unwrap_or(ep.addr.port()));
    let result = tokio::time::timeout(policy.timeout, probe(addr, &policy.probe, cluster)).await;
    let ok = matches!(result, Ok(Ok(true)));
    if let Some(healthy) = ep.health.record(ok, policy) {
        let why = match &result {
            Err(_) => format!("no answer within {:?}", policy.timeout),
            Ok(Err(e)) => e.clone(),
            Ok(Ok(_)) => "probe answered".to_owned(),
        };
        if healthy {
            tracing::info!(%cluster, endpoint = %ep.addr, "endpoint is healthy again");
        } else {
            tracing::warn!(%cluster, endpoint = %ep.addr, "endpoint marked unhealthy: {why}");
        }
    }
}

/// Runs one probe: `Ok(healthy?)`, or `Err(why it could not be asked)`.
async fn probe(addr: SocketAddr, probe: &Probe, cluster: &str) -> Result<bool, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(stream);
    match probe {
        Probe::Tcp => Ok(true),
        Probe::Http { path } => {
            let (mut s, conn) = http1::handshake(io).await.map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let req = Request::get(path.as_str())
                .header(header::HOST, cluster)
                .header(header::USER_AGENT, "ferry-health-check")
                .body(Empty::<Bytes>::new())
                .map_err(|e| e.to_string())?;
            let resp = s.send_request(req).await.map_err(|e| e.to_string())?;
            http_verdict(resp.status())
        }
        Probe::Http2 { path } => {
            let mut s = h2_handshake(io).await?;
            let req = Request::get(format!("http://{cluster}{path}"))
                .header(header::USER_AGENT, "ferry-health-check")
                .body(Empty::<Bytes>::new())
                .map_err(|e| e.to_string())?;
            let resp = s.send_request(req).await.map_err(|e| e.to_string())?;
            http_verdict(resp.status())
        }
        Probe::Grpc => grpc_probe(io, cluster).await,
    }
}

/// An HTTP/2 (prior knowledge) connection for one probe.
async fn h2_handshake<B>(io: TokioIo<TcpStream>) -> Result<http2::SendRequest<B>, String>
where
    B: http_body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (s, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(s)
}

/// Any 2xx is healthy; anything else is a failure that names the status.
fn http_verdict(status: http::StatusCode) -> Result<bool, String> {
    if status.is_success() {
        Ok(true)
    } else {
        Err(format!("answered {status}"))
    }
}

/// grpc.health.v1.Health/Check: an empty HealthCheckRequest; healthy when the reply says SERVING.
async fn grpc_probe(io: TokioIo<TcpStream>, cluster: &str) -> Result<bool, String> {
    let mut s = h2_handshake(io).await?;
    // A gRPC message frame: not compressed (0), length 0 (empty request = all services).
    let req = Request::post(format!("http://{cluster}/grpc.health.v1.Health/Check"))
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers")
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .map_err(|e| e.to_string())?;
    let resp = s.send_request(req).await.map_err(|e| e.to_string())?;
    let header_status = grpc_status(resp.headers());
    let collected = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let trailer_status = collected.trailers().and_then(grpc_status);
    let status = trailer_status.or(header_status).unwrap_or(2);
    if status != 0 {
        return Err(format!("grpc-status {status}"));
    }
    Ok(serving(&collected.to_bytes()))
}

fn grpc_status(h: &http::HeaderMap) -> Option<u32> {
    h.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// Whether a framed HealthCheckResponse says SERVING (field 1, varint 1).
fn serving(frame: &[u8]) -> bool {
    let Some(message) = frame.get(5..) else {
        return false;
    };
    // The response has one field: tag 0x08 (field 1, varint) followed by the status.
    message.windows(2).any(|w| w == [0x08, 0x01])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> HealthPolicy {
        HealthPolicy {
            probe: Probe::Tcp,
            port: None,
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn thresholds_are_consecutive() {
        let s = HealthState::default();
        let p = policy();
        assert_eq!(s.record(false, &p), None);
        assert_eq!(s.record(false, &p), None);
        assert_eq!(s.record(true, &p), None);
        assert_eq!(s.record(false, &p), None);
        assert_eq!(s.record(false, &p), None);
        assert_eq!(s.record(false, &p), Some(false));
        assert!(!s.is_healthy());
        assert_eq!(s.record(true, &p), None);
        assert_eq!(s.record(true, &p), Some(true));
    }

    #[test]
    fn grpc_serving_is_read_from_the_frame() {
        assert!(serving(&[0, 0, 0, 0, 2, 0x08, 0x01]));
        assert!(!serving(&[0, 0, 0, 0, 2, 0x08, 0x02]));
        assert!(!serving(&[0, 0]));
    }
}
