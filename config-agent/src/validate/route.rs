//! Virtual router and route rules.
use super::At;
use crate::model::{
    HttpPathMatch, HttpRoute, PortProtocol, QueryParameterMatch, RetryPolicy, RouteAction,
    RouteSpec, VirtualRouterSpec,
};

pub const HTTP_RETRY_EVENTS: [&str; 4] = [
    "server-error",
    "gateway-error",
    "client-error",
    "stream-error",
];
pub const TCP_RETRY_EVENTS: [&str; 1] = ["connection-error"];
pub const GRPC_RETRY_EVENTS: [&str; 5] = [
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// The route kind set in a route spec: its key and the listener protocol it needs.
pub fn route_kind(spec: &RouteSpec) -> Option<(&'static str, PortProtocol)> {
    if spec.http_route.is_some() {
        Some(("httpRoute", PortProtocol::Http))
    } else if spec.http2_route.is_some() {
        Some(("http2Route", PortProtocol::Http2))
    } else if spec.grpc_route.is_some() {
        Some(("grpcRoute", PortProtocol::Grpc))
    } else if spec.tcp_route.is_some() {
        Some(("tcpRoute", PortProtocol::Tcp))
    } else {
        None
    }
}

impl At<'_, '_, VirtualRouterSpec> {
    pub(super) fn router(&mut self) {
        self.name_length();
        if self.res.spec.listeners.is_empty() {
            self.err(
                "spec.listeners",
                "a virtual router needs a listener (its port and protocol)",
            );
        }
        self.port_mappings(
            "spec.listeners",
            self.res.spec.listeners.iter().map(|l| &l.port_mapping),
        );
    }
}

impl<S> At<'_, '_, S> {
    /// A match's `port` against the listeners (port, protocol) of its router or gateway: required
    /// when there are several, and must be one of them with the route kind's protocol.
    pub(super) fn listener_port(
        &mut self,
        field: &str,
        port: Option<i64>,
        listeners: &[(i64, PortProtocol)],
        kind: (&str, PortProtocol),
        owner: &str,
    ) {
        let compatible = |p: PortProtocol| p == kind.1;
        match port {
            None if listeners.len() > 1 => self.err(
                field,
                format!(
                    "is required: {owner} has {} listeners, so the route must say which port it serves",
                    listeners.len()
                ),
            ),
            None => {
                if let Some((p, proto)) = listeners.first()
                    && !compatible(*proto)
                {
                    let name = kind.0.rsplit('.').next().unwrap_or(kind.0);
                    self.err(
                        kind.0,
                        format!(
                            "{owner} listens on port {p} with {}: a {name} needs a {} listener (the route kind must match the listener protocol)",
                            proto.as_str(),
                            kind.1.as_str()
                        ),
                    );
                }
            }
            Some(port) => match listeners.iter().find(|(p, _)| *p == port) {
                None => {
                    let ports: Vec<String> = listeners.iter().map(|(p, _)| p.to_string()).collect();
                    self.err(
                        field,
                        format!("{owner} has no listener on port {port} (it has {})", ports.join(", ")),
                    );
                }
                Some((_, proto)) if !compatible(*proto) => self.err(
                    field,
                    format!(
                        "{owner} listens on port {port} with {}: a {} needs a {} listener",
                        proto.as_str(),
                        kind.0.rsplit('.').next().unwrap_or(kind.0),
                        kind.1.as_str()
                    ),
                ),
                Some(_) => {}
            },
        }
    }

    pub(super) fn path_match(
        &mut self,
        f: &str,
        prefix: Option<&String>,
        path: Option<&HttpPathMatch>,
    ) {
        if let Some(p) = prefix
            && !p.starts_with('/')
        {
            self.err(&format!("{f}.prefix"), format!("{p:?} must start with '/'"));
        }
        if prefix.is_some() && path.is_some() {
            self.err(f, "takes either prefix or path, not both");
        }
        if let Some(p) = path {
            let pf = format!("{f}.path");
            if self.one_of(
                &pf,
                &[("exact", p.exact.is_some()), ("regex", p.regex.is_some())],
            ) {
                if let Some(e) = &p.exact
                    && self.length(&format!("{pf}.exact"), e, 1, 255)
                    && !e.starts_with('/')
                {
                    self.err(&format!("{pf}.exact"), format!("{e:?} must start with '/'"));
                }
                if let Some(re) = &p.regex {
                    self.regex(&format!("{pf}.regex"), re);
                }
            }
        }
    }

    pub(super) fn query_parameters(&mut self, f: &str, q: &[QueryParameterMatch]) {
        self.max_items(f, q.len(), 10);
        for (i, q) in q.iter().enumerate() {
            self.length(&format!("{f}[{i}].name"), &q.name, 1, 255);
        }
    }

    fn retry_events(&mut self, f: &str, events: &[String], allowed: &[&str], max: usize) {
        self.max_items(f, events.len(), max);
        for (i, e) in events.iter().enumerate() {
            if !allowed.contains(&e.as_str()) {
                self.err(
                    &format!("{f}[{i}]"),
                    format!(
                        "unknown retry event {e:?}: expected one of {}",
                        allowed.join(", ")
                    ),
                );
            }
        }
    }

    fn retry_policy(&mut self, f: &str, r: &RetryPolicy, grpc: bool) {
        self.at_least(&format!("{f}.maxRetries"), r.max_retries, 0);
        self.duration(&format!("{f}.perRetryTimeout"), &r.per_retry_timeout);
        self.retry_events(
            &format!("{f}.httpRetryEvents"),
            &r.http_retry_events,
            &HTTP_RETRY_EVENTS,
            25,
        );
        self.retry_events(
            &format!("{f}.tcpRetryEvents"),
            &r.tcp_retry_events,
            &TCP_RETRY_EVENTS,
            1,
        );
        if grpc {
            self.retry_events(
                &format!("{f}.grpcRetryEvents"),
                &r.grpc_retry_events,
                &GRPC_RETRY_EVENTS,
                5,
            );
        } else if !r.grpc_retry_events.is_empty() {
            self.err(
                &format!("{f}.grpcRetryEvents"),
                "only gRPC routes have gRPC retry events",
            );
        }
        if r.http_retry_events.is_empty()
            && r.tcp_retry_events.is_empty()
            && r.grpc_retry_events.is_empty()
        {
            self.err(
                f,
                "needs at least one retry event (httpRetryEvents, tcpRetryEvents or grpcRetryEvents)",
            );
        }
    }

    fn weighted_targets(&mut self, f: &str, a: &RouteAction) {
        let f = format!("{f}.weightedTargets");
        let n = a.weighted_targets.len();
        if !(1..=10).contains(&n) {
            self.err(&f, format!("has {n} targets: 1..10 are allowed"));
            return;
        }
        let mut total = 0;
        let mut out_of_range = false;
        let mut seen: Vec<(&str, Option<i64>)> = Vec::new();
        let mesh = self.res.mesh.clone();
        for (i, t) in a.weighted_targets.iter().enumerate() {
            let tf = format!("{f}[{i}]");
            if self.range(&format!("{tf}.weight"), t.weight, 0, 100) {
                total += t.weight;
            } else {
                out_of_range = true;
            }
            if seen.contains(&(t.virtual_node.as_str(), t.port)) {
                self.err(
                    &format!("{tf}.virtualNode"),
                    format!("{:?} is a target twice", t.virtual_node),
                );
            }
            seen.push((t.virtual_node.as_str(), t.port));
            let Some(node) = self.model.node(&mesh, &t.virtual_node) else {
                self.err(
                    &format!("{tf}.virtualNode"),
                    format!(
                        "virtualNode {:?} does not exist in mesh {mesh}",
                        t.virtual_node
                    ),
                );
                continue;
            };
            let ports: Vec<i64> = node
                .spec
                .listeners
                .iter()
                .map(|l| l.port_mapping.port)
                .collect();
            match (t.port, ports.len()) {
                (_, 0) => self.err(
                    &format!("{tf}.virtualNode"),
                    format!("virtualNode {:?} has no listeners: it cannot receive traffic", t.virtual_node),
                ),
                (None, 1) => {}
                (None, k) => self.err(
                    &format!("{tf}.port"),
                    format!(
                        "is required: virtualNode {:?} has {k} listeners, so the target must say which port",
                        t.virtual_node
                    ),
                ),
                (Some(p), _) if !ports.contains(&p) => {
                    let list: Vec<String> = ports.iter().map(ToString::to_string).collect();
                    self.err(
                        &format!("{tf}.port"),
                        format!(
                            "virtualNode {:?} has no listener on port {p} (it has {})",
                            t.virtual_node,
                            list.join(", ")
                        ),
                    );
                }
                _ => {}
            }
        }
        if total == 0 && !out_of_range {
            self.err(
                &f,
                "every target has weight 0: at least one needs a weight above 0",
            );
        }
        if total > 100 {
            self.err(
                &f,
                format!("the weights add up to {total}: the total must not exceed 100"),
            );
        }
    }

    fn http_route(&mut self, f: &str, r: &HttpRoute) {
        let m = &r.r#match;
        let mf = format!("{f}.match");
        if m.prefix.is_none() && m.path.is_none() {
            self.err(
                &mf,
                "needs prefix or path (prefix \"/\" matches every request)",
            );
        }
        self.path_match(&mf, m.prefix.as_ref(), m.path.as_ref());
        self.header_matches(&format!("{mf}.headers"), &m.headers);
        self.query_parameters(&format!("{mf}.queryParameters"), &m.query_parameters);
        self.weighted_targets(&format!("{f}.action"), &r.action);
        if let Some(rp) = &r.retry_policy {
            self.retry_policy(&format!("{f}.retryPolicy"), rp, false);
        }
        if let Some(t) = &r.timeout {
            self.opt_duration(&format!("{f}.timeout.perRequest"), t.per_request.as_ref());
            self.opt_duration(&format!("{f}.timeout.idle"), t.idle.as_ref());
        }
    }
}

impl At<'_, '_, RouteSpec> {
    pub(super) fn route(&mut self) {
        self.name_length();
        let spec = &self.res.spec;
        if let Some(p) = spec.priority {
            self.range("spec.priority", p, 0, 1000);
        }
        if !self.one_of(
            "spec",
            &[
                ("httpRoute", spec.http_route.is_some()),
                ("http2Route", spec.http2_route.is_some()),
                ("grpcRoute", spec.grpc_route.is_some()),
                ("tcpRoute", spec.tcp_route.is_some()),
            ],
        ) {
            return;
        }
        let Some(kind) = route_kind(spec) else { return };
        let f = format!("spec.{}", kind.0);
        let mesh = self.res.mesh.clone();
        let router_name = self.res.parent.clone();
        let port = spec
            .http_route
            .as_ref()
            .or(spec.http2_route.as_ref())
            .and_then(|r| r.r#match.port)
            .or(spec.grpc_route.as_ref().and_then(|r| r.r#match.port))
            .or(spec
                .tcp_route
                .as_ref()
                .and_then(|r| r.r#match.as_ref()?.port));
        match self.model.router(&mesh, &router_name) {
            None => self.err(
                "virtualRouterName",
                format!("virtualRouter {router_name:?} does not exist in mesh {mesh}"),
            ),
            Some(router) => {
                let listeners: Vec<(i64, PortProtocol)> = router
                    .spec
                    .listeners
                    .iter()
                    .map(|l| (l.port_mapping.port, l.port_mapping.protocol))
                    .collect();
                let owner = format!("virtualRouter {router_name}");
                let kind_path = (f.as_str(), kind.1);
                self.listener_port(
                    &format!("{f}.match.port"),
                    port,
                    &listeners,
                    kind_path,
                    &owner,
                );
            }
        }
        if let Some(r) = spec.http_route.as_ref().or(spec.http2_route.as_ref()) {
            self.http_route(&f, r);
        }
        if let Some(g) = &spec.grpc_route {
            let mf = format!("{f}.match");
            if let Some(s) = &g.r#match.service_name {
                self.length(&format!("{mf}.serviceName"), s, 1, 255);
            }
            if let Some(m) = &g.r#match.method_name {
                if g.r#match.service_name.is_none() {
                    self.err(
                        &format!("{mf}.methodName"),
                        "methodName requires serviceName",
                    );
                }
                self.length(&format!("{mf}.methodName"), m, 1, 50);
            }
            self.header_matches(&format!("{mf}.metadata"), &g.r#match.metadata);
            self.weighted_targets(&format!("{f}.action"), &g.action);
            if let Some(rp) = &g.retry_policy {
                self.retry_policy(&format!("{f}.retryPolicy"), rp, true);
            }
            if let Some(t) = &g.timeout {
                self.opt_duration(&format!("{f}.timeout.perRequest"), t.per_request.as_ref());
                self.opt_duration(&format!("{f}.timeout.idle"), t.idle.as_ref());
            }
        }
        if let Some(t) = &spec.tcp_route {
            self.weighted_targets(&format!("{f}.action"), &t.action);
            if let Some(t) = &t.timeout {
                self.opt_duration(&format!("{f}.timeout.idle"), t.idle.as_ref());
            }
        }
    }
}
