//! Protocols end to end: HTTP/1.1 and HTTP/2 clients, HTTP/2 upstreams, WebSocket upgrades, and
//! the weighted split measured over 10,000 requests.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failures should be loud
use std::collections::HashMap;
use std::sync::Arc;

use ferry_tests::{Client, ProxyProcess, Upstream, UpstreamProtocol, WsEchoUpstream, table_yaml};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const CATCH_ALL_TO_A: &str = "- name: all\n  match: { prefix: / }\n  action: { weightedTargets: [{ cluster: a, weight: 1 }] }\n";

#[tokio::test]
async fn http1_and_http2_clients_to_http1_and_http2_upstreams() {
    for upstream_proto in [UpstreamProtocol::Http1, UpstreamProtocol::Http2] {
        let up = Upstream::start("a", upstream_proto).await;
        let cluster_proto = if upstream_proto == UpstreamProtocol::Http2 {
            "HTTP2"
        } else {
            "HTTP1"
        };
        let yaml = table_yaml(CATCH_ALL_TO_A, &[("a", &[up.addr], cluster_proto)]);
        let proxy = ProxyProcess::start(&yaml).await.expect("proxy");
        let url = proxy.url("web").await;
        for (client, client_name) in [(Client::http1(), "h1"), (Client::http2(), "h2")] {
            for i in 0..20 {
                let r = client
                    .get_with(&format!("{url}/p/{i}?q=1"), &[("host", "svc.local")])
                    .await
                    .unwrap_or_else(|e| panic!("{client_name} -> {cluster_proto}: {e}"));
                assert_eq!(
                    r.status, 200,
                    "{client_name} -> {cluster_proto}: {}",
                    r.body
                );
                let seen = r.json();
                assert_eq!(seen["path"], format!("/p/{i}"));
                let want_version = if upstream_proto == UpstreamProtocol::Http2 {
                    "HTTP/2.0"
                } else {
                    "HTTP/1.1"
                };
                assert_eq!(seen["version"], want_version);
                // The authority reaches the upstream: as Host over HTTP/1.1, :authority over HTTP/2.
                let authority = seen["authority"]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| r.seen_header("host"));
                assert_eq!(
                    authority.as_deref(),
                    Some("svc.local"),
                    "{client_name} -> {cluster_proto}"
                );
            }
        }
        // Keep-alive and multiplexing: 40 requests did not take 40 upstream connections.
        let opened = proxy
            .metric("ferry_upstream_connections_total{cluster=\"a\"}")
            .await;
        assert!(
            (1.0..=4.0).contains(&opened),
            "{cluster_proto}: {opened} upstream connections for 40 requests"
        );
    }
}

#[tokio::test]
async fn request_bodies_are_forwarded() {
    let up = Upstream::start("a", UpstreamProtocol::Http1).await;
    let proxy = ProxyProcess::start(&table_yaml(CATCH_ALL_TO_A, &[("a", &[up.addr], "HTTP1")]))
        .await
        .expect("proxy");
    let url = proxy.url("web").await;
    let body = bytes::Bytes::from(vec![b'x'; 300_000]);
    for client in [Client::http1(), Client::http2()] {
        let r = client
            .send(http::Method::POST, &url, &[], body.clone())
            .await
            .expect("post");
        assert_eq!(r.json()["body_len"], 300_000);
    }
}

#[tokio::test]
async fn websocket_echo_through_the_proxy() {
    let ws = WsEchoUpstream::start().await;
    let yaml = table_yaml(CATCH_ALL_TO_A, &[("a", &[ws.addr], "HTTP1")]);
    let proxy = ProxyProcess::start(&yaml).await.expect("proxy");
    let addr = proxy.listener("web").await.expect("listener");
    let (mut socket, resp) = tokio_tungstenite::connect_async(format!("ws://{addr}/chat"))
        .await
        .expect("ws handshake");
    assert_eq!(resp.status(), 101);
    for i in 0..10 {
        socket
            .send(Message::text(format!("hello {i}")))
            .await
            .expect("send");
        let echo = socket.next().await.expect("frame").expect("ok");
        assert_eq!(
            echo.into_text().expect("text").as_str(),
            format!("hello {i}")
        );
    }
    socket
        .send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .expect("send");
    assert_eq!(
        socket
            .next()
            .await
            .expect("frame")
            .expect("ok")
            .into_data()
            .as_ref(),
        &[0u8, 1, 2, 255]
    );
    socket.close(None).await.expect("close");
}

