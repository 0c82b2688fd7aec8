//! Ferry's own HTTP/1.1 server for the common request: a bodiless request (GET, HEAD, DELETE,
//! ...) on a plain or TLS connection. hyper's server costs about 12,000 of the 31,000 instructions
//! of a proxied request (callgrind); most of it is machinery this case does not need.
//!
//! The first request that is not of that kind (one with a body, an upgrade, CONNECT, the HTTP/2
//! preface, a malformed or oversized head) hands the connection to hyper's server, with the bytes
//! read so far, and hyper serves it from there on. So every unusual case keeps hyper's
//! behaviour, and this server only has to be right about the simple one.
//!
//! The connection rules are hyper's (see `response`): keep-alive by version and `Connection`,
//! the header read timeout running from the moment the server waits for a head, and a client
//! that closes while its request is handled cancels the request (hyper's default, no half-close).
mod date;
mod request;
mod response;

use std::future::poll_fn;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::body::ResponseBody;
use super::conn::{ConnInfo, ListenerCtx};
use super::conn_timer::{ConnTimer, RequestTimers};
use crate::read_scratch;
use crate::table::ListenerTable;
pub use request::{Head, HeadLimits, RequestMeta, parse};
use response::{BodyLen, Framing};

/// How a connection left this server.
pub enum Ended {
    /// Closed (by either side, a timeout, an error, or draining).
    Closed,
    /// A request this server does not handle: hyper serves the connection from here, starting
    /// with these bytes.
    ToHyper(Bytes),
}

/// The most free space a read into a connection's own buffer is given (hyper's read size). That
/// buffer is used only while a head arrives in parts; a read with nothing buffered goes through
/// the thread's scratch (`read_scratch`).
const READ_BUF: usize = 8 * 1024;
/// The least free space such a read is given. Between the two, a read is given room for as much
/// as has arrived, so a head that trickles in (a slow client, or a slowloris one) holds a buffer
/// of its own size, and one that came a whole scratch at a time is read on 8 KiB at a time.
const PARTIAL_MIN: usize = 1024;
/// Body chunks up to this size are copied next to the head, so a small response is one write;
/// larger ones are written from their own buffer.
const COPY_MAX: usize = 16 * 1024;
/// A write buffer that grew past this is let go between responses.
const KEEP_WRITE_BUF: usize = 64 * 1024;

/// Serves HTTP/1.1 requests on `io` until the connection ends or needs hyper.
pub async fn serve<IO>(
    io: &mut IO,
    ctx: &Arc<ListenerCtx>,
    table: &ListenerTable,
    info: &ConnInfo,
    drain: &mut watch::Receiver<bool>,
) -> Ended
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let limits = HeadLimits {
        // hyper's read buffer limit, which bounds a head there.
        max_bytes: table.limits.max_header_bytes.max(8192),
        max_headers: table.limits.max_headers,
    };
    // Timers for all the connection's requests (see `ConnTimer`): one for reading heads, and
    // the ones the requests' timeouts use.
    let head_timeout = table.limits.header_read_timeout;
    let mut head_timer = ConnTimer::default();
    let mut request_timers = RequestTimers::default();
    // Empty until bytes arrive: an idle connection holds no read buffer (see `read_more`).
    let mut buf = BytesMut::new();
    let mut out: Vec<u8> = Vec::new();
    loop {
        // === Read a head ===
        // hyper's rule: the header read timeout runs from the moment a head is awaited.
        if let Some(t) = head_timeout {
            head_timer.set(Instant::now() + t);
        }
        let (req, meta) = loop {
            if !buf.is_empty() {
                match request::parse(&mut buf, limits) {
                    Head::Ready(req, meta) => break (req, meta),
                    Head::Hyper => return Ended::ToHyper(buf.freeze()),
                    Head::Partial => {}
                }
            } else if draining(drain) {
                return Ended::Closed;
            }
            let read = tokio::select! {
                biased;
                r = read_more(io, &mut buf) => r,
                () = head_timer.expired() => {
                    table.metrics.header_timeout.inc();
                    return Ended::Closed;
                }
                // Draining, or the listener is gone: an idle connection closes at once.
                _ = drain.changed(), if buf.is_empty() => return Ended::Closed,
            };
            match read {
                Ok(0) | Err(_) => return Ended::Closed,
                Ok(_) => {}
            }
        };

        // === Handle it ===
        // In a block of its own: the handler's future (~0.9 KB) then ends before the response
        // is written, and the two share their place in this future's state instead of sitting
        // side by side in every connection's task (`-Zprint-type-sizes`: 3,384 bytes to 2,255).
        let resp = {
            let handling = super::handle(ctx, info, req, Some(&mut request_timers));
            let mut handling = pin!(handling);
            loop {
                tokio::select! {
                    biased;
                    resp = &mut handling => break resp,
                    // A client that closes while its request is in flight cancels it, as with
                    // hyper's server; bytes of a pipelined request are kept for later.
                    r = read_more(io, &mut buf), if buf.is_empty() => match r {
                        Ok(0) | Err(_) => return Ended::Closed,
                        Ok(_) => {}
                    },
                }
            }
        };

        // === Write the response ===
        let (parts, mut body) = resp.into_parts();
        let len = body_len(&body);
        let keep_alive = meta.keep_alive && !draining(drain);
        let encoded = response::encode(&parts, meta, len, keep_alive, &mut out);
        drop(parts);
        let whole = write_body(io, &mut out, &mut body, encoded.framing).await;
        // Ends the request now (its access log line, its metrics) as when the body was moved.
        drop(body);
        if !whole || !encoded.keep_alive {
            let _ = io.shutdown().await;
            return Ended::Closed;
        }
        if out.capacity() > KEEP_WRITE_BUF {
            out = Vec::new();
        }
    }
}

