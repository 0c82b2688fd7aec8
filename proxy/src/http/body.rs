//! Body types of the request path. The response body carries the request's [`Completion`]: when
//! the last byte is sent (or the client goes away) it returns the upstream connection to its pool,
//! records the duration and writes the access-log line — all off the critical path of the bytes.
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

use crate::access_log::LogRecord;
use crate::cluster::{ActiveRequest, Cluster, PooledConn};
use crate::flags::ResponseFlags;
use crate::table::ListenerTable;

/// The body sent upstream.
pub enum RequestBody {
    Incoming(Incoming),
    /// Counts bytes for the access log's BYTES_RECEIVED.
    Counted(Incoming, Arc<AtomicU64>),
    Empty,
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Incoming(b) => Pin::new(b).poll_frame(cx),
            RequestBody::Counted(b, n) => {
                let frame = ready!(Pin::new(b).poll_frame(cx));
                if let Some(Ok(f)) = &frame
                    && let Some(d) = f.data_ref()
                {
                    n.fetch_add(d.len() as u64, Ordering::Relaxed);
                }
                Poll::Ready(frame)
            }
            RequestBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Incoming(b) | RequestBody::Counted(b, _) => b.is_end_stream(),
            RequestBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Incoming(b) | RequestBody::Counted(b, _) => b.size_hint(),
            RequestBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// What the access log needs of a request, captured when it arrived (only when logging is on).
pub struct LogContext {
    pub start_time: SystemTime,
    pub method: Method,
    pub path: String,
    pub protocol: &'static str,
    pub authority: String,
    pub scheme: &'static str,
    pub request_headers: HeaderMap,
    pub response_headers: Option<HeaderMap>,
    pub bytes_received: Arc<AtomicU64>,
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
    pub status: Option<u16>,
    pub flags: ResponseFlags,
    pub bytes_sent: u64,
    pub log: Option<Box<LogContext>>,
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
            status: None,
            flags: ResponseFlags::NONE,
            bytes_sent: 0,
            log,
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
        let (Some(log), Some(logger)) = (self.log.take(), self.listener.access_log.as_ref()) else {
            return;
        };
        let route_name = self
            .route
            .and_then(|(v, r)| self.listener.vhosts.hosts.get(v)?.routes.get(r))
            .map_or("", |r| r.name.as_str());
        let record = LogRecord {
            start_time: log.start_time,
            method: Some(&log.method),
            path: &log.path,
            protocol: log.protocol,
            authority: &log.authority,
            scheme: log.scheme,
            request_headers: &log.request_headers,
            response_code: self.status,
            response_headers: log.response_headers.as_ref(),
            response_flags: self.flags,
            bytes_received: log.bytes_received.load(Ordering::Relaxed),
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

enum Inner {
    Upstream(Incoming),
    Local(Option<Bytes>),
}

/// The body sent to the client.
pub struct ResponseBody {
    inner: Inner,
    completion: Option<Completion>,
}

impl ResponseBody {
    pub fn upstream(body: Incoming, completion: Completion) -> Self {
        ResponseBody {
            inner: Inner::Upstream(body),
            completion: Some(completion),
        }
    }

    /// A response made by the proxy itself.
    pub fn local(body: Bytes, completion: Option<Completion>) -> Self {
        let body = (!body.is_empty()).then_some(body);
        ResponseBody {
            inner: Inner::Local(body),
            completion,
        }
    }

    fn end(&mut self, complete: bool) {
        if let Some(c) = self.completion.take() {
            c.finish(complete);
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = match &mut this.inner {
            Inner::Upstream(b) => ready!(Pin::new(b).poll_frame(cx)),
            Inner::Local(b) => b.take().map(|d| Ok(Frame::data(d))),
        };
        match &frame {
            Some(Ok(f)) => {
                if let (Some(d), Some(c)) = (f.data_ref(), this.completion.as_mut()) {
                    c.bytes_sent += d.len() as u64;
                }
            }
            Some(Err(_)) => {
                if let Some(c) = this.completion.as_mut() {
                    c.flags
                        .insert(ResponseFlags::UPSTREAM_CONNECTION_TERMINATION);
                }
                this.end(false);
            }
            None => this.end(true),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Upstream(b) => b.is_end_stream(),
            Inner::Local(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream(b) => b.size_hint(),
            Inner::Local(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
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
        if !complete && let Some(c) = self.completion.as_mut() {
            c.flags
                .insert(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION);
        }
        self.end(complete);
    }
}
