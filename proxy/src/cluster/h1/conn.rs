//! One upstream HTTP/1.1 connection of the direct client: the stream, its read buffer (which the
//! response body borrows from as it streams) and a write buffer kept for the next request head.
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use http::{HeaderMap, Method};
use prometheus::IntGauge;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::head::{self, ResponseHead};
use crate::cluster::counted::Counted;
use crate::tls::ClientStream;

/// Read buffer size: a whole small response in one read, as hyper's initial buffer.
const READ_CHUNK: usize = 8 * 1024;

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
    /// Nothing of a response arrived: the upstream closed a kept-alive connection as the request
    /// went out (RFC 9112 §9.3.1), so an idempotent request may be sent again.
    pub fn nothing_received(&self) -> bool {
        matches!(
            self,
            ExchangeError::Write(_)
                | ExchangeError::ClosedBeforeResponse
                | ExchangeError::ResetBeforeResponse(_)
        )
    }
}

/// Counts the connection in `ferry_upstream_connections_active` for as long as it is open.
pub struct ActiveGuard(IntGauge);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub struct RawConn {
    io: Counted<ClientStream>,
    /// What has been read and not yet taken: the rest of a response, or nothing between them.
    pub(super) read: BytesMut,
    write: Vec<u8>,
    _active: ActiveGuard,
}

impl RawConn {
    pub fn new(io: Counted<ClientStream>, active: IntGauge) -> Box<RawConn> {
        active.inc();
        Box::new(RawConn {
            io,
            read: BytesMut::with_capacity(READ_CHUNK),
            write: Vec::with_capacity(512),
            _active: ActiveGuard(active),
        })
    }

    /// Whether an idle connection can take a request: the upstream has neither closed it nor
    /// sent anything unasked. The reactor's readiness answers without a syscall when nothing
    /// happened since the last read (tokio clears readiness on a short read).
    pub fn is_reusable(&mut self) -> bool {
        if !self.read.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        matches!(self.poll_fill(&mut cx), Poll::Pending)
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
            self.reserve();
            match self.io.read_buf(&mut self.read).await {
                Ok(0) if !received => return Err(ExchangeError::ClosedBeforeResponse),
                Ok(0) => return Err(ExchangeError::ClosedInHead),
                Ok(_) => received = true,
                Err(e) if !received => return Err(ExchangeError::ResetBeforeResponse(e)),
                Err(e) => return Err(ExchangeError::Read(e)),
            }
        }
    }

    /// Reads more into the buffer. `Ok(0)`: the upstream closed the connection.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.reserve();
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read)
    }

    fn reserve(&mut self) {
        if self.read.capacity() - self.read.len() < READ_CHUNK / 2 {
            self.read.reserve(READ_CHUNK);
        }
    }

    /// The stream, for hyper's client to drive (the buffer is empty: the connection was idle).
    pub fn into_stream(self) -> (Counted<ClientStream>, ActiveGuard) {
        let RawConn { io, _active, .. } = self;
        (io, _active)
    }
}
