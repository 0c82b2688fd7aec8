//! Body types of the request path. The response body carries the request's [`Completion`]: when
//! the last byte is sent (or the client goes away) it returns the upstream connection to its pool,
//! releases circuit-breaker permits, records the duration and writes the access-log line.
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Method};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;

use super::conn::InFlight;
use crate::access_log::{CapturedHeaders, LogRecord};
use crate::cluster::{ActiveRequest, Cluster, PooledConn, UpstreamIncoming};
use crate::flags::ResponseFlags;
use crate::resilience::limits::Permits;
use crate::table::ListenerTable;
use crate::tracing_export::{RequestSpan, SpanEnd};

/// The error type of the bodies the proxy sends.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body read whole into memory (with its trailers), which can be sent again.
#[derive(Clone, Debug, Default)]
pub struct Buffered {
    pub data: Bytes,
    pub trailers: Option<HeaderMap>,
}

/// A client's request body: hyper's, or none at all for a bodiless request that Ferry's own
/// HTTP/1.1 server read (see `h1_server`).
#[derive(Debug)]
pub enum ClientBody {
    Empty,
    Hyper(Incoming),
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ClientBody::Empty => Poll::Ready(None),
            ClientBody::Hyper(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Empty => true,
            ClientBody::Hyper(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Empty => SizeHint::with_exact(0),
            ClientBody::Hyper(b) => b.size_hint(),
        }
    }
}

/// The body sent upstream.
pub struct RequestBody {
    kind: RequestKind,
    /// Counts bytes read from the client for the access log's BYTES_RECEIVED.
    counter: Option<Arc<AtomicU64>>,
}

enum RequestKind {
    Empty,
    Stream(ClientBody),
    Buffered(Option<Bytes>, Option<HeaderMap>),
    /// The part already read, then the rest of the stream (too large to replay).
    Prefixed(Option<Bytes>, ClientBody),
}

impl RequestBody {
    pub fn empty() -> RequestBody {
        RequestBody {
            kind: RequestKind::Empty,
            counter: None,
        }
    }

    pub fn stream(body: ClientBody, counter: Option<Arc<AtomicU64>>) -> RequestBody {
        RequestBody {
            kind: RequestKind::Stream(body),
            counter,
        }
    }

    pub fn buffered(b: &Buffered) -> RequestBody {
        let data = (!b.data.is_empty()).then(|| b.data.clone());
        RequestBody {
            kind: RequestKind::Buffered(data, b.trailers.clone()),
            counter: None,
        }
    }

    pub fn prefixed(
        prefix: Bytes,
        rest: ClientBody,
        counter: Option<Arc<AtomicU64>>,
    ) -> RequestBody {
        RequestBody {
            kind: RequestKind::Prefixed(Some(prefix), rest),
            counter,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let stream = match &mut this.kind {
            RequestKind::Empty => return Poll::Ready(None),
            RequestKind::Buffered(data, trailers) => {
                if let Some(d) = data.take() {
                    return Poll::Ready(Some(Ok(Frame::data(d))));
                }
                return Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            RequestKind::Prefixed(prefix, rest) => {
                if let Some(p) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(p))));
                }
                rest
            }
            RequestKind::Stream(b) => b,
        };
        let frame = ready!(Pin::new(stream).poll_frame(cx));
        if let (Some(Ok(f)), Some(n)) = (&frame, &this.counter)
            && let Some(d) = f.data_ref()
        {
            n.fetch_add(d.len() as u64, Ordering::Relaxed);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            RequestKind::Empty => true,
            RequestKind::Stream(b) => b.is_end_stream(),
            RequestKind::Buffered(d, t) => d.is_none() && t.is_none(),
            RequestKind::Prefixed(p, rest) => p.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            RequestKind::Empty => SizeHint::with_exact(0),
            RequestKind::Stream(b) => b.size_hint(),
            RequestKind::Buffered(d, _) => {
                SizeHint::with_exact(d.as_ref().map_or(0, |d| d.len() as u64))
            }
            RequestKind::Prefixed(p, rest) => {
                let extra = p.as_ref().map_or(0, |p| p.len() as u64);
                let h = rest.size_hint();
                let mut out = SizeHint::new();
                out.set_lower(h.lower() + extra);
                if let Some(u) = h.upper() {
                    out.set_upper(u + extra);
                }
                out
            }
        }
    }
}

/// The request's authority and path (with the query), as the client sent them, in one string:
/// one allocation per logged request rather than two.
pub struct LogTarget {
    text: String,
    authority_len: usize,
}

