//! Validates a routing table and compiles it into a [`RuntimeTable`]. Every error names the field
//! path (`listeners[0].virtualHosts[1].routes[2].match.regex`), which the loader turns into a line.
//!
//! Fields whose behaviour is not built yet are refused by name rather than silently ignored: a
//! table that asks for retries or TLS must not appear to have them.
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_api::v1::{self, cluster, header_match, listener, query_parameter_match, route_match};
use http::{HeaderName, Method};

use super::dns::DnsCtx;
use super::field_path::{Field, Index};
use super::{AccessLogger, Limits, ListenerSpec, ListenerTable, RuntimeTable};
use super::{policies, transport};
use crate::access_log::{Format, SinkRegistry};
use crate::cluster::{Cluster, ClusterSettings, LbPolicy, UpstreamProtocol};
use crate::discovery::Discovery;
use crate::metrics::Metrics;
use crate::resilience::health;
use crate::route::{
    HeaderMatcher, PathMatch, QueryMatcher, Rewrite, Route, RouteAction, StringMatch, VirtualHost,
    VirtualHosts, WeightedTargets,
};

/// App Mesh's default per-request timeout.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_UPSTREAM_IDLE: Duration = Duration::from_secs(60);
/// App Mesh's default idle timeout for client connections.
const DEFAULT_CONNECTION_IDLE: Duration = Duration::from_secs(300);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct CompileError {
    pub path: String,
    pub message: String,
}

pub(super) fn err<T>(
    path: impl fmt::Display,
    message: impl Into<String>,
) -> Result<T, CompileError> {
    Err(CompileError {
        path: path.to_string(),
        message: message.into(),
    })
}

/// Compiles `source`. Clusters defined exactly as in `previous` are reused with their live state.
/// A table with DNS clusters needs [`compile_with`] and the proxy's DNS discovery.
pub fn compile(
    source: v1::RoutingTable,
    previous: Option<&RuntimeTable>,
    metrics: &Metrics,
    sinks: &mut SinkRegistry,
) -> Result<RuntimeTable, CompileError> {
    compile_with(source, previous, metrics, sinks, None)
}

/// [`compile`], with new DNS clusters joined to `discovery`'s resolution loops.
pub fn compile_with(
    source: v1::RoutingTable,
    previous: Option<&RuntimeTable>,
    metrics: &Metrics,
    sinks: &mut SinkRegistry,
    discovery: Option<&Discovery>,
) -> Result<RuntimeTable, CompileError> {
    let dns = super::dns::prepare(&source, discovery)?;
    let clusters = compile_clusters(&source, previous, metrics, dns.as_ref())?;
    let mut listeners = Vec::with_capacity(source.listeners.len());
    let mut names = HashSet::new();
    let mut addresses = HashSet::new();
    for (i, l) in source.listeners.iter().enumerate() {
        let path = format!("listeners[{i}]");
        let spec = compile_listener(l, &path, &clusters, metrics, sinks)?;
        if !names.insert(spec.name.clone()) {
            return err(
                format!("{path}.name"),
                format!("duplicate listener name {:?}", spec.name),
            );
        }
        if spec.address.port() != 0 && !addresses.insert(spec.address) {
            return err(
                format!("{path}.address"),
                format!("{} is used by another listener", spec.address),
            );
        }
        listeners.push(spec);
    }
    let version = if source.version.is_empty() {
        content_version(&source)
    } else {
        source.version.clone()
    };
    Ok(RuntimeTable {
        version,
        source: super::TableSource::new(source),
        listeners,
        clusters,
        dns: dns.map(|d| d.config),
    })
}

/// A stable short version for tables that carry none: a hash of their canonical JSON.
fn content_version(table: &v1::RoutingTable) -> String {
    // FNV-1a: stable across builds and platforms, unlike std's DefaultHasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in ferry_api::encode_json(table).bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("sha-fnv-{h:016x}")
}

