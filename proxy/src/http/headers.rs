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
pub fn strip_hop_by_hop(h: &mut HeaderMap, upgrade: bool) {
    // Headers the sender listed in Connection are hop-by-hop too.
    if let Some(conn) = h.get(CONNECTION) {
        let listed: Vec<HeaderName> = conn
            .to_str()
            .unwrap_or("")
            .split(',')
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|n| !(upgrade && *n == UPGRADE))
            .collect();
        for name in listed {
            h.remove(name);
        }
        if !upgrade {
            h.remove(CONNECTION);
        }
    }
    for name in [
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &PROXY_AUTHENTICATE,
        &PROXY_AUTHORIZATION,
        &TRAILER,
    ] {
        h.remove(name);
    }
    h.remove(TRANSFER_ENCODING);
    if !upgrade {
        h.remove(UPGRADE);
    }
    if let Some(te) = h.get(TE) {
        let trailers_only = te.as_bytes().eq_ignore_ascii_case(b"trailers");
        if !trailers_only {
            h.remove(TE);
        }
    }
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

/// Appends the client address to X-Forwarded-For and sets X-Forwarded-Proto if absent.
pub fn add_forwarding(h: &mut HeaderMap, client: IpAddr, scheme: &'static str) {
    let ip = client.to_string();
    let value = match h.get(&X_FORWARDED_FOR).map(HeaderValue::as_bytes) {
        Some(prev) if !prev.is_empty() => {
            let mut v = Vec::with_capacity(prev.len() + 2 + ip.len());
            v.extend_from_slice(prev);
            v.extend_from_slice(b", ");
            v.extend_from_slice(ip.as_bytes());
            HeaderValue::from_bytes(&v).ok()
        }
        _ => HeaderValue::from_str(&ip).ok(),
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
    if let Ok(v) = HeaderValue::from_str(s) {
        h.insert(X_REQUEST_ID.clone(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        add_forwarding(&mut h, "127.0.0.1".parse().expect("ip"), "http");
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
