//! What the proxy learns from the framing of a client connection's bytes. Reads: the
//! request-smuggling defence for HTTP/1.x, where a request that carries both `Content-Length` and
//! `Transfer-Encoding` is answered 400 and never forwarded. Writes: HTTP/2 streams the proxy
//! refused (see `h2_refusals`).
//!
//! hyper reads such a request by its chunked framing and drops `Content-Length` (RFC 9112 §6.3
//! allows that), so by the time the request reaches the handler the conflict is invisible. This
//! module watches the bytes the client sends, before hyper parses them: it follows the message
//! framing (heads, `Content-Length` bodies, chunked bodies) with the same parser hyper uses
//! (httparse) and records which request on the connection was ambiguous. The handler counts the
//! requests it is given and refuses that one.
//!
//! The watch gives up (and flags nothing more) wherever hyper would refuse the bytes itself or the
//! stream stops being HTTP/1.x: an HTTP/2 preface (httparse refuses its version, so HTTP/2
//! connections cost one failed parse), a protocol upgrade or CONNECT, a head hyper cannot parse,
//! a malformed chunk. Giving up never loses a defence: hyper closes the connection
//! on every malformed case, and after an upgrade the bytes are no longer requests.
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};

use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::h2_refusals::RefusedStreams;

/// What the watch learned, shared with the handler of the connection's requests.
#[derive(Debug, Default)]
pub struct FramingVerdict {
    /// 1 + the index of the first ambiguous request; 0 while none was seen.
    ambiguous: AtomicU32,
    /// Requests handed to the handler so far.
    handled: AtomicU32,
}

impl FramingVerdict {
    /// Called once per HTTP/1.x request, in order: whether this request was ambiguously framed.
    pub fn next_request_is_ambiguous(&self) -> bool {
        let index = self.handled.fetch_add(1, Ordering::Relaxed);
        self.ambiguous.load(Ordering::Relaxed) == index.saturating_add(1)
    }

