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
