//! Zero-copy TCP proxying on Linux: bytes move socket → pipe → socket inside the kernel with
//! splice(2), never through a user-space buffer. For bulk transfers this halves the memory
//! copies per byte and the read/write system calls of a plain copy loop, which is what bounds a
//! TCP proxy's throughput. Used when neither side is TLS (TLS needs the bytes in user space).
//!
//! Each direction gets its own pipe, created on the first byte (an idle connection holds no
//! pipe), and keeps half-close: EOF from one side is passed on as a write shutdown of the other
//! while the reverse direction keeps flowing.
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::pipe::{PipeFlags, SpliceFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::http::ConnActivity;

/// The pipe's capacity asked for, and the bytes asked of one splice call.
const PIPE_SIZE: usize = 256 * 1024;
const CHUNK: usize = PIPE_SIZE;

/// Copies `client` ⇄ `upstream` until both directions end. Returns the bytes sent
/// client → upstream and upstream → client.
pub async fn bidirectional(
    client: &TcpStream,
    upstream: &TcpStream,
    activity: &ConnActivity,
) -> io::Result<(u64, u64)> {
    tokio::try_join!(
        one_way(client, upstream, activity),
        one_way(upstream, client, activity)
    )
}

/// One direction: splice `from` into a pipe, then the pipe into `to`, until `from` ends.
async fn one_way(from: &TcpStream, to: &TcpStream, activity: &ConnActivity) -> io::Result<u64> {
    let mut pipe: Option<(OwnedFd, OwnedFd)> = None;
    let mut total = 0u64;
    loop {
        from.readable().await?;
        let (pipe_r, pipe_w) = match &pipe {
            Some(p) => p,
            None => {
                let (r, w) = rustix::pipe::pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
                // A larger pipe moves more per pair of calls; the kernel's limit for
                // unprivileged processes (fs.pipe-max-size, 1 MiB by default) may refuse it, and
                // the default 64 KiB still works.
                let _ = rustix::pipe::fcntl_setpipe_size(&w, PIPE_SIZE);
                pipe.insert((r, w))
            }
        };
        // The pipe is empty here, so "would block" can only mean `from` has nothing to read:
        // tokio may then clear the readiness without missing data.
        let read = from.try_io(Interest::READABLE, || splice(from, pipe_w, CHUNK));
        let mut in_pipe = match read {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        activity.touch();
        let mut eof = false;
        // Drain the pipe, topping it up from `from` between writes so that reading and writing
        // overlap. A top-up that would block is ambiguous (nothing to read, or a full pipe), so
        // it is made outside tokio's readiness tracking and clears nothing.
        while in_pipe > 0 {
            if !eof && in_pipe < CHUNK {
                match splice(from, pipe_w, CHUNK - in_pipe) {
                    Ok(0) => eof = true,
                    Ok(n) => in_pipe += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            // Awaited every time, not only after "would block": it also spends the task's
            // scheduling budget, so a connection that never blocks still lets others run.
            to.writable().await?;
            let wrote = to.try_io(Interest::WRITABLE, || splice(pipe_r, to, in_pipe));
            match wrote {
                Ok(n) => {
                    in_pipe -= n;
                    total += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        activity.touch();
        if eof {
            break;
        }
    }
    // EOF from `from`: pass the half-close on; the other direction keeps flowing. A peer that
    // is already gone has nothing to be told.
    match socket2::SockRef::from(to).shutdown(std::net::Shutdown::Write) {
        Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
        _ => Ok(total),
    }
}

/// One non-blocking splice of up to `len` bytes.
fn splice(from: impl AsFd, to: impl AsFd, len: usize) -> io::Result<usize> {
    rustix::pipe::splice(
        from,
        None,
        to,
        None,
        len,
        SpliceFlags::NONBLOCK | SpliceFlags::MOVE,
    )
    .map_err(io::Error::from)
}
