//! `ferry-agent explain`: which listener, virtual host, route and weighted targets a request
//! would take through a compiled table, and why each route tried before did not match. It reads
//! the table exactly as the proxy does (virtual host by Host: exact, then longest `*.suffix`,
//! then `*`; routes by priority, first match wins).
use std::fmt::Write;

use ferry_api::v1::{self, header_match, query_parameter_match, route_match};

/// A request to explain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub scheme: String,
    /// Host, with the port when the URL has one.
    pub authority: String,
    pub port: u16,
    pub path: String,
    pub query: Option<String>,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// `"GET http://svc.local:8080/path?q=1"` (the method may be left out: GET), and headers
    /// written `"name: value"`.
    pub fn parse(line: &str, headers: &[String]) -> Result<Request, String> {
        let line = line.trim();
        let (method, url) = match line.split_once(char::is_whitespace) {
            Some((m, u)) => (m.to_ascii_uppercase(), u.trim()),
            None => ("GET".to_owned(), line),
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            format!("{url:?}: expected a URL such as http://color.mesh.local:8080/")
        })?;
        let scheme = scheme.to_ascii_lowercase();
        let (authority, path_query) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        let (path, query) = match path_query.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (path_query.to_owned(), None),
        };
        let default_port = if scheme == "https" { 443 } else { 80 };
        let port = match authority.rsplit_once(':') {
            Some((_, p)) if !p.contains(']') => p
                .parse()
                .map_err(|_| format!("{authority:?}: {p:?} is not a port"))?,
            _ => default_port,
        };
        let mut hs = Vec::new();
        for h in headers {
            let (k, v) = h
                .split_once(':')
                .ok_or_else(|| format!("{h:?}: expected a header as 'name: value'"))?;
            hs.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        let mut authority = authority.to_ascii_lowercase();
        if let Some((_, host)) = hs.iter().find(|(k, _)| k == "host") {
            authority = host.to_ascii_lowercase();
        }
        Ok(Request {
            method,
            scheme,
            authority,
            port,
            path,
            query,
            headers: hs,
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Explains `req` through `table`; `listener` picks the listener by name (default: the egress
/// listener of a virtual node, the gateway listener on the request's port of a gateway).
pub fn explain(
    table: &v1::RoutingTable,
    req: &Request,
    listener: Option<&str>,
) -> Result<String, String> {
    let mut out = String::new();
    let l = pick_listener(table, req, listener)?;
    let _ = writeln!(
        out,
        "request:  {} {}://{}{}{}",
        req.method,
        req.scheme,
        req.authority,
        req.path,
        req.query
            .as_deref()
            .map(|q| format!("?{q}"))
            .unwrap_or_default()
    );
    for (k, v) in &req.headers {
        let _ = writeln!(out, "          {k}: {v}");
    }
    let _ = writeln!(
        out,
        "table:    {} (version {})",
        table.node_id, table.version
    );
    hop(table, l, req, &mut out, 0);
    Ok(out)
}

fn pick_listener<'t>(
    table: &'t v1::RoutingTable,
    req: &Request,
    name: Option<&str>,
) -> Result<&'t v1::Listener, String> {
    let names = || {
        table
            .listeners
            .iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(n) = name {
        return table
            .listeners
            .iter()
            .find(|l| l.name == n)
            .ok_or_else(|| format!("no listener {n:?} in this table (it has {})", names()));
    }
    let gateways: Vec<&v1::Listener> = table
        .listeners
        .iter()
        .filter(|l| l.direction() == v1::listener::Direction::Gateway)
        .collect();
    if !gateways.is_empty() {
        let by_port = gateways
            .iter()
            .find(|l| l.address.rsplit(':').next() == Some(&req.port.to_string()));
        return by_port
            .or(if gateways.len() == 1 {
                gateways.first()
            } else {
                None
            })
            .copied()
            .ok_or_else(|| {
                format!(
                    "the gateway has no listener on port {}: pass --listener (it has {})",
                    req.port,
                    names()
                )
            });
    }
    table
        .listeners
        .iter()
        .find(|l| l.direction() == v1::listener::Direction::Outbound)
        .or(table.listeners.first())
        .ok_or_else(|| "the table has no listeners".to_owned())
}

fn hop(table: &v1::RoutingTable, l: &v1::Listener, req: &Request, out: &mut String, depth: usize) {
    let _ = writeln!(
        out,
        "listener: {} ({}, {}, {})",
        l.name,
        l.address,
        l.direction().as_str_name(),
        l.protocol().as_str_name()
    );
    if l.protocol() == v1::listener::Protocol::Tcp {
        let _ = writeln!(
            out,
            "  a TCP listener: connections go by destination port to:"
        );
        for r in &l.tcp_routes {
            let _ = writeln!(
                out,
                "  - {} (port {}): {}",
                r.name,
                r.port,
                targets_line(&r.weighted_targets)
            );
        }
        return;
    }
    let Some((vh, why)) = find_vhost(l, &req.authority) else {
        let domains: Vec<String> = l
            .virtual_hosts
            .iter()
            .flat_map(|v| v.domains.clone())
            .collect();
        let _ = writeln!(
            out,
            "no virtual host for {:?}: the proxy answers 404 (NR).\n  domains served: {}",
            req.authority,
            if domains.is_empty() {
                "none".to_owned()
            } else {
                domains.join(", ")
            }
        );
        return;
    };
    let _ = writeln!(out, "virtual host: {} ({why})", vh.name);
    let mut routes: Vec<&v1::Route> = vh.routes.iter().collect();
    routes.sort_by_key(|r| r.priority);
    let mut chosen = None;
    let _ = writeln!(out, "routes, in the order they are tried:");
    for (i, r) in routes.iter().enumerate() {
        match route_mismatch(r, req) {
            Some(why) => {
                let _ = writeln!(
                    out,
                    "  {}. {} (priority {}): no: {why}",
                    i + 1,
                    r.name,
                    r.priority
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  {}. {} (priority {}): MATCH",
                    i + 1,
                    r.name,
                    r.priority
                );
                chosen = Some(*r);
                break;
            }
        }
    }
    let Some(r) = chosen else {
        let _ = writeln!(out, "no route matched: the proxy answers 404 (NR)");
        return;
    };
    let Some(a) = &r.action else { return };
    let _ = writeln!(
        out,
        "weighted targets: {}",
        targets_line(&a.weighted_targets)
    );
    for t in &a.weighted_targets {
        if let Some(c) = table.clusters.iter().find(|c| c.name == t.cluster) {
            let _ = writeln!(out, "  {}: {}", c.name, cluster_line(c));
        }
    }
    let timeout = a
        .timeouts
        .as_ref()
        .and_then(|t| t.request.as_ref())
        .or(l.timeouts.as_ref().and_then(|t| t.request.as_ref()));
    let _ = writeln!(
        out,
        "timeout: {}",
        match timeout {
            Some(d) if d.seconds == 0 && d.nanos == 0 => "none".to_owned(),
            Some(d) => dur(d),
            None => "15s (default)".to_owned(),
        }
    );
    match &a.retry_policy {
        Some(rp) if rp.max_retries > 0 => {
            let mut events: Vec<String> = rp
                .http_retry_events()
                .map(|e| e.as_str_name().to_owned())
                .collect();
            events.extend(rp.tcp_retry_events().map(|e| e.as_str_name().to_owned()));
            events.extend(rp.grpc_retry_events().map(|e| e.as_str_name().to_owned()));
            let _ = writeln!(
                out,
                "retries: up to {} on {}{}",
                rp.max_retries,
                events.join(", "),
                rp.per_try_timeout
                    .as_ref()
                    .map(|d| format!(", {} per try", dur(d)))
                    .unwrap_or_default()
            );
        }
        _ => {
            let _ = writeln!(out, "retries: none");
        }
    }
    let mut next = req.clone();
    if let Some(rw) = &a.rewrite {
        let mut parts = Vec::new();
        if let Some(h) = &rw.host {
            parts.push(format!("Host -> {h}"));
            next.authority = h.clone();
        }
        if let Some(p) = &rw.path {
            parts.push(format!("path -> {p}"));
            next.path = p.clone();
        } else if let (Some(p), Some(route_match::Path::Prefix(old))) =
            (&rw.prefix, r.r#match.as_ref().and_then(|m| m.path.as_ref()))
        {
            let rest = &req.path[old.len().min(req.path.len())..];
            let mut np = p.clone();
            if p.ends_with('/') && rest.starts_with('/') {
                np.push_str(&rest[1..]);
            } else {
                np.push_str(rest);
            }
            parts.push(format!("prefix {old} -> {p} (path {np})"));
            next.path = np;
        }
        if !parts.is_empty() {
            let _ = writeln!(out, "rewrite: {}", parts.join(", "));
        }
    }
    // A gateway's second hop, through its own egress listener.
    if depth == 0
        && a.weighted_targets
            .iter()
            .all(|t| t.cluster.starts_with("self:"))
        && let Some(egress) = table.listeners.iter().find(|l| l.name == "egress")
    {
        let _ = writeln!(out, "\nthen, through the gateway's own egress:");
        hop(table, egress, &next, out, depth + 1);
    }
}

fn dur(d: &pbjson_types::Duration) -> String {
    if d.nanos == 0 {
        format!("{}s", d.seconds)
    } else {
        format!("{}ms", d.seconds * 1000 + i64::from(d.nanos / 1_000_000))
    }
}

fn targets_line(t: &[v1::WeightedTarget]) -> String {
    let total: u32 = t.iter().map(|t| t.weight).sum();
    t.iter()
        .map(|t| {
            let pct = if total == 0 {
                0.0
            } else {
                f64::from(t.weight) * 100.0 / f64::from(total)
            };
            format!("{} weight {} ({pct:.0}%)", t.cluster, t.weight)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn cluster_line(c: &v1::Cluster) -> String {
    let discovery = match &c.discovery {
        Some(v1::cluster::Discovery::Dns(d)) => format!(
            "DNS {}:{} ({}{})",
            d.hostname,
            d.port,
            match d.response_type() {
                v1::dns_discovery::ResponseType::Endpoints => "ENDPOINTS",
                _ => "LOADBALANCER",
            },
            if d.ip_preference == 0 {
                String::new()
            } else {
                format!(", {}", d.ip_preference().as_str_name())
            }
        ),
        Some(v1::cluster::Discovery::StaticEndpoints(s)) => {
            let a: Vec<&str> = s.endpoints.iter().map(|e| e.address.as_str()).collect();
            format!("static {}", a.join(", "))
        }
        None => "no endpoints".to_owned(),
    };
    let mut extra = Vec::new();
    extra.push(match c.protocol() {
        v1::cluster::Protocol::Unspecified => "HTTP1".to_owned(),
        p => p.as_str_name().to_owned(),
    });
    if c.tls.is_some() {
        extra.push("TLS".to_owned());
    }
    if c.outlier_detection.is_some() {
        extra.push("outlier detection".to_owned());
    }
    if c.health_check.is_some() {
        extra.push("health checked".to_owned());
    }
    if c.connection_pool.is_some() {
        extra.push("connection pool limits".to_owned());
    }
    format!("{discovery}; {}", extra.join(", "))
}

fn find_vhost<'l>(l: &'l v1::Listener, authority: &str) -> Option<(&'l v1::VirtualHost, String)> {
    let host = authority.to_ascii_lowercase();
    let without_port = match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !p.is_empty() => {
            Some(h.to_owned())
        }
        _ => None,
    };
    let find = |d: &str| {
        l.virtual_hosts
            .iter()
            .find(|v| v.domains.iter().any(|x| x.eq_ignore_ascii_case(d)))
    };
    if let Some(v) = find(&host) {
        return Some((v, format!("exact domain {host:?}")));
    }
    if let Some(h) = &without_port
        && let Some(v) = find(h)
    {
        return Some((v, format!("domain {h:?}, which matches any port")));
    }
    let mut best: Option<(&v1::VirtualHost, &str)> = None;
    for v in &l.virtual_hosts {
        for d in &v.domains {
            if let Some(suffix) = d.strip_prefix('*')
                && !suffix.is_empty()
            {
                let candidates = [Some(host.as_str()), without_port.as_deref()];
                let hit = candidates
                    .iter()
                    .flatten()
                    .any(|h| h.len() > suffix.len() && h.ends_with(suffix));
                if hit && best.is_none_or(|(_, b)| b.len() < d.len()) {
                    best = Some((v, d.as_str()));
                }
            }
        }
    }
    if let Some((v, d)) = best {
        return Some((v, format!("wildcard domain {d:?}")));
    }
    l.virtual_hosts
        .iter()
        .find(|v| v.domains.iter().any(|d| d == "*"))
        .map(|v| (v, "the catch-all domain \"*\"".to_owned()))
}

/// Why `r` does not match `req`, or `None` when it does.
fn route_mismatch(r: &v1::Route, req: &Request) -> Option<String> {
    let default = v1::RouteMatch::default();
    let m = r.r#match.as_ref().unwrap_or(&default);
    match &m.path {
        Some(route_match::Path::Prefix(p)) if !req.path.starts_with(p.as_str()) => {
            return Some(format!("path {} does not start with {p}", req.path));
        }
        Some(route_match::Path::Exact(p)) if req.path != *p => {
            return Some(format!("path {} is not {p}", req.path));
        }
        Some(route_match::Path::Regex(re)) => match regex::Regex::new(&format!("^(?:{re})$")) {
            Ok(rx) if !rx.is_match(&req.path) => {
                return Some(format!("path {} does not match the regex {re}", req.path));
            }
            Err(e) => return Some(format!("invalid regex {re}: {e}")),
            _ => {}
        },
        _ => {}
    }
    if let Some(g) = &m.grpc {
        if !g.service_name.is_empty() {
            let want = if g.method_name.is_empty() {
                format!("/{}/", g.service_name)
            } else {
                format!("/{}/{}", g.service_name, g.method_name)
            };
            let ok = if g.method_name.is_empty() {
                req.path.starts_with(&want)
            } else {
                req.path == want
            };
            if !ok {
                return Some(format!("gRPC path {} is not {want}", req.path));
            }
        }
        for h in &g.metadata {
            if let Some(why) = header_mismatch(h, req) {
                return Some(format!("metadata {why}"));
            }
        }
    }
    if !m.method.is_empty() && !m.method.eq_ignore_ascii_case(&req.method) {
        return Some(format!("method {} is not {}", req.method, m.method));
    }
    if !m.scheme.is_empty() && !m.scheme.eq_ignore_ascii_case(&req.scheme) {
        return Some(format!("scheme {} is not {}", req.scheme, m.scheme));
    }
    if m.port != 0 && m.port != u32::from(req.port) {
        return Some(format!("port {} is not {}", req.port, m.port));
    }
    for h in &m.headers {
        if let Some(why) = header_mismatch(h, req) {
            return Some(format!("header {why}"));
        }
    }
    for q in &m.query_parameters {
        let values: Vec<&str> = req
            .query
            .as_deref()
            .unwrap_or_default()
            .split('&')
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k == q.name).then_some(v)
            })
            .collect();
        match &q.r#match {
            Some(query_parameter_match::Match::Exact(want)) if !values.contains(&want.as_str()) => {
                return Some(format!(
                    "query parameter {}={want} is not in the query",
                    q.name
                ));
            }
            Some(query_parameter_match::Match::Present(false)) if !values.is_empty() => {
                return Some(format!("query parameter {} is present", q.name));
            }
            None | Some(query_parameter_match::Match::Present(true)) if values.is_empty() => {
                return Some(format!("query parameter {} is absent", q.name));
            }
            _ => {}
        }
    }
    None
}

fn header_mismatch(h: &v1::HeaderMatch, req: &Request) -> Option<String> {
    use header_match::Match as M;
    let value = req.header(&h.name);
    let (ok, want) = match (&h.r#match, value) {
        (Some(M::Present(false)), v) => (v.is_none(), "absent".to_owned()),
        (None | Some(M::Present(true)), v) => (v.is_some(), "present".to_owned()),
        (Some(m), None) => (false, describe(m)),
        (Some(m), Some(v)) => (
            match m {
                M::Exact(s) => v == s,
                M::Prefix(s) => v.starts_with(s.as_str()),
                M::Suffix(s) => v.ends_with(s.as_str()),
                M::Regex(re) => {
                    regex::Regex::new(&format!("^(?:{re})$")).is_ok_and(|r| r.is_match(v))
                }
                M::Range(r) => v
                    .trim()
                    .parse::<i64>()
                    .is_ok_and(|n| n >= r.start && n < r.end),
                M::Present(_) => true,
            },
            describe(m),
        ),
    };
    let holds = ok != h.invert;
    if holds {
        return None;
    }
    let seen = value.map_or("absent".to_owned(), |v| format!("{v:?}"));
    Some(if h.invert {
        format!("{}: {seen} must not be {want}", h.name)
    } else {
        format!("{}: {seen} is not {want}", h.name)
    })
}

fn describe(m: &header_match::Match) -> String {
    use header_match::Match as M;
    match m {
        M::Exact(s) => format!("exactly {s:?}"),
        M::Prefix(s) => format!("prefixed {s:?}"),
        M::Suffix(s) => format!("suffixed {s:?}"),
        M::Regex(s) => format!("matching /{s}/"),
        M::Range(r) => format!("an integer in [{}, {})", r.start, r.end),
        M::Present(true) => "present".to_owned(),
        M::Present(false) => "absent".to_owned(),
    }
}