pub(super) fn duration(
    d: Option<&pbjson_types::Duration>,
    path: &(impl fmt::Display + ?Sized),
) -> Result<Option<Duration>, CompileError> {
    let Some(d) = d else { return Ok(None) };
    if d.seconds < 0 || d.nanos < 0 || d.nanos >= 1_000_000_000 {
        return err(path, "durations must be zero or positive");
    }
    let secs = u64::try_from(d.seconds).unwrap_or(0);
    let nanos = u32::try_from(d.nanos).unwrap_or(0);
    Ok(Some(Duration::new(secs, nanos)))
}

/// A timeout field: absent -> `default`, "0s" -> disabled (None), else the value.
pub(super) fn timeout(
    d: Option<&pbjson_types::Duration>,
    path: &(impl fmt::Display + ?Sized),
    default: Option<Duration>,
) -> Result<Option<Duration>, CompileError> {
    Ok(match duration(d, path)? {
        None => default,
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
    })
}

// === Clusters ===

fn compile_clusters(
    source: &v1::RoutingTable,
    previous: Option<&RuntimeTable>,
    metrics: &Metrics,
    dns: Option<&DnsCtx<'_>>,
) -> Result<HashMap<String, Arc<Cluster>>, CompileError> {
    let mut out = HashMap::with_capacity(source.clusters.len());
    for (i, c) in source.clusters.iter().enumerate() {
        let path = Index("clusters", i);
        if c.name.is_empty() {
            return err(format!("{path}.name"), "a cluster needs a name");
        }
        if out.contains_key(&c.name) {
            return err(
                format!("{path}.name"),
                format!("duplicate cluster name {:?}", c.name),
            );
        }
        let reused = previous
            .and_then(|p| p.clusters.get(&c.name))
            .filter(|old| old.definition == *c)
            .cloned();
        let cluster = match reused {
            Some(old) => old,
            None => {
                let new = Arc::new(compile_cluster(c, &path, metrics)?);
                if let Some(policy) = &new.health {
                    health::spawn(Arc::downgrade(&new), policy.clone());
                }
                if let Some(cluster::Discovery::Dns(d)) = &c.discovery {
                    super::dns::subscribe(&new, d, &path.to_string(), dns)?;
                }
                new
            }
        };
        out.insert(c.name.clone(), cluster);
    }
    Ok(out)
}

