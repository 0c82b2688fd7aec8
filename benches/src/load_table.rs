//! The routing table of the load harness (`benches/load/`) and of PGO training (`pgo-train`):
//! [`table_with_routes`]`(N)` with every cluster pointed at the one upstream, plus, tried first,
//! the route every peer gets: prefix `/` split 90/10 between `cluster-0` and `cluster-1` (both the
//! same upstream, as in the peers' configs). So a request costs the same whatever N is, and N only
//! adds what a table of N routes weighs. Optionally a TCP listener split 90/10 the same way
//! (iperf3 in the harness), and a gRPC listener split 90/10 over HTTP/2 clusters.
use ferry_api::v1::{self, cluster};

use crate::{prefix_route, table_with_routes};

/// Where the listeners of a load table listen and where their clusters point.
#[derive(Clone, Debug, Default)]
pub struct LoadTable {
    /// The HTTP listener's address (`host:port`).
    pub http: String,
    /// The HTTP upstream every HTTP cluster points at.
    pub upstream: String,
    /// Extra routes (`/svc-i/` prefixes) behind the 90/10 route: a table of this size.
    pub routes: usize,
    /// A TCP listener and its upstream.
    pub tcp: Option<(String, String)>,
    /// A gRPC listener and its (HTTP/2) upstream.
    pub grpc: Option<(String, String)>,
    /// The table's version; `load-{routes}` when `None`.
    pub version: Option<String>,
    /// What every App Mesh route gets from Ferry's agent, where the plain table has none: App
    /// Mesh's default retry policy on the split routes, and an access log in Envoy's default
    /// format, to this path, on the HTTP and gRPC listeners.
    pub appmesh_defaults: Option<String>,
}

/// The table described by `spec`.
pub fn load_table(spec: &LoadTable) -> v1::RoutingTable {
    // table_with_routes(0) has no routes but the listener, the virtual host and the clusters.
    let mut table = table_with_routes(spec.routes);
    table.version = spec
        .version
        .clone()
        .unwrap_or_else(|| format!("load-{}", spec.routes));
    let listener = &mut table.listeners[0];
    listener.address = spec.http.clone();
    let vhost = &mut listener.virtual_hosts[0];
    vhost.domains = vec!["*".to_owned()];
    vhost.routes.insert(
        0,
        prefix_route(
            "split",
            0,
            "/",
            Vec::new(),
            &[("cluster-0", 90), ("cluster-1", 10)],
        ),
    );
    for c in &mut table.clusters {
        c.discovery = Some(static_endpoint(&spec.upstream));
    }
    if let Some((listen, target)) = &spec.tcp {
        push_pair(
            &mut table,
            ["tcp-a", "tcp-b"],
            v1::cluster::Protocol::Tcp,
            target,
        );
        table.listeners.push(v1::Listener {
            name: "tcp".to_owned(),
            address: listen.clone(),
            protocol: v1::listener::Protocol::Tcp.into(),
            tcp_routes: vec![v1::TcpRoute {
                name: "iperf".to_owned(),
                weighted_targets: vec![
                    v1::WeightedTarget {
                        cluster: "tcp-a".to_owned(),
                        weight: 90,
                    },
                    v1::WeightedTarget {
                        cluster: "tcp-b".to_owned(),
                        weight: 10,
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    if let Some((listen, target)) = &spec.grpc {
        push_pair(
            &mut table,
            ["grpc-a", "grpc-b"],
            v1::cluster::Protocol::Grpc,
            target,
        );
        table.listeners.push(v1::Listener {
            name: "grpc".to_owned(),
            address: listen.clone(),
            protocol: v1::listener::Protocol::Grpc.into(),
            virtual_hosts: vec![v1::VirtualHost {
                name: "grpc".to_owned(),
                domains: vec!["*".to_owned()],
                routes: vec![prefix_route(
                    "grpc-split",
                    0,
                    "/",
                    Vec::new(),
                    &[("grpc-a", 90), ("grpc-b", 10)],
                )],
            }],
            ..Default::default()
        });
    }
    if let Some(path) = &spec.appmesh_defaults {
        with_appmesh_defaults(&mut table, path);
    }
    table
}

/// App Mesh's default retry policy (the one `ferry-agent` compiles) on every route, and an access
/// log in Envoy's default format on every HTTP and gRPC listener.
fn with_appmesh_defaults(table: &mut v1::RoutingTable, log_path: &str) {
    for listener in &mut table.listeners {
        if listener.protocol == i32::from(v1::listener::Protocol::Tcp) {
            continue;
        }
        let grpc = listener.protocol == i32::from(v1::listener::Protocol::Grpc);
        listener.access_log = Some(v1::AccessLog {
            path: log_path.to_owned(),
            format: None,
        });
        for route in listener
            .virtual_hosts
            .iter_mut()
            .flat_map(|v| v.routes.iter_mut())
        {
            if let Some(action) = route.action.as_mut() {
                action.retry_policy = Some(ferry_api::appmesh_defaults::retry_policy(grpc));
            }
        }
    }
}

/// Two clusters of `protocol`, both with the one endpoint `target`: the two sides of a 90/10 split.
fn push_pair(
    table: &mut v1::RoutingTable,
    names: [&str; 2],
    protocol: v1::cluster::Protocol,
    target: &str,
) {
    for name in names {
        table.clusters.push(v1::Cluster {
            name: name.to_owned(),
            protocol: protocol.into(),
            discovery: Some(static_endpoint(target)),
            ..Default::default()
        });
    }
}

fn static_endpoint(address: &str) -> cluster::Discovery {
    cluster::Discovery::StaticEndpoints(v1::StaticEndpoints {
        endpoints: vec![v1::Endpoint {
            address: address.to_owned(),
        }],
    })
}
