//! Ferry's HTTP/2 upstream client (HTTP/2 and gRPC clusters), on the h2 crate directly.
//!
//! hyper's HTTP/2 client hands each request across a channel to a task that owns the
//! connection's sender, which then spawns a task per request to wait for the response and send
//! it back through a oneshot, and another to stream the body when it is not there at once. Here
//! the request's own task opens the stream, sends the body and waits for the response: no
//! channel, no spawn per request. One task per connection still drives its reads and writes.
//! Callgrind, 20,000 gRPC unary calls: 1,569 M instructions against 1,722 M with hyper's client
//! (−8.9%) (issue #7).
//!
//! Each endpoint shares one connection ([`shared`]): opened by one request at a time, its failure
//! shared with the requests that waited for it, and closed after the cluster's idle timeout
//! without a request ([`until_idle`]).
mod body;
mod pipe;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::{ResponseFuture, SendRequest};
use http::header::{CONTENT_LENGTH, HeaderValue, TE};
use http::{HeaderMap, Method, Request, Response};
use http_body::Body;

pub use body::H2Body;
use pipe::Pipe;

use super::h1::ActiveGuard;
use super::pool::{UpstreamError, connect};
use super::{Cluster, Endpoint};
use crate::http::{RequestBody, X_REQUEST_ID, is_hop_by_hop, strip_hop_by_hop};

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

/// An endpoint's shared HTTP/2 connection.
pub struct H2Conn {
    sender: SendRequest<Bytes>,
    /// Set by the task that drives the connection when the connection ends.
    closed: Arc<AtomicBool>,
}

impl H2Conn {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// Sends `req` on `ep`'s shared connection, opening it if there is none or it has ended. A
/// request that could not be given a stream (the connection closed or the upstream sent GOAWAY
/// meanwhile) goes on a new connection, so that race never reaches the client.
///
/// Not an `async fn`, for the reason `pool::send` gives.
#[allow(clippy::manual_async_fn)]
pub fn send<'a>(
    cluster: &'a Cluster,
    ep: &'a Arc<Endpoint>,
    req: Request<RequestBody>,
) -> impl Future<Output = Result<Response<H2Body>, UpstreamError>> + 'a {
    async move {
        let (head, body) = req.into_parts();
        let mut head = Request::from_parts(head, ());
        strip_connection_headers(head.headers_mut());
        never_index_request_id(head.headers_mut());
        if let Some(len) = body.size_hint().exact()
            && (len != 0 || has_payload_semantics(head.method()))
            && !head.headers().contains_key(CONTENT_LENGTH)
        {
            head.headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(len));
        }
        let eos = body.is_end_stream();
        let mut sender = None;
        // Two rounds at most: the shared connection, then a fresh one if it turned out gone.
        for _ in 0..2 {
            let conn = shared(cluster, ep).await?;
            match conn.sender.clone().ready().await {
                Ok(s) => {
                    sender = Some(s);
                    break;
                }
                Err(_) => forget(ep, &conn),
            }
        }
        let mut sender = match sender {
            Some(s) => s,
            // Both rounds found dead connections: open one last and report what it says.
            None => shared(cluster, ep)
                .await?
                .sender
                .clone()
                .ready()
                .await
                .map_err(|source| UpstreamError::Stream {
                    addr: ep.addr,
                    source,
                })?,
        };
        let (response, tx) =
            sender
                .send_request(head, eos)
                .map_err(|source| UpstreamError::Stream {
                    addr: ep.addr,
                    source,
                })?;
        drop(sender);
        let exchange = Exchange {
            response,
            pipe: (!eos).then(|| Pipe::new(body, tx)),
        };
        let resp = exchange.await.map_err(|source| UpstreamError::Stream {
            addr: ep.addr,
            source,
        })?;
        let (parts, recv) = resp.into_parts();
        let body = H2Body::new(recv, &parts.headers);
        Ok(Response::from_parts(parts, body))
    }
}

/// The response, with the request body streaming beside it until the response comes.
struct Exchange {
    response: ResponseFuture,
    pipe: Option<Pipe>,
}

