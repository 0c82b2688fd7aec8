//! The mapping from Ferry's families to Envoy's: one rule per Envoy family, naming the native
//! family it is derived from, the scope of its labels and how series are folded together.
use std::collections::{BTreeMap, HashMap};

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};

use super::view::{Labels, StatsView};

/// Envoy's default histogram bucket boundaries, in milliseconds. Ferry's latency buckets hold
/// each of them (in seconds), so Envoy's buckets are read straight off Ferry's.
pub const ENVOY_BUCKETS_MS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Labelled `envoy_cluster_name` (from the native `cluster` label).
    Cluster,
    /// Labelled `envoy_http_conn_manager_prefix` (from the native `listener` label); HTTP only.
    Listener,
    /// Process-wide.
    Server,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    /// Seconds in Ferry, milliseconds in Envoy.
    Histogram,
}

struct Rule {
    envoy: &'static str,
    native: &'static str,
    help: &'static str,
    scope: Scope,
    kind: Kind,
    /// Only the native series whose label has this value.
    only: Option<(&'static str, &'static str)>,
    /// One series per response class: `envoy_response_code_class` "1".."5" from `code_class`.
    by_class: bool,
}

const fn rule(
    envoy: &'static str,
    native: &'static str,
    help: &'static str,
    scope: Scope,
    kind: Kind,
) -> Rule {
    Rule {
        envoy,
        native,
        help,
        scope,
        kind,
        only: None,
        by_class: false,
    }
}

const fn by_class(r: Rule) -> Rule {
    Rule {
        by_class: true,
        ..r
    }
}

const fn only(r: Rule, label: &'static str, value: &'static str) -> Rule {
    Rule {
        only: Some((label, value)),
        ..r
    }
}

use Kind::{Counter as C, Gauge as G, Histogram as H};
use Scope::{Cluster, Listener, Server};

/// Every Envoy family exposed, in exposition order. README "Metrics" lists the same mapping.
#[rustfmt::skip]
const RULES: &[Rule] = &[
    rule("envoy_cluster_upstream_rq_total", "ferry_http_upstream_requests_total",
        "Upstream requests (each try)", Cluster, C),
    by_class(rule("envoy_cluster_upstream_rq_xx", "ferry_http_upstream_requests_total",
        "Upstream requests by response code class (each try; 503/504 for tries that ended without a response)", Cluster, C)),
    rule("envoy_cluster_upstream_rq_time", "ferry_http_upstream_request_duration_seconds",
        "Upstream request time to response headers, milliseconds", Cluster, H),
    rule("envoy_cluster_upstream_rq_timeout", "ferry_http_upstream_request_timeouts_total",
        "Requests that timed out waiting for the upstream", Cluster, C),
    rule("envoy_cluster_upstream_rq_per_try_timeout", "ferry_http_upstream_per_try_timeouts_total",
        "Tries that hit the per-try timeout", Cluster, C),
    rule("envoy_cluster_upstream_rq_retry", "ferry_http_upstream_retries_total",
        "Retries sent", Cluster, C),
    rule("envoy_cluster_upstream_rq_retry_success", "ferry_http_upstream_retry_success_total",
        "Requests that succeeded after a retry", Cluster, C),
    rule("envoy_cluster_upstream_rq_retry_overflow", "ferry_http_upstream_retry_overflow_total",
        "Retries not sent because the retry budget was spent", Cluster, C),
    rule("envoy_cluster_retry_or_shadow_abandoned", "ferry_http_upstream_retry_body_too_large_total",
        "Retry buffering abandoned because the request body was over the limit", Cluster, C),
    rule("envoy_cluster_upstream_rq_pending_overflow", "ferry_upstream_overflow_total",
        "Requests refused by a connection-pool or request circuit breaker", Cluster, C),
    rule("envoy_cluster_upstream_cx_total", "ferry_upstream_connections_total",
        "Upstream connections opened", Cluster, C),
    rule("envoy_cluster_upstream_cx_active", "ferry_upstream_connections_active",
        "Open upstream connections", Cluster, G),
    rule("envoy_cluster_upstream_cx_connect_fail", "ferry_upstream_connect_failures_total",
        "Failed upstream connection attempts", Cluster, C),
    rule("envoy_cluster_upstream_cx_none_healthy", "ferry_upstream_no_healthy_endpoint_total",
        "Requests with no healthy endpoint to go to", Cluster, C),
    only(rule("envoy_cluster_upstream_cx_rx_bytes_total", "ferry_upstream_bytes_total",
        "Bytes received from upstream connections", Cluster, C), "direction", "rx"),
    only(rule("envoy_cluster_upstream_cx_tx_bytes_total", "ferry_upstream_bytes_total",
        "Bytes sent on upstream connections", Cluster, C), "direction", "tx"),
    rule("envoy_cluster_membership_total", "ferry_cluster_endpoints",
        "Endpoints in the cluster", Cluster, G),
    rule("envoy_cluster_membership_healthy", "ferry_cluster_endpoints_healthy",
        "Healthy endpoints (health checks) not ejected", Cluster, G),
    rule("envoy_cluster_outlier_detection_ejections_active", "ferry_cluster_endpoints_ejected",
        "Endpoints ejected by outlier detection now", Cluster, G),
    rule("envoy_cluster_outlier_detection_ejections_enforced_total", "ferry_outlier_ejections_total",
        "Ejections by outlier detection", Cluster, C),
    rule("envoy_http_downstream_rq_total", "ferry_http_downstream_requests_total",
        "Downstream requests", Listener, C),
    by_class(rule("envoy_http_downstream_rq_xx", "ferry_http_downstream_requests_total",
        "Downstream requests by response code class", Listener, C)),
    rule("envoy_http_downstream_rq_time", "ferry_http_downstream_request_duration_seconds",
        "Downstream request time to the last response byte, milliseconds", Listener, H),
    rule("envoy_http_downstream_cx_total", "ferry_downstream_connections_total",
        "Downstream connections accepted", Listener, C),
    rule("envoy_http_downstream_cx_active", "ferry_downstream_connections_active",
        "Open downstream connections", Listener, G),
    rule("envoy_server_live", "ferry_server_live",
        "1 while the proxy is live and not draining", Server, G),
    rule("envoy_server_uptime", "ferry_server_uptime_seconds",
        "Seconds since start", Server, G),
    rule("envoy_server_memory_allocated", "ferry_server_memory_anonymous_bytes",
        "Anonymous resident memory of the process, bytes (RssAnon: includes what the allocator keeps free)", Server, G),
    rule("envoy_control_plane_connected_state", "ferry_agent_connected",
        "1 while the stream to the control plane (ferry-agent) is open", Server, G),
];

