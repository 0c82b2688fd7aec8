//! The App Mesh REST API (2019-01-25), served by `ferry-agent serve --api-addr`, so that the AWS
//! CLI, boto3 and Terraform keep working with `--endpoint-url` pointed at the agent.
//!
//! ```text
//! HTTP request -> SigV4 check (auth) -> route (paths of botocore's appmesh service model)
//!   -> read: the served model, metadata read back from the resource files (resources)
//!   -> write: serialised; the directory as on disk + the change -> whole-model validation
//!             -> atomic file writes (files) -> store reload -> answer (ops)
//! ```
pub mod error;
pub mod files;
pub mod ops;
pub mod resources;
pub mod sigv4;
pub mod time;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Map, Value};
use tokio::net::TcpListener;

pub use error::ApiError;
pub use ops::{Api, ApiConfig, WriteRequest};
pub use resources::Identity;
pub use sigv4::Credentials;

use crate::model::Kind;
use resources::Target;

/// Request bodies larger than this are refused (App Mesh specs are a few KiB).
const MAX_BODY: usize = 1 << 20;

/// Serves the API on `listener` in the background.
pub fn spawn(api: Arc<Api>, listener: TcpListener) {
    crate::server::http::serve("API", api, listener, handle);
}

fn respond(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(id) = HeaderValue::from_str(&resources::random_uuid()) {
        r.headers_mut().insert("x-amzn-requestid", id);
    }
    r
}

fn error_response(e: &ApiError) -> Response<Full<Bytes>> {
    let mut r = respond(e.status, e.body());
    if let Ok(v) = HeaderValue::from_str(e.code) {
        r.headers_mut().insert("x-amzn-errortype", v);
    }
    r
}

async fn handle(api: Arc<Api>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error_response(&ApiError::bad_request(format!(
                "cannot read the request body (at most {MAX_BODY} bytes): {e}"
            )));
        }
    };
    let method = parts.method.clone();
    let path = parts.uri.path().to_owned();
    let op = route(&parts.method, parts.uri.path());
    let name = op.as_ref().map_or_else(|_| "Unknown".to_owned(), Op::name);
    let result = match (authorize(&api, &parts, &body), op) {
        (Err(e), _) | (Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok(op)) => dispatch(Arc::clone(&api), op, &parts, body).await,
    };
    let outcome = result.as_ref().map_or_else(|e| e.code, |_| "ok");
    api.metrics
        .api_requests
        .with_label_values(&[name.as_str(), outcome])
        .inc();
    match result {
        Ok(v) => respond(StatusCode::OK, v.to_string()),
        Err(e) => {
            if e.status.is_server_error() {
                tracing::error!(%method, %path, "API: {e}");
            } else {
                tracing::debug!(%method, %path, "API: {e}");
            }
            error_response(&e)
        }
    }
}

/// With a configured key, every request must be signed with it. Without one, reads are open and
/// writes are refused unless `--allow-unauthenticated`.
fn authorize(api: &Api, parts: &http::request::Parts, body: &[u8]) -> Result<(), ApiError> {
    let cfg = &api.config;
    if let Some(creds) = &cfg.credentials {
        let signed = sigv4::Signed {
            method: parts.method.as_str(),
            raw_path: parts.uri.path(),
            raw_query: parts.uri.query(),
            authority: parts.uri.authority().map(|a| a.as_str()),
            headers: &parts.headers,
            body,
        };
        return sigv4::verify(creds, &signed, std::time::SystemTime::now());
    }
    let read = matches!(parts.method, Method::GET | Method::HEAD);
    if read || cfg.allow_unauthenticated {
        return Ok(());
    }
    Err(ApiError::forbidden(
        "this agent has no API access key configured, so it refuses writes: set --api-access-key-id and FERRY_API_SECRET_ACCESS_KEY (or --api-secret-access-key-file), or start it with --allow-unauthenticated for local use",
    ))
}

fn query_map(q: Option<&str>) -> HashMap<String, String> {
    q.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                String::from_utf8_lossy(&sigv4::percent_decode(k)).into_owned(),
                String::from_utf8_lossy(&sigv4::percent_decode(v)).into_owned(),
            )
        })
        .collect()
}

fn body_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request(
            "the request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::bad_request(format!(
            "the request body is not JSON: {e}"
        ))),
    }
}

