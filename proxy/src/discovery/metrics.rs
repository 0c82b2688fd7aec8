//! DNS discovery metrics, registered on the proxy's registry. Labelled by hostname only: the names
//! come from the table, not from traffic, so the label set stays bounded. Counters are bumped by
//! the resolution loops; gauges are computed from the loops' state at scrape time.
use prometheus::{
    Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

pub struct DnsMetrics {
    resolutions: IntCounterVec,
    failures: IntCounterVec,
    pub age: GaugeVec,
    pub consecutive_failures: IntGaugeVec,
    pub addresses: IntGaugeVec,
    pub clusters: IntGaugeVec,
    pub streams: IntGauge,
}

/// The counters one resolution loop bumps.
#[derive(Clone)]
pub struct NameMetrics {
    pub resolutions: IntCounter,
    pub failures: IntCounter,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    // Names are distinct constants; a clash is a programming error caught by the unit test.
    if let Err(e) = r.register(Box::new(c.clone())) {
        tracing::error!("metric registration failed: {e}");
    }
    c
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl DnsMetrics {
    pub fn new(r: &Registry) -> DnsMetrics {
        let by_host = &["hostname"];
        let well_formed =
            |e: prometheus::Error| -> ! { unreachable!("DNS metric is well formed: {e}") };
        DnsMetrics {
            resolutions: register(
                r,
                IntCounterVec::new(
                    opts(
                        "ferry_dns_resolutions_total",
                        "DNS resolutions of a cluster hostname, successful or not (one loop per name, however many clusters share it)",
                    ),
                    by_host,
                )
                .unwrap_or_else(|e| well_formed(e)),
            ),
            failures: register(
                r,
                IntCounterVec::new(
                    opts(
                        "ferry_dns_resolution_failures_total",
                        "DNS resolutions that failed (NXDOMAIN, no records, SERVFAIL, timeout); the last good endpoints stayed",
                    ),
                    by_host,
                )
                .unwrap_or_else(|e| well_formed(e)),
            ),
            age: register(
                r,
                GaugeVec::new(
                    opts(
                        "ferry_dns_last_resolution_age_seconds",
                        "Seconds since the hostname last resolved successfully (absent until it has)",
                    ),
                    by_host,
                )
                .unwrap_or_else(|e| well_formed(e)),
            ),
            consecutive_failures: register(
                r,
                IntGaugeVec::new(
                    opts(
                        "ferry_dns_consecutive_failures",
                        "Failed resolutions since the last success; above 0 the clusters serve their last good endpoints",
                    ),
                    by_host,
                )
                .unwrap_or_else(|e| well_formed(e)),
            ),
            addresses: register(
                r,
                IntGaugeVec::new(
                    opts(
                        "ferry_dns_addresses",
                        "Addresses in the hostname's last good answer",
                    ),
                    by_host,
                )
                .unwrap_or_else(|e| well_formed(e)),
            ),
            clusters: register(
                r,
                IntGaugeVec::new(
                    opts(
                        "ferry_dns_clusters",
                        "Clusters following the hostname (they share one resolution loop)",
                    ),
                    by_host,
                )
                .unwrap_or_else(|e| well_formed(e)),
            ),
            streams: register(
                r,
                IntGauge::new(
                    "ferry_dns_resolution_loops",
                    "DNS resolution loops running (one per hostname and IP preference)",
                )
                .unwrap_or_else(|e| well_formed(e)),
            ),
        }
    }

    pub fn name(&self, hostname: &str) -> NameMetrics {
        NameMetrics {
            resolutions: self.resolutions.with_label_values(&[hostname]),
            failures: self.failures.with_label_values(&[hostname]),
        }
    }

    pub fn age(&self, hostname: &str) -> Gauge {
        self.age.with_label_values(&[hostname])
    }

    /// Forgets every series of a hostname no cluster follows any more.
    pub fn remove(&self, hostname: &str) {
        let _ = self.resolutions.remove_label_values(&[hostname]);
        let _ = self.failures.remove_label_values(&[hostname]);
        let _ = self.age.remove_label_values(&[hostname]);
        for g in [&self.consecutive_failures, &self.addresses, &self.clusters] {
            let _ = g.remove_label_values(&[hostname]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_register_and_forget() {
        let r = Registry::new();
        let m = DnsMetrics::new(&r);
        m.name("a.local").resolutions.inc();
        m.clusters.with_label_values(&["a.local"]).set(2);
        let names: Vec<String> = r.gather().iter().map(|f| f.name().to_owned()).collect();
        assert!(names.contains(&"ferry_dns_resolutions_total".to_owned()));
        assert!(names.contains(&"ferry_dns_clusters".to_owned()));
        m.remove("a.local");
        let left: usize = r.gather().iter().map(|f| f.get_metric().len()).sum();
        assert_eq!(left, 1, "only the loop count is left");
    }
}
