//! Shared helpers for the benchmarks: generators of routing tables and of the requests that hit
//! them, shared by the criterion benches (`benches/*.rs`) and the load harness.
//!
//! Every generator is deterministic, so a figure measured today is comparable with one measured
//! later. Endpoint addresses are all on the loopback (`127.0.0.1:20000` and up): the tables are
//! never meant to reach anything but this machine.
//!
//! The shape of [`table_with_routes`], which most benches use:
//!
//! - one HTTP listener `bench` on `127.0.0.1:15000` with one virtual host for [`AUTHORITY`];
//! - `n` routes named `route-{i}`, each a prefix match on `/svc-{i}/` (distinct, so a request
//!   for `/svc-{i}/...` matches route `i` and no other);
//! - every fourth route (`i % 4 == 0`, see [`route_has_header`]) also requires the header
//!   [`VARIANT_HEADER`]` = `[`VARIANT_VALUE`], as a canary or A/B route would;
//! - route `i` has priority `n - 1 - i`, so the compiler's sort has work to do and reverses the
//!   generated order: `route-{n-1}` is matched first ([`first_matched_route`]) and `route-0`,
//!   which carries a header match, last ([`last_matched_route`]);
//! - route `i` sends everything to `cluster-{i % CLUSTERS}`; each of the [`CLUSTERS`] clusters
//!   has [`ENDPOINTS_PER_CLUSTER`] static endpoints and least-request balancing (App Mesh's
//!   default).
use std::sync::Arc;

pub mod echo;
pub mod load_table;

use ferry_api::v1::{self, cluster, header_match, route_match};
use ferry_proxy::access_log::SinkRegistry;
use ferry_proxy::cluster::Endpoint;
use ferry_proxy::metrics::Metrics;
use ferry_proxy::route::{RequestView, normalize_path};
use ferry_proxy::table::{CompileError, ListenerTable, RuntimeTable, compile};
use http::header::{ACCEPT, HOST, USER_AGENT};
use http::{HeaderName, HeaderValue, Method, Request};

/// The authority (Host header) the virtual host of [`table_with_routes`] answers for.
pub const AUTHORITY: &str = "bench.svc.local";
/// The port of the generated listeners, which is also the port requests "arrive" on.
pub const LISTENER_PORT: u16 = 15000;
/// The header that every fourth route of [`table_with_routes`] requires.
pub const VARIANT_HEADER: &str = "x-bench-variant";
/// The value [`VARIANT_HEADER`] must have (exact match).
pub const VARIANT_VALUE: &str = "canary";
/// How many clusters [`table_with_routes`] spreads its routes over.
pub const CLUSTERS: usize = 4;
/// Static endpoints per cluster in [`table_with_routes`].
pub const ENDPOINTS_PER_CLUSTER: usize = 3;
/// First port of the generated (loopback) endpoint addresses.
const FIRST_ENDPOINT_PORT: usize = 20000;

/// Whether route `i` of [`table_with_routes`] also carries a header match (one in four does).
pub fn route_has_header(i: usize) -> bool {
    i.is_multiple_of(4)
}

/// The route of an `n`-route [`table_with_routes`] that the compiled table tries first.
pub fn first_matched_route(n: usize) -> usize {
    n - 1
}

/// The route of an `n`-route [`table_with_routes`] that the compiled table tries last: a request
/// for it scans every route (the worst case of the linear scan). It carries a header match.
pub fn last_matched_route(_n: usize) -> usize {
    0
}

/// A cluster named `name` with `endpoints` static loopback endpoints, ports counting up from
/// `first_port`, balanced by `lb`.
pub fn static_cluster(
    name: &str,
    endpoints: usize,
    lb: cluster::LbPolicy,
    first_port: usize,
) -> v1::Cluster {
    v1::Cluster {
        name: name.to_owned(),
        discovery: Some(cluster::Discovery::StaticEndpoints(v1::StaticEndpoints {
            endpoints: (0..endpoints)
                .map(|e| v1::Endpoint {
                    address: format!("127.0.0.1:{}", first_port + e),
                })
                .collect(),
        })),
        lb_policy: lb.into(),
        ..Default::default()
    }
}

/// A route named `name` sending requests with path prefix `prefix` (and the `headers`) to
/// `targets`, given as (cluster, weight).
pub fn prefix_route(
    name: &str,
    priority: u32,
    prefix: &str,
    headers: Vec<v1::HeaderMatch>,
    targets: &[(&str, u32)],
) -> v1::Route {
    v1::Route {
        name: name.to_owned(),
        priority,
        r#match: Some(v1::RouteMatch {
            path: Some(route_match::Path::Prefix(prefix.to_owned())),
            headers,
            ..Default::default()
        }),
        action: Some(v1::RouteAction {
            weighted_targets: targets
                .iter()
                .map(|(cluster, weight)| v1::WeightedTarget {
                    cluster: (*cluster).to_owned(),
                    weight: *weight,
                })
                .collect(),
            ..Default::default()
        }),
    }
}

