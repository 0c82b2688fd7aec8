//! The admin server (default 127.0.0.1:9901), with Envoy's endpoint names so that health checks
//! and scrapers written for the App Mesh Envoy keep working. Mutating endpoints take POST only,
//! and only from loopback addresses, whatever address the admin server is bound to.
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::TcpListener;

use crate::cluster::UpstreamProtocol;
use crate::server::Proxy;

/// Changes the log filter at run time (`/logging?level=debug`).
pub type SetLogLevel = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Binds the admin server and serves it in the background; returns the bound address.
pub async fn spawn(
    addr: SocketAddr,
    proxy: Arc<Proxy>,
    set_level: SetLogLevel,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (stream, remote) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("admin accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let proxy = Arc::clone(&proxy);
            let set_level = Arc::clone(&set_level);
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let proxy = Arc::clone(&proxy);
                    let set_level = Arc::clone(&set_level);
                    async move { Ok::<_, Infallible>(route(&proxy, &set_level, remote, req).await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(local)
}

fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    reply(status, "text/plain; charset=utf-8", body)
}

fn json(value: &serde_json::Value) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    reply(StatusCode::OK, "application/json", body)
}

async fn route(
    proxy: &Arc<Proxy>,
    set_level: &SetLogLevel,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let mutating = matches!(path, "/drain_listeners" | "/quitquitquit" | "/logging");
    if mutating {
        if req.method() != Method::POST {
            return text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n");
        }
        // to_canonical: a server bound to [::] sees IPv4 loopback clients as ::ffff:127.0.0.1.
        if !remote.ip().to_canonical().is_loopback() {
            tracing::warn!(%remote, path, "refused a mutating admin request from a non-loopback address");
            return text(
                StatusCode::FORBIDDEN,
                "mutating admin endpoints only answer loopback clients\n",
            );
        }
    }
    match path {
        "/ready" => {
            if proxy.is_ready() {
                text(StatusCode::OK, "LIVE\n")
            } else if proxy.is_draining() {
                text(StatusCode::SERVICE_UNAVAILABLE, "DRAINING\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "PRE_INITIALIZING\n")
            }
        }
        "/live" => text(StatusCode::OK, "OK\n"),
        "/server_info" => {
            let state = if proxy.is_draining() {
                "DRAINING"
            } else if proxy.is_ready() {
                "LIVE"
            } else {
                "PRE_INITIALIZING"
            };
            let config_version = proxy.current().map(|t| t.version.clone());
            json(&json!({
                "state": state,
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_seconds": proxy.uptime().as_secs(),
                "config_version": config_version,
            }))
        }
        "/stats/prometheus" | "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            proxy.stats_exposition().await,
        ),
        "/config_dump" => match proxy.current() {
            Some(t) => match t.source.table() {
                Ok(table) => {
                    let table = serde_json::to_value(&table).unwrap_or_default();
                    json(&json!({ "version": t.version, "table": table }))
                }
                // Encoded by this process from a valid table: not expected, but not a panic.
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the stored table does not decode: {e}\n"),
                ),
            },
            None => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "no routing table loaded yet\n",
            ),
        },
        "/listeners" => json(&serde_json::to_value(proxy.listeners().await).unwrap_or_default()),
        "/clusters" => json(&clusters(proxy)),
        "/certs" => json(&certs(proxy)),
        "/drain_listeners" => {
            // Answered once the listeners have stopped, so that a client (or a test) that asks
            // for the listeners next sees none; open connections finish on their own.
            proxy.stop_listeners().await;
            text(StatusCode::OK, "OK\n")
        }
        "/quitquitquit" => {
            proxy.request_shutdown();
            text(StatusCode::OK, "OK\n")
        }
        "/logging" => {
            let level = req
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("level=")));
            match level {
                None => text(
                    StatusCode::BAD_REQUEST,
                    "use /logging?level=trace|debug|info|warn|error|off\n",
                ),
                Some(l) => match set_level(l) {
                    Ok(()) => text(StatusCode::OK, format!("log level set to {l}\n")),
                    Err(e) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
                },
            }
        }
        "/" => text(
            StatusCode::OK,
            "ferry-proxy admin: /ready /live /server_info /stats/prometheus /metrics /config_dump /listeners /clusters /certs; POST /drain_listeners /quitquitquit /logging?level=L\n",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "no such admin endpoint; GET / lists them\n",
        ),
    }
}

/// Every certificate the running table uses (listener, trust and client certificates), with expiry.
fn certs(proxy: &Proxy) -> serde_json::Value {
    let Some(table) = proxy.current() else {
        return json!([]);
    };
    let mut out = Vec::new();
    for l in &table.listeners {
        if let Some(tls) = &l.table.tls {
            for (role, path, info) in tls.certificates() {
                out.push(
                    json!({ "listener": l.name, "role": role, "path": path, "certificate": info }),
                );
            }
        }
    }
    let mut names: Vec<&String> = table.clusters.keys().collect();
    names.sort();
    for name in names {
        if let Some(tls) = table.clusters.get(name).and_then(|c| c.tls.as_ref()) {
            for (role, path, info) in tls.certificates() {
                out.push(
                    json!({ "cluster": name, "role": role, "path": path, "certificate": info }),
                );
            }
        }
    }
    json!(out)
}

fn clusters(proxy: &Proxy) -> serde_json::Value {
    let Some(table) = proxy.current() else {
        return json!([]);
    };
    let mut names: Vec<&String> = table.clusters.keys().collect();
    names.sort();
    let list: Vec<serde_json::Value> = names
        .into_iter()
        .filter_map(|n| table.clusters.get(n))
        .map(|c| {
            let source = c.endpoint_source();
            let now = crate::resilience::now_ms();
            let endpoints: Vec<serde_json::Value> = c
                .endpoints()
                .iter()
                .map(|e| {
                    // HEALTHY unless an active health check says otherwise; outlier ejection apart.
                    let health = if e.health.is_healthy() {
                        "HEALTHY"
                    } else {
                        "UNHEALTHY"
                    };
                    let mut entry = json!({
                        "address": e.addr.to_string(),
                        "source": source,
                        "health": health,
                        "ejected": e.outlier.is_ejected(now),
                        "times_ejected": e.outlier.times_ejected(),
                        "active_requests": e.active_requests(),
                        "idle_connections": e.idle_connections(),
                    });
                    if c.protocol == UpstreamProtocol::Http2 {
                        let h2 = e.http2_status();
                        // null: the upstream announced no limit.
                        let limit = (h2.stream_limit != usize::MAX).then_some(h2.stream_limit);
                        entry["http2"] = json!({
                            "connections": h2.connections,
                            "streams": h2.streams,
                            "stream_limit": limit,
                        });
                    }
                    entry
                })
                .collect();
            let discovery = c
                .dns()
                .map_or_else(|| json!({ "type": "static" }), |d| d.status_json());
            json!({ "name": c.name, "discovery": discovery, "endpoints": endpoints })
        })
        .collect();
    json!(list)
}
