//! Agent mode (`ferry-proxy --agent URL --node ID`): the proxy holds one gRPC stream to
//! ferry-agent, says who it is, applies every snapshot through the same compile-and-swap path as a
//! file ([`Proxy::apply`]), and answers each with an ACK (applied) or a NACK (refused, with the
//! error's field path; the previous table keeps serving).
//!
//! - The stream is reopened after any failure with jittered exponential backoff (0.25 s doubling
//!   to 30 s, each wait drawn from its upper half), and the proxy serves what it has meanwhile.
//! - With `--state-dir`, every accepted table is written there (a temporary file renamed over the
//!   old one), and loaded at start, so a proxy restarted while the agent is down serves at once.
//! - `--ingress-port` / `--egress-port` replace the ports of the agent's inbound and outbound
//!   listeners (App Mesh's 15000 / 15001), and of any cluster that points at this proxy's own
//!   egress listener (a virtual gateway's second hop).
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_api::v1::{self, Ack, Hello, Nack, ProxyMessage, proxy_message};
use ferry_api::{AgentServiceClient, tonic};
use prometheus::{IntCounterVec, IntGauge, Opts};
use tokio::sync::mpsc;

use crate::server::Proxy;

/// The file in `--state-dir` holding the last accepted table (canonical JSON, readable by
/// `ferry-proxy --config`).
pub const STATE_FILE: &str = "last-accepted-table.json";

const BACKOFF_BASE: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A stream that lived this long (or delivered a snapshot) resets the backoff.
const HEALTHY_STREAM: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// `http://host:port` of the agent's gRPC server.
    pub url: String,
    /// MESH/virtualNode/NAME or MESH/virtualGateway/NAME.
    pub node: String,
    pub state_dir: Option<PathBuf>,
    pub ingress_port: Option<u16>,
    pub egress_port: Option<u16>,
    /// Shown in the agent's /proxies (the host name by default).
    pub instance: String,
}

/// Connection metrics, on the proxy's registry.
struct AgentMetrics {
    connected: IntGauge,
    snapshots: IntCounterVec,
}

impl AgentMetrics {
    fn new(proxy: &Proxy) -> AgentMetrics {
        let connected = IntGauge::new(
            "ferry_agent_connected",
            "1 while the stream to ferry-agent is open (Envoy's control_plane.connected_state)",
        )
        .unwrap_or_else(|_| invalid_metric());
        let snapshots = IntCounterVec::new(
            Opts::new(
                "ferry_agent_snapshots_total",
                "Snapshots received from ferry-agent, by result (ack, nack)",
            ),
            &["result"],
        )
        .unwrap_or_else(|_| invalid_metric());
        let registry = proxy.metrics.registry();
        let _ = registry.register(Box::new(connected.clone()));
        let _ = registry.register(Box::new(snapshots.clone()));
        AgentMetrics {
            connected,
            snapshots,
        }
    }
}

fn invalid_metric<T>() -> T {
    panic!("the agent metric definitions are constant and valid")
}

/// Replaces the ports of the inbound / outbound listeners, and of static endpoints that point at
/// the outbound listener's old loopback address (a gateway's hop to its own egress).
pub fn override_ports(table: &mut v1::RoutingTable, ingress: Option<u16>, egress: Option<u16>) {
    use v1::listener::Direction;
    let mut moved: Vec<(String, String)> = Vec::new();
    for l in &mut table.listeners {
        let port = match l.direction() {
            Direction::Inbound => ingress,
            Direction::Outbound => egress,
            _ => None,
        };
        let Some(port) = port else { continue };
        let Some((host, _)) = l.address.rsplit_once(':') else {
            continue;
        };
        let new = format!("{host}:{port}");
        if l.direction() == Direction::Outbound {
            moved.push((l.address.clone(), new.clone()));
        }
        l.address = new;
    }
    if moved.is_empty() {
        return;
    }
    for c in &mut table.clusters {
        if let Some(v1::cluster::Discovery::StaticEndpoints(s)) = &mut c.discovery {
            for e in &mut s.endpoints {
                if let Some((_, new)) = moved.iter().find(|(old, _)| *old == e.address) {
                    e.address = new.clone();
                }
            }
        }
    }
}

