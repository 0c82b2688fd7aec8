//! What the access log knows about one finished request or connection.
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::flags::ResponseFlags;

/// The header values a log line reads, kept when the message was sent on: the first value of
/// each header the format names. A short list searched in order, because a format names few
/// (Envoy's default: three request headers, no response header): filling a `HeaderMap` hashed
/// each name twice and sized a table, ~2,000 instructions per request against ~800 for this
/// (callgrind, issue #7).
#[derive(Clone, Debug, Default)]
pub struct CapturedHeaders(Vec<(HeaderName, HeaderValue)>);

impl CapturedHeaders {
    /// The first value of each of `names` in `headers`.
    pub fn capture(headers: &HeaderMap, names: &[HeaderName]) -> CapturedHeaders {
        // Allocates nothing when `names` is empty, as for the response of Envoy's default line.
        let mut list = Vec::with_capacity(names.len());
        for name in names {
            if let Some(v) = headers.get(name) {
                list.push((name.clone(), v.clone()));
            }
        }
        CapturedHeaders(list)
    }

    pub fn get(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Sets `name` to `value`, replacing an earlier value (tests build records with it).
    #[cfg(test)]
    pub fn insert(&mut self, name: HeaderName, value: HeaderValue) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v = value,
            None => self.0.push((name, value)),
        }
    }
}

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
    pub request_headers: &'a CapturedHeaders,
    /// `None` when no response was sent (e.g. the client went away first).
    pub response_code: Option<u16>,
    pub response_headers: Option<&'a CapturedHeaders>,
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
