//! The compiler: one routing table per proxy identity (`MESH/virtualNode/NAME` or
//! `MESH/virtualGateway/NAME`), from a validated model.
//!
//! Layout of a virtual node's table (App Mesh's, see README "Agent"):
//! - `ingress` (0.0.0.0:15000, INBOUND): one route per node listener to cluster `ingress:PORT`, the
//!   local app on 127.0.0.1:PORT, with the listener's TLS, timeouts, pool and health check;
//! - `egress` (127.0.0.1:15001, OUTBOUND): one virtual host per backend virtual service and port,
//!   whose domains are the service name with and without port, holding its router's routes;
//!   weighted targets are clusters `NODE:PORT` found by the target node's service discovery.
//!
//! App Mesh's hidden defaults apply where a route sets none (2 retries on connection errors,
//! refused streams and 503/gateway errors; a 15 s per-request timeout). Output is deterministic:
//! the same model gives the same table, and the version is a hash of its content.
mod gateway;
mod node;
mod outbound;

use std::collections::BTreeMap;
use std::fmt;

use ferry_api::v1::{self, retry_policy};
use prost::Message;

use crate::model::{
    self, ClientPolicyTls, HeaderMatch, IpPreference, ListenerTls, Logging, Model, Problem,
    Problems, Res, Subject, TlsMode,
};

/// App Mesh's listener defaults.
pub const DEFAULT_INGRESS_PORT: u16 = 15000;
pub const DEFAULT_EGRESS_PORT: u16 = 15001;
/// App Mesh's default per-request timeout.
pub const DEFAULT_REQUEST_TIMEOUT_SECS: i64 = 15;
/// The priority given to routes that set none: after every route that does (App Mesh's are 0..1000).
pub const UNSET_PRIORITY: u32 = 1001;

/// Per-proxy settings of the compiled table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Options {
    pub ingress_port: u16,
    pub egress_port: u16,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ingress_port: DEFAULT_INGRESS_PORT,
            egress_port: DEFAULT_EGRESS_PORT,
        }
    }
}

/// A proxy identity.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Identity {
    Node { mesh: String, name: String },
    Gateway { mesh: String, name: String },
}

impl Identity {
    /// `MESH/virtualNode/NAME`, `MESH/virtualGateway/NAME`, or the resource's ARN
    /// (`arn:aws:appmesh:REGION:ACCOUNT:mesh/MESH/virtualNode/NAME`, App Mesh's
    /// `APPMESH_RESOURCE_ARN`).
    pub fn parse(s: &str) -> Result<Identity, String> {
        let rest = match s.strip_prefix("arn:") {
            Some(arn) => arn
                .split_once(":mesh/")
                .map(|(_, r)| r)
                .ok_or_else(|| format!("{s:?}: an App Mesh ARN has \":mesh/MESH/...\""))?,
            None => s,
        };
        let mut parts: Vec<&str> = rest.split('/').collect();
        // App Mesh's older images name the node `mesh/MESH/virtualNode/NAME`
        // (APPMESH_VIRTUAL_NODE_NAME).
        if parts.len() == 4 && parts[0] == "mesh" {
            parts.remove(0);
        }
        match parts.as_slice() {
            [mesh, "virtualNode", name] if !mesh.is_empty() && !name.is_empty() => {
                Ok(Identity::Node {
                    mesh: (*mesh).to_owned(),
                    name: (*name).to_owned(),
                })
            }
            [mesh, "virtualGateway", name] if !mesh.is_empty() && !name.is_empty() => {
                Ok(Identity::Gateway {
                    mesh: (*mesh).to_owned(),
                    name: (*name).to_owned(),
                })
            }
            _ => Err(format!(
                "{s:?} is not a proxy identity: expected MESH/virtualNode/NAME or MESH/virtualGateway/NAME"
            )),
        }
    }

    pub fn mesh(&self) -> &str {
        match self {
            Identity::Node { mesh, .. } | Identity::Gateway { mesh, .. } => mesh,
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Node { mesh, name } => write!(f, "{mesh}/virtualNode/{name}"),
            Identity::Gateway { mesh, name } => write!(f, "{mesh}/virtualGateway/{name}"),
        }
    }
}

