//! Picking where a routed request goes: the weighted choice among a route's clusters, then the
//! endpoint within the cluster. Both are built by `compile` from a generated table.
//!
//! - `weighted_pick/targets/K`: K = 1 (the fast path), 2 (90/10, a canary) and 10 (equal weights).
//! - `endpoint_pick/{round_robin,least_request}/N`: N = 3 and 100 endpoints, none busy.
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ferry_api::v1::cluster::LbPolicy;
use ferry_benches::{compiled, first_listener, table_with_cluster, table_with_weighted_route};

fn weighted(c: &mut Criterion) {
    let mut group = c.benchmark_group("weighted_pick");
    group.throughput(Throughput::Elements(1));
    let cases: [&[u32]; 3] = [&[100], &[90, 10], &[10; 10]];
    for weights in cases {
        let runtime = compiled(table_with_weighted_route(weights));
        let table = first_listener(&runtime);
        let Some(route) = table.vhosts.hosts.first().and_then(|v| v.routes.first()) else {
            panic!("the weighted table has a route");
        };
        let targets = &route.action.targets;
        assert_eq!(targets.clusters().count(), weights.len());
        group.bench_function(BenchmarkId::new("targets", weights.len()), |b| {
            b.iter(|| black_box(targets).pick());
        });
    }
    group.finish();
}

fn endpoint(c: &mut Criterion) {
    let mut group = c.benchmark_group("endpoint_pick");
    group.throughput(Throughput::Elements(1));
    for (name, lb) in [
        ("round_robin", LbPolicy::RoundRobin),
        ("least_request", LbPolicy::LeastRequest),
    ] {
        for n in [3, 100] {
            let runtime = compiled(table_with_cluster(n, lb));
            let Some(cluster) = runtime.clusters.get("pick") else {
                panic!("the table has cluster \"pick\"");
            };
            assert_eq!(cluster.endpoints().len(), n);
            group.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter(|| black_box(cluster).pick());
            });
        }
    }
    group.finish();
}

criterion_group!(benches, weighted, endpoint);
criterion_main!(benches);
