//! Hostile clients against the real proxy (issue #8): every listener limit, request-smuggling
//! shapes sent as raw bytes, an HTTP/2 rapid-reset flood, and the admin server's refusal of
//! mutating requests from a non-loopback address. Each case checks the proxy's answer, that the
//! upstream saw nothing it should not have, and the metric that counts it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failures should be loud
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ferry_tests::{Client, ProxyProcess, Upstream, UpstreamProtocol, status_of, table_yaml};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ROUTES: &str = "- name: app\n  match: { prefix: / }\n  action: { weightedTargets: [{ cluster: a, weight: 1 }] }\n";

/// A proxy in front of one HTTP/1.1 upstream, with `listener_extra` (YAML at the listener's
/// indentation, e.g. a `limits:` block) added to listener `web`.
async fn proxy_with(listener_extra: &str) -> (ProxyProcess, Upstream, SocketAddr) {
    let up = Upstream::start("a", UpstreamProtocol::Http1).await;
    let yaml = table_yaml(ROUTES, &[("a", &[up.addr], "HTTP1")]).replace(
        "    virtualHosts:",
        &format!("{listener_extra}    virtualHosts:"),
    );
    let proxy = ProxyProcess::start(&yaml).await.expect("proxy starts");
    let addr = proxy.listener("web").await.expect("listener");
    (proxy, up, addr)
}

/// Writes `request` as is and reads until the proxy closes the connection (or `wait` passes).
/// Returns what was read and whether the proxy closed the connection.
async fn raw(addr: SocketAddr, request: &[u8], wait: Duration) -> (String, bool) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    // The proxy may answer and close before it has read everything: a failed write is fine.
    let _ = s.write_all(request).await;
    read_until_close(&mut s, wait).await
}

async fn read_until_close(s: &mut TcpStream, wait: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
        }
    }
}

fn rejected(reason: &str) -> String {
    format!("ferry_http_downstream_requests_rejected_total{{listener=\"web\",reason=\"{reason}\"}}")
}

fn closed(reason: &str) -> String {
    format!("ferry_downstream_connections_closed_total{{listener=\"web\",reason=\"{reason}\"}}")
}

// === Limits ===

