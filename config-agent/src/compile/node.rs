//! A virtual node's table: the inbound listener to the local app, and the outbound listener to
//! its backends.
use ferry_api::v1::{self, route_match};

use super::outbound::{BackendRef, outbound};
use super::{
    Cx, access_log, appmesh_stats_name, cluster_protocol, default_timeouts, duration,
    http_timeouts, listener_protocol, millis, server_tls,
};
use crate::model::{IpPreference, Kind, NodeListener, PortProtocol, Res, VirtualNodeSpec};

pub(crate) fn listeners(cx: &mut Cx<'_>, node: &Res<VirtualNodeSpec>) -> Vec<v1::Listener> {
    let mut out = Vec::new();
    let log = access_log(node.spec.logging.as_ref());
    if !node.spec.listeners.is_empty() {
        out.push(ingress(cx, node, log.clone()));
    }
    out.push(egress(cx, node, log));
    out
}

fn ip_preference(cx: &Cx<'_>, node: &Res<VirtualNodeSpec>) -> Option<IpPreference> {
    let sd = node.spec.service_discovery.as_ref();
    sd.and_then(|s| s.dns.as_ref().and_then(|d| d.ip_preference))
        .or(sd.and_then(|s| s.aws_cloud_map.as_ref().and_then(|c| c.ip_preference)))
        .or(cx.mesh_ip_preference())
}

fn ingress(
    cx: &mut Cx<'_>,
    node: &Res<VirtualNodeSpec>,
    log: Option<v1::AccessLog>,
) -> v1::Listener {
    let pref = ip_preference(cx, node);
    // App Mesh: the local app is reached over IPv4 unless an IPv6 preference is set; listeners bind
    // every address (v4 and v6 when a preference is set).
    let (local_ip, bind_ip) = match pref {
        Some(IpPreference::Ipv6Preferred | IpPreference::Ipv6Only) => ("[::1]", "[::]"),
        Some(_) => ("127.0.0.1", "[::]"),
        None => ("127.0.0.1", "0.0.0.0"),
    };
    let mut listeners: Vec<(usize, &NodeListener)> =
        node.spec.listeners.iter().enumerate().collect();
    listeners.sort_by_key(|(_, l)| l.port_mapping.port);
    let several = listeners.len() > 1;
    let subject = node.subject(Kind::VirtualNode);
    let mut routes = Vec::new();
    let mut tcp_routes = Vec::new();
    let mut tls: Option<(String, Option<v1::ServerTls>)> = None;
    for (i, l) in &listeners {
        let port = l.port_mapping.port;
        let protocol = l.port_mapping.protocol;
        let field = format!("spec.listeners[{i}]");
        let cluster = format!("ingress:{port}");
        cx.clusters
            .insert(cluster.clone(), local_cluster(&cluster, node, l, local_ip));
        let listener_tls = l
            .tls
            .as_ref()
            .and_then(|t| server_tls(cx, t, &subject, &node.origin, &format!("{field}.tls")));
        match &tls {
            None => tls = Some((field.clone(), listener_tls)),
            Some((first, t)) if *t != listener_tls => {
                let msg = format!(
                    "its TLS differs from {first}.tls: a Ferry proxy terminates TLS once for all of a node's listeners, so they must share one TLS setting"
                );
                cx.unsupported(&subject, &node.origin, &format!("{field}.tls"), &msg);
            }
            Some(_) => {}
        }
        let targets = vec![v1::WeightedTarget {
            cluster: cluster.clone(),
            weight: 100,
        }];
        let route_port = if several {
            u32::try_from(port).unwrap_or(0)
        } else {
            0
        };
        if protocol == PortProtocol::Tcp {
            let idle = l
                .timeout
                .as_ref()
                .and_then(|t| t.tcp.as_ref())
                .and_then(|t| t.idle.as_ref())
                .map(duration);
            tcp_routes.push(v1::TcpRoute {
                name: cluster.clone(),
                port: route_port,
                weighted_targets: targets,
                timeouts: idle.map(|i| v1::Timeouts {
                    request: None,
                    idle: Some(i),
                }),
            });
            continue;
        }
        let timeout = l.timeout.as_ref().and_then(|t| match protocol {
            PortProtocol::Http => t.http.as_ref(),
            PortProtocol::Http2 => t.http2.as_ref(),
            PortProtocol::Grpc => t.grpc.as_ref(),
            PortProtocol::Tcp => None,
        });
        routes.push(v1::Route {
            name: cluster.clone(),
            priority: 0,
            r#match: Some(v1::RouteMatch {
                path: Some(route_match::Path::Prefix("/".to_owned())),
                port: route_port,
                ..Default::default()
            }),
            action: Some(v1::RouteAction {
                weighted_targets: targets,
                timeouts: http_timeouts(timeout),
                retry_policy: None,
                rewrite: None,
            }),
        });
    }
    let protocol = match listeners.as_slice() {
        [(_, only)] => listener_protocol(only.port_mapping.protocol),
        _ if routes.is_empty() => v1::listener::Protocol::Tcp,
        _ => v1::listener::Protocol::Http,
    };
    let virtual_hosts = if routes.is_empty() {
        Vec::new()
    } else {
        vec![v1::VirtualHost {
            name: "ingress".to_owned(),
            domains: vec!["*".to_owned()],
            routes,
        }]
    };
    v1::Listener {
        name: "ingress".to_owned(),
        address: format!("{bind_ip}:{}", cx.opts.ingress_port),
        direction: v1::listener::Direction::Inbound as i32,
        protocol: protocol as i32,
        // App Mesh's interception: iptables redirects the app ports here, and the original
        // destination tells them apart (a direct connection is served as well).
        original_dst: true,
        tls: tls.and_then(|(_, t)| t),
        timeouts: default_timeouts(),
        limits: None,
        access_log: log,
        virtual_hosts,
        tcp_routes,
        egress_policy: 0,
        egress_allowed_hosts: Vec::new(),
    }
}

