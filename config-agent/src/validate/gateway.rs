//! Virtual gateway and gateway route rules.
use super::{At, service_ports};
use crate::model::{
    GatewayRouteSpec, GatewayRouteTarget, HostnameMatch, PortProtocol, VirtualGatewaySpec,
};

/// The gateway route kind: its key and the listener protocol it needs.
pub fn gateway_route_kind(spec: &GatewayRouteSpec) -> Option<(&'static str, PortProtocol)> {
    if spec.http_route.is_some() {
        Some(("httpRoute", PortProtocol::Http))
    } else if spec.http2_route.is_some() {
        Some(("http2Route", PortProtocol::Http2))
    } else if spec.grpc_route.is_some() {
        Some(("grpcRoute", PortProtocol::Grpc))
    } else {
        None
    }
}

impl At<'_, '_, VirtualGatewaySpec> {
    pub(super) fn gateway(&mut self) {
        self.name_length();
        let spec = &self.res.spec;
        if spec.listeners.is_empty() {
            self.err("spec.listeners", "a virtual gateway needs a listener");
        }
        self.port_mappings(
            "spec.listeners",
            spec.listeners.iter().map(|l| &l.port_mapping),
        );
        for (i, l) in spec.listeners.iter().enumerate() {
            let f = format!("spec.listeners[{i}]");
            let protocol = l.port_mapping.protocol;
            if protocol == PortProtocol::Tcp {
                self.err(
                    &format!("{f}.portMapping.protocol"),
                    "a virtual gateway listens on http, http2 or grpc only (not tcp)",
                );
            }
            if let Some(h) = &l.health_check {
                self.health_check(&format!("{f}.healthCheck"), h, l.port_mapping.port);
            }
            if let Some(p) = &l.connection_pool {
                self.connection_pool(&format!("{f}.connectionPool"), p, protocol, false);
            }
            if let Some(t) = &l.tls {
                self.listener_tls(&format!("{f}.tls"), t, true);
            }
        }
        if let Some(c) = spec
            .backend_defaults
            .as_ref()
            .and_then(|d| d.client_policy.as_ref())
        {
            self.client_policy("spec.backendDefaults.clientPolicy", c);
        }
        if let Some(l) = &spec.logging {
            self.logging("spec.logging", l);
        }
    }
}

impl At<'_, '_, GatewayRouteSpec> {
    fn hostname(&mut self, f: &str, h: &HostnameMatch) {
        if !self.one_of(
            f,
            &[("exact", h.exact.is_some()), ("suffix", h.suffix.is_some())],
        ) {
            return;
        }
        for (k, v) in [("exact", &h.exact), ("suffix", &h.suffix)] {
            let Some(v) = v else { continue };
            let vf = format!("{f}.{k}");
            if !self.length(&vf, v, 1, 253) {
                continue;
            }
            let ok = v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
            if !ok {
                self.err(
                    &vf,
                    format!("{v:?} is not a host name (no wildcards: use suffix)"),
                );
            }
        }
    }

    fn target(&mut self, f: &str, t: &GatewayRouteTarget) {
        let name = t.virtual_service.virtual_service_name.as_str();
        if !self.virtual_service_exists(&format!("{f}.virtualService.virtualServiceName"), name) {
            return;
        }
        let ports = service_ports(self.model, &self.res.mesh, name);
        match t.port {
            None if ports.len() > 1 => self.err(
                &format!("{f}.port"),
                format!(
                    "is required: virtualService {name:?} answers on {} ports, so the target must say which",
                    ports.len()
                ),
            ),
            Some(p) if !ports.is_empty() && !ports.iter().any(|m| m.port == p) => {
                let list: Vec<String> = ports.iter().map(|m| m.port.to_string()).collect();
                self.err(
                    &format!("{f}.port"),
                    format!("virtualService {name:?} has no port {p} (it has {})", list.join(", ")),
                );
            }
            _ => {}
        }
    }