impl Future for Exchange {
    type Output = Result<Response<h2::RecvStream>, h2::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(pipe) = &mut this.pipe
            && let Poll::Ready(result) = Pin::new(pipe).poll(cx)
        {
            // The stream is reset (by the upstream, or by the pipe when the client's body
            // broke): the response future reports it.
            log_unsent(result);
            this.pipe = None;
        }
        let resp = ready!(Pin::new(&mut this.response).poll(cx));
        if let Some(pipe) = this.pipe.take() {
            // The response came before the body was sent whole (a streaming call): the rest
            // of the body streams from a task of its own, for as long as the client sends.
            tokio::spawn(async move { log_unsent(pipe.await) });
        }
        Poll::Ready(resp)
    }
}

/// A request body that did not go out whole: the response (or its absence) tells the client.
fn log_unsent(piped: Result<(), pipe::PipeError>) {
    if let Err(e) = piped {
        tracing::debug!("request body not sent whole: {e}");
    }
}

/// The endpoint's shared connection, opened if there is none (one opener at a time).
///
/// Requests that wait while an attempt to open it fails get that attempt's error, as Envoy fails
/// the requests pending on a connection that could not be made. Each trying again in turn would
/// queue them one connect timeout behind the other: toward an address that drops SYNs (a task
/// that is gone), the tenth request waited ten timeouts before it could be retried elsewhere.
async fn shared(cluster: &Cluster, ep: &Arc<Endpoint>) -> Result<Arc<H2Conn>, UpstreamError> {
    if let Some(c) = live(ep) {
        return Ok(c);
    }
    let attempts = ep.h2_attempts.load(Ordering::Acquire);
    let mut last_failure = ep.h2_connecting.lock().await;
    if let Some(c) = live(ep) {
        return Ok(c);
    }
    if ep.h2_attempts.load(Ordering::Acquire) != attempts
        && let Some(failure) = last_failure.as_ref()
    {
        return Err(UpstreamError::OpenFailed(Arc::clone(failure)));
    }
    // Boxed: connecting is the rare path, and its state would otherwise make every request's
    // future larger.
    let opened = Box::pin(open(cluster, ep)).await;
    ep.h2_attempts.fetch_add(1, Ordering::Release);
    match opened {
        Ok(conn) => {
            *last_failure = None;
            let conn = Arc::new(conn);
            ep.h2.store(Some(Arc::clone(&conn)));
            Ok(conn)
        }
        Err(e) => {
            let e = Arc::new(e);
            *last_failure = Some(Arc::clone(&e));
            Err(UpstreamError::OpenFailed(e))
        }
    }
}

/// The endpoint's connection, unless it has ended or was retired as idle.
fn live(ep: &Endpoint) -> Option<Arc<H2Conn>> {
    ep.h2.load_full().filter(|c| !c.is_closed())
}

/// Drops `conn` from the endpoint, unless another request has replaced it already.
fn forget(ep: &Endpoint, conn: &Arc<H2Conn>) {
    ep.h2
        .compare_and_swap(&Some(Arc::clone(conn)), None::<Arc<H2Conn>>);
}

/// A new HTTP/2 connection to `ep` (TLS when the cluster originates it, with h2 by ALPN),
/// driven by a task of its own until the upstream closes it or nothing holds its sender.
async fn open(cluster: &Cluster, ep: &Arc<Endpoint>) -> Result<H2Conn, UpstreamError> {
    let io = connect(cluster, ep).await?;
    let (sender, conn) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
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
    let closed = Arc::new(AtomicBool::new(false));
    let active = ActiveGuard::new(cluster.metrics.cx_active.clone());
    let addr = ep.addr;
    let done = Arc::clone(&closed);
    let idle = until_idle(
        Arc::downgrade(ep),
        Arc::clone(&closed),
        cluster.idle_timeout,
    );
    tokio::spawn(async move {
        let mut conn = std::pin::pin!(conn);
        let ended = tokio::select! {
            ended = &mut conn => ended,
            // Retired: h2 sends GOAWAY and closes once the last stream and sender are gone.
            () = idle => conn.await,
        };
        if let Err(e) = ended {
            tracing::debug!(%addr, "upstream HTTP/2 connection ended: {e}");
        }
        done.store(true, Ordering::Release);
        drop(active);
    });
    Ok(H2Conn { sender, closed })
}

