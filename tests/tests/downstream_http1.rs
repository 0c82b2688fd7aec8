//! Ferry's own HTTP/1.1 server (issue #7) from a raw client socket: keep-alive and pipelining,
//! every response framing, HTTP/1.0 clients, `Connection: close`, the hand-over to hyper's server
//! mid-connection for requests it does not take (bodies, `Expect`, smuggling attempts, malformed
//! heads), an upstream that dies mid-body, and draining. A client sees exactly what hyper's server
//! would have sent.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failures should be loud
use std::net::SocketAddr;
use std::time::Duration;

use ferry_tests::scripted::{Reply, Scripted, proxy_to};
use ferry_tests::{ProxyProcess, Upstream, UpstreamProtocol, table_yaml};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

/// One response as the client read it.
#[derive(Debug)]
struct Response {
    status: u16,
    /// The head, lower-cased.
    head: String,
    body: Vec<u8>,
    chunked: bool,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|r| r.strip_prefix(": "))
                .map(str::trim)
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw client connection that reads responses by their framing.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        Conn {
            s: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &str) {
        self.s.write_all(bytes.as_bytes()).await.unwrap();
    }

    /// Reads more; false at EOF (or a reset).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout(WAIT, self.s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Ok(_) => false,
            Err(_) => panic!("no answer within {WAIT:?}; have {:?}", self.text()),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    /// The next response; `head_request`: it answers a HEAD (no body whatever it says).
    async fn response(&mut self, head_request: bool) -> Option<Response> {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if !self.fill().await {
                return None;
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
        self.buf.drain(..end);
        let status: u16 = head[9..12].parse().unwrap();
        let mut resp = Response {
            status,
            head,
            body: Vec::new(),
            chunked: false,
        };
        if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
            return Some(resp);
        }
        if resp.header("transfer-encoding") == Some("chunked") {
            resp.chunked = true;
            loop {
                let line_end = loop {
                    if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    assert!(self.fill().await, "chunked body cut: {resp:?}");
                };
                let size = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
                let size = usize::from_str_radix(size.split(';').next().unwrap(), 16).unwrap();
                self.buf.drain(..line_end + 2);
                if size == 0 {
                    // Trailers, then the empty line.
                    loop {
                        if self.buf.starts_with(b"\r\n") {
                            self.buf.drain(..2);
                            return Some(resp);
                        }
                        if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                            let line = String::from_utf8_lossy(&self.buf[..i]).to_ascii_lowercase();
                            resp.head.push_str(&format!("trailer-field {line}\r\n"));
                            self.buf.drain(..i + 2);
                            continue;
                        }
                        assert!(self.fill().await, "trailers cut: {resp:?}");
                    }
                }
                while self.buf.len() < size + 2 {
                    assert!(self.fill().await, "chunk cut: {resp:?}");
                }
                resp.body.extend_from_slice(&self.buf[..size]);
                assert_eq!(&self.buf[size..size + 2], b"\r\n");
                self.buf.drain(..size + 2);
            }
        }
        if let Some(n) = resp.header("content-length") {
            let n: usize = n.parse().unwrap();
            while self.buf.len() < n {
                if !self.fill().await {
                    // Cut short: what arrived is the body; the caller checks.
                    break;
                }
            }
            let n = n.min(self.buf.len());
            resp.body = self.buf.drain(..n).collect();
            return Some(resp);
        }
        while self.fill().await {}
        resp.body = std::mem::take(&mut self.buf);
        Some(resp)
    }

    /// Whether the proxy closed the connection (reads EOF with nothing more).
    async fn closed(&mut self) -> bool {
        !self.fill().await && self.buf.is_empty()
    }
}