#[tokio::test]
async fn weighted_split_of_10000_requests_follows_the_weights() {
    let v1 = Upstream::start("v1", UpstreamProtocol::Http1).await;
    let v2 = Upstream::start("v2", UpstreamProtocol::Http1).await;
    let v3 = Upstream::start("v3", UpstreamProtocol::Http1).await;
    let never = Upstream::start("never", UpstreamProtocol::Http1).await;
    let routes = "- name: split\n  match: { prefix: / }\n  action:\n    weightedTargets:\n      - { cluster: v1, weight: 70 }\n      - { cluster: v2, weight: 20 }\n      - { cluster: v3, weight: 10 }\n      - { cluster: never, weight: 0 }\n";
    let yaml = table_yaml(
        routes,
        &[
            ("v1", &[v1.addr], "HTTP1"),
            ("v2", &[v2.addr], "HTTP1"),
            ("v3", &[v3.addr], "HTTP1"),
            ("never", &[never.addr], "HTTP1"),
        ],
    );
    let proxy = ProxyProcess::start(&yaml).await.expect("proxy");
    let url = Arc::new(proxy.url("web").await);
    let client = Client::http1();
    // 10,000 requests from 20 concurrent workers.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (client, url) = (client.clone(), Arc::clone(&url));
        tasks.push(tokio::spawn(async move {
            let mut seen: HashMap<String, usize> = HashMap::new();
            for _ in 0..500 {
                let r = client.get(&url).await.expect("request");
                assert_eq!(r.status, 200);
                *seen.entry(r.upstream()).or_default() += 1;
            }
            seen
        }));
    }
    let mut total: HashMap<String, usize> = HashMap::new();
    for t in tasks {
        for (k, v) in t.await.expect("worker") {
            *total.entry(k).or_default() += v;
        }
    }
    let share = |k: &str| total.get(k).copied().unwrap_or(0) as f64 / 100.0;
    for (name, want) in [("v1", 70.0), ("v2", 20.0), ("v3", 10.0)] {
        let got = share(name);
        assert!(
            (got - want).abs() <= 3.0,
            "{name}: {got}% of traffic, want {want}% ± 3: {total:?}"
        );
    }
    assert_eq!(never.hits(), 0, "weight 0 is never picked");
    assert_eq!(total.values().sum::<usize>(), 10_000);
}

#[tokio::test]
async fn load_balancing_spreads_over_endpoints() {
    for lb in ["ROUND_ROBIN", "LEAST_REQUEST"] {
        let ups = [
            Upstream::start("e1", UpstreamProtocol::Http1).await,
            Upstream::start("e2", UpstreamProtocol::Http1).await,
            Upstream::start("e3", UpstreamProtocol::Http1).await,
        ];
        let addrs: Vec<_> = ups.iter().map(|u| u.addr).collect();
        let yaml = table_yaml(CATCH_ALL_TO_A, &[("a", &addrs, "HTTP1")]).replace(
            "  - name: a\n",
            &format!("  - name: a\n    lbPolicy: {lb}\n"),
        );
        let proxy = ProxyProcess::start(&yaml).await.expect("proxy");
        let url = proxy.url("web").await;
        let c = Client::http1();
        for _ in 0..300 {
            assert_eq!(c.get(&url).await.expect("request").status, 200);
        }
        for u in &ups {
            assert!(
                u.hits() >= 50,
                "{lb}: endpoint {} got {} of 300",
                u.name,
                u.hits()
            );
        }
        if lb == "ROUND_ROBIN" {
            assert!(
                ups.iter().all(|u| u.hits() == 100),
                "round robin is exact: {:?}",
                ups.iter().map(|u| u.hits()).collect::<Vec<_>>()
            );
        }
    }
}

