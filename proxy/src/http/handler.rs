//! One request: route it, pick a cluster and an endpoint, forward it, and shape the response.
//! Failures become short local replies: 404 no route, 503 no endpoint or connect failure,
//! 504 timeout, each with a response flag for the access log.
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;

use super::body::{
    ClientBody, Completion, LogContext, LogTarget, RequestBody, ResponseBody, UpstreamBody,
};
use super::conn::{ConnInfo, ListenerCtx};
use super::conn_timer::RequestTimers;
use super::forward::{Failed, Forwarded, PreparedBody, forward};
use super::headers::{add_forwarding, ensure_request_id, strip_hop_by_hop, wants_upgrade};
use super::upgrade;
use crate::access_log::CapturedHeaders;
use crate::cluster::{UpstreamError, UpstreamProtocol};
use crate::flags::ResponseFlags;
use crate::resilience::limits::Overflow;
use crate::route::{RequestView, normalize_path};
use crate::tracing_export::SpanStart;

/// Serves one request. `timers`: the connection's timers for the request timeout and per-try
/// timeouts, when its requests come one at a time (Ferry's HTTP/1.1 server); without them
/// (hyper's servers, HTTP/2's concurrent streams) each request arms timers of its own.
///
/// Not an `async fn`: an `async fn` keeps each by-value argument twice in its state (as passed
/// and as the local it is moved into). The request is taken apart here, before the future
/// exists, and the `async move` block captures its parts and body once.
pub fn handle<'a>(
    ctx: &'a ListenerCtx,
    conn: &'a ConnInfo,
    mut req: Request<ClientBody>,
    timers: Option<&'a mut RequestTimers>,
) -> impl Future<Output = Response<ResponseBody>> + 'a {
    let start = Instant::now();
    let upgrade = req.version() == Version::HTTP_11 && wants_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    async move {
        let table = ctx.table.load_full();

        if parts.uri.path_and_query().map_or(0, |pq| pq.as_str().len()) > table.limits.max_uri_bytes
        {
            table.metrics.uri_too_long.inc();
            let completion = Completion::new(Arc::clone(&table), start, None);
            return local_reply(
                StatusCode::URI_TOO_LONG,
                "request URI too long\n",
                completion,
                ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR,
            );
        }

        // Request smuggling: hyper reads a request with both Content-Length and Transfer-Encoding
        // by its chunked framing; the framing watch saw both and the request is refused instead.
        if parts.version != Version::HTTP_2 && conn.framing.next_request_is_ambiguous() {
            table.metrics.bad_request.inc();
            let completion = Completion::new(Arc::clone(&table), start, None);
            let mut resp = local_reply(
                StatusCode::BAD_REQUEST,
                "bad request: both Content-Length and Transfer-Encoding\n",
                completion,
                ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR,
            );
            // hyper closes the connection after a response that says so: the bytes behind this
            // request are never read as another one.
            resp.headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            return resp;
        }

        let downstream_version = parts.version;

        // The authority: Host for HTTP/1.1, :authority for HTTP/2. Both are views of the request's
        // shared buffer: cloning them bumps a reference count where a String would copy (and free).
        let host = parts.headers.get(HOST).cloned();
        let uri_authority = parts.uri.authority().cloned();
        let authority: &str = match host.as_ref().and_then(|h| h.to_str().ok()) {
            Some(h) => h,
            None => uri_authority.as_ref().map_or("", |a| a.as_str()),
        };

        // Forwarding headers first, so the access log sees the request id and XFF as sent upstream.
        strip_hop_by_hop(&mut parts.headers, upgrade);
        add_forwarding(&mut parts.headers, &conn.client_ip, conn.scheme);
        ensure_request_id(&mut parts.headers);
        // Tracing: starts the span and updates the forwarded traceparent (nothing when not
        // configured).
        let span = ctx.tracer.as_ref().and_then(|tracer| {
            let start = SpanStart {
                direction: table.direction,
                listener: &ctx.name,
                method: &parts.method,
                path: parts.uri.path(),
                scheme: conn.scheme,
                authority,
                version: downstream_version,
                client: conn.remote,
            };
            tracer.begin(&mut parts.headers, &start)
        });

        let log = table.access_log.as_ref().map(|logger| {
            let captured = CapturedHeaders::capture(&parts.headers, logger.request_headers());
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            Box::new(LogContext {
                start_time: SystemTime::now(),
                method: parts.method.clone(),
                target: LogTarget::new(authority, path),
                protocol: protocol_name(downstream_version),
                scheme: conn.scheme,
                request_headers: captured,
                response_headers: None,
                // A bodiless request has nothing to count: no counter to allocate.
                bytes_received: (!body.is_end_stream()).then(|| Arc::new(AtomicU64::new(0))),
                upstream_service_time: None,
                remote: conn.remote,
                local: conn.local,
            })
        });
        let mut completion = Completion::new(Arc::clone(&table), start, log);
        completion.span = span;

        // === Route ===
        let path = normalize_path(parts.uri.path());
        let query = parts.uri.query();
        let view = RequestView {
            method: &parts.method,
            path: &path,
            query,
            headers: &parts.headers,
            scheme: conn.scheme,
            port: conn.port,
        };
        // Transparent mode routes by the port the client dialled, then Host: a Host without a port
        // is looked up with that port first (a domain written without a port still matches).
        let with_port;
        let lookup: &str = match conn.original_dst {
            Some(dst) if !has_port(authority) => {
                with_port = format!("{authority}:{}", dst.port());
                &with_port
            }
            _ => authority,
        };
        let vhost = table.vhosts.find(lookup);
        let matched = vhost.and_then(|(vi, vh)| {
            vh.routes
                .iter()
                .enumerate()
                .find(|(_, r)| r.matches(&view))
                .map(|(ri, r)| (Some((vi, ri)), r))
        });
        let (route_index, route) = match (matched, table.transparent.as_ref(), conn.original_dst) {
            (Some(m), _, _) => m,
            // A destination the table does not know: the mesh egress filter decides.
            (None, Some(transparent), Some(dst)) => match transparent.http_route_for(authority) {
                Some(passthrough) => (None, passthrough),
                None => {
                    transparent.dropped.inc();
                    table.metrics.no_route.record(404);
                    let msg = format!(
                        "egress filter DROP_ALL: {authority:?} ({dst}) is not a service of this mesh\n"
                    );
                    return local_reply(
                        StatusCode::NOT_FOUND,
                        msg,
                        completion,
                        ResponseFlags::NO_ROUTE,
                    );
                }
            },
            (None, _, _) => {
                table.metrics.no_route.record(404);
                let msg = match vhost {
                    None => format!("no route: no virtual host matches authority {authority:?}\n"),
                    Some((_, vh)) => format!(
                        "no route: nothing in virtual host {:?} matches {} {}\n",
                        vh.name, parts.method, path
                    ),
                };
                return local_reply(
                    StatusCode::NOT_FOUND,
                    msg,
                    completion,
                    ResponseFlags::NO_ROUTE,
                );
            }
        };
        completion.route = route_index;

        let cluster = Arc::clone(route.action.targets.pick());
        completion.cluster = Some(Arc::clone(&cluster));
        let picked = match (cluster.original_dst, conn.original_dst) {
            (true, Some(dst)) => Some(cluster.endpoint_for(dst)),
            _ => cluster.pick(),
        };
        let Some(endpoint) = picked else {
            cluster.metrics.no_healthy.inc();
            route.metrics.record(503);
            // Names the DNS name and why, when the cluster's endpoints come from DNS.
            let msg = cluster.no_endpoint_message();
            return local_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                msg,
                completion,
                ResponseFlags::NO_HEALTHY_UPSTREAM,
            );
        };

        // === Build the upstream request ===
        let new_path = route.rewrite_path(&path).or(match path {
            std::borrow::Cow::Owned(p) => Some(p),
            std::borrow::Cow::Borrowed(_) => None,
        });
        let path_and_query = match new_path {
            None => parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
            Some(p) => {
                let pq = match query {
                    Some(q) => format!("{p}?{q}"),
                    None => p,
                };
                match PathAndQuery::try_from(pq) {
                    Ok(pq) => pq,
                    Err(_) => {
                        return local_reply(
                            StatusCode::BAD_REQUEST,
                            "invalid rewritten path\n",
                            completion,
                            ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR,
                        );
                    }
                }
            }
        };
        parts.extensions = http::Extensions::new();

        match cluster.protocol {
            // TCP clusters are refused for HTTP routes at compile time.
            UpstreamProtocol::Http1 | UpstreamProtocol::Tcp => {
                parts.version = Version::HTTP_11;
                parts.uri = Uri::from(path_and_query);
                if let Some(a) = &route.action.rewrite.host {
                    if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                        parts.headers.insert(HOST, v);
                    }
                } else if !parts.headers.contains_key(HOST)
                    && let Ok(v) = HeaderValue::from_str(authority)
                {
                    parts.headers.insert(HOST, v);
                }
            }
            UpstreamProtocol::Http2 => {
                parts.version = Version::HTTP_2;
                parts.headers.remove(HOST);
                let mut uri = http::uri::Parts::default();
                uri.scheme = Some(Scheme::HTTP);
                // Parsed here only: an HTTP/1.1 upstream keeps the Host header as it came.
                let upstream_authority = route
                    .action
                    .rewrite
                    .host
                    .clone()
                    .or_else(|| authority.parse::<Authority>().ok());
                uri.authority =
                    upstream_authority.or_else(|| endpoint.addr.to_string().parse().ok());
                uri.path_and_query = Some(path_and_query);
                match Uri::from_parts(uri) {
                    Ok(u) => parts.uri = u,
                    Err(_) => {
                        return local_reply(
                            StatusCode::BAD_REQUEST,
                            "invalid authority\n",
                            completion,
                            ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR,
                        );
                    }
                }
            }
        }
        let counter = completion
            .log
            .as_ref()
            .and_then(|log| log.bytes_received.clone());
        let policy = route.action.retry.as_ref().filter(|_| !upgrade);
        let breakers = cluster.breakers.as_ref();
        completion.in_flight = Some(conn.activity.request());

        // === Forward (retries, breakers and the request timeout) ===
        // Boxed: the forwarding future is most of the request's ~6 KB state, and wrapping it in the
        // timeout and awaiting it would copy it twice more; a box costs one copy and an allocation.
        let (timer, try_timer) = match timers {
            Some(t) => (Some(&mut t.request), Some(&mut t.per_try)),
            None => (None, None),
        };
        let forwarding = Box::pin(async {
            let permits = match breakers {
                Some(b) => Some(b.acquire().await.map_err(Refused::Overflow)?),
                None => None,
            };
            let prepared = match (policy, upgrade) {
                (Some(_), _) => {
                    let prepared =
                        PreparedBody::replayable(body, counter, table.limits.max_retry_body_bytes)
                            .await
                            .map_err(Refused::ClientBody)?;
                    if !prepared.is_replayable() {
                        cluster.metrics.retry_body_too_large.inc();
                    }
                    prepared
                }
                (None, true) => PreparedBody::once(RequestBody::empty()),
                (None, false) => PreparedBody::once(RequestBody::stream(body, counter)),
            };
            let result = forward(
                &cluster, endpoint, parts, prepared, policy, upgrade, try_timer,
            )
            .await;
            Ok::<_, Refused>((result, permits))
        });
        // The request timeout runs from the request's arrival to the response head.
        let deadline = route
            .action
            .request_timeout
            .map(|t| tokio::time::Instant::from_std(start) + t);
        let outcome = match (deadline, timer) {
            (Some(deadline), Some(timer)) => {
                timer.set(deadline);
                tokio::select! {
                    biased;
                    outcome = forwarding => outcome,
                    () = timer.expired() => Err(Refused::Timeout),
                }
            }
            (Some(deadline), None) => tokio::time::timeout_at(deadline, forwarding)
                .await
                .unwrap_or(Err(Refused::Timeout)),
            (None, _) => forwarding.await,
        };
        let (result, permits) = match outcome {
            Ok(ok) => ok,
            Err(Refused::Overflow(kind)) => {
                match kind {
                    Overflow::Pending => cluster.metrics.overflow_pending.inc(),
                    Overflow::Requests => cluster.metrics.overflow_requests.inc(),
                }
                route.metrics.record(503);
                let msg = format!(
                    "upstream overflow: cluster {:?} is at its {} limit\n",
                    cluster.name,
                    kind.label()
                );
                return local_reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    msg,
                    completion,
                    ResponseFlags::UPSTREAM_OVERFLOW,
                );
            }
            Err(Refused::ClientBody(e)) => {
                route.metrics.record(400);
                let msg = format!("could not read the request body: {e}\n");
                return local_reply(
                    StatusCode::BAD_REQUEST,
                    msg,
                    completion,
                    ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION,
                );
            }
            Err(Refused::Timeout) => {
                cluster.metrics.timeouts.inc();
                cluster.metrics.record(504);
                route.metrics.record(504);
                return local_reply(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream request timeout\n",
                    completion,
                    ResponseFlags::UPSTREAM_TIMEOUT,
                );
            }
        };
        completion.permits = permits;
        let forwarded = match result {
            Ok(f) => f,
            Err(Failed {
                error,
                active,
                flags,
            }) => {
                completion.active = Some(active);
                completion.flags.insert(flags);
                let (status, flag) = match &error {
                    UpstreamError::Timeout(_) => {
                        (StatusCode::GATEWAY_TIMEOUT, ResponseFlags::UPSTREAM_TIMEOUT)
                    }
                    e if e.is_connect() => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        ResponseFlags::UPSTREAM_CONNECT_FAILURE,
                    ),
                    _ => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        ResponseFlags::UPSTREAM_CONNECTION_TERMINATION,
                    ),
                };
                if status == StatusCode::GATEWAY_TIMEOUT {
                    cluster.metrics.timeouts.inc();
                }
                tracing::debug!(cluster = %cluster.name, "upstream request failed: {error}");
                route.metrics.record(status.as_u16());
                let msg = match status {
                    StatusCode::GATEWAY_TIMEOUT => "upstream request timeout\n".to_owned(),
                    _ => {
                        format!(
                            "upstream connect error or disconnect/reset before headers: {error}\n"
                        )
                    }
                };
                return local_reply(status, msg, completion, flag);
            }
        };
        let Forwarded {
            mut head,
            body,
            pooled,
            active,
            upstream_time,
            flags,
        } = forwarded;
        let status = head.status.as_u16();
        route.metrics.record(status);

        let switching = upgrade && head.status == StatusCode::SWITCHING_PROTOCOLS;
        let body = match (switching, client_upgrade, body) {
            (true, Some(client), UpstreamBody::Stream(b)) => {
                let mut resp = Response::from_parts(head, b);
                upgrade::splice(client, hyper::upgrade::on(&mut resp), cluster.name.clone());
                let (h, b) = resp.into_parts();
                head = h;
                UpstreamBody::Stream(b)
            }
            (_, _, body) => body,
        };
        strip_hop_by_hop(&mut head.headers, switching);
        if downstream_version != Version::HTTP_2 {
            head.version = Version::HTTP_11;
        }
        completion.active = Some(active);
        completion.pooled = pooled;
        completion.status = Some(status);
        completion.flags.insert(flags);
        if let Some(span) = completion.span.as_mut() {
            span.grpc_status(&head.headers);
        }
        if let (Some(log), Some(logger)) = (completion.log.as_mut(), table.access_log.as_ref()) {
            log.upstream_service_time = Some(upstream_time);
            log.response_headers = Some(CapturedHeaders::capture(
                &head.headers,
                logger.response_headers(),
            ));
        }
        let idle = route.action.stream_idle;
        Response::from_parts(head, ResponseBody::upstream(body, completion, idle))
    }
}

/// Why a request never reached (or never heard back from) the upstream.
enum Refused {
    Overflow(Overflow),
    ClientBody(hyper::Error),
    Timeout,
}

/// Whether an authority names a port ("host:80", "[::1]:80"; not "host" or "[::1]").
fn has_port(authority: &str) -> bool {
    authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn protocol_name(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// A response made by the proxy, with the reason in a short text body.
fn local_reply(
    status: StatusCode,
    body: impl Into<Bytes>,
    mut completion: Completion,
    flag: ResponseFlags,
) -> Response<ResponseBody> {
    completion.flags.insert(flag);
    completion.status = Some(status.as_u16());
    if let Some(log) = completion.log.as_mut() {
        log.response_headers = Some(CapturedHeaders::default());
    }
    let mut resp = Response::new(ResponseBody::local(body.into(), Some(completion)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
