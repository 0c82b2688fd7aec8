//! L4 TCP proxying. A connection is routed by the (original) destination port to a TCP route, a
//! weighted pick gives the cluster, and the upstream is dialled at once: server-first protocols
//! (MySQL, SMTP banners) work because nothing waits for the client to speak. A failed connect is
//! retried on another endpoint. Bytes are copied both ways with half-close kept (one side's FIN is
//! passed on while the other direction keeps flowing): spliced in the kernel between plain
//! sockets on Linux (see `splice`), through 64 KiB buffers when either side is TLS.
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use prometheus::IntCounter;
use tokio::io::AsyncWriteExt;

use crate::access_log::LogRecord;
use crate::cluster::{self, ActiveRequest, Endpoint};
use crate::flags::ResponseFlags;
use crate::http::{ConnActivity, ConnInfo, Tracked};
use crate::route::WeightedTargets;
use crate::table::{ListenerTable, Transparent};
use crate::tls::{ClientStream, ServerStream};

/// Copy buffer per direction: large enough that bulk transfers make few syscalls.
const COPY_BUFFER: usize = 64 * 1024;

pub struct TcpRoute {
    pub name: String,
    /// `None` matches any port.
    pub port: Option<u16>,
    pub targets: WeightedTargets,
    /// Closes a connection that moves no bytes for this long.
    pub idle: Option<Duration>,
    pub connections: IntCounter,
}

#[derive(Default)]
pub struct TcpRoutes {
    pub routes: Vec<TcpRoute>,
}

impl TcpRoutes {
    /// The route for a destination port: one naming the port, else one for any port.
    pub fn find(&self, port: u16) -> Option<&TcpRoute> {
        self.routes
            .iter()
            .find(|r| r.port == Some(port))
            .or_else(|| self.routes.iter().find(|r| r.port.is_none()))
    }
}

/// Per-cluster byte counters (rx: from the upstream, tx: to it).
pub struct ByteCounters {
    pub rx: IntCounter,
    pub tx: IntCounter,
}

/// Proxies one accepted connection to its route's cluster until either side is done.
/// How long DROP_ALL waits for a TLS ClientHello whose server name might be an allowed host.
const SNI_WAIT: Duration = Duration::from_secs(5);

/// The mesh egress filter for a connection to no known service: ALLOW_ALL passes it through;
/// DROP_ALL only when its TLS server name is an allowed host (App Mesh lets `*.amazonaws.com`
/// through), read from the ClientHello without consuming it.
async fn egress_passthrough<'t>(t: &'t Transparent, client: &ServerStream) -> Option<&'t TcpRoute> {
    let passthrough = t.tcp_passthrough.as_ref()?;
    if t.allow_all {
        return Some(passthrough);
    }
    let ServerStream::Plain(stream) = client else {
        return None;
    };
    let name = crate::tls::sni::peek_server_name(stream, SNI_WAIT).await?;
    t.allows_host(&name).then_some(passthrough)
}

pub async fn proxy(table: Arc<ListenerTable>, client: ServerStream, conn: ConnInfo) {
    let start = Instant::now();
    let started_at = SystemTime::now();
    let found = table.tcp.as_ref().and_then(|routes| routes.find(conn.port));
    let route = match (found, table.transparent.as_ref()) {
        (Some(r), _) => r,
        // A destination the table does not know: the mesh egress filter decides.
        (None, Some(t)) if conn.original_dst.is_some() => {
            match egress_passthrough(t, &client).await {
                Some(passthrough) => passthrough,
                None => {
                    t.dropped.inc();
                    tracing::debug!(listener = %table.name, dst = ?conn.original_dst, "egress filter DROP_ALL: closing");
                    return;
                }
            }
        }
        _ => {
            tracing::debug!(listener = %table.name, port = conn.port, "no TCP route for this port; closing");
            table.metrics.no_route.record(404);
            return;
        }
    };
    route.connections.inc();
    let cluster = Arc::clone(route.targets.pick());
    let mut flags = ResponseFlags::NONE;

    // Connect, moving on to another endpoint when one refuses.
    let mut tried: Vec<Arc<Endpoint>> = Vec::new();
    let attempts = cluster.endpoints().len().clamp(1, 3);
    let mut connected = None;
    while tried.len() < attempts {
        let next = match (cluster.original_dst, conn.original_dst) {
            // Passthrough: the one destination the client dialled.
            (true, Some(dst)) => tried.is_empty().then(|| cluster.endpoint_for(dst)),
            _ => cluster.pick_excluding(&tried),
        };
        let Some(ep) = next else { break };
        match cluster::connect_stream(&cluster, &ep).await {
            Ok(stream) => {
                cluster.report(&ep, false);
                connected = Some((stream, ep));
                break;
            }
            Err(e) => {
                tracing::debug!(cluster = %cluster.name, endpoint = %ep.addr, "TCP connect failed: {e}");
                cluster.report(&ep, true);
                tried.push(ep);
            }
        }
    }
    let Some((upstream, endpoint)) = connected else {
        flags.insert(if tried.is_empty() {
            ResponseFlags::NO_HEALTHY_UPSTREAM
        } else {
            ResponseFlags::UPSTREAM_CONNECT_FAILURE
        });
        log(
            &table,
            &conn,
            route,
            &cluster.name,
            None,
            flags,
            (0, 0),
            start,
            started_at,
        );
        return;
    };
    let _active = ActiveRequest::new(Arc::clone(&endpoint));

    let activity = Arc::new(ConnActivity::default());
    let (sent, received, idle_out) = relay(client, upstream, &activity, route.idle).await;
    if idle_out {
        flags.insert(ResponseFlags::STREAM_IDLE_TIMEOUT);
    }
    cluster.metrics.tx_bytes.inc_by(sent);
    cluster.metrics.rx_bytes.inc_by(received);
    log(
        &table,
        &conn,
        route,
        &cluster.name,
        Some(endpoint.addr),
        flags,
        (sent, received),
        start,
        started_at,
    );
}

