//! The agent's admin HTTP server: `/ready`, `/metrics` (alias `/stats/prometheus`), `/proxies`
//! (each connected proxy, its version, last ACK/NACK and error) and `/status` (the model).
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use super::Agent;

/// Serves the admin API on `listener` in the background.
pub fn spawn(agent: Arc<Agent>, listener: TcpListener) {
    super::http::serve("admin", agent, listener, |agent, req| async move {
        route(&agent, req)
    });
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

fn json(value: &impl serde::Serialize) -> Response<Full<Bytes>> {
    let body = serde_json::to_string_pretty(value).unwrap_or_default() + "\n";
    reply(StatusCode::OK, "application/json", body)
}

fn route(agent: &Agent, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/ready" => {
            let s = agent.store.current();
            match (&s.model, &s.last_error) {
                (Some(_), _) => reply(StatusCode::OK, "text/plain", "READY\n".into()),
                (None, Some(e)) => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("NOT READY: no valid resources yet:\n{e}\n"),
                ),
                (None, None) => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "NOT READY: loading resources\n".into(),
                ),
            }
        }
        "/live" => reply(StatusCode::OK, "text/plain", "LIVE\n".into()),
        "/metrics" | "/stats/prometheus" => {
            agent.refresh_gauges();
            reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                agent.metrics.render(),
            )
        }
        "/proxies" => json(&agent.proxies()),
        "/status" => {
            let s = agent.store.current();
            let loaded_at = s
                .loaded_at
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64());
            json(&serde_json::json!({
                "resources_dir": agent.store.dir.display().to_string(),
                "ready": s.model.is_some(),
                "generation": s.generation,
                "files": s.files,
                "resources": s.model.as_ref().map_or(0, |m| m.len()),
                "loaded_at": loaded_at,
                "last_rejected": s.last_error,
                "identities": s.model.as_ref().map(|m| m.identities()).unwrap_or_default(),
            }))
        }
        "/" => reply(
            StatusCode::OK,
            "text/plain",
            "ferry-agent admin: /ready /live /metrics /proxies /status\n".into(),
        ),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// Binds `addr` for the admin server.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
