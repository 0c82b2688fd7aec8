//! Proxy header handling: hop-by-hop headers are stripped (RFC 9110 §7.6.1), the standard
//! forwarding headers added, and a request id kept or generated.
use std::net::IpAddr;

use http::HeaderMap;
use http::header::{CONNECTION, HeaderName, HeaderValue, TE, TRANSFER_ENCODING, UPGRADE};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static PROXY_AUTHENTICATE: HeaderName = HeaderName::from_static("proxy-authenticate");
static PROXY_AUTHORIZATION: HeaderName = HeaderName::from_static("proxy-authorization");
static TRAILER: HeaderName = HeaderName::from_static("trailer");

/// Removes hop-by-hop headers. With `upgrade`, `Connection: upgrade` and `Upgrade` stay so the
/// upgrade handshake reaches the other side. `TE: trailers` stays (gRPC needs it).
///
/// Runs on every request and response, so it first scans the names once (standard names compare
/// as an enum tag) and returns when there is nothing to strip, the common case for requests;
/// removing by name hashes the name and probes the map, nine times per message otherwise.
pub fn strip_hop_by_hop(h: &mut HeaderMap, upgrade: bool) {
    if !h.keys().any(is_hop_by_hop) {
        return;
    }
    // Headers the sender listed in Connection are hop-by-hop too. The value is a shared view
    // (cloning bumps a count), so the names can be removed while it is read.
    if let Some(conn) = h.get(CONNECTION).cloned() {
        for token in conn.to_str().unwrap_or("").split(',').map(str::trim) {
            // The usual tokens name no header to remove (`keep-alive` is removed below).
            if token.eq_ignore_ascii_case("keep-alive")
                || token.eq_ignore_ascii_case("close")
                || token.eq_ignore_ascii_case("upgrade")
            {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                h.remove(name);
            }
        }
    }
    let keep_te = h
        .get(TE)
        .is_some_and(|te| te.as_bytes().eq_ignore_ascii_case(b"trailers"));
    // Each removal ends the scan (the map changed); a message carries few hop-by-hop names.
    while let Some(name) = h
        .keys()
        .find(|n| is_hop_by_hop(n) && !keeps(n, upgrade, keep_te))
        .cloned()
    {
        h.remove(name);
    }
}

/// The hop-by-hop headers of RFC 9110 §7.6.1, plus the legacy ones proxies strip.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == CONNECTION
        || name == TRANSFER_ENCODING
        || name == UPGRADE
        || name == TE
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
        || name == PROXY_AUTHENTICATE
        || name == PROXY_AUTHORIZATION
        || name == TRAILER
}

/// The hop-by-hop headers that stay: the upgrade handshake's, and `TE: trailers`.
fn keeps(name: &HeaderName, upgrade: bool, keep_te: bool) -> bool {
    (upgrade && (name == CONNECTION || name == UPGRADE)) || (keep_te && name == TE)
}

/// Whether the request asks for an HTTP/1.1 protocol upgrade (e.g. WebSocket).
pub fn wants_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(UPGRADE)
        && h.get_all(CONNECTION).iter().any(|v| {
            v.to_str()
                .unwrap_or("")
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
}

/// The client address as an X-Forwarded-For element: formatted once per connection, not once
/// per request.
pub fn client_ip_value(client: IpAddr) -> HeaderValue {
    // An IP address is always a valid header value; the fallback is never taken.
    HeaderValue::from_str(&client.to_string()).unwrap_or(HeaderValue::from_static("unknown"))
}

/// Appends the client address (see [`client_ip_value`]) to X-Forwarded-For and sets
/// X-Forwarded-Proto if absent.
pub fn add_forwarding(h: &mut HeaderMap, client: &HeaderValue, scheme: &'static str) {
    let value = match h.get(&X_FORWARDED_FOR).map(HeaderValue::as_bytes) {
        Some(prev) if !prev.is_empty() => {
            let ip = client.as_bytes();
            let mut v = Vec::with_capacity(prev.len() + 2 + ip.len());
            v.extend_from_slice(prev);
            v.extend_from_slice(b", ");
            v.extend_from_slice(ip);
            HeaderValue::from_bytes(&v).ok()
        }
        _ => Some(client.clone()),
    };
    if let Some(v) = value {
        h.insert(X_FORWARDED_FOR.clone(), v);
    }
    if !h.contains_key(&X_FORWARDED_PROTO) {
        h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(scheme));
    }
}

/// Keeps the client's X-Request-Id or generates a UUIDv4 one.
pub fn ensure_request_id(h: &mut HeaderMap) {
    if h.contains_key(&X_REQUEST_ID) {
        return;
    }
    // fastrand, not the OS: no syscall on the request path. Request ids need to be unique, not secret.
    let id = uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid();
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let s = id.hyphenated().encode_lower(&mut buf);
    if let Ok(mut v) = HeaderValue::from_str(s) {
        // Never indexed by HTTP/2's header compression: a value that never repeats would only
        // push the ones that do out of the table (see `cluster::h2_client`).
        v.set_sensitive(true);
        h.insert(X_REQUEST_ID.clone(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_request_id_is_a_uuid_never_indexed_and_a_client_one_is_kept() {
        let mut h = HeaderMap::new();
        ensure_request_id(&mut h);
        let id = &h[&X_REQUEST_ID];
        assert!(uuid::Uuid::parse_str(id.to_str().unwrap_or_default()).is_ok());
        assert!(id.is_sensitive(), "a fresh id would churn HPACK's table");
        let mut h = map(&[("x-request-id", "abc")]);
        ensure_request_id(&mut h);
        assert_eq!(h[&X_REQUEST_ID], "abc");
    }

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn strips_standard_and_listed_hop_by_hop_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "gzip"),
            ("upgrade", "websocket"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn keeps_te_trailers_and_upgrade_when_upgrading() {
        let mut h = map(&[
            ("te", "trailers"),
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert!(wants_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert!(h.contains_key("te") && h.contains_key("upgrade") && h.contains_key("connection"));
    }

    #[test]
    fn forwarding_headers() {
        let mut h = map(&[("x-forwarded-for", "10.0.0.1")]);
        add_forwarding(
            &mut h,
            &client_ip_value("127.0.0.1".parse().expect("ip")),
            "http",
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
    }

    #[test]
    fn request_id_kept_or_generated() {
        let mut h = map(&[("x-request-id", "abc")]);
        ensure_request_id(&mut h);
        assert_eq!(h["x-request-id"], "abc");
        let mut h = HeaderMap::new();
        ensure_request_id(&mut h);
        let id = h["x-request-id"].to_str().expect("ascii");
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4", "version 4 uuid: {id}");
    }
}
