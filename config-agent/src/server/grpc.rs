//! The gRPC service: one bidirectional stream per proxy. The proxy says who it is (Hello); the
//! agent sends a full snapshot whenever that identity's table differs from what the proxy last
//! got, and only then; the proxy answers each snapshot with an ACK or a NACK.
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_api::v1::{ProxyMessage, Snapshot, proxy_message};
use ferry_api::{AgentService, AgentServiceServer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

use super::{Agent, Event, ProxyStatus, now_secs, peer_name};
use crate::compile::Identity;

/// How long a new stream may take to say Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

pub struct AgentGrpc {
    agent: Arc<Agent>,
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<Snapshot, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for AgentGrpc {
    type SubscribeStream = SnapshotStream;

    async fn subscribe(
        &self,
        request: Request<Streaming<ProxyMessage>>,
    ) -> Result<Response<SnapshotStream>, Status> {
        let peer = request.remote_addr();
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(session(
            Arc::clone(&self.agent),
            inbound,
            tx,
            peer_name(peer),
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Serves the gRPC service on `listener` until `shutdown` resolves.
pub async fn serve(
    agent: Arc<Agent>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        // Notice proxies that vanished without closing their stream (a killed node, a partition).
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(AgentServiceServer::new(AgentGrpc { agent }))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}

async fn session(
    agent: Arc<Agent>,
    mut inbound: Streaming<ProxyMessage>,
    tx: mpsc::Sender<Result<Snapshot, Status>>,
    peer: String,
) {
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
        Ok(Ok(Some(ProxyMessage {
            kind: Some(proxy_message::Kind::Hello(h)),
        }))) => h,
        Ok(Err(e)) => {
            tracing::debug!(%peer, "stream failed before its hello: {e}");
            return;
        }
        _ => {
            let _ = tx
                .send(Err(Status::invalid_argument(
                    "the first message of a stream must be a Hello with the proxy's node id",
                )))
                .await;
            return;
        }
    };
    let identity = match Identity::parse(&hello.node_id) {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(%peer, "refused a proxy: {e}");
            let _ = tx.send(Err(Status::invalid_argument(e))).await;
            return;
        }
    };
    let node = identity.to_string();
    let id = agent.register(ProxyStatus {
        node: node.clone(),
        instance: hello.instance.clone(),
        peer: peer.clone(),
        proxy_version: hello.proxy_version.clone(),
        connected_at: now_secs() as u64,
        state: "WAITING",
        serving_version: hello.serving_version.clone(),
        latest_version: String::new(),
        last_sent: None,
        last_ack: None,
        last_nack: None,
        error: None,
        snapshots_sent: 0,
        acks: 0,
        nacks: 0,
    });
    tracing::info!(%node, %peer, instance = %hello.instance, serving = %hello.serving_version, "proxy connected");
    let result = run(
        &agent,
        id,
        &identity,
        &hello.serving_version,
        &mut inbound,
        &tx,
    )
    .await;
    agent.unregister(id);
    match result {
        Ok(()) => tracing::info!(%node, %peer, "proxy disconnected"),
        Err(e) => tracing::info!(%node, %peer, "proxy stream ended: {e}"),
    }
}

async fn run(
    agent: &Agent,
    id: u64,
    identity: &Identity,
    serving: &str,
    inbound: &mut Streaming<ProxyMessage>,
    tx: &mpsc::Sender<Result<Snapshot, Status>>,
) -> Result<(), String> {
    let mut models = agent.store.subscribe();
    let mut shutdown = agent.shutdown_signal();
    // What this proxy last got: a version it runs already is not sent again.
    let mut last_version = (!serving.is_empty()).then(|| serving.to_owned());
    let mut last_status = String::new();
    let mut counter = 0u64;
    let mut pending: HashMap<String, (String, Instant)> = HashMap::new();
    loop {
        let state = models.borrow_and_update().clone();
        let table = agent.table_for(identity, &state);
        match &*table {
            Ok(compiled) => {
                let version = compiled.table.version.clone();
                agent.update(id, |p| {
                    p.latest_version = version.clone();
                    p.error = None;
                });
                if last_version.as_deref() != Some(version.as_str()) {
                    counter += 1;
                    let nonce = format!("{id}-{counter}");
                    let snapshot = Snapshot {
                        version: version.clone(),
                        nonce: nonce.clone(),
                        table: Some(compiled.table.clone()),
                        status: String::new(),
                    };
                    tx.send(Ok(snapshot))
                        .await
                        .map_err(|_| "the stream closed".to_owned())?;
                    agent.metrics.snapshots.inc();
                    tracing::debug!(node = %identity, %version, %nonce, "snapshot sent");
                    pending.insert(nonce.clone(), (version.clone(), Instant::now()));
                    last_version = Some(version.clone());
                    last_status.clear();
                    agent.update(id, |p| {
                        p.last_sent = Some(Event {
                            version,
                            nonce,
                            at: now_secs(),
                            error: None,
                        });
                        p.snapshots_sent += 1;
                    });
                }
            }
            Err(why) => {
                agent.update(id, |p| {
                    p.latest_version.clear();
                    p.error = Some(why.clone());
                });
                if *why != last_status {
                    last_status = why.clone();
                    let snapshot = Snapshot {
                        version: String::new(),
                        nonce: String::new(),
                        table: None,
                        status: why.clone(),
                    };
                    tx.send(Ok(snapshot))
                        .await
                        .map_err(|_| "the stream closed".to_owned())?;
                }
            }
        }
        agent.update(id, |p| p.state = state_of(p, state.model.is_some()));
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
            changed = models.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
            msg = inbound.message() => match msg {
                Ok(Some(m)) => handle(agent, id, identity, m, &mut pending),
                Ok(None) => return Ok(()),
                Err(e) => return Err(e.message().to_owned()),
            },
        }
    }
}

fn handle(
    agent: &Agent,
    id: u64,
    identity: &Identity,
    m: ProxyMessage,
    pending: &mut HashMap<String, (String, Instant)>,
) {
    match m.kind {
        Some(proxy_message::Kind::Ack(a)) => {
            agent.metrics.acks.inc();
            if let Some((_, sent)) = pending.remove(&a.nonce) {
                agent
                    .metrics
                    .ack_latency
                    .observe(sent.elapsed().as_secs_f64());
            }
            tracing::info!(node = %identity, version = %a.version, "proxy applied the table (ACK)");
            agent.update(id, |p| {
                p.serving_version = a.version.clone();
                p.acks += 1;
                p.last_ack = Some(Event {
                    version: a.version,
                    nonce: a.nonce,
                    at: now_secs(),
                    error: None,
                });
            });
        }
        Some(proxy_message::Kind::Nack(n)) => {
            agent.metrics.nacks.inc();
            pending.remove(&n.nonce);
            tracing::error!(node = %identity, version = %n.version, "proxy refused the table (NACK): {}", n.error);
            agent.update(id, |p| {
                p.nacks += 1;
                p.last_nack = Some(Event {
                    version: n.version,
                    nonce: n.nonce,
                    at: now_secs(),
                    error: Some(n.error),
                });
            });
        }
        Some(proxy_message::Kind::Hello(_)) => {
            tracing::warn!(node = %identity, "ignored a second Hello on the same stream");
        }
        None => {}
    }
}

fn state_of(p: &ProxyStatus, have_model: bool) -> &'static str {
    if !have_model {
        return "WAITING";
    }
    if p.error.is_some() {
        return "NO_TABLE";
    }
    if !p.latest_version.is_empty() && p.serving_version == p.latest_version {
        return "IN_SYNC";
    }
    match (&p.last_nack, &p.last_sent) {
        (Some(n), Some(s)) if n.nonce == s.nonce => "NACKED",
        _ => "PENDING",
    }
}