impl LogTarget {
    pub fn new(authority: &str, path: &str) -> LogTarget {
        let mut text = String::with_capacity(authority.len() + path.len());
        text.push_str(authority);
        text.push_str(path);
        LogTarget {
            text,
            authority_len: authority.len(),
        }
    }

    pub fn authority(&self) -> &str {
        &self.text[..self.authority_len]
    }

    pub fn path(&self) -> &str {
        &self.text[self.authority_len..]
    }
}

/// What the access log needs of a request, captured when it arrived (only when logging is on).
pub struct LogContext {
    pub start_time: SystemTime,
    pub method: Method,
    pub target: LogTarget,
    pub protocol: &'static str,
    pub scheme: &'static str,
    pub request_headers: CapturedHeaders,
    pub response_headers: Option<CapturedHeaders>,
    /// Request body bytes read from the client; `None` for a request without a body.
    pub bytes_received: Option<Arc<AtomicU64>>,
    pub upstream_service_time: Option<Duration>,
    pub remote: SocketAddr,
    pub local: SocketAddr,
}

/// The bookkeeping of one request, finished when its response body ends or is dropped.
pub struct Completion {
    pub listener: Arc<ListenerTable>,
    pub start: Instant,
    /// (virtual host, route) indices into `listener`, when a route matched.
    pub route: Option<(usize, usize)>,
    pub cluster: Option<Arc<Cluster>>,
    pub active: Option<ActiveRequest>,
    pub pooled: Option<PooledConn>,
    pub permits: Option<Permits>,
    pub status: Option<u16>,
    pub flags: ResponseFlags,
    pub bytes_sent: u64,
    pub log: Option<Box<LogContext>>,
    /// Marks the client connection busy until the response ends (for its idle timeout).
    pub in_flight: Option<InFlight>,
    /// The request's span, when it is traced and sampled; it ends here.
    pub span: Option<Box<RequestSpan>>,
}

impl Completion {
    pub fn new(listener: Arc<ListenerTable>, start: Instant, log: Option<Box<LogContext>>) -> Self {
        Completion {
            listener,
            start,
            route: None,
            cluster: None,
            active: None,
            pooled: None,
            permits: None,
            status: None,
            flags: ResponseFlags::NONE,
            bytes_sent: 0,
            log,
            in_flight: None,
            span: None,
        }
    }

    /// `complete`: the whole response was read from upstream (the connection may be reused).
    fn finish(mut self, complete: bool) {
        if complete && let Some(p) = self.pooled.take() {
            p.release();
        }
        let elapsed = self.start.elapsed();
        self.listener
            .metrics
            .duration
            .observe(elapsed.as_secs_f64());
        if let Some(span) = self.span.take() {
            span.end(&SpanEnd {
                status: self.status,
                flags: self.flags,
                route: route_name(self.route, &self.listener),
                cluster: self.cluster.as_ref().map(|c| c.name.as_str()),
                upstream: self.active.as_ref().map(|a| a.endpoint().addr),
            });
        }
        let (Some(log), Some(logger)) = (self.log.take(), self.listener.access_log.as_ref()) else {
            return;
        };
        let route_name = route_name(self.route, &self.listener);
        let record = LogRecord {
            start_time: log.start_time,
            method: Some(&log.method),
            path: log.target.path(),
            protocol: log.protocol,
            authority: log.target.authority(),
            scheme: log.scheme,
            request_headers: &log.request_headers,
            response_code: self.status,
            response_headers: log.response_headers.as_ref(),
            response_flags: self.flags,
            bytes_received: log
                .bytes_received
                .as_ref()
                .map_or(0, |n| n.load(Ordering::Relaxed)),
            bytes_sent: self.bytes_sent,
            duration: elapsed,
            upstream_service_time: log.upstream_service_time,
            upstream_host: self.active.as_ref().map(|a| a.endpoint().addr),
            upstream_cluster: self.cluster.as_ref().map_or("", |c| c.name.as_str()),
            route_name,
            downstream_remote: log.remote,
            downstream_local: log.local,
        };
        let mut line = String::with_capacity(256);
        logger.format.write(&record, &mut line);
        logger.sink.submit(line);
    }
}

/// The matched route's name (looked up only for a span or a log line).
fn route_name(route: Option<(usize, usize)>, listener: &ListenerTable) -> &str {
    route
        .and_then(|(v, r)| listener.vhosts.hosts.get(v)?.routes.get(r))
        .map_or("", |r| r.name.as_str())
}

/// A response body from upstream: streamed, or (when a gRPC status had to be read from its
/// trailers before deciding on a retry) already read whole, or read in part.
pub enum UpstreamBody {
    Stream(UpstreamIncoming),
    Buffered(Buffered),
    Prefixed(Bytes, UpstreamIncoming),
}

