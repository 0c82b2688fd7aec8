//! The agent's Prometheus metrics (`/metrics`, `/stats/prometheus`).
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct AgentMetrics {
    registry: Registry,
    pub connected: IntGauge,
    pub snapshots: IntCounter,
    pub acks: IntCounter,
    pub nacks: IntCounter,
    pub compile_errors: IntCounter,
    pub ack_latency: Histogram,
    pub reloads: IntCounterVec,
    /// App Mesh API requests by operation and result (`ok` or the error code).
    pub api_requests: IntCounterVec,
    pub resources: IntGauge,
    pub generation: IntGauge,
    pub ready: IntGauge,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentMetrics {
    pub fn new() -> AgentMetrics {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).unwrap_or_else(|_| unreachable_metric());
            let _ = registry.register(Box::new(g.clone()));
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).unwrap_or_else(|_| unreachable_metric());
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        let ack_latency = Histogram::with_opts(
            HistogramOpts::new(
                "ferry_agent_snapshot_ack_seconds",
                "Time from sending a snapshot to a proxy until its ACK (apply included)",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )
        .unwrap_or_else(|_| unreachable_metric());
        let _ = registry.register(Box::new(ack_latency.clone()));
        let reloads = IntCounterVec::new(
            Opts::new(
                "ferry_agent_resource_reloads_total",
                "Changes of the resource directory, by outcome (accepted, rejected)",
            ),
            &["result"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let _ = registry.register(Box::new(reloads.clone()));
        let api_requests = IntCounterVec::new(
            Opts::new(
                "ferry_agent_api_requests_total",
                "App Mesh API requests, by operation (CreateRoute, ...) and result (ok, or the error code)",
            ),
            &["operation", "result"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let _ = registry.register(Box::new(api_requests.clone()));
        AgentMetrics {
            connected: gauge(
                "ferry_agent_connected_proxies",
                "Proxies with an open stream",
            ),
            snapshots: counter(
                "ferry_agent_snapshots_sent_total",
                "Snapshots sent to proxies",
            ),
            acks: counter("ferry_agent_acks_total", "Snapshots proxies applied (ACK)"),
            nacks: counter(
                "ferry_agent_nacks_total",
                "Snapshots proxies refused (NACK)",
            ),
            compile_errors: counter(
                "ferry_agent_compile_errors_total",
                "Proxy tables that could not be compiled (the proxy keeps its table)",
            ),
            resources: gauge(
                "ferry_agent_resources",
                "App Mesh resources in the served model",
            ),
            generation: gauge(
                "ferry_agent_model_generation",
                "Number of valid resource sets accepted since start",
            ),
            ready: gauge("ferry_agent_ready", "1 once a valid resource set is loaded"),
            ack_latency,
            reloads,
            api_requests,
            registry,
        }
    }

    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Metric names and help texts above are constants that prometheus accepts.
fn unreachable_metric<T>() -> T {
    panic!("invalid metric definition")
}
