//! A response body read from an HTTP/2 upstream stream: DATA frames, then the trailers (gRPC's
//! status lives there). Each frame's bytes are handed back to the stream's flow-control window
//! as they are passed on, so the upstream may send more.
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use h2::RecvStream;
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use http_body::{Body, Frame, SizeHint};

use super::conns::HeldSlot;

pub struct H2Body {
    recv: RecvStream,
    /// What the Content-Length header says is still to come, when the upstream sent one. h2
    /// itself rejects a stream whose DATA disagrees with it; this only serves the size hint
    /// (an HTTP/1.1 client then gets a Content-Length instead of chunks).
    remaining: Option<u64>,
    data_done: bool,
    /// Counts the stream on its connection until the response ends (and the request body, when
    /// it streams on after the response).
    _slot: HeldSlot,
}

impl H2Body {
    pub fn new(recv: RecvStream, headers: &HeaderMap, slot: HeldSlot) -> H2Body {
        let remaining = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        H2Body {
            recv,
            remaining,
            data_done: false,
            _slot: slot,
        }
    }
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let this = self.get_mut();
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Only fails once the stream is gone, and then nothing is owed.
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    if let Some(n) = &mut this.remaining {
                        *n = n.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                // RST_STREAM with NO_ERROR after a complete response means "stop sending the
                // request" (RFC 9113 §8.1): the response ends here, it is not broken.
                Some(Err(e)) if e.reason() == Some(h2::Reason::NO_ERROR) => {
                    return Poll::Ready(None);
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => this.data_done = true,
            }
        }
        match ready!(this.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) if e.reason() == Some(h2::Reason::NO_ERROR) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
