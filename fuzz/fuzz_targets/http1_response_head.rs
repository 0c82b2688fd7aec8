//! The direct HTTP/1.1 client's response-head parser (proxy/src/cluster/h1/head.rs) on hostile
//! upstream bytes. Checked here:
//! - it never panics;
//! - what it makes of a head (status, fields, body framing, whether the connection may be
//!   reused, how many bytes it took: 1xx heads before the final one included) does not depend
//!   on how the bytes were split into reads;
//! - the fields it passes on agree with the framing it chose: no Content-Length beside a
//!   Transfer-Encoding (the client would wait for bytes that never come), a Content-Length equal
//!   to the length it reads, and no Keep-Alive (it speaks of this connection only);
//! - a HEAD, 204 or 304 response has no body, whatever its fields say.
#![no_main]
use bytes::BytesMut;
use ferry_proxy::cluster::{Framing, parse_response};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{Method, StatusCode};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
enum Outcome {
    /// The final head, as a string, and the bytes it took.
    Head(String, usize),
    Unfinished,
    Refused,
}

/// Feeds `pieces` in turn, as reads would, until the final head is parsed or refused.
fn parse<'a>(pieces: impl IntoIterator<Item = &'a [u8]>, method: &Method) -> Outcome {
    let mut buf = BytesMut::new();
    let mut fed = 0;
    for piece in pieces {
        buf.extend_from_slice(piece);
        fed += piece.len();
        match parse_response(&mut buf, method) {
            Ok(Some(head)) => {
                check(&head, method);
                let repr = format!(
                    "{} {:?} {:?} {:?} {}",
                    head.status, head.version, head.headers, head.framing, head.keep_alive
                );
                return Outcome::Head(repr, fed - buf.len());
            }
            Ok(None) => {}
            Err(_) => return Outcome::Refused,
        }
    }
    Outcome::Unfinished
}

fn check(head: &ferry_proxy::cluster::ResponseHead, method: &Method) {
    let h = &head.headers;
    assert!(
        !head.status.is_informational(),
        "a 1xx head returned as final"
    );
    assert!(!h.contains_key("keep-alive"), "Keep-Alive passed on");
    if *method == Method::HEAD
        || head.status == StatusCode::NO_CONTENT
        || head.status == StatusCode::NOT_MODIFIED
    {
        assert_eq!(
            head.framing,
            Framing::Empty,
            "a body on {method} {}",
            head.status
        );
        return;
    }
    if h.contains_key(TRANSFER_ENCODING) {
        assert!(
            !h.contains_key(CONTENT_LENGTH),
            "Content-Length passed on beside Transfer-Encoding"
        );
        assert!(matches!(
            head.framing,
            Framing::Chunked | Framing::UntilClose
        ));
        if head.framing == Framing::UntilClose {
            assert!(
                !head.keep_alive,
                "a body read until close on a reused connection"
            );
        }
        return;
    }
    match head.framing {
        Framing::Length(n) => {
            for v in h.get_all(CONTENT_LENGTH) {
                let v = v.to_str().expect("a length is ASCII");
                for part in v.split(',') {
                    assert_eq!(
                        part.trim().parse::<u64>().ok(),
                        Some(n),
                        "{v:?} against {n}"
                    );
                }
            }
        }
        Framing::Empty => assert!(h.contains_key(CONTENT_LENGTH)),
        Framing::UntilClose => {
            assert!(!h.contains_key(CONTENT_LENGTH));
            assert!(
                !head.keep_alive,
                "a body read until close on a reused connection"
            );
        }
        Framing::Chunked => panic!("chunked without Transfer-Encoding"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, bytes)) = data.split_first() else {
        return;
    };
    let method = if seed & 0x80 != 0 {
        Method::HEAD
    } else {
        Method::GET
    };
    let whole = parse([bytes], &method);
    let size = usize::from(seed % 16) + 1;
    assert_eq!(
        parse(bytes.chunks(size), &method),
        whole,
        "pieces of {size}"
    );
    let cut = usize::from(seed & 0x7f).min(bytes.len());
    let (a, b) = bytes.split_at(cut);
    assert_eq!(parse([a, b], &method), whole, "split at {cut}");
});
