//! The outbound side shared by virtual nodes (their backends) and virtual gateways (their gateway
//! routes' targets): one virtual host per virtual service and port, holding the routes of its
//! router (or one route to its node), and the clusters of the target nodes.
use ferry_api::v1::{self, route_match};

use super::{
    Cx, UNSET_PRIORITY, appmesh_stats_name, client_tls, cluster_protocol, default_retry, duration,
    header_match, http_timeouts, ip_preference, query_match, retry, specificity,
};
use crate::model::{
    ClientPolicyTls, DnsResponseType, Kind, Origin, PortMapping, PortProtocol, RouteSpec, Subject,
};
use crate::validate::service_ports;

/// A virtual service reached from this proxy, with the client policy that applies to it.
pub(crate) struct BackendRef {
    pub service: String,
    pub tls: Option<ClientPolicyTls>,
    /// Where the client policy is written (for errors).
    pub policy_at: Option<(Subject, Origin, String)>,
}

#[derive(Default)]
pub(crate) struct Outbound {
    pub virtual_hosts: Vec<v1::VirtualHost>,
    pub tcp_routes: Vec<v1::TcpRoute>,
}

pub(crate) fn outbound(cx: &mut Cx<'_>, backends: &[BackendRef]) -> Outbound {
    let mut out = Outbound::default();
    let mesh = cx.mesh.name.clone();
    for b in backends {
        let Some(vs) = cx.model.service(&mesh, &b.service) else {
            continue;
        };
        let Some(provider) = &vs.spec.provider else {
            cx.warnings.push(format!(
                "virtualService {} has no provider: requests for it get 404 (no route)",
                b.service
            ));
            continue;
        };
        let mut ports = service_ports(cx.model, &mesh, &b.service);
        ports.sort_by_key(|p| p.port);
        let http_ports: Vec<i64> = ports
            .iter()
            .filter(|p| p.protocol != PortProtocol::Tcp)
            .map(|p| p.port)
            .collect();
        let bare = if http_ports.contains(&80) {
            Some(80)
        } else {
            http_ports.first().copied()
        };
        for pm in &ports {
            let routes = match (&provider.virtual_router, &provider.virtual_node) {
                (Some(r), _) => router_routes(cx, b, &r.virtual_router_name, pm, &mut out),
                (None, Some(n)) => node_route(cx, b, &n.virtual_node_name, pm, &mut out),
                (None, None) => continue,
            };
            if pm.protocol == PortProtocol::Tcp {
                continue;
            }
            let mut domains = vec![format!("{}:{}", b.service, pm.port)];
            if bare == Some(pm.port) {
                domains.insert(0, b.service.clone());
            }
            out.virtual_hosts.push(v1::VirtualHost {
                name: format!("{}:{}", b.service, pm.port),
                domains,
                routes,
            });
        }
    }
    out
}