/// The HTTP listener `bench` on `127.0.0.1:`[`LISTENER_PORT`] serving `virtual_hosts`.
pub fn http_listener(virtual_hosts: Vec<v1::VirtualHost>) -> v1::Listener {
    v1::Listener {
        name: "bench".to_owned(),
        address: format!("127.0.0.1:{LISTENER_PORT}"),
        virtual_hosts,
        ..Default::default()
    }
}

/// A table with `n` routes in one virtual host; see the crate documentation for its shape.
///
/// The table carries a version (`bench-{n}`), as the agent's tables do: a table without one is
/// versioned by hashing its JSON encoding at compile time, which costs more than the rest.
pub fn table_with_routes(n: usize) -> v1::RoutingTable {
    let clusters: Vec<v1::Cluster> = (0..CLUSTERS)
        .map(|c| {
            static_cluster(
                &format!("cluster-{c}"),
                ENDPOINTS_PER_CLUSTER,
                cluster::LbPolicy::LeastRequest,
                FIRST_ENDPOINT_PORT + c * 100,
            )
        })
        .collect();
    let routes = (0..n)
        .map(|i| {
            let headers = if route_has_header(i) {
                vec![v1::HeaderMatch {
                    name: VARIANT_HEADER.to_owned(),
                    r#match: Some(header_match::Match::Exact(VARIANT_VALUE.to_owned())),
                    ..Default::default()
                }]
            } else {
                Vec::new()
            };
            let priority = u32::try_from(n - 1 - i).unwrap_or(u32::MAX);
            let cluster = &clusters[i % CLUSTERS].name;
            prefix_route(
                &format!("route-{i}"),
                priority,
                &format!("/svc-{i}/"),
                headers,
                &[(cluster, 100)],
            )
        })
        .collect();
    let vhost = v1::VirtualHost {
        name: "bench".to_owned(),
        domains: vec![AUTHORITY.to_owned()],
        routes,
    };
    v1::RoutingTable {
        version: format!("bench-{n}"),
        listeners: vec![http_listener(vec![vhost])],
        clusters,
        ..Default::default()
    }
}

/// The exact domain of virtual host `i` in [`table_with_domains`].
pub fn exact_domain(i: usize) -> String {
    format!("svc-{i}.ns.bench.local")
}

/// A host name that only the wildcard virtual host `j` of [`table_with_domains`] matches.
pub fn wildcard_host(j: usize) -> String {
    format!("api.zone-{j}.bench.local")
}

/// A table whose one listener has `exact` virtual hosts with one exact domain each
/// ([`exact_domain`]), `wildcards` with one `*.zone-{j}.bench.local` domain each, and a default
/// virtual host for `*`. Every virtual host has a single catch-all route to one cluster.
pub fn table_with_domains(exact: usize, wildcards: usize) -> v1::RoutingTable {
    let cluster = static_cluster(
        "cluster-0",
        ENDPOINTS_PER_CLUSTER,
        cluster::LbPolicy::LeastRequest,
        FIRST_ENDPOINT_PORT,
    );
    let vhost = |name: String, domain: String| v1::VirtualHost {
        routes: vec![prefix_route(
            &format!("{name}-root"),
            0,
            "/",
            Vec::new(),
            &[("cluster-0", 100)],
        )],
        name,
        domains: vec![domain],
    };
    let mut vhosts: Vec<v1::VirtualHost> = (0..exact)
        .map(|i| vhost(format!("exact-{i}"), exact_domain(i)))
        .collect();
    vhosts.extend(
        (0..wildcards).map(|j| vhost(format!("wild-{j}"), format!("*.zone-{j}.bench.local"))),
    );
    vhosts.push(vhost("default".to_owned(), "*".to_owned()));
    v1::RoutingTable {
        version: format!("domains-{exact}-{wildcards}"),
        listeners: vec![http_listener(vhosts)],
        clusters: vec![cluster],
        ..Default::default()
    }
}

