//! Writing a response head for Ferry's own HTTP/1.1 server, with the framing and connection
//! rules of hyper's server (RFC 9112 §6 and §9), so that a client cannot tell the two apart:
//! - HEAD, 204 and 304 responses carry no body; 204 and 304 carry no `Content-Length`;
//! - a body of known length gets `Content-Length`, an empty one `content-length: 0`, one of
//!   unknown length is chunked to an HTTP/1.1 client and delimited by close to an HTTP/1.0 one;
//! - `Trailer` is sent only with a chunked body, and names the trailer fields that may follow;
//! - an HTTP/1.0 client that asked for keep-alive is told `connection: keep-alive`; an HTTP/1.1
//!   client whose connection closes after this response is told `connection: close`;
//! - `Date` is added when the response has none.
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRAILER, TRANSFER_ENCODING};
use http::{HeaderName, StatusCode, Version};

use super::date;
use super::request::RequestMeta;

/// What is known of the body before it is sent (from `http_body::Body`'s hints).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyLen {
    /// The body is already at its end.
    Empty,
    Known(u64),
    Unknown,
}

/// How the body is written after the head.
#[derive(Debug, PartialEq, Eq)]
pub enum Framing {
    /// Nothing: a HEAD, 204 or 304 response, or an empty body.
    Empty,
    Length(u64),
    /// Chunked, with the trailer fields the `Trailer` header announced (others are dropped).
    Chunked(Vec<HeaderName>),
    /// Written until the connection closes (an HTTP/1.0 client and a body of unknown length).
    UntilClose,
}

#[derive(Debug)]
pub struct Encoded {
    pub framing: Framing,
    /// Whether the connection may carry another request after this response.
    pub keep_alive: bool,
}

/// Appends the head of `head` to `out`. `keep_alive`: whether the server would keep the
/// connection open (the client asked for it and the listener is not draining).
pub fn encode(
    head: &http::response::Parts,
    req: RequestMeta,
    body: BodyLen,
    mut keep_alive: bool,
    out: &mut Vec<u8>,
) -> Encoded {
    let status = head.status;
    if status.is_informational() {
        // A 1xx cannot be the final response; hyper's server answers 500 and closes too.
        out.extend_from_slice(
            b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n",
        );
        date::append(out);
        out.extend_from_slice(b"\r\n");
        return Encoded {
            framing: Framing::Empty,
            keep_alive: false,
        };
    }
    let no_length = matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED);
    let can_body = !req.head && !no_length;
    let http10 = req.version == Version::HTTP_10;

    // The status line.
    if !http10 && status == StatusCode::OK && head.extensions.is_empty() {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        let reason = head.extensions.get::<hyper::ext::ReasonPhrase>();
        match reason {
            Some(r) => out.extend_from_slice(r.as_bytes()),
            None => out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes()),
        }
        out.extend_from_slice(b"\r\n");
    }

    // Fields written as they are, and what the special ones say.
    let mut content_length: Option<u64> = None;
    let mut content_length_value = None;
    let mut transfer_encoding = false;
    let mut response_keep_alive = false;
    let mut response_close = false;
    let mut has_date = false;
    for (name, value) in &head.headers {
        match *name {
            CONTENT_LENGTH => {
                if content_length_value.is_none() {
                    content_length_value = Some(value);
                    content_length = std::str::from_utf8(value.as_bytes())
                        .ok()
                        .and_then(|v| v.trim().parse().ok());
                }
            }
            TRANSFER_ENCODING => transfer_encoding = true,
            CONNECTION => {
                for token in value.as_bytes().split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    response_close |= token.eq_ignore_ascii_case(b"close");
                    response_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            TRAILER => {}
            _ => {
                has_date |= *name == DATE;
                write_field(out, name.as_str().as_bytes(), value.as_bytes());
            }
        }
    }
    keep_alive &= !response_close;

    // The body's framing.
    let framing = match body {
        _ if !can_body && !req.head => Framing::Empty,
        BodyLen::Known(n) if !req.head => {
            write_length(out, n);
            if n == 0 {
                Framing::Empty
            } else {
                Framing::Length(n)
            }
        }
        BodyLen::Unknown if !req.head => match content_length {
            Some(n) if !transfer_encoding => {
                write_length(out, n);
                if n == 0 {
                    Framing::Empty
                } else {
                    Framing::Length(n)
                }
            }
            _ if http10 => {
                keep_alive = false;
                Framing::UntilClose
            }
            _ => {
                out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                Framing::Chunked(trailer_fields(head, out))
            }
        },
        BodyLen::Empty if !req.head => {
            write_length(out, 0);
            Framing::Empty
        }
        // HEAD: the length a GET would have had, as the handler's response said it.
        _ => {
            if let Some(v) = content_length_value {
                write_field(out, b"content-length", v.as_bytes());
            } else if let BodyLen::Known(n) = body
                && n > 0
            {
                write_length(out, n);
            }
            Framing::Empty
        }
    };

    // Connection: the response's own tokens, and what this hop adds.
    let added: &[u8] = if http10 && keep_alive && !response_keep_alive {
        b"keep-alive"
    } else if !http10 && !keep_alive && !response_close {
        b"close"
    } else {
        b""
    };
    let mut first = true;
    for value in head.headers.get_all(CONNECTION) {
        out.extend_from_slice(if first { b"connection: " } else { b", " });
        out.extend_from_slice(value.as_bytes());
        first = false;
    }
    if !added.is_empty() {
        out.extend_from_slice(if first { b"connection: " } else { b", " });
        out.extend_from_slice(added);
        first = false;
    }
    if !first {
        out.extend_from_slice(b"\r\n");
    }
    if !has_date {
        date::append(out);
    }
    out.extend_from_slice(b"\r\n");
    Encoded {
        framing,
        keep_alive,
    }
}

