//! Reading a request head for Ferry's own HTTP/1.1 server. Only the common request is taken:
//! a complete, well-formed HTTP/1.0 or 1.1 head in origin form with no body, no upgrade and no
//! `Expect`. Everything else (a body, an upgrade, CONNECT, the HTTP/2 preface, a malformed or
//! oversized head) is left in the buffer for hyper's server, which then serves the rest of the
//! connection: its answers to those cases (400, 431, 100-continue, ...) stay exactly as they were.
//!
//! Header values are views into one shared buffer of the head, so parsing copies no value.
use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};

use crate::http::body::ClientBody;
use crate::http::{FieldSpans, Span, field_spans};

/// Header fields parsed on the stack. A head with more goes to hyper, which applies the
/// listener's `maxRequestHeaders` itself.
const MAX_FIELDS: usize = 128;

/// Fields the handler may add to a request on its way upstream.
const FIELDS_ADDED: usize = 6;

/// What the response needs to know of its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestMeta {
    pub version: Version,
    /// HEAD: the response has no body, whatever its headers say.
    pub head: bool,
    /// Whether the client asked for the connection to stay open (RFC 9112 §9.3).
    pub keep_alive: bool,
}

// Returned once per request and taken apart at once: a box would cost an allocation per request
// to save copying a few hundred bytes on the rare other variants.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Head {
    /// A bodiless request this server handles; its bytes are taken off the buffer.
    Ready(Request<ClientBody>, RequestMeta),
    /// Not complete yet: read more.
    Partial,
    /// A request only hyper's server handles. Nothing was taken off the buffer.
    Hyper,
}

/// The bounds hyper's server would apply, so that a head over them goes to hyper and gets its
/// answer (431).
#[derive(Clone, Copy, Debug)]
pub struct HeadLimits {
    pub max_bytes: usize,
    pub max_headers: usize,
}

/// Puts a head taken off the buffer back in front of it (a rare path: a copy is fine).
fn give_back(buf: &mut BytesMut, head: &[u8]) {
    let mut whole = BytesMut::with_capacity(head.len() + buf.len());
    whole.extend_from_slice(head);
    whole.extend_from_slice(buf);
    *buf = whole;
}