/// Ends once the connection whose flag is `closed` has carried no request for `idle_timeout`
/// (the cluster's `idleTimeout`, as for HTTP/1.1 connections), having retired it: marked closed
/// so no request takes it, and dropped from the endpoint so that h2 closes it (GOAWAY NO_ERROR)
/// when no request holds it any more. A request that took it just before finishes on it.
///
/// It looks every `idle_timeout` (2 s at most, 50 ms at least): a look that finds a request in
/// flight, or one begun since the last look, starts the idle time again. So the connection closes
/// between `idle_timeout` and one period after it. The request path only counts requests, which
/// it does for least-request anyway. Without this, a connection to an upstream that keeps it open
/// (gRPC servers commonly do) stayed open for as long as the endpoint existed.
async fn until_idle(ep: Weak<Endpoint>, closed: Arc<AtomicBool>, idle_timeout: Duration) {
    let period = idle_timeout.clamp(Duration::from_millis(50), Duration::from_secs(2));
    // None until the first look: a request that ended before it was not seen by any look, so
    // the idle time starts there, never earlier.
    let mut seen = None;
    let mut quiet_since = Instant::now();
    loop {
        tokio::time::sleep(period).await;
        // The endpoint is gone: its H2Conn went with it, and the connection closes by itself.
        let Some(ep) = ep.upgrade() else {
            return std::future::pending().await;
        };
        let started = ep.requests_started();
        if ep.active_requests() > 0 || seen != Some(started) {
            seen = Some(started);
            quiet_since = Instant::now();
            continue;
        }
        if quiet_since.elapsed() >= idle_timeout {
            closed.store(true, Ordering::Release);
            if let Some(current) = ep.h2.load_full()
                && Arc::ptr_eq(&current.closed, &closed)
            {
                forget(&ep, &current);
            }
            tracing::debug!(addr = %ep.addr, "closing an idle upstream HTTP/2 connection");
            return;
        }
    }
}

/// Headers that HTTP/2 forbids (RFC 9113 §8.2.2): the hop-by-hop ones. The handler has removed
/// them already, except those an upgrade keeps; h2 would refuse the request over them. One pass
/// over the fields finds none in the common case (a gRPC call's `TE: trailers` is allowed).
fn strip_connection_headers(h: &mut HeaderMap) {
    if !h
        .iter()
        .any(|(n, v)| is_hop_by_hop(n) && !(n == TE && v == "trailers"))
    {
        return;
    }
    strip_hop_by_hop(h, false);
    // h2 takes `TE: trailers` only as written; the HTTP/1.1 strip keeps any case of it.
    if h.get(TE).is_some_and(|v| v != "trailers") {
        h.remove(TE);
    }
}

/// Marks the request id never-indexed (RFC 7541 §6.2.3), as the ids and trace contexts Ferry
/// makes are from the start. h2's HPACK encoder otherwise adds every new value to the
/// connection's dynamic table, where an id that never repeats pushes out the entries that do
/// (the authority, the content type, the user agent), which then go out as literals again.
/// Callgrind, 20,000 gRPC unary calls: 1,517 M instructions against 1,569 M (−3.3%). This
/// covers the ids that clients send; one lookup, where marking five names cost half the gain.
fn never_index_request_id(h: &mut HeaderMap) {
    if let Some(v) = h.get_mut(&X_REQUEST_ID) {
        v.set_sensitive(true);
    }
}

/// Whether a body on `method` has a meaning, so that an empty one is announced with
/// `Content-Length: 0` (as hyper's client did).
fn has_payload_semantics(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::DELETE | Method::CONNECT
    )
}

#[cfg(test)]
mod tests {
    use http::HeaderName;

    use super::*;

    #[test]
    fn a_client_request_id_is_never_indexed_and_other_headers_are_left_alone() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("from-the-client"));
        h.insert("content-type", HeaderValue::from_static("application/grpc"));
        never_index_request_id(&mut h);
        assert!(h["x-request-id"].is_sensitive());
        assert!(!h["content-type"].is_sensitive());
    }

    #[test]
    fn headers_http2_forbids_are_removed_and_te_trailers_kept() {
        let mut h = HeaderMap::new();
        for name in ["connection", "upgrade", "keep-alive", "proxy-connection"] {
            h.insert(name, HeaderValue::from_static("x"));
        }
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_connection_headers(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["te", "x-kept"]);
        h.insert("te", HeaderValue::from_static("gzip"));
        strip_connection_headers(&mut h);
        assert!(!h.contains_key("te"));
        // h2 refuses any other spelling of `trailers`, which the HTTP/1.1 strip keeps.
        h.insert("te", HeaderValue::from_static("Trailers"));
        strip_connection_headers(&mut h);
        assert!(!h.contains_key("te"));
    }
}
