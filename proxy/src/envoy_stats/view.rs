//! What the Envoy view needs to know about the table being served, built at scrape time: each
//! cluster's Envoy name (`stats_name`, App Mesh's `cds_…` when the agent compiled the table) and
//! listener protocol and port, each listener's connection-manager prefix (`ingress` / `egress`),
//! and the proxy's App Mesh identity for the `appmesh_*` labels.
use std::collections::HashMap;
use std::net::SocketAddr;

use ferry_api::v1::{self, cluster, listener};

use super::{Identity, StatsSettings};

/// A label set, in the order it is written.
pub(super) type Labels = Vec<(&'static str, String)>;

struct ClusterView {
    envoy_name: String,
    protocol: &'static str,
    port: Option<u16>,
}

struct ListenerView {
    prefix: String,
    protocol: &'static str,
    port: Option<u16>,
    http: bool,
}

/// The listener protocol and port at the end of an App Mesh cluster name
/// (`cds_egress_MESH_NODE_PROTOCOL_PORT`).
fn appmesh_listener(stats_name: &str) -> Option<(&'static str, u16)> {
    if !stats_name.starts_with("cds_") {
        return None;
    }
    let (rest, port) = stats_name.rsplit_once('_')?;
    let port = port.parse().ok()?;
    let protocol = match rest.rsplit_once('_')?.1 {
        "http" => "http",
        "http2" => "http2",
        "grpc" => "grpc",
        "tcp" => "tcp",
        _ => return None,
    };
    Some((protocol, port))
}

#[derive(Default)]
pub struct StatsView {
    clusters: HashMap<String, ClusterView>,
    listeners: HashMap<String, ListenerView>,
    /// `appmesh_mesh` and `appmesh_virtual_node|gateway`; empty without tags or an identity.
    identity: Labels,
    tags: bool,
}

impl StatsView {
    /// The view of `table` (none loaded yet: every name passes through as it is), with the ports
    /// the listeners actually bound (`bound`, by listener name; a table may ask for port 0).
    pub fn new(
        table: Option<&v1::RoutingTable>,
        bound: &HashMap<String, SocketAddr>,
        settings: &StatsSettings,
    ) -> StatsView {
        let mut view = StatsView {
            tags: settings.tags,
            ..StatsView::default()
        };
        if settings.tags {
            let node = settings
                .node
                .as_deref()
                .or_else(|| table.map(|t| t.node_id.as_str()));
            if let Some(id) = node.and_then(Identity::parse) {
                view.identity = id.labels().into_iter().collect();
            }
        }
        let Some(table) = table else { return view };
        for c in &table.clusters {
            let port = match &c.discovery {
                Some(cluster::Discovery::StaticEndpoints(s)) => s
                    .endpoints
                    .first()
                    .and_then(|e| e.address.parse::<SocketAddr>().ok())
                    .map(|a| a.port()),
                Some(cluster::Discovery::Dns(d)) => u16::try_from(d.port).ok(),
                None => None,
            };
            let protocol = match c.protocol() {
                cluster::Protocol::Unspecified | cluster::Protocol::Http1 => "http",
                cluster::Protocol::Http2 => "http2",
                cluster::Protocol::Grpc => "grpc",
                cluster::Protocol::Tcp => "tcp",
            };
            let envoy_name = if c.stats_name.is_empty() {
                c.name.clone()
            } else {
                c.stats_name.clone()
            };
            // App Mesh's names end in the listener's protocol and port, which is where its tag
            // extraction reads them (a gateway's self_redirect cluster points at the egress
            // listener, but is named after the gateway listener it serves).
            let (protocol, port) = appmesh_listener(&c.stats_name)
                .map_or((protocol, port), |(proto, p)| (proto, Some(p)));
            view.clusters.insert(
                c.name.clone(),
                ClusterView {
                    envoy_name,
                    protocol,
                    port,
                },
            );
        }
        for l in &table.listeners {
            // App Mesh's connection managers: "ingress" for the inbound listener (and a virtual
            // gateway's, which Envoy also calls ingress), "egress" for the outbound one.
            let prefix = match l.direction() {
                listener::Direction::Outbound => "egress",
                listener::Direction::Unspecified
                | listener::Direction::Inbound
                | listener::Direction::Gateway => "ingress",
            };
            let protocol = match l.protocol() {
                listener::Protocol::Unspecified | listener::Protocol::Http => "http",
                listener::Protocol::Http2 => "http2",
                listener::Protocol::Grpc => "grpc",
                listener::Protocol::Tcp => "tcp",
            };
            let port = bound
                .get(&l.name)
                .map(SocketAddr::port)
                .or_else(|| l.address.parse::<SocketAddr>().ok().map(|a| a.port()));
            view.listeners.insert(
                l.name.clone(),
                ListenerView {
                    prefix: prefix.to_owned(),
                    protocol,
                    port,
                    http: protocol != "tcp",
                },
            );
        }
        view
    }

    fn tags(&self, protocol: &'static str, port: Option<u16>) -> Labels {
        let mut out = self.identity.clone();
        out.push(("appmesh_listener_protocol", protocol.to_owned()));
        if let Some(p) = port {
            out.push(("appmesh_listener_port", p.to_string()));
        }
        out
    }

    /// Envoy's labels for the series of Ferry cluster `name`.
    pub(super) fn cluster(&self, name: &str) -> Labels {
        let c = self.clusters.get(name);
        let envoy = c.map_or_else(|| name.to_owned(), |c| c.envoy_name.clone());
        let mut out = vec![("envoy_cluster_name", envoy)];
        if self.tags {
            match c {
                Some(c) => out.extend(self.tags(c.protocol, c.port)),
                None => out.extend(self.identity.iter().cloned()),
            }
        }
        out
    }

    /// Envoy's labels for the HTTP connection-manager series of Ferry listener `name`; `None` for
    /// a TCP listener (Envoy has no HTTP connection manager there).
    pub(super) fn listener(&self, name: &str) -> Option<Labels> {
        let l = self.listeners.get(name);
        if l.is_some_and(|l| !l.http) {
            return None;
        }
        let prefix = l.map_or_else(|| "ingress".to_owned(), |l| l.prefix.clone());
        let mut out = vec![("envoy_http_conn_manager_prefix", prefix)];
        if self.tags {
            match l {
                Some(l) => out.extend(self.tags(l.protocol, l.port)),
                None => out.extend(self.identity.iter().cloned()),
            }
        }
        Some(out)
    }

    /// Envoy's labels for process-wide series.
    pub(super) fn server(&self) -> Labels {
        if self.tags {
            self.identity.clone()
        } else {
            Vec::new()
        }
    }

    /// The `appmesh_*` labels to add to a native series with these labels (none without tags):
    /// the identity, plus the listener protocol and port of its cluster or listener.
    pub(super) fn tags_for_native(&self, labels: &[prometheus::proto::LabelPair]) -> Labels {
        if !self.tags {
            return Vec::new();
        }
        let find = |n: &str| labels.iter().find(|l| l.name() == n).map(|l| l.value());
        if let Some(c) = find("cluster").and_then(|c| self.clusters.get(c)) {
            return self.tags(c.protocol, c.port);
        }
        if let Some(l) = find("listener").and_then(|l| self.listeners.get(l)) {
            return self.tags(l.protocol, l.port);
        }
        self.identity.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::appmesh_listener;

    #[test]
    fn listener_protocol_and_port_come_from_app_mesh_names() {
        assert_eq!(
            appmesh_listener("cds_egress_m_gw_self_redirect_http2_8443"),
            Some(("http2", 8443))
        );
        assert_eq!(
            appmesh_listener("cds_ingress_m_web_http_9080"),
            Some(("http", 9080))
        );
        assert_eq!(appmesh_listener("api:8080"), None);
        assert_eq!(appmesh_listener("cds_egress_m_web_quic_1"), None);
        assert_eq!(appmesh_listener("cds_egress_m_web_http_x"), None);
    }
}