    fn flag(&self, index: u32) {
        let _ = self.ambiguous.compare_exchange(
            0,
            index.saturating_add(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
}

/// The longest head the watch buffers across reads; hyper refuses longer heads itself.
const MAX_HEAD: usize = 64 * 1024;
/// Headers parsed on the stack; a head with more makes the watch give up (hyper's own limit,
/// `maxRequestHeaders`, refuses it unless raised past this).
const MAX_HEADERS: usize = 128;

#[derive(Debug)]
enum State {
    /// Reading a request head; the bytes of a head split across reads are kept.
    Head(Vec<u8>),
    /// Skipping this many bytes of a `Content-Length` body.
    Body(u64),
    Chunked(Chunk),
    /// Not HTTP/1.x (any more), or past what the watch can follow: nothing is flagged.
    Off,
}

/// Where in a chunked body the watch is (RFC 9112 §7.1), with hyper's tolerances.
#[derive(Debug, Clone, Copy)]
enum Chunk {
    /// Hex digits of the size; `digits` counts them (hyper refuses more than 16).
    Size {
        value: u64,
        digits: u8,
    },
    /// Spaces or tabs after the size.
    SizeSpace {
        value: u64,
    },
    /// A chunk extension, up to CR.
    Extension {
        value: u64,
    },
    /// The LF ending the size line.
    SizeLf {
        value: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk: CR of the empty line, or the start of a trailer field.
    EndCr,
    EndLf,
    Trailer,
    TrailerLf,
}

/// Follows the framing of the bytes a client sends.
#[derive(Debug)]
struct Watch {
    state: State,
    /// The index of the request whose head is read next.
    request: u32,
    /// The client sent the HTTP/2 preface: hyper serves the connection as HTTP/2.
    http2: bool,
}

impl Watch {
    fn new() -> Watch {
        Watch {
            state: State::Head(Vec::new()),
            request: 0,
            http2: false,
        }
    }

    fn feed(&mut self, mut data: &[u8], verdict: &FramingVerdict) {
        while !data.is_empty() {
            match &mut self.state {
                State::Off => return,
                State::Body(left) => {
                    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(data.len());
                    *left -= n as u64;
                    data = &data[n..];
                    if *left == 0 {
                        self.state = State::Head(Vec::new());
                    }
                }
                State::Chunked(chunk) => {
                    let (used, next) = step_chunked(*chunk, data);
                    data = &data[used..];
                    self.state = next;
                }
                State::Head(buf) => {
                    let used = if buf.is_empty() {
                        // The usual case: the head is whole in this read, parsed in place.
                        let (used, next) = self.head(data, verdict);
                        if let Some(next) = next {
                            self.state = next;
                        } else {
                            self.keep_partial(data.to_vec());
                        }
                        used.min(data.len())
                    } else {
                        let before = buf.len();
                        buf.extend_from_slice(data);
                        let joined = std::mem::take(buf);
                        let (used, next) = self.head(&joined, verdict);
                        match next {
                            Some(next) => {
                                self.state = next;
                                used.saturating_sub(before).min(data.len())
                            }
                            None => {
                                self.keep_partial(joined);
                                data.len()
                            }
                        }
                    };
                    data = &data[used..];
                }
            }
        }
    }

    /// A head not yet complete: kept for the next read, or the watch gives up on a head longer
    /// than hyper accepts.
    fn keep_partial(&mut self, bytes: Vec<u8>) {
        self.state = if bytes.len() > MAX_HEAD {
            State::Off
        } else {
            State::Head(bytes)
        };
    }

    /// Parses a head at the start of `bytes`: the bytes it used and the state after it, or `None`
    /// when the head is not complete yet.
    fn head(&mut self, bytes: &[u8], verdict: &FramingVerdict) -> (usize, Option<State>) {
        // Uninitialised: zeroing 128 headers would cost more than parsing a small head.
        let mut headers =
            [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let used = match req.parse_with_uninit_headers(bytes, &mut headers) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return (bytes.len(), None),
            Err(_) => {
                // The HTTP/2 preface fails on its version; anything else hyper refuses too (400 or
                // 431) and closes the connection.
                self.http2 = self.request == 0 && bytes.starts_with(b"PRI * HTTP/2");
                return (bytes.len(), Some(State::Off));
            }
        };
        let index = self.request;
        self.request = self.request.saturating_add(1);
        let mut content_length: Option<u64> = None;
        let mut transfer_encoding = false;
        let mut chunked = false;
        let mut upgrade = req.method == Some("CONNECT");
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                transfer_encoding = true;
                chunked = ends_in_chunked(h.value);
            } else if h.name.eq_ignore_ascii_case("content-length") {
                match std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                {
                    Some(n) if content_length.is_none_or(|c| c == n) => content_length = Some(n),
                    // Invalid or differing lengths: hyper refuses the request.
                    _ => return (used, Some(State::Off)),
                }
            } else if h.name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
        }
        if transfer_encoding && content_length.is_some() {
            verdict.flag(index);
            // The proxy answers this request and closes the connection: nothing after it is read.
            return (used, Some(State::Off));
        }
        let next = if upgrade {
            // The connection may switch protocols after this request.
            State::Off
        } else if transfer_encoding {
            if chunked {
                State::Chunked(Chunk::Size {
                    value: 0,
                    digits: 0,
                })
            } else {
                State::Off
            }
        } else {
            match content_length {
                Some(n) if n > 0 => State::Body(n),
                _ => State::Head(Vec::new()),
            }
        };
        (used, Some(next))
    }
}

/// Whether a Transfer-Encoding value's last coding is `chunked` (hyper's rule).
fn ends_in_chunked(value: &[u8]) -> bool {
    value
        .rsplit(|&b| b == b',')
        .next()
        .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// Advances the chunked-body state over `data`: the bytes used and the next state.
fn step_chunked(mut chunk: Chunk, data: &[u8]) -> (usize, State) {
    let mut i = 0;
    while i < data.len() {
        if let Chunk::Data(left) = chunk {
            let n = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(data.len() - i);
            i += n;
            let left = left - n as u64;
            chunk = if left == 0 {
                Chunk::DataCr
            } else {
                Chunk::Data(left)
            };
            continue;
        }
        let b = data[i];
        i += 1;
        chunk = match (chunk, b) {
            (Chunk::Size { value, digits }, _) if b.is_ascii_hexdigit() => {
                if digits >= 16 {
                    return (i, State::Off);
                }
                let d = u64::from((b as char).to_digit(16).unwrap_or(0));
                Chunk::Size {
                    value: value * 16 + d,
                    digits: digits + 1,
                }
            }
            (Chunk::Size { digits: 0, .. }, _) => return (i, State::Off),
            (Chunk::Size { value, .. } | Chunk::SizeSpace { value }, b' ' | b'\t') => {
                Chunk::SizeSpace { value }
            }
            (Chunk::Size { value, .. } | Chunk::SizeSpace { value }, b';') => {
                Chunk::Extension { value }
            }
            (
                Chunk::Size { value, .. } | Chunk::SizeSpace { value } | Chunk::Extension { value },
                b'\r',
            ) => Chunk::SizeLf { value },
            // A bare LF ends nothing: hyper refuses the body.
            (Chunk::Extension { .. }, b'\n') => return (i, State::Off),
            (Chunk::Extension { value }, _) => Chunk::Extension { value },
            (Chunk::SizeLf { value: 0 }, b'\n') => Chunk::EndCr,
            (Chunk::SizeLf { value }, b'\n') => Chunk::Data(value),
            (Chunk::DataCr, b'\r') => Chunk::DataLf,
            (Chunk::DataLf, b'\n') => Chunk::Size {
                value: 0,
                digits: 0,
            },
            (Chunk::EndCr, b'\r') => Chunk::EndLf,
            (Chunk::Trailer, b'\r') => Chunk::TrailerLf,
            (Chunk::EndCr | Chunk::Trailer, _) => Chunk::Trailer,
            (Chunk::TrailerLf, b'\n') => Chunk::EndCr,
            (Chunk::EndLf, b'\n') => return (i, State::Head(Vec::new())),
            _ => return (i, State::Off),
        };
    }
    (i, State::Chunked(chunk))
}

/// The index of the first ambiguously framed request in a client byte stream read in `pieces`
/// (the fuzz target and the tests drive the watch through this).
pub fn ambiguous_request<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Option<u32> {
    let verdict = FramingVerdict::default();
    let mut watch = Watch::new();
    for piece in pieces {
        if matches!(watch.state, State::Off) {
            break;
        }
        watch.feed(piece, &verdict);
    }
    verdict.ambiguous.load(Ordering::Relaxed).checked_sub(1)
}

/// A client stream whose HTTP/1.x framing is watched (see the module docs), and whose HTTP/2
/// frames written back are scanned for refused streams (see [`super::h2_refusals`]).
pub struct Watched<T> {
    inner: T,
    watch: Watch,
    verdict: Arc<FramingVerdict>,
    writes: Writes,
}

/// What is done with the bytes written to the client: decided at the first write, by which time
/// the client's first bytes have been read (hyper reads them to pick the protocol).
enum Writes {
    Undecided(IntCounter),
    Http2(RefusedStreams),
    Ignored,
}

impl<T> Watched<T> {
    /// `refused` counts HTTP/2 streams refused on this connection.
    pub fn new(inner: T, verdict: Arc<FramingVerdict>, refused: IntCounter) -> Self {
        Watched {
            inner,
            watch: Watch::new(),
            verdict,
            writes: Writes::Undecided(refused),
        }
    }

    fn written<'b>(&mut self, bufs: impl IntoIterator<Item = &'b [u8]>, mut n: usize) {
        if let Writes::Undecided(counter) = &self.writes {
            self.writes = if self.watch.http2 {
                Writes::Http2(RefusedStreams::new(counter.clone()))
            } else {
                Writes::Ignored
            };
        }
        if let Writes::Http2(scan) = &mut self.writes {
            for buf in bufs {
                if n == 0 {
                    break;
                }
                let take = buf.len().min(n);
                scan.written(&buf[..take]);
                n -= take;
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if !matches!(this.watch.state, State::Off) {
            this.watch.feed(&buf.filled()[before..], &this.verdict);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = r {
            this.written([data], n);
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            this.written(bufs.iter().map(|b| &b[..]), n);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every way of cutting `bytes` in two, and one byte at a time, gives the same answer.
    fn flagged_however_split(bytes: &[u8]) -> Option<u32> {
        let whole = ambiguous_request([bytes]);
        for cut in 0..=bytes.len() {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(ambiguous_request([a, b]), whole, "split at {cut}");
        }
        assert_eq!(
            ambiguous_request(bytes.chunks(1)),
            whole,
            "one byte at a time"
        );
        whole
    }

    const AMBIGUOUS: &[u8] =
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";

    #[test]
    fn framing_is_followed_across_bodies_to_the_ambiguous_request() {
        let mut stream = Vec::new();
        // 0: no body; 1: a body whose bytes look like a conflicting head; 2: chunked, with an
        // extension and a trailer; 3: the ambiguous one.
        stream.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let body = b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        stream.extend_from_slice(
            format!(
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        stream.extend_from_slice(body);
        stream.extend_from_slice(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
              5;name=value\r\nhello\r\nA \r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n",
        );
        stream.extend_from_slice(AMBIGUOUS);
        assert_eq!(flagged_however_split(&stream), Some(3));
    }

    #[test]
    fn the_flag_lands_on_the_right_request_after_plain_heads() {
        let mut stream = Vec::new();
        stream.extend_from_slice(b"GET /a HTTP/1.1\r\nHost: a\r\nX-Content-Length: 5\r\n\r\n");
        stream.extend_from_slice(b"GET /content-length HTTP/1.1\r\nUser-Agent: t\r\n\r\n");
        stream.extend_from_slice(b"GET /b HTTP/1.1\r\nUpgrade-Insecure-Requests: 1\r\n\r\n");
        // Bare LF line ends: httparse accepts them, and so does hyper.
        stream.extend_from_slice(b"GET /c HTTP/1.1\nHost: a\n\n");
        stream.extend_from_slice(AMBIGUOUS);
        assert_eq!(flagged_however_split(&stream), Some(4));
    }

    #[test]
    fn either_header_order_is_ambiguous() {
        assert_eq!(flagged_however_split(AMBIGUOUS), Some(0));
        assert_eq!(
            flagged_however_split(
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ncontent-length: 3\r\n\r\n0\r\n\r\n"
            ),
            Some(0)
        );
    }

    #[test]
    fn clean_requests_are_not_flagged() {
        assert_eq!(
            flagged_however_split(
                b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n\r\n"
            ),
            None
        );
    }

    #[test]
    fn http2_and_upgraded_connections_are_not_watched() {
        let mut h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        h2.extend_from_slice(AMBIGUOUS);
        assert_eq!(flagged_however_split(&h2), None);
        for size in [1, 3, 5, h2.len()] {
            let mut watch = Watch::new();
            for piece in h2.chunks(size) {
                watch.feed(piece, &FramingVerdict::default());
            }
            assert!(watch.http2, "the preface in reads of {size} bytes");
        }
        let mut upgraded =
            b"GET /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n".to_vec();
        upgraded.extend_from_slice(AMBIGUOUS);
        assert_eq!(flagged_however_split(&upgraded), None);
    }

    #[test]
    fn the_handler_refuses_only_the_flagged_request() {
        let verdict = FramingVerdict::default();
        verdict.flag(1);
        verdict.flag(2); // the first one stands: the connection closes after it
        assert!(!verdict.next_request_is_ambiguous());
        assert!(verdict.next_request_is_ambiguous());
        assert!(!verdict.next_request_is_ambiguous());
    }
}