/// A compiled table, with what was compiled approximately.
#[derive(Clone, Debug, PartialEq)]
pub struct Compiled {
    pub table: v1::RoutingTable,
    /// Settings that Ferry could only approximate, one sentence each (logged, shown by `compile`).
    pub warnings: Vec<String>,
}

/// Why an identity has no table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompileError {
    /// The identity names nothing in the model.
    Unknown(String),
    /// Its resources use something Ferry cannot serve.
    Unsupported(Problems),
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileError::Unknown(m) => f.write_str(m),
            CompileError::Unsupported(p) => write!(f, "{p}"),
        }
    }
}

impl std::error::Error for CompileError {}

/// Compiles the table of `identity` from a validated `model`.
pub fn compile(
    model: &Model,
    identity: &Identity,
    opts: Options,
) -> Result<Compiled, CompileError> {
    let mesh_name = identity.mesh();
    let Some(mesh) = model.meshes.get(mesh_name) else {
        return Err(CompileError::Unknown(format!(
            "{identity}: there is no mesh {mesh_name:?} in the resources"
        )));
    };
    let mut cx = Cx {
        model,
        mesh,
        opts,
        clusters: BTreeMap::new(),
        warnings: Vec::new(),
        problems: Vec::new(),
    };
    let listeners = match identity {
        Identity::Node { mesh: m, name } => {
            let Some(node) = model.node(m, name) else {
                return Err(CompileError::Unknown(format!(
                    "{identity}: there is no virtualNode {name:?} in mesh {m}"
                )));
            };
            node::listeners(&mut cx, node)
        }
        Identity::Gateway { mesh: m, name } => {
            let Some(gw) = model.gateway(m, name) else {
                return Err(CompileError::Unknown(format!(
                    "{identity}: there is no virtualGateway {name:?} in mesh {m}"
                )));
            };
            gateway::listeners(&mut cx, gw)
        }
    };
    if !cx.problems.is_empty() {
        return Err(CompileError::Unsupported(Problems(cx.problems)));
    }
    let mut table = v1::RoutingTable {
        version: String::new(),
        listeners,
        clusters: cx.clusters.into_values().collect(),
        dns: None,
        node_id: identity.to_string(),
    };
    table.version = version_of(&table);
    Ok(Compiled {
        table,
        warnings: cx.warnings,
    })
}

/// The version of a table: a hash of its protobuf encoding (with the version field empty).
/// FNV-1a: stable across builds, platforms and restarts, so a restarted agent computes the very
/// versions its proxies already run.
pub fn version_of(table: &v1::RoutingTable) -> String {
    let mut t = table.clone();
    t.version.clear();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in t.encode_to_vec() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Compilation state for one identity.
pub(crate) struct Cx<'m> {
    pub model: &'m Model,
    pub mesh: &'m Res<model::MeshSpec>,
    pub opts: Options,
    pub clusters: BTreeMap<String, v1::Cluster>,
    pub warnings: Vec<String>,
    pub problems: Vec<Problem>,
}

impl Cx<'_> {
    pub fn mesh_ip_preference(&self) -> Option<IpPreference> {
        self.mesh
            .spec
            .service_discovery
            .as_ref()
            .and_then(|s| s.ip_preference)
    }

    /// Adds `cluster`; when a different cluster already has its name, the name gets `@qualifier`.
    /// Returns the name used.
    pub fn add_cluster(&mut self, mut cluster: v1::Cluster, qualifier: &str) -> String {
        match self.clusters.get(&cluster.name) {
            None => {}
            Some(existing) if *existing == cluster => return cluster.name,
            Some(_) => {
                cluster.name = format!("{}@{qualifier}", cluster.name);
                if let Some(existing) = self.clusters.get(&cluster.name)
                    && *existing == cluster
                {
                    return cluster.name;
                }
            }
        }
        let name = cluster.name.clone();
        self.clusters.insert(name.clone(), cluster);
        name
    }

    pub fn unsupported(
        &mut self,
        subject: &Subject,
        origin: &model::Origin,
        field: &str,
        msg: &str,
    ) {
        self.problems.push(Problem {
            file: origin.file.clone(),
            position: origin.position(field),
            subject: Some(Box::new(subject.clone())),
            field: field.to_owned(),
            message: msg.to_owned(),
        });
    }
}