/// Moves bytes both ways until both sides are done or the connection is idle for `idle`:
/// returns the bytes sent upstream, received from it, and whether the idle timeout ended it.
/// Plain TCP on both sides is spliced in the kernel (see `splice`); TLS on either side is
/// copied through user-space buffers.
async fn relay(
    client: ServerStream,
    upstream: ClientStream,
    activity: &Arc<ConnActivity>,
    idle: Option<Duration>,
) -> (u64, u64, bool) {
    #[cfg(target_os = "linux")]
    if let (ServerStream::Plain(c), ClientStream::Plain(u)) = (&client, &upstream) {
        // On the idle timeout, returning drops (closes) both sockets.
        return match until_idle(crate::splice::bidirectional(c, u, activity), activity, idle).await
        {
            Some((sent, received)) => (sent, received, false),
            None => (0, 0, true),
        };
    }
    let mut client = Tracked::new(client, Arc::clone(activity));
    let mut upstream = upstream;
    let copy = tokio::io::copy_bidirectional_with_sizes(
        &mut client,
        &mut upstream,
        COPY_BUFFER,
        COPY_BUFFER,
    );
    match until_idle(copy, activity, idle).await {
        Some((sent, received)) => (sent, received, false),
        None => {
            let _ = client.shutdown().await;
            let _ = upstream.shutdown().await;
            (0, 0, true)
        }
    }
}

/// Runs `copy` to its end (a failed copy moved what it counted as nothing), or until the
/// connection has been idle for `idle`: `None`.
async fn until_idle(
    copy: impl Future<Output = std::io::Result<(u64, u64)>>,
    activity: &ConnActivity,
    idle: Option<Duration>,
) -> Option<(u64, u64)> {
    let copy = async { copy.await.unwrap_or((0, 0)) };
    match idle {
        None => Some(copy.await),
        Some(idle) => tokio::select! {
            moved = copy => Some(moved),
            _ = activity.idle_for(idle) => None,
        },
    }
}

#[allow(clippy::too_many_arguments)]
fn log(
    table: &ListenerTable,
    conn: &ConnInfo,
    route: &TcpRoute,
    cluster: &str,
    upstream: Option<std::net::SocketAddr>,
    flags: ResponseFlags,
    (sent, received): (u64, u64),
    start: Instant,
    started_at: SystemTime,
) {
    let Some(logger) = table.access_log.as_ref() else {
        return;
    };
    let empty = crate::access_log::CapturedHeaders::default();
    let record = LogRecord {
        start_time: started_at,
        method: None,
        path: "",
        protocol: "-",
        authority: "",
        scheme: conn.scheme,
        request_headers: &empty,
        response_code: None,
        response_headers: None,
        response_flags: flags,
        bytes_received: sent,
        bytes_sent: received,
        duration: start.elapsed(),
        upstream_service_time: None,
        upstream_host: upstream,
        upstream_cluster: cluster,
        route_name: &route.name,
        downstream_remote: conn.remote,
        downstream_local: conn.local,
    };
    let mut line = String::with_capacity(200);
    logger.format.write(&record, &mut line);
    logger.sink.submit(line);
}
