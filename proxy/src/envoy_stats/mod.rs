//! Envoy-compatible stats for teams leaving App Mesh: `--stats-compat envoy` makes
//! `/stats/prometheus` also expose Envoy's metric names and labels (`envoy_cluster_upstream_rq_xx`
//! with `envoy_cluster_name` and `envoy_response_code_class`, ...), `envoy-only` exposes only
//! those; `ENABLE_ENVOY_STATS_TAGS=1` adds App Mesh's `appmesh_*` labels to every series.
//!
//! Nothing here runs per request: Ferry counts once, in its native families, and the Envoy view
//! is derived from them when `/stats/prometheus` is scraped — renamed, relabelled, summed where
//! Envoy has one series for several of Ferry's, and histograms converted to milliseconds on
//! Envoy's bucket boundaries (a subset of Ferry's, so the conversion is exact).
mod rules;
mod view;

use prometheus::proto::{LabelPair, MetricFamily};

pub use rules::{ENVOY_BUCKETS_MS, native_sources};
pub use view::StatsView;

/// Which names `/stats/prometheus` exposes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum StatsCompat {
    /// Ferry's own names only.
    #[default]
    None,
    /// Ferry's names and Envoy's.
    Envoy,
    /// Envoy's names only.
    EnvoyOnly,
}

/// How the proxy exposes its stats (`--stats-compat`, `ENABLE_ENVOY_STATS_TAGS`, the node).
#[derive(Clone, Debug, Default)]
pub struct StatsSettings {
    pub compat: StatsCompat,
    /// Add App Mesh's `appmesh_*` labels (`ENABLE_ENVOY_STATS_TAGS=1`).
    pub tags: bool,
    /// This proxy's App Mesh identity (`--node` / `APPMESH_RESOURCE_ARN`); without it the table's
    /// `node_id` (set by the agent) is used, and without either the mesh and node labels are absent.
    pub node: Option<String>,
}

/// A proxy's App Mesh identity, as the `appmesh_mesh` and `appmesh_virtual_node` /
/// `appmesh_virtual_gateway` labels show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub mesh: String,
    pub kind: IdentityKind,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityKind {
    VirtualNode,
    VirtualGateway,
}

impl Identity {
    /// Parses `MESH/virtualNode/NAME`, `MESH/virtualGateway/NAME`, or a resource ARN
    /// (`arn:aws:appmesh:REGION:ACCOUNT:mesh/MESH/virtualNode/NAME`).
    pub fn parse(s: &str) -> Option<Identity> {
        let s = s.trim();
        let path = match s.strip_prefix("arn:") {
            Some(rest) => rest.split_once(":mesh/")?.1,
            None => s.strip_prefix("mesh/").unwrap_or(s),
        };
        let mut parts = path.split('/');
        let (mesh, kind, name) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || mesh.is_empty() || name.is_empty() {
            return None;
        }
        let kind = match kind {
            "virtualNode" => IdentityKind::VirtualNode,
            "virtualGateway" => IdentityKind::VirtualGateway,
            _ => return None,
        };
        Some(Identity {
            mesh: mesh.to_owned(),
            kind,
            name: name.to_owned(),
        })
    }

