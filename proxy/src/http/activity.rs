//! Client-connection idleness, for the listener's idle timeout: a connection with no request in
//! flight and no bytes moving for the timeout is closed. Reads and writes only set a flag (no clock
//! read on the I/O path); a watcher task samples it four times per timeout period.
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[derive(Debug, Default)]
pub struct ConnActivity {
    moved: AtomicBool,
    in_flight: AtomicU32,
}

impl ConnActivity {
    /// Marks a request in flight until the guard is dropped.
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Marks bytes as moved, for streams that do not go through [`Tracked`].
    pub fn touch(&self) {
        // A plain store only when needed keeps the cache line quiet under load.
        if !self.moved.load(Ordering::Relaxed) {
            self.moved.store(true, Ordering::Relaxed);
        }
    }

    /// Resolves once the connection has been idle for `timeout` (within +25%).
    pub async fn idle_for(&self, timeout: Duration) {
        let tick = timeout / 4;
        let mut quiet_ticks = 0;
        loop {
            tokio::time::sleep(tick).await;
            let moved = self.moved.swap(false, Ordering::Relaxed);
            if moved || self.in_flight.load(Ordering::Relaxed) > 0 {
                quiet_ticks = 0;
            } else {
                quiet_ticks += 1;
                if quiet_ticks >= 4 {
                    return;
                }
            }
        }
    }
}

/// A request in flight on a client connection.
pub struct InFlight(Arc<ConnActivity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream that marks its connection active whenever bytes move.
pub struct Tracked<T> {
    inner: T,
    activity: Arc<ConnActivity>,
}

impl<T> Tracked<T> {
    pub fn new(inner: T, activity: Arc<ConnActivity>) -> Self {
        Tracked { inner, activity }
    }

    fn mark(&self) {
        self.activity.touch();
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.mark();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.mark();
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
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.mark();
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
