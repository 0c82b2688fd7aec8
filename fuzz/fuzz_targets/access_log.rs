//! Access-log formats: compile an arbitrary format string (text or JSON fields), then write a line
//! for an arbitrary record. Compiling may refuse; writing may not panic, and a JSON line must be
//! one valid JSON object.
#![no_main]
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbitrary::Arbitrary;
use ferry_proxy::access_log::{CapturedHeaders, Format, LogRecord};
use ferry_proxy::flags::ResponseFlags;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    text: Option<String>,
    json: Vec<(String, String)>,
    start_secs: u32,
    start_nanos: u32,
    method: Option<String>,
    path: String,
    authority: String,
    request_headers: Vec<(String, Vec<u8>)>,
    response_code: Option<u16>,
    response_headers: Option<Vec<(String, Vec<u8>)>>,
    bytes: (u64, u64),
    duration_ms: u64,
    upstream_ms: Option<u32>,
    upstream: Option<([u8; 4], u16)>,
    remote: ([u8; 16], u16),
}

fn headers(pairs: &[(String, Vec<u8>)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_bytes(v),
        ) {
            h.append(k, v);
        }
    }
    h
}

fuzz_target!(|input: Input| {
    let format = match &input.text {
        Some(t) => Format::text(t),
        None => Format::json(&input.json),
    };
    let Ok(format) = format else { return };
    let method = input
        .method
        .as_deref()
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok());
    // Captured as the proxy does: only the headers the format reads.
    let request_headers =
        CapturedHeaders::capture(&headers(&input.request_headers), format.request_headers());
    let response_headers = input
        .response_headers
        .as_deref()
        .map(|h| CapturedHeaders::capture(&headers(h), format.response_headers()));
    let rec = LogRecord {
        start_time: UNIX_EPOCH
            + Duration::new(
                u64::from(input.start_secs) * 8,
                input.start_nanos % 1_000_000_000,
            ),
        method: method.as_ref(),
        path: &input.path,
        protocol: "HTTP/1.1",
        authority: &input.authority,
        scheme: "http",
        request_headers: &request_headers,
        response_code: input.response_code,
        response_headers: response_headers.as_ref(),
        response_flags: ResponseFlags::NONE,
        bytes_received: input.bytes.0,
        bytes_sent: input.bytes.1,
        duration: Duration::from_millis(input.duration_ms),
        upstream_service_time: input
            .upstream_ms
            .map(|ms| Duration::from_millis(u64::from(ms))),
        upstream_host: input
            .upstream
            .map(|(ip, port)| SocketAddr::from((ip, port))),
        upstream_cluster: "c",
        route_name: "r",
        downstream_remote: SocketAddr::from((input.remote.0, input.remote.1)),
        downstream_local: SocketAddr::from(([127, 0, 0, 1], 10000)),
    };
    let _ = SystemTime::now();
    let mut out = String::new();
    format.write(&rec, &mut out);
    assert!(
        out.ends_with('\n'),
        "a log line must end in a newline: {out:?}"
    );
    if input.text.is_none() {
        let line = out.trim_end_matches('\n');
        assert!(!line.contains('\n'), "a JSON line spans lines: {out:?}");
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"));
        assert!(v.is_object(), "{out:?}");
    }
});
