//! An endpoint's HTTP/2 connections: which one a request's stream goes on, when another is
//! opened, and when one is closed.
//!
//! Usually one connection carries every request to an endpoint. When all of them have as many
//! streams open as the upstream allows (its SETTINGS_MAX_CONCURRENT_STREAMS), the next request
//! opens another instead of queueing behind the limit, as Envoy does. Requests take the oldest
//! connection with room, so the connections added for a burst fall idle when it has passed and
//! close after the cluster's idle timeout ([`until_idle`]).
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use h2::client::SendRequest;

use crate::cluster::h1::ActiveGuard;
use crate::cluster::pool::{UpstreamError, connect};
use crate::cluster::{Cluster, Endpoint};

/// Per-stream receive window: 2 MiB, as hyper's client had, so a large response streams
/// without waiting for WINDOW_UPDATEs on loopback-fast links.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
/// Connection receive window: 5 MiB, shared by the streams.
const CONN_WINDOW: u32 = 5 * 1024 * 1024;
/// What h2 buffers per stream ahead of the upstream's window.
const MAX_SEND_BUFFER: usize = 1024 * 1024;
/// Largest response header block accepted.
const MAX_HEADER_LIST: u32 = 16 * 1024;
/// Streams reset by the proxy and still tracked, past which the connection is closed.
const MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// Connections to one endpoint past which requests queue on the least busy one instead (inside
/// h2, until one of its streams ends). Envoy's default cap on a cluster's connections.
const MAX_CONNECTIONS: usize = 1024;

/// Streams a connection may open before the upstream's SETTINGS say how many it takes, when no
/// connection to the endpoint has said so yet. RFC 9113 §6.5.2 asks servers for no fewer than
/// 100; hyper's client and nghttp2 assume 100. Sending more blind, the streams past the
/// upstream's limit would be refused.
const DEFAULT_STREAM_LIMIT: usize = 100;

/// The HTTP/2 connections to one endpoint.
pub struct H2Pool {
    /// Oldest first; none (no allocation) for the endpoints of other protocols.
    conns: ArcSwapOption<Vec<Arc<H2Conn>>>,
    /// Serialises opening connections, so that a burst does not open one per request. It holds
    /// how the last attempt failed, for the requests that waited on it.
    connecting: tokio::sync::Mutex<Option<Arc<UpstreamError>>>,
    /// Attempts to open a connection that have ended, failed or not.
    attempts: AtomicU64,
    /// The upstream's stream limit as its connections last said: what a new connection assumes
    /// until its own SETTINGS come.
    stream_limit: AtomicUsize,
}

impl Default for H2Pool {
    fn default() -> H2Pool {
        H2Pool {
            conns: ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(None),
            attempts: AtomicU64::new(0),
            stream_limit: AtomicUsize::new(DEFAULT_STREAM_LIMIT),
        }
    }
}

/// See [`H2Pool::status`].
pub struct H2Status {
    pub connections: usize,
    pub streams: usize,
    /// `usize::MAX` when the upstream announced none (no limit).
    pub stream_limit: usize,
}

/// One HTTP/2 connection to an endpoint.
pub struct H2Conn {
    sender: SendRequest<Bytes>,
    /// Set when the connection has ended, or was retired as idle: no new stream goes on it.
    closed: AtomicBool,
    /// Streams of this proxy's on it that have not ended: the response, and a request body
    /// still streaming after it.
    streams: AtomicUsize,
    /// Streams ever taken on it: the idle check compares it between two looks.
    taken: AtomicU64,
}

impl H2Conn {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// A stream on this connection if it has fewer than `limit` open.
    fn try_take(self: &Arc<Self>, limit: usize) -> Option<StreamSlot> {
        self.streams
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        self.taken.fetch_add(1, Ordering::Relaxed);
        Some(StreamSlot(Arc::clone(self)))
    }

    /// A stream on this connection whatever it has open (h2 holds it until one ends).
    fn take(self: &Arc<Self>) -> StreamSlot {
        self.streams.fetch_add(1, Ordering::Relaxed);
        self.taken.fetch_add(1, Ordering::Relaxed);
        StreamSlot(Arc::clone(self))
    }
}

/// A request's stream on a connection, counted until the response ends or the request fails,
/// and, when the request body streams on after the response has come, until the body ends too
/// (see [`HeldSlot`]): h2 holds such a stream open against the upstream's limit, and a request
/// given a place on that connection would wait inside h2 for it to end.
pub struct StreamSlot(Arc<H2Conn>);

impl StreamSlot {
    pub fn sender(&self) -> SendRequest<Bytes> {
        self.0.sender.clone()
    }

