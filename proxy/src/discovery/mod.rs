//! DNS service discovery: clusters whose endpoints are the addresses a DNS name resolves to.
//!
//! - `settings`: the table's `dns` section and each cluster's `dns`, validated.
//! - `resolve`: the hickory resolver, and one resolution under an IP preference.
//! - `stream`: one resolution loop per name, shared by every cluster that follows it, following
//!   the TTL within refresh bounds and keeping the last good endpoints when DNS fails.
//! - `metrics`: resolutions, failures, last-resolution age, per hostname.
//!
//! The registry here hands out loops by name. Clusters own their loop (a [`Subscription`]); the
//! registry and the loop itself hold it weakly, so a loop runs exactly as long as some cluster
//! that follows the name is alive — a cluster reused by a new table keeps it, a cluster dropped
//! with its table ends it.
mod metrics;
mod resolve;
pub mod settings;
mod stream;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use hickory_resolver::TokioResolver;
use prometheus::Registry;

pub use resolve::{FailureKind, ResolveError};
pub use settings::{
    IpPreference, NameSpec, Refresh, ResolverSettings, ResponseType, SettingsError,
};
pub use stream::State;

use crate::cluster::Cluster;
use metrics::DnsMetrics;
use stream::{Key, Stream};

/// The resolver a table's DNS clusters use, and the table's refresh bounds.
pub struct DnsConfig {
    pub resolver: Arc<TokioResolver>,
    /// Empty: the system's /etc/resolv.conf.
    pub servers: Vec<SocketAddr>,
    pub refresh: Refresh,
}

impl DnsConfig {
    /// The servers asked, for `/clusters` and logs.
    pub fn describe_servers(&self) -> String {
        if self.servers.is_empty() {
            return "system (/etc/resolv.conf)".to_owned();
        }
        let list: Vec<String> = self.servers.iter().map(SocketAddr::to_string).collect();
        list.join(",")
    }
}

/// Why a table's resolver could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ResolverError {
    /// Whether the servers came from the table (so the error belongs to `dns.servers`).
    pub from_table: bool,
    pub message: String,
}

