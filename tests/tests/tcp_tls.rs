//! L4 TCP proxying and TLS (issue #6), end to end with real TLS: certificates made by rcgen in the
//! test, rustls clients, and chains of real proxies.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failures should be loud
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ferry_tests::tcp::TcpEcho;
use ferry_tests::tls::{Ca, client_config, connect, https_get, peer_certificate};
use ferry_tests::{Client, ProxyProcess, Upstream, UpstreamProtocol};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

// === TCP ===

fn tcp_table(
    targets: &[(&str, u32)],
    clusters: &[(&str, &[SocketAddr])],
    route_extra: &str,
) -> String {
    let mut y = String::from(
        "listeners:\n  - name: tcp\n    address: 127.0.0.1:0\n    protocol: TCP\n    tcpRoutes:\n      - name: db\n        weightedTargets:\n",
    );
    for (c, w) in targets {
        y.push_str(&format!("          - {{ cluster: {c}, weight: {w} }}\n"));
    }
    y.push_str(route_extra);
    y.push_str("clusters:\n");
    for (name, addrs) in clusters {
        y.push_str(&format!("  - name: {name}\n    protocol: TCP\n    lbPolicy: ROUND_ROBIN\n    staticEndpoints:\n      endpoints:\n"));
        for a in *addrs {
            y.push_str(&format!("        - address: \"{a}\"\n"));
        }
    }
    y
}

/// One echo upstream (speaking `banner` first) behind a proxy's TCP route, and a client
/// connection through it that has read the banner.
async fn echo_through_proxy(
    banner: &str,
) -> (TcpEcho, ProxyProcess, BufReader<tokio::net::TcpStream>) {
    let echo = TcpEcho::start("a", Some(banner)).await;
    let proxy = ProxyProcess::start(&tcp_table(&[("a", 1)], &[("a", &[echo.addr])], ""))
        .await
        .unwrap();
    let addr = proxy.listener("tcp").await.unwrap();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut reader = BufReader::new(stream);
    // The server speaks first: the banner arrives before the client sends anything.
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(2), reader.read_line(&mut line))
        .await
        .expect("banner")
        .unwrap();
    assert_eq!(line, format!("{banner}\n"));
    (echo, proxy, reader)
}

#[tokio::test]
async fn tcp_echo_server_first_banner_and_half_close() {
    let (_echo, proxy, mut reader) = echo_through_proxy("220 hello from a").await;

    // Echo, then half-close: the client's FIN reaches the server, whose answer still comes back.
    reader.get_mut().write_all(b"ping 1\n").await.unwrap();
    let mut echoed = String::new();
    reader.read_line(&mut echoed).await.unwrap();
    assert_eq!(echoed, "ping 1\n");
    let big = vec![b'x'; 1_000_000];
    let mut stream = reader.into_inner();
    stream.write_all(&big).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest.len(), 1_000_000 + "bye 1000007\n".len());
    assert!(
        rest.ends_with(b"bye 1000007\n"),
        "{:?}",
        String::from_utf8_lossy(&rest[rest.len() - 20..])
    );

    let m = proxy.metrics().await;
    assert!(
        m.contains("ferry_tcp_connections_total{listener=\"tcp\",route=\"db\"} 1"),
        "{m}"
    );
    let tx = ferry_tests::proxy::metric_value(
        &m,
        "ferry_upstream_bytes_total{cluster=\"a\",direction=\"tx\"}",
    );
    assert_eq!(tx, 1_000_007.0, "{m}");
}

/// Bulk bytes both ways at once (the relay splices plain sockets in the kernel): every byte
/// arrives, in order, and the counters see them all.
#[tokio::test]
async fn tcp_bulk_bytes_arrive_intact_both_ways() {
    let (_echo, proxy, reader) = echo_through_proxy("go").await;
    const LEN: usize = 8 << 20;
    let sent: Vec<u8> = (0..LEN).map(|i| (i * 31 % 251) as u8).collect();
    let (mut rd, mut wr) = reader.into_inner().into_split();
    let expected = sent.clone();
    let writer = tokio::spawn(async move {
        for piece in sent.chunks(100_003) {
            wr.write_all(piece).await.unwrap();
        }
        wr.shutdown().await.unwrap();
    });
    let mut got = Vec::with_capacity(LEN + 32);
    tokio::time::timeout(Duration::from_secs(30), rd.read_to_end(&mut got))
        .await
        .expect("the echo in time")
        .unwrap();
    writer.await.unwrap();
    assert_eq!(got.len(), LEN + format!("bye {LEN}\n").len());
    assert!(got[..LEN] == expected[..], "the bytes came back changed");
    // Counted when the connection ends, just after the last byte is passed on.
    let series = "ferry_upstream_bytes_total{cluster=\"a\",direction=\"tx\"}";
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut tx = 0.0;
    while tx != LEN as f64 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx = ferry_tests::proxy::metric_value(&proxy.metrics().await, series);
    }
    assert_eq!(tx, LEN as f64);
}