/// Loads the last accepted table from `--state-dir`, if there is one, and serves it. Returns its
/// version.
pub async fn load_state(proxy: &Proxy, cfg: &AgentConfig) -> Option<String> {
    let dir = cfg.state_dir.as_ref()?;
    let path = dir.join(STATE_FILE);
    let text = match tokio::fs::read_to_string(&path).await {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(file = %path.display(), "cannot read the saved table: {e}");
            return None;
        }
    };
    let name = path.display().to_string();
    let mut table = match ferry_api::decode_json(&text, &name) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!("ignoring the saved table: {e}");
            return None;
        }
    };
    if !table.node_id.is_empty() && table.node_id != cfg.node {
        tracing::warn!(
            file = %name,
            saved_for = %table.node_id,
            node = %cfg.node,
            "ignoring the saved table: it was compiled for another node"
        );
        return None;
    }
    override_ports(&mut table, cfg.ingress_port, cfg.egress_port);
    match proxy.apply(table).await {
        Ok(v) => {
            tracing::info!(file = %name, version = %v, "serving the last accepted table until the agent answers");
            Some(v)
        }
        Err(e) => {
            tracing::warn!(
                "the saved table {name} no longer applies: {}: {}",
                e.field_path(),
                e.message()
            );
            None
        }
    }
}

fn save_state(dir: &Path, table: &v1::RoutingTable) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{STATE_FILE}.tmp"));
    std::fs::write(&tmp, ferry_api::encode_json(table))?;
    std::fs::rename(&tmp, dir.join(STATE_FILE))
}

/// Follows the agent in the background, for as long as the process runs.
pub fn spawn(proxy: Arc<Proxy>, cfg: AgentConfig) -> tokio::task::JoinHandle<()> {
    let metrics = AgentMetrics::new(&proxy);
    tokio::spawn(async move {
        let mut attempt: u32 = 0;
        loop {
            let started = Instant::now();
            let mut delivered = false;
            let result = session(&proxy, &cfg, &metrics, &mut delivered).await;
            metrics.connected.set(0);
            if proxy.is_draining() {
                return;
            }
            if delivered || started.elapsed() > HEALTHY_STREAM {
                attempt = 0;
            }
            let serving = proxy.current().map_or_else(
                || "nothing".to_owned(),
                |t| format!("version {}", t.version),
            );
            let delay = backoff(attempt);
            attempt = attempt.saturating_add(1);
            match result {
                Ok(()) => tracing::warn!(
                    agent = %cfg.url,
                    "the agent closed the stream; reconnecting in {delay:?} (serving {serving})"
                ),
                Err(e) => tracing::warn!(
                    agent = %cfg.url,
                    "agent stream failed: {e:#}; reconnecting in {delay:?} (serving {serving})"
                ),
            }
            tokio::time::sleep(delay).await;
        }
    })
}

/// The wait before reconnect attempt `attempt` (0-based): exponential, capped, drawn from the upper
/// half so that proxies restarted together do not reconnect in step.
pub fn backoff(attempt: u32) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << attempt.min(16));
    let cap = exp.min(BACKOFF_MAX);
    cap.mul_f64(0.5 + fastrand::f64() * 0.5)
}

