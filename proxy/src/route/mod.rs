//! Routing: a request is matched to a virtual host by its authority, then to the first route (by
//! priority) whose match holds, then to a cluster by weighted pick. Everything here is compiled
//! when the table is loaded; matching allocates nothing in the common case.
mod matcher;
mod path;
mod vhost;
mod weighted;

use std::time::Duration;

use http::{HeaderMap, Method};

pub use matcher::{HeaderMatcher, PathMatch, QueryMatcher, StringMatch, full_match_regex};
pub use path::normalize_path;
pub use vhost::{VirtualHost, VirtualHosts, host_without_port};
pub use weighted::WeightedTargets;

use crate::metrics::RouteMetrics;
use crate::resilience::retry::RetryPolicy;

/// What routing looks at in a request.
pub struct RequestView<'a> {
    pub method: &'a Method,
    /// Normalized path, without the query.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// "http" or "https".
    pub scheme: &'a str,
    /// The (original) destination port the request arrived on.
    pub port: u16,
}

pub struct Route {
    pub name: String,
    pub path: PathMatch,
    pub headers: Box<[HeaderMatcher]>,
    pub method: Option<Method>,
    pub scheme: Option<String>,
    pub query: Box<[QueryMatcher]>,
    pub port: Option<u16>,
    pub action: RouteAction,
    pub metrics: RouteMetrics,
}

pub struct RouteAction {
    pub targets: WeightedTargets,
    pub retry: Option<RetryPolicy>,
    /// A response stream that moves no bytes for this long is reset.
    pub stream_idle: Option<Duration>,
    /// `None`: no timeout.
    pub request_timeout: Option<Duration>,
    pub rewrite: Rewrite,
}

#[derive(Default)]
pub struct Rewrite {
    pub prefix: Option<String>,
    pub path: Option<String>,
    pub host: Option<http::uri::Authority>,
}

impl Route {
    /// Whether every part of this route's match holds for `req`.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        self.path.matches(req.path)
            && self.method.as_ref().is_none_or(|m| m == req.method)
            && self.port.is_none_or(|p| p == req.port)
            && self
                .scheme
                .as_deref()
                .is_none_or(|s| s.eq_ignore_ascii_case(req.scheme))
            && self.headers.iter().all(|h| h.matches(req.headers))
            && self.query.iter().all(|q| q.matches(req.query))
    }

    /// The path to send upstream: rewritten when the route says so, else `None` (unchanged).
    pub fn rewrite_path(&self, path: &str) -> Option<String> {
        if let Some(p) = &self.action.rewrite.path {
            return Some(p.clone());
        }
        match (&self.action.rewrite.prefix, &self.path) {
            (Some(new), PathMatch::Prefix(old)) => {
                let rest = &path[old.len().min(path.len())..];
                // "/api/" -> "/" on "/api/x" gives "/x"; avoid "//x" when both carry a slash.
                let mut out = String::with_capacity(new.len() + rest.len());
                out.push_str(new);
                if new.ends_with('/') && rest.starts_with('/') {
                    out.push_str(&rest[1..]);
                } else {
                    out.push_str(rest);
                }
                if out.is_empty() {
                    out.push('/');
                }
                Some(out)
            }
            _ => None,
        }
    }
}
