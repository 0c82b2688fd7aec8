//! Prometheus metrics. Families are registered once; the handles a request touches (per cluster
//! and listener) are resolved when a table is compiled, so the request path only does atomic
//! adds. A route's series are created on its first request instead (see [`RouteMetrics`]): a
//! table of 10,000 routes would otherwise hold 50,000 idle series, ~3 KB of heap per route.
//! Labels are bounded: listener, route, cluster and status class, never paths.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets in seconds, from 0.5 ms to 1 h. They hold every one of Envoy's default
/// boundaries, so that `--stats-compat envoy` reads Envoy's millisecond buckets straight off them.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// The status classes used as label values, index = status / 100 - 1.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Index into per-class counter arrays for a status code (anything odd counts as 5xx).
pub fn class_index(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

pub struct Metrics {
    registry: Registry,
    downstream_rq: IntCounterVec,
    downstream_rq_time: HistogramVec,
    downstream_cx_active: IntGaugeVec,
    downstream_cx_total: IntCounterVec,
    downstream_cx_overflow: IntCounterVec,
    downstream_rq_rejected: IntCounterVec,
    downstream_cx_closed: IntCounterVec,
    upstream_rq: IntCounterVec,
    upstream_rq_time: HistogramVec,
    upstream_rq_timeout: IntCounterVec,
    upstream_cx_total: IntCounterVec,
    upstream_cx_active: IntGaugeVec,
    upstream_cx_connect_fail: IntCounterVec,
    upstream_no_healthy: IntCounterVec,
    cluster_endpoints: IntGaugeVec,
    cluster_endpoints_healthy: IntGaugeVec,
    cluster_endpoints_ejected: IntGaugeVec,
    upstream_retries: IntCounterVec,
    upstream_retry_success: IntCounterVec,
    upstream_retry_overflow: IntCounterVec,
    upstream_retry_body_too_large: IntCounterVec,
    upstream_per_try_timeouts: IntCounterVec,
    upstream_overflow: IntCounterVec,
    outlier_ejections: IntCounterVec,
    upstream_bytes: IntCounterVec,
    tcp_connections: IntCounterVec,
    tls_failures: IntCounterVec,
    upstream_tls_failures: IntCounterVec,
    egress_dropped: IntCounterVec,
    access_log_dropped: IntCounterVec,
    pub config_swaps: IntCounter,
    pub config_rejected: IntCounter,
    config_info: IntGaugeVec,
    pub config_last_swap: IntGauge,
    pub live: IntGauge,
    pub uptime: IntGauge,
    /// Refreshed at scrape time from /proc/self/status.
    pub memory: IntGauge,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let v = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("metric {name} is well formed: {e}"));
    register(r, Box::new(v.clone()));
    v
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let v = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("metric {name} is well formed: {e}"));
    register(r, Box::new(v.clone()));
    v
}

fn histogram_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    let v = HistogramVec::new(opts, labels)
        .unwrap_or_else(|e| unreachable!("metric {name} is well formed: {e}"));
    register(r, Box::new(v.clone()));
    v
}

