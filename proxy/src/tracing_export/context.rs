//! The trace context a request arrives with: W3C `traceparent`, B3 (the single `b3` header, then
//! the `x-b3-*` headers) or AWS X-Ray's `x-amzn-trace-id`, tried in that order. A malformed header
//! is ignored, as if it were absent: nothing from the network can fail a request here.
//!
//! Only `traceparent` is ever written by the proxy (see [`traceparent_value`]); `tracestate`, B3 and
//! `x-amzn-trace-id` pass through untouched.
use http::{HeaderMap, HeaderName, HeaderValue};

pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static B3: HeaderName = HeaderName::from_static("b3");
static B3_TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
static B3_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
static B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
static B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");
static XRAY: HeaderName = HeaderName::from_static("x-amzn-trace-id");

/// W3C trace flags: the sampled bit.
pub const FLAG_SAMPLED: u8 = 0x01;

/// Which header the context came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    TraceContext,
    B3,
    XRay,
}

/// A caller's trace context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Incoming {
    /// `None` for a B3 header that only carries a sampling decision (`b3: 0`, `x-b3-sampled: 1`).
    pub trace_id: Option<u128>,
    /// The caller's span: this hop's parent. X-Ray's Root without Parent has none.
    pub parent: Option<u64>,
    /// The caller's sampling decision; `None` leaves it to this hop (B3 without a sampling
    /// state, X-Ray's `Sampled=?` or none).
    pub sampled: Option<bool>,
    /// The W3C trace flags as received (only from `traceparent`; kept when it is updated).
    pub flags: u8,
    pub source: Source,
}

/// The incoming context, from the first header family that parses.
pub fn extract(headers: &HeaderMap) -> Option<Incoming> {
    traceparent(headers)
        .or_else(|| b3_single(headers))
        .or_else(|| b3_multi(headers))
        .or_else(|| xray(headers))
}

/// The one value of `name`; a repeated header is as good as a malformed one.
fn single<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h [u8]> {
    let mut all = headers.get_all(name).iter();
    let first = all.next()?;
    all.next().is_none().then(|| first.as_bytes())
}

fn traceparent(headers: &HeaderMap) -> Option<Incoming> {
    let (trace_id, parent, flags) = parse_traceparent(single(headers, &TRACEPARENT)?)?;
    Some(Incoming {
        trace_id: Some(trace_id),
        parent: Some(parent),
        sampled: Some(flags & FLAG_SAMPLED != 0),
        flags,
        source: Source::TraceContext,
    })
}

/// `version-traceid-parentid-flags` (W3C Trace Context level 1): lowercase hex, ids not all
/// zeros, version ff invalid. Version 00 is exactly 55 bytes; a later version may append fields
/// after a dash, which are ignored.
pub fn parse_traceparent(v: &[u8]) -> Option<(u128, u64, u8)> {
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let version = hex(&v[0..2], true)?;
    match version {
        0xff => return None,
        0 if v.len() != 55 => return None,
        _ if v.len() > 55 && v[55] != b'-' => return None,
        _ => {}
    }
    let trace_id = hex(&v[3..35], true)?;
    let parent = u64::try_from(hex(&v[36..52], true)?).ok()?;
    let flags = u8::try_from(hex(&v[53..55], true)?).ok()?;
    (trace_id != 0 && parent != 0).then_some((trace_id, parent, flags))
}

/// `b3: {traceid}-{spanid}[-{sampling}[-{parentspanid}]]`, or a lone sampling state `0`/`1`/`d`.
fn b3_single(headers: &HeaderMap) -> Option<Incoming> {
    let v = std::str::from_utf8(single(headers, &B3)?).ok()?;
    if let Some(sampled) = b3_sampling_state(v) {
        return Some(sampling_only(sampled));
    }
    let mut fields = v.split('-');
    let trace_id = b3_trace_id(fields.next()?)?;
    let span_id = b3_span_id(fields.next()?)?;
    let sampled = match fields.next() {
        None => None,
        Some(s) => Some(b3_sampling_state(s)?),
    };
    if let Some(parent) = fields.next() {
        b3_span_id(parent)?;
    }
    if fields.next().is_some() {
        return None;
    }
    Some(Incoming {
        trace_id: Some(trace_id),
        parent: Some(span_id),
        sampled,
        flags: 0,
        source: Source::B3,
    })
}

/// `x-b3-traceid` and `x-b3-spanid` (both or neither), `x-b3-sampled`, `x-b3-flags: 1` (debug).
fn b3_multi(headers: &HeaderMap) -> Option<Incoming> {
    let text = |name: &HeaderName| single(headers, name).and_then(|v| std::str::from_utf8(v).ok());
    let debug = text(&B3_FLAGS) == Some("1");
    let sampled = match text(&B3_SAMPLED) {
        Some("1" | "true") => Some(true),
        Some("0" | "false") => Some(false),
        _ => None,
    };
    let sampled = if debug { Some(true) } else { sampled };
    match (text(&B3_TRACE_ID), text(&B3_SPAN_ID)) {
        (Some(t), Some(s)) => Some(Incoming {
            trace_id: Some(b3_trace_id(t)?),
            parent: Some(b3_span_id(s)?),
            sampled,
            flags: 0,
            source: Source::B3,
        }),
        (None, None) => sampled.map(sampling_only),
        _ => None,
    }
}

