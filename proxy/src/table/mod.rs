//! The runtime table: a routing table compiled for serving. Built whole or not at all; the
//! request path reads it through arc-swap guards and never sees a half-applied table.
mod compile;
mod dns;
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
    pub source: Arc<v1::RoutingTable>,
    pub listeners: Vec<ListenerSpec>,
    pub clusters: HashMap<String, Arc<Cluster>>,
    /// The resolver settings of its DNS clusters; `None` when it has none.
    pub dns: Option<Arc<crate::discovery::DnsConfig>>,
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
    /// TCP listeners: routes by destination port (then the virtual hosts are empty).
    pub tcp: Option<TcpRoutes>,
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
            idle_timeout: Some(Duration::from_secs(300)),
        }
    }
}

/// What a transparent listener does with traffic for no known service (the mesh egress filter).
pub struct Transparent {
    /// ALLOW_ALL: requests for no known service go to the destination the client dialled.
    pub http_passthrough: Option<Route>,
    /// ALLOW_ALL on a TCP listener: connections for no TCP route go to their original destination.
    pub tcp_passthrough: Option<TcpRoute>,
    /// Requests and connections refused by DROP_ALL.
    pub dropped: prometheus::IntCounter,
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
}