    /// The identity labels, in App Mesh's names (dots become underscores in Prometheus).
    pub fn labels(&self) -> [(&'static str, String); 2] {
        let kind = match self.kind {
            IdentityKind::VirtualNode => "appmesh_virtual_node",
            IdentityKind::VirtualGateway => "appmesh_virtual_gateway",
        };
        [
            ("appmesh_mesh", self.mesh.clone()),
            (kind, self.name.clone()),
        ]
    }
}

/// The families `/stats/prometheus` shows for `native` (the registry's, gathered at scrape time)
/// under `settings`.
pub fn expose(
    mut native: Vec<MetricFamily>,
    settings: &StatsSettings,
    view: &StatsView,
) -> Vec<MetricFamily> {
    let envoy = match settings.compat {
        StatsCompat::None => Vec::new(),
        StatsCompat::Envoy | StatsCompat::EnvoyOnly => rules::envoy_families(&native, view),
    };
    if settings.compat == StatsCompat::EnvoyOnly {
        return envoy;
    }
    if settings.tags {
        for family in &mut native {
            for m in family.mut_metric() {
                let tags = view.tags_for_native(m.get_label());
                if !tags.is_empty() {
                    let mut labels = m.take_label();
                    labels.extend(tags.into_iter().map(|(k, v)| label(k, v)));
                    labels.sort_by(|a, b| a.name().cmp(b.name()));
                    m.set_label(labels);
                }
            }
        }
    }
    native.extend(envoy);
    native
}

fn label(name: &str, value: String) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_owned());
    l.set_value(value);
    l
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use ferry_api::v1;

    use super::*;
    use crate::metrics::{Metrics, encode_families};

    fn table() -> v1::RoutingTable {
        use v1::listener::{Direction, Protocol};
        v1::RoutingTable {
            node_id: "m1/virtualNode/web".into(),
            listeners: vec![
                v1::Listener {
                    name: "ingress".into(),
                    address: "0.0.0.0:15000".into(),
                    direction: Direction::Inbound as i32,
                    ..Default::default()
                },
                v1::Listener {
                    name: "egress".into(),
                    address: "127.0.0.1:15001".into(),
                    direction: Direction::Outbound as i32,
                    ..Default::default()
                },
                v1::Listener {
                    name: "db".into(),
                    address: "127.0.0.1:15002".into(),
                    direction: Direction::Outbound as i32,
                    protocol: Protocol::Tcp as i32,
                    ..Default::default()
                },
            ],
            clusters: vec![
                v1::Cluster {
                    name: "api:8080".into(),
                    stats_name: "cds_egress_m1_api_http_8080".into(),
                    discovery: Some(v1::cluster::Discovery::Dns(v1::DnsDiscovery {
                        hostname: "api.local".into(),
                        port: 8080,
                        ..Default::default()
                    })),
                    ..Default::default()
                },
                v1::Cluster {
                    name: "api:8080@tls".into(),
                    stats_name: "cds_egress_m1_api_http_8080".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    fn scrape(m: &Metrics, settings: &StatsSettings) -> String {
        let view = StatsView::new(Some(&table()), &HashMap::new(), settings);
        encode_families(&expose(m.registry().gather(), settings, &view))
    }

    #[test]
    fn envoy_series_are_renamed_relabelled_and_summed() {
        let m = Metrics::new();
        let (a, b) = (m.cluster("api:8080"), m.cluster("api:8080@tls"));
        a.record(200);
        a.record(503);
        b.record(503);
        a.duration.observe(0.004);
        b.duration.observe(0.2);
        m.route("ingress", "r1").record(200);
        m.route("egress", "r2").record(404);
        m.listener("db").cx_active.inc();
        let settings = StatsSettings {
            compat: StatsCompat::Envoy,
            ..Default::default()
        };
        let text = scrape(&m, &settings);
        let has = |line: &str| assert!(text.contains(line), "no {line:?} in\n{text}");
        has(
            "envoy_cluster_upstream_rq_total{envoy_cluster_name=\"cds_egress_m1_api_http_8080\"} 3",
        );
        has(
            "envoy_cluster_upstream_rq_xx{envoy_cluster_name=\"cds_egress_m1_api_http_8080\",envoy_response_code_class=\"5\"} 2",
        );
        has(
            "envoy_cluster_upstream_rq_xx{envoy_cluster_name=\"cds_egress_m1_api_http_8080\",envoy_response_code_class=\"2\"} 1",
        );
        has(
            "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"cds_egress_m1_api_http_8080\",le=\"5\"} 1",
        );
        has(
            "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"cds_egress_m1_api_http_8080\",le=\"250\"} 2",
        );
        has(
            "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"cds_egress_m1_api_http_8080\",le=\"3600000\"} 2",
        );
        has(
            "envoy_cluster_upstream_rq_time_sum{envoy_cluster_name=\"cds_egress_m1_api_http_8080\"} 204",
        );
        has(
            "envoy_http_downstream_rq_xx{envoy_http_conn_manager_prefix=\"ingress\",envoy_response_code_class=\"2\"} 1",
        );
        has(
            "envoy_http_downstream_rq_xx{envoy_http_conn_manager_prefix=\"egress\",envoy_response_code_class=\"4\"} 1",
        );
        has("ferry_http_upstream_requests_total{cluster=\"api:8080\",code_class=\"5xx\"} 1");
        // Envoy's 2.5 ms bucket does not exist; a TCP listener has no HTTP connection manager.
        assert!(!text.contains("envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"cds_egress_m1_api_http_8080\",le=\"2.5\"}"));
        assert!(
            !text.contains(
                "envoy_http_downstream_cx_active{envoy_http_conn_manager_prefix=\"egress\"} 1"
            ),
            "{text}"
        );

        let only = scrape(
            &m,
            &StatsSettings {
                compat: StatsCompat::EnvoyOnly,
                ..Default::default()
            },
        );
        assert!(only.contains("envoy_cluster_upstream_rq_total"));
        assert!(!only.contains("ferry_"), "{only}");
    }

    #[test]
    fn tags_label_native_and_envoy_series() {
        let m = Metrics::new();
        m.cluster("api:8080").record(200);
        m.route("ingress", "r1").record(200);
        let text = scrape(
            &m,
            &StatsSettings {
                compat: StatsCompat::Envoy,
                tags: true,
                node: None,
            },
        );
        let has = |line: &str| assert!(text.contains(line), "no {line:?} in\n{text}");
        has(
            "envoy_cluster_upstream_rq_total{envoy_cluster_name=\"cds_egress_m1_api_http_8080\",appmesh_mesh=\"m1\",appmesh_virtual_node=\"web\",appmesh_listener_protocol=\"http\",appmesh_listener_port=\"8080\"} 1",
        );
        has(
            "envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix=\"ingress\",appmesh_mesh=\"m1\",appmesh_virtual_node=\"web\",appmesh_listener_protocol=\"http\",appmesh_listener_port=\"15000\"} 1",
        );
        has(
            "ferry_http_upstream_requests_total{appmesh_listener_port=\"8080\",appmesh_listener_protocol=\"http\",appmesh_mesh=\"m1\",appmesh_virtual_node=\"web\",cluster=\"api:8080\",code_class=\"2xx\"} 1",
        );
        has("ferry_server_live{appmesh_mesh=\"m1\",appmesh_virtual_node=\"web\"}");
    }

    #[test]
    fn every_native_source_is_a_registered_family() {
        let m = Metrics::new();
        // Families with labels are gathered once they have a series.
        let _handles = (m.cluster("c"), m.listener("l"), m.route("l", "r"));
        let names: Vec<String> = m
            .registry()
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        for (envoy, native) in native_sources() {
            // The agent's connection gauge is registered by agent mode only.
            if native == "ferry_agent_connected" {
                continue;
            }
            assert!(
                names.iter().any(|n| n == native),
                "{envoy}: no native family {native}"
            );
        }
    }

    #[test]
    fn identities_parse_from_names_and_arns() {
        let node = Identity::parse("m1/virtualNode/web").expect("node");
        assert_eq!(node.mesh, "m1");
        assert_eq!(node.kind, IdentityKind::VirtualNode);
        assert_eq!(node.name, "web");
        let gw =
            Identity::parse("arn:aws:appmesh:eu-west-1:111122223333:mesh/m1/virtualGateway/edge")
                .expect("gateway arn");
        assert_eq!(gw.kind, IdentityKind::VirtualGateway);
        assert_eq!(
            gw.labels()[1],
            ("appmesh_virtual_gateway", "edge".to_owned())
        );
        for bad in [
            "",
            "m1",
            "m1/virtualRouter/r",
            "m1/virtualNode/",
            "a/virtualNode/b/c",
        ] {
            assert_eq!(Identity::parse(bad), None, "{bad:?}");
        }
    }
}