fn sampling_only(sampled: bool) -> Incoming {
    Incoming {
        trace_id: None,
        parent: None,
        sampled: Some(sampled),
        flags: 0,
        source: Source::B3,
    }
}

fn b3_sampling_state(s: &str) -> Option<bool> {
    match s {
        "1" | "d" => Some(true),
        "0" => Some(false),
        _ => None,
    }
}

/// A B3 trace id: 32 hex digits, or 16 (a 64-bit id, left-padded with zeros as W3C ids are).
fn b3_trace_id(s: &str) -> Option<u128> {
    if s.len() != 16 && s.len() != 32 {
        return None;
    }
    hex(s.as_bytes(), false).filter(|&id| id != 0)
}

fn b3_span_id(s: &str) -> Option<u64> {
    if s.len() != 16 {
        return None;
    }
    hex(s.as_bytes(), false)
        .and_then(|id| u64::try_from(id).ok())
        .filter(|&id| id != 0)
}

/// `x-amzn-trace-id: Root=1-{8 hex epoch}-{24 hex};Parent={16 hex};Sampled={0|1|?}`. The W3C trace
/// id is the Root's two hex parts joined (as X-Ray's own OpenTelemetry propagator does).
fn xray(headers: &HeaderMap) -> Option<Incoming> {
    let v = std::str::from_utf8(single(headers, &XRAY)?).ok()?;
    let mut root = None;
    let mut parent = None;
    let mut sampled = None;
    for field in v.split(';') {
        let Some((key, value)) = field.trim().split_once('=') else {
            continue;
        };
        match key {
            "Root" => root = Some(xray_root(value)?),
            "Parent" => parent = Some(b3_span_id(value)?),
            "Sampled" => {
                sampled = match value {
                    "1" => Some(true),
                    "0" => Some(false),
                    _ => None,
                }
            }
            _ => {}
        }
    }
    Some(Incoming {
        trace_id: Some(root?),
        parent,
        sampled,
        flags: 0,
        source: Source::XRay,
    })
}

fn xray_root(v: &str) -> Option<u128> {
    let b = v.as_bytes();
    if b.len() != 35 || &b[0..2] != b"1-" || b[10] != b'-' {
        return None;
    }
    let epoch = hex(&b[2..10], false)?;
    let random = hex(&b[11..35], false)?;
    Some((epoch << 96) | random).filter(|&id| id != 0)
}

/// Up to 32 hex digits as a number; `lower_only` refuses A-F (W3C requires lowercase).
fn hex(digits: &[u8], lower_only: bool) -> Option<u128> {
    if digits.is_empty() || digits.len() > 32 {
        return None;
    }
    let mut n: u128 = 0;
    for &d in digits {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' if !lower_only => d - b'A' + 10,
            _ => return None,
        };
        n = (n << 4) | u128::from(v);
    }
    Some(n)
}

