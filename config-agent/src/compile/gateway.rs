//! A virtual gateway's table. As App Mesh's gateway Envoy does (its `self_redirect` cluster), a
//! request is routed twice: a gateway listener matches the gateway routes, rewrites the request
//! (Host becomes the target virtual service, the matched prefix becomes `/`) and sends it to the
//! gateway's own `egress` listener, which routes it by Host through the virtual service's router,
//! exactly as a virtual node's egress would.
use std::collections::BTreeSet;

use ferry_api::v1::{self, route_match};

use super::outbound::{BackendRef, outbound};
use super::{
    Cx, UNSET_PRIORITY, access_log, default_timeouts, header_match, listener_protocol,
    port_protocol_name, query_match, seconds, server_tls, specificity,
};
use crate::model::{
    GatewayListener, GatewayRouteSpec, HostnameMatch, Kind, PortProtocol, Res, Toggle,
    VirtualGatewaySpec,
};
use crate::validate::{gateway_route_kind, service_ports};

pub(crate) fn listeners(cx: &mut Cx<'_>, gw: &Res<VirtualGatewaySpec>) -> Vec<v1::Listener> {
    let log = access_log(gw.spec.logging.as_ref());
    let subject = gw.subject(Kind::VirtualGateway);
    let bind_ip = if cx.mesh_ip_preference().is_some() {
        "[::]"
    } else {
        "0.0.0.0"
    };
    let mesh = cx.mesh.name.clone();
    let model = cx.model;
    let mut routes: Vec<&Res<GatewayRouteSpec>> =
        model.gateway_routes_of(&mesh, &gw.name).collect();
    routes.sort_by_key(|r| {
        let http = r.spec.http_route.as_ref().or(r.spec.http2_route.as_ref());
        let prefix = http.and_then(|h| h.r#match.prefix.as_deref());
        let path = http.and_then(|h| h.r#match.path.as_ref());
        (
            r.spec.priority.map_or(UNSET_PRIORITY, |p| {
                u32::try_from(p).unwrap_or(UNSET_PRIORITY)
            }),
            specificity(
                prefix,
                path.is_some_and(|p| p.exact.is_some()),
                path.is_some_and(|p| p.regex.is_some()),
            ),
            r.name.clone(),
        )
    });
    let mut targets = BTreeSet::new();
    let mut out = Vec::new();
    let mut ordered: Vec<(usize, &GatewayListener)> =
        gw.spec.listeners.iter().enumerate().collect();
    ordered.sort_by_key(|(_, l)| l.port_mapping.port);
    for (i, l) in ordered {
        let field = format!("spec.listeners[{i}]");
        let port = l.port_mapping.port;
        let mine: Vec<&Res<GatewayRouteSpec>> = routes
            .iter()
            .copied()
            .filter(|r| {
                let p = route_port(&r.spec);
                p.is_none_or(|p| p == port)
                    && gateway_route_kind(&r.spec)
                        .is_some_and(|(_, proto)| proto == l.port_mapping.protocol)
            })
            .collect();
        let mut compiled = Vec::new();
        for r in &mine {
            if let Some(c) = gateway_route(cx, r, l, port) {
                targets.insert(target_of(&r.spec));
                compiled.push((hostname_of(&r.spec).cloned(), c));
            }
        }
        if l.health_check.is_some() {
            cx.warnings.push(format!(
                "virtualGateway {}: {field}.healthCheck is not compiled: health-check the gateway with its admin /ready",
                gw.name
            ));
        }
        let tls = l
            .tls
            .as_ref()
            .and_then(|t| server_tls(cx, t, &subject, &gw.origin, &format!("{field}.tls")));
        out.push(v1::Listener {
            name: format!("gateway:{port}"),
            address: format!("{bind_ip}:{port}"),
            direction: v1::listener::Direction::Gateway as i32,
            protocol: listener_protocol(l.port_mapping.protocol) as i32,
            original_dst: false,
            tls,
            timeouts: default_timeouts(),
            limits: None,
            access_log: log.clone(),
            virtual_hosts: virtual_hosts(compiled),
            tcp_routes: Vec::new(),
            egress_policy: 0,
            egress_allowed_hosts: Vec::new(),
        });
    }
    // The second hop: the target virtual services, routed as from a virtual node.
    let defaults = gw
        .spec
        .backend_defaults
        .as_ref()
        .and_then(|d| d.client_policy.as_ref())
        .and_then(|c| c.tls.clone());
    let backends: Vec<BackendRef> = targets
        .into_iter()
        .map(|service| BackendRef {
            service,
            policy_at: defaults.as_ref().map(|_| {
                (
                    subject.clone(),
                    gw.origin.clone(),
                    "spec.backendDefaults.clientPolicy.tls".to_owned(),
                )
            }),
            tls: defaults.clone(),
        })
        .collect();
    let ob = outbound(cx, &backends);
    out.push(v1::Listener {
        name: "egress".to_owned(),
        address: format!("127.0.0.1:{}", cx.opts.egress_port),
        direction: v1::listener::Direction::Outbound as i32,
        protocol: v1::listener::Protocol::Http as i32,
        original_dst: false,
        tls: None,
        timeouts: default_timeouts(),
        limits: None,
        access_log: None,
        virtual_hosts: ob.virtual_hosts,
        tcp_routes: Vec::new(),
        egress_policy: 0,
        egress_allowed_hosts: Vec::new(),
    });
    out
}

fn route_port(spec: &GatewayRouteSpec) -> Option<i64> {
    spec.http_route
        .as_ref()
        .or(spec.http2_route.as_ref())
        .and_then(|r| r.r#match.port)
        .or(spec.grpc_route.as_ref().and_then(|r| r.r#match.port))
}

fn target_of(spec: &GatewayRouteSpec) -> String {
    spec.http_route
        .as_ref()
        .or(spec.http2_route.as_ref())
        .map(|r| r.action.target.virtual_service.virtual_service_name.clone())
        .or(spec
            .grpc_route
            .as_ref()
            .map(|r| r.action.target.virtual_service.virtual_service_name.clone()))
        .unwrap_or_default()
}

fn hostname_of(spec: &GatewayRouteSpec) -> Option<&HostnameMatch> {
    spec.http_route
        .as_ref()
        .or(spec.http2_route.as_ref())
        .and_then(|r| r.r#match.hostname.as_ref())
        .or(spec
            .grpc_route
            .as_ref()
            .and_then(|r| r.r#match.hostname.as_ref()))
}

/// The cluster of the hop to the gateway's own egress listener, per gateway listener (which
/// carries that listener's connection pool) and upstream protocol.
fn self_cluster(
    cx: &mut Cx<'_>,
    gateway: &str,
    l: &GatewayListener,
    port: i64,
    http2: bool,
) -> String {
    let name = format!("self:{port}:{}", if http2 { "h2" } else { "h1" });
    let pool = l.connection_pool.as_ref().map(|p| {
        let u = |v: i64| u32::try_from(v).unwrap_or(u32::MAX);
        let mut out = v1::ConnectionPool::default();
        if let Some(h) = &p.http {
            out.max_connections = u(h.max_connections);
            out.max_pending_requests = u(h.max_pending_requests.unwrap_or(2_147_483_647));
        }
        if let Some(r) = p.http2.as_ref().or(p.grpc.as_ref()) {
            out.max_requests = u(r.max_requests);
        }
        out
    });
    let cluster = v1::Cluster {
        name: name.clone(),
        discovery: Some(v1::cluster::Discovery::StaticEndpoints(
            v1::StaticEndpoints {
                endpoints: vec![v1::Endpoint {
                    address: format!("127.0.0.1:{}", cx.opts.egress_port),
                }],
            },
        )),
        protocol: if http2 {
            v1::cluster::Protocol::Http2
        } else {
            v1::cluster::Protocol::Http1
        } as i32,
        connection_pool: pool,
        // App Mesh's Envoy names a gateway's hop to its own egress "..._self_redirect_...".
        stats_name: format!(
            "cds_egress_{}_{}_self_redirect_{}_{port}",
            cx.mesh.name,
            gateway,
            port_protocol_name(l.port_mapping.protocol)
        ),
        ..Default::default()
    };
    cx.clusters.insert(name.clone(), cluster);
    name
}

fn gateway_route(
    cx: &mut Cx<'_>,
    r: &Res<GatewayRouteSpec>,
    l: &GatewayListener,
    port: i64,
) -> Option<v1::Route> {
    let subject = r.subject(Kind::GatewayRoute);
    let (kind, _) = gateway_route_kind(&r.spec)?;
    let http2 = l.port_mapping.protocol != PortProtocol::Http;
    let cluster = self_cluster(cx, &r.parent, l, port, http2);
    let (target, hostname_rewrite) =
        if let Some(h) = r.spec.http_route.as_ref().or(r.spec.http2_route.as_ref()) {
            (
                &h.action.target,
                h.action
                    .rewrite
                    .as_ref()
                    .and_then(|rw| rw.hostname.as_ref()),
            )
        } else {
            let g = r.spec.grpc_route.as_ref()?;
            (
                &g.action.target,
                g.action
                    .rewrite
                    .as_ref()
                    .and_then(|rw| rw.hostname.as_ref()),
            )
        };
    let service = &target.virtual_service.virtual_service_name;
    let ports = service_ports(cx.model, &r.mesh, service);
    let host = match target.port {
        Some(p) if ports.len() > 1 => format!("{service}:{p}"),
        _ => service.clone(),
    };
    if hostname_rewrite.and_then(|h| h.default_target_hostname) == Some(Toggle::Disabled) {
        let field = format!("spec.{kind}.action.rewrite.hostname.defaultTargetHostname");
        cx.unsupported(
            &subject,
            &r.origin,
            &field,
            "DISABLED is not supported by Ferry yet: the gateway reaches the virtual service by its name, so the Host is always rewritten to it",
        );
        return None;
    }
    let mut rewrite = v1::Rewrite {
        prefix: None,
        path: None,
        host: Some(host),
    };
    let m = if let Some(h) = r.spec.http_route.as_ref().or(r.spec.http2_route.as_ref()) {
        let hm = &h.r#match;
        let rw = h.action.rewrite.as_ref();
        if let Some(p) = &hm.prefix {
            // App Mesh's default rewrites the matched prefix to "/".
            let prefix_rw = rw.and_then(|rw| rw.prefix.as_ref());
            rewrite.prefix = match prefix_rw {
                Some(pr) if pr.default_prefix == Some(Toggle::Disabled) => None,
                Some(pr) if pr.value.is_some() => pr.value.clone(),
                _ if p == "/" => None,
                _ => Some("/".to_owned()),
            };
        }
        if let Some(path) = rw.and_then(|rw| rw.path.as_ref()) {
            rewrite.path = Some(path.exact.clone());
        }
        let path = if let Some(p) = &hm.prefix {
            Some(route_match::Path::Prefix(p.clone()))
        } else if let Some(p) = &hm.path {
            p.exact
                .clone()
                .map(route_match::Path::Exact)
                .or_else(|| p.regex.clone().map(route_match::Path::Regex))
        } else {
            None
        };
        v1::RouteMatch {
            path,
            headers: hm.headers.iter().map(header_match).collect(),
            method: hm.method.map(|m| m.as_str().to_owned()).unwrap_or_default(),
            query_parameters: hm.query_parameters.iter().map(query_match).collect(),
            ..Default::default()
        }
    } else {
        let g = r.spec.grpc_route.as_ref()?;
        v1::RouteMatch {
            grpc: Some(v1::GrpcMatch {
                service_name: g.r#match.service_name.clone().unwrap_or_default(),
                method_name: String::new(),
                metadata: g.r#match.metadata.iter().map(header_match).collect(),
            }),
            ..Default::default()
        }
    };
    Some(v1::Route {
        name: r.name.clone(),
        priority: r.spec.priority.map_or(UNSET_PRIORITY, |p| {
            u32::try_from(p).unwrap_or(UNSET_PRIORITY)
        }),
        r#match: Some(m),
        action: Some(v1::RouteAction {
            weighted_targets: vec![v1::WeightedTarget {
                cluster,
                weight: 100,
            }],
            // The virtual service's own route timeout (15 s by default) governs on the second hop;
            // the gateway hop does not cut it shorter (App Mesh roadmap #376).
            timeouts: Some(v1::Timeouts {
                request: Some(seconds(0)),
                idle: None,
            }),
            retry_policy: None,
            rewrite: Some(rewrite),
        }),
    })
}

/// Groups gateway routes (in priority order) into virtual hosts by their hostname match: a route
/// without one is in every virtual host; one with a hostname only in the matching ones.
fn virtual_hosts(routes: Vec<(Option<HostnameMatch>, v1::Route)>) -> Vec<v1::VirtualHost> {
    let mut exact: BTreeSet<String> = BTreeSet::new();
    let mut suffixes: BTreeSet<String> = BTreeSet::new();
    for (h, _) in &routes {
        if let Some(h) = h {
            if let Some(e) = &h.exact {
                exact.insert(e.to_ascii_lowercase());
            }
            if let Some(s) = &h.suffix {
                suffixes.insert(normalize_suffix(s));
            }
        }
    }
    let applies = |h: &Option<HostnameMatch>, host: &str| -> bool {
        match h {
            None => true,
            Some(h) => {
                h.exact
                    .as_deref()
                    .is_some_and(|e| e.eq_ignore_ascii_case(host))
                    || h.suffix.as_deref().is_some_and(|s| {
                        let s = normalize_suffix(s);
                        host.len() > s.len() && host.ends_with(&s)
                    })
            }
        }
    };
    let mut out = Vec::new();
    let mut pick = |domain: String, host_key: Option<&str>| {
        let rs: Vec<v1::Route> = routes
            .iter()
            .filter(|(h, _)| match host_key {
                None => h.is_none(),
                Some(k) => applies(h, k),
            })
            .map(|(h, r)| {
                let mut r = r.clone();
                if h.is_some() || host_key.is_some() {
                    r.name = format!("{}@{domain}", r.name);
                }
                r
            })
            .collect();
        if !rs.is_empty() {
            out.push(v1::VirtualHost {
                name: domain.clone(),
                domains: vec![domain],
                routes: rs,
            });
        }
    };
    for e in &exact {
        pick(e.clone(), Some(e));
    }
    for s in &suffixes {
        // A representative host under the suffix, to test which routes apply.
        let probe = format!("x{s}");
        pick(format!("*{s}"), Some(&probe));
    }
    pick("*".to_owned(), None);
    out
}

/// "example.com" and ".example.com" both become ".example.com" (Ferry's `*.example.com`).
fn normalize_suffix(s: &str) -> String {
    let s = s.to_ascii_lowercase();
    if s.starts_with('.') {
        s
    } else {
        format!(".{s}")
    }
}
