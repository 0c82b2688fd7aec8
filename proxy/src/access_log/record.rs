//! What the access log knows about one finished request or connection.
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::flags::ResponseFlags;

/// One finished request (or TCP connection), as the access-log formatter sees it.
///
/// `request_headers` holds only the headers the listener's format asks for
/// ([`super::Format::request_headers`]), captured when the request arrived: the request itself
/// has long been forwarded when the log line is written.
#[derive(Debug)]
pub struct LogRecord<'a> {
    pub start_time: SystemTime,
    /// `None` for TCP connections.
    pub method: Option<&'a http::Method>,
    /// Path and query as the client sent them.
    pub path: &'a str,
    /// "HTTP/1.1", "HTTP/2", or "-" for TCP.
    pub protocol: &'static str,
    pub authority: &'a str,
    pub scheme: &'a str,
    pub request_headers: &'a http::HeaderMap,
    /// `None` when no response was sent (e.g. the client went away first).
    pub response_code: Option<u16>,
    pub response_headers: Option<&'a http::HeaderMap>,
    pub response_flags: ResponseFlags,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// From the start of the request to the last byte sent.
    pub duration: Duration,
    /// From sending the request upstream to receiving the response headers.
    pub upstream_service_time: Option<Duration>,
    pub upstream_host: Option<SocketAddr>,
    pub upstream_cluster: &'a str,
    pub route_name: &'a str,
    pub downstream_remote: SocketAddr,
    pub downstream_local: SocketAddr,
}