/// The routes of `router` that serve port `pm`, in App Mesh's order; TCP ones go to `out`.
fn router_routes(
    cx: &mut Cx<'_>,
    b: &BackendRef,
    router: &str,
    pm: &PortMapping,
    out: &mut Outbound,
) -> Vec<v1::Route> {
    let mesh = cx.mesh.name.clone();
    let model = cx.model;
    let mut routes: Vec<_> = model
        .routes_of(&mesh, router)
        .filter(|r| serves(&r.spec, pm))
        .collect();
    routes.sort_by_key(|r| {
        let (prefix, exact, regex) = path_shape(&r.spec);
        (
            r.spec.priority.map_or(UNSET_PRIORITY, |p| {
                u32::try_from(p).unwrap_or(UNSET_PRIORITY)
            }),
            specificity(prefix, exact, regex),
            r.name.clone(),
        )
    });
    let mut compiled = Vec::new();
    for r in routes {
        let name = format!("{}:{}/{}", b.service, pm.port, r.name);
        let priority = r.spec.priority.map_or(UNSET_PRIORITY, |p| {
            u32::try_from(p).unwrap_or(UNSET_PRIORITY)
        });
        let subject = r.subject(Kind::Route);
        if let Some(t) = &r.spec.tcp_route {
            let targets = targets(cx, b, &t.action.weighted_targets, &subject);
            out.tcp_routes.push(v1::TcpRoute {
                name,
                port: u32::try_from(pm.port).unwrap_or(0),
                weighted_targets: targets,
                timeouts: t.timeout.as_ref().and_then(|t| {
                    t.idle.as_ref().map(|i| v1::Timeouts {
                        request: None,
                        idle: Some(duration(i)),
                    })
                }),
            });
            continue;
        }
        let (m, action) =
            if let Some(h) = r.spec.http_route.as_ref().or(r.spec.http2_route.as_ref()) {
                let hm = &h.r#match;
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
                let m = v1::RouteMatch {
                    path,
                    headers: hm.headers.iter().map(header_match).collect(),
                    method: hm.method.map(|m| m.as_str().to_owned()).unwrap_or_default(),
                    scheme: hm
                        .scheme
                        .map(|s| match s {
                            crate::model::HttpScheme::Http => "http".to_owned(),
                            crate::model::HttpScheme::Https => "https".to_owned(),
                        })
                        .unwrap_or_default(),
                    query_parameters: hm.query_parameters.iter().map(query_match).collect(),
                    port: 0,
                    grpc: None,
                };
                let action = v1::RouteAction {
                    weighted_targets: targets(cx, b, &h.action.weighted_targets, &subject),
                    timeouts: http_timeouts(h.timeout.as_ref()),
                    retry_policy: Some(
                        h.retry_policy
                            .as_ref()
                            .map_or_else(|| default_retry(false), retry),
                    ),
                    rewrite: None,
                };
                (m, action)
            } else if let Some(g) = &r.spec.grpc_route {
                let gm = &g.r#match;
                let m = v1::RouteMatch {
                    grpc: Some(v1::GrpcMatch {
                        service_name: gm.service_name.clone().unwrap_or_default(),
                        method_name: gm.method_name.clone().unwrap_or_default(),
                        metadata: gm.metadata.iter().map(header_match).collect(),
                    }),
                    ..Default::default()
                };
                let action = v1::RouteAction {
                    weighted_targets: targets(cx, b, &g.action.weighted_targets, &subject),
                    timeouts: http_timeouts(g.timeout.as_ref()),
                    retry_policy: Some(
                        g.retry_policy
                            .as_ref()
                            .map_or_else(|| default_retry(true), retry),
                    ),
                    rewrite: None,
                };
                (m, action)
            } else {
                continue;
            };
        compiled.push(v1::Route {
            name,
            priority,
            r#match: Some(m),
            action: Some(action),
        });
    }
    compiled
}

/// Whether a route serves listener `pm`: its kind matches the protocol and its port (if any).
fn serves(spec: &RouteSpec, pm: &PortMapping) -> bool {
    let Some((_, protocol)) = crate::validate::route_kind(spec) else {
        return false;
    };
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
    protocol == pm.protocol && port.is_none_or(|p| p == pm.port)
}

fn path_shape(spec: &RouteSpec) -> (Option<&str>, bool, bool) {
    match spec.http_route.as_ref().or(spec.http2_route.as_ref()) {
        Some(h) => (
            h.r#match.prefix.as_deref(),
            h.r#match.path.as_ref().is_some_and(|p| p.exact.is_some()),
            h.r#match.path.as_ref().is_some_and(|p| p.regex.is_some()),
        ),
        None => (None, false, false),
    }
}

/// A virtual service provided directly by a node: everything on the port goes to that node.
fn node_route(
    cx: &mut Cx<'_>,
    b: &BackendRef,
    node: &str,
    pm: &PortMapping,
    out: &mut Outbound,
) -> Vec<v1::Route> {
    let Some(cluster) = target_cluster(cx, b, node, Some(pm.port)) else {
        return Vec::new();
    };
    let name = format!("{}:{}", b.service, pm.port);
    let targets = vec![v1::WeightedTarget {
        cluster,
        weight: 100,
    }];
    if pm.protocol == PortProtocol::Tcp {
        out.tcp_routes.push(v1::TcpRoute {
            name,
            port: u32::try_from(pm.port).unwrap_or(0),
            weighted_targets: targets,
            timeouts: None,
        });
        return Vec::new();
    }
    vec![v1::Route {
        name,
        priority: UNSET_PRIORITY,
        r#match: Some(v1::RouteMatch {
            path: Some(route_match::Path::Prefix("/".to_owned())),
            ..Default::default()
        }),
        action: Some(v1::RouteAction {
            weighted_targets: targets,
            timeouts: None,
            retry_policy: Some(default_retry(pm.protocol == PortProtocol::Grpc)),
            rewrite: None,
        }),
    }]
}