#[tokio::test]
async fn keep_alive_and_pipelining_with_every_framing() {
    let up = Scripted::start(&[
        Reply::Send(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-up: 1\r\n\r\nhello"),
        Reply::Send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\nx-sum: 7\r\n\r\n"),
        Reply::Send(b"HTTP/1.1 204 No Content\r\n\r\n"),
        Reply::Send(b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n"),
        Reply::Send(b"HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\n\r\n"),
    ])
    .await;
    let (_proxy, addr) = proxy_to(up.addr).await;
    let mut c = Conn::open(addr).await;
    // Three requests in one write: answered in order on the one connection.
    c.send("GET /1 HTTP/1.1\r\nhost: svc\r\n\r\nGET /2 HTTP/1.1\r\nhost: svc\r\n\r\nDELETE /3 HTTP/1.1\r\nhost: svc\r\ncontent-length: 0\r\n\r\n").await;
    let r = c.response(false).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "hello"), "{r:?}");
    assert_eq!(r.header("x-up"), Some("1"));
    assert_eq!(r.header("content-length"), Some("5"));
    assert!(r.header("date").is_some(), "a date is added: {r:?}");
    assert!(r.header("connection").is_none(), "{r:?}");
    let r = c.response(false).await.unwrap();
    // The upstream's chunked body of unknown length is chunked again. `Trailer` is hop-by-hop
    // (RFC 2616 §13.5.1), so no trailer field is announced and none is sent, as with hyper.
    assert_eq!((r.status, r.text().as_str()), (200, "abcdefg"), "{r:?}");
    assert!(r.chunked && !r.head.contains("x-sum"), "{r:?}");
    let r = c.response(false).await.unwrap();
    assert_eq!(r.status, 204, "{r:?}");
    assert!(r.header("content-length").is_none(), "{r:?}");
    // HEAD: the length a GET would get, no body.
    c.send("HEAD /4 HTTP/1.1\r\nhost: svc\r\n\r\n").await;
    let r = c.response(true).await.unwrap();
    assert_eq!(
        (r.status, r.header("content-length")),
        (200, Some("1234")),
        "{r:?}"
    );
    c.send("GET /5 HTTP/1.1\r\nhost: svc\r\nif-none-match: \"v1\"\r\n\r\n")
        .await;
    let r = c.response(false).await.unwrap();
    assert_eq!((r.status, r.header("etag")), (304, Some("\"v1\"")), "{r:?}");
    // The connection is still open.
    c.send("GET /6 HTTP/1.1\r\nhost: svc\r\n\r\n").await;
    let r = c.response(false).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{r:?}");
    assert_eq!(up.requests().len(), 6);
    assert!(
        up.requests()[2].starts_with("DELETE /3 HTTP/1.1\r\n"),
        "{:?}",
        up.requests()
    );
}

