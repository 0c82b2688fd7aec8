//! Serving one client connection: HTTP/1.1 and HTTP/2 (prior knowledge) detected per connection,
//! each request handed to [`super::handle`] with the listener's current table.
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::activity::{ConnActivity, Tracked};
use super::framing::{FramingVerdict, Watched};
use super::h1_server::{self, Ended};
use super::rewind::Rewind;
use crate::table::ListenerTable;
use crate::tls::ServerStream;
use crate::tracing_export::Tracer;

pub use super::activity::InFlight;

/// A running listener's shared state; its table is swapped in place on every new routing table.
pub struct ListenerCtx {
    pub name: String,
    pub table: ArcSwap<ListenerTable>,
    /// The bound address (the OS's choice when the table said port 0).
    pub local_addr: SocketAddr,
    /// Set when spans are exported (`--otlp-endpoint`); `None` costs the request path nothing.
    pub tracer: Option<Arc<Tracer>>,
    connections: AtomicUsize,
}

impl ListenerCtx {
    pub fn new(
        name: String,
        table: Arc<ListenerTable>,
        local_addr: SocketAddr,
        tracer: Option<Arc<Tracer>>,
    ) -> ListenerCtx {
        ListenerCtx {
            name,
            table: ArcSwap::new(table),
            local_addr,
            tracer,
            connections: AtomicUsize::new(0),
        }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

/// What a request knows of its connection.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// Requests in flight and bytes moving, for the connection's idle timeout.
    pub activity: Arc<ConnActivity>,
    /// Which HTTP/1.x request, if any, carried both Content-Length and Transfer-Encoding.
    pub framing: Arc<FramingVerdict>,
    pub remote: SocketAddr,
    /// `remote`'s address as sent in X-Forwarded-For.
    pub client_ip: http::HeaderValue,
    pub local: SocketAddr,
    /// The destination port used for route port matches (the original one in transparent mode).
    pub port: u16,
    /// Transparent mode: the destination the client dialled, when iptables redirected it here.
    pub original_dst: Option<SocketAddr>,
    pub scheme: &'static str,
}

/// Decrements the connection count when a connection ends, however it ends.
struct ConnGuard(Arc<ListenerCtx>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
        self.0.table.load().metrics.cx_active.dec();
    }
}

/// Serves `stream` on its own task: TLS first when the listener terminates it, then TCP proxying
/// or HTTP. HTTP connections hold a `drain` receiver: when it turns true they finish the request
/// in flight and close, and the listener waits until every receiver is gone.
pub fn serve_connection(
    ctx: &Arc<ListenerCtx>,
    stream: TcpStream,
    remote: SocketAddr,
    drain: &watch::Receiver<bool>,
) {
    let table = ctx.table.load_full();
    table.metrics.cx_total.inc();
    if let Some(max) = table.limits.max_connections
        && ctx.connections.load(Ordering::Relaxed) >= max
    {
        table.metrics.cx_overflow.inc();
        drop(stream);
        return;
    }
    ctx.connections.fetch_add(1, Ordering::Relaxed);
    table.metrics.cx_active.inc();
    let guard = ConnGuard(Arc::clone(ctx));
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(ctx.local_addr);
    let original_dst = table
        .transparent
        .as_ref()
        .and_then(|_| original_destination(&stream, local));
    let drain = drain.clone();
    let ctx = Arc::clone(ctx);
    tokio::spawn(async move {
        let _guard = guard;
        let handshake_timeout = table
            .limits
            .header_read_timeout
            .unwrap_or(Duration::from_secs(10));
        let io = match &table.tls {
            None => ServerStream::Plain(stream),
            Some(tls) => match tls.accept(stream, handshake_timeout).await {
                Some(io) => io,
                None => return,
            },
        };
        let port = original_dst.map_or(ctx.local_addr.port(), |d| d.port());
        let scheme = if matches!(io, ServerStream::Tls(_)) {
            "https"
        } else {
            "http"
        };
        // Built in the call itself: a `ConnInfo` held in a local here would keep a place of its
        // own (176 bytes) in every connection's task beside the copy the callee owns.
        let info = || ConnInfo {
            activity: Arc::new(ConnActivity::default()),
            framing: Arc::new(FramingVerdict::default()),
            remote,
            client_ip: super::headers::client_ip_value(remote.ip()),
            local,
            port,
            original_dst,
            scheme,
        };
        if is_tcp(&table, original_dst, port) {
            // Boxed: the TCP proxy's future (2.9 KB) would otherwise set the size of every
            // connection's task, HTTP ones included; a TCP connection pays one allocation.
            Box::pin(crate::tcp::proxy(table, io, info())).await;
        } else {
            serve_http(ctx, &table, io, info(), drain).await;
        }
    });
}

/// Whether a connection is TCP-proxied: every one on a TCP listener; on a transparent HTTP
/// listener, one whose original destination port a TCP route names, or that no virtual host
/// names (see `Transparent::http_ports`).
fn is_tcp(table: &ListenerTable, original_dst: Option<SocketAddr>, port: u16) -> bool {
    if !table.http {
        return true;
    }
    if original_dst.is_none() {
        return false;
    }
    if table
        .tcp
        .as_ref()
        .is_some_and(|routes| routes.find(port).is_some())
    {
        return true;
    }
    table
        .transparent
        .as_ref()
        .and_then(|t| t.http_ports.as_deref())
        .is_some_and(|ports| !ports.contains(&port))
}