/// An HTTP/2 client on prior knowledge, its connection driven by a task.
async fn h2_client(addr: std::net::SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A gRPC call to `method`, through a proxy, to an upstream that echoes its messages: the
/// upstream and the proxy (kept alive by the caller), the response, and the request's stream.
async fn echo_call(
    method: &str,
) -> (
    ferry_tests::upstream::EchoH2Upstream,
    ProxyProcess,
    h2::client::ResponseFuture,
    h2::SendStream<bytes::Bytes>,
) {
    let up = ferry_tests::upstream::EchoH2Upstream::start().await;
    let proxy = ProxyProcess::start(&table_yaml(CATCH_ALL_TO_A, &[("a", &[up.addr], "GRPC")]))
        .await
        .expect("proxy");
    let addr = proxy.listener("web").await.expect("listener");
    let mut client = h2_client(addr).await.ready().await.expect("ready");
    let call = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/echo.Echo/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, tx) = client.send_request(call, false).expect("send");
    (up, proxy, response, tx)
}

/// Reads `n` bytes of `body`, giving the window back as it goes.
async fn read_exactly(body: &mut h2::RecvStream, n: usize) -> Vec<u8> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let data = body.data().await.expect("body ended early").expect("data");
        let _ = body.flow_control().release_capacity(data.len());
        got.extend_from_slice(&data);
    }
    got
}

#[tokio::test]
async fn a_bidirectional_stream_flows_both_ways_through_an_http2_upstream() {
    // The upstream answers before the request body has begun: the proxy must keep streaming
    // the client's messages after the response, each echoed before the next is sent.
    let (_up, _proxy, response, mut tx) = echo_call("Bidi").await;
    let response = response.await.expect("response headers before any message");
    assert_eq!(response.status(), 200);
    let mut rx = response.into_body();
    let mut sent = 0;
    for i in 0..3 {
        let message = bytes::Bytes::from(format!("message {i} of a bidirectional call"));
        sent += message.len();
        tx.send_data(message.clone(), false).expect("send message");
        let echo = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            read_exactly(&mut rx, message.len()),
        )
        .await
        .unwrap_or_else(|_| panic!("message {i} was not echoed"));
        assert_eq!(echo, message);
    }
    tx.send_data(bytes::Bytes::new(), true).expect("end");
    assert!(rx.data().await.is_none(), "nothing after the echoes");
    let trailers = rx
        .trailers()
        .await
        .expect("trailers")
        .expect("some trailers");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["x-echoed-bytes"], sent.to_string().as_str());
}

#[tokio::test]
async fn a_body_larger_than_every_window_streams_through_an_http2_upstream() {
    // 3 MiB each way: more than the upstream's 64 KiB stream window and the proxy's own, so
    // every hop waits for WINDOW_UPDATEs, and nothing may be lost or reordered.
    let (_up, _proxy, response, mut tx) = echo_call("Large").await;
    let payload: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let to_send = bytes::Bytes::from(payload.clone());
    let writer = tokio::spawn(async move {
        let mut rest = to_send;
        while !rest.is_empty() {
            tx.reserve_capacity(rest.len().min(16 * 1024));
            let n = std::future::poll_fn(|cx| tx.poll_capacity(cx))
                .await
                .expect("capacity")
                .expect("capacity");
            let chunk = rest.split_to(n.min(rest.len()));
            tx.send_data(chunk, rest.is_empty()).expect("send chunk");
        }
    });
    let response = response.await.expect("response");
    assert_eq!(response.status(), 200);
    let mut rx = response.into_body();
    let echoed = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        read_exactly(&mut rx, payload.len()),
    )
    .await
    .expect("the echo stalled");
    writer.await.expect("writer");
    assert!(echoed == payload, "the echo differs from what was sent");
    let trailers = rx
        .trailers()
        .await
        .expect("trailers")
        .expect("some trailers");
    assert_eq!(
        trailers["x-echoed-bytes"],
        payload.len().to_string().as_str()
    );
}

/// An HTTP/2 upstream that never answers and reports the reason of every RST_STREAM it gets.
async fn silent_h2_upstream() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<h2::Reason>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (resets, rx) = tokio::sync::mpsc::unbounded_channel();
    ferry_tests::upstream::serve_h2(
        listener,
        h2::server::Builder::new(),
        move |_req, mut respond| {
            let resets = resets.clone();
            async move {
                if let Ok(reason) = std::future::poll_fn(|cx| respond.poll_reset(cx)).await {
                    let _ = resets.send(reason);
                }
            }
        },
    );
    (addr, rx)
}