#[tokio::test]
async fn header_bytes_over_the_limit_get_431_and_never_reach_the_upstream() {
    let (proxy, up, addr) = proxy_with("    limits: { maxRequestHeaderBytes: 8192 }\n").await;
    let big = "x".repeat(20_000);
    let req = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n");
    let (resp, closed_by_proxy) = raw(addr, req.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(status_of(&resp), 431, "{resp}");
    assert!(closed_by_proxy, "the connection stays open after a 431");
    assert_eq!(up.hits(), 0);
    assert_eq!(
        proxy.wait_metric(&rejected("header_too_large"), 1.0).await,
        1.0
    );
    // Under the limit still works.
    let ok = Client::http1()
        .get(&format!("http://{addr}/"))
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn too_many_headers_get_431() {
    let (proxy, up, addr) = proxy_with("    limits: { maxRequestHeaders: 10 }\n").await;
    let mut req = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..20 {
        req.push_str(&format!("X-H{i}: v\r\n"));
    }
    req.push_str("\r\n");
    let (resp, closed_by_proxy) = raw(addr, req.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(status_of(&resp), 431, "{resp}");
    assert!(closed_by_proxy);
    assert_eq!(up.hits(), 0);
    assert_eq!(
        proxy.wait_metric(&rejected("header_too_large"), 1.0).await,
        1.0
    );
}

#[tokio::test]
async fn uri_over_the_limit_gets_414() {
    let (proxy, up, addr) = proxy_with("    limits: { maxUriBytes: 1024 }\n").await;
    let path = format!("/{}", "p".repeat(2000));
    let req = format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    let (resp, _) = raw(addr, req.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(status_of(&resp), 414, "{resp}");
    assert_eq!(up.hits(), 0);
    assert_eq!(proxy.metric(&rejected("uri_too_long")).await, 1.0);
}

#[tokio::test]
async fn slowloris_headers_are_cut_at_the_header_read_timeout() {
    let (proxy, up, addr) = proxy_with("    limits: { headerReadTimeout: 1s }\n").await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").await.unwrap();
    let start = Instant::now();
    // One header byte every 200 ms: each byte arrives well within any per-read timeout.
    let mut cut = false;
    for _ in 0..40 {
        if s.write_all(b"X").await.is_err() {
            cut = true;
            break;
        }
        let mut buf = [0u8; 256];
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            // EOF, a reset, or a 408: the proxy gave up on this client.
            assert!(!matches!(r, Ok(n) if n > 0 && buf.starts_with(b"HTTP/1.1 200")));
            cut = true;
            break;
        }
    }
    let took = start.elapsed();
    assert!(
        cut,
        "a client trickling headers kept its connection for {took:?}"
    );
    assert!(
        took < Duration::from_secs(4),
        "cut after {took:?}, limit 1s"
    );
    assert_eq!(up.hits(), 0);
    assert!(proxy.wait_metric(&closed("header_timeout"), 1.0).await >= 1.0);
}

#[tokio::test]
async fn idle_connections_are_closed_at_the_idle_timeout() {
    let (proxy, up, addr) = proxy_with("    timeouts: { idle: 1s }\n").await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    assert_eq!(up.hits(), 1);
    let start = Instant::now();
    let (_, closed_by_proxy) = read_until_close(&mut s, Duration::from_secs(5)).await;
    assert!(
        closed_by_proxy,
        "an idle connection outlived its 1s idle timeout"
    );
    let took = start.elapsed();
    assert!(
        took > Duration::from_millis(500) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert_eq!(proxy.wait_metric(&closed("idle_timeout"), 1.0).await, 1.0);
}

#[tokio::test]
async fn connections_over_max_connections_are_closed_at_once() {
    let (proxy, _up, addr) = proxy_with("    limits: { maxConnections: 2 }\n").await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(s);
    }
    let (resp, closed_by_proxy) = raw(
        addr,
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(
        closed_by_proxy && resp.is_empty(),
        "third connection served: {resp:?}"
    );
    assert_eq!(
        proxy
            .metric("ferry_downstream_connections_overflow_total{listener=\"web\"}")
            .await,
        1.0
    );
    // A slot frees when a connection ends.
    held.pop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ok = Client::http1()
        .get(&format!("http://{addr}/"))
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn h2_max_concurrent_streams_is_advertised_and_kept() {
    let (_proxy, _up, addr) = proxy_with("    limits: { maxConcurrentStreams: 2 }\n").await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("http://{addr}/"))
        .body(())
        .unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
    assert_eq!(client.current_max_send_streams(), 2);
}

/// A client that ignores the advertised limit: the HTTP/2 layer refuses the stream past it
/// (RST_STREAM REFUSED_STREAM), the streams within it are served, and the refusal is counted.
#[tokio::test]
async fn h2_streams_past_the_limit_are_refused_and_counted() {
    let (proxy, _up, addr) = proxy_with("    limits: { maxConcurrentStreams: 2 }\n").await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }
    // HPACK: :method GET, :scheme http, :path /, :authority "a" (a literal).
    let block = [0x82, 0x86, 0x84, 0x41, 0x01, b'a'];
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[])); // SETTINGS
    // Three streams open at once (END_HEADERS, not END_STREAM: each waits for a body).
    for stream in [1, 3, 5] {
        out.extend(frame(0x1, 0x4, stream, &block));
    }
    s.write_all(&out).await.unwrap();
    // Read frames until the RST_STREAM for stream 5.
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let reset = loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline.into(), s.read(&mut chunk))
            .await
            .expect("an RST_STREAM in time")
            .unwrap();
        assert!(n > 0, "the proxy closed the connection");
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        let mut found = None;
        while at + 9 <= buf.len() {
            let len = u32::from_be_bytes([0, buf[at], buf[at + 1], buf[at + 2]]) as usize;
            if at + 9 + len > buf.len() {
                break;
            }
            let stream = u32::from_be_bytes(buf[at + 5..at + 9].try_into().unwrap()) & 0x7fff_ffff;
            if buf[at + 3] == 0x3 {
                let code = u32::from_be_bytes(buf[at + 9..at + 13].try_into().unwrap());
                found = Some((stream, code));
            }
            at += 9 + len;
        }
        if let Some(f) = found {
            break f;
        }
    };
    assert_eq!(reset, (5, 0x7), "stream 5 refused with REFUSED_STREAM");
    assert_eq!(
        proxy.wait_metric(&rejected("h2_stream_refused"), 1.0).await,
        1.0
    );
}

