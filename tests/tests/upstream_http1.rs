//! The direct HTTP/1.1 upstream client (issue #7) against a scripted raw upstream: every way an
//! HTTP/1.1 response can be framed, how connections are reused or not, and upstreams that close
//! or die at the worst moment. Clients see exactly what they would through hyper's client.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failures should be loud
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferry_tests::scripted::{OK, Reply, Scripted, body, proxy_to, read_request};
use ferry_tests::status_of as status;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

#[tokio::test]
async fn keep_alive_connections_are_reused_across_framings() {
    let up = Scripted::start(&[
        Reply::Send(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-up: 1\r\nconnection: keep-alive, x-hop\r\nkeep-alive: timeout=5\r\nx-hop: secret\r\n\r\nhello"),
        Reply::Send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nx-trailer: t\r\n\r\n"),
        Reply::Send(b"HTTP/1.1 204 No Content\r\n\r\n"),
        Reply::Send(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nlast"),
    ])
    .await;
    let (_proxy, addr) = proxy_to(up.addr).await;

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
    let (_proxy, addr) = proxy_to(up.addr).await;
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
    let (_proxy, addr) = proxy_to(up.addr).await;
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
    let (proxy, addr) = proxy_to(up.addr).await;
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
    let (proxy, addr) = proxy_to(up.addr).await;
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
    let (proxy, addr) = proxy_to(up.addr).await;
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
    let (_proxy, addr) = proxy_to(up.addr).await;
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

/// A response of exactly `total` bytes, head included, with a body of one repeated letter; and
/// the body's length.
fn response_of(total: usize, letter: u8) -> (&'static [u8], usize) {
    // The head's length depends on the digits of the body's length; two tries settle it.
    let mut body_len = total;
    for _ in 0..2 {
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {body_len}\r\n\r\n");
        body_len = total - head.len();
    }
    let mut r = format!("HTTP/1.1 200 OK\r\ncontent-length: {body_len}\r\n\r\n").into_bytes();
    r.resize(total, letter);
    // Leaked: the script holds 'static replies, and these live as long as the test anyway.
    (Box::leak(r.into_boxed_slice()), body_len)
}

#[tokio::test]
async fn responses_that_arrive_in_parts_or_fill_a_read_are_read_whole() {
    // An idle pooled connection holds no read buffer: a response read with nothing buffered
    // goes through the worker's 8 KiB scratch, and one that fills it is read on into the
    // connection's own buffer. The sizes straddle that boundary.
    let sizes = [8191, 8192, 8193, 16 * 1024 + 1, 100_000];
    let mut script = vec![Reply::SendInParts(&[
        b"HTTP/1.1 200 OK\r\ncontent-le",
        b"ngth: 5\r\nx-up: parts\r\n\r\nhe",
        b"llo",
    ])];
    let mut body_lens = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        let (response, body_len) = response_of(n, b'a' + i as u8);
        script.push(Reply::Send(response));
        body_lens.push(body_len);
    }
    let up = Scripted::start(&script).await;
    let (_proxy, addr) = proxy_to(up.addr).await;

    let r = request(addr, "GET", "/parts", "").await;
    assert_eq!((status(&r), body(&r).as_str()), (200, "hello"), "{r}");
    assert!(r.to_ascii_lowercase().contains("x-up: parts"), "{r}");
    for (i, (&n, &body_len)) in sizes.iter().zip(&body_lens).enumerate() {
        let r = request(addr, "GET", "/sized", "").await;
        assert_eq!(status(&r), 200, "{n}-byte response");
        let got = body(&r);
        assert!(
            got.len() == body_len && got.bytes().all(|b| b == b'a' + i as u8),
            "{n}-byte response: a body of {} bytes arrived, {body_len} were sent",
            got.len()
        );
    }
    let r = request(addr, "GET", "/small", "").await;
    assert_eq!((status(&r), body(&r).as_str()), (200, "ok"), "{r}");
    assert_eq!(
        up.connections(),
        1,
        "one pooled connection carried every response"
    );
}

/// An upstream that serves its first connection and accepts no other until released. Each
/// response's body names its connection ("conn1"); `GET /slow` is answered after 400 ms, followed
/// in the same write by `after_slow`. Its accept queue (backlog 1) is meant to be filled (see
/// `fill_accept_queue`): the kernel then drops the SYN of any new connection to it, and opening
/// one stays pending, as toward a saturated or distant upstream.
fn held_upstream(
    after_slow: &'static str,
) -> (
    SocketAddr,
    std::sync::Arc<tokio::sync::Notify>,
    tokio::task::JoinHandle<()>,
) {
    let listener = ferry_tests::tcp::backlog_one_listener();
    let up = listener.local_addr().unwrap();
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let released = std::sync::Arc::clone(&release);
    let server = tokio::spawn(async move {
        let mut id = 0;
        while let Ok((mut s, _)) = listener.accept().await {
            id += 1;
            let conn = id;
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(req) = read_request(&mut s, &mut buf).await {
                    let slow = req.starts_with("GET /slow ");
                    if slow {
                        tokio::time::sleep(Duration::from_millis(400)).await;
                    }
                    let body = format!("conn{conn}");
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}{}",
                        body.len(),
                        if slow { after_slow } else { "" }
                    );
                    if s.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
            if conn == 1 {
                released.notified().await;
            }
        }
    });
    (up, release, server)
}

#[tokio::test]
async fn a_request_waiting_for_a_new_connection_takes_one_freed_meanwhile() {
    let (up, release, server) = held_upstream("");
    let (_proxy, proxy) = proxy_to(up).await;
    assert_eq!(body(&request(proxy, "GET", "/first", "").await), "conn1");

    // Fill the accept queue; connections beyond it hang in SYN, which is the point.
    let fillers = ferry_tests::tcp::fill_accept_queue(up).await;

    // The slow request holds the one pooled connection; the next one opens a connection that
    // cannot complete, and is carried by the pooled one when the slow response has been sent.
    let slow = tokio::spawn(async move { request(proxy, "GET", "/slow", "").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let next = request(proxy, "GET", "/next", "").await;
    assert_eq!(body(&slow.await.unwrap()), "conn1");
    assert_eq!(body(&next), "conn1", "{next}");

    release.notify_one();
    drop(fillers);
    server.abort();
}

#[tokio::test]
async fn a_connection_with_bytes_after_its_response_is_not_handed_to_a_waiting_request() {
    // The slow response is followed, in the same write, by a whole second response that nobody
    // asked for. Handed to the request waiting for a connection, the connection would give it
    // that response instead of its own: the upstream would answer one client with bytes it
    // sent before that client's request was even written.
    let (up, release, server) = held_upstream("HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nevil");
    let (_proxy, proxy) = proxy_to(up).await;
    assert_eq!(body(&request(proxy, "GET", "/first", "").await), "conn1");
    let fillers = ferry_tests::tcp::fill_accept_queue(up).await;

    let slow = tokio::spawn(async move { request(proxy, "GET", "/slow", "").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let next = tokio::spawn(async move { request(proxy, "GET", "/next", "").await });
    assert_eq!(body(&slow.await.unwrap()), "conn1");
    // The connection that carried the slow response is closed, not handed over: the next
    // request waits for its own, which completes once the upstream accepts again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    release.notify_one();
    drop(fillers);
    let next = next.await.unwrap();
    let got = body(&next);
    assert_eq!(status(&next), 200, "{next}");
    assert!(
        got.starts_with("conn") && got != "conn1",
        "the next request got {got:?}, not an answer on a connection of its own"
    );
    server.abort();
}