/// The local app behind one node listener, with the listener's pool and health check.
fn local_cluster(
    name: &str,
    node: &Res<VirtualNodeSpec>,
    l: &NodeListener,
    local_ip: &str,
) -> v1::Cluster {
    let port = l.port_mapping.port;
    let pool = l.connection_pool.as_ref().map(|p| {
        let u = |v: i64| u32::try_from(v).unwrap_or(u32::MAX);
        let mut out = v1::ConnectionPool::default();
        if let Some(t) = &p.tcp {
            out.max_connections = u(t.max_connections);
        }
        if let Some(h) = &p.http {
            out.max_connections = u(h.max_connections);
            // App Mesh's default: 2147483647 (effectively unbounded).
            out.max_pending_requests = u(h.max_pending_requests.unwrap_or(2_147_483_647));
        }
        if let Some(r) = p.http2.as_ref().or(p.grpc.as_ref()) {
            out.max_requests = u(r.max_requests);
        }
        out
    });
    let health_check = l.health_check.as_ref().map(|h| {
        use v1::health_check::Protocol as P;
        v1::HealthCheck {
            protocol: match h.protocol {
                PortProtocol::Http => P::Http,
                PortProtocol::Http2 => P::Http2,
                PortProtocol::Grpc => P::Grpc,
                PortProtocol::Tcp => P::Tcp,
            } as i32,
            path: h.path.clone().unwrap_or_default(),
            port: 0,
            healthy_threshold: u32::try_from(h.healthy_threshold).unwrap_or(2),
            unhealthy_threshold: u32::try_from(h.unhealthy_threshold).unwrap_or(2),
            interval: Some(millis(h.interval_millis)),
            timeout: Some(millis(h.timeout_millis)),
        }
    });
    v1::Cluster {
        name: name.to_owned(),
        discovery: Some(v1::cluster::Discovery::StaticEndpoints(
            v1::StaticEndpoints {
                endpoints: vec![v1::Endpoint {
                    address: format!("{local_ip}:{port}"),
                }],
            },
        )),
        protocol: cluster_protocol(l.port_mapping.protocol) as i32,
        lb_policy: 0,
        connect_timeout: None,
        outlier_detection: None,
        health_check,
        connection_pool: pool,
        tls: None,
        idle_timeout: None,
        stats_name: appmesh_stats_name(
            "ingress",
            &node.mesh,
            &node.name,
            l.port_mapping.protocol,
            port,
        ),
    }
}

fn egress(
    cx: &mut Cx<'_>,
    node: &Res<VirtualNodeSpec>,
    log: Option<v1::AccessLog>,
) -> v1::Listener {
    let subject = node.subject(Kind::VirtualNode);
    let defaults = node
        .spec
        .backend_defaults
        .as_ref()
        .and_then(|d| d.client_policy.as_ref())
        .and_then(|c| c.tls.clone());
    let mut backends: Vec<BackendRef> = node
        .spec
        .backends
        .iter()
        .enumerate()
        .filter_map(|(i, b)| {
            let vs = b.virtual_service.as_ref()?;
            let own = vs.client_policy.as_ref().and_then(|c| c.tls.clone());
            let (tls, field) = match own {
                Some(t) => (
                    Some(t),
                    format!("spec.backends[{i}].virtualService.clientPolicy.tls"),
                ),
                None => (
                    defaults.clone(),
                    "spec.backendDefaults.clientPolicy.tls".to_owned(),
                ),
            };
            Some(BackendRef {
                service: vs.virtual_service_name.clone(),
                policy_at: tls
                    .as_ref()
                    .map(|_| (subject.clone(), node.origin.clone(), field)),
                tls,
            })
        })
        .collect();
    backends.sort_by(|a, b| a.service.cmp(&b.service));
    let out = outbound(cx, &backends);
    let allow_all = cx
        .mesh
        .spec
        .egress_filter
        .as_ref()
        .is_some_and(|f| f.r#type == crate::model::EgressFilterType::AllowAll);
    v1::Listener {
        name: "egress".to_owned(),
        address: format!("127.0.0.1:{}", cx.opts.egress_port),
        direction: v1::listener::Direction::Outbound as i32,
        // HTTP, unless every backend is TCP. With both, the HTTP listener carries the TCP routes
        // too: the proxy picks TCP by the original destination port, as App Mesh's egress does.
        protocol: if out.virtual_hosts.is_empty() && !out.tcp_routes.is_empty() {
            v1::listener::Protocol::Tcp
        } else {
            v1::listener::Protocol::Http
        } as i32,
        // Transparent, as App Mesh's egress: the port the app dialled, then Host, pick the route;
        // connections made to it directly (explicit mode) are routed by Host alone.
        original_dst: true,
        tls: None,
        timeouts: default_timeouts(),
        limits: None,
        access_log: log,
        virtual_hosts: out.virtual_hosts,
        tcp_routes: out.tcp_routes,
        // The mesh's egress filter; App Mesh's default is DROP_ALL.
        egress_policy: if allow_all {
            v1::listener::EgressPolicy::AllowAll
        } else {
            v1::listener::EgressPolicy::DropAll
        } as i32,
        // App Mesh's DROP_ALL still lets the app reach AWS's APIs (its `..._amazonaws` cluster).
        egress_allowed_hosts: if allow_all {
            Vec::new()
        } else {
            vec!["*.amazonaws.com".to_owned()]
        },
    }
}