pub struct Discovery {
    /// `--dns-resolver`: wins over the table's `dns.servers`.
    flag_servers: Vec<SocketAddr>,
    /// The settings of the table being served.
    current: ArcSwapOption<DnsConfig>,
    loops: Mutex<HashMap<Key, Weak<Stream>>>,
    metrics: DnsMetrics,
    /// Hostnames with metric series, to forget those no loop resolves any more.
    exported: Mutex<HashSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these; if something did, the data is still consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Discovery {
    pub fn new(registry: &Registry, flag_servers: Vec<SocketAddr>) -> Discovery {
        Discovery {
            flag_servers,
            current: ArcSwapOption::empty(),
            loops: Mutex::new(HashMap::new()),
            metrics: DnsMetrics::new(registry),
            exported: Mutex::new(HashSet::new()),
        }
    }

    /// The resolver configuration for a table with `settings`: the running one when its servers
    /// are the same (only the refresh bounds may differ), else a new resolver.
    pub fn prepare(&self, settings: &ResolverSettings) -> Result<Arc<DnsConfig>, ResolverError> {
        let servers = if self.flag_servers.is_empty() {
            settings.servers.clone()
        } else {
            self.flag_servers.clone()
        };
        if let Some(cur) = self.current.load_full()
            && cur.servers == servers
        {
            if cur.refresh == settings.refresh {
                return Ok(cur);
            }
            return Ok(Arc::new(DnsConfig {
                resolver: Arc::clone(&cur.resolver),
                servers,
                refresh: settings.refresh,
            }));
        }
        let resolver = resolve::build(&servers).map_err(|message| ResolverError {
            from_table: self.flag_servers.is_empty() && !settings.servers.is_empty(),
            message,
        })?;
        let config = DnsConfig {
            resolver: Arc::new(resolver),
            servers,
            refresh: settings.refresh,
        };
        let overridden = !self.flag_servers.is_empty()
            && !settings.servers.is_empty()
            && settings.servers != self.flag_servers;
        tracing::info!(
            "DNS: cluster names are resolved by {}{}",
            config.describe_servers(),
            if overridden {
                " (--dns-resolver, instead of the table's dns.servers)"
            } else {
                ""
            }
        );
        Ok(Arc::new(config))
    }

    /// Makes `cluster` follow `spec`'s name: joins the running loop for it, or starts one with
    /// `config`. The cluster gets the last good addresses at once if the name has resolved.
    pub fn subscribe(&self, cluster: &Arc<Cluster>, spec: NameSpec, config: &Arc<DnsConfig>) {
        let key = Key {
            hostname: spec.hostname.clone(),
            pref: spec.ip_preference,
        };
        let stream = {
            let mut loops = lock(&self.loops);
            loops.retain(|_, w| w.strong_count() > 0);
            match loops.get(&key).and_then(Weak::upgrade) {
                Some(s) => s,
                None => {
                    let s = Stream::start(
                        key.clone(),
                        Arc::clone(config),
                        self.metrics.name(&key.hostname),
                    );
                    loops.insert(key, Arc::downgrade(&s));
                    s
                }
            }
        };
        stream.add(cluster, &spec);
        cluster.follow_dns(Subscription { stream, spec });
    }

    /// A table using `config` is now served: every running loop resolves with it from now on.
    pub fn commit(&self, config: &Arc<DnsConfig>) {
        self.current.store(Some(Arc::clone(config)));
        for s in self.live() {
            s.set_config(config);
        }
    }

    /// Whether every running loop has finished its first resolution, answered or failed.
    pub fn warmed(&self) -> bool {
        self.live().iter().all(|s| {
            let st = s.state();
            st.last_success.is_some() || st.last_error.is_some()
        })
    }

    fn live(&self) -> Vec<Arc<Stream>> {
        lock(&self.loops)
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Sets the gauges from the loops' state (at scrape time) and forgets the series of names
    /// no loop resolves any more. A name resolved under two IP preferences shows the worse of
    /// the two.
    pub fn refresh_gauges(&self) {
        #[derive(Default)]
        struct Agg {
            age: Option<f64>,
            never: bool,
            failures: u32,
            addresses: usize,
            clusters: usize,
        }
        let live = self.live();
        let mut by_host: HashMap<String, Agg> = HashMap::new();
        for s in &live {
            let st = s.state();
            let a = by_host.entry(s.key.hostname.clone()).or_default();
            match st.last_success {
                Some(t) => {
                    let age = t.elapsed().as_secs_f64();
                    a.age = Some(a.age.map_or(age, |x| x.max(age)));
                }
                None => a.never = true,
            }
            a.failures = a.failures.max(st.consecutive_failures);
            a.addresses = a.addresses.max(st.addrs.as_ref().map_or(0, Vec::len));
            a.clusters += s.subscribers();
        }
        let m = &self.metrics;
        m.streams.set(i64::try_from(live.len()).unwrap_or(i64::MAX));
        for (host, a) in &by_host {
            match a.age {
                Some(age) if !a.never => m.age(host).set(age),
                _ => {
                    let _ = m.age.remove_label_values(&[host]);
                }
            }
            let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
            m.consecutive_failures
                .with_label_values(&[host])
                .set(i64::from(a.failures));
            m.addresses.with_label_values(&[host]).set(n(a.addresses));
            m.clusters.with_label_values(&[host]).set(n(a.clusters));
        }
        let mut exported = lock(&self.exported);
        for gone in exported.iter().filter(|h| !by_host.contains_key(*h)) {
            m.remove(gone);
        }
        *exported = by_host.into_keys().collect();
    }
}

/// A cluster's membership in a name's resolution loop; owned by the cluster.
pub struct Subscription {
    stream: Arc<Stream>,
    pub spec: NameSpec,
}

impl Subscription {
    pub fn hostname(&self) -> &str {
        &self.spec.hostname
    }

    pub fn state(&self) -> Arc<State> {
        self.stream.state()
    }

    /// The DNS servers asked.
    pub fn servers(&self) -> String {
        self.stream.config().describe_servers()
    }

    /// Why a cluster following this name has no endpoint, if DNS is the reason.
    pub fn why_no_endpoint(&self) -> Option<String> {
        let st = self.state();
        let host = self.hostname();
        match (&st.addrs, &st.last_error) {
            (None, Some(e)) => Some(format!("DNS name {host:?} has not resolved: {e}")),
            (None, None) => Some(format!(
                "DNS name {host:?} has not resolved yet (waiting for the first answer)"
            )),
            (Some(_), _) => None,
        }
    }

    /// The `/clusters` view of this name.
    pub fn status_json(&self) -> serde_json::Value {
        let st = self.state();
        let age = st
            .last_success
            .map(|t| Instant::now().saturating_duration_since(t).as_secs_f64());
        serde_json::json!({
            "type": "dns",
            "hostname": self.spec.hostname,
            "port": self.spec.port,
            "response_type": self.spec.response_type.as_str(),
            "ip_preference": self.spec.ip_preference.as_str(),
            "servers": self.servers(),
            "resolved": st.addrs.is_some(),
            "addresses": st.addrs.as_ref().map(|a| a.iter().map(ToString::to_string).collect::<Vec<_>>()),
            "last_resolution_age_seconds": age,
            "consecutive_failures": st.consecutive_failures,
            "last_error": st.last_error.as_ref().map(ToString::to_string),
        })
    }
}
