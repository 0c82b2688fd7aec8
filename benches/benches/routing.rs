//! Routing a request: the virtual host, the linear scan over its routes, the weighted cluster and
//! the endpoint, as the request handler does it (see `ferry_benches::route_request`).
//!
//! - `route_request/{first,last,none}/N`: one virtual host of N routes (`table_with_routes`); a
//!   request matched by the route tried first, by the one tried last (every route is scanned, and
//!   the last carries a header match), and by none (a 404, also a full scan).
//! - `vhost_find/{case}/1000`: virtual host lookup among 1,000 exact domains, 20 wildcards and a
//!   default `*`.
//! - `route_steps/{step}`: the steps of `route_request/first/10` one by one, to see where the
//!   time of a request through a small table goes (the picks are in the `weighted` bench).
use std::hint::black_box;
use std::sync::Arc;

use arc_swap::ArcSwap;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ferry_benches::{
    AUTHORITY, LISTENER_PORT, compiled, exact_domain, first_listener, first_matched_route,
    last_matched_route, request, request_for_no_route, request_for_route, route_request,
    table_with_domains, table_with_routes, wildcard_host,
};
use ferry_proxy::route::{RequestView, normalize_path};
use http::header::HOST;

const SIZES: [usize; 3] = [10, 1_000, 10_000];
const EXACT_DOMAINS: usize = 1_000;
const WILDCARDS: usize = 20;

fn route(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_request");
    group.throughput(Throughput::Elements(1));
    for n in SIZES {
        let runtime = compiled(table_with_routes(n));
        // The handler reads its listener table through an ArcSwap, once per request.
        let swap = ArcSwap::new(first_listener(&runtime));
        let cases = [
            ("first", request_for_route(first_matched_route(n)), Some(0)),
            (
                "last",
                request_for_route(last_matched_route(n)),
                Some(n - 1),
            ),
            ("none", request_for_no_route(), None),
        ];
        for (case, req, expected) in cases {
            // Measure what the name says: the request must land on the expected route.
            let got = route_request(&swap.load(), &req, "http", LISTENER_PORT).map(|r| r.route);
            assert_eq!(got, expected, "{case}/{n}");
            group.bench_with_input(BenchmarkId::new(case, n), &req, |b, req| {
                b.iter(|| {
                    let table: Arc<_> = swap.load_full();
                    route_request(&table, black_box(req), "http", LISTENER_PORT)
                });
            });
        }
    }
    group.finish();
}

fn vhost(c: &mut Criterion) {
    let runtime = compiled(table_with_domains(EXACT_DOMAINS, WILDCARDS));
    let table = first_listener(&runtime);
    let exact = exact_domain(EXACT_DOMAINS / 2);
    let cases = [
        // One hash lookup.
        (
            "exact",
            exact.clone(),
            format!("exact-{}", EXACT_DOMAINS / 2),
        ),
        // "host:port" where the domain has no port: two hash lookups.
        (
            "exact_with_port",
            format!("{exact}:15000"),
            format!("exact-{}", EXACT_DOMAINS / 2),
        ),
        // Upper case: lowered into a new String first.
        (
            "exact_uppercase",
            exact.to_ascii_uppercase(),
            format!("exact-{}", EXACT_DOMAINS / 2),
        ),
        // Exact miss, then the suffix scan (longest first) up to the last wildcard.
        (
            "wildcard",
            wildcard_host(WILDCARDS - 1),
            format!("wild-{}", WILDCARDS - 1),
        ),
        // Every exact and suffix lookup misses, with and without the port: the default "*".
        (
            "default",
            "unknown.example.com:15000".to_owned(),
            "default".to_owned(),
        ),
    ];
    let mut group = c.benchmark_group("vhost_find");
    group.throughput(Throughput::Elements(1));
    for (case, authority, expected) in cases {
        let got = table.vhosts.find(&authority).map(|(_, v)| v.name.clone());
        assert_eq!(got.as_deref(), Some(expected.as_str()), "{case}");
        group.bench_with_input(
            BenchmarkId::new(case, EXACT_DOMAINS),
            authority.as_str(),
            |b, a| {
                b.iter(|| table.vhosts.find(black_box(a)).map(|(i, _)| i));
            },
        );
    }
    group.finish();
}

fn steps(c: &mut Criterion) {
    let n = 10;
    let runtime = compiled(table_with_routes(n));
    let swap = ArcSwap::new(first_listener(&runtime));
    let table = first_listener(&runtime);
    let req = request_for_route(first_matched_route(n));
    let dirty = request("//svc-9/./items/../items/42", &[]);
    let mut group = c.benchmark_group("route_steps");
    group.throughput(Throughput::Elements(1));
    group.bench_function("arc_swap_load_full", |b| b.iter(|| swap.load_full()));
    group.bench_function("authority_to_owned", |b| {
        b.iter(|| {
            black_box(&req)
                .headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        });
    });
    for (name, req) in [
        ("normalize_path_clean", &req),
        ("normalize_path_dirty", &dirty),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| normalize_path(black_box(req).uri().path()).len())
        });
    }
    group.bench_function("vhost_find", |b| {
        b.iter(|| table.vhosts.find(black_box(AUTHORITY)).map(|(i, _)| i))
    });
    let view = RequestView {
        method: req.method(),
        path: req.uri().path(),
        query: req.uri().query(),
        headers: req.headers(),
        scheme: "http",
        port: LISTENER_PORT,
    };
    let Some(vhost) = table.vhosts.hosts.first() else {
        panic!("the table has a virtual host");
    };
    group.bench_function("route_scan_first", |b| {
        b.iter(|| {
            vhost
                .routes
                .iter()
                .position(|r| r.matches(black_box(&view)))
        });
    });
    group.finish();
}

criterion_group!(benches, route, vhost, steps);
criterion_main!(benches);
