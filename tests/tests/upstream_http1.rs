//! The direct HTTP/1.1 upstream client (issue #7) against a scripted raw upstream: every way an
//! HTTP/1.1 response can be framed, how connections are reused or not, and upstreams that close
//! or die at the worst moment. Clients see exactly what they would through hyper's client.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failures should be loud
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_tests::{ProxyProcess, status_of as status, table_yaml};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const ROUTES: &str = "- name: app\n  match: { prefix: / }\n  action: { weightedTargets: [{ cluster: a, weight: 1 }] }\n";
const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// What the upstream does with one request.
#[derive(Clone, Copy)]
enum Reply {
    /// Writes these bytes and keeps the connection.
    Send(&'static [u8]),
    /// Writes these bytes and closes the connection.
    SendAndClose(&'static [u8]),
    /// Closes the connection without answering.
    Close,
}

/// A raw upstream that answers requests in order from a script (then `OK`), whatever connection
/// they come on, and counts connections.
struct Scripted {
    addr: SocketAddr,
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
    async fn start(script: &[Reply]) -> Scripted {
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

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<String> {
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
            Reply::SendAndClose(bytes) => {
                let _ = s.write_all(bytes).await;
                return;
            }
            Reply::Close => return,
        }
    }
}

/// Reads one request (head and Content-Length body) as text.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
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

/// Sends one request on a new client connection and reads until the proxy closes it.
async fn request(proxy: SocketAddr, method: &str, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let length = if body.is_empty() {
        String::new()
    } else {
        format!("content-length: {}\r\n", body.len())
    };
    let req =
        format!("{method} {path} HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n{length}\r\n{body}");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The body of a response the proxy sent with Content-Length or close-delimited (Ferry re-frames
/// chunked bodies for HTTP/1.1 clients: decoded here).
fn body(response: &str) -> String {
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

async fn proxy_for(up: &Scripted) -> (ProxyProcess, SocketAddr) {
    let yaml = table_yaml(ROUTES, &[("a", &[up.addr], "HTTP1")]);
    let proxy = ProxyProcess::start(&yaml).await.expect("proxy starts");
    let addr = proxy.listener("web").await.expect("listener");
    (proxy, addr)
}

#[tokio::test]
async fn keep_alive_connections_are_reused_across_framings() {
    let up = Scripted::start(&[
        Reply::Send(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-up: 1\r\nconnection: keep-alive, x-hop\r\nkeep-alive: timeout=5\r\nx-hop: secret\r\n\r\nhello"),
        Reply::Send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nx-trailer: t\r\n\r\n"),
        Reply::Send(b"HTTP/1.1 204 No Content\r\n\r\n"),
        Reply::Send(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nlast"),
    ])
    .await;
    let (_proxy, addr) = proxy_for(&up).await;

    let r = request(addr, "GET", "/a?x=1", "").await;
    assert_eq!((status(&r), body(&r).as_str()), (200, "hello"), "{r}");
    assert!(r.contains("x-up: 1"), "{r}");
    // Hop-by-hop fields, and the header the upstream's Connection named, stay on their hop.
    assert!(!r.contains("x-hop") && !r.contains("timeout=5"), "{r}");
    let r = request(addr, "GET", "/b", "").await;
    assert_eq!((status(&r), body(&r).as_str()), (200, "abcdefg"), "{r}");
    let r = request(addr, "GET", "/c", "").await;
    assert_eq!(status(&r), 204, "{r}");
    let r = request(addr, "GET", "/d", "").await;
    assert_eq!((status(&r), body(&r).as_str()), (200, "last"), "{r}");
    let r = request(addr, "HEAD", "/e", "").await;
    assert_eq!((status(&r), body(&r).as_str()), (200, ""), "{r}");
    assert_eq!(
        up.connections(),
        1,
        "every response left the connection reusable"
    );

    // The request line and headers reached the upstream as the client sent them.
    let seen = up.requests();
    assert!(
        seen[0].starts_with("GET /a?x=1 HTTP/1.1\r\n"),
        "{}",
        seen[0]
    );
    assert!(seen[0].contains("host: svc\r\n"), "{}", seen[0]);
    assert!(
        !seen[0].to_ascii_lowercase().contains("connection: close"),
        "hop-by-hop header forwarded: {}",
        seen[0]
    );
    assert!(seen[4].starts_with("HEAD /e HTTP/1.1\r\n"), "{}", seen[4]);
}

#[tokio::test]
async fn a_request_with_a_body_reuses_the_idle_connection_too() {
    let up = Scripted::start(&[]).await;
    let (_proxy, addr) = proxy_for(&up).await;
    assert_eq!(status(&request(addr, "GET", "/", "").await), 200);
    let r = request(addr, "POST", "/submit", "payload").await;
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(status(&request(addr, "GET", "/", "").await), 200);
    assert!(
        up.requests()[1].ends_with("\r\n\r\npayload"),
        "{:?}",
        up.requests()
    );
    // Bodiless requests use Ferry's client, the POST hyper's: the POST took the idle connection.
    assert_eq!(
        up.connections(),
        2,
        "the hyper connection is kept; only one more was opened"
    );
    // A bodiless POST says it has no body, so the upstream does not wait for one.
    let r = request(addr, "POST", "/empty", "").await;
    assert_eq!(status(&r), 200, "{r}");
    let last = up.requests().pop().unwrap();
    assert!(last.contains("content-length: 0\r\n"), "{last}");
}

#[tokio::test]
async fn responses_that_forbid_reuse_close_the_connection() {
    let up = Scripted::start(&[
        // Close-delimited: no length, no chunking.
        Reply::SendAndClose(b"HTTP/1.1 200 OK\r\n\r\nuntil close"),
        Reply::Send(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nc1"),
        // Both Transfer-Encoding and Content-Length: chunked wins, and the connection is done.
        Reply::Send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 99\r\n\r\n2\r\nte\r\n0\r\n\r\n"),
        // An HTTP/1.0 response without keep-alive.
        Reply::Send(b"HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\nold"),
        // Bytes after the response that nobody asked for.
        Reply::Send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nextra"),
    ])
    .await;
    let (_proxy, addr) = proxy_for(&up).await;
    for (n, want) in ["until close", "c1", "te", "old", "ok", "ok"]
        .iter()
        .enumerate()
    {
        let r = request(addr, "GET", "/", "").await;
        assert_eq!(
            (status(&r), body(&r).as_str()),
            (200, *want),
            "request {n}: {r}"
        );
    }
    assert_eq!(
        up.connections(),
        6,
        "no connection was reused after a response that forbids it"
    );
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_retried_for_idempotent_requests_only() {
    let up = Scripted::start(&[Reply::Send(OK), Reply::Close, Reply::Send(OK), Reply::Close]).await;
    let (proxy, addr) = proxy_for(&up).await;
    assert_eq!(status(&request(addr, "GET", "/", "").await), 200);
    // The upstream closes the kept-alive connection as the GET arrives, without answering: the
    // GET goes again on a new connection and the client never knows.
    let r = request(addr, "GET", "/again", "").await;
    assert_eq!((status(&r), body(&r).as_str()), (200, "ok"), "{r}");
    assert_eq!(up.connections(), 2);
    // A bodiless POST is not idempotent: the upstream may have acted on it, so it is not resent.
    let r = request(addr, "POST", "/once", "").await;
    assert_eq!(status(&r), 503, "{r}");
    assert!(r.contains("connection closed before a response"), "{r}");
    assert_eq!(
        up.requests()
            .iter()
            .filter(|r| r.starts_with("POST /once"))
            .count(),
        1
    );
    // The proxy keeps serving.
    assert_eq!(status(&request(addr, "GET", "/", "").await), 200);
    drop(proxy);
}

#[tokio::test]
async fn an_upstream_that_dies_mid_body_truncates_the_response_and_is_not_reused() {
    let up = Scripted::start(&[
        Reply::SendAndClose(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b"),
        Reply::SendAndClose(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel"),
        Reply::Send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"),
        Reply::Send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nabc"),
        Reply::Send(b"NOT HTTP AT ALL\r\n\r\n"),
    ])
    .await;
    let (proxy, addr) = proxy_for(&up).await;
    let r = request(addr, "GET", "/", "").await;
    assert_eq!(status(&r), 200, "{r}");
    assert!(r.contains("content-length: 100"), "{r}");
    assert_eq!(
        body(&r),
        "only ten b",
        "the client gets what arrived, then the connection closes"
    );
    let r = request(addr, "GET", "/", "").await;
    assert_eq!(status(&r), 200, "{r}");
    assert!(
        !r.ends_with("0\r\n\r\n"),
        "a truncated chunked body must not look complete: {r}"
    );
    let r = request(addr, "GET", "/", "").await;
    assert_eq!(status(&r), 200, "{r}");
    assert!(
        !r.ends_with("0\r\n\r\n"),
        "a malformed chunked body must not look complete: {r}"
    );
    for what in ["conflicting lengths", "a malformed head"] {
        let r = request(addr, "GET", "/", "").await;
        assert_eq!(status(&r), 503, "{what}: {r}");
    }
    let r = request(addr, "GET", "/", "").await;
    assert_eq!((status(&r), body(&r).as_str()), (200, "ok"), "{r}");
    assert_eq!(up.connections(), 6, "no broken connection was reused");
    let log = proxy.metrics().await;
    assert!(
        log.contains("ferry_http_upstream_requests_total{cluster=\"a\",code_class=\"5xx\"} 2"),
        "{log}"
    );
}

#[tokio::test]
async fn idle_connections_the_upstream_closes_are_closed_without_traffic() {
    let up = Scripted::start(&[Reply::SendAndClose(OK), Reply::SendAndClose(OK)]).await;
    // The upstream's FIN arrives after the response has been read and the connection pooled (the
    // response carries no `connection: close`), so only the reaper can notice it.
    let (proxy, addr) = proxy_for(&up).await;
    assert_eq!(status(&request(addr, "GET", "/", "").await), 200);
    let series = "ferry_upstream_connections_active{cluster=\"a\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.metric(series).await != 0.0 {
        assert!(
            Instant::now() < deadline,
            "the half-closed idle connection was never closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn large_bodies_arrive_whole_and_the_connection_is_reused() {
    let payload: Vec<u8> = (0..4 * 1024 * 1024u32)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    let mut sized = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
        payload.len()
    )
    .into_bytes();
    sized.extend_from_slice(&payload);
    let mut chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for part in payload.chunks(300_000) {
        chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        chunked.extend_from_slice(part);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    // Leaked: the script holds 'static replies, and these live as long as the test anyway.
    let up = Scripted::start(&[
        Reply::Send(Box::leak(sized.into_boxed_slice())),
        Reply::Send(Box::leak(chunked.into_boxed_slice())),
    ])
    .await;
    let (_proxy, addr) = proxy_for(&up).await;
    let want = String::from_utf8(payload).unwrap();
    for framing in ["sized", "chunked"] {
        let r = request(addr, "GET", "/big", "").await;
        assert_eq!(status(&r), 200, "{framing}");
        let got = body(&r);
        assert_eq!(got.len(), want.len(), "{framing}: length");
        assert!(got == want, "{framing}: the bytes differ");
    }
    let r = request(addr, "GET", "/small", "").await;
    assert_eq!((status(&r), body(&r).as_str()), (200, "ok"), "{r}");
    assert_eq!(
        up.connections(),
        1,
        "one connection carried both large bodies and the next request"
    );
}