#[tokio::test]
async fn request_heads_that_arrive_in_parts_or_fill_a_read_are_read_whole() {
    // A connection between requests holds no read buffer: the next head is read through the
    // worker's 8 KiB scratch, and a head that arrives in parts, or fills that read, is read on
    // into a buffer of the connection's own.
    let up = Scripted::start(&[]).await;
    let (_proxy, addr) = proxy_to(up.addr).await;
    let mut c = Conn::open(addr).await;
    for part in [
        "GET /parts HTTP/1.1\r\nho",
        "st: svc\r\nx-part: 1",
        "\r\n\r\n",
    ] {
        c.send(part).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let r = c.response(false).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{r:?}");

    // A 3 KiB head that trickles in, 200 bytes at a time: the buffer grows with it.
    let trickled = format!(
        "GET /trickled HTTP/1.1\r\nhost: svc\r\nx-slow: {}\r\n\r\n",
        "s".repeat(3000)
    );
    for part in trickled.as_bytes().chunks(200) {
        c.s.write_all(part).await.unwrap();
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let r = c.response(false).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{r:?}");

    // A 20 KiB head, then a small request in the same write.
    let long = "v".repeat(20 * 1024);
    c.send(&format!(
        "GET /long HTTP/1.1\r\nhost: svc\r\nx-long: {long}\r\n\r\nGET /after HTTP/1.1\r\nhost: svc\r\n\r\n"
    ))
    .await;
    for _ in 0..2 {
        let r = c.response(false).await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{r:?}");
    }
    let seen = up.requests();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(
        seen[0].starts_with("GET /parts HTTP/1.1\r\n") && seen[0].contains("x-part: 1\r\n"),
        "{:?}",
        seen[0]
    );
    assert!(
        seen[1].starts_with("GET /trickled HTTP/1.1\r\n")
            && seen[1].contains(&format!("x-slow: {}\r\n", "s".repeat(3000))),
        "the trickled header arrived whole"
    );
    assert!(
        seen[2].starts_with("GET /long HTTP/1.1\r\n")
            && seen[2].contains(&format!("x-long: {long}\r\n")),
        "the long header arrived whole"
    );
    assert!(
        seen[3].starts_with("GET /after HTTP/1.1\r\n"),
        "{:?}",
        seen[3]
    );
}

#[tokio::test]
async fn http10_clients_and_connection_close() {
    let up = Scripted::start(&[]).await;
    let (_proxy, addr) = proxy_to(up.addr).await;

    // HTTP/1.0 without keep-alive: an HTTP/1.0 answer, then the connection closes.
    let mut c = Conn::open(addr).await;
    c.send("GET / HTTP/1.0\r\nhost: svc\r\n\r\n").await;
    let r = c.response(false).await.unwrap();
    assert!(r.head.starts_with("http/1.0 200 ok\r\n"), "{r:?}");
    assert_eq!(r.text(), "ok");
    assert!(c.closed().await, "HTTP/1.0 without keep-alive closes");

    // HTTP/1.0 with keep-alive: told so, and the connection carries a second request.
    let mut c = Conn::open(addr).await;
    for _ in 0..2 {
        c.send("GET / HTTP/1.0\r\nhost: svc\r\nconnection: keep-alive\r\n\r\n")
            .await;
        let r = c.response(false).await.unwrap();
        assert_eq!(r.header("connection"), Some("keep-alive"), "{r:?}");
        assert_eq!(r.text(), "ok");
    }

    // HTTP/1.1 with Connection: close: the answer says close, then the connection closes.
    let mut c = Conn::open(addr).await;
    c.send("GET / HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n")
        .await;
    let r = c.response(false).await.unwrap();
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert!(c.closed().await);

    // HEAD through a fresh connection: the length of the GET, no body, still open after.
    let mut c = Conn::open(addr).await;
    c.send("GET / HTTP/1.1\r\nhost: svc\r\n\r\n").await;
    assert_eq!(c.response(false).await.unwrap().status, 200);
    c.send("HEAD / HTTP/1.1\r\nhost: svc\r\n\r\n").await;
    let r = c.response(true).await.unwrap();
    assert_eq!(
        (r.status, r.header("content-length")),
        (200, Some("2")),
        "{r:?}"
    );
}

#[tokio::test]
async fn hyper_takes_over_for_requests_with_bodies_and_odd_heads() {
    let up = Scripted::start(&[]).await;
    let (proxy, addr) = proxy_to(up.addr).await;

    // A bodiless request, then one with a body on the same connection, then bodiless again.
    let mut c = Conn::open(addr).await;
    c.send("GET /a HTTP/1.1\r\nhost: svc\r\n\r\n").await;
    assert_eq!(c.response(false).await.unwrap().status, 200);
    c.send("POST /b HTTP/1.1\r\nhost: svc\r\ncontent-length: 7\r\n\r\npayload")
        .await;
    assert_eq!(c.response(false).await.unwrap().status, 200);
    c.send("GET /c HTTP/1.1\r\nhost: svc\r\n\r\n").await;
    assert_eq!(c.response(false).await.unwrap().status, 200);
    let seen = up.requests();
    assert!(seen[1].ends_with("\r\n\r\npayload"), "{seen:?}");
    assert!(seen[2].starts_with("GET /c HTTP/1.1\r\n"), "{seen:?}");

    // Expect: 100-continue is hyper's to answer.
    let mut c = Conn::open(addr).await;
    c.send("GET /warm HTTP/1.1\r\nhost: svc\r\n\r\n").await;
    assert_eq!(c.response(false).await.unwrap().status, 200);
    c.send("PUT /d HTTP/1.1\r\nhost: svc\r\ncontent-length: 2\r\nexpect: 100-continue\r\n\r\n")
        .await;
    let interim = c.response(false).await.unwrap();
    assert_eq!(interim.status, 100, "{interim:?}");
    c.send("hi").await;
    assert_eq!(c.response(false).await.unwrap().status, 200);

    // A smuggling attempt after bodiless requests is still refused, and nothing is forwarded.
    let before = up.requests().len();
    let mut c = Conn::open(addr).await;
    c.send("GET /x HTTP/1.1\r\nhost: svc\r\n\r\nPOST /y HTTP/1.1\r\nhost: svc\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n").await;
    assert_eq!(c.response(false).await.unwrap().status, 200);
    let r = c.response(false).await.unwrap();
    assert_eq!(r.status, 400, "{r:?}");
    assert!(c.closed().await);
    assert_eq!(
        up.requests().len(),
        before + 1,
        "only the GET was forwarded"
    );

    // A malformed head after a good request: hyper's 400, and the proxy keeps serving.
    let mut c = Conn::open(addr).await;
    c.send("GET / HTTP/1.1\r\nhost: svc\r\n\r\nGET / HTTP/1.1\r\nbad header\r\n\r\n")
        .await;
    assert_eq!(c.response(false).await.unwrap().status, 200);
    assert_eq!(c.response(false).await.unwrap().status, 400);
    // Too many header fields: hyper's 431.
    let mut c = Conn::open(addr).await;
    let many: String = (0..150).map(|i| format!("x-{i}: v\r\n")).collect();
    c.send(&format!("GET / HTTP/1.1\r\nhost: svc\r\n{many}\r\n"))
        .await;
    assert_eq!(c.response(false).await.unwrap().status, 431);

    // Both 400s (the smuggling attempt and the malformed head) and the 431 are counted.
    let rejected = |reason: &str| {
        format!(
            "ferry_http_downstream_requests_rejected_total{{listener=\"web\",reason=\"{reason}\"}}"
        )
    };
    assert_eq!(proxy.wait_metric(&rejected("bad_request"), 2.0).await, 2.0);
    assert_eq!(
        proxy.wait_metric(&rejected("header_too_large"), 1.0).await,
        1.0
    );
    let mut c = Conn::open(addr).await;
    c.send("GET / HTTP/1.1\r\nhost: svc\r\n\r\n").await;
    assert_eq!(c.response(false).await.unwrap().status, 200);
}

#[tokio::test]
async fn an_upstream_that_dies_mid_body_cuts_the_client_connection() {
    let up = Scripted::start(&[
        Reply::SendAndClose(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nfour"),
        Reply::SendAndClose(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nfour\r\n"),
    ])
    .await;
    let (_proxy, addr) = proxy_to(up.addr).await;
    // Sized: the head and the bytes that came, then the connection is cut.
    let mut c = Conn::open(addr).await;
    c.send("GET /a HTTP/1.1\r\nhost: svc\r\n\r\n").await;
    let r = c.response(false).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "four"), "{r:?}");
    assert!(c.closed().await, "a cut body must not look complete");
    // Chunked: no last chunk is sent, so the client can tell.
    let mut c = Conn::open(addr).await;
    c.send("GET /b HTTP/1.1\r\nhost: svc\r\n\r\n").await;
    let mut got = String::new();
    while c.fill().await {}
    got.push_str(&c.text());
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(
        got.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{got}"
    );
    assert!(
        got.ends_with("4\r\nfour\r\n"),
        "no terminating chunk: {got:?}"
    );
}

#[tokio::test]
async fn draining_closes_idle_connections_and_finishes_busy_ones() {
    let up = Upstream::start("a", UpstreamProtocol::Http1).await;
    let (mut proxy, addr) = proxy_to(up.addr).await;
    let mut idle = Conn::open(addr).await;
    idle.send("GET / HTTP/1.1\r\nhost: svc\r\n\r\n").await;
    assert_eq!(idle.response(false).await.unwrap().status, 200);
    let mut busy = Conn::open(addr).await;
    busy.send("GET / HTTP/1.1\r\nhost: svc\r\n\r\n").await;
    assert_eq!(busy.response(false).await.unwrap().status, 200);
    busy.send("GET / HTTP/1.1\r\nhost: svc\r\nx-delay-ms: 1000\r\n\r\n")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.sigterm();
    // The idle keep-alive connection is closed at once.
    assert!(idle.closed().await);
    // The busy one gets its answer, told that the connection closes, and then it does.
    let r = busy.response(false).await.unwrap();
    assert_eq!(
        (r.status, r.header("connection")),
        (200, Some("close")),
        "{r:?}"
    );
    assert!(busy.closed().await);
    let status = proxy.wait(WAIT).await.expect("exits");
    assert!(status.success(), "exit status {status}");
}

/// Route request timeouts on one keep-alive connection. The server keeps one timer for all of a
/// connection's requests and moves it lazily (a later deadline is only written down), so each
/// request must still get exactly its own route's deadline: a shorter one after a longer one, a
/// request without one after a timed-out one, and a fresh deadline after the timer has fired.
#[tokio::test]
async fn request_timeouts_on_one_keep_alive_connection() {
    let a = Upstream::start("a", UpstreamProtocol::Http1).await;
    let routes = "\
- name: long
  match: { prefix: /long }
  action: { weightedTargets: [{ cluster: a, weight: 1 }], timeouts: { request: 3s } }
- name: strict
  match: { prefix: /strict }
  action: { weightedTargets: [{ cluster: a, weight: 1 }], timeouts: { request: 0.2s } }
- name: patient
  match: { prefix: /patient }
  action: { weightedTargets: [{ cluster: a, weight: 1 }], timeouts: { request: 0s } }
";
    let yaml = table_yaml(routes, &[("a", &[a.addr], "HTTP1")]);
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let addr = proxy.listener("web").await.unwrap();
    let mut c = Conn::open(addr).await;
    let mut get = async |path: &str, delay_ms: u64| {
        c.send(&format!(
            "GET {path} HTTP/1.1\r\nhost: svc\r\nx-delay-ms: {delay_ms}\r\n\r\n"
        ))
        .await;
        c.response(false)
            .await
            .expect("an answer on the same connection")
    };
    // The 3 s deadline arms the connection's timer.
    assert_eq!(get("/long", 0).await.status, 200);
    // A 0.2 s deadline must move it earlier: the upstream's answer after 2 s is not awaited.
    let r = get("/strict", 2000).await;
    assert_eq!(r.status, 504, "{r:?}");
    // No timeout: the timer that fired above is not in force.
    assert_eq!(get("/patient", 500).await.status, 200);
    // A new deadline after the timer fired: neither at once nor never.
    assert_eq!(get("/strict", 20).await.status, 200);
    let r = get("/strict", 2000).await;
    assert_eq!(r.status, 504, "{r:?}");
    let timeouts = proxy
        .wait_metric(
            "ferry_http_upstream_request_timeouts_total{cluster=\"a\"}",
            2.0,
        )
        .await;
    assert_eq!(timeouts, 2.0);
}
