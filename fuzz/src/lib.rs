//! Shared pieces of Ferry's fuzz targets.
//!
//! Compiling a table must not touch the machine: access-log paths are pointed at `/dev/null` (a
//! fuzzed path could name any file) and TLS file paths are dropped (a fuzzed path could name
//! `/dev/zero`). Everything else in the table is compiled as the proxy would compile it.
use std::sync::{Mutex, OnceLock};

use ferry_api::v1;
use ferry_proxy::access_log::SinkRegistry;
use ferry_proxy::metrics::Metrics;
use ferry_proxy::table::{self, RuntimeTable};

/// Makes a decoded table safe to compile in a fuzzer (see the module docs).
pub fn sanitize(table: &mut v1::RoutingTable) {
    for l in &mut table.listeners {
        l.tls = None;
        if let Some(a) = l.access_log.as_mut() {
            a.path = "/dev/null".to_owned();
        }
    }
    for c in &mut table.clusters {
        c.tls = None;
    }
}

/// Compiles `table` (sanitized) the way the proxy does; `None` when it is refused.
pub fn compile(mut table: v1::RoutingTable) -> Option<RuntimeTable> {
    static STATE: OnceLock<Mutex<(Metrics, u32, SinkRegistry)>> = OnceLock::new();
    sanitize(&mut table);
    let state = STATE.get_or_init(|| Mutex::new((Metrics::new(), 0, SinkRegistry::default())));
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    // Building the metrics registry costs more than most tables; but its series pile up with
    // every new route or cluster name, so it is renewed every so often.
    state.1 += 1;
    if state.1 % 512 == 0 {
        state.0 = Metrics::new();
    }
    let (metrics, _, sinks) = &mut *state;
    match table::compile(table, None, metrics, sinks) {
        Ok(t) => Some(t),
        Err(e) => {
            // Every refusal says why.
            assert!(
                !e.message.is_empty(),
                "compile error without a message: {e:?}"
            );
            None
        }
    }
}

/// The path invariants every normalized path keeps: absolute, no empty, "." or ".." segment.
pub fn check_normalized(input: &str, out: &str) {
    assert!(out.starts_with('/'), "{input:?} -> {out:?}: not absolute");
    assert!(!out.contains("//"), "{input:?} -> {out:?}: empty segment");
    for seg in out.split('/') {
        assert!(
            seg != "." && seg != "..",
            "{input:?} -> {out:?}: dot segment left"
        );
    }
    let again = ferry_proxy::route::normalize_path(out);
    assert_eq!(again, out, "normalize_path is not idempotent on {input:?}");
}
