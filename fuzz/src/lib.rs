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
    static SINKS: OnceLock<Mutex<SinkRegistry>> = OnceLock::new();
    sanitize(&mut table);
    // A fresh registry per table: metric series would otherwise pile up across runs.
    let metrics = Metrics::new();
    let sinks = SINKS.get_or_init(|| Mutex::new(SinkRegistry::default()));
    let mut sinks = sinks.lock().unwrap_or_else(|e| e.into_inner());
    match table::compile(table, None, &metrics, &mut sinks) {
        Ok(t) => Some(t),
        Err(e) => {
            // Every refusal names a field path (possibly empty for table-wide errors) and says why.
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
