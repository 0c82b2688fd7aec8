//! HTTP/1.1 message heads for the direct upstream client: writing a request head, and parsing a
//! response head into its status, headers and framing (RFC 9112 §6.3).
//!
//! Header values are views into one shared buffer of the head, so parsing copies no value. The
//! limits are hyper's client defaults, so switching clients changes nothing a user can see.
use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};

use crate::http::{FieldSpans, field_spans};

/// `Keep-Alive` (parameters of a persistent connection), which `http` has no constant for.
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// Header fields accepted in one response head (hyper's default).
pub const MAX_HEADERS: usize = 100;
/// The largest response head accepted, in bytes (hyper's default read buffer limit).
pub const MAX_HEAD_BYTES: usize = 408 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("malformed response head: {0}")]
    Parse(#[from] httparse::Error),
    #[error("response head over {MAX_HEAD_BYTES} bytes")]
    TooLarge,
    #[error("response status {0} is out of range")]
    Status(u16),
    #[error("invalid header field in the response")]
    Header,
    #[error("Transfer-Encoding in an HTTP/1.0 response")]
    TransferEncodingInHttp10,
    #[error("invalid or conflicting Content-Length in the response")]
    ContentLength,
    #[error("101 Switching Protocols to a request that asked for no upgrade")]
    UnexpectedSwitch,
}

/// How the response body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body: a HEAD response, 204, 304, or `Content-Length: 0`.
    Empty,
    Length(u64),
    Chunked,
    /// Read until the upstream closes the connection (which therefore cannot be reused).
    UntilClose,
}

#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// Whether the connection may carry another request once this response has been read.
    pub keep_alive: bool,
}

/// Appends the head of a bodiless request to `out`. A POST, PUT or PATCH without a length says
/// `content-length: 0` (RFC 9110 §8.6), as hyper does, so the upstream does not wait for a body.
pub fn encode_request(method: &Method, target: &str, headers: &HeaderMap, out: &mut Vec<u8>) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let wants_length = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    if wants_length && !headers.contains_key(CONTENT_LENGTH) {
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Parses the response head at the start of `buf`, taking it (and any 1xx heads before it) off
/// the buffer. `Ok(None)`: the head is not complete yet; read more and call again.
pub fn parse_response(
    buf: &mut BytesMut,
    method: &Method,
) -> Result<Option<ResponseHead>, HeadError> {
    loop {
        let mut spans = FieldSpans::new();
        let (len, code, minor) = {
            // Uninitialised: zeroing 100 fields (3.2 KB) for every response cost more than
            // parsing a short head.
            let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut []);
            let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
                &mut resp,
                buf,
                &mut fields,
            )? {
                httparse::Status::Complete(len) => len,
                httparse::Status::Partial if buf.len() > MAX_HEAD_BYTES => {
                    return Err(HeadError::TooLarge);
                }
                httparse::Status::Partial => return Ok(None),
            };
            spans.extend(field_spans(buf, resp.headers));
            (
                len,
                resp.code.unwrap_or_default(),
                resp.version.unwrap_or(1),
            )
        };
        if len > MAX_HEAD_BYTES {
            return Err(HeadError::TooLarge);
        }
        let head: Bytes = buf.split_to(len).freeze();
        let status = StatusCode::from_u16(code).map_err(|_| HeadError::Status(code))?;
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(HeadError::UnexpectedSwitch);
        }
        if status.is_informational() {
            // 100 Continue and friends: the final response follows on the same connection.
            continue;
        }
        let mut headers = HeaderMap::with_capacity(spans.len());
        let mut persistence = Persistence::default();
        for &(name, value) in &spans {
            let name =
                HeaderName::from_bytes(&head[name.range()]).map_err(|_| HeadError::Header)?;
            let value = HeaderValue::from_maybe_shared(head.slice(value.range()))
                .map_err(|_| HeadError::Header)?;
            // Hop-by-hop fields that only speak of this connection are consumed here, so that
            // the proxy's own hop-by-hop pass finds nothing to remove in the usual response.
            if name == KEEP_ALIVE || (name == CONNECTION && persistence.read(&value)) {
                continue;
            }
            headers.append(name, value);
        }
        let version = if minor == 0 {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        let (framing, framing_allows_reuse) = framing(status, version, &headers, method)?;
        if !framing_allows_reuse {
            // Transfer-Encoding overrides Content-Length, which must not be forwarded with it
            // (RFC 9112 §6.3 item 3): the client would wait for bytes that never come.
            headers.remove(CONTENT_LENGTH);
        }
        let keep_alive = framing_allows_reuse
            && framing != Framing::UntilClose
            && !persistence.close
            && (version == Version::HTTP_11 || persistence.keep_alive);
        return Ok(Some(ResponseHead {
            status,
            version,
            headers,
            framing,
            keep_alive,
        }));
    }
}

/// The body's framing, and whether it leaves the connection fit for another request (a response
/// with both Transfer-Encoding and Content-Length does not: RFC 9112 §6.3 item 3).
fn framing(
    status: StatusCode,
    version: Version,
    headers: &HeaderMap,
    method: &Method,
) -> Result<(Framing, bool), HeadError> {
    if *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((Framing::Empty, true));
    }
    let has_length = headers.contains_key(CONTENT_LENGTH);
    let mut codings = headers.get_all(TRANSFER_ENCODING).iter().peekable();
    if codings.peek().is_some() {
        if version == Version::HTTP_10 {
            return Err(HeadError::TransferEncodingInHttp10);
        }
        let last = codings
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|c| !c.is_empty());
        let chunked = last.is_some_and(|c| c.eq_ignore_ascii_case("chunked"));
        let framing = if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        };
        return Ok((framing, !has_length));
    }
    if !has_length {
        return Ok((Framing::UntilClose, true));
    }
    // Every value, and every element of a list value, must be the same number.
    let mut length: Option<u64> = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        let text = value.to_str().map_err(|_| HeadError::ContentLength)?;
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HeadError::ContentLength);
            }
            let n: u64 = part.parse().map_err(|_| HeadError::ContentLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::ContentLength);
            }
            length = Some(n);
        }
    }
    match length {
        Some(0) => Ok((Framing::Empty, true)),
        Some(n) => Ok((Framing::Length(n), true)),
        None => Err(HeadError::ContentLength),
    }
}