fn targets(
    cx: &mut Cx<'_>,
    b: &BackendRef,
    targets: &[crate::model::WeightedTarget],
    _route: &Subject,
) -> Vec<v1::WeightedTarget> {
    targets
        .iter()
        .filter_map(|t| {
            let cluster = target_cluster(cx, b, &t.virtual_node, t.port)?;
            Some(v1::WeightedTarget {
                cluster,
                weight: u32::try_from(t.weight).unwrap_or(0),
            })
        })
        .collect()
}

/// The cluster of node `node` on `port` (its only listener when `None`), as reached through
/// backend `b`. Named `NODE:PORT`.
fn target_cluster(
    cx: &mut Cx<'_>,
    b: &BackendRef,
    node: &str,
    port: Option<i64>,
) -> Option<String> {
    let mesh = cx.mesh.name.clone();
    let n = cx.model.node(&mesh, node)?;
    let listener = match port {
        Some(p) => n.spec.listeners.iter().find(|l| l.port_mapping.port == p)?,
        None => n.spec.listeners.first()?,
    };
    let port = listener.port_mapping.port;
    let sd = n.spec.service_discovery.as_ref()?;
    let mesh_pref = cx.mesh_ip_preference();
    let dns = if let Some(d) = &sd.dns {
        v1::DnsDiscovery {
            hostname: d.hostname.clone(),
            port: u32::try_from(port).unwrap_or(0),
            response_type: match d.response_type {
                Some(DnsResponseType::Endpoints) => {
                    v1::dns_discovery::ResponseType::Endpoints as i32
                }
                Some(DnsResponseType::Loadbalancer) => {
                    v1::dns_discovery::ResponseType::Loadbalancer as i32
                }
                None => 0,
            },
            ip_preference: d
                .ip_preference
                .or(mesh_pref)
                .map_or(0, |p| ip_preference(p) as i32),
            refresh: None,
        }
    } else if let Some(c) = &sd.aws_cloud_map {
        let host = format!("{}.{}", c.service_name, c.namespace_name);
        let mut w = format!(
            "virtualNode {node}: Cloud Map discovery is resolved as the DNS name {host} (the records a Cloud Map DNS namespace publishes)"
        );
        if !c.attributes.is_empty() {
            w.push_str("; its attribute filters cannot be applied");
        }
        if !cx.warnings.contains(&w) {
            cx.warnings.push(w);
        }
        v1::DnsDiscovery {
            hostname: host,
            port: u32::try_from(port).unwrap_or(0),
            response_type: v1::dns_discovery::ResponseType::Endpoints as i32,
            ip_preference: c
                .ip_preference
                .or(mesh_pref)
                .map_or(0, |p| ip_preference(p) as i32),
            refresh: None,
        }
    } else {
        return None;
    };
    let tls = match (&b.tls, &b.policy_at) {
        (Some(t), Some((subject, origin, field))) => {
            let (subject, origin, field) = (subject.clone(), origin.clone(), field.clone());
            client_tls(cx, t, port, &subject, &origin, &field)
        }
        _ => None,
    };
    let cluster = v1::Cluster {
        name: format!("{node}:{port}"),
        discovery: Some(v1::cluster::Discovery::Dns(dns)),
        protocol: cluster_protocol(listener.port_mapping.protocol) as i32,
        lb_policy: 0,
        connect_timeout: None,
        outlier_detection: listener
            .outlier_detection
            .as_ref()
            .map(|o| v1::OutlierDetection {
                max_server_errors: u32::try_from(o.max_server_errors).unwrap_or(1),
                interval: Some(duration(&o.interval)),
                base_ejection_duration: Some(duration(&o.base_ejection_duration)),
                max_ejection_percent: u32::try_from(o.max_ejection_percent).unwrap_or(0),
            }),
        health_check: None,
        connection_pool: None,
        tls,
        idle_timeout: None,
        stats_name: appmesh_stats_name("egress", &mesh, node, listener.port_mapping.protocol, port),
    };
    Some(cx.add_cluster(cluster, &b.service))
}
