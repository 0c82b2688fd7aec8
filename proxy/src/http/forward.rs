//! Forwarding one request to its cluster, with the route's retry policy: each try goes to an
//! endpoint the request has not tried yet when one is usable, waits a jittered backoff, and stays
//! within the cluster's retry budget. Every outcome feeds outlier detection.
//!
//! A request body is replayed only when it was read whole within the listener's
//! `maxRetryBodyBytes`; a larger body streams once and is not retried. A gRPC status that is not
//! in the response headers is read from the trailers when the response fits in
//! [`MAX_GRPC_TRAILER_READ_BYTES`].
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::future::Either;
use http::request::Parts;
use http::{HeaderMap, Request, Response};
use http_body::Body;
use http_body_util::BodyExt;

use super::body::{Buffered, ClientBody, RequestBody, UpstreamBody};
use super::conn_timer::ConnTimer;
use crate::cluster::{
    self, ActiveRequest, Cluster, Endpoint, PooledConn, UpstreamError, UpstreamIncoming,
};
use crate::flags::ResponseFlags;
use crate::resilience::retry::{Outcome, RetryPolicy};

/// Responses up to this size may be read whole to find a gRPC status in their trailers.
pub const MAX_GRPC_TRAILER_READ_BYTES: usize = 64 * 1024;

/// A response from upstream, ready to be sent on.
pub struct Forwarded {
    pub head: http::response::Parts,
    pub body: UpstreamBody,
    pub pooled: Option<PooledConn>,
    pub active: ActiveRequest,
    /// From sending the last try to its response headers.
    pub upstream_time: Duration,
    pub flags: ResponseFlags,
}

/// No response: what went wrong on the last try.
pub struct Failed {
    pub error: UpstreamError,
    pub active: ActiveRequest,
    pub flags: ResponseFlags,
}

/// The request's body, as the first try will send it, and whether it can be sent again.
pub struct PreparedBody {
    first: Option<RequestBody>,
    replay: Option<Buffered>,
}

impl PreparedBody {
    /// A body that streams once (no retry policy, or an upgrade).
    pub fn once(body: RequestBody) -> PreparedBody {
        PreparedBody {
            first: Some(body),
            replay: None,
        }
    }

    /// Reads `body` into memory when it fits in `limit` bytes (the listener's
    /// `maxRetryBodyBytes`), so that retries can resend it; a longer body is sent once.
    pub async fn replayable(
        mut body: ClientBody,
        counter: Option<Arc<AtomicU64>>,
        limit: usize,
    ) -> Result<PreparedBody, hyper::Error> {
        if body.is_end_stream() {
            return Ok(PreparedBody {
                first: Some(RequestBody::empty()),
                replay: Some(Buffered::default()),
            });
        }
        if body.size_hint().lower() > limit as u64 {
            return Ok(PreparedBody::once(RequestBody::stream(body, counter)));
        }
        let mut data = BytesMut::new();
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            match frame?.into_data() {
                Ok(d) => {
                    if let Some(n) = &counter {
                        n.fetch_add(d.len() as u64, Ordering::Relaxed);
                    }
                    data.extend_from_slice(&d);
                    if data.len() > limit {
                        let first = RequestBody::prefixed(data.freeze(), body, counter);
                        return Ok(PreparedBody::once(first));
                    }
                }
                Err(frame) => trailers = frame.into_trailers().ok(),
            }
        }
        let buffered = Buffered {
            data: data.freeze(),
            trailers,
        };
        Ok(PreparedBody {
            first: Some(RequestBody::buffered(&buffered)),
            replay: Some(buffered),
        })
    }

    /// Whether a retry can resend the body (false: it was over the limit and is sent once).
    pub fn is_replayable(&self) -> bool {
        self.replay.is_some()
    }

    fn next(&mut self) -> Option<RequestBody> {
        self.first
            .take()
            .or_else(|| self.replay.as_ref().map(RequestBody::buffered))
    }
}