/// What the Connection fields say about reusing the connection.
#[derive(Default)]
struct Persistence {
    close: bool,
    keep_alive: bool,
}

impl Persistence {
    /// Reads one Connection field; true when it holds nothing but `close` and `keep-alive` (it
    /// may then be dropped: it names no other header that the hop-by-hop pass must remove).
    fn read(&mut self, value: &HeaderValue) -> bool {
        let Ok(text) = value.to_str() else {
            return false;
        };
        let mut only_persistence = true;
        for token in text.split(',').map(str::trim) {
            if token.eq_ignore_ascii_case("close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case("keep-alive") {
                self.keep_alive = true;
            } else if !token.is_empty() {
                only_persistence = false;
            }
        }
        only_persistence
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str, method: Method) -> Result<Option<ResponseHead>, HeadError> {
        let mut buf = BytesMut::from(raw.as_bytes());
        parse_response(&mut buf, &method)
    }

    fn head(raw: &str) -> ResponseHead {
        match parse(raw, Method::GET) {
            Ok(Some(h)) => h,
            other => panic!("{raw:?} did not parse: {other:?}"),
        }
    }

    #[test]
    fn request_head_is_written_in_header_order_with_a_length_for_bodiless_posts() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("svc"));
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        let mut out = Vec::new();
        encode_request(&Method::GET, "/p?q=1", &headers, &mut out);
        assert_eq!(
            out,
            b"GET /p?q=1 HTTP/1.1\r\nhost: svc\r\nx-a: 1\r\nx-a: 2\r\n\r\n"
        );
        out.clear();
        encode_request(&Method::POST, "/", &headers, &mut out);
        assert!(out.ends_with(b"x-a: 2\r\ncontent-length: 0\r\n\r\n"));
    }

    #[test]
    fn head_is_taken_off_the_buffer_and_the_body_stays() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nServer: t\r\nContent-Length: 5\r\nX-Two: a\r\nX-Two: b\r\n\r\nhello"[..],
        );
        let h = parse_response(&mut buf, &Method::GET).unwrap().unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.framing, Framing::Length(5));
        assert!(h.keep_alive);
        assert_eq!(h.headers["server"], "t");
        let two: Vec<_> = h.headers.get_all("x-two").iter().collect();
        assert_eq!(two, ["a", "b"]);
        assert_eq!(&buf[..], b"hello");
    }

    #[test]
    fn partial_heads_wait_for_more() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Le"[..]);
        assert!(parse_response(&mut buf, &Method::GET).unwrap().is_none());
        buf.extend_from_slice(b"ngth: 0\r\n\r\n");
        let h = parse_response(&mut buf, &Method::GET).unwrap().unwrap();
        assert_eq!(h.framing, Framing::Empty);
        assert!(buf.is_empty());
    }

    #[test]
    fn informational_responses_are_skipped() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"[..]);
        let h = parse_response(&mut buf, &Method::GET).unwrap().unwrap();
        assert_eq!(h.status, 204);
        assert!(h.headers.is_empty());
    }

    #[test]
    fn framing_follows_rfc_9112() {
        assert_eq!(
            head("HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n").framing,
            Framing::Empty
        );
        assert_eq!(
            head("HTTP/1.1 304 Not Modified\r\n\r\n").framing,
            Framing::Empty
        );
        let h = parse("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", Method::HEAD);
        assert_eq!(h.unwrap().unwrap().framing, Framing::Empty);
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, true));
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::UntilClose, false));
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, false));
        assert!(
            !h.headers.contains_key("content-length"),
            "the overridden length is dropped"
        );
        let h = head("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::UntilClose, false));
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\nContent-Length: 7\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(7));
    }

    #[test]
    fn keep_alive_follows_version_and_connection_tokens() {
        assert!(
            !head("HTTP/1.1 200 OK\r\nConnection: foo, Close\r\nContent-Length: 0\r\n\r\n")
                .keep_alive
        );
        assert!(!head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
        let h = head(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(h.keep_alive);
        // Fields that only speak of this connection are consumed; one naming another header
        // stays for the hop-by-hop pass, which removes that header too.
        assert!(!h.headers.contains_key("connection") && !h.headers.contains_key("keep-alive"));
        let h = head(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, x-hop\r\nX-Hop: 1\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(h.headers["connection"], "keep-alive, x-hop");
    }

    #[test]
    fn bad_heads_are_errors() {
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
            "HTTP/1.1 20 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            "NOTHTTP 200\r\n\r\n",
        ] {
            assert!(parse(raw, Method::GET).is_err(), "{raw:?} was accepted");
        }
        let mut huge = String::from("HTTP/1.1 200 OK\r\n");
        while huge.len() <= MAX_HEAD_BYTES {
            huge.push_str("X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert!(matches!(
            parse(&huge, Method::GET),
            Err(HeadError::TooLarge) | Err(HeadError::Parse(_))
        ));
    }
}
