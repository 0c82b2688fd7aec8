//! One upstream HTTP/1.1 connection of the direct client: the stream, its read buffer (which the
//! response body borrows from as it streams) and a write buffer kept for the next request head.
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use http::{HeaderMap, Method};
use prometheus::IntGauge;
use tokio::io::AsyncWriteExt;

use super::head::{self, ResponseHead};
use crate::cluster::counted::Counted;
use crate::read_scratch;
use crate::tls::ClientStream;

/// The first read of a response: a whole small response at once, as hyper's initial buffer.
const READ_MIN: usize = read_scratch::SIZE;
/// Reads grow up to this while they keep filling the buffer (a large body), as hyper's adaptive
/// read strategy does, so a large download takes few system calls.
const READ_MAX: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("writing the request failed: {0}")]
    Write(io::Error),
    #[error("connection closed before a response")]
    ClosedBeforeResponse,
    #[error("connection reset before a response: {0}")]
    ResetBeforeResponse(io::Error),
    #[error("connection closed in the middle of the response head")]
    ClosedInHead,
    #[error("reading the response failed: {0}")]
    Read(io::Error),
    #[error(transparent)]
    Head(#[from] head::HeadError),
}

impl ExchangeError {
    /// Whether a request that failed so on a pooled connection may go again on another: one
    /// that was not written whole cannot have been acted on; one the upstream closed the
    /// connection on with nothing sent back may have been, so only an idempotent one goes again
    /// (RFC 9112 §9.3.1).
    pub fn is_resendable(&self, method: &Method) -> bool {
        match self {
            ExchangeError::Write(_) => true,
            ExchangeError::ClosedBeforeResponse | ExchangeError::ResetBeforeResponse(_) => {
                method.is_idempotent()
            }
            _ => false,
        }
    }
}

/// Counts a connection in `ferry_upstream_connections_active` for as long as it is open (the
/// direct client's, and the tasks that drive hyper's).
pub struct ActiveGuard(IntGauge);

impl ActiveGuard {
    pub fn new(gauge: IntGauge) -> ActiveGuard {
        gauge.inc();
        ActiveGuard(gauge)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub struct RawConn {
    io: Counted<ClientStream>,
    /// What has been read and not yet taken: the rest of a response, or nothing between them.
    pub(super) read: BytesMut,
    /// How much the next read asks for (between READ_MIN and READ_MAX).
    read_size: usize,
    write: Vec<u8>,
    _active: ActiveGuard,
}

impl RawConn {
    pub fn new(io: Counted<ClientStream>, active: IntGauge) -> Box<RawConn> {
        Box::new(RawConn {
            io,
            // Empty until a response arrives (see `poll_fill`).
            read: BytesMut::new(),
            read_size: READ_MIN,
            write: Vec::with_capacity(512),
            _active: ActiveGuard::new(active),
        })
    }

    /// Whether an idle connection can take a request: the upstream has neither closed it nor
    /// sent anything unasked. The reactor's readiness answers without a syscall when nothing
    /// happened since the last read (tokio clears readiness on a short read).
    pub fn is_reusable(&mut self) -> bool {
        if self.holds_unread() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        matches!(self.poll_fill(&mut cx), Poll::Pending)
    }

    /// Whether bytes from the upstream wait unread. Between responses those are bytes nobody
    /// asked for, which the next request on the connection would read as its response.
    pub fn holds_unread(&self) -> bool {
        !self.read.is_empty()
    }

    /// Writes a bodiless request's head.
    pub async fn write_head(
        &mut self,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
    ) -> Result<(), ExchangeError> {
        self.write.clear();
        head::encode_request(method, target, headers, &mut self.write);
        self.io
            .write_all(&self.write)
            .await
            .map_err(ExchangeError::Write)
    }

    /// Reads until the response head is complete; the body's first bytes stay in the buffer.
    pub async fn read_head(&mut self, method: &Method) -> Result<ResponseHead, ExchangeError> {
        let mut received = false;
        loop {
            if received && let Some(head) = head::parse_response(&mut self.read, method)? {
                return Ok(head);
            }
            match std::future::poll_fn(|cx| self.poll_fill(cx)).await {
                Ok(0) if !received => return Err(ExchangeError::ClosedBeforeResponse),
                Ok(0) => return Err(ExchangeError::ClosedInHead),
                Ok(_) => received = true,
                Err(e) if !received => return Err(ExchangeError::ResetBeforeResponse(e)),
                Err(e) => return Err(ExchangeError::Read(e)),
            }
        }
    }

    /// Reads more into the buffer. `Ok(0)`: the upstream closed the connection.
    ///
    /// With nothing buffered and no large body under way, the read goes through the thread's
    /// scratch and the buffer gets exactly what arrived, so a pooled connection holds no read
    /// buffer and a small response costs one allocation of its size. A read that fills the
    /// scratch grows `read_size`, and reads go straight into the buffer from then on.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.is_empty() && self.read_size == READ_MIN {
            let polled = read_scratch::poll_read(Pin::new(&mut self.io), cx, &mut self.read);
            if let Poll::Ready(Ok(read_scratch::SIZE)) = polled {
                self.read_size = READ_MIN * 2;
            }
            return polled;
        }
        if self.read.capacity() - self.read.len() < self.read_size / 2 {
            self.read.reserve(self.read_size);
        }
        let room = self.read.capacity() - self.read.len();
        let polled = tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read);
        if let Poll::Ready(Ok(n)) = polled {
            if n == room {
                self.read_size = (self.read_size * 2).min(READ_MAX);
            } else if n < self.read_size / 4 {
                self.read_size = (self.read_size / 2).max(READ_MIN);
            }
        }
        polled
    }

    /// Called as the connection goes back to the pool: an empty buffer is let go, so that an
    /// idle connection holds none (the next response is read through the scratch).
    pub fn shrink(&mut self) {
        if self.read.is_empty() && self.read.capacity() > 0 {
            self.read = BytesMut::new();
        }
        self.read_size = READ_MIN;
    }

    /// The stream, for hyper's client to drive (the buffer is empty: the connection was idle).
    pub fn into_stream(self) -> (Counted<ClientStream>, ActiveGuard) {
        let RawConn { io, _active, .. } = self;
        (io, _active)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_requests_are_resent() {
        let write = || ExchangeError::Write(io::ErrorKind::BrokenPipe.into());
        let closed = || ExchangeError::ClosedBeforeResponse;
        assert!(
            write().is_resendable(&Method::POST),
            "an unwritten request was never acted on"
        );
        assert!(closed().is_resendable(&Method::GET));
        assert!(closed().is_resendable(&Method::DELETE));
        assert!(
            !closed().is_resendable(&Method::POST),
            "the upstream may have acted on it"
        );
        assert!(!closed().is_resendable(&Method::PATCH));
        assert!(
            !ExchangeError::ClosedInHead.is_resendable(&Method::GET),
            "a response had begun"
        );
    }
}