/// Sends the request, retrying as `policy` allows.
///
/// Not an `async fn`: an `async fn` keeps each by-value argument twice in its state (as passed
/// and as the local it is moved into), which for the request's parts and body is ~500 bytes
/// of every request's future. The `async move` block below captures them once and uses them in
/// place.
pub fn forward<'a>(
    cluster: &'a Arc<Cluster>,
    first: Arc<Endpoint>,
    parts: Parts,
    mut body: PreparedBody,
    policy: Option<&'a RetryPolicy>,
    upgrade: bool,
    mut try_timer: Option<&'a mut ConnTimer>,
) -> impl Future<Output = Result<Forwarded, Failed>> + 'a {
    if policy.is_some() {
        cluster.retry_budget.record_request();
    }
    let mut parts = Some(parts);
    async move {
        // A request that may be retried and that the direct HTTP/1.1 client can carry (no body)
        // is kept whole and lent to every try. Any other retryable request is copied before
        // each try, since the try consumes it: for a bodiless request that copy (its header map
        // above all) was ~8% of the instructions of a request, on the default retry policy
        // every App Mesh route has.
        let mut whole = None;
        if let Some(p) = parts.take_if(|_| policy.is_some()) {
            let req = Request::from_parts(p, body.next().unwrap_or_else(RequestBody::empty));
            if cluster::can_borrow(cluster, &req, upgrade) {
                whole = Some(req);
            } else {
                let (p, first_body) = req.into_parts();
                body.first = Some(first_body);
                parts = Some(p);
            }
        }
        let mut tried: Vec<Arc<Endpoint>> = Vec::new();
        let mut endpoint = first;
        let mut retries = 0u32;
        let mut flags = ResponseFlags::NONE;
        loop {
            let active = ActiveRequest::new(Arc::clone(&endpoint));
            let sent_at = Instant::now();
            let send = match &whole {
                Some(req) => Either::Left(cluster::send_borrowed(cluster, &endpoint, req)),
                None => {
                    // Without a policy the request is built once, by moving its parts.
                    let request = match (policy, parts.take()) {
                        (None, Some(p)) => {
                            Request::from_parts(p, body.next().unwrap_or_else(RequestBody::empty))
                        }
                        (_, Some(p)) => {
                            let r =
                                clone_request(&p, body.next().unwrap_or_else(RequestBody::empty));
                            parts = Some(p);
                            r
                        }
                        (_, None) => unreachable!("parts are kept whenever a retry is possible"),
                    };
                    Either::Right(cluster::send(cluster, &endpoint, request, upgrade))
                }
            };
            // The connection's per-try timer when it lends one (see `ConnTimer`): a tokio timer
            // armed for each try cost ~870 instructions of every request.
            let result = match (
                policy.and_then(|p| p.per_try_timeout),
                try_timer.as_deref_mut(),
            ) {
                (Some(t), Some(timer)) => {
                    timer.set(tokio::time::Instant::now() + t);
                    tokio::select! {
                        biased;
                        result = send => result,
                        () = timer.expired() => Err(UpstreamError::Timeout(t)),
                    }
                }
                (Some(t), None) => tokio::time::timeout(t, send)
                    .await
                    .unwrap_or(Err(UpstreamError::Timeout(t))),
                (None, _) => send.await,
            };
            let upstream_time = sent_at.elapsed();

            // Read the response far enough to classify it.
            let (response, outcome) = match result {
                Ok((resp, pooled)) => {
                    let (head, body, grpc) = read_grpc_status(resp, policy).await;
                    let outcome = Outcome::Response {
                        status: head.status.as_u16(),
                        grpc,
                    };
                    (Ok((head, body, pooled)), outcome)
                }
                Err(e) => {
                    let outcome = classify(&e);
                    (Err(e), outcome)
                }
            };
            // Every try is charged to the cluster, as Envoy's upstream_rq_xx does: the upstream's
            // status, or 504 / 503 when the try ended without a response.
            match outcome {
                Outcome::Response { status, .. } => {
                    cluster.metrics.record(status);
                    cluster
                        .metrics
                        .duration
                        .observe(upstream_time.as_secs_f64());
                }
                Outcome::PerTryTimeout => {
                    cluster.metrics.per_try_timeouts.inc();
                    cluster.metrics.record(504);
                }
                _ => cluster.metrics.record(503),
            }
            cluster.report(&endpoint, failed(outcome));

            let wants_retry = policy.is_some_and(|p| p.retries(outcome));
            let can_replay = body.replay.is_some();
            if let (true, true, Some(p)) = (wants_retry, can_replay, policy) {
                if retries >= p.max_retries {
                    tracing::debug!(cluster = %cluster.name, endpoint = %endpoint.addr, ?outcome, retries, "not retrying: retry limit reached");
                    flags.insert(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
                } else if cluster.retry_budget.try_retry() {
                    retries += 1;
                    cluster.metrics.retries.inc();
                    tracing::debug!(cluster = %cluster.name, endpoint = %endpoint.addr, ?outcome, retries, "retrying");
                    tried.push(Arc::clone(&endpoint));
                    drop(response);
                    drop(active);
                    tokio::time::sleep(p.backoff(retries)).await;
                    endpoint = cluster.pick_excluding(&tried).unwrap_or(endpoint);
                    continue;
                } else {
                    tracing::debug!(cluster = %cluster.name, endpoint = %endpoint.addr, ?outcome, "not retrying: retry budget spent");
                    cluster.metrics.retry_overflow.inc();
                }
            }
            return match response {
                Ok((head, body, pooled)) => {
                    if retries > 0 && !failed(outcome) {
                        cluster.metrics.retry_success.inc();
                    }
                    Ok(Forwarded {
                        head,
                        body,
                        pooled,
                        active,
                        upstream_time,
                        flags,
                    })
                }
                Err(error) => Err(Failed {
                    error,
                    active,
                    flags,
                }),
            };
        }
    }
}