#[tokio::test]
async fn tcp_weighted_split_over_connections() {
    let a = TcpEcho::start("a", Some("a")).await;
    let b = TcpEcho::start("b", Some("b")).await;
    let proxy = ProxyProcess::start(&tcp_table(
        &[("a", 80), ("b", 20)],
        &[("a", &[a.addr]), ("b", &[b.addr])],
        "",
    ))
    .await
    .unwrap();
    let addr = proxy.listener("tcp").await.unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for _ in 0..500 {
        let mut r = BufReader::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        *seen.entry(line.trim().to_owned()).or_default() += 1;
    }
    let share_a = seen.get("a").copied().unwrap_or(0) as f64 / 5.0;
    assert!((share_a - 80.0).abs() <= 6.0, "{seen:?}");
    assert_eq!(seen.values().sum::<usize>(), 500);
}

#[tokio::test]
async fn tcp_connect_failures_move_to_another_endpoint_and_idle_connections_close() {
    let live = TcpEcho::start("live", Some("live")).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let idle = "        timeouts: { idle: 0.3s }\n";
    let proxy = ProxyProcess::start(&tcp_table(&[("a", 1)], &[("a", &[dead, live.addr])], idle))
        .await
        .unwrap();
    let addr = proxy.listener("tcp").await.unwrap();
    for _ in 0..6 {
        let mut r = BufReader::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        assert_eq!(line, "live\n");
    }
    assert_eq!(live.connections(), 6);

    // Idle: no bytes for 0.3 s closes the connection.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"live\n");
    let t = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .expect("closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
}

// === TLS ===

struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    ca_file: String,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("ferry test mesh CA");
    let ca_file = ca.write(dir.path(), "ca.pem").display().to_string();
    Pki { dir, ca, ca_file }
}

fn http_table(
    listener_extra: &str,
    cluster: &str,
    cluster_extra: &str,
    upstream: SocketAddr,
) -> String {
    format!(
        "listeners:\n  - name: web\n    address: 127.0.0.1:0\n{listener_extra}    virtualHosts:\n      - name: all\n        domains: [\"*\"]\n        routes:\n          - name: r\n            match: {{ prefix: / }}\n            action: {{ weightedTargets: [{{ cluster: {cluster}, weight: 1 }}] }}\nclusters:\n  - name: {cluster}\n{cluster_extra}    staticEndpoints: {{ endpoints: [{{ address: \"{upstream}\" }}] }}\n"
    )
}

fn server_tls(
    mode: &str,
    cert: &ferry_tests::tls::Issued,
    validation: Option<(&str, &[&str])>,
) -> String {
    let mut y = format!(
        "    tls:\n      mode: {mode}\n      certificateChain: {}\n      privateKey: {}\n",
        cert.cert.display(),
        cert.key.display()
    );
    if let Some((trust, sans)) = validation {
        y.push_str(&format!(
            "      validation:\n        trustChain: {trust}\n        subjectAltNames: {sans:?}\n"
        ));
    }
    y
}