fn register(r: &Registry, c: Box<dyn prometheus::core::Collector>) {
    // Names are distinct constants; a duplicate is a programming error caught by the unit test.
    if let Err(e) = r.register(c) {
        tracing::error!("metric registration failed: {e}");
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let config_swaps = IntCounter::new(
            "ferry_config_swaps_total",
            "Routing tables applied (including the first)",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let config_rejected = IntCounter::new(
            "ferry_config_rejected_total",
            "Routing tables rejected (parse or validation errors); the previous table kept serving",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let config_last_swap = IntGauge::new(
            "ferry_config_last_swap_timestamp_seconds",
            "Unix time of the last applied routing table",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let live = IntGauge::new(
            "ferry_server_live",
            "1 while the proxy is live and not draining",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let uptime = IntGauge::new("ferry_server_uptime_seconds", "Seconds since start")
            .unwrap_or_else(|e| unreachable!("{e}"));
        let memory = IntGauge::new(
            "ferry_server_memory_anonymous_bytes",
            "Anonymous resident memory of the process (RssAnon: the heap, including what the allocator keeps free, and stacks); refreshed at scrape time",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        for c in [&config_swaps, &config_rejected] {
            register(&r, Box::new(c.clone()));
        }
        for g in [&config_last_swap, &live, &uptime, &memory] {
            register(&r, Box::new(g.clone()));
        }
        Metrics {
            downstream_rq: counter_vec(
                &r,
                "ferry_http_downstream_requests_total",
                "Requests received, by listener, route (empty: no route) and status class",
                &["listener", "route", "code_class"],
            ),
            downstream_rq_time: histogram_vec(
                &r,
                "ferry_http_downstream_request_duration_seconds",
                "Time from a request's start to its last response byte",
                &["listener"],
            ),
            downstream_cx_active: gauge_vec(
                &r,
                "ferry_downstream_connections_active",
                "Open client connections",
                &["listener"],
            ),
            downstream_cx_total: counter_vec(
                &r,
                "ferry_downstream_connections_total",
                "Client connections accepted",
                &["listener"],
            ),
            downstream_cx_overflow: counter_vec(
                &r,
                "ferry_downstream_connections_overflow_total",
                "Client connections closed at once because the listener's max_connections was reached",
                &["listener"],
            ),
            downstream_rq_rejected: counter_vec(
                &r,
                "ferry_http_downstream_requests_rejected_total",
                "Requests refused before routing, by reason",
                &["listener", "reason"],
            ),
            downstream_cx_closed: counter_vec(
                &r,
                "ferry_downstream_connections_closed_total",
                "Client connections the proxy closed to protect itself, by reason (idle_timeout, header_timeout, h2_reset_flood, h2_protocol_error)",
                &["listener", "reason"],
            ),
            upstream_rq: counter_vec(
                &r,
                "ferry_http_upstream_requests_total",
                "Tries sent upstream, by cluster and status class: the upstream's status, or 504 (try timed out) / 503 (no response) when the try got none",
                &["cluster", "code_class"],
            ),
            upstream_rq_time: histogram_vec(
                &r,
                "ferry_http_upstream_request_duration_seconds",
                "Time from sending a request upstream to its response headers",
                &["cluster"],
            ),
            upstream_rq_timeout: counter_vec(
                &r,
                "ferry_http_upstream_request_timeouts_total",
                "Requests that timed out waiting for the upstream",
                &["cluster"],
            ),
            upstream_cx_total: counter_vec(
                &r,
                "ferry_upstream_connections_total",
                "Connections opened to upstream endpoints",
                &["cluster"],
            ),
            upstream_cx_active: gauge_vec(
                &r,
                "ferry_upstream_connections_active",
                "Open connections to upstream endpoints",
                &["cluster"],
            ),
            upstream_cx_connect_fail: counter_vec(
                &r,
                "ferry_upstream_connect_failures_total",
                "Failed attempts to connect to an upstream endpoint",
                &["cluster"],
            ),
            upstream_no_healthy: counter_vec(
                &r,
                "ferry_upstream_no_healthy_endpoint_total",
                "Requests answered 503 because the cluster had no usable endpoint",
                &["cluster"],
            ),
            cluster_endpoints: gauge_vec(
                &r,
                "ferry_cluster_endpoints",
                "Endpoints currently known in each cluster",
                &["cluster"],
            ),
            cluster_endpoints_healthy: gauge_vec(
                &r,
                "ferry_cluster_endpoints_healthy",
                "Endpoints that are healthy and not ejected (refreshed at scrape time)",
                &["cluster"],
            ),
            cluster_endpoints_ejected: gauge_vec(
                &r,
                "ferry_cluster_endpoints_ejected",
                "Endpoints ejected by outlier detection right now (refreshed at scrape time)",
                &["cluster"],
            ),
            upstream_retries: counter_vec(
                &r,
                "ferry_http_upstream_retries_total",
                "Retries sent",
                &["cluster"],
            ),
            upstream_retry_success: counter_vec(
                &r,
                "ferry_http_upstream_retry_success_total",
                "Requests that succeeded after at least one retry",
                &["cluster"],
            ),
            upstream_retry_overflow: counter_vec(
                &r,
                "ferry_http_upstream_retry_overflow_total",
                "Retries not sent because the retry budget was spent",
                &["cluster"],
            ),
            upstream_retry_body_too_large: counter_vec(
                &r,
                "ferry_http_upstream_retry_body_too_large_total",
                "Requests sent once, without retries, because their body was over the listener's maxRetryBodyBytes",
                &["cluster"],
            ),
            upstream_per_try_timeouts: counter_vec(
                &r,
                "ferry_http_upstream_per_try_timeouts_total",
                "Tries that hit the per-try timeout",
                &["cluster"],
            ),
            upstream_overflow: counter_vec(
                &r,
                "ferry_upstream_overflow_total",
                "Requests answered 503 at once by a circuit breaker (kind: pending = no free connection and the queue was full, requests = max_requests)",
                &["cluster", "kind"],
            ),
            outlier_ejections: counter_vec(
                &r,
                "ferry_outlier_ejections_total",
                "Endpoints ejected by outlier detection",
                &["cluster"],
            ),
            upstream_bytes: counter_vec(
                &r,
                "ferry_upstream_bytes_total",
                "Bytes read from (rx) and written to (tx) upstream connections, TCP-proxied and HTTP (after TLS decryption)",
                &["cluster", "direction"],
            ),
            tcp_connections: counter_vec(
                &r,
                "ferry_tcp_connections_total",
                "Connections routed by each TCP route",
                &["listener", "route"],
            ),
            tls_failures: counter_vec(
                &r,
                "ferry_tls_handshake_failures_total",
                "Client TLS handshakes refused by a listener, by cause (unknown_ca, san_mismatch, expired, no_certificate, handshake_error)",
                &["listener", "cause"],
            ),
            upstream_tls_failures: counter_vec(
                &r,
                "ferry_upstream_tls_failures_total",
                "TLS handshakes with upstream endpoints that failed, by cause",
                &["cluster", "cause"],
            ),
            egress_dropped: counter_vec(
                &r,
                "ferry_egress_dropped_total",
                "Requests and connections to destinations the table does not know, refused by the DROP_ALL egress filter",
                &["listener"],
            ),
            access_log_dropped: counter_vec(
                &r,
                "ferry_access_log_dropped_total",
                "Access-log lines dropped because the writer fell behind",
                &["path"],
            ),
            config_info: gauge_vec(
                &r,
                "ferry_config_info",
                "1 for the version of the routing table being served",
                &["version"],
            ),
            config_swaps,
            config_rejected,
            config_last_swap,
            live,
            uptime,
            memory,
            registry: r,
        }
    }

    /// The registry, for modules that register families of their own (e.g. DNS discovery).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        encode_families(&self.registry.gather())
    }

    pub fn set_config_version(&self, version: &str) {
        self.config_info.reset();
        self.config_info.with_label_values(&[version]).set(1);
    }

    /// A route's request counters. Nothing is registered until the route's first request.
    pub fn route(&self, listener: &str, route: &str) -> RouteMetrics {
        RouteMetrics(Arc::new(RouteSeries {
            family: self.downstream_rq.clone(),
            listener: listener.into(),
            route: route.into(),
            counters: OnceLock::new(),
            retired: AtomicBool::new(false),
        }))
    }

    pub fn listener(&self, listener: &str) -> ListenerMetrics {
        // The listener's no-route series are few (one set per listener): they exist from the start.
        let no_route = self.route(listener, "");
        no_route.counters();
        ListenerMetrics {
            no_route,
            duration: self.downstream_rq_time.with_label_values(&[listener]),
            cx_active: self.downstream_cx_active.with_label_values(&[listener]),
            cx_total: self.downstream_cx_total.with_label_values(&[listener]),
            cx_overflow: self.downstream_cx_overflow.with_label_values(&[listener]),
            uri_too_long: self
                .downstream_rq_rejected
                .with_label_values(&[listener, "uri_too_long"]),
            header_too_large: self
                .downstream_rq_rejected
                .with_label_values(&[listener, "header_too_large"]),
            bad_request: self
                .downstream_rq_rejected
                .with_label_values(&[listener, "bad_request"]),
            h2_stream_refused: self
                .downstream_rq_rejected
                .with_label_values(&[listener, "h2_stream_refused"]),
            idle_timeout: self
                .downstream_cx_closed
                .with_label_values(&[listener, "idle_timeout"]),
            header_timeout: self
                .downstream_cx_closed
                .with_label_values(&[listener, "header_timeout"]),
            h2_reset_flood: self
                .downstream_cx_closed
                .with_label_values(&[listener, "h2_reset_flood"]),
            h2_protocol_error: self
                .downstream_cx_closed
                .with_label_values(&[listener, "h2_protocol_error"]),
        }
    }

    pub fn cluster(&self, cluster: &str) -> ClusterMetrics {
        ClusterMetrics {
            requests: CLASSES.map(|c| self.upstream_rq.with_label_values(&[cluster, c])),
            duration: self.upstream_rq_time.with_label_values(&[cluster]),
            timeouts: self.upstream_rq_timeout.with_label_values(&[cluster]),
            cx_total: self.upstream_cx_total.with_label_values(&[cluster]),
            cx_active: self.upstream_cx_active.with_label_values(&[cluster]),
            cx_connect_fail: self.upstream_cx_connect_fail.with_label_values(&[cluster]),
            no_healthy: self.upstream_no_healthy.with_label_values(&[cluster]),
            endpoints: self.cluster_endpoints.with_label_values(&[cluster]),
            healthy: self.cluster_endpoints_healthy.with_label_values(&[cluster]),
            ejected: self.cluster_endpoints_ejected.with_label_values(&[cluster]),
            retries: self.upstream_retries.with_label_values(&[cluster]),
            retry_success: self.upstream_retry_success.with_label_values(&[cluster]),
            retry_overflow: self.upstream_retry_overflow.with_label_values(&[cluster]),
            retry_body_too_large: self
                .upstream_retry_body_too_large
                .with_label_values(&[cluster]),
            per_try_timeouts: self.upstream_per_try_timeouts.with_label_values(&[cluster]),
            overflow_pending: self
                .upstream_overflow
                .with_label_values(&[cluster, "pending"]),
            overflow_requests: self
                .upstream_overflow
                .with_label_values(&[cluster, "requests"]),
            ejections: self.outlier_ejections.with_label_values(&[cluster]),
            rx_bytes: self.upstream_bytes.with_label_values(&[cluster, "rx"]),
            tx_bytes: self.upstream_bytes.with_label_values(&[cluster, "tx"]),
        }
    }

    pub fn access_log_dropped(&self, path: &str) -> IntCounter {
        self.access_log_dropped.with_label_values(&[path])
    }

    pub fn tcp_route(&self, listener: &str, route: &str) -> IntCounter {
        self.tcp_connections.with_label_values(&[listener, route])
    }

    pub fn egress_dropped(&self, listener: &str) -> IntCounter {
        self.egress_dropped.with_label_values(&[listener])
    }

    /// The family listeners count refused TLS handshakes in.
    pub fn tls_failures(&self) -> IntCounterVec {
        self.tls_failures.clone()
    }

    /// The family clusters count failed upstream TLS handshakes in.
    pub fn upstream_tls_failures(&self) -> IntCounterVec {
        self.upstream_tls_failures.clone()
    }

    /// Forgets the series of a route that is gone from the table, so labels stay bounded.
    pub fn remove_route(&self, listener: &str, route: &str) {
        for c in CLASSES {
            let _ = self
                .downstream_rq
                .remove_label_values(&[listener, route, c]);
        }
    }

    /// Forgets the series of a cluster that is gone from the table.
    pub fn remove_cluster(&self, cluster: &str) {
        for c in CLASSES {
            let _ = self.upstream_rq.remove_label_values(&[cluster, c]);
        }
        for v in [
            &self.upstream_rq_timeout,
            &self.upstream_cx_total,
            &self.upstream_cx_connect_fail,
            &self.upstream_no_healthy,
            &self.upstream_retries,
            &self.upstream_retry_success,
            &self.upstream_retry_overflow,
            &self.upstream_retry_body_too_large,
            &self.upstream_per_try_timeouts,
            &self.outlier_ejections,
        ] {
            let _ = v.remove_label_values(&[cluster]);
        }
        for kind in ["pending", "requests"] {
            let _ = self.upstream_overflow.remove_label_values(&[cluster, kind]);
        }
        for direction in ["rx", "tx"] {
            let _ = self
                .upstream_bytes
                .remove_label_values(&[cluster, direction]);
        }
        let _ = self
            .cluster_endpoints_healthy
            .remove_label_values(&[cluster]);
        let _ = self
            .cluster_endpoints_ejected
            .remove_label_values(&[cluster]);
        let _ = self.upstream_rq_time.remove_label_values(&[cluster]);
        let _ = self.upstream_cx_active.remove_label_values(&[cluster]);
        let _ = self.cluster_endpoints.remove_label_values(&[cluster]);
    }
}

/// `families` in the text exposition format.
pub fn encode_families(families: &[prometheus::proto::MetricFamily]) -> String {
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(families, &mut buf) {
        tracing::error!("metrics encoding failed: {e}");
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// The process's anonymous resident memory (`RssAnon` in /proc/self/status), in bytes; `None`
/// where procfs does not say.
pub fn anonymous_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    let kb: u64 = line
        .trim_start_matches("RssAnon:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kb.checked_mul(1024)
}

/// Per-route request counters, one per status class, created on the route's first request:
/// a route that never had traffic exports no series (and costs ~150 bytes instead of five
/// labelled series). After the first request the route has all five class series, as a route
/// had from the start before. Recording is an atomic load (the `OnceLock`) and an atomic add;
/// only the first request of a route in a compiled table takes the family's lock, once.
#[derive(Clone)]
pub struct RouteMetrics(Arc<RouteSeries>);

struct RouteSeries {
    family: IntCounterVec,
    listener: Box<str>,
    route: Box<str>,
    counters: OnceLock<[IntCounter; 5]>,
    /// Set when the route has left the table (see [`RouteMetrics::retire`]).
    retired: AtomicBool,
}

impl RouteMetrics {
    pub fn record(&self, status: u16) {
        if let Some(c) = self.counters_if_live() {
            c[class_index(status)].inc();
        }
    }

    /// Whether the route's series exist (it has had a request).
    pub fn is_created(&self) -> bool {
        self.0.counters.get().is_some()
    }

    /// Marks a route that the new table no longer has, before its series are removed: a request
    /// still running on the old table then counts nowhere instead of creating the series again
    /// (which would export a removed route forever).
    pub fn retire(&self) {
        self.0.retired.store(true, Ordering::SeqCst);
    }

    fn counters_if_live(&self) -> Option<&[IntCounter; 5]> {
        if let Some(c) = self.0.counters.get() {
            return Some(c);
        }
        if self.0.retired.load(Ordering::SeqCst) {
            return None;
        }
        let c = self.counters();
        // Retired between the check and the creation: the remover may have run before the
        // series existed, so remove them here (SeqCst: one of the two sees the other).
        if self.0.retired.load(Ordering::SeqCst) {
            let s = &self.0;
            for class in CLASSES {
                let _ = s
                    .family
                    .remove_label_values(&[&s.listener, &s.route, class]);
            }
        }
        Some(c)
    }

    fn counters(&self) -> &[IntCounter; 5] {
        let s = &self.0;
        s.counters.get_or_init(|| {
            CLASSES.map(|c| s.family.with_label_values(&[&s.listener, &s.route, c]))
        })
    }
}

#[derive(Clone)]
pub struct ListenerMetrics {
    pub no_route: RouteMetrics,
    pub duration: Histogram,
    pub cx_active: IntGauge,
    pub cx_total: IntCounter,
    pub cx_overflow: IntCounter,
    pub uri_too_long: IntCounter,
    /// 431: the request head was over `max_header_bytes` or `max_headers` (hyper answers it).
    pub header_too_large: IntCounter,
    /// 400: a malformed request head (smuggling attempts among them; hyper answers most).
    pub bad_request: IntCounter,
    /// HTTP/2 streams refused (RST_STREAM REFUSED_STREAM): opened past `maxConcurrentStreams`.
    pub h2_stream_refused: IntCounter,
    pub idle_timeout: IntCounter,
    pub header_timeout: IntCounter,
    pub h2_reset_flood: IntCounter,
    pub h2_protocol_error: IntCounter,
}

pub struct ClusterMetrics {
    requests: [IntCounter; 5],
    pub duration: Histogram,
    pub timeouts: IntCounter,
    pub cx_total: IntCounter,
    pub cx_active: IntGauge,
    pub cx_connect_fail: IntCounter,
    pub no_healthy: IntCounter,
    pub endpoints: IntGauge,
    pub healthy: IntGauge,
    pub ejected: IntGauge,
    pub retries: IntCounter,
    pub retry_success: IntCounter,
    pub retry_overflow: IntCounter,
    /// The request body was over `maxRetryBodyBytes`: sent once, not retryable.
    pub retry_body_too_large: IntCounter,
    pub per_try_timeouts: IntCounter,
    pub overflow_pending: IntCounter,
    pub overflow_requests: IntCounter,
    pub ejections: IntCounter,
    pub rx_bytes: IntCounter,
    pub tx_bytes: IntCounter,
}

impl ClusterMetrics {
    pub fn record(&self, status: u16) {
        self.requests[class_index(status)].inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_register_once_and_encode() {
        let m = Metrics::new();
        m.route("web", "r1").record(200);
        m.cluster("c1").record(503);
        m.set_config_version("v1");
        let text = m.encode();
        assert!(text.contains(
            "ferry_http_downstream_requests_total{code_class=\"2xx\",listener=\"web\",route=\"r1\"} 1"
        ));
        assert!(
            text.contains(
                "ferry_http_upstream_requests_total{cluster=\"c1\",code_class=\"5xx\"} 1"
            )
        );
        assert!(text.contains("ferry_config_info{version=\"v1\"} 1"));
    }

    #[test]
    fn route_series_appear_on_the_first_request_with_every_class() {
        let m = Metrics::new();
        let r = m.route("web", "idle");
        let series = |text: &str| {
            text.lines()
                .filter(|l| l.contains("route=\"idle\""))
                .count()
        };
        assert_eq!(series(&m.encode()), 0, "an idle route exports nothing");
        assert!(!r.is_created());
        r.record(404);
        let text = m.encode();
        assert_eq!(series(&text), 5, "{text}");
        assert!(text.contains(
            "ferry_http_downstream_requests_total{code_class=\"4xx\",listener=\"web\",route=\"idle\"} 1"
        ));
        assert!(text.contains(
            "ferry_http_downstream_requests_total{code_class=\"2xx\",listener=\"web\",route=\"idle\"} 0"
        ));
        // A recompiled table's handle for the same route continues the same series.
        m.route("web", "idle").record(404);
        assert!(m.encode().contains(
            "ferry_http_downstream_requests_total{code_class=\"4xx\",listener=\"web\",route=\"idle\"} 2"
        ));
    }

    #[test]
    fn a_retired_route_does_not_bring_its_series_back() {
        let m = Metrics::new();
        let r = m.route("web", "gone");
        r.retire();
        m.remove_route("web", "gone");
        r.record(200);
        assert!(!m.encode().contains("route=\"gone\""));
        // One that had traffic keeps counting into its (removed) counters, exported nowhere.
        let used = m.route("web", "used");
        used.record(200);
        used.retire();
        m.remove_route("web", "used");
        used.record(200);
        assert!(!m.encode().contains("route=\"used\""));
    }

    #[test]
    fn a_listener_exports_its_no_route_series_from_the_start() {
        let m = Metrics::new();
        let _l = m.listener("web");
        assert!(m.encode().contains(
            "ferry_http_downstream_requests_total{code_class=\"4xx\",listener=\"web\",route=\"\"} 0"
        ));
    }

    #[test]
    fn latency_buckets_hold_every_envoy_bucket() {
        for ms in crate::envoy_stats::ENVOY_BUCKETS_MS {
            assert!(
                LATENCY_BUCKETS
                    .iter()
                    .any(|s| (s * 1000.0 - ms).abs() <= ms * 1e-9),
                "Envoy's {ms} ms bucket is missing"
            );
        }
    }

    #[test]
    fn anonymous_memory_is_read_from_procfs() {
        let bytes = anonymous_memory().expect("RssAnon in /proc/self/status");
        assert!(bytes > 0);
    }
}