fn compile_cluster(
    c: &v1::Cluster,
    path: &(impl fmt::Display + ?Sized),
    metrics: &Metrics,
) -> Result<Cluster, CompileError> {
    let protocol = match c.protocol() {
        cluster::Protocol::Unspecified | cluster::Protocol::Http1 => UpstreamProtocol::Http1,
        cluster::Protocol::Http2 | cluster::Protocol::Grpc => UpstreamProtocol::Http2,
        cluster::Protocol::Tcp => UpstreamProtocol::Tcp,
    };
    let lb = match c.lb_policy() {
        cluster::LbPolicy::RoundRobin => LbPolicy::RoundRobin,
        cluster::LbPolicy::Unspecified | cluster::LbPolicy::LeastRequest => LbPolicy::LeastRequest,
    };
    let outlier = c
        .outlier_detection
        .as_ref()
        .map(|o| policies::outlier(o, &format!("{path}.outlierDetection")))
        .transpose()?;
    let health = c
        .health_check
        .as_ref()
        .map(|h| policies::health(h, &format!("{path}.healthCheck")))
        .transpose()?;
    let breakers = c.connection_pool.as_ref().and_then(policies::breakers);
    let tls = match &c.tls {
        Some(t) => transport::client_tls(t, c, protocol, &format!("{path}.tls"), metrics)?,
        None => None,
    };
    let addrs: Vec<SocketAddr> = match &c.discovery {
        None => return err(path, "a cluster needs staticEndpoints (or dns)"),
        // Filled in by the name's resolution loop (table/dns.rs).
        Some(cluster::Discovery::Dns(_)) => Vec::new(),
        Some(cluster::Discovery::StaticEndpoints(s)) => s
            .endpoints
            .iter()
            .enumerate()
            .map(|(j, e)| {
                e.address.parse::<SocketAddr>().or_else(|_| {
                    err(
                        format!("{path}.staticEndpoints.endpoints[{j}].address"),
                        format!("{:?} is not an ip:port address", e.address),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let connect_timeout = timeout(
        c.connect_timeout.as_ref(),
        &Field(path, "connectTimeout"),
        Some(DEFAULT_CONNECT_TIMEOUT),
    )?;
    let idle_timeout = duration(c.idle_timeout.as_ref(), &Field(path, "idleTimeout"))?
        .unwrap_or(DEFAULT_UPSTREAM_IDLE);
    let settings = ClusterSettings {
        protocol,
        lb,
        connect_timeout,
        idle_timeout,
        outlier,
        health,
        breakers,
        tls,
        original_dst: false,
    };
    let cluster = Cluster::new(c.clone(), settings, metrics.cluster(&c.name));
    cluster.set_endpoints(&addrs);
    Ok(cluster)
}

// === Listeners ===

fn compile_listener(
    l: &v1::Listener,
    path: &str,
    clusters: &HashMap<String, Arc<Cluster>>,
    metrics: &Metrics,
    sinks: &mut SinkRegistry,
) -> Result<ListenerSpec, CompileError> {
    if l.name.is_empty() {
        return err(format!("{path}.name"), "a listener needs a name");
    }
    let address: SocketAddr = l.address.parse().or_else(|_| {
        err(
            format!("{path}.address"),
            format!("{:?} is not an ip:port address", l.address),
        )
    })?;
    let is_tcp = l.protocol() == listener::Protocol::Tcp;
    if !is_tcp && !l.tcp_routes.is_empty() {
        // An HTTP listener tells a TCP connection from an HTTP one only by the port the client
        // dialled, so its TCP routes need original destinations and a port each.
        if !l.original_dst {
            return err(
                format!("{path}.tcpRoutes"),
                "TCP routes on an HTTP listener need `originalDst: true` (they are chosen by the port the client dialled); otherwise use `protocol: TCP`",
            );
        }
        if let Some(i) = l.tcp_routes.iter().position(|r| r.port == 0) {
            return err(
                format!("{path}.tcpRoutes[{i}].port"),
                "a TCP route on an HTTP listener needs its port: connections to other ports are HTTP",
            );
        }
    }
    if is_tcp && !l.virtual_hosts.is_empty() {
        return err(
            format!("{path}.virtualHosts"),
            "a TCP listener has tcpRoutes, not virtual hosts",
        );
    }
    let tls = match &l.tls {
        Some(t) => transport::server_tls(t, is_tcp, &format!("{path}.tls"), &l.name, metrics)?,
        None => None,
    };
    let timeouts = l.timeouts.as_ref();
    let request_timeout = timeout(
        timeouts.and_then(|t| t.request.as_ref()),
        &format!("{path}.timeouts.request"),
        Some(DEFAULT_REQUEST_TIMEOUT),
    )?;
    let mut limits = compile_limits(l.limits.as_ref(), &format!("{path}.limits"))?;
    limits.idle_timeout = timeout(
        timeouts.and_then(|t| t.idle.as_ref()),
        &format!("{path}.timeouts.idle"),
        Some(DEFAULT_CONNECTION_IDLE),
    )?;
    let access_log = l
        .access_log
        .as_ref()
        .map(|a| compile_access_log(a, &format!("{path}.accessLog"), sinks))
        .transpose()?;

    let mut transparent = transport::transparent(
        l,
        path,
        is_tcp,
        request_timeout,
        limits.idle_timeout,
        metrics,
    )?;
    let tcp = if is_tcp || !l.tcp_routes.is_empty() {
        Some(transport::tcp_routes(
            l,
            path,
            clusters,
            limits.idle_timeout,
            metrics,
        )?)
    } else {
        None
    };
    let mut vhosts = VirtualHosts::default();
    let mut seen_domains = HashSet::new();
    // Borrowed from the source: a name is copied once, into its route, not into this set too.
    let mut route_names: HashSet<&str> = HashSet::new();
    for (j, vh) in l.virtual_hosts.iter().enumerate() {
        let vpath = format!("{path}.virtualHosts[{j}]");
        let mut domains = Vec::with_capacity(vh.domains.len());
        if vh.domains.is_empty() {
            return err(
                format!("{vpath}.domains"),
                "a virtual host needs at least one domain (\"*\" for any)",
            );
        }
        for (k, d) in vh.domains.iter().enumerate() {
            let d = d.to_ascii_lowercase();
            validate_domain(&d).or_else(|m| err(format!("{vpath}.domains[{k}]"), m))?;
            if !seen_domains.insert(d.clone()) {
                return err(
                    format!("{vpath}.domains[{k}]"),
                    format!(
                        "domain {d:?} is already served by another virtual host of this listener"
                    ),
                );
            }
            domains.push(d);
        }
        let mut routes = Vec::with_capacity(vh.routes.len());
        let routes_path = Field(vpath.as_str(), "routes");
        for (k, r) in vh.routes.iter().enumerate() {
            let rpath = Index(&routes_path, k);
            if r.name.is_empty() {
                return err(
                    format!("{rpath}.name"),
                    "a route needs a name (it labels metrics and logs)",
                );
            }
            if !route_names.insert(r.name.as_str()) {
                return err(
                    format!("{rpath}.name"),
                    format!("duplicate route name {:?} in this listener", r.name),
                );
            }
            routes.push((
                r.priority,
                compile_route(r, &rpath, &l.name, request_timeout, clusters, metrics)?,
            ));
        }
        // Priority 0 first; equal priorities keep their order (stable sort).
        routes.sort_by_key(|(p, _)| *p);
        let host = VirtualHost {
            name: vh.name.clone(),
            routes: routes.into_iter().map(|(_, r)| r).collect(),
        };
        vhosts.push(host, &domains);
    }

    if let Some(t) = transparent.as_mut()
        && !is_tcp
    {
        t.http_ports = http_ports(&l.virtual_hosts);
    }
    Ok(ListenerSpec {
        name: l.name.clone(),
        address,
        table: Arc::new(ListenerTable {
            name: l.name.clone(),
            direction: l.direction(),
            vhosts,
            tcp,
            http: !is_tcp,
            tls,
            transparent,
            request_timeout,
            limits,
            access_log,
            metrics: metrics.listener(&l.name),
        }),
    })
}

/// The ports a transparent HTTP listener's virtual hosts name, or `None` when some domain names
/// none (it then matches requests on every port, so every port is HTTP).
fn http_ports(vhosts: &[v1::VirtualHost]) -> Option<Box<[u16]>> {
    let mut ports = Vec::new();
    for d in vhosts.iter().flat_map(|vh| &vh.domains) {
        let port = d.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok());
        match port {
            Some(p) => ports.push(p),
            // A bare name is also reached on its service's first port, which the agent always
            // names too (`svc` and `svc:8080`); a standalone table's bare name or `*` is any port.
            None if vhosts_name_port_for(vhosts, d) => {}
            None => return None,
        }
    }
    ports.sort_unstable();
    ports.dedup();
    Some(ports.into_boxed_slice())
}

/// Whether `bare` (a domain without a port) also appears with a port in some virtual host.
fn vhosts_name_port_for(vhosts: &[v1::VirtualHost], bare: &str) -> bool {
    vhosts.iter().flat_map(|vh| &vh.domains).any(|d| {
        d.rsplit_once(':')
            .is_some_and(|(host, p)| host == bare && p.parse::<u16>().is_ok())
    })
}

fn validate_domain(d: &str) -> Result<(), String> {
    if d == "*" {
        return Ok(());
    }
    let name = d.strip_prefix("*.").unwrap_or(d);
    let host = match name.rsplit_once(':') {
        Some((h, port)) if !h.contains(']') || h.ends_with(']') => {
            port.parse::<u16>()
                .map_err(|_| format!("{d:?}: {port:?} is not a port"))?;
            h
        }
        _ => name,
    };
    let ok = !host.is_empty()
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':')
        });
    if ok && !host.contains('*') {
        Ok(())
    } else {
        Err(format!(
            "{d:?} is not a domain: use a name, name:port, \"*.suffix\" or \"*\""
        ))
    }
}

fn compile_limits(l: Option<&v1::ListenerLimits>, path: &str) -> Result<Limits, CompileError> {
    let mut out = Limits::default();
    let Some(l) = l else { return Ok(out) };
    let nz = |v: u32, default: usize| if v == 0 { default } else { v as usize };
    out.max_connections = (l.max_connections > 0).then_some(l.max_connections as usize);
    out.max_header_bytes = nz(l.max_request_header_bytes, out.max_header_bytes);
    out.max_headers = nz(l.max_request_headers, out.max_headers);
    if l.max_concurrent_streams > 0 {
        out.max_concurrent_streams = l.max_concurrent_streams;
    }
    out.max_uri_bytes = nz(l.max_uri_bytes, out.max_uri_bytes);
    out.max_retry_body_bytes = nz(l.max_retry_body_bytes, out.max_retry_body_bytes);
    out.header_read_timeout = timeout(
        l.header_read_timeout.as_ref(),
        &format!("{path}.headerReadTimeout"),
        out.header_read_timeout,
    )?;
    if out.max_header_bytes < 1024 {
        return err(
            format!("{path}.maxRequestHeaderBytes"),
            "must be at least 1024",
        );
    }
    Ok(out)
}

fn compile_access_log(
    a: &v1::AccessLog,
    path: &str,
    sinks: &mut SinkRegistry,
) -> Result<AccessLogger, CompileError> {
    use v1::access_log::Format as F;
    if a.path.is_empty() {
        return err(
            format!("{path}.path"),
            "an access log needs a path (\"/dev/stdout\" for standard output)",
        );
    }
    let format = match &a.format {
        None => Format::text(""),
        Some(F::Text(t)) => Format::text(t),
        Some(F::Json(j)) => {
            if j.fields.is_empty() {
                return err(
                    format!("{path}.json.fields"),
                    "a JSON access log needs at least one field",
                );
            }
            let fields: Vec<(String, String)> = j
                .fields
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.clone()))
                .collect();
            Format::json(&fields)
        }
    }
    .or_else(|e| {
        let field = match a.format {
            Some(F::Json(_)) => "json",
            _ => "text",
        };
        err(format!("{path}.{field}"), e.to_string())
    })?;
    let sink = sinks.get_or_open(&a.path).or_else(|e| {
        err(
            format!("{path}.path"),
            format!("cannot open {:?}: {e}", a.path),
        )
    })?;
    Ok(AccessLogger {
        format,
        sink,
        path: a.path.clone(),
    })
}