#[tokio::test]
async fn strict_tls_with_alpn_h2_and_plaintext_refused() {
    let p = pki();
    let up = Upstream::start("a", UpstreamProtocol::Http1).await;
    let cert = p.ca.issue(p.dir.path(), "web", &["web.mesh.local"]);
    let proxy = ProxyProcess::start(&http_table(
        &server_tls("STRICT", &cert, None),
        "a",
        "",
        up.addr,
    ))
    .await
    .unwrap();
    let addr = proxy.listener("web").await.unwrap();

    let h2 = client_config(&p.ca.pem, None, &["h2", "http/1.1"]);
    let (status, alpn, body) = https_get(addr, "web.mesh.local", h2, "/hello")
        .await
        .unwrap();
    assert_eq!((status, alpn.as_deref()), (200, Some("h2")), "{body}");
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");

    let h1 = client_config(&p.ca.pem, None, &["http/1.1"]);
    let (status, alpn, _) = https_get(addr, "web.mesh.local", h1, "/hello")
        .await
        .unwrap();
    assert_eq!((status, alpn.as_deref()), (200, Some("http/1.1")));

    // STRICT: plaintext HTTP gets no answer.
    assert!(
        Client::http1()
            .get(&format!("http://{addr}/"))
            .await
            .is_err()
    );
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn permissive_accepts_tls_and_plaintext_on_one_port() {
    let p = pki();
    let up = Upstream::start("a", UpstreamProtocol::Http1).await;
    let cert = p.ca.issue(p.dir.path(), "web", &["web.mesh.local"]);
    let proxy = ProxyProcess::start(&http_table(
        &server_tls("PERMISSIVE", &cert, None),
        "a",
        "",
        up.addr,
    ))
    .await
    .unwrap();
    let addr = proxy.listener("web").await.unwrap();
    let (status, _, _) = https_get(
        addr,
        "web.mesh.local",
        client_config(&p.ca.pem, None, &["http/1.1"]),
        "/",
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let plain = Client::http1()
        .get(&format!("http://{addr}/"))
        .await
        .unwrap();
    assert_eq!(plain.status, 200);
    assert_eq!(
        plain.seen_header("x-forwarded-proto").as_deref(),
        Some("http")
    );
}

/// Proxy A originates mTLS with a client certificate; proxy B terminates STRICT with validation.
#[tokio::test]
async fn mtls_between_two_proxies_and_refusals_by_cause() {
    let p = pki();
    let up = Upstream::start("app", UpstreamProtocol::Http1).await;
    let b_cert = p.ca.issue(p.dir.path(), "b", &["backend.mesh.local"]);
    let b = ProxyProcess::start(&http_table(
        &server_tls(
            "STRICT",
            &b_cert,
            Some((&p.ca_file, &["frontend.mesh.local"])),
        ),
        "app",
        "",
        up.addr,
    ))
    .await
    .unwrap();
    let b_addr = b.listener("web").await.unwrap();

    let origination = |client: &ferry_tests::tls::Issued, trust: &str| {
        format!(
            "    tls:\n      validation:\n        trustChain: {trust}\n        subjectAltNames: [backend.mesh.local]\n      certificateChain: {}\n      privateKey: {}\n",
            client.cert.display(),
            client.key.display()
        )
    };

    // The frontend's certificate is trusted and its SAN allowed: the chain works.
    let front = p.ca.issue(p.dir.path(), "front", &["frontend.mesh.local"]);
    let a = ProxyProcess::start(&http_table(
        "",
        "to-b",
        &origination(&front, &p.ca_file),
        b_addr,
    ))
    .await
    .unwrap();
    let r = Client::http1().get(&a.url("web").await).await.unwrap();
    assert_eq!(
        (r.status.as_u16(), r.upstream()),
        (200, "app".to_owned()),
        "{}",
        r.body
    );
    // Forwarding headers describe the original client across both hops.
    assert_eq!(r.seen_header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        r.seen_header("x-forwarded-for").as_deref(),
        Some("127.0.0.1, 127.0.0.1")
    );

    // A client certificate with another SAN is refused by B, and counted as a SAN mismatch.
    let intruder =
        p.ca.issue(p.dir.path(), "intruder", &["intruder.mesh.local"]);
    let a2 = ProxyProcess::start(&http_table(
        "",
        "to-b",
        &origination(&intruder, &p.ca_file),
        b_addr,
    ))
    .await
    .unwrap();
    let r = Client::http1().get(&a2.url("web").await).await.unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    wait_metric(
        &b,
        "ferry_tls_handshake_failures_total{cause=\"san_mismatch\",listener=\"web\"}",
        1.0,
    )
    .await;

    // A client certificate from an untrusted CA is refused as unknown CA.
    let rogue = Ca::new("rogue CA");
    let rogue_client = rogue.issue(p.dir.path(), "rogue", &["frontend.mesh.local"]);
    let a3 = ProxyProcess::start(&http_table(
        "",
        "to-b",
        &origination(&rogue_client, &p.ca_file),
        b_addr,
    ))
    .await
    .unwrap();
    assert_eq!(
        Client::http1()
            .get(&a3.url("web").await)
            .await
            .unwrap()
            .status,
        503
    );
    wait_metric(
        &b,
        "ferry_tls_handshake_failures_total{cause=\"unknown_ca\",listener=\"web\"}",
        1.0,
    )
    .await;

    // A proxy that does not trust B's CA refuses B (origination side, unknown CA).
    let rogue_ca_file = rogue
        .write(p.dir.path(), "rogue-ca.pem")
        .display()
        .to_string();
    let a4 = ProxyProcess::start(&http_table(
        "",
        "to-b",
        &origination(&front, &rogue_ca_file),
        b_addr,
    ))
    .await
    .unwrap();
    assert_eq!(
        Client::http1()
            .get(&a4.url("web").await)
            .await
            .unwrap()
            .status,
        503
    );
    wait_metric(
        &a4,
        "ferry_upstream_tls_failures_total{cause=\"unknown_ca\",cluster=\"to-b\"}",
        1.0,
    )
    .await;

    // An expired client certificate is refused as expired.
    let old =
        p.ca.issue_expired(p.dir.path(), "old", &["frontend.mesh.local"]);
    let a5 = ProxyProcess::start(&http_table(
        "",
        "to-b",
        &origination(&old, &p.ca_file),
        b_addr,
    ))
    .await
    .unwrap();
    assert_eq!(
        Client::http1()
            .get(&a5.url("web").await)
            .await
            .unwrap()
            .status,
        503
    );
    wait_metric(
        &b,
        "ferry_tls_handshake_failures_total{cause=\"expired\",listener=\"web\"}",
        1.0,
    )
    .await;

    // /certs lists what B serves and trusts, with expiry.
    let (_, certs) = b.admin_get("/certs").await.unwrap();
    let certs: serde_json::Value = serde_json::from_str(&certs).unwrap();
    let server = certs
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["role"] == "server")
        .expect("server cert");
    assert_eq!(
        server["certificate"]["subject_alt_names"][0],
        "backend.mesh.local"
    );
    assert!(server["certificate"]["expires_in_days"].as_i64().unwrap() > 300);
    assert!(
        certs
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["role"] == "trust")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_server_certificate_under_load_fails_no_request() {
    let p = pki();
    let up = Upstream::start("a", UpstreamProtocol::Http1).await;
    let cert = p.ca.issue(p.dir.path(), "web", &["web.mesh.local"]);
    let proxy = ProxyProcess::start(&http_table(
        &server_tls("STRICT", &cert, None),
        "a",
        "",
        up.addr,
    ))
    .await
    .unwrap();
    let addr = proxy.listener("web").await.unwrap();
    let config = client_config(&p.ca.pem, None, &["http/1.1"]);
    let first = peer_certificate(
        &connect(addr, "web.mesh.local", Arc::clone(&config))
            .await
            .unwrap(),
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (stop, ok, failed, config) = (
            Arc::clone(&stop),
            Arc::clone(&ok),
            Arc::clone(&failed),
            Arc::clone(&config),
        );
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // A new connection (and handshake) per request.
                match https_get(addr, "web.mesh.local", Arc::clone(&config), "/").await {
                    Ok((200, _, _)) => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        eprintln!("failed: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Rotate: a new certificate and key replace the files (each written then renamed).
    let next = p.ca.issue(p.dir.path(), "next", &["web.mesh.local"]);
    for (from, to) in [(&next.key, &cert.key), (&next.cert, &cert.cert)] {
        std::fs::rename(from, to).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut rotated = false;
    while Instant::now() < deadline {
        let presented = peer_certificate(
            &connect(addr, "web.mesh.local", Arc::clone(&config))
                .await
                .unwrap(),
        );
        if presented != first {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert!(
        rotated,
        "new handshakes never presented the new certificate: {}",
        proxy.stderr()
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "{} ok",
        ok.load(Ordering::Relaxed)
    );
    assert!(ok.load(Ordering::Relaxed) > 20);
    assert!(proxy.stderr().contains("reloaded TLS files"));
}

#[tokio::test]
async fn tls_config_errors_name_the_field() {
    let p = pki();
    let up = Upstream::start("a", UpstreamProtocol::Http1).await;
    let cert = p.ca.issue(p.dir.path(), "web", &["web.mesh.local"]);
    let missing = server_tls("STRICT", &cert, None)
        .replace(&cert.key.display().to_string(), "/nonexistent/key.pem");
    let err = ProxyProcess::start(&http_table(&missing, "a", "", up.addr))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("listeners[0].tls: /nonexistent/key.pem: cannot read a private key"),
        "{err}"
    );
    let wrong_key = server_tls("STRICT", &cert, None).replace(
        &cert.key.display().to_string(),
        &p.ca
            .issue(p.dir.path(), "other", &["x"])
            .key
            .display()
            .to_string(),
    );
    let err = ProxyProcess::start(&http_table(&wrong_key, "a", "", up.addr))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("does not fit the certificate chain"), "{err}");
}

async fn wait_metric(proxy: &ProxyProcess, series: &str, want: f64) {
    for _ in 0..100 {
        if proxy.metric(series).await >= want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{series} never reached {want}:\n{}\n{}",
        proxy.metrics().await,
        proxy.stderr()
    );
}