// === Shared conversions ===

pub(crate) fn duration(d: &model::Duration) -> pbjson_types::Duration {
    let ms = d.millis();
    pbjson_types::Duration {
        seconds: i64::try_from(ms / 1000).unwrap_or(i64::MAX),
        nanos: i32::try_from((ms % 1000) * 1_000_000).unwrap_or(0),
    }
}

pub(crate) fn seconds(s: i64) -> pbjson_types::Duration {
    pbjson_types::Duration {
        seconds: s,
        nanos: 0,
    }
}

pub(crate) fn millis(ms: i64) -> pbjson_types::Duration {
    duration(&model::Duration {
        unit: model::DurationUnit::Ms,
        value: ms,
    })
}

/// The listener-wide defaults: App Mesh's 15 s per-request timeout.
pub(crate) fn default_timeouts() -> Option<v1::Timeouts> {
    Some(v1::Timeouts {
        request: Some(seconds(DEFAULT_REQUEST_TIMEOUT_SECS)),
        idle: None,
    })
}

pub(crate) fn http_timeouts(t: Option<&model::HttpTimeout>) -> Option<v1::Timeouts> {
    let t = t?;
    if t.per_request.is_none() && t.idle.is_none() {
        return None;
    }
    Some(v1::Timeouts {
        request: t.per_request.as_ref().map(duration),
        idle: t.idle.as_ref().map(duration),
    })
}

pub(crate) fn ip_preference(p: IpPreference) -> v1::IpPreference {
    match p {
        IpPreference::Ipv4Preferred => v1::IpPreference::IPv4Preferred,
        IpPreference::Ipv6Preferred => v1::IpPreference::IPv6Preferred,
        IpPreference::Ipv4Only => v1::IpPreference::IPv4Only,
        IpPreference::Ipv6Only => v1::IpPreference::IPv6Only,
    }
}

pub(crate) fn listener_protocol(p: model::PortProtocol) -> v1::listener::Protocol {
    use model::PortProtocol as P;
    use v1::listener::Protocol as L;
    match p {
        P::Http => L::Http,
        P::Http2 => L::Http2,
        P::Grpc => L::Grpc,
        P::Tcp => L::Tcp,
    }
}

/// App Mesh's Envoy name of a cluster, `cds_{ingress|egress}_MESH_NODE_PROTOCOL_PORT`, carried in
/// the table as the cluster's `stats_name`: the proxy exports it as `envoy_cluster_name` under
/// `--stats-compat envoy`, so dashboards and alerts written for App Mesh's Envoy find their
/// series. Ferry's own cluster names (`NODE:PORT`, `ingress:PORT`) stay as they are: they are
/// what native metrics, logs and `/clusters` show.
pub(crate) fn appmesh_stats_name(
    direction: &str,
    mesh: &str,
    node: &str,
    protocol: model::PortProtocol,
    port: i64,
) -> String {
    format!(
        "cds_{direction}_{mesh}_{node}_{}_{port}",
        port_protocol_name(protocol)
    )
}

/// App Mesh's spelling of a port protocol in Envoy names.
pub(crate) fn port_protocol_name(p: model::PortProtocol) -> &'static str {
    use model::PortProtocol as P;
    match p {
        P::Http => "http",
        P::Http2 => "http2",
        P::Grpc => "grpc",
        P::Tcp => "tcp",
    }
}

pub(crate) fn cluster_protocol(p: model::PortProtocol) -> v1::cluster::Protocol {
    use model::PortProtocol as P;
    use v1::cluster::Protocol as C;
    match p {
        P::Http => C::Http1,
        P::Http2 => C::Http2,
        P::Grpc => C::Grpc,
        P::Tcp => C::Tcp,
    }
}

