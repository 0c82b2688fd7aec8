//! The runtime table: a routing table compiled for serving. Built whole or not at all; the
//! request path reads it through arc-swap guards and never sees a half-applied table.
mod compile;
mod dns;
mod field_path;
mod policies;
mod transport;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_api::v1;
use http::HeaderName;

pub use compile::{CompileError, compile, compile_with};

use crate::access_log::{AccessLogSink, Format};
use crate::cluster::Cluster;
use crate::metrics::ListenerMetrics;
use crate::route::Route;
use crate::route::VirtualHosts;
use crate::tcp::{TcpRoute, TcpRoutes};
use crate::tls::server::ServerTls;

pub struct RuntimeTable {
    pub version: String,
    pub source: TableSource,
    pub listeners: Vec<ListenerSpec>,
    pub clusters: HashMap<String, Arc<Cluster>>,
    /// The resolver settings of its DNS clusters; `None` when it has none.
    pub dns: Option<Arc<crate::discovery::DnsConfig>>,
}

/// The table as it was given, kept small: decoded protobuf structs weigh ~1 KB per route (every
/// optional field inline), the protobuf encoding ~60 bytes. `/config_dump` decodes it when asked;
/// the Envoy-compatible stats, which read it at every scrape, get the outline (no routes).
pub struct TableSource {
    encoded: Vec<u8>,
    outline: v1::RoutingTable,
}

impl TableSource {
    pub fn new(mut table: v1::RoutingTable) -> TableSource {
        let encoded = prost::Message::encode_to_vec(&table);
        for l in &mut table.listeners {
            l.tcp_routes = Vec::new();
            for v in &mut l.virtual_hosts {
                v.routes = Vec::new();
            }
        }
        TableSource {
            encoded,
            outline: table,
        }
    }

    /// The whole table, decoded from its stored encoding.
    pub fn table(&self) -> Result<v1::RoutingTable, prost::DecodeError> {
        prost::Message::decode(self.encoded.as_slice())
    }

    /// The table without its routes (HTTP and TCP): listeners, virtual hosts and clusters.
    pub fn outline(&self) -> &v1::RoutingTable {
        &self.outline
    }
}

/// A listener's socket identity plus what it serves.
pub struct ListenerSpec {
    pub name: String,
    pub address: SocketAddr,
    pub table: Arc<ListenerTable>,
}

/// Everything one listener needs per connection and per request; swapped whole.
pub struct ListenerTable {
    pub name: String,
    /// Inbound, outbound or gateway: the kind of the spans its requests record.
    pub direction: v1::listener::Direction,
    pub vhosts: VirtualHosts,
    /// TCP routes by destination port. On a TCP listener they take every connection (and the
    /// virtual hosts are empty); on a transparent HTTP listener (App Mesh's egress, where one
    /// redirected port carries both kinds) they take the connections whose original destination
    /// port they name, and HTTP takes the rest.
    pub tcp: Option<TcpRoutes>,
    /// Whether the listener speaks HTTP (else every connection is TCP-proxied).
    pub http: bool,
    /// TLS termination, when the listener's mode is STRICT or PERMISSIVE.
    pub tls: Option<ServerTls>,
    /// Transparent mode (`original_dst`): routes see the destination the client dialled.
    pub transparent: Option<Transparent>,
    /// Listener-wide request timeout (a route's own wins); `None` disables.
    pub request_timeout: Option<Duration>,
    pub limits: Limits,
    pub access_log: Option<AccessLogger>,
    pub metrics: ListenerMetrics,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: Option<usize>,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_concurrent_streams: u32,
    pub header_read_timeout: Option<Duration>,
    pub max_uri_bytes: usize,
    /// Request body bytes buffered for retries; a longer body is sent once.
    pub max_retry_body_bytes: usize,
    /// A client connection with no request in flight for this long is closed.
    pub idle_timeout: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: None,
            max_header_bytes: 60 * 1024,
            max_headers: 100,
            max_concurrent_streams: 1024,
            header_read_timeout: Some(Duration::from_secs(10)),
            max_uri_bytes: 8 * 1024,
            max_retry_body_bytes: 64 * 1024,
            idle_timeout: Some(Duration::from_secs(300)),
        }
    }
}

