//! A scripted raw HTTP/1.1 upstream: it answers requests in order from a script, byte for byte,
//! whatever connection they come on, and counts connections. For tests of how the proxy frames,
//! reuses and closes HTTP/1.1 connections on both sides.
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::{ProxyProcess, table_yaml};

/// The upstream's answer when the script has run out.
pub const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// What the upstream does with one request.
#[derive(Clone, Copy)]
pub enum Reply {
    /// Writes these bytes and keeps the connection.
    Send(&'static [u8]),
    /// Writes these bytes and closes the connection.
    SendAndClose(&'static [u8]),
    /// Writes these parts one at a time, 20 ms apart, and keeps the connection: a response that
    /// reaches the proxy over several reads.
    SendInParts(&'static [&'static [u8]]),
    /// Closes the connection without answering.
    Close,
}

/// A raw upstream that answers requests in order from a script (then `OK`), whatever connection
/// they come on, and counts connections.
pub struct Scripted {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Scripted {
    pub async fn start(script: &[Reply]) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let (count, seen) = (Arc::clone(&connections), Arc::clone(&requests));
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let (script, seen) = (Arc::clone(&script), Arc::clone(&seen));
                tokio::spawn(serve(s, script, seen));
            }
        });
        Scripted {
            addr,
            connections,
            requests,
            task,
        }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve(
    mut s: TcpStream,
    script: Arc<Mutex<VecDeque<Reply>>>,
    seen: Arc<Mutex<Vec<String>>>,
) {
    let mut buf = Vec::new();
    loop {
        let Some(request) = read_request(&mut s, &mut buf).await else {
            return;
        };
        seen.lock().unwrap().push(request);
        let reply = script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Reply::Send(OK));
        match reply {
            Reply::Send(bytes) => {
                if s.write_all(bytes).await.is_err() {
                    return;
                }
            }
            Reply::SendInParts(parts) => {
                for part in parts {
                    if s.write_all(part).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
            Reply::SendAndClose(bytes) => {
                let _ = s.write_all(bytes).await;
                return;
            }
            Reply::Close => return,
        }
    }
}

/// Reads one request (head and Content-Length body) as text.
pub async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
                buf.drain(..end + 4 + length);
                return Some(head + &body);
            }
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The body of a response the proxy sent with Content-Length or close-delimited (Ferry re-frames
/// chunked bodies for HTTP/1.1 clients: decoded here).
pub fn body(response: &str) -> String {
    let (head, rest) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return rest.to_owned();
    }
    let mut out = String::new();
    let mut rest = rest;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].strip_prefix("\r\n").unwrap_or("");
    }
    out
}

/// A proxy whose listener `web` sends every request to `up` (an `HTTP1` cluster `a`), and the
/// listener's address.
pub async fn proxy_to(up: SocketAddr) -> (ProxyProcess, SocketAddr) {
    const ROUTES: &str = "- name: app\n  match: { prefix: / }\n  action: { weightedTargets: [{ cluster: a, weight: 1 }] }\n";
    let yaml = table_yaml(ROUTES, &[("a", &[up], "HTTP1")]);
    let proxy = ProxyProcess::start(&yaml).await.expect("proxy starts");
    let addr = proxy.listener("web").await.expect("listener");
    (proxy, addr)
}