async fn next_reset(resets: &mut tokio::sync::mpsc::UnboundedReceiver<h2::Reason>) -> h2::Reason {
    tokio::time::timeout(std::time::Duration::from_secs(3), resets.recv())
        .await
        .expect("the upstream stream was never reset")
        .expect("reset")
}

#[tokio::test]
async fn a_timed_out_or_abandoned_request_is_cancelled_at_the_http2_upstream() {
    let (up, mut resets) = silent_h2_upstream().await;
    let route = "- name: all\n  match: { prefix: / }\n  action:\n    weightedTargets: [{ cluster: a, weight: 1 }]\n    timeouts: { request: 0.3s }\n";
    let proxy = ProxyProcess::start(&table_yaml(route, &[("a", &[up], "HTTP2")]))
        .await
        .expect("proxy");
    let url = proxy.url("web").await;
    // The route's timeout answers the client 504 and stops the upstream's work.
    let r = Client::http2().get(&url).await.expect("get");
    assert_eq!(r.status, 504);
    assert_eq!(next_reset(&mut resets).await, h2::Reason::CANCEL);

    // A client that goes away: its stream is reset, and so is the upstream's.
    let addr = proxy.listener("web").await.expect("listener");
    let mut client = h2_client(addr).await.ready().await.expect("ready");
    let request = http::Request::builder()
        .uri(format!("http://{addr}/abandoned"))
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).expect("send");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    drop(response);
    assert_eq!(next_reset(&mut resets).await, h2::Reason::CANCEL);
}

/// Sends `n` requests at once (`/r0`, `/r1`…), each on its own client connection, and checks
/// that every one is answered 200 "ok".
async fn all_answered_ok(url: &str, n: usize) {
    let calls = (0..n).map(|i| {
        let url = format!("{url}/r{i}");
        async move { Client::http1().get(&url).await.expect("get") }
    });
    for r in futures_util::future::join_all(calls).await {
        assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "ok"));
    }
}

/// A proxy whose catch-all route goes to one HTTP/2 upstream with the cluster's `idleTimeout`
/// at `idle`, and its listener's URL.
async fn proxy_with_idle_timeout(up: std::net::SocketAddr, idle: &str) -> (ProxyProcess, String) {
    let yaml = table_yaml(CATCH_ALL_TO_A, &[("a", &[up], "HTTP2")]).replace(
        "protocol: HTTP2\n",
        &format!("protocol: HTTP2\n    idleTimeout: {idle}\n"),
    );
    let proxy = ProxyProcess::start(&yaml).await.expect("proxy");
    let url = proxy.url("web").await;
    (proxy, url)
}

/// What `/clusters` shows of the first cluster's first endpoint's HTTP/2 connections.
async fn http2_status(proxy: &ProxyProcess) -> serde_json::Value {
    let (_, clusters) = proxy.admin_get("/clusters").await.expect("/clusters");
    let clusters: serde_json::Value = serde_json::from_str(&clusters).expect("json");
    clusters[0]["endpoints"][0]["http2"].clone()
}

#[tokio::test]
async fn an_idle_http2_upstream_connection_is_closed_after_the_idle_timeout() {
    use std::time::{Duration, Instant};
    let up = ferry_tests::upstream::CountingH2Upstream::start(Default::default()).await;
    let (proxy, url) = proxy_with_idle_timeout(up.addr, "0.5s").await;
    let client = Client::http1();

    let r = client.get(&format!("{url}/once")).await.expect("get");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "ok");
    let answered = Instant::now();
    assert_eq!(up.accepted(), 1);
    let deadline = answered + Duration::from_secs(5);
    while up.ended() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(up.ended(), 1, "the idle connection was never closed");
    assert!(
        answered.elapsed() >= Duration::from_millis(500),
        "closed {:?} after its last request, before idleTimeout",
        answered.elapsed()
    );
    let open = proxy
        .wait_metric_below("ferry_upstream_connections_active{cluster=\"a\"}", 1.0)
        .await;
    assert_eq!(open, 0.0);

    // The next request opens a new connection. A response that streams for longer than
    // idleTimeout keeps its connection: the request after it goes on the same one.
    let r = client.get(&format!("{url}/slow")).await.expect("slow get");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "chunk 0;chunk 1;chunk 2;chunk 3;chunk 4;");
    let r = client.get(&format!("{url}/after")).await.expect("get");
    assert_eq!(r.status, 200);
    assert_eq!(
        (up.accepted(), up.ended()),
        (2, 1),
        "a connection carrying a stream was retired as idle"
    );
}