// === Routes ===

fn compile_route(
    r: &v1::Route,
    path: &(impl fmt::Display + ?Sized),
    listener: &str,
    listener_timeout: Option<Duration>,
    clusters: &HashMap<String, Arc<Cluster>>,
    metrics: &Metrics,
) -> Result<Route, CompileError> {
    let default = v1::RouteMatch::default();
    let m = r.r#match.as_ref().unwrap_or(&default);
    let mpath = Field(path, "match");
    let mut path_match = match &m.path {
        None => PathMatch::Any,
        Some(route_match::Path::Prefix(p)) => {
            if !p.starts_with('/') {
                return err(format!("{mpath}.prefix"), "a prefix must start with '/'");
            }
            PathMatch::Prefix(p.clone())
        }
        Some(route_match::Path::Exact(p)) => {
            if !p.starts_with('/') {
                return err(format!("{mpath}.exact"), "a path must start with '/'");
            }
            PathMatch::Exact(p.clone())
        }
        Some(route_match::Path::Regex(re)) => PathMatch::Regex(
            crate::route::full_match_regex(re)
                .or_else(|e| err(format!("{mpath}.regex"), format!("invalid regex: {e}")))?,
        ),
    };
    let mut headers = m
        .headers
        .iter()
        .enumerate()
        .map(|(i, h)| compile_header(h, &Index(&Field(&mpath, "headers"), i)))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(g) = &m.grpc {
        let gpath = Field(&mpath, "grpc");
        if m.path.is_some() {
            return err(
                gpath,
                "a route matches either a path or a gRPC service, not both",
            );
        }
        path_match = match (g.service_name.as_str(), g.method_name.as_str()) {
            ("", "") => PathMatch::Any,
            ("", _) => {
                return err(
                    format!("{gpath}.methodName"),
                    "methodName requires serviceName",
                );
            }
            (s, "") => PathMatch::Prefix(format!("/{s}/")),
            (s, meth) => PathMatch::Exact(format!("/{s}/{meth}")),
        };
        for (i, h) in g.metadata.iter().enumerate() {
            headers.push(compile_header(h, &Index(&Field(&gpath, "metadata"), i))?);
        }
    }
    let method = match m.method.as_str() {
        "" => None,
        s => Some(Method::from_bytes(s.as_bytes()).or_else(|_| {
            err(
                format!("{mpath}.method"),
                format!("{s:?} is not an HTTP method"),
            )
        })?),
    };
    let scheme = match m.scheme.to_ascii_lowercase().as_str() {
        "" => None,
        s @ ("http" | "https") => Some(s.to_owned()),
        s => {
            return err(
                format!("{mpath}.scheme"),
                format!("{s:?}: scheme must be http or https"),
            );
        }
    };
    let query = m
        .query_parameters
        .iter()
        .enumerate()
        .map(|(i, q)| {
            if q.name.is_empty() {
                return err(
                    format!("{mpath}.queryParameters[{i}].name"),
                    "a query parameter match needs a name",
                );
            }
            Ok(match &q.r#match {
                None | Some(query_parameter_match::Match::Present(true)) => QueryMatcher {
                    name: q.name.clone(),
                    exact: None,
                    absent: false,
                },
                Some(query_parameter_match::Match::Present(false)) => QueryMatcher {
                    name: q.name.clone(),
                    exact: None,
                    absent: true,
                },
                Some(query_parameter_match::Match::Exact(v)) => QueryMatcher {
                    name: q.name.clone(),
                    exact: Some(v.clone()),
                    absent: false,
                },
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let port = match m.port {
        0 => None,
        p => Some(
            u16::try_from(p)
                .or_else(|_| err(format!("{mpath}.port"), format!("{p} is not a port")))?,
        ),
    };

    let apath = Field(path, "action");
    let Some(a) = &r.action else {
        return err(apath, "a route needs an action with weightedTargets");
    };
    let retry = a
        .retry_policy
        .as_ref()
        .map(|r| policies::retry(r, &Field(&apath, "retryPolicy")))
        .transpose()?
        .flatten();
    let targets = weighted_targets(
        &a.weighted_targets,
        &Field(&apath, "weightedTargets"),
        clusters,
        true,
    )?;
    let route_timeouts = a.timeouts.as_ref();
    let stream_idle = timeout(
        route_timeouts.and_then(|t| t.idle.as_ref()),
        &Field(&apath, "timeouts.idle"),
        None,
    )?;
    let request_timeout = timeout(
        route_timeouts.and_then(|t| t.request.as_ref()),
        &Field(&apath, "timeouts.request"),
        listener_timeout,
    )?;
    let rewrite = match &a.rewrite {
        None => Rewrite::default(),
        Some(rw) => compile_rewrite(rw, &path_match, &Field(&apath, "rewrite"))?,
    };
    Ok(Route {
        name: r.name.clone(),
        path: path_match,
        headers: headers.into(),
        method,
        scheme,
        query: query.into(),
        port,
        action: RouteAction {
            retry,
            stream_idle,
            targets,
            request_timeout,
            rewrite,
        },
        metrics: metrics.route(listener, &r.name),
    })
}

/// A route's weighted targets: weights 0..100, clusters that exist (and speak HTTP for an HTTP
/// route), at least one weight above 0. `path` names the `weightedTargets` field.
pub(super) fn weighted_targets(
    targets: &[v1::WeightedTarget],
    path: &(impl fmt::Display + ?Sized),
    clusters: &HashMap<String, Arc<Cluster>>,
    http: bool,
) -> Result<WeightedTargets, CompileError> {
    if targets.is_empty() {
        return err(path, "a route needs at least one weighted target");
    }
    let mut out = Vec::with_capacity(targets.len());
    for (i, t) in targets.iter().enumerate() {
        let tpath = Index(path, i);
        if t.weight > 100 {
            return err(
                format!("{tpath}.weight"),
                format!("weight {} is out of range 0..100", t.weight),
            );
        }
        let Some(c) = clusters.get(&t.cluster) else {
            return err(
                format!("{tpath}.cluster"),
                format!("no cluster named {:?}", t.cluster),
            );
        };
        if http && c.protocol == UpstreamProtocol::Tcp {
            let why = format!(
                "cluster {:?} is a TCP cluster; HTTP routes need an HTTP1, HTTP2 or GRPC cluster",
                t.cluster
            );
            return err(format!("{tpath}.cluster"), why);
        }
        out.push((Arc::clone(c), t.weight));
    }
    WeightedTargets::new(out).map_or_else(
        || err(path, "every target has weight 0: nothing could be picked"),
        Ok,
    )
}

fn compile_rewrite(
    rw: &v1::Rewrite,
    path_match: &PathMatch,
    path: &(impl fmt::Display + ?Sized),
) -> Result<Rewrite, CompileError> {
    if rw.prefix.is_some() && !matches!(path_match, PathMatch::Prefix(_)) {
        return err(
            format!("{path}.prefix"),
            "a prefix rewrite needs a prefix match",
        );
    }
    if rw.prefix.is_some() && rw.path.is_some() {
        return err(
            path,
            "rewrite either the prefix or the whole path, not both",
        );
    }
    if let Some(p) = &rw.path
        && !p.starts_with('/')
    {
        return err(format!("{path}.path"), "a path must start with '/'");
    }
    let host = rw
        .host
        .as_deref()
        .map(|h| {
            h.parse::<http::uri::Authority>()
                .or_else(|_| err(format!("{path}.host"), format!("{h:?} is not a valid host")))
        })
        .transpose()?;
    Ok(Rewrite {
        prefix: rw.prefix.clone(),
        path: rw.path.clone(),
        host,
    })
}

fn compile_header(
    h: &v1::HeaderMatch,
    path: &(impl fmt::Display + ?Sized),
) -> Result<HeaderMatcher, CompileError> {
    let name = HeaderName::from_bytes(h.name.to_ascii_lowercase().as_bytes()).or_else(|_| {
        err(
            format!("{path}.name"),
            format!("{:?} is not a header name", h.name),
        )
    })?;
    use header_match::Match as M;
    let rule = match &h.r#match {
        None => StringMatch::Present(true),
        Some(M::Exact(s)) => StringMatch::Exact(s.clone()),
        Some(M::Prefix(s)) => StringMatch::Prefix(s.clone()),
        Some(M::Suffix(s)) => StringMatch::Suffix(s.clone()),
        Some(M::Regex(re)) => StringMatch::Regex(
            crate::route::full_match_regex(re)
                .or_else(|e| err(format!("{path}.regex"), format!("invalid regex: {e}")))?,
        ),
        Some(M::Range(r)) => {
            if r.start >= r.end {
                return err(
                    format!("{path}.range"),
                    "range start must be below end (the end is excluded)",
                );
            }
            StringMatch::Range(r.start, r.end)
        }
        Some(M::Present(p)) => StringMatch::Present(*p),
    };
    Ok(HeaderMatcher {
        name,
        rule,
        invert: h.invert,
    })
}
