//! A hot swap of a 10,000-route table (`table_with_routes(10_000)`), step by step.
//!
//! - `table_swap/decode_yaml` and `decode_json`: the file form of the table to a
//!   `v1::RoutingTable` (what a file reload does before compiling).
//! - `table_swap/compile_cold`: compile with no previous table (start-up: every cluster is built).
//! - `table_swap/compile_unversioned`: the same for a table without a version, which the compiler
//!   versions by hashing its JSON encoding (a hand-written file usually has no version).
//! - `table_swap/compile_and_store`: the hot-swap path of `Proxy::apply`: compile with
//!   `previous: Some(&old)` (unchanged clusters are reused), then `ArcSwap::store` of the new
//!   listener table. The replaced listener table stays referenced elsewhere, so freeing it is not
//!   measured here but in:
//! - `table_swap/drop_table`: freeing a compiled 10,000-route table, which the proxy pays when the
//!   last reference goes (in `apply`, or in the last in-flight request still holding the old one).
//!
//! The source table is cloned outside the measurement (`iter_batched`); the compiled tables are
//! dropped outside it too, except in `drop_table`.
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ferry_api::v1;
use ferry_benches::{Compiler, first_listener, table_with_routes};
use ferry_proxy::table::RuntimeTable;

const ROUTES: usize = 10_000;

fn compile_ok(
    compiler: &mut Compiler,
    source: v1::RoutingTable,
    previous: Option<&RuntimeTable>,
) -> RuntimeTable {
    compiler
        .compile(source, previous)
        .unwrap_or_else(|e| panic!("the generated table compiles: {e}"))
}

fn swap(c: &mut Criterion) {
    let source = table_with_routes(ROUTES);
    let yaml = ferry_api::encode_yaml(&source);
    let json = ferry_api::encode_json(&source);
    let mut compiler = Compiler::default();

    let mut group = c.benchmark_group("table_swap");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));

    // Decoding: bytes of text per second.
    type Decode = fn(&str, &str) -> Result<v1::RoutingTable, ferry_api::DecodeError>;
    let decoders: [(&str, &String, Decode); 2] = [
        ("decode_yaml", &yaml, ferry_api::decode_yaml),
        ("decode_json", &json, ferry_api::decode_json),
    ];
    for (name, text, decode) in decoders {
        let decoded = decode(text, "bench").unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(decoded == source, "{name} gives back the table");
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(name, |b| b.iter(|| decode(black_box(text), "bench")));
    }

    // Compiling: routes per second.
    group.throughput(Throughput::Elements(ROUTES as u64));
    group.bench_function("compile_cold", |b| {
        b.iter_batched(
            || source.clone(),
            |s| compile_ok(&mut compiler, s, None),
            BatchSize::LargeInput,
        );
    });
    let unversioned = v1::RoutingTable {
        version: String::new(),
        ..source.clone()
    };
    group.bench_function("compile_unversioned", |b| {
        b.iter_batched(
            || unversioned.clone(),
            |s| compile_ok(&mut compiler, s, None),
            BatchSize::LargeInput,
        );
    });

    let old = compile_ok(&mut compiler, source.clone(), None);
    let live = ArcSwap::new(first_listener(&old));
    group.bench_function("compile_and_store", |b| {
        b.iter_batched(
            // Also hold the table being replaced, so that store() does not free it.
            || (source.clone(), live.load_full()),
            |(s, replaced)| {
                let new = compile_ok(&mut compiler, s, Some(&old));
                live.store(first_listener(&new));
                (new, replaced)
            },
            BatchSize::LargeInput,
        );
    });
    let reused = compile_ok(&mut compiler, source.clone(), Some(&old));
    for (name, cluster) in &reused.clusters {
        assert!(
            old.clusters
                .get(name)
                .is_some_and(|o| Arc::ptr_eq(o, cluster)),
            "{name} is reused"
        );
    }

    group.bench_function("drop_table", |b| {
        b.iter_batched(
            || compile_ok(&mut compiler, source.clone(), Some(&old)),
            drop,
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group!(benches, swap);
criterion_main!(benches);
