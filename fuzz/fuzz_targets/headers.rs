//! Header and authority handling on hostile requests: path normalization, virtual-host lookup by
//! Host / :authority, hop-by-hop stripping, forwarding headers and request ids, prefix rewrites;
//! trace context (traceparent, B3, x-amzn-trace-id).
#![no_main]
use arbitrary::Arbitrary;
use ferry_proxy::http::{
    add_forwarding, client_ip_value, ensure_request_id, strip_hop_by_hop, wants_upgrade,
};
use ferry_proxy::route::{VirtualHost, VirtualHosts, normalize_path};
use ferry_proxy::tracing_export::context;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    path: String,
    authority: String,
    domains: Vec<String>,
    headers: Vec<(String, Vec<u8>)>,
    client: [u8; 16],
    https: bool,
}

fuzz_target!(|input: Input| {
    // === Paths ===
    let path = normalize_path(&input.path);
    ferry_fuzz::check_normalized(&input.path, &path);

    // === Virtual hosts ===
    let mut vhosts = VirtualHosts::default();
    for (i, d) in input.domains.iter().take(8).enumerate() {
        vhosts.push(
            VirtualHost {
                name: format!("v{i}"),
                routes: Box::new([]),
            },
            std::slice::from_ref(&d.to_ascii_lowercase()),
        );
    }
    if let Some((i, host)) = vhosts.find(&input.authority) {
        assert_eq!(host.name, format!("v{i}"));
    }

    // === Proxy headers ===
    let mut h = HeaderMap::new();
    for (k, v) in input.headers.iter().take(32) {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_bytes(v),
        ) {
            h.append(k, v);
        }
    }
    // === Trace context ===
    if let Some(ctx) = context::extract(&h) {
        assert!(ctx.trace_id != Some(0) && ctx.parent != Some(0), "{ctx:?}");
    }
    for (_, v) in input.headers.iter().take(4) {
        if let Some((trace, span, flags)) = context::parse_traceparent(v) {
            let written = context::traceparent_value(trace, span, flags);
            assert_eq!(
                context::parse_traceparent(written.as_bytes()),
                Some((trace, span, flags))
            );
        }
    }

    let upgrade = wants_upgrade(&h);
    strip_hop_by_hop(&mut h, upgrade);
    for gone in [
        "keep-alive",
        "transfer-encoding",
        "proxy-connection",
        "proxy-authorization",
    ] {
        assert!(!h.contains_key(gone), "{gone} survived stripping");
    }
    if !upgrade {
        assert!(!h.contains_key("connection") && !h.contains_key("upgrade"));
    }
    if let Some(te) = h.get("te") {
        assert!(
            te.as_bytes().eq_ignore_ascii_case(b"trailers"),
            "TE {te:?} survived"
        );
    }
    let client = std::net::IpAddr::from(input.client);
    add_forwarding(
        &mut h,
        &client_ip_value(client),
        if input.https { "https" } else { "http" },
    );
    let xff = h
        .get("x-forwarded-for")
        .expect("x-forwarded-for is always set");
    assert!(
        xff.as_bytes().ends_with(client.to_string().as_bytes()),
        "x-forwarded-for {xff:?} does not end with the client {client}"
    );
    assert!(h.contains_key("x-forwarded-proto"));
    ensure_request_id(&mut h);
    assert!(h.contains_key("x-request-id"));
});