// === Request smuggling: 400, connection closed, never forwarded ===

async fn assert_refused(addr: SocketAddr, up: &Upstream, what: &str, request: &[u8]) {
    let (resp, closed_by_proxy) = raw(addr, request, Duration::from_secs(5)).await;
    assert_eq!(status_of(&resp), 400, "{what}: {resp:?}");
    assert!(closed_by_proxy, "{what}: the connection stayed open");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(up.hits(), 0, "{what}: the upstream saw a request");
}

/// Content-Length with Transfer-Encoding (in either order): 400, connection closed, never
/// forwarded, and counted. hyper alone would read the request by its chunked framing (RFC 9112
/// §6.3); the proxy's framing watch sees both headers and the handler refuses the request.
#[tokio::test]
async fn content_length_with_transfer_encoding_is_refused() {
    let (proxy, up, addr) = proxy_with("").await;
    assert_refused(
        addr,
        &up,
        "CL + TE",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await;
    assert_refused(
        addr,
        &up,
        "TE + CL",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await;
    assert_eq!(proxy.wait_metric(&rejected("bad_request"), 2.0).await, 2.0);
}

/// On a kept-alive connection, the requests before the ambiguous one are served (their bodies,
/// chunked or sized, followed byte for byte), the ambiguous one is refused, and the connection
/// closes before the bytes behind it are read as a request.
#[tokio::test]
async fn only_the_ambiguous_request_of_a_pipeline_is_refused() {
    let (_proxy, up, addr) = proxy_with("").await;
    let pipeline = b"POST /one HTTP/1.1\r\nHost: a\r\nContent-Length: 69\r\n\r\n\
        GET /fake HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n\
        POST /two HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n\
        POST /three HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
        GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    let (resp, closed_by_proxy) = raw(addr, pipeline, Duration::from_secs(5)).await;
    assert!(closed_by_proxy, "the connection stayed open: {resp}");
    let statuses: Vec<u16> = resp
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| status_of(&resp[i..]))
        .collect();
    assert_eq!(statuses, [200, 200, 400], "{resp}");
    assert!(
        resp.contains("\"path\":\"/one\"") && resp.contains("\"path\":\"/two\""),
        "{resp}"
    );
    assert!(
        !resp.contains("/three") && !resp.contains("/smuggled"),
        "{resp}"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn duplicate_content_lengths_that_differ_are_refused() {
    let (_proxy, up, addr) = proxy_with("").await;
    assert_refused(
        addr,
        &up,
        "two Content-Length headers",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
    )
    .await;
    assert_refused(
        addr,
        &up,
        "a Content-Length list",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 5\r\n\r\nabcde",
    )
    .await;
}

#[tokio::test]
async fn transfer_encoding_not_ending_in_chunked_is_refused() {
    let (_proxy, up, addr) = proxy_with("").await;
    assert_refused(
        addr,
        &up,
        "TE gzip",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nabcd",
    )
    .await;
    assert_refused(
        addr,
        &up,
        "TE chunked, identity",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    )
    .await;
}

#[tokio::test]
async fn obsolete_line_folding_is_refused() {
    let (_proxy, up, addr) = proxy_with("").await;
    assert_refused(
        addr,
        &up,
        "obs-fold",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n",
    )
    .await;
    assert_refused(
        addr,
        &up,
        "folded Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
}

#[tokio::test]
async fn invalid_header_bytes_are_refused() {
    let (_proxy, up, addr) = proxy_with("").await;
    let cases: [(&str, &[u8]); 5] = [
        (
            "NUL in a value",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n",
        ),
        (
            "space in a name",
            b"GET / HTTP/1.1\r\nHost: a\r\nX Bad: v\r\n\r\n",
        ),
        (
            "space before the colon",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 4\r\n\r\nabcd",
        ),
        (
            "bare CR in a value",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n",
        ),
        (
            "non-numeric Content-Length",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\nabcd",
        ),
    ];
    for (what, req) in cases {
        assert_refused(addr, &up, what, req).await;
    }
}

// === HTTP/2 rapid reset ===

#[tokio::test]
async fn h2_rapid_reset_flood_does_not_take_the_proxy_down() {
    let (proxy, up, addr) = proxy_with("").await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn = tokio::spawn(conn);
    let mut sent = 0usize;
    let start = Instant::now();
    // Open and cancel streams as fast as the connection lets us, as CVE-2023-44487's clients do.
    for _ in 0..5000 {
        let Ok(mut c) = client.clone().ready().await else {
            break; // the proxy sent GOAWAY: that is a fine way to survive
        };
        let req = http::Request::post(format!("http://{addr}/"))
            .body(())
            .unwrap();
        let Ok((_resp, mut stream)) = c.send_request(req, false) else {
            break;
        };
        stream.send_reset(h2::Reason::CANCEL);
        sent += 1;
    }
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
    eprintln!(
        "rapid reset: {sent} streams opened and reset in {:?}; the upstream saw {} requests; h2_reset_flood closes: {}",
        start.elapsed(),
        up.hits(),
        proxy.metric(&closed("h2_reset_flood")).await
    );
    assert!(sent >= 100, "only {sent} streams could be opened");
    // The proxy still serves everyone else, over both protocols.
    for client in [Client::http2(), Client::http1()] {
        let ok = client.get(&format!("http://{addr}/")).await.unwrap();
        assert_eq!(ok.status, 200);
    }
    assert_eq!(proxy.admin_get("/ready").await.unwrap().0, 200);
}

// === Admin ===

/// A non-loopback IPv4 address of this machine: the first global one, else one added for the
/// test on a dummy interface (root). `None` only when neither is possible.
fn non_loopback_address() -> Option<(IpAddr, Option<String>)> {
    let out = std::process::Command::new("ip")
        .args(["-o", "-4", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let found = text.lines().find_map(|l| {
        let cidr = l.split_whitespace().skip_while(|w| *w != "inet").nth(1)?;
        cidr.split('/').next()?.parse::<IpAddr>().ok()
    });
    if let Some(ip) = found {
        return Some((ip, None));
    }
    // No global address: add one on a dummy link (removed by the caller).
    let link = format!("ferryh{}", std::process::id() % 100_000);
    let ok = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    };
    if ok(&["link", "add", &link, "type", "dummy"])
        && ok(&["addr", "add", "198.18.77.1/32", "dev", &link])
        && ok(&["link", "set", &link, "up"])
    {
        return Some(("198.18.77.1".parse().ok()?, Some(link)));
    }
    None
}

#[tokio::test]
async fn admin_refuses_mutating_requests_from_non_loopback_sources() {
    let Some((ip, link)) = non_loopback_address() else {
        assert!(
            !is_root(),
            "root, yet no non-loopback address could be found or made (is `ip` installed?)"
        );
        eprintln!(
            "SKIPPED admin_refuses_mutating_requests_from_non_loopback_sources: this machine has no \
             non-loopback IPv4 address and the test is not root (needed to add one on a dummy link)"
        );
        return;
    };
    let up = Upstream::start("a", UpstreamProtocol::Http1).await;
    let yaml = table_yaml(ROUTES, &[("a", &[up.addr], "HTTP1")]);
    let proxy = ProxyProcess::start_with(&yaml, "table.yaml", &["--admin-addr", "0.0.0.0:0"])
        .await
        .expect("proxy starts");
    let admin = SocketAddr::new(ip, proxy.admin.port());

    // From the non-loopback address: reads answer, every mutating endpoint is refused.
    let from = |path: &'static str, method: &'static str| async move {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(ip, 0)).unwrap();
        let mut s = sock.connect(admin).await.unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let (resp, _) = read_until_close(&mut s, Duration::from_secs(5)).await;
        status_of(&resp)
    };
    assert_eq!(from("/ready", "GET").await, 200);
    for path in ["/drain_listeners", "/quitquitquit", "/logging?level=debug"] {
        assert_eq!(from(path, "POST").await, 403, "POST {path} from {ip}");
    }
    // Nothing happened: still ready, still serving, and loopback may still mutate.
    assert_eq!(proxy.admin_get("/ready").await.unwrap().0, 200);
    let ok = Client::http1().get(&proxy.url("web").await).await.unwrap();
    assert_eq!(ok.status, 200);
    let loopback = SocketAddr::from(([127, 0, 0, 1], proxy.admin.port()));
    let (status, _) =
        ferry_tests::proxy::admin_request(loopback, http::Method::POST, "/logging?level=info")
            .await
            .unwrap();
    assert_eq!(status, 200);
    if let Some(link) = link {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &link])
            .status();
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}