enum Inner {
    Upstream(UpstreamIncoming),
    /// Data and trailers to send before (or instead of) the rest of the upstream stream.
    Ready(Option<Bytes>, Option<HeaderMap>, Option<UpstreamIncoming>),
}

/// The stream idle timeout is reached: nothing moved for this long.
#[derive(Debug, thiserror::Error)]
#[error("no response bytes for {0:?} (stream idle timeout)")]
pub struct StreamIdle(Duration);

/// The body sent to the client.
pub struct ResponseBody {
    inner: Inner,
    completion: Option<Completion>,
    /// Stream idle timeout, armed only while the upstream keeps us waiting.
    idle: Option<Duration>,
    idle_timer: Option<Pin<Box<Sleep>>>,
}

impl ResponseBody {
    pub fn upstream(body: UpstreamBody, completion: Completion, idle: Option<Duration>) -> Self {
        let inner = match body {
            UpstreamBody::Stream(b) => Inner::Upstream(b),
            UpstreamBody::Buffered(b) => {
                Inner::Ready((!b.data.is_empty()).then_some(b.data), b.trailers, None)
            }
            UpstreamBody::Prefixed(p, rest) => Inner::Ready(Some(p), None, Some(rest)),
        };
        ResponseBody {
            inner,
            completion: Some(completion),
            idle,
            idle_timer: None,
        }
    }

    /// A response made by the proxy itself.
    pub fn local(body: Bytes, completion: Option<Completion>) -> Self {
        let body = (!body.is_empty()).then_some(body);
        ResponseBody {
            inner: Inner::Ready(body, None, None),
            completion,
            idle: None,
            idle_timer: None,
        }
    }

    fn end(&mut self, complete: bool) {
        if let Some(c) = self.completion.take() {
            c.finish(complete);
        }
    }

    fn flag(&mut self, f: ResponseFlags) {
        if let Some(c) = self.completion.as_mut() {
            c.flags.insert(f);
        }
    }

    /// Polls the upstream stream, applying the stream idle timeout while it keeps us waiting.
    fn poll_upstream(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let stream = match &mut self.inner {
            Inner::Upstream(b) => b,
            Inner::Ready(_, _, Some(b)) => b,
            Inner::Ready(_, _, None) => return Poll::Ready(None),
        };
        match Pin::new(stream).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let (Some(d), Some(t)) = (self.idle, self.idle_timer.as_mut()) {
                    t.as_mut().reset(tokio::time::Instant::now() + d);
                }
                Poll::Ready(frame)
            }
            Poll::Pending => {
                let Some(d) = self.idle else {
                    return Poll::Pending;
                };
                let timer = self
                    .idle_timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(d)));
                ready!(timer.as_mut().poll(cx));
                self.flag(ResponseFlags::STREAM_IDLE_TIMEOUT);
                Poll::Ready(Some(Err(Box::new(StreamIdle(d)))))
            }
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let frame = match &mut this.inner {
            Inner::Ready(data @ Some(_), _, _) => data.take().map(|d| Ok(Frame::data(d))),
            Inner::Ready(None, trailers @ Some(_), _) => {
                trailers.take().map(|t| Ok(Frame::trailers(t)))
            }
            _ => ready!(this.poll_upstream(cx)),
        };
        match &frame {
            Some(Ok(f)) => {
                if let Some(c) = this.completion.as_mut() {
                    if let Some(d) = f.data_ref() {
                        c.bytes_sent += d.len() as u64;
                    } else if let (Some(t), Some(span)) = (f.trailers_ref(), c.span.as_mut()) {
                        // gRPC puts its status in the trailers.
                        span.grpc_status(t);
                    }
                }
            }
            Some(Err(_)) => {
                this.flag(ResponseFlags::UPSTREAM_CONNECTION_TERMINATION);
                this.end(false);
            }
            None => this.end(true),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Upstream(b) => b.is_end_stream(),
            Inner::Ready(d, t, rest) => {
                d.is_none() && t.is_none() && rest.as_ref().is_none_or(|r| r.is_end_stream())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream(b) => b.size_hint(),
            Inner::Ready(d, _, None) => {
                SizeHint::with_exact(d.as_ref().map_or(0, |b| b.len() as u64))
            }
            Inner::Ready(..) => SizeHint::default(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if self.completion.is_none() {
            return;
        }
        // A body that was already complete (empty, HEAD, 204) may be dropped without being polled.
        let complete = self.is_end_stream();
        if !complete {
            self.flag(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION);
        }
        self.end(complete);
    }
}