/// Reads more of the client's bytes into `buf`. With nothing buffered (between requests, the
/// usual case) the read goes through the thread's scratch and `buf` gets exactly what arrived;
/// a head that came in part is read on into `buf` itself.
async fn read_more<IO>(io: &mut IO, buf: &mut BytesMut) -> std::io::Result<usize>
where
    IO: AsyncRead + Unpin,
{
    if buf.is_empty() {
        return poll_fn(|cx| read_scratch::poll_read(Pin::new(&mut *io), cx, buf)).await;
    }
    let room = buf.len().clamp(PARTIAL_MIN, READ_BUF);
    if buf.capacity() - buf.len() < room / 8 {
        buf.reserve(room);
    }
    io.read_buf(buf).await
}

/// Whether the listener is draining. The only value ever sent is `true`, so "changed" is
/// "draining", read from an atomic version without taking the channel's lock.
fn draining(drain: &watch::Receiver<bool>) -> bool {
    drain.has_changed().unwrap_or(true)
}

fn body_len(body: &ResponseBody) -> BodyLen {
    if body.is_end_stream() {
        return BodyLen::Empty;
    }
    match body.size_hint().exact() {
        Some(n) => BodyLen::Known(n),
        None => BodyLen::Unknown,
    }
}

/// One body event, or the cue to send what is buffered while the body has nothing ready.
enum Step {
    Frame(Option<Result<Frame<Bytes>, super::BoxError>>),
    Flush,
}

/// Writes the head in `out` and then the body. Returns whether the response went out whole and
/// the connection can carry another request. The body is lent, not moved: an `async fn` keeps
/// a by-value argument twice in its state (384 bytes each here).
async fn write_body<IO>(
    io: &mut IO,
    out: &mut Vec<u8>,
    body: &mut ResponseBody,
    framing: Framing,
) -> bool
where
    IO: AsyncWrite + Unpin,
{
    let mut left = match framing {
        Framing::Length(n) => n,
        _ => u64::MAX,
    };
    let mut trailers: Option<HeaderMap> = None;
    let mut whole = true;
    loop {
        let step = poll_fn(|cx| match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(Step::Frame(frame)),
            Poll::Pending if !out.is_empty() => Poll::Ready(Step::Flush),
            Poll::Pending => Poll::Pending,
        })
        .await;
        let frame = match step {
            Step::Flush => {
                if flush(io, out).await.is_err() {
                    return false;
                }
                continue;
            }
            Step::Frame(None) => break,
            Step::Frame(Some(Err(e))) => {
                // The upstream failed midway: what arrived goes out, then the connection is cut
                // so that the client sees an incomplete message, never a complete wrong one.
                tracing::debug!("response body failed: {e}");
                let _ = flush(io, out).await;
                return false;
            }
            Step::Frame(Some(Ok(frame))) => frame,
        };
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
                continue;
            }
        };
        let data = match &framing {
            Framing::Empty => continue,
            Framing::Length(_) => {
                if data.len() as u64 > left {
                    // More than the length said: the rest is not sent, the connection closes.
                    whole = false;
                    data.slice(..usize::try_from(left).unwrap_or(0))
                } else {
                    data
                }
            }
            Framing::Chunked(_) => {
                if data.is_empty() {
                    continue;
                }
                let mut hex = [0u8; 16];
                out.extend_from_slice(hex_len(data.len(), &mut hex));
                out.extend_from_slice(b"\r\n");
                data
            }
            Framing::UntilClose => data,
        };
        left = left.saturating_sub(data.len() as u64);
        if data.len() <= COPY_MAX {
            out.extend_from_slice(&data);
            if out.len() >= KEEP_WRITE_BUF && flush(io, out).await.is_err() {
                return false;
            }
        } else {
            if flush(io, out).await.is_err() {
                return false;
            }
            if io.write_all(&data).await.is_err() {
                return false;
            }
        }
        if let Framing::Chunked(_) = framing {
            out.extend_from_slice(b"\r\n");
        }
        if !whole {
            break;
        }
    }
    match &framing {
        Framing::Chunked(allowed) => {
            out.extend_from_slice(b"0\r\n");
            if let Some(t) = &trailers {
                for (name, value) in t {
                    if allowed.contains(name) {
                        out.extend_from_slice(name.as_str().as_bytes());
                        out.extend_from_slice(b": ");
                        out.extend_from_slice(value.as_bytes());
                        out.extend_from_slice(b"\r\n");
                    }
                }
            }
            out.extend_from_slice(b"\r\n");
        }
        // Shorter than the length said: the client must see it cut.
        Framing::Length(_) if left > 0 => whole = false,
        Framing::UntilClose => whole = false,
        _ => {}
    }
    flush(io, out).await.is_ok() && whole
}

/// A chunk size in hex.
fn hex_len(n: usize, buf: &mut [u8; 16]) -> &[u8] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = DIGITS[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

async fn flush<IO: AsyncWrite + Unpin>(io: &mut IO, out: &mut Vec<u8>) -> std::io::Result<()> {
    if !out.is_empty() {
        io.write_all(out).await?;
        out.clear();
    }
    io.flush().await
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunk_sizes_in_hex() {
        let mut buf = [0u8; 16];
        assert_eq!(super::hex_len(0, &mut buf), b"0");
        assert_eq!(super::hex_len(255, &mut buf), b"ff");
        assert_eq!(super::hex_len(0x1000, &mut buf), b"1000");
    }
}