/// What a transparent listener does with traffic for no known service (the mesh egress filter).
pub struct Transparent {
    /// ALLOW_ALL: everything for no known service passes through; else only `allowed_hosts`.
    pub allow_all: bool,
    /// DROP_ALL's exceptions (`egressAllowedHosts`), lowercased: exact names or `*.suffix`.
    pub allowed_hosts: Box<[String]>,
    /// Requests for no known service that may pass go to the destination the client dialled.
    pub http_passthrough: Option<Route>,
    /// ALLOW_ALL: connections for no TCP route (on an HTTP listener: to a port no virtual host
    /// names) go to their original destination as TCP.
    pub tcp_passthrough: Option<TcpRoute>,
    /// On an HTTP listener, the ports its virtual hosts name (`svc:8080`): a connection to any
    /// other port is not for a known HTTP service, so it is not parsed as HTTP (a server-first
    /// protocol such as MySQL would hang) but follows the egress filter as TCP, as App Mesh's
    /// egress does with its per-port filter chains. `None` when a domain names no port (`*`,
    /// `example.com`): then every port is HTTP.
    pub http_ports: Option<Box<[u16]>>,
    /// Requests and connections refused by DROP_ALL.
    pub dropped: prometheus::IntCounter,
}

impl Transparent {
    /// Whether DROP_ALL's exceptions let `host` (a Host without its port, or a TLS server name)
    /// through.
    pub fn allows_host(&self, host: &str) -> bool {
        self.allowed_hosts.iter().any(|p| host_matches(p, host))
    }

    /// Where a request for no known service goes: through, to the destination the client
    /// dialled, when the policy lets its Host pass; `None` when the policy drops it.
    pub fn http_route_for(&self, authority: &str) -> Option<&Route> {
        let host = crate::route::host_without_port(authority);
        if self.allow_all || self.allows_host(host) {
            self.http_passthrough.as_ref()
        } else {
            None
        }
    }
}

/// Whether `host` is `pattern`: an exact name, or `*.suffix` for any name under the suffix (not the
/// bare suffix), ignoring case and a trailing dot.
fn host_matches(pattern: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.');
    match pattern.strip_prefix('*') {
        Some(suffix) => {
            host.len() > suffix.len()
                && host
                    .get(host.len() - suffix.len()..)
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
        }
        None => host.eq_ignore_ascii_case(pattern),
    }
}

pub struct AccessLogger {
    pub format: Format,
    pub sink: Arc<AccessLogSink>,
    pub path: String,
}

impl AccessLogger {
    /// The request headers the format asks for, captured when a request arrives.
    pub fn request_headers(&self) -> &[HeaderName] {
        self.format.request_headers()
    }

    /// The response headers the format asks for, captured when the response head is sent on.
    pub fn response_headers(&self) -> &[HeaderName] {
        self.format.response_headers()
    }
}

#[cfg(test)]
mod egress_tests {
    use super::host_matches;

    #[test]
    fn allowed_host_patterns() {
        assert!(host_matches(
            "*.amazonaws.com",
            "s3.us-west-2.amazonaws.com"
        ));
        assert!(host_matches("*.amazonaws.com", "STS.AmazonAWS.com."));
        assert!(!host_matches("*.amazonaws.com", "amazonaws.com"));
        assert!(!host_matches("*.amazonaws.com", "evilamazonaws.com"));
        assert!(!host_matches("*.amazonaws.com", "s3.amazonaws.com.evil.io"));
        assert!(host_matches("api.example.com", "API.example.com"));
        assert!(!host_matches("api.example.com", "x.api.example.com"));
    }
}

#[cfg(test)]
mod source_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::TableSource;

    #[test]
    fn the_stored_table_decodes_whole_and_the_outline_has_no_routes() {
        let yaml = "version: v7\nlisteners:\n  - name: web\n    address: 127.0.0.1:8080\n    virtualHosts:\n      - name: all\n        domains: [\"*\"]\n        routes:\n          - name: r\n            match: { prefix: /api, headers: [{ name: x-v, exact: b }] }\n            action: { weightedTargets: [{ cluster: c, weight: 1 }] }\n  - name: db\n    address: 127.0.0.1:5432\n    protocol: TCP\n    tcpRoutes: [{ name: t, weightedTargets: [{ cluster: c, weight: 1 }] }]\nclusters:\n  - name: c\n    staticEndpoints: { endpoints: [{ address: 127.0.0.1:9000 }] }\n";
        let table = ferry_api::decode_yaml(yaml, "t.yaml").expect("valid");
        assert_eq!(table.listeners[0].virtual_hosts[0].routes.len(), 1);
        let source = TableSource::new(table.clone());
        assert_eq!(source.table().expect("decodes"), table);
        let outline = source.outline();
        assert_eq!(outline.version, "v7");
        assert_eq!(outline.clusters, table.clusters);
        assert_eq!(outline.listeners[0].virtual_hosts[0].domains, ["*"]);
        assert!(outline.listeners[0].virtual_hosts[0].routes.is_empty());
        assert!(outline.listeners[1].tcp_routes.is_empty());
        assert_eq!(outline.listeners[1].protocol, table.listeners[1].protocol);
    }
}
