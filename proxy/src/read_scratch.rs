//! One read buffer per thread, for connections that hold no unread bytes.
//!
//! An HTTP/1.1 connection spends most of its life with nothing buffered: waiting for the next
//! request (a client) or parked in the pool (an upstream). A read buffer of its own would sit
//! there unused, 8 KiB a connection, and a burst of new connections would touch one fresh page
//! for each (the largest share of a cold burst's page faults, by `perf record -e page-faults`).
//! So, as haproxy does with its buffer pool, a connection holds buffered bytes only while they
//! wait to be used: a read on an empty connection lands in this thread's scratch, and only the
//! bytes it brought are copied into an allocation of their size, which the request or response
//! parsed from them then owns (header values are views into it) and frees when it is done.
//!
//! A read happens inside one `poll`, so the scratch is never held across an await and one per
//! thread serves every connection the thread runs. A read that fills the scratch means more is
//! coming (a large head or body): callers then read straight into the connection's own buffer,
//! as before, so large transfers are not copied twice.
use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use tokio::io::{AsyncRead, ReadBuf};

/// How much a read into the scratch asks for: the per-connection buffers' first size (hyper's
/// too), so a connection makes the same system calls as with a buffer of its own.
pub const SIZE: usize = 8 * 1024;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SIZE].into_boxed_slice());
}

/// Reads once from `io` and appends what arrived to `buf`, through the thread's scratch. `buf`
/// is meant to be empty (see the module comment); an empty `buf` without capacity gets an
/// allocation of exactly the bytes read. `Ok(0)`: end of stream.
pub fn poll_read<R>(
    io: Pin<&mut R>,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>>
where
    R: AsyncRead + ?Sized,
{
    SCRATCH.with(|scratch| {
        // Only a reader that reads again from inside its own `poll_read` could find the scratch
        // taken; it then reads into `buf` directly.
        let Ok(mut scratch) = scratch.try_borrow_mut() else {
            buf.reserve(SIZE);
            return tokio_util::io::poll_read_buf(io, cx, buf);
        };
        let mut read = ReadBuf::new(&mut scratch[..]);
        ready!(io.poll_read(cx, &mut read))?;
        let filled = read.filled();
        buf.extend_from_slice(filled);
        Poll::Ready(Ok(filled.len()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_read_keeps_exactly_the_bytes_that_arrived() {
        let (mut a, mut b) = tokio::io::duplex(64 * 1024);
        a.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut buf = BytesMut::new();
        let n = poll_fn(|cx| poll_read(Pin::new(&mut b), cx, &mut buf))
            .await
            .unwrap();
        assert_eq!(n, 18);
        assert_eq!(&buf[..], b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(buf.capacity(), 18, "no more memory than the bytes need");

        // More than the scratch holds arrives over several reads, in order, appended.
        let big: Vec<u8> = (0..3 * SIZE).map(|i| (i % 251) as u8).collect();
        a.write_all(&big).await.unwrap();
        drop(a);
        let mut got = BytesMut::new();
        loop {
            let mut part = BytesMut::new();
            match poll_fn(|cx| poll_read(Pin::new(&mut b), cx, &mut part))
                .await
                .unwrap()
            {
                0 => break,
                n => {
                    assert!(n <= SIZE);
                    got.extend_from_slice(&part);
                }
            }
        }
        assert_eq!(&got[..], &big[..]);
    }

    #[tokio::test]
    async fn a_read_with_nothing_to_read_leaves_the_buffer_untouched() {
        let (_a, mut b) = tokio::io::duplex(1024);
        let mut buf = BytesMut::new();
        let polled = poll_fn(|cx| Poll::Ready(poll_read(Pin::new(&mut b), cx, &mut buf))).await;
        assert!(polled.is_pending());
        assert_eq!(buf.capacity(), 0, "a connection that waits holds no buffer");
    }
}