/// The collection segment of a URL (`virtualNodes`) for the kinds that live directly in a mesh.
fn collection(seg: &str) -> Option<Kind> {
    [
        Kind::VirtualNode,
        Kind::VirtualRouter,
        Kind::VirtualService,
        Kind::VirtualGateway,
    ]
    .into_iter()
    .find(|k| resources::list_key(*k) == seg)
}

/// What a request asks for.
enum Op {
    List {
        kind: Kind,
        mesh: String,
        parent: String,
    },
    Create {
        kind: Kind,
        mesh: String,
        parent: String,
    },
    Describe(Target),
    Update(Target),
    Delete(Target),
    ListTags,
    Tag,
    Untag,
}

/// A kind as operation names spell it: `VirtualNode`.
fn pascal(kind: Kind) -> &'static str {
    match kind {
        Kind::Mesh => "Mesh",
        Kind::VirtualNode => "VirtualNode",
        Kind::VirtualRouter => "VirtualRouter",
        Kind::Route => "Route",
        Kind::VirtualService => "VirtualService",
        Kind::VirtualGateway => "VirtualGateway",
        Kind::GatewayRoute => "GatewayRoute",
    }
}

impl Op {
    /// The App Mesh operation name (`CreateRoute`, `ListMeshes`), for metrics and logs.
    fn name(&self) -> String {
        match self {
            Op::List {
                kind: Kind::Mesh, ..
            } => "ListMeshes".to_owned(),
            Op::List { kind, .. } => format!("List{}s", pascal(*kind)),
            Op::Create { kind, .. } => format!("Create{}", pascal(*kind)),
            Op::Describe(t) => format!("Describe{}", pascal(t.kind)),
            Op::Update(t) => format!("Update{}", pascal(t.kind)),
            Op::Delete(t) => format!("Delete{}", pascal(t.kind)),
            Op::ListTags => "ListTagsForResource".to_owned(),
            Op::Tag => "TagResource".to_owned(),
            Op::Untag => "UntagResource".to_owned(),
        }
    }
}

/// The App Mesh operation `method path` names (`CreateRoute`, `ListMeshes`), or why it names none.
pub fn operation(method: &Method, path: &str) -> Result<String, ApiError> {
    route(method, path).map(|op| op.name())
}

fn route(method: &Method, path: &str) -> Result<Op, ApiError> {
    let unknown = || {
        ApiError::unknown_operation(format!(
            "no App Mesh (2019-01-25) operation is {method} {path}"
        ))
    };
    let rest = path.strip_prefix("/v20190125/").ok_or_else(unknown)?;
    let segs: Vec<String> = rest
        .trim_end_matches('/')
        .split('/')
        .map(|s| String::from_utf8_lossy(&sigv4::percent_decode(s)).into_owned())
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let target = |kind: Kind, mesh: &str, parent: &str, name: &str| Target {
        kind,
        mesh: mesh.to_owned(),
        parent: parent.to_owned(),
        name: name.to_owned(),
    };
    let one = |t: Target| match *method {
        Method::GET => Ok(Op::Describe(t)),
        Method::PUT => Ok(Op::Update(t)),
        Method::DELETE => Ok(Op::Delete(t)),
        _ => Err(unknown()),
    };
    let many = |kind: Kind, mesh: &str, parent: &str| match *method {
        Method::GET => Ok(Op::List {
            kind,
            mesh: mesh.to_owned(),
            parent: parent.to_owned(),
        }),
        Method::PUT => Ok(Op::Create {
            kind,
            mesh: mesh.to_owned(),
            parent: parent.to_owned(),
        }),
        _ => Err(unknown()),
    };
    match (method, s.as_slice()) {
        (&Method::GET, ["tags"]) => Ok(Op::ListTags),
        (&Method::PUT, ["tag"]) => Ok(Op::Tag),
        (&Method::PUT, ["untag"]) => Ok(Op::Untag),
        (_, ["meshes"]) => many(Kind::Mesh, "", ""),
        (_, ["meshes", m]) => one(target(Kind::Mesh, m, "", m)),
        (_, ["meshes", m, "virtualRouter", r, "routes"]) => many(Kind::Route, m, r),
        (_, ["meshes", m, "virtualRouter", r, "routes", n]) => one(target(Kind::Route, m, r, n)),
        (_, ["meshes", m, "virtualGateway", g, "gatewayRoutes"]) => many(Kind::GatewayRoute, m, g),
        (_, ["meshes", m, "virtualGateway", g, "gatewayRoutes", n]) => {
            one(target(Kind::GatewayRoute, m, g, n))
        }
        (_, ["meshes", m, c]) => many(collection(c).ok_or_else(unknown)?, m, ""),
        (_, ["meshes", m, c, n]) => one(target(collection(c).ok_or_else(unknown)?, m, "", n)),
        _ => Err(unknown()),
    }
}