    pub(super) fn gateway_route(&mut self) {
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
            ],
        ) {
            return;
        }
        let Some(kind) = gateway_route_kind(spec) else {
            return;
        };
        let f = format!("spec.{}", kind.0);
        let mesh = self.res.mesh.clone();
        let gw_name = self.res.parent.clone();
        let port = spec
            .http_route
            .as_ref()
            .or(spec.http2_route.as_ref())
            .and_then(|r| r.r#match.port)
            .or(spec.grpc_route.as_ref().and_then(|r| r.r#match.port));
        match self.model.gateway(&mesh, &gw_name) {
            None => self.err(
                "virtualGatewayName",
                format!("virtualGateway {gw_name:?} does not exist in mesh {mesh}"),
            ),
            Some(gw) => {
                let listeners: Vec<(i64, PortProtocol)> = gw
                    .spec
                    .listeners
                    .iter()
                    .map(|l| (l.port_mapping.port, l.port_mapping.protocol))
                    .collect();
                let owner = format!("virtualGateway {gw_name}");
                self.listener_port(
                    &format!("{f}.match.port"),
                    port,
                    &listeners,
                    (f.as_str(), kind.1),
                    &owner,
                );
            }
        }
        if let Some(r) = spec.http_route.as_ref().or(spec.http2_route.as_ref()) {
            let m = &r.r#match;
            let mf = format!("{f}.match");
            if m.prefix.is_none() && m.path.is_none() && m.hostname.is_none() {
                self.err(&mf, "needs prefix, path or hostname");
            }
            self.path_match(&mf, m.prefix.as_ref(), m.path.as_ref());
            if let Some(p) = &m.prefix {
                let lower = p.to_ascii_lowercase();
                if lower.starts_with("/aws-appmesh") || lower.starts_with("/aws-app-mesh") {
                    self.err(
                        &format!("{mf}.prefix"),
                        format!(
                            "{p:?}: prefixes starting /aws-appmesh and /aws-app-mesh are reserved"
                        ),
                    );
                }
            }
            self.header_matches(&format!("{mf}.headers"), &m.headers);
            self.query_parameters(&format!("{mf}.queryParameters"), &m.query_parameters);
            if let Some(h) = &m.hostname {
                self.hostname(&format!("{mf}.hostname"), h);
            }
            self.target(&format!("{f}.action.target"), &r.action.target);
            if let Some(rw) = &r.action.rewrite {
                let rf = format!("{f}.action.rewrite");
                if let Some(p) = &rw.prefix {
                    let pf = format!("{rf}.prefix");
                    if m.prefix.is_none() {
                        self.err(&pf, "a prefix rewrite needs a prefix match");
                    }
                    if self.one_of(
                        &pf,
                        &[
                            ("defaultPrefix", p.default_prefix.is_some()),
                            ("value", p.value.is_some()),
                        ],
                    ) && let Some(v) = &p.value
                        && self.length(&format!("{pf}.value"), v, 1, 255)
                        && !v.starts_with('/')
                    {
                        self.err(&format!("{pf}.value"), format!("{v:?} must start with '/'"));
                    }
                }
                if let Some(p) = &rw.path {
                    if rw.prefix.is_some() {
                        self.err(&rf, "rewrites either the prefix or the path, not both");
                    }
                    if self.length(&format!("{rf}.path.exact"), &p.exact, 1, 255)
                        && !p.exact.starts_with('/')
                    {
                        self.err(
                            &format!("{rf}.path.exact"),
                            format!("{:?} must start with '/'", p.exact),
                        );
                    }
                }
            }
        }
        if let Some(g) = &spec.grpc_route {
            let mf = format!("{f}.match");
            if let Some(s) = &g.r#match.service_name {
                self.length(&format!("{mf}.serviceName"), s, 1, 255);
            }
            if let Some(h) = &g.r#match.hostname {
                self.hostname(&format!("{mf}.hostname"), h);
            }
            self.header_matches(&format!("{mf}.metadata"), &g.r#match.metadata);
            self.target(&format!("{f}.action.target"), &g.action.target);
        }
    }
}