fn clone_request(p: &Parts, body: RequestBody) -> Request<RequestBody> {
    let mut r = Request::new(body);
    *r.method_mut() = p.method.clone();
    *r.uri_mut() = p.uri.clone();
    *r.version_mut() = p.version;
    *r.headers_mut() = p.headers.clone();
    r
}

/// Whether an outcome counts against the endpoint for outlier detection.
fn failed(o: Outcome) -> bool {
    match o {
        Outcome::Response { status, .. } => status >= 500,
        _ => true,
    }
}

fn classify(e: &UpstreamError) -> Outcome {
    match e {
        UpstreamError::Timeout(_) => Outcome::PerTryTimeout,
        e if e.is_connect() => Outcome::ConnectFailure,
        e if e.is_stream_not_taken() => Outcome::RefusedStream,
        _ => Outcome::Reset,
    }
}

/// Interned once: looking up by a `&str` would parse and hash the name on every response.
static GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

fn grpc_status(h: &HeaderMap) -> Option<u32> {
    h.get(&GRPC_STATUS)?.to_str().ok()?.trim().parse().ok()
}

/// The response head and body, and its gRPC status. When the policy retries on gRPC statuses and
/// the status is not in the headers, the trailers are read (responses up to MAX_GRPC_TRAILER_READ_BYTES).
async fn read_grpc_status(
    resp: Response<UpstreamIncoming>,
    policy: Option<&RetryPolicy>,
) -> (http::response::Parts, UpstreamBody, Option<u32>) {
    let (head, mut body) = resp.into_parts();
    let in_headers = grpc_status(&head.headers);
    let is_grpc = head
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if in_headers.is_some()
        || !is_grpc
        || !policy.is_some_and(RetryPolicy::watches_grpc)
        || body.is_end_stream()
    {
        return (head, UpstreamBody::Stream(body), in_headers);
    }
    let mut data = BytesMut::new();
    loop {
        match body.frame().await {
            None => {
                return (
                    head,
                    UpstreamBody::Buffered(Buffered {
                        data: data.freeze(),
                        trailers: None,
                    }),
                    None,
                );
            }
            // A broken stream: pass on what arrived; the client sees the stream end early.
            Some(Err(_)) => {
                return (
                    head,
                    UpstreamBody::Buffered(Buffered {
                        data: data.freeze(),
                        trailers: None,
                    }),
                    None,
                );
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(d) => {
                    data.extend_from_slice(&d);
                    if data.len() > MAX_GRPC_TRAILER_READ_BYTES {
                        let prefix: Bytes = data.freeze();
                        return (head, UpstreamBody::Prefixed(prefix, body), None);
                    }
                }
                Err(frame) => {
                    let trailers = frame.into_trailers().ok();
                    let status = trailers.as_ref().and_then(grpc_status);
                    return (
                        head,
                        UpstreamBody::Buffered(Buffered {
                            data: data.freeze(),
                            trailers,
                        }),
                        status,
                    );
                }
            },
        }
    }
}