/// The body keys each operation takes; anything else is refused, so a typo is not ignored.
fn check_keys(body: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    match body.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::bad_request(format!(
            "unknown field {k:?}: expected {}",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

fn string_field(body: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_request(format!("{key}: must be a string"))),
    }
}

/// App Mesh names: 1..255 characters.
fn check_name(key: &str, name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.chars().count() > 255 {
        return Err(ApiError::bad_request(format!(
            "{key}: must be 1 to 255 characters"
        )));
    }
    Ok(())
}

fn if_match(parts: &http::request::Parts) -> Result<Option<i64>, ApiError> {
    let Some(v) = parts.headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .map(|s| s.trim().trim_matches('"'))
        .and_then(|s| s.parse().ok())
        .map(Some)
        .ok_or_else(|| ApiError::bad_request("If-Match: expected the resource's version number"))
}

/// Runs a blocking write off the async workers.
async fn blocking(
    f: impl FnOnce() -> Result<Value, ApiError> + Send + 'static,
) -> Result<Value, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ApiError::internal(format!("the write failed: {e}"))))
}

async fn dispatch(
    api: Arc<Api>,
    op: Op,
    parts: &http::request::Parts,
    body: Bytes,
) -> Result<Value, ApiError> {
    let q = query_map(parts.uri.query());
    if let Some(owner) = q.get("meshOwner")
        && *owner != api.config.identity.account
    {
        return Err(ApiError::forbidden(format!(
            "meshOwner {owner} is not this agent's account {}",
            api.config.identity.account
        )));
    }
    let limit = q.get("limit").map(String::as_str);
    let next = q.get("nextToken").map(String::as_str);
    let arn = || {
        q.get("resourceArn")
            .cloned()
            .ok_or_else(|| ApiError::bad_request("resourceArn is required"))
    };
    match op {
        Op::List { kind, mesh, parent } => api.list(kind, &mesh, &parent, limit, next),
        Op::Describe(t) => api.describe(&t),
        Op::ListTags => api.list_tags(&arn()?, limit, next),
        Op::Create { kind, mesh, parent } => {
            let mut b = body_object(&body)?;
            let name_key = kind.name_key();
            check_keys(&b, &[name_key, "spec", "tags", "clientToken"])?;
            let name = string_field(&b, name_key)?
                .ok_or_else(|| ApiError::bad_request(format!("{name_key} is required")))?;
            check_name(name_key, &name)?;
            let t = Target {
                kind,
                mesh: if kind == Kind::Mesh {
                    name.clone()
                } else {
                    mesh
                },
                parent,
                name,
            };
            let req = WriteRequest {
                spec: b.remove("spec"),
                tags: b.remove("tags"),
                client_token: string_field(&b, "clientToken")?,
                if_match: None,
            };
            blocking(move || api.create(&t, req)).await
        }
        Op::Update(t) => {
            let mut b = body_object(&body)?;
            check_keys(&b, &["spec", "clientToken"])?;
            let req = WriteRequest {
                spec: b.remove("spec"),
                tags: None,
                client_token: string_field(&b, "clientToken")?,
                if_match: if_match(parts)?,
            };
            blocking(move || api.update(&t, req)).await
        }
        Op::Delete(t) => {
            let v = if_match(parts)?;
            blocking(move || api.delete(&t, v)).await
        }
        Op::Tag | Op::Untag => {
            let b = body_object(&body)?;
            let arn = arn()?;
            let (add, remove) = if matches!(op, Op::Tag) {
                check_keys(&b, &["tags"])?;
                let tags = b
                    .get("tags")
                    .cloned()
                    .ok_or_else(|| ApiError::bad_request("tags is required"))?;
                (Some(tags), None)
            } else {
                check_keys(&b, &["tagKeys"])?;
                let keys = b
                    .get("tagKeys")
                    .cloned()
                    .ok_or_else(|| ApiError::bad_request("tagKeys is required"))?;
                (None, Some(keys))
            };
            blocking(move || api.retag(&arn, add.as_ref(), remove.as_ref())).await
        }
    }
}