/// The destination the client dialled before iptables redirected the connection here, or `None`
/// when it was not redirected (it dialled the proxy itself: explicit mode). A connection can
/// never be passed through to the proxy's own listener: that would be a loop.
fn original_destination(stream: &TcpStream, local: SocketAddr) -> Option<SocketAddr> {
    let sock = socket2::SockRef::from(stream);
    let dst = if local.is_ipv4() {
        sock.original_dst_v4()
    } else {
        sock.original_dst_v6()
    };
    let dst = dst.ok()?.as_socket()?;
    (dst != local).then_some(dst)
}

/// Serves an HTTP connection: Ferry's own HTTP/1.1 server first (see `h1_server`), hyper's
/// for HTTP/2 and for the rest of a connection once a request needs it. The listener's idle
/// timeout covers both.
///
/// Not an `async fn`: an `async fn` keeps each by-value argument twice in its state (as passed
/// and as the local it is moved into), and this future is part of every connection's task.
#[allow(clippy::manual_async_fn)]
fn serve_http(
    ctx: Arc<ListenerCtx>,
    table: &ListenerTable,
    io: ServerStream,
    info: ConnInfo,
    mut drain: watch::Receiver<bool>,
) -> impl Future<Output = ()> {
    async move {
        let activity = Arc::clone(&info.activity);
        let name = ctx.name.clone();
        let remote = info.remote;
        let h2_negotiated = io.alpn() == Some(b"h2");
        let mut io = Tracked::new(io, Arc::clone(&activity));
        let served = async {
            if h2_negotiated {
                // Boxed, here and below: hyper's server future (2.8 KB) would otherwise set the
                // size of every connection's task, most of which never reach it.
                return Box::pin(serve_hyper(ctx, table, io, info, drain)).await;
            }
            match h1_server::serve(&mut io, &ctx, table, &info, &mut drain).await {
                Ended::Closed => {}
                Ended::ToHyper(read) => {
                    // hyper's own framing watch follows the connection from the request it takes.
                    let info = ConnInfo {
                        framing: Arc::new(FramingVerdict::default()),
                        ..info
                    };
                    Box::pin(serve_hyper(ctx, table, Rewind::new(read, io), info, drain)).await;
                }
            }
        };
        match table.limits.idle_timeout {
            None => served.await,
            Some(t) => tokio::select! {
                () = served => {}
                // Dropping the connection closes it; nothing is in flight by construction.
                _ = activity.idle_for(t) => {
                    tracing::debug!(listener = %name, %remote, "closing an idle connection");
                    table.metrics.idle_timeout.inc();
                }
            },
        }
    }
}

/// Serves the connection with hyper's server (HTTP/1.1 and HTTP/2, with upgrades).
async fn serve_hyper<IO>(
    ctx: Arc<ListenerCtx>,
    table: &ListenerTable,
    io: IO,
    info: ConnInfo,
    mut drain: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = &table.limits;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper's minimum read buffer is 8 KiB.
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        // Rapid reset (CVE-2023-44487): streams the client resets before they are served, and
        // streams the proxy had to reset for the client's errors, are bounded per connection; past
        // either bound the connection gets GOAWAY ENHANCE_YOUR_CALM.
        .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESETS);

    let framing = Arc::clone(&info.framing);
    let remote = info.remote;
    let name = ctx.name.clone();
    let service = service_fn(move |req| {
        let ctx = Arc::clone(&ctx);
        let info = info.clone();
        // Boxed: hyper moves the service's future into each HTTP/2 stream's task, and tokio
        // moves that task a few times more while spawning it; a box makes those moves a pointer
        // instead of the request's whole state.
        Box::pin(async move {
            let req = req.map(super::body::ClientBody::Hyper);
            Ok::<_, Infallible>(super::handle(&ctx, &info, req, None).await)
        })
    });
    let io = TokioIo::new(Watched::new(
        io,
        framing,
        table.metrics.h2_stream_refused.clone(),
    ));
    let conn = builder.serve_connection_with_upgrades(io, service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        // Draining: hyper finishes what is in flight (HTTP/2 sends GOAWAY) and closes.
        () = async { drop(drain.wait_for(|draining| *draining).await) } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(listener = %name, %remote, "connection ended with error: {e}");
        if let Some(counter) = refusal_counter(table, e.as_ref()) {
            counter.inc();
        }
    }
}

/// Per-connection bounds on HTTP/2 stream resets (h2's own defaults, set explicitly so that a
/// dependency update cannot loosen them).
const H2_MAX_PENDING_ACCEPT_RESETS: usize = 20;
const H2_MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// The metric for a connection that ended because the client broke a limit or the protocol.
fn refusal_counter<'t>(
    table: &'t ListenerTable,
    e: &(dyn std::error::Error + 'static),
) -> Option<&'t prometheus::IntCounter> {
    let m = &table.metrics;
    let mut source = Some(e);
    while let Some(err) = source {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_parse_too_large() {
                return Some(&m.header_too_large);
            }
            if h.is_parse() {
                return Some(&m.bad_request);
            }
            if h.is_timeout() {
                return Some(&m.header_timeout);
            }
        }
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            if h2.is_remote() || h2.reason().is_none() {
                return None;
            }
            return Some(if h2.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM) {
                &m.h2_reset_flood
            } else {
                &m.h2_protocol_error
            });
        }
        source = err.source();
    }
    None
}