#[tokio::test]
async fn requests_waiting_on_a_failed_http2_connect_fail_with_it_not_one_after_another() {
    use std::time::{Duration, Instant};
    // An upstream whose accept queue (backlog 1) is full: the kernel drops the SYN of any new
    // connection, so connecting hangs until the cluster's connectTimeout, as toward a task that
    // is gone without a trace.
    let listener = ferry_tests::tcp::backlog_one_listener();
    let up = listener.local_addr().unwrap();
    let fillers = ferry_tests::tcp::fill_accept_queue(up).await;
    let yaml = table_yaml(CATCH_ALL_TO_A, &[("a", &[up], "HTTP2")]).replace(
        "protocol: HTTP2\n",
        "protocol: HTTP2\n    connectTimeout: 0.4s\n",
    );
    let proxy = ProxyProcess::start(&yaml).await.expect("proxy");
    let url = proxy.url("web").await;

    // Six requests at once: the first opens the connection, the others wait for it. When it
    // times out, all six are answered; one after another, the last would wait six timeouts.
    let started = Instant::now();
    let calls = (0..6).map(|i| {
        let url = format!("{url}/r{i}");
        async move {
            let r = Client::http1().get(&url).await.expect("get");
            (r.status, started.elapsed())
        }
    });
    let answers = futures_util::future::join_all(calls).await;
    for (status, _) in &answers {
        assert_eq!(*status, 503);
    }
    let slowest = answers.iter().map(|(_, t)| *t).max().unwrap();
    assert!(
        slowest < Duration::from_millis(1600),
        "the last request was answered after {slowest:?}: the waiting requests connected in turn"
    );
    drop((listener, fillers));
}