fn write_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn write_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Writes the `Trailer` fields of a chunked response and returns the names they announce.
fn trailer_fields(head: &http::response::Parts, out: &mut Vec<u8>) -> Vec<HeaderName> {
    let mut names = Vec::new();
    for value in head.headers.get_all(TRAILER) {
        write_field(out, b"trailer", value.as_bytes());
        if let Ok(text) = value.to_str() {
            names.extend(
                text.split(',')
                    .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok()),
            );
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use http::{HeaderValue, Response};

    use super::*;

    const GET11: RequestMeta = RequestMeta {
        version: Version::HTTP_11,
        head: false,
        keep_alive: true,
    };

    fn encode_with(
        status: u16,
        headers: &[(&str, &str)],
        req: RequestMeta,
        body: BodyLen,
        keep_alive: bool,
    ) -> (String, Encoded) {
        let mut resp = Response::new(());
        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
        for (n, v) in headers {
            resp.headers_mut().append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let (parts, ()) = resp.into_parts();
        let mut out = Vec::new();
        let enc = encode(&parts, req, body, keep_alive, &mut out);
        let text = String::from_utf8(out).unwrap().replace("\r\n", "\n");
        assert_eq!(text.matches("date: ").count(), 1, "{text}");
        // The date is the only part that varies.
        let text = text
            .lines()
            .filter(|l| !l.starts_with("date: "))
            .collect::<Vec<_>>()
            .join("\n");
        (text, enc)
    }

    #[test]
    fn a_sized_response() {
        let (text, enc) = encode_with(
            200,
            &[("server", "up"), ("date", "Sat, 05 Dec 2026 10:00:00 GMT")],
            GET11,
            BodyLen::Known(5),
            true,
        );
        // The response's own date is kept, not doubled.
        assert_eq!(text, "HTTP/1.1 200 OK\nserver: up\ncontent-length: 5\n");
        assert_eq!(enc.framing, Framing::Length(5));
        assert!(enc.keep_alive);
    }

    #[test]
    fn date_is_added_once() {
        let mut out = Vec::new();
        let (parts, ()) = Response::new(()).into_parts();
        encode(&parts, GET11, BodyLen::Empty, true, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("date: ").count(), 1, "{text}");
        assert!(text.contains("content-length: 0\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn unknown_length_is_chunked_with_announced_trailers() {
        let (text, enc) = encode_with(
            404,
            &[("trailer", "x-checksum, grpc-status")],
            GET11,
            BodyLen::Unknown,
            true,
        );
        assert_eq!(
            text,
            "HTTP/1.1 404 Not Found\ntransfer-encoding: chunked\ntrailer: x-checksum, grpc-status\n"
        );
        let names = ["x-checksum", "grpc-status"].map(HeaderName::from_static);
        assert_eq!(enc.framing, Framing::Chunked(names.to_vec()));
    }

    #[test]
    fn unknown_length_with_a_content_length_header_uses_it() {
        let (text, enc) = encode_with(
            200,
            &[("content-length", "7")],
            GET11,
            BodyLen::Unknown,
            true,
        );
        assert_eq!(text, "HTTP/1.1 200 OK\ncontent-length: 7\n");
        assert_eq!(enc.framing, Framing::Length(7));
    }

    #[test]
    fn http10_clients() {
        let ten = RequestMeta {
            version: Version::HTTP_10,
            head: false,
            keep_alive: true,
        };
        let (text, enc) = encode_with(200, &[], ten, BodyLen::Known(2), true);
        assert_eq!(
            text,
            "HTTP/1.0 200 OK\ncontent-length: 2\nconnection: keep-alive\n"
        );
        assert!(enc.keep_alive);
        // No chunked encoding in HTTP/1.0: the body ends with the connection.
        let (text, enc) = encode_with(200, &[], ten, BodyLen::Unknown, true);
        assert_eq!(text, "HTTP/1.0 200 OK\n");
        assert_eq!(enc.framing, Framing::UntilClose);
        assert!(!enc.keep_alive);
        let close = RequestMeta {
            keep_alive: false,
            ..ten
        };
        let (text, enc) = encode_with(200, &[], close, BodyLen::Known(2), false);
        assert_eq!(text, "HTTP/1.0 200 OK\ncontent-length: 2\n");
        assert!(!enc.keep_alive);
    }

    #[test]
    fn closing_is_announced_to_http11_clients() {
        let (text, enc) = encode_with(200, &[], GET11, BodyLen::Known(1), false);
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\ncontent-length: 1\nconnection: close\n"
        );
        assert!(!enc.keep_alive);
        // The response itself says close (the smuggling refusal does): once, and obeyed.
        let (text, enc) = encode_with(
            400,
            &[("connection", "close")],
            GET11,
            BodyLen::Known(1),
            true,
        );
        assert_eq!(
            text,
            "HTTP/1.1 400 Bad Request\ncontent-length: 1\nconnection: close\n"
        );
        assert!(!enc.keep_alive);
    }

    #[test]
    fn bodiless_statuses_and_head() {
        let (text, enc) = encode_with(204, &[], GET11, BodyLen::Empty, true);
        assert_eq!(text, "HTTP/1.1 204 No Content\n");
        assert_eq!(enc.framing, Framing::Empty);
        let (text, _) = encode_with(304, &[("etag", "\"a\"")], GET11, BodyLen::Unknown, true);
        assert_eq!(text, "HTTP/1.1 304 Not Modified\netag: \"a\"\n");
        let head = RequestMeta {
            head: true,
            ..GET11
        };
        // HEAD keeps the length a GET would get, and sends no body.
        let (text, enc) = encode_with(
            200,
            &[("content-length", "1234")],
            head,
            BodyLen::Empty,
            true,
        );
        assert_eq!(text, "HTTP/1.1 200 OK\ncontent-length: 1234\n");
        assert_eq!(enc.framing, Framing::Empty);
        let (text, enc) = encode_with(404, &[], head, BodyLen::Known(10), true);
        assert_eq!(text, "HTTP/1.1 404 Not Found\ncontent-length: 10\n");
        assert_eq!(enc.framing, Framing::Empty);
        let (text, _) = encode_with(200, &[], head, BodyLen::Unknown, true);
        assert_eq!(text, "HTTP/1.1 200 OK\n");
    }

    #[test]
    fn a_1xx_final_response_becomes_500_and_closes() {
        let (text, enc) = encode_with(103, &[], GET11, BodyLen::Empty, true);
        assert_eq!(
            text,
            "HTTP/1.1 500 Internal Server Error\ncontent-length: 0\nconnection: close\n"
        );
        assert!(!enc.keep_alive);
    }
}
