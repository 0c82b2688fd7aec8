//! Writes the routing tables of the load harness (`benches/load/`) as YAML on standard output.
//!
//! ```text
//! bench-tables --http 127.0.0.1:18001 --upstream 127.0.0.1:18000 [--routes N] \
//!              [--tcp 127.0.0.1:18002 --tcp-upstream 127.0.0.1:18003] \
//!              [--grpc 127.0.0.1:18014 --grpc-upstream 127.0.0.1:18005] [--version V]
//! ```
//!
//! The table is [`ferry_benches::table_with_routes`]`(N)` with every cluster pointed at the one
//! upstream, plus, tried first, the route every peer gets: prefix `/` split 90/10 between
//! `cluster-0` and `cluster-1` (both the same upstream, as in the peers' configs). So a request
//! costs the same whatever N is, and N only adds what a table of N routes weighs. With `--tcp`,
//! a TCP listener forwards to `--tcp-upstream` (iperf3), split 90/10 the same way. With `--grpc`, a
//! gRPC listener routes every call to `--grpc-upstream` (bench-grpc-upstream), split 90/10 the same
//! way over HTTP/2 clusters.
use ferry_api::v1::{self, cluster};
use ferry_benches::{prefix_route, table_with_routes};

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut http, mut upstream, mut routes) = (None, None, 0usize);
    let (mut tcp, mut tcp_upstream, mut version) = (None, None, None);
    let (mut grpc, mut grpc_upstream) = (None, None);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| fail(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--http" => http = Some(value()),
            "--upstream" => upstream = Some(value()),
            "--routes" => {
                routes = value()
                    .parse()
                    .unwrap_or_else(|e| fail(&format!("--routes: {e}")))
            }
            "--tcp" => tcp = Some(value()),
            "--tcp-upstream" => tcp_upstream = Some(value()),
            "--version" => version = Some(value()),
            "--grpc" => grpc = Some(value()),
            "--grpc-upstream" => grpc_upstream = Some(value()),
            other => fail(&format!("unknown argument {other}")),
        }
    }
    let http = http.unwrap_or_else(|| fail("--http is required"));
    let upstream = upstream.unwrap_or_else(|| fail("--upstream is required"));

    // table_with_routes(0) has no routes but the listener, the virtual host and the clusters.
    let mut table = table_with_routes(routes);
    table.version = version.unwrap_or_else(|| format!("load-{routes}"));
    let listener = &mut table.listeners[0];
    listener.address = http;
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
        c.discovery = Some(cluster::Discovery::StaticEndpoints(v1::StaticEndpoints {
            endpoints: vec![v1::Endpoint {
                address: upstream.clone(),
            }],
        }));
    }
    if let Some(tcp) = tcp {
        let target = tcp_upstream.unwrap_or_else(|| fail("--tcp needs --tcp-upstream"));
        for name in ["tcp-a", "tcp-b"] {
            table.clusters.push(v1::Cluster {
                name: name.to_owned(),
                protocol: v1::cluster::Protocol::Tcp.into(),
                discovery: Some(cluster::Discovery::StaticEndpoints(v1::StaticEndpoints {
                    endpoints: vec![v1::Endpoint {
                        address: target.clone(),
                    }],
                })),
                ..Default::default()
            });
        }
        table.listeners.push(v1::Listener {
            name: "tcp".to_owned(),
            address: tcp,
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
    if let Some(grpc) = grpc {
        let target = grpc_upstream.unwrap_or_else(|| fail("--grpc needs --grpc-upstream"));
        for name in ["grpc-a", "grpc-b"] {
            table.clusters.push(v1::Cluster {
                name: name.to_owned(),
                protocol: v1::cluster::Protocol::Grpc.into(),
                discovery: Some(cluster::Discovery::StaticEndpoints(v1::StaticEndpoints {
                    endpoints: vec![v1::Endpoint {
                        address: target.clone(),
                    }],
                })),
                ..Default::default()
            });
        }
        table.listeners.push(v1::Listener {
            name: "grpc".to_owned(),
            address: grpc,
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
    print!("{}", ferry_api::encode_yaml(&table));
}

fn fail(message: &str) -> ! {
    eprintln!("bench-tables: {message}");
    std::process::exit(2);
}