pub(crate) fn access_log(l: Option<&Logging>) -> Option<v1::AccessLog> {
    let file = l?.access_log.as_ref()?.file.as_ref()?;
    let format = file.format.as_ref().and_then(|f| {
        if let Some(t) = &f.text {
            return Some(v1::access_log::Format::Text(t.clone()));
        }
        f.json.as_ref().map(|j| {
            v1::access_log::Format::Json(v1::JsonFormat {
                fields: j
                    .iter()
                    .map(|kv| v1::KeyValue {
                        key: kv.key.clone(),
                        value: kv.value.clone(),
                    })
                    .collect(),
            })
        })
    });
    Some(v1::AccessLog {
        path: file.path.clone(),
        format,
    })
}

pub(crate) fn header_match(h: &HeaderMatch) -> v1::HeaderMatch {
    use v1::header_match::Match as M;
    let m = h.r#match.as_ref().map(|m| {
        if let Some(v) = &m.exact {
            M::Exact(v.clone())
        } else if let Some(v) = &m.prefix {
            M::Prefix(v.clone())
        } else if let Some(v) = &m.suffix {
            M::Suffix(v.clone())
        } else if let Some(v) = &m.regex {
            M::Regex(v.clone())
        } else if let Some(r) = &m.range {
            M::Range(v1::Int64Range {
                start: r.start,
                end: r.end,
            })
        } else {
            M::Present(true)
        }
    });
    v1::HeaderMatch {
        name: h.name.to_ascii_lowercase(),
        r#match: Some(m.unwrap_or(M::Present(true))),
        invert: h.invert,
    }
}

pub(crate) fn query_match(q: &model::QueryParameterMatch) -> v1::QueryParameterMatch {
    use v1::query_parameter_match::Match as M;
    v1::QueryParameterMatch {
        name: q.name.clone(),
        r#match: Some(match q.r#match.as_ref().and_then(|m| m.exact.clone()) {
            Some(v) => M::Exact(v),
            None => M::Present(true),
        }),
    }
}

/// App Mesh's default retry policy (see [`ferry_api::appmesh_defaults::retry_policy`]).
pub(crate) fn default_retry(grpc: bool) -> v1::RetryPolicy {
    ferry_api::appmesh_defaults::retry_policy(grpc)
}

pub(crate) fn retry(r: &model::RetryPolicy) -> v1::RetryPolicy {
    use retry_policy::{GrpcRetryEvent as G, HttpRetryEvent as H, TcpRetryEvent as T};
    let http = r
        .http_retry_events
        .iter()
        .filter_map(|e| match e.as_str() {
            "server-error" => Some(H::ServerError as i32),
            "gateway-error" => Some(H::GatewayError as i32),
            "client-error" => Some(H::ClientError as i32),
            "stream-error" => Some(H::StreamError as i32),
            _ => None,
        })
        .collect();
    let tcp = r
        .tcp_retry_events
        .iter()
        .filter(|e| *e == "connection-error")
        .map(|_| T::ConnectionError as i32)
        .collect();
    let grpc = r
        .grpc_retry_events
        .iter()
        .filter_map(|e| match e.as_str() {
            "cancelled" => Some(G::Cancelled as i32),
            "deadline-exceeded" => Some(G::DeadlineExceeded as i32),
            "internal" => Some(G::Internal as i32),
            "resource-exhausted" => Some(G::ResourceExhausted as i32),
            "unavailable" => Some(G::Unavailable as i32),
            _ => None,
        })
        .collect();
    v1::RetryPolicy {
        max_retries: u32::try_from(r.max_retries).unwrap_or(0),
        per_try_timeout: Some(duration(&r.per_retry_timeout)),
        http_retry_events: http,
        tcp_retry_events: tcp,
        grpc_retry_events: grpc,
        backoff_base: None,
        backoff_max: None,
    }
}

