//! Streaming a request body onto an HTTP/2 stream: DATA frames as the upstream's flow-control
//! window allows, then the trailers or an empty end-of-stream frame.
//!
//! The request's task polls the pipe beside the response; a unary call's body is usually there
//! whole and goes out at once. When the response comes first and the body is still streaming
//! (a client-streaming or bidirectional gRPC call), the rest of the pipe gets a task of its own.
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use h2::SendStream;
use http_body::Body;

use crate::http::RequestBody;

#[derive(Debug, thiserror::Error)]
pub enum PipeError {
    #[error("the upstream reset the stream: {0}")]
    Reset(h2::Reason),
    #[error("sending the request body failed: {0}")]
    Send(h2::Error),
    #[error("reading the request body failed: {0}")]
    Body(hyper::Error),
}

pub struct Pipe {
    body: RequestBody,
    tx: SendStream<Bytes>,
    /// A chunk read from the body and waiting for window: kept here, since a wait for capacity
    /// returns before the chunk can go.
    waiting: Option<(Bytes, bool)>,
}

impl Pipe {
    pub fn new(body: RequestBody, tx: SendStream<Bytes>) -> Pipe {
        Pipe {
            body,
            tx,
            waiting: None,
        }
    }
}

impl Future for Pipe {
    type Output = Result<(), PipeError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            // Registered on every turn, so a reset from the upstream wakes a pipe that waits for
            // the client's next bytes.
            if let Poll::Ready(reason) = this.tx.poll_reset(cx) {
                return Poll::Ready(Err(reason.map_or_else(PipeError::Send, PipeError::Reset)));
            }
            if let Some((_, eos)) = &this.waiting {
                let eos = *eos;
                while this.tx.capacity() == 0 {
                    match ready!(this.tx.poll_capacity(cx)) {
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Poll::Ready(Err(PipeError::Send(e))),
                        None => {
                            return Poll::Ready(Err(PipeError::Reset(h2::Reason::STREAM_CLOSED)));
                        }
                    }
                }
                if let Some((data, _)) = this.waiting.take() {
                    this.tx.send_data(data, eos).map_err(PipeError::Send)?;
                }
                if eos {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            // The next frame is read before any window is claimed: claiming window for a body
            // that has nothing to send yet would hold it from the connection's other streams.
            match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let eos = this.body.is_end_stream();
                        if data.is_empty() {
                            this.tx.send_data(data, eos).map_err(PipeError::Send)?;
                            if eos {
                                return Poll::Ready(Ok(()));
                            }
                            continue;
                        }
                        // A claim of one byte: h2 raises it to what is buffered when the data
                        // is sent, and a smaller claim does not crowd other streams while
                        // this one waits.
                        this.tx.reserve_capacity(1);
                        this.waiting = Some((data, eos));
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            this.tx.reserve_capacity(0);
                            this.tx.send_trailers(trailers).map_err(PipeError::Send)?;
                            return Poll::Ready(Ok(()));
                        }
                    }
                },
                Some(Err(e)) => {
                    // The client's body broke: the upstream must not take a part as the whole.
                    this.tx.send_reset(h2::Reason::CANCEL);
                    return Poll::Ready(Err(PipeError::Body(e)));
                }
                None => {
                    this.tx
                        .send_data(Bytes::new(), true)
                        .map_err(PipeError::Send)?;
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}