/// `00-{trace id}-{span id}-{flags}`, written without a format string.
pub fn traceparent_value(trace_id: u128, span_id: u64, flags: u8) -> HeaderValue {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 55];
    out[0] = b'0';
    out[1] = b'0';
    out[2] = b'-';
    for i in 0..32 {
        out[3 + i] = DIGITS[((trace_id >> (124 - 4 * i)) & 0xf) as usize];
    }
    out[35] = b'-';
    for i in 0..16 {
        out[36 + i] = DIGITS[((span_id >> (60 - 4 * i)) & 0xf) as usize];
    }
    out[52] = b'-';
    out[53] = DIGITS[usize::from(flags >> 4)];
    out[54] = DIGITS[usize::from(flags & 0xf)];
    let mut v =
        HeaderValue::from_bytes(&out).unwrap_or_else(|_| unreachable!("hex digits and dashes"));
    // A new span id on every hop: never indexed by HTTP/2's header compression, where it would
    // only push out values that repeat (see `cluster::h2_client`).
    v.set_sensitive(true);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap_or_else(|_| panic!("{k}")),
                HeaderValue::from_str(v).unwrap_or_else(|_| panic!("{v}")),
            );
        }
        h
    }

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_is_parsed() {
        let got = extract(&headers(&[("traceparent", TP)]));
        assert_eq!(
            got,
            Some(Incoming {
                trace_id: Some(0x4bf92f3577b34da6a3ce929d0e0e4736),
                parent: Some(0x00f067aa0ba902b7),
                sampled: Some(true),
                flags: 1,
                source: Source::TraceContext,
            })
        );
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let got = extract(&headers(&[("traceparent", unsampled)]));
        assert_eq!(got.and_then(|i| i.sampled), Some(false));
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // uppercase
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero span id
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // version ff
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", // 00 is 55 bytes
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
        ] {
            assert_eq!(parse_traceparent(bad.as_bytes()), None, "{bad:?}");
            assert_eq!(extract(&headers(&[("traceparent", bad)])), None, "{bad:?}");
        }
        // Two traceparent headers: neither is trusted.
        assert_eq!(
            extract(&headers(&[("traceparent", TP), ("traceparent", TP)])),
            None
        );
    }

    #[test]
    fn future_versions_may_append_fields() {
        let v = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever";
        assert_eq!(
            parse_traceparent(v.as_bytes()),
            Some((0x4bf92f3577b34da6a3ce929d0e0e4736, 0x00f067aa0ba902b7, 1))
        );
        let glued = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x";
        assert_eq!(parse_traceparent(glued.as_bytes()), None);
    }

    #[test]
    fn a_malformed_traceparent_falls_back_to_b3() {
        let got = extract(&headers(&[
            ("traceparent", "garbage"),
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-sampled", "1"),
        ]));
        assert_eq!(
            got,
            Some(Incoming {
                trace_id: Some(0x80f198ee56343ba864fe8b2a57d3eff7),
                parent: Some(0xe457b5a2e4d86bd1),
                sampled: Some(true),
                flags: 0,
                source: Source::B3,
            })
        );
    }

    #[test]
    fn b3_single_header_forms() {
        let full = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90";
        let got = extract(&headers(&[("b3", full)])).unwrap_or_else(|| panic!("parsed"));
        assert_eq!(got.trace_id, Some(0x80f198ee56343ba864fe8b2a57d3eff7));
        assert_eq!(got.parent, Some(0xe457b5a2e4d86bd1));
        assert_eq!(got.sampled, Some(true));

        // 64-bit trace id, no sampling state: the decision is this hop's.
        let short = extract(&headers(&[("b3", "64fe8b2a57d3eff7-e457b5a2e4d86bd1")]))
            .unwrap_or_else(|| panic!("parsed"));
        assert_eq!(short.trace_id, Some(0x64fe8b2a57d3eff7));
        assert_eq!(short.sampled, None);

        assert_eq!(
            extract(&headers(&[("b3", "0")])),
            Some(sampling_only(false))
        );
        assert_eq!(extract(&headers(&[("b3", "d")])), Some(sampling_only(true)));
        for bad in [
            "80f198ee56343ba864fe8b2a57d3eff7",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-x",
            "80f198ee56343ba8-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90-more",
            "80f198ee5634-e457b5a2e4d86bd1",
            "2",
        ] {
            assert_eq!(extract(&headers(&[("b3", bad)])), None, "{bad:?}");
        }
    }

    #[test]
    fn b3_multi_needs_both_ids() {
        assert_eq!(
            extract(&headers(&[(
                "x-b3-traceid",
                "80f198ee56343ba864fe8b2a57d3eff7"
            )])),
            None
        );
        let debug = extract(&headers(&[
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-sampled", "0"),
            ("x-b3-flags", "1"),
        ]));
        assert_eq!(debug.and_then(|i| i.sampled), Some(true));
        assert_eq!(
            extract(&headers(&[("x-b3-sampled", "0")])),
            Some(sampling_only(false))
        );
    }

    #[test]
    fn xray_root_becomes_a_w3c_trace_id() {
        let v = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
        let got = extract(&headers(&[("x-amzn-trace-id", v)]));
        assert_eq!(
            got,
            Some(Incoming {
                trace_id: Some(0x5759e988bd862e3fe1be46a994272793),
                parent: Some(0x53995c3f42cd8ad8),
                sampled: Some(true),
                flags: 0,
                source: Source::XRay,
            })
        );
        // An ALB adds a Root only: a trace id without a parent, decision left to this hop.
        let alb = extract(&headers(&[(
            "x-amzn-trace-id",
            "Self=1-67891234-12456789abcdef012345678;Root=1-67891233-abcdef012345678912345678",
        )]))
        .unwrap_or_else(|| panic!("parsed"));
        assert_eq!(alb.trace_id, Some(0x67891233abcdef012345678912345678));
        assert_eq!((alb.parent, alb.sampled), (None, None));
        for bad in [
            "Parent=53995c3f42cd8ad8;Sampled=1",
            "Root=2-5759e988-bd862e3fe1be46a994272793",
            "Root=1-5759e988-bd862e3fe1be46a99427279",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=xyz",
        ] {
            assert_eq!(
                extract(&headers(&[("x-amzn-trace-id", bad)])),
                None,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn traceparent_wins_over_the_others() {
        let got = extract(&headers(&[
            (
                "x-amzn-trace-id",
                "Root=1-5759e988-bd862e3fe1be46a994272793",
            ),
            ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
            ("traceparent", TP),
        ]));
        assert_eq!(got.map(|i| i.source), Some(Source::TraceContext));
    }

    #[test]
    fn traceparent_value_round_trips() {
        let v = traceparent_value(0x4bf92f3577b34da6a3ce929d0e0e4736, 0x00f067aa0ba902b7, 1);
        assert_eq!(v.to_str().ok(), Some(TP));
        assert_eq!(
            parse_traceparent(v.as_bytes()),
            Some((0x4bf92f3577b34da6a3ce929d0e0e4736, 0x00f067aa0ba902b7, 1))
        );
    }
}
