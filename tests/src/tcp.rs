//! Raw TCP upstreams for the L4 tests: an echo server (that can say hello first), and a server
//! that reports half-close.
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub struct TcpEcho {
    pub addr: SocketAddr,
    pub name: String,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TcpEcho {
    /// Echoes every byte back. With `banner`, sends "{banner}\n" first, before reading anything
    /// (a server-speaks-first protocol). When the client half-closes, it writes "bye {n}\n" (n =
    /// bytes it received) and closes.
    pub async fn start(name: &str, banner: Option<&str>) -> TcpEcho {
        Self::start_on("127.0.0.1:0".parse().expect("addr"), name, banner).await
    }

    /// The same, on a chosen address.
    pub async fn start_on(addr: SocketAddr, name: &str, banner: Option<&str>) -> TcpEcho {
        let listener = TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let (count, banner) = (Arc::clone(&connections), banner.map(str::to_owned));
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let banner = banner.clone();
                tokio::spawn(async move {
                    if let Some(b) = banner {
                        let _ = s.write_all(format!("{b}\n").as_bytes()).await;
                    }
                    let mut buf = vec![0u8; 65536];
                    let mut total = 0usize;
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                total += n;
                                if s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    let _ = s.write_all(format!("bye {total}\n").as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        TcpEcho {
            addr,
            name: name.to_owned(),
            connections,
            task,
        }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for TcpEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A listener on 127.0.0.1 whose accept queue holds one connection (backlog 1). Once
/// [`fill_accept_queue`] has filled it, the kernel drops the SYN of any new connection to it, so
/// connecting hangs, as toward a saturated upstream or an address whose host is gone.
pub fn backlog_one_listener() -> tokio::net::TcpListener {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("address"))
        .expect("bind");
    socket.listen(1).expect("listen")
}

/// Fills `addr`'s accept queue with connections that stay open while the returned streams live.
pub async fn fill_accept_queue(addr: std::net::SocketAddr) -> Vec<tokio::net::TcpStream> {
    let mut fillers = Vec::new();
    for _ in 0..3 {
        let connect = tokio::net::TcpStream::connect(addr);
        if let Ok(Ok(s)) =
            tokio::time::timeout(std::time::Duration::from_millis(200), connect).await
        {
            fillers.push(s);
        }
    }
    assert!(!fillers.is_empty(), "the accept queue took a connection");
    fillers
}