async fn session(
    proxy: &Proxy,
    cfg: &AgentConfig,
    metrics: &AgentMetrics,
    delivered: &mut bool,
) -> anyhow::Result<()> {
    let endpoint = tonic::transport::Endpoint::from_shared(cfg.url.clone())?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    let channel = endpoint.connect().await?;
    let mut client = AgentServiceClient::new(channel);
    let (tx, rx) = mpsc::channel::<ProxyMessage>(8);
    let serving_version = proxy
        .current()
        .map(|t| t.version.clone())
        .unwrap_or_default();
    let hello = Hello {
        node_id: cfg.node.clone(),
        serving_version: serving_version.clone(),
        proxy_version: env!("CARGO_PKG_VERSION").to_owned(),
        instance: cfg.instance.clone(),
    };
    send(&tx, proxy_message::Kind::Hello(hello)).await?;
    let outbound =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let mut inbound = client.subscribe(outbound).await?.into_inner();
    metrics.connected.set(1);
    tracing::info!(agent = %cfg.url, node = %cfg.node, serving = %serving_version, "connected to the agent");
    while let Some(snapshot) = inbound.message().await? {
        *delivered = true;
        let Some(mut table) = snapshot.table else {
            tracing::warn!(node = %cfg.node, "the agent has no table for this proxy: {}", snapshot.status);
            continue;
        };
        let received = table.clone();
        override_ports(&mut table, cfg.ingress_port, cfg.egress_port);
        match proxy.apply(table).await {
            Ok(applied) => {
                metrics.snapshots.with_label_values(&["ack"]).inc();
                tracing::info!(version = %applied, "applied the agent's table");
                if let Some(dir) = &cfg.state_dir
                    && let Err(e) = save_state(dir, &received)
                {
                    tracing::warn!(dir = %dir.display(), "cannot save the accepted table: {e}");
                }
                let ack = Ack {
                    version: snapshot.version,
                    nonce: snapshot.nonce,
                };
                send(&tx, proxy_message::Kind::Ack(ack)).await?;
            }
            Err(e) => {
                metrics.snapshots.with_label_values(&["nack"]).inc();
                proxy.metrics.config_rejected.inc();
                let error = format!("{}: {}", e.field_path(), e.message());
                let serving = proxy
                    .current()
                    .map(|t| t.version.clone())
                    .unwrap_or_default();
                tracing::error!(
                    version = %snapshot.version,
                    "refused the agent's table (NACK): {error}; still serving version {serving}"
                );
                let nack = Nack {
                    nonce: snapshot.nonce,
                    version: snapshot.version,
                    error,
                };
                send(&tx, proxy_message::Kind::Nack(nack)).await?;
            }
        }
    }
    Ok(())
}

async fn send(tx: &mpsc::Sender<ProxyMessage>, kind: proxy_message::Kind) -> anyhow::Result<()> {
    tx.send(ProxyMessage { kind: Some(kind) })
        .await
        .map_err(|_| anyhow::anyhow!("the stream to the agent closed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        for attempt in 0..30 {
            let d = backoff(attempt);
            let full = BACKOFF_BASE
                .saturating_mul(1u32 << attempt.min(16))
                .min(BACKOFF_MAX);
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
        }
    }

    #[test]
    fn ports_are_overridden_by_direction_and_self_endpoints_follow() {
        let mut t = v1::RoutingTable {
            listeners: vec![
                v1::Listener {
                    name: "ingress".into(),
                    address: "0.0.0.0:15000".into(),
                    direction: v1::listener::Direction::Inbound as i32,
                    ..Default::default()
                },
                v1::Listener {
                    name: "egress".into(),
                    address: "127.0.0.1:15001".into(),
                    direction: v1::listener::Direction::Outbound as i32,
                    ..Default::default()
                },
                v1::Listener {
                    name: "gateway:8080".into(),
                    address: "0.0.0.0:8080".into(),
                    direction: v1::listener::Direction::Gateway as i32,
                    ..Default::default()
                },
            ],
            clusters: vec![v1::Cluster {
                name: "self:8080:h1".into(),
                discovery: Some(v1::cluster::Discovery::StaticEndpoints(
                    v1::StaticEndpoints {
                        endpoints: vec![v1::Endpoint {
                            address: "127.0.0.1:15001".into(),
                        }],
                    },
                )),
                ..Default::default()
            }],
            ..Default::default()
        };
        override_ports(&mut t, Some(25000), Some(25001));
        assert_eq!(t.listeners[0].address, "0.0.0.0:25000");
        assert_eq!(t.listeners[1].address, "127.0.0.1:25001");
        assert_eq!(t.listeners[2].address, "0.0.0.0:8080");
        let Some(v1::cluster::Discovery::StaticEndpoints(s)) = &t.clusters[0].discovery else {
            panic!("static")
        };
        assert_eq!(s.endpoints[0].address, "127.0.0.1:25001");
    }
}