#[tokio::test]
async fn a_cold_burst_stays_within_a_stream_limit_the_upstream_has_not_announced_yet() {
    use ferry_tests::upstream::{CountingH2Upstream, H2Behaviour};
    use std::time::Duration;
    // An upstream that takes 120 streams at a time per connection, but says so only 300 ms after
    // it accepts one: the proxy's first streams go out before it knows. Past the limit the
    // upstream refuses them, and without a retry policy each refusal would be a 503.
    let up = CountingH2Upstream::start(H2Behaviour {
        max_concurrent_streams: Some(120),
        settings_delay: Duration::from_millis(300),
        answer_delay: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    let proxy = ProxyProcess::start(&table_yaml(CATCH_ALL_TO_A, &[("a", &[up.addr], "HTTP2")]))
        .await
        .expect("proxy");
    let url = proxy.url("web").await;
    all_answered_ok(&url, 150).await;
    assert!(up.most_open() <= 100, "{} streams at once", up.most_open());
}

#[tokio::test]
async fn a_connection_that_takes_no_streams_is_replaced_once_not_once_per_request() {
    use ferry_tests::upstream::{CountingH2Upstream, H2Behaviour};
    use std::time::Duration;
    // The upstream's first connection announces SETTINGS_MAX_CONCURRENT_STREAMS 0 (it takes
    // nothing more on it), its later ones 100, each 200 ms after it is accepted.
    let up = CountingH2Upstream::start(H2Behaviour {
        max_concurrent_streams: Some(100),
        first_connection_streams: Some(0),
        settings_delay: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    let policy =
        "retryPolicy: { maxRetries: 1, backoffBase: 0.001s, httpRetryEvents: [STREAM_ERROR] }";
    let route = format!(
        "- name: all\n  match: {{ prefix: / }}\n  action:\n    weightedTargets: [{{ cluster: a, weight: 1 }}]\n    {policy}\n"
    );
    let proxy = ProxyProcess::start(&table_yaml(&route, &[("a", &[up.addr], "HTTP2")]))
        .await
        .expect("proxy");
    let url = proxy.url("web").await;
    // Six at once go on the first connection before its SETTINGS come, are refused, and are
    // retried. The first retry opens a second connection; the limit of 0 is not assumed for
    // it, so the other five go on it too instead of each opening one more before its SETTINGS
    // come.
    all_answered_ok(&url, 6).await;
    assert_eq!(up.accepted(), 2, "connections opened");
}

#[tokio::test]
async fn requests_past_the_upstreams_stream_limit_open_another_connection() {
    use ferry_tests::upstream::{CountingH2Upstream, H2Behaviour};
    use std::time::{Duration, Instant};
    // An upstream that takes two streams at a time per connection and answers each after 300 ms.
    let up = CountingH2Upstream::start(H2Behaviour {
        max_concurrent_streams: Some(2),
        answer_delay: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let (proxy, url) = proxy_with_idle_timeout(up.addr, "0.5s").await;
    let client = Client::http1();
    // The first connection, whose SETTINGS the proxy then knows.
    assert_eq!(client.get(&url).await.expect("get").status, 200);

    // Six at once: two on the first connection, and two on each of two more. None waits for
    // another to end, and none is refused.
    all_answered_ok(&url, 6).await;
    assert_eq!(up.most_open(), 2, "the upstream's limit held");
    assert_eq!(up.accepted(), 3, "two connections were added for the burst");
    assert_eq!(up.served(), 7);
    assert_eq!(
        http2_status(&proxy).await,
        serde_json::json!({ "connections": 3, "streams": 0, "stream_limit": 2 })
    );

    // One request at a time goes on the first connection, and the two added ones close after
    // idleTimeout while it keeps serving.
    let deadline = Instant::now() + Duration::from_secs(5);
    while up.ended() < 2 && Instant::now() < deadline {
        let r = client.get(&url).await.expect("get");
        assert_eq!(r.status, 200);
    }
    assert_eq!(
        (up.accepted(), up.ended()),
        (3, 2),
        "the added connections stayed open, or the first one closed while in use"
    );
    assert_eq!(http2_status(&proxy).await["connections"], 1);
}

#[tokio::test]
async fn a_request_body_streaming_after_its_response_keeps_its_stream_counted() {
    use ferry_tests::upstream::{CountingH2Upstream, H2Behaviour};
    use std::time::Duration;
    // An upstream that takes one stream at a time per connection; `/early` answers at once and
    // then reads the request body until the client ends it.
    let up = CountingH2Upstream::start(H2Behaviour {
        max_concurrent_streams: Some(1),
        ..Default::default()
    })
    .await;
    let proxy = ProxyProcess::start(&table_yaml(CATCH_ALL_TO_A, &[("a", &[up.addr], "HTTP2")]))
        .await
        .expect("proxy");
    let addr = proxy.listener("web").await.expect("listener");
    let url = proxy.url("web").await;
    // The first connection, whose SETTINGS the proxy then knows.
    assert_eq!(Client::http1().get(&url).await.expect("get").status, 200);

    let mut client = h2_client(addr).await.ready().await.expect("ready");
    let upload = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/early"))
        .body(())
        .unwrap();
    let (response, mut tx) = client.send_request(upload, false).expect("send");
    tx.send_data(bytes::Bytes::from_static(b"first part"), false)
        .expect("send part");
    let response = response.await.expect("the early answer");
    assert_eq!(response.status(), 200);
    let mut rx = response.into_body();
    assert_eq!(read_exactly(&mut rx, 2).await, b"ok");
    assert!(rx.data().await.is_none(), "the answer is whole");

    // The upload's stream is still open at the upstream, at its limit of one: the next request
    // goes on a second connection instead of waiting inside h2 for the upload to end.
    let next = tokio::time::timeout(
        Duration::from_secs(5),
        Client::http1().get(&format!("{url}/next")),
    )
    .await
    .expect("the next request waited behind the streaming upload")
    .expect("get");
    assert_eq!((next.status.as_u16(), next.body.as_str()), (200, "ok"));
    assert_eq!(up.accepted(), 2);
    assert_eq!(
        http2_status(&proxy).await,
        serde_json::json!({ "connections": 2, "streams": 1, "stream_limit": 1 })
    );

    // The upload ends: its stream no longer counts.
    tx.send_data(bytes::Bytes::from_static(b"last part"), true)
        .expect("end the upload");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while http2_status(&proxy).await["streams"] != 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        http2_status(&proxy).await["streams"],
        0,
        "the ended upload still counts"
    );
}