    pub fn conn(&self) -> &Arc<H2Conn> {
        &self.0
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream's slot as its response body holds it: its own in the usual case, or shared with
/// the task still streaming the request body after the response came (a client-streaming or
/// bidirectional call), so that the stream counts until both have ended. Only that case
/// allocates.
pub enum HeldSlot {
    Alone(StreamSlot),
    Shared(Arc<StreamSlot>),
}

/// A stream for a request to `ep`: on the oldest open connection with room under the upstream's
/// limit, else on a new one (one opener at a time).
///
/// Requests that wait while an attempt to open a connection fails get that attempt's error, as
/// Envoy fails the requests pending on a connection that could not be made. Each trying again in
/// turn would queue them one connect timeout behind the other: toward an address that drops SYNs
/// (a task that is gone), the tenth request waited ten timeouts before it could be retried
/// elsewhere.
pub async fn stream(cluster: &Cluster, ep: &Arc<Endpoint>) -> Result<StreamSlot, UpstreamError> {
    let pool = &ep.h2;
    if let Some(slot) = pool.try_take() {
        return Ok(slot);
    }
    let attempts = pool.attempts.load(Ordering::Acquire);
    let mut last_failure = pool.connecting.lock().await;
    // A connection opened, or a stream ended, while this request waited.
    if let Some(slot) = pool.try_take() {
        return Ok(slot);
    }
    if pool.attempts.load(Ordering::Acquire) != attempts
        && let Some(failure) = last_failure.as_ref()
    {
        return Err(UpstreamError::OpenFailed(Arc::clone(failure)));
    }
    if let Some(conn) = pool.least_busy_at_cap() {
        return Ok(conn.take());
    }
    // A limit of 0 is one connection's state (an upstream draining it may say so instead of
    // GOAWAY); assumed for a new connection, every request waiting here would open one more
    // before the first one's SETTINGS came.
    let limit = match pool.stream_limit.load(Ordering::Relaxed) {
        0 => DEFAULT_STREAM_LIMIT,
        n => n,
    };
    // Boxed: connecting is the rare path, and its state would otherwise make every request's
    // future larger.
    let opened = Box::pin(open(cluster, ep, limit)).await;
    pool.attempts.fetch_add(1, Ordering::Release);
    match opened {
        Ok(conn) => {
            *last_failure = None;
            // This request takes a stream on the connection it opened, even if the limit
            // the upstream last said is 0 (h2 then holds the stream until it says more).
            let slot = conn.take();
            pool.conns.rcu(|conns| {
                let mut conns = conns.as_deref().cloned().unwrap_or_default();
                conns.push(Arc::clone(&conn));
                Some(Arc::new(conns))
            });
            Ok(slot)
        }
        Err(e) => {
            let e = Arc::new(e);
            *last_failure = Some(Arc::clone(&e));
            Err(UpstreamError::OpenFailed(e))
        }
    }
}

impl H2Pool {
    /// A stream on the oldest open connection with room under the upstream's limit.
    fn try_take(&self) -> Option<StreamSlot> {
        let conns = self.conns.load();
        for conn in still_open(&conns) {
            // What the upstream's SETTINGS said on this connection (or what it assumed before
            // they came); h2 counts the streams against it too.
            let limit = conn.sender.current_max_send_streams();
            if self.stream_limit.load(Ordering::Relaxed) != limit {
                self.stream_limit.store(limit, Ordering::Relaxed);
            }
            if let Some(slot) = conn.try_take(limit) {
                return Some(slot);
            }
        }
        None
    }

    /// When the endpoint has as many open connections as it may, the one with the fewest
    /// streams.
    fn least_busy_at_cap(&self) -> Option<Arc<H2Conn>> {
        let conns = self.conns.load();
        let open = still_open(&conns);
        if open.clone().count() < MAX_CONNECTIONS {
            return None;
        }
        open.min_by_key(|c| c.streams.load(Ordering::Relaxed))
            .map(Arc::clone)
    }

    /// What `/clusters` shows of the endpoint's HTTP/2 connections: how many are open, the
    /// streams this proxy has on them, and the stream limit a new connection assumes (the
    /// upstream's last announced, [`DEFAULT_STREAM_LIMIT`] before any).
    pub fn status(&self) -> H2Status {
        let conns = self.conns.load();
        let (connections, streams) = still_open(&conns).fold((0, 0), |(n, s), c| {
            (n + 1, s + c.streams.load(Ordering::Relaxed))
        });
        H2Status {
            connections,
            streams,
            stream_limit: self.stream_limit.load(Ordering::Relaxed),
        }
    }

    /// Drops `conn`, which has ended or is going away, so no new stream goes on it.
    pub fn forget(&self, conn: &Arc<H2Conn>) {
        conn.closed.store(true, Ordering::Release);
        self.conns.rcu(|conns| {
            let left: Vec<_> = conns
                .iter()
                .flat_map(|c| c.iter())
                .filter(|c| !Arc::ptr_eq(c, conn))
                .map(Arc::clone)
                .collect();
            (!left.is_empty()).then(|| Arc::new(left))
        });
    }
}

/// The connections of `conns` that have neither ended nor been retired.
fn still_open(conns: &Option<Arc<Vec<Arc<H2Conn>>>>) -> impl Iterator<Item = &Arc<H2Conn>> + Clone {
    conns
        .iter()
        .flat_map(|c| c.iter())
        .filter(|c| !c.is_closed())
}

/// A new HTTP/2 connection to `ep` (TLS when the cluster originates it, with h2 by ALPN) that
/// may open `stream_limit` streams until the upstream's SETTINGS say otherwise. A task of its
/// own drives it until the upstream closes it, or it is retired as idle and no request holds it.
async fn open(
    cluster: &Cluster,
    ep: &Arc<Endpoint>,
    stream_limit: usize,
) -> Result<Arc<H2Conn>, UpstreamError> {
    let io = connect(cluster, ep).await?;
    let (sender, driver) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
        .initial_max_send_streams(stream_limit)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .enable_push(false)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|source| UpstreamError::H2Handshake {
            addr: ep.addr,
            source,
        })?;
    let conn = Arc::new(H2Conn {
        sender,
        closed: AtomicBool::new(false),
        streams: AtomicUsize::new(0),
        taken: AtomicU64::new(0),
    });
    let active = ActiveGuard::new(cluster.metrics.cx_active.clone());
    let addr = ep.addr;
    let (weak_conn, weak_ep) = (Arc::downgrade(&conn), Arc::downgrade(ep));
    let idle = until_idle(weak_conn.clone(), weak_ep.clone(), cluster.idle_timeout);
    tokio::spawn(async move {
        let mut driver = std::pin::pin!(driver);
        let ended = tokio::select! {
            ended = &mut driver => ended,
            // Retired: h2 sends GOAWAY and closes once the last stream and sender are gone.
            () = idle => driver.await,
        };
        if let Err(e) = ended {
            tracing::debug!(%addr, "upstream HTTP/2 connection ended: {e}");
        }
        if let (Some(conn), Some(ep)) = (weak_conn.upgrade(), weak_ep.upgrade()) {
            ep.h2.forget(&conn);
        }
        drop(active);
    });
    Ok(conn)
}

/// Ends once `conn` has carried no stream for `idle_timeout` (the cluster's `idleTimeout`, as
/// for HTTP/1.1 connections), having retired it: marked closed so no request takes it, and
/// dropped from the endpoint so that h2 closes it (GOAWAY NO_ERROR) when no request holds it any
/// more. A request that took it just before finishes on it.
///
/// It looks every `idle_timeout` (2 s at most, 50 ms at least): a look that finds a stream open,
/// or one taken since the last look, starts the idle time again. So the connection closes
/// between `idle_timeout` and one period after it. Without this, a connection to an upstream that
/// keeps it open (gRPC servers commonly do) stayed open for as long as the endpoint existed.
async fn until_idle(conn: Weak<H2Conn>, ep: Weak<Endpoint>, idle_timeout: Duration) {
    let period = idle_timeout.clamp(Duration::from_millis(50), Duration::from_secs(2));
    // None until the first look: a request that ended before it was not seen by any look, so
    // the idle time starts there, never earlier.
    let mut seen = None;
    let mut quiet_since = Instant::now();
    loop {
        tokio::time::sleep(period).await;
        // Dropped from the endpoint and by every request: h2 closes it by itself.
        let Some(c) = conn.upgrade() else {
            return std::future::pending().await;
        };
        let taken = c.taken.load(Ordering::Relaxed);
        if c.streams.load(Ordering::Relaxed) > 0 || seen != Some(taken) {
            seen = Some(taken);
            quiet_since = Instant::now();
            continue;
        }
        if quiet_since.elapsed() >= idle_timeout {
            match ep.upgrade() {
                Some(ep) => {
                    tracing::debug!(addr = %ep.addr, "closing an idle upstream HTTP/2 connection");
                    ep.h2.forget(&c);
                }
                None => c.closed.store(true, Ordering::Release),
            }
            return;
        }
    }
}