/// Server-side TLS of a listener; `None` when disabled. ACM and SDS cannot be served by Ferry.
pub(crate) fn server_tls(
    cx: &mut Cx<'_>,
    t: &ListenerTls,
    subject: &Subject,
    origin: &model::Origin,
    field: &str,
) -> Option<v1::ServerTls> {
    use v1::server_tls::Mode;
    let mode = match t.mode {
        TlsMode::Disabled => return None,
        TlsMode::Permissive => Mode::Permissive,
        TlsMode::Strict => Mode::Strict,
    };
    let (chain, key) = if let Some(f) = &t.certificate.file {
        (f.certificate_chain.clone(), f.private_key.clone())
    } else {
        let (which, why) = if t.certificate.acm.is_some() {
            ("acm", ACM_UNSUPPORTED)
        } else {
            ("sds", SDS_UNSUPPORTED)
        };
        cx.unsupported(
            subject,
            origin,
            &format!("{field}.certificate.{which}"),
            why,
        );
        return None;
    };
    let validation = t
        .validation
        .as_ref()
        .and_then(|v| tls_validation(cx, v, subject, origin, &format!("{field}.validation")));
    Some(v1::ServerTls {
        mode: mode as i32,
        certificate_chain: chain,
        private_key: key,
        validation,
        alpn: Vec::new(),
    })
}

pub(crate) const ACM_UNSUPPORTED: &str = "ACM certificates and ACM Private CA trust exist only inside App Mesh: export the certificate (or CA chain) to PEM files and use file instead";
pub(crate) const SDS_UNSUPPORTED: &str =
    "SDS secrets are not supported by Ferry yet: mount the PEM files and use file instead";

fn tls_validation(
    cx: &mut Cx<'_>,
    v: &model::TlsValidation,
    subject: &Subject,
    origin: &model::Origin,
    field: &str,
) -> Option<v1::TlsValidation> {
    let trust = if let Some(f) = &v.trust.file {
        f.certificate_chain.clone()
    } else {
        let (which, why) = if v.trust.acm.is_some() {
            ("acm", ACM_UNSUPPORTED)
        } else {
            ("sds", SDS_UNSUPPORTED)
        };
        cx.unsupported(subject, origin, &format!("{field}.trust.{which}"), why);
        return None;
    };
    Some(v1::TlsValidation {
        trust_chain: trust,
        subject_alt_names: v
            .subject_alternative_names
            .as_ref()
            .map(|s| s.r#match.exact.clone())
            .unwrap_or_default(),
    })
}

/// Client-side TLS toward an upstream port, from a client policy; `None` when the policy does not
/// cover `port`.
pub(crate) fn client_tls(
    cx: &mut Cx<'_>,
    t: &ClientPolicyTls,
    port: i64,
    subject: &Subject,
    origin: &model::Origin,
    field: &str,
) -> Option<v1::ClientTls> {
    if !t.ports.is_empty() && !t.ports.contains(&port) {
        return None;
    }
    let validation = tls_validation(
        cx,
        &t.validation,
        subject,
        origin,
        &format!("{field}.validation"),
    );
    let (chain, key) = match &t.certificate {
        None => (String::new(), String::new()),
        Some(c) => match &c.file {
            Some(f) => (f.certificate_chain.clone(), f.private_key.clone()),
            None => {
                cx.unsupported(
                    subject,
                    origin,
                    &format!("{field}.certificate.sds"),
                    SDS_UNSUPPORTED,
                );
                (String::new(), String::new())
            }
        },
    };
    Some(v1::ClientTls {
        enforce: t.enforce,
        ports: Vec::new(),
        validation,
        certificate_chain: chain,
        private_key: key,
        sni: String::new(),
        alpn: Vec::new(),
    })
}

/// Sort key of a route without priority: exact paths, then regexes, then longer prefixes first.
pub(crate) fn specificity(
    prefix: Option<&str>,
    exact: bool,
    regex: bool,
) -> (u8, std::cmp::Reverse<usize>) {
    if exact {
        (0, std::cmp::Reverse(0))
    } else if regex {
        (1, std::cmp::Reverse(0))
    } else {
        (2, std::cmp::Reverse(prefix.map_or(0, str::len)))
    }
}