/// Parses the request head at the start of `buf`.
pub fn parse(buf: &mut BytesMut, limits: HeadLimits) -> Head {
    // A head longer than the buffer limit may be parsed here before hyper would refuse it, so
    // the limit is checked on the buffer first.
    if buf.starts_with(b"PRI ") {
        return Head::Hyper;
    }
    let mut spans = FieldSpans::new();
    let (len, method, path, minor) = {
        let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
        let mut req = httparse::Request::new(&mut []);
        let len = match req.parse_with_uninit_headers(buf, &mut headers) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() < limits.max_bytes => return Head::Partial,
            // Too long, too many fields, or malformed: hyper answers it.
            _ => return Head::Hyper,
        };
        let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
            return Head::Hyper;
        };
        spans.extend(field_spans(buf, req.headers));
        (
            len,
            Span::of(buf, method.as_bytes()),
            Span::of(buf, path.as_bytes()),
            minor,
        )
    };
    if len > limits.max_bytes || spans.len() > limits.max_headers {
        return Head::Hyper;
    }
    let bytes = &buf[..len];
    let Ok(method) = Method::from_bytes(&bytes[method.range()]) else {
        return Head::Hyper;
    };
    // Origin form only: CONNECT's authority form, OPTIONS' `*` and a proxy's absolute form go
    // to hyper.
    if method == Method::CONNECT || bytes.get(path.range().start) != Some(&b'/') {
        return Head::Hyper;
    }
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let mut close = false;
    let mut keep_alive_token = false;
    for &(name, value) in &spans {
        let (name, value) = (&bytes[name.range()], &bytes[value.range()]);
        if name.eq_ignore_ascii_case(CONTENT_LENGTH.as_str().as_bytes()) {
            // Only an explicit empty body; any length, valid or not, is hyper's to read.
            if value != b"0" {
                return Head::Hyper;
            }
        } else if name.eq_ignore_ascii_case(TRANSFER_ENCODING.as_str().as_bytes())
            || name.eq_ignore_ascii_case(EXPECT.as_str().as_bytes())
            || name.eq_ignore_ascii_case(UPGRADE.as_str().as_bytes())
        {
            return Head::Hyper;
        } else if name.eq_ignore_ascii_case(CONNECTION.as_str().as_bytes()) {
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive_token = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return Head::Hyper;
                }
            }
        }
    }

    let head = buf.split_to(len).freeze();
    let Ok(uri) = Uri::from_maybe_shared(head.slice(path.range())) else {
        // hyper answers an invalid target 400: the bytes go back for it.
        give_back(buf, &head);
        return Head::Hyper;
    };
    // Room for the fields the handler adds (x-forwarded-for, x-forwarded-proto, x-request-id,
    // host, traceparent): growing a header map rehashes it, which cost ~2,000 instructions per
    // request when the map was sized to the client's fields alone (callgrind).
    let mut headers = HeaderMap::with_capacity(spans.len() + FIELDS_ADDED);
    for &(name, value) in &spans {
        let name = HeaderName::from_bytes(&head[name.range()]);
        let value = HeaderValue::from_maybe_shared(head.slice(value.range()));
        match (name, value) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => {
                give_back(buf, &head);
                return Head::Hyper;
            }
        }
    }
    let meta = RequestMeta {
        version,
        head: method == Method::HEAD,
        keep_alive: match version {
            Version::HTTP_10 => keep_alive_token && !close,
            _ => !close,
        },
    };
    let mut req = Request::new(ClientBody::Empty);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    *req.headers_mut() = headers;
    Head::Ready(req, meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_bytes: 8192,
        max_headers: 100,
    };

    fn parse_str(s: &str) -> (Head, BytesMut) {
        let mut buf = BytesMut::from(s);
        let head = parse(&mut buf, LIMITS);
        (head, buf)
    }

    #[test]
    fn takes_a_bodiless_request_and_leaves_the_next() {
        let (head, rest) = parse_str(
            "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Two: 1\r\nx-two: 2\r\n\r\nGET /next HTTP/1.1\r\n",
        );
        let Head::Ready(req, meta) = head else {
            panic!("{head:?}")
        };
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri().path_and_query().unwrap().as_str(), "/a?b=1");
        assert_eq!(req.version(), Version::HTTP_11);
        assert_eq!(req.headers()["host"], "x");
        assert_eq!(req.headers().get_all("x-two").iter().count(), 2);
        assert!(meta.keep_alive && !meta.head);
        assert_eq!(&rest[..], b"GET /next HTTP/1.1\r\n");
    }

    #[test]
    fn a_split_head_waits_for_more_and_takes_nothing() {
        let (head, rest) = parse_str("GET / HTTP/1.1\r\nHost: x\r\n");
        assert!(matches!(head, Head::Partial));
        assert_eq!(rest.len(), 25);
    }

    #[test]
    fn keep_alive_follows_version_and_connection() {
        let meta = |s: &str| match parse_str(s).0 {
            Head::Ready(_, m) => m,
            other => panic!("{other:?}"),
        };
        assert!(!meta("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!meta("GET / HTTP/1.1\r\nConnection: foo, Close\r\n\r\n").keep_alive);
        assert!(!meta("GET / HTTP/1.0\r\n\r\n").keep_alive);
        let ten = meta("HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(ten.keep_alive && ten.head && ten.version == Version::HTTP_10);
        assert!(meta("DELETE /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n").keep_alive);
    }

    #[test]
    fn everything_else_goes_to_hyper_untouched() {
        for s in [
            "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 00\r\n\r\n",
            "PUT / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
            "CONNECT example.com:443 HTTP/1.1\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\n\r\n",
            "GET http://example.com/ HTTP/1.1\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
            "GET /a\x7f HTTP/1.1\r\n\r\n",
        ] {
            let (head, rest) = parse_str(s);
            assert!(matches!(head, Head::Hyper), "{s:?}: {head:?}");
            assert_eq!(
                &rest[..],
                s.as_bytes(),
                "{s:?}: the bytes must stay for hyper"
            );
        }
    }

    #[test]
    fn heads_over_the_limits_go_to_hyper() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
        assert!(matches!(parse_str(&big).0, Head::Hyper));
        // Still incomplete but already over the limit: hyper answers 431 without waiting.
        let partial = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(9000));
        assert!(matches!(parse_str(&partial).0, Head::Hyper));
        let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
        assert!(matches!(
            parse_str(&format!("GET / HTTP/1.1\r\n{many}\r\n")).0,
            Head::Hyper
        ));
        let fine: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
        assert!(matches!(
            parse_str(&format!("GET / HTTP/1.1\r\n{fine}\r\n")).0,
            Head::Ready(..)
        ));
    }
}