/// A table with one catch-all route split over one cluster per weight (`cluster-{k}`, weight
/// `weights[k]`), e.g. `&[90, 10]` for a 90/10 canary.
pub fn table_with_weighted_route(weights: &[u32]) -> v1::RoutingTable {
    let clusters: Vec<v1::Cluster> = (0..weights.len())
        .map(|k| {
            static_cluster(
                &format!("cluster-{k}"),
                ENDPOINTS_PER_CLUSTER,
                cluster::LbPolicy::LeastRequest,
                FIRST_ENDPOINT_PORT + k * 100,
            )
        })
        .collect();
    let targets: Vec<(&str, u32)> = clusters
        .iter()
        .map(|c| c.name.as_str())
        .zip(weights.iter().copied())
        .collect();
    let vhost = v1::VirtualHost {
        name: "bench".to_owned(),
        domains: vec![AUTHORITY.to_owned()],
        routes: vec![prefix_route("split", 0, "/", Vec::new(), &targets)],
    };
    v1::RoutingTable {
        version: format!("weighted-{weights:?}"),
        listeners: vec![http_listener(vec![vhost])],
        clusters,
        ..Default::default()
    }
}

/// A table with one cluster, `pick`, of `endpoints` static endpoints balanced by `lb`, and a
/// catch-all route to it.
pub fn table_with_cluster(endpoints: usize, lb: cluster::LbPolicy) -> v1::RoutingTable {
    let vhost = v1::VirtualHost {
        name: "bench".to_owned(),
        domains: vec![AUTHORITY.to_owned()],
        routes: vec![prefix_route("all", 0, "/", Vec::new(), &[("pick", 100)])],
    };
    v1::RoutingTable {
        version: format!("cluster-{endpoints}-{}", lb.as_str_name()),
        listeners: vec![http_listener(vec![vhost])],
        clusters: vec![static_cluster("pick", endpoints, lb, FIRST_ENDPOINT_PORT)],
        ..Default::default()
    }
}

/// What a proxy keeps across tables to compile them: the metrics registry and the access-log
/// sinks (both long-lived in `ferry_proxy::server::Proxy`).
#[derive(Default)]
pub struct Compiler {
    pub metrics: Metrics,
    pub sinks: SinkRegistry,
}

impl Compiler {
    /// Compiles `source` as the proxy does, reusing the clusters of `previous`.
    pub fn compile(
        &mut self,
        source: v1::RoutingTable,
        previous: Option<&RuntimeTable>,
    ) -> Result<RuntimeTable, CompileError> {
        compile(source, previous, &self.metrics, &mut self.sinks)
    }
}

/// Compiles `source` with a throwaway [`Compiler`]; panics when the table does not compile (the
/// generated tables always do).
pub fn compiled(source: v1::RoutingTable) -> RuntimeTable {
    Compiler::default()
        .compile(source, None)
        .unwrap_or_else(|e| panic!("a generated table must compile: {e}"))
}

/// The table of the first listener of `table` (the generated tables have exactly one).
pub fn first_listener(table: &RuntimeTable) -> Arc<ListenerTable> {
    match table.listeners.first() {
        Some(spec) => Arc::clone(&spec.table),
        None => panic!("a generated table has a listener"),
    }
}

/// A `GET` as a client would send it to [`AUTHORITY`] for `path` (with a query string), with a
/// few headers every request carries (Host, User-Agent, Accept, X-Request-Id), plus `extra`.
pub fn request(path: &str, extra: &[(&str, &str)]) -> Request<()> {
    let mut req = Request::new(());
    *req.method_mut() = Method::GET;
    *req.uri_mut() = format!("{path}?page=2&limit=50")
        .parse()
        .unwrap_or_else(|e| panic!("{path:?} is a valid path: {e}"));
    let headers = req.headers_mut();
    headers.insert(HOST, HeaderValue::from_static(AUTHORITY));
    headers.insert(USER_AGENT, HeaderValue::from_static("ferry-bench/1.0"));
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    headers.insert(
        HeaderName::from_static("x-request-id"),
        HeaderValue::from_static("8d2f0a4e-5b1c-4c3e-9a57-0c1f6e2d9b41"),
    );
    for (name, value) in extra {
        let name =
            HeaderName::from_bytes(name.as_bytes()).unwrap_or_else(|e| panic!("{name:?}: {e}"));
        let value = HeaderValue::from_str(value).unwrap_or_else(|e| panic!("{value:?}: {e}"));
        headers.append(name, value);
    }
    req
}

/// A request that route `i` of [`table_with_routes`] matches (and no other route does).
pub fn request_for_route(i: usize) -> Request<()> {
    let path = format!("/svc-{i}/items/42");
    if route_has_header(i) {
        request(&path, &[(VARIANT_HEADER, VARIANT_VALUE)])
    } else {
        request(&path, &[])
    }
}

