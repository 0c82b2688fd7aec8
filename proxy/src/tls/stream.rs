//! Plaintext-or-TLS streams, so one connection type serves both.
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

macro_rules! either_stream {
    ($name:ident, $tls:ty) => {
        pub enum $name {
            Plain(TcpStream),
            Tls(Box<$tls>),
        }

        impl AsyncRead for $name {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $name::Plain(s) => Pin::new(s).poll_read(cx, buf),
                    $name::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
                }
            }
        }

        impl AsyncWrite for $name {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                data: &[u8],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $name::Plain(s) => Pin::new(s).poll_write(cx, data),
                    $name::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
                }
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $name::Plain(s) => poll_write_coalesced(Pin::new(s), cx, bufs),
                    $name::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
                }
            }

            fn is_write_vectored(&self) -> bool {
                match self {
                    $name::Plain(s) => s.is_write_vectored(),
                    $name::Tls(s) => s.is_write_vectored(),
                }
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $name::Plain(s) => Pin::new(s).poll_flush(cx),
                    $name::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
                }
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $name::Plain(s) => Pin::new(s).poll_shutdown(cx),
                    $name::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
                }
            }
        }
    };
}

/// Vectored writes up to this many bytes are copied into one buffer and sent with one send(2):
/// hyper writes a message's head and body as two slices, and for the small messages of most
/// requests writev(2)'s extra VFS work (fdget_pos, rw_verify_area, iovec import) costs more than
/// the copy (~0.4 µs a request on loopback in benches/load profiles). Larger writes stay vectored.
const COALESCE_WRITES_UP_TO: usize = 1024;

fn poll_write_coalesced(
    stream: Pin<&mut TcpStream>,
    cx: &mut Context<'_>,
    bufs: &[io::IoSlice<'_>],
) -> Poll<io::Result<usize>> {
    // One slice needs no copy.
    if let [only] = bufs {
        return stream.poll_write(cx, only);
    }
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    if total > COALESCE_WRITES_UP_TO {
        return stream.poll_write_vectored(cx, bufs);
    }
    let mut joined = [0u8; COALESCE_WRITES_UP_TO];
    let mut len = 0;
    for b in bufs {
        joined[len..len + b.len()].copy_from_slice(b);
        len += b.len();
    }
    // Bytes written are counted from the front of the concatenation, as writev(2) counts them.
    stream.poll_write(cx, &joined[..len])
}

either_stream!(ServerStream, tokio_rustls::server::TlsStream<TcpStream>);
either_stream!(ClientStream, tokio_rustls::client::TlsStream<TcpStream>);

impl ServerStream {
    /// The negotiated ALPN protocol, if any.
    pub fn alpn(&self) -> Option<&[u8]> {
        match self {
            ServerStream::Plain(_) => None,
            ServerStream::Tls(s) => s.get_ref().1.alpn_protocol(),
        }
    }
}
