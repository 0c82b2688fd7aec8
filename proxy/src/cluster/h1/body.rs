//! The response body of the direct client. It owns its connection while it streams and puts it
//! back in the endpoint's pool the moment the last byte has been read, when the connection can
//! carry another request; dropped before that, it closes the connection.
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::chunked::{ChunkError, ChunkedDecoder, Decoded};
use super::conn::RawConn;
use super::head::Framing;
use crate::cluster::Endpoint;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("upstream closed the connection {0} bytes before the end of the body")]
    Incomplete(u64),
    #[error("upstream closed the connection in the middle of a chunked body")]
    IncompleteChunked,
    #[error("reading the response body failed: {0}")]
    Read(#[from] std::io::Error),
    #[error("malformed chunked body: {0}")]
    Chunked(#[from] ChunkError),
}

enum Kind {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    Done,
}

pub struct DirectBody {
    kind: Kind,
    /// An error held back for one poll so that what was already passed on gets flushed first.
    failed: Option<BodyError>,
    conn: Option<Box<RawConn>>,
    /// Where the connection goes back when the body is complete (None: it is not reusable).
    pool: Option<Arc<Endpoint>>,
}

impl DirectBody {
    /// The body of a response whose head was just read from `conn`.
    pub fn new(framing: Framing, conn: Box<RawConn>, pool: Option<Arc<Endpoint>>) -> DirectBody {
        let kind = match framing {
            Framing::Empty => Kind::Done,
            Framing::Length(n) => Kind::Length(n),
            Framing::Chunked => Kind::Chunked(ChunkedDecoder::default()),
            Framing::UntilClose => Kind::UntilClose,
        };
        let mut body = DirectBody {
            kind,
            failed: None,
            conn: Some(conn),
            pool,
        };
        if matches!(body.kind, Kind::Done) {
            body.finish();
        }
        body
    }

    /// The response has been read whole: the connection goes back to the pool if it may (see
    /// `Endpoint::push_direct` for bytes the upstream sent past its end).
    fn finish(&mut self) {
        self.kind = Kind::Done;
        let (Some(mut conn), Some(ep)) = (self.conn.take(), self.pool.take()) else {
            return;
        };
        conn.shrink();
        ep.push_direct(conn);
    }

    /// The upstream broke off the body. The error is held back for one poll (this task is woken
    /// at once): hyper's server drops output it has buffered but not written when a body fails,
    /// and the client should get the head and the bytes that did arrive, as Envoy sends them,
    /// before the connection is cut.
    fn fail(
        &mut self,
        e: BodyError,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.kind = Kind::Done;
        self.conn = None;
        self.failed = Some(e);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Body for DirectBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(e) = this.failed.take() {
            return Poll::Ready(Some(Err(e)));
        }
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match &mut this.kind {
                Kind::Done => return Poll::Ready(None),
                Kind::Length(left) if !conn.read.is_empty() => {
                    let n = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(conn.read.len());
                    let data = conn.read.split_to(n).freeze();
                    *left -= n as u64;
                    if *left == 0 {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Kind::UntilClose if !conn.read.is_empty() => {
                    let data = conn.read.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Kind::Chunked(decoder) => match decoder.decode(&mut conn.read) {
                    Ok(Some(Decoded::Data(d))) => return Poll::Ready(Some(Ok(Frame::data(d)))),
                    Ok(Some(Decoded::Trailers(t))) => {
                        this.finish();
                        return Poll::Ready(Some(Ok(Frame::trailers(t))));
                    }
                    Ok(Some(Decoded::End)) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(None) => {}
                    Err(e) => return this.fail(e.into(), cx),
                },
                Kind::Length(_) | Kind::UntilClose => {}
            }
            // The buffer holds nothing usable: read more.
            match ready!(conn.poll_fill(cx)) {
                Ok(0) => {
                    return match this.kind {
                        Kind::UntilClose => {
                            this.kind = Kind::Done;
                            this.conn = None;
                            Poll::Ready(None)
                        }
                        Kind::Length(left) => this.fail(BodyError::Incomplete(left), cx),
                        _ => this.fail(BodyError::IncompleteChunked, cx),
                    };
                }
                Ok(_) => {}
                Err(e) => return this.fail(e.into(), cx),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.kind, Kind::Done) && self.failed.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.kind {
            Kind::Done => SizeHint::with_exact(0),
            Kind::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}