/// A request for [`AUTHORITY`] that no route of [`table_with_routes`] matches (a 404).
pub fn request_for_no_route() -> Request<()> {
    request("/unrouted/items/42", &[])
}

/// Where [`route_request`] sent a request.
pub struct Routed {
    /// Index of the virtual host in the listener.
    pub vhost: usize,
    /// Index of the route in the virtual host (in priority order).
    pub route: usize,
    pub endpoint: Arc<Endpoint>,
}

/// Routes `req` as `ferry_proxy::http::handler::handle` does, from reading the authority to
/// picking the endpoint: the authority (Host, else the URI's), the normalized path, the virtual
/// host, the first route whose match holds, the weighted cluster, then the cluster's endpoint.
/// `None` is the handler's 404 (no virtual host, or no route) or 503 (no endpoint).
///
/// It leaves out what the handler does around routing: the URI length check, hop-by-hop and
/// forwarding headers, the access-log capture and the metrics.
pub fn route_request(
    table: &ListenerTable,
    req: &Request<()>,
    scheme: &str,
    port: u16,
) -> Option<Routed> {
    let authority: String = match req.headers().get(HOST).and_then(|h| h.to_str().ok()) {
        Some(h) => h.to_owned(),
        None => req
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default(),
    };
    let path = normalize_path(req.uri().path());
    let view = RequestView {
        method: req.method(),
        path: &path,
        query: req.uri().query(),
        headers: req.headers(),
        scheme,
        port,
    };
    let (vi, vhost) = table.vhosts.find(&authority)?;
    let (ri, route) = vhost
        .routes
        .iter()
        .enumerate()
        .find(|(_, r)| r.matches(&view))?;
    let cluster = Arc::clone(route.action.targets.pick());
    let endpoint = cluster.pick()?;
    Some(Routed {
        vhost: vi,
        route: ri,
        endpoint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routed_name(table: &ListenerTable, req: &Request<()>) -> Option<String> {
        let r = route_request(table, req, "http", LISTENER_PORT)?;
        Some(table.vhosts.hosts[r.vhost].routes[r.route].name.clone())
    }

    #[test]
    fn route_tables_order_and_route_as_documented() {
        for n in [1, 10, 1000] {
            let rt = compiled(table_with_routes(n));
            let table = first_listener(&rt);
            let routes = &table.vhosts.hosts[0].routes;
            assert_eq!(routes.len(), n);
            assert_eq!(routes[0].name, format!("route-{}", first_matched_route(n)));
            assert_eq!(
                routes[n - 1].name,
                format!("route-{}", last_matched_route(n))
            );
            for i in [first_matched_route(n), last_matched_route(n), n / 2] {
                assert_eq!(
                    routed_name(&table, &request_for_route(i)),
                    Some(format!("route-{i}"))
                );
            }
            assert_eq!(routed_name(&table, &request_for_no_route()), None);
        }
    }

    #[test]
    fn header_routes_need_their_header() {
        let rt = compiled(table_with_routes(8));
        let table = first_listener(&rt);
        assert!(route_has_header(4));
        assert_eq!(routed_name(&table, &request("/svc-4/x", &[])), None);
        assert_eq!(
            routed_name(&table, &request("/svc-5/x", &[])),
            Some("route-5".to_owned())
        );
        let headers = table.vhosts.hosts[0]
            .routes
            .iter()
            .filter(|r| !r.headers.is_empty())
            .count();
        assert_eq!(headers, 2);
    }

    #[test]
    fn domain_tables_find_exact_wildcard_and_default() {
        let rt = compiled(table_with_domains(100, 5));
        let table = first_listener(&rt);
        let name = |a: &str| table.vhosts.find(a).map(|(_, v)| v.name.clone());
        assert_eq!(name(&exact_domain(42)), Some("exact-42".to_owned()));
        assert_eq!(
            name(&format!("{}:8080", exact_domain(42))),
            Some("exact-42".to_owned())
        );
        assert_eq!(name(&wildcard_host(3)), Some("wild-3".to_owned()));
        assert_eq!(name("example.com"), Some("default".to_owned()));
    }

    #[test]
    fn weighted_and_cluster_tables_compile() {
        let rt = compiled(table_with_weighted_route(&[90, 10]));
        assert_eq!(rt.clusters.len(), 2);
        let table = first_listener(&rt);
        assert_eq!(
            table.vhosts.hosts[0].routes[0]
                .action
                .targets
                .clusters()
                .count(),
            2
        );
        let rt = compiled(table_with_cluster(100, cluster::LbPolicy::RoundRobin));
        assert_eq!(
            rt.clusters.get("pick").map(|c| c.endpoints().len()),
            Some(100)
        );
    }
}
