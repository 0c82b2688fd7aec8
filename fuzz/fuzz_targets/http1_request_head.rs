//! The request-head reader of Ferry's own HTTP/1.1 server (proxy/src/http/h1_server/request.rs)
//! on hostile client bytes. It takes only a complete, bodiless request and leaves everything
//! else, untouched, to hyper's server. Checked here:
//! - it never panics;
//! - what it does not take stays in the buffer byte for byte (hyper must see what came);
//! - what it takes is one whole head, and a bodiless one by an independent reading of its lines:
//!   no Transfer-Encoding, no Content-Length but `0`, no Upgrade or Expect, not CONNECT. Taking
//!   a request whose body it did not read would make that body the connection's next request
//!   (request smuggling);
//! - its verdict does not depend on how the bytes were split into reads (a client controls the
//!   splits): a prefix of a head it takes is only ever "read more".
#![no_main]
use bytes::BytesMut;
use ferry_proxy::http::{HeadLimits, RequestHead, parse_request_head};
use libfuzzer_sys::fuzz_target;

const LIMITS: HeadLimits = HeadLimits {
    max_bytes: 8192,
    max_headers: 100,
};

#[derive(Debug, PartialEq)]
enum Verdict {
    /// Taken: the head's length, and the request as the handler sees it.
    Taken(usize, String),
    Partial,
    Hyper,
}

fn read(bytes: &[u8]) -> Verdict {
    let mut buf = BytesMut::from(bytes);
    match parse_request_head(&mut buf, LIMITS) {
        RequestHead::Ready(req, meta) => {
            let taken = bytes.len() - buf.len();
            assert_eq!(
                &buf[..],
                &bytes[taken..],
                "the bytes after the head changed"
            );
            check_bodiless(&bytes[..taken]);
            assert_eq!(meta.head, req.method() == http::Method::HEAD);
            Verdict::Taken(taken, format!("{req:?} {meta:?}"))
        }
        RequestHead::Partial => {
            assert_eq!(&buf[..], bytes, "a partial head was consumed");
            Verdict::Partial
        }
        RequestHead::Hyper => {
            assert_eq!(&buf[..], bytes, "bytes left for hyper were changed");
            Verdict::Hyper
        }
    }
}

/// An independent reading of a head the reader took: lines end in LF (CR before it optional,
/// as httparse allows), empty lines may come before the request line, the head ends with an
/// empty line, and no field announces a body.
fn check_bodiless(head: &[u8]) {
    let text = head
        .strip_suffix(b"\n")
        .expect("a head ends with a line end");
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    let mut lines = text
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    // Empty lines before the request line are skipped (RFC 9112 §2.2), as httparse does.
    let request_line = lines.find(|l| !l.is_empty()).expect("a request line");
    assert!(
        !request_line.starts_with(b"CONNECT "),
        "took CONNECT: {request_line:?}"
    );
    let mut ended = false;
    for line in lines {
        assert!(!ended, "took more than one head");
        if line.is_empty() {
            ended = true;
            continue;
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .expect("a field has a colon");
        let name = line[..colon].to_ascii_lowercase();
        let value = line[colon + 1..].trim_ascii();
        match &name[..] {
            b"transfer-encoding" | b"upgrade" | b"expect" => {
                panic!("took a request with {}", String::from_utf8_lossy(&name))
            }
            b"content-length" => assert_eq!(value, b"0", "took a request with a body"),
            _ => {}
        }
    }
    assert!(ended, "took a head without its empty line");
}

fuzz_target!(|data: &[u8]| {
    let whole = read(data);
    if let Verdict::Taken(len, _) = &whole {
        // Every prefix of the head is "read more"; and with anything after it, the same head.
        for cut in [0, 1, len / 2, len.saturating_sub(1)] {
            if cut < *len {
                assert_eq!(
                    read(&data[..cut]),
                    Verdict::Partial,
                    "the first {cut} bytes"
                );
            }
        }
        assert_eq!(read(&data[..*len]), whole, "the head alone");
    }
});