/// The native family names the Envoy view reads (for tests and docs).
pub fn native_sources() -> impl Iterator<Item = (&'static str, &'static str)> {
    RULES.iter().map(|r| (r.envoy, r.native))
}

#[derive(Default)]
struct Sum {
    value: f64,
    count: u64,
    sum: f64,
    buckets: [u64; ENVOY_BUCKETS_MS.len()],
}

impl Sum {
    fn add(&mut self, kind: Kind, m: &Metric) {
        match kind {
            Kind::Counter => self.value += m.get_counter().get_value(),
            Kind::Gauge => self.value += m.get_gauge().get_value(),
            Kind::Histogram => {
                let h = m.get_histogram();
                self.count += h.get_sample_count();
                self.sum += h.get_sample_sum() * 1000.0;
                for b in h.get_bucket() {
                    let ms = b.upper_bound() * 1000.0;
                    if let Some(i) = ENVOY_BUCKETS_MS
                        .iter()
                        .position(|e| (e - ms).abs() <= e * 1e-9)
                    {
                        self.buckets[i] += b.cumulative_count();
                    }
                }
            }
        }
    }
}

/// Envoy's families, derived from `native`.
pub(super) fn envoy_families(native: &[MetricFamily], view: &StatsView) -> Vec<MetricFamily> {
    let by_name: HashMap<&str, &MetricFamily> = native.iter().map(|f| (f.name(), f)).collect();
    let mut out = Vec::new();
    for r in RULES {
        let Some(family) = by_name.get(r.native) else {
            continue;
        };
        let mut sums: BTreeMap<Labels, Sum> = BTreeMap::new();
        for m in family.get_metric() {
            let get = |name: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map(LabelPair::value)
            };
            if let Some((label, value)) = r.only
                && get(label) != Some(value)
            {
                continue;
            }
            let mut key = match r.scope {
                Scope::Cluster => view.cluster(get("cluster").unwrap_or_default()),
                Scope::Listener => match view.listener(get("listener").unwrap_or_default()) {
                    Some(k) => k,
                    None => continue,
                },
                Scope::Server => view.server(),
            };
            if r.by_class {
                let Some(class) = get("code_class").and_then(|c| c.strip_suffix("xx")) else {
                    continue;
                };
                key.push(("envoy_response_code_class", class.to_owned()));
            }
            sums.entry(key).or_default().add(r.kind, m);
        }
        if !sums.is_empty() {
            out.push(envoy_family(r, sums));
        }
    }
    out
}

fn envoy_family(r: &Rule, sums: BTreeMap<Labels, Sum>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(r.envoy.to_owned());
    f.set_help(r.help.to_owned());
    f.set_field_type(match r.kind {
        Kind::Counter => MetricType::COUNTER,
        Kind::Gauge => MetricType::GAUGE,
        Kind::Histogram => MetricType::HISTOGRAM,
    });
    let metrics = sums
        .into_iter()
        .map(|(labels, s)| {
            let mut m = Metric::default();
            m.set_label(
                labels
                    .into_iter()
                    .map(|(k, v)| super::label(k, v))
                    .collect(),
            );
            match r.kind {
                Kind::Counter => {
                    let mut c = Counter::default();
                    c.set_value(s.value);
                    m.set_counter(c);
                }
                Kind::Gauge => {
                    let mut g = Gauge::default();
                    g.set_value(s.value);
                    m.set_gauge(g);
                }
                Kind::Histogram => {
                    let mut h = Histogram::default();
                    h.set_sample_count(s.count);
                    h.set_sample_sum(s.sum);
                    h.set_bucket(
                        ENVOY_BUCKETS_MS
                            .iter()
                            .zip(s.buckets)
                            .map(|(le, n)| {
                                let mut b = Bucket::default();
                                b.set_upper_bound(*le);
                                b.set_cumulative_count(n);
                                b
                            })
                            .collect(),
                    );
                    m.set_histogram(h);
                }
            }
            m
        })
        .collect();
    f.set_metric(metrics);
    f
}
