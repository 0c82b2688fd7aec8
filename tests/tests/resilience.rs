//! Resilience end to end, with upstreams that fail on purpose: retries (each event kind), per-try
//! and request timeouts, outlier ejection, circuit breaking, idle timeouts and health checks.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failures should be loud
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_tests::{Client, ProxyProcess, Upstream, UpstreamProtocol, table_yaml};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// App Mesh's default retry policy, in Ferry's table: 2 retries on connection errors, refused
/// streams, 503 (and the other gateway errors) and resets.
const APP_MESH_DEFAULT_RETRY: &str = "retryPolicy: { maxRetries: 2, httpRetryEvents: [GATEWAY_ERROR, STREAM_ERROR], tcpRetryEvents: [CONNECTION_ERROR] }";

fn route_with(action_extra: &str) -> String {
    format!(
        "- name: r\n  match: {{ prefix: / }}\n  action:\n    weightedTargets: [{{ cluster: a, weight: 1 }}]\n    {action_extra}\n"
    )
}

/// Adds `extra` (indented YAML) to the definition of cluster `a`.
fn with_cluster_settings(yaml: &str, extra: &str) -> String {
    let indented: String = extra.lines().map(|l| format!("    {l}\n")).collect();
    yaml.replace("  - name: a\n", &format!("  - name: a\n{indented}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_endpoint_under_load_is_invisible_to_clients_then_it_is_ejected_and_comes_back()
{
    let ups = [
        Upstream::start("e1", UpstreamProtocol::Http1).await,
        Upstream::start("e2", UpstreamProtocol::Http1).await,
        Upstream::start("e3", UpstreamProtocol::Http1).await,
    ];
    let addrs: Vec<_> = ups.iter().map(|u| u.addr).collect();
    let yaml = with_cluster_settings(
        &table_yaml(
            &route_with(APP_MESH_DEFAULT_RETRY),
            &[("a", &addrs, "HTTP1")],
        ),
        "outlierDetection: { maxServerErrors: 2, interval: 1s, baseEjectionDuration: 1s, maxEjectionPercent: 50 }",
    );
    // Retry decisions are logged, so that a failure here explains itself.
    let proxy = ProxyProcess::start_with(
        &yaml,
        "table.yaml",
        &["--log-level", "info,ferry_proxy::http::forward=debug"],
    )
    .await
    .expect("proxy");
    let url = Arc::new(proxy.url("web").await);

    let load = ferry_tests::Load::start(&url, 16, &[("x-delay-ms", "5")]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let victim = &ups[1];
    victim.kill();
    let killed_at = load.ok();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (ok, failed) = load.stop().await;
    assert_eq!(
        failed,
        0,
        "{failed} client-visible errors ({ok} ok): {}",
        proxy.stderr()
    );
    assert!(
        ok > killed_at + 100,
        "traffic kept flowing after the kill: {killed_at} -> {ok}"
    );
    assert!(
        proxy
            .metric("ferry_outlier_ejections_total{cluster=\"a\"}")
            .await
            >= 1.0,
        "{}",
        proxy.metrics().await
    );
    assert!(
        proxy
            .metric("ferry_http_upstream_retries_total{cluster=\"a\"}")
            .await
            >= 1.0
    );
    let (_, clusters) = proxy.admin_get("/clusters").await.unwrap();
    let clusters: serde_json::Value = serde_json::from_str(&clusters).unwrap();
    let victim_state = clusters[0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["address"] == victim.addr.to_string())
        .cloned()
        .unwrap();
    assert!(
        victim_state["times_ejected"].as_u64().unwrap() >= 1,
        "{victim_state}"
    );

    // It comes back on the same address; once its ejection ends it gets traffic again.
    let revived = Upstream::start_on(victim.addr, "e2-revived", UpstreamProtocol::Http1).await;
    let c = Client::http1();
    let deadline = Instant::now() + Duration::from_secs(8);
    while revived.hits() == 0 && Instant::now() < deadline {
        assert_eq!(c.get(&url).await.unwrap().status, 200);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        revived.hits() > 0,
        "the revived endpoint never received traffic"
    );
}

/// (retry events, upstream path, expected tries at the upstream)
async fn tries(events: &str, path: &str, protocol: UpstreamProtocol) -> usize {
    let up = Upstream::start("a", protocol).await;
    let cluster_proto = if protocol == UpstreamProtocol::Http2 {
        "GRPC"
    } else {
        "HTTP1"
    };
    let policy = format!(
        "retryPolicy: {{ maxRetries: 2, backoffBase: 0.001s, backoffMax: 0.002s, {events} }}"
    );
    let proxy = ProxyProcess::start(&table_yaml(
        &route_with(&policy),
        &[("a", &[up.addr], cluster_proto)],
    ))
    .await
    .unwrap();
    let url = proxy.url("web").await;
    let client = if protocol == UpstreamProtocol::Http2 {
        Client::http2()
    } else {
        Client::http1()
    };
    client.get(&format!("{url}{path}")).await.unwrap();
    let retries = proxy
        .metric("ferry_http_upstream_retries_total{cluster=\"a\"}")
        .await as usize;
    assert_eq!(
        up.hits(),
        retries + 1,
        "{events} {path}: hits vs retries metric"
    );
    up.hits()
}

#[tokio::test]
async fn each_retry_event_triggers_exactly_the_retries_it_should() {
    use UpstreamProtocol::{Http1, Http2};
    let cases: &[(&str, &str, UpstreamProtocol, usize)] = &[
        ("httpRetryEvents: [SERVER_ERROR]", "/status/500", Http1, 3),
        ("httpRetryEvents: [SERVER_ERROR]", "/status/503", Http1, 3),
        ("httpRetryEvents: [SERVER_ERROR]", "/status/511", Http1, 3),
        ("httpRetryEvents: [SERVER_ERROR]", "/status/409", Http1, 1),
        ("httpRetryEvents: [SERVER_ERROR]", "/status/404", Http1, 1),
        ("httpRetryEvents: [SERVER_ERROR]", "/ok", Http1, 1),
        ("httpRetryEvents: [GATEWAY_ERROR]", "/status/502", Http1, 3),
        ("httpRetryEvents: [GATEWAY_ERROR]", "/status/504", Http1, 3),
        ("httpRetryEvents: [GATEWAY_ERROR]", "/status/500", Http1, 1),
        ("httpRetryEvents: [CLIENT_ERROR]", "/status/409", Http1, 3),
        ("httpRetryEvents: [CLIENT_ERROR]", "/status/500", Http1, 1),
        (
            "grpcRetryEvents: [UNAVAILABLE]",
            "/grpc-status/14",
            Http2,
            3,
        ),
        (
            "grpcRetryEvents: [UNAVAILABLE]",
            "/grpc-trailer/14",
            Http2,
            3,
        ),
        ("grpcRetryEvents: [UNAVAILABLE]", "/grpc-status/5", Http2, 1),
        (
            "grpcRetryEvents: [UNAVAILABLE]",
            "/grpc-trailer/0",
            Http2,
            1,
        ),
        (
            "grpcRetryEvents: [DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED]",
            "/grpc-trailer/8",
            Http2,
            3,
        ),
        (
            "grpcRetryEvents: [CANCELLED, INTERNAL]",
            "/grpc-status/13",
            Http2,
            3,
        ),
        ("grpcRetryEvents: [CANCELLED]", "/grpc-status/13", Http2, 1),
        (
            "tcpRetryEvents: [CONNECTION_ERROR]",
            "/status/503",
            Http1,
            1,
        ),
    ];
    for (events, path, protocol, want) in cases {
        let got = tries(events, path, *protocol).await;
        assert_eq!(got, *want, "{events} on {path}: {got} tries, want {want}");
    }
}

/// A bodiless request is lent to each try rather than copied (issue #7): the last of three tries
/// still reaches the upstream with the client's method, path, query and headers, and the
/// request id the proxy gave it.
#[tokio::test]
async fn every_try_of_a_retried_request_carries_the_whole_request() {
    let up = Upstream::start("a", UpstreamProtocol::Http1).await;
    let proxy = ProxyProcess::start(&table_yaml(
        &route_with(APP_MESH_DEFAULT_RETRY),
        &[("a", &[up.addr], "HTTP1")],
    ))
    .await
    .unwrap();
    let url = proxy.url("web").await;
    let c = Client::http1();
    for method in [http::Method::GET, http::Method::DELETE] {
        let before = up.hits();
        let r = c
            .send(
                method.clone(),
                &format!("{url}/status/503?q=1&r=two"),
                &[("x-test", "kept"), ("x-request-id", "id-1234")],
                bytes::Bytes::new(),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 503, "{method}");
        assert_eq!(up.hits() - before, 3, "{method}: 1 try + 2 retries");
        let seen = r.json();
        assert_eq!(seen["method"], method.as_str());
        assert_eq!(seen["uri"], "/status/503?q=1&r=two");
        assert_eq!(r.seen_header("x-test").as_deref(), Some("kept"));
        assert_eq!(r.seen_header("x-request-id").as_deref(), Some("id-1234"));
    }
}

#[tokio::test]
async fn connection_errors_are_retried_on_another_endpoint() {
    let live = Upstream::start("live", UpstreamProtocol::Http1).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let yaml = with_cluster_settings(
        &table_yaml(
            &route_with("retryPolicy: { maxRetries: 1, tcpRetryEvents: [CONNECTION_ERROR] }"),
            &[("a", &[dead, live.addr], "HTTP1")],
        ),
        "lbPolicy: ROUND_ROBIN",
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let url = proxy.url("web").await;
    let c = Client::http1();
    for _ in 0..10 {
        let r = c.get(&url).await.unwrap();
        assert_eq!((r.status.as_u16(), r.upstream()), (200, "live".to_owned()));
    }
    assert_eq!(live.hits(), 10);
    // Round robin advances on the retry's pick too (as Envoy's does), so with two endpoints every
    // request starts on the dead one: ten retries, each a success.
    assert_eq!(
        proxy
            .metric("ferry_http_upstream_retries_total{cluster=\"a\"}")
            .await,
        10.0
    );
    assert_eq!(
        proxy
            .metric("ferry_http_upstream_retry_success_total{cluster=\"a\"}")
            .await,
        10.0
    );

    // Without the policy, the dead endpoint's picks fail with 503 UF.
    let no_retry = table_yaml(&route_with(""), &[("a", &[dead, live.addr], "HTTP1")]);
    let proxy = ProxyProcess::start(&with_cluster_settings(&no_retry, "lbPolicy: ROUND_ROBIN"))
        .await
        .unwrap();
    let url = proxy.url("web").await;
    let statuses: Vec<u16> = futures_util::future::join_all((0..4).map(|_| c.get(&url)))
        .await
        .into_iter()
        .map(|r| r.unwrap().status.as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 503).count(),
        2,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn refused_streams_are_retried_with_stream_error() {
    let refusing = ferry_tests::upstream::RefusingH2Upstream::start(2).await;
    let policy =
        "retryPolicy: { maxRetries: 2, backoffBase: 0.001s, httpRetryEvents: [STREAM_ERROR] }";
    let proxy = ProxyProcess::start(&table_yaml(
        &route_with(policy),
        &[("a", &[refusing.addr], "HTTP2")],
    ))
    .await
    .unwrap();
    let r = Client::http1().get(&proxy.url("web").await).await.unwrap();
    assert_eq!(
        r.status, 200,
        "two refused streams, then the answer: {}",
        r.body
    );
    assert_eq!(refusing.streams(), 3);

    // Without stream-error the first refusal is the answer.
    let refusing = ferry_tests::upstream::RefusingH2Upstream::start(1).await;
    let policy = "retryPolicy: { maxRetries: 2, httpRetryEvents: [CLIENT_ERROR] }";
    let proxy = ProxyProcess::start(&table_yaml(
        &route_with(policy),
        &[("a", &[refusing.addr], "HTTP2")],
    ))
    .await
    .unwrap();
    let r = Client::http1().get(&proxy.url("web").await).await.unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(refusing.streams(), 1);
}

#[tokio::test]
async fn per_try_timeout_versus_request_timeout() {
    let up = Upstream::start("a", UpstreamProtocol::Http1).await;
    // Three tries of 200 ms each, well within the 5 s request timeout.
    let policy = "retryPolicy: { maxRetries: 2, perTryTimeout: 0.2s, backoffBase: 0.001s, backoffMax: 0.002s, httpRetryEvents: [GATEWAY_ERROR] }\n    timeouts: { request: 5s }";
    let proxy = ProxyProcess::start(&table_yaml(
        &route_with(policy),
        &[("a", &[up.addr], "HTTP1")],
    ))
    .await
    .unwrap();
    let url = proxy.url("web").await;
    // A quick request first, on the connection the slow one then reuses: the per-try timer a
    // connection keeps for its requests must time each try from its own start.
    let client = Client::http1();
    assert_eq!(client.get(&url).await.unwrap().status, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    let r = client
        .get_with(&url, &[("x-delay-ms", "1000")])
        .await
        .unwrap();
    let took = t.elapsed();
    assert_eq!(r.status, 504);
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_millis(950),
        "3 × 200 ms tries: {took:?}"
    );
    assert_eq!(up.hits(), 4);
    assert_eq!(
        proxy
            .metric("ferry_http_upstream_per_try_timeouts_total{cluster=\"a\"}")
            .await,
        3.0
    );

    // The request timeout (300 ms) cuts the retries short: the second try never finishes.
    let up = Upstream::start("a", UpstreamProtocol::Http1).await;
    let policy = "retryPolicy: { maxRetries: 2, perTryTimeout: 0.2s, backoffBase: 0.001s, backoffMax: 0.002s, httpRetryEvents: [GATEWAY_ERROR] }\n    timeouts: { request: 0.3s }";
    let proxy = ProxyProcess::start(&table_yaml(
        &route_with(policy),
        &[("a", &[up.addr], "HTTP1")],
    ))
    .await
    .unwrap();
    let t = Instant::now();
    let r = Client::http1()
        .get_with(&proxy.url("web").await, &[("x-delay-ms", "1000")])
        .await
        .unwrap();
    let took = t.elapsed();
    assert_eq!(r.status, 504);
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_millis(550),
        "{took:?}"
    );
    assert_eq!(up.hits(), 2);
    assert_eq!(
        proxy
            .metric("ferry_http_upstream_request_timeouts_total{cluster=\"a\"}")
            .await,
        1.0
    );
}

/// POSTs bodies of the given lengths to a route that retries 503s, against an upstream that
/// answers 503: after each, the upstream has seen the given number of requests in all (a body
/// kept for retries is sent `1 + max_retries` times, a larger one once). Returns the proxy's count
/// of bodies sent once for being over the bound.
async fn post_to_a_retried_503(
    listener_limits: &str,
    max_retries: u32,
    cases: &[(usize, usize)],
) -> f64 {
    let up = Upstream::start("a", UpstreamProtocol::Http1).await;
    let policy = format!(
        "retryPolicy: {{ maxRetries: {max_retries}, backoffBase: 0.001s, httpRetryEvents: [SERVER_ERROR] }}"
    );
    let yaml = table_yaml(&route_with(&policy), &[("a", &[up.addr], "HTTP1")]).replace(
        "    virtualHosts:",
        &format!("{listener_limits}    virtualHosts:"),
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let url = proxy.url("web").await;
    let c = Client::http1();
    for &(len, hits) in cases {
        let body = bytes::Bytes::from(vec![b'x'; len]);
        let r = c
            .send(http::Method::POST, &format!("{url}/status/503"), &[], body)
            .await
            .unwrap();
        assert_eq!(
            (r.status.as_u16(), up.hits()),
            (503, hits),
            "a {len}-byte body"
        );
        assert_eq!(r.json()["body_len"], len);
    }
    proxy
        .metric("ferry_http_upstream_retry_body_too_large_total{cluster=\"a\"}")
        .await
}

/// By default a 1,000-byte body is replayed and a 200 KB one streams once, is not retried, and
/// is counted.
#[tokio::test]
async fn large_request_bodies_stream_once_and_are_not_retried() {
    let too_large = post_to_a_retried_503("", 2, &[(1000, 3), (200_000, 4)]).await;
    assert_eq!(too_large, 1.0);
}

/// `limits.maxRetryBodyBytes` moves the bound: a body within it is retried, one past it is sent
/// once and counted.
#[tokio::test]
async fn the_retry_body_bound_is_the_listeners_max_retry_body_bytes() {
    let limits = "    limits: { maxRetryBodyBytes: 2048 }\n";
    let too_large = post_to_a_retried_503(limits, 1, &[(2048, 2), (2049, 3)]).await;
    assert_eq!(too_large, 1.0);
}

#[tokio::test]
async fn circuit_breaking_refuses_at_once_over_max_connections() {
    let up = Upstream::start("a", UpstreamProtocol::Http1).await;
    let yaml = with_cluster_settings(
        &table_yaml(&route_with(""), &[("a", &[up.addr], "HTTP1")]),
        "connectionPool: { maxConnections: 2 }",
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let url = proxy.url("web").await;
    let started = Instant::now();
    let replies = futures_util::future::join_all((0..10).map(|_| {
        let url = url.clone();
        async move {
            let r = Client::http1()
                .get_with(&url, &[("x-delay-ms", "1000")])
                .await
                .unwrap();
            (r.status.as_u16(), started.elapsed(), r.body)
        }
    }))
    .await;
    let refused: Vec<_> = replies.iter().filter(|(s, _, _)| *s == 503).collect();
    let served = replies.iter().filter(|(s, _, _)| *s == 200).count();
    assert_eq!((refused.len(), served), (8, 2), "{replies:?}");
    for (_, at, body) in &refused {
        assert!(
            *at < Duration::from_millis(500),
            "refused at once, not after queueing: {at:?}"
        );
        assert!(body.contains("overflow"), "{body}");
    }
    assert_eq!(
        proxy
            .metric("ferry_upstream_overflow_total{cluster=\"a\",kind=\"pending\"}")
            .await,
        8.0
    );
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn pending_requests_wait_for_a_free_connection() {
    let up = Upstream::start("a", UpstreamProtocol::Http1).await;
    let yaml = with_cluster_settings(
        &table_yaml(&route_with(""), &[("a", &[up.addr], "HTTP1")]),
        "connectionPool: { maxConnections: 1, maxPendingRequests: 5 }",
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let url = proxy.url("web").await;
    let statuses: Vec<u16> = futures_util::future::join_all((0..4).map(|_| {
        let url = url.clone();
        async move {
            Client::http1()
                .get_with(&url, &[("x-delay-ms", "100")])
                .await
                .unwrap()
                .status
                .as_u16()
        }
    }))
    .await;
    assert_eq!(statuses, vec![200; 4], "queued, served one at a time");
}

#[tokio::test]
async fn idle_client_connections_are_closed_busy_ones_are_not() {
    let up = Upstream::start("a", UpstreamProtocol::Http1).await;
    let yaml = table_yaml(&route_with(""), &[("a", &[up.addr], "HTTP1")]).replace(
        "    virtualHosts:",
        "    timeouts: { idle: 0.3s }\n    virtualHosts:",
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let addr = proxy.listener("web").await.unwrap();

    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 8192];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let t = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(3), idle.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap();
    assert_eq!(n, 0, "the proxy closed the idle connection");
    assert!(
        t.elapsed() >= Duration::from_millis(250) && t.elapsed() < Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );

    // A request that takes longer than the idle timeout is not cut: it is in flight.
    let mut busy = tokio::net::TcpStream::connect(addr).await.unwrap();
    busy.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nx-delay-ms: 800\r\n\r\n")
        .await
        .unwrap();
    let n = busy.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}

#[tokio::test]
async fn health_checks_take_an_endpoint_out_and_back() {
    let good = Upstream::start("good", UpstreamProtocol::Http1).await;
    let flaky = Upstream::start("flaky", UpstreamProtocol::Http1).await;
    let yaml = with_cluster_settings(
        &table_yaml(&route_with(""), &[("a", &[good.addr, flaky.addr], "HTTP1")]),
        "lbPolicy: ROUND_ROBIN\nhealthCheck: { protocol: HTTP, path: /health, healthyThreshold: 2, unhealthyThreshold: 2, interval: 0.1s, timeout: 1s }",
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let url = proxy.url("web").await;
    let c = Client::http1();
    let spread = |n: usize| {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let mut flaky_hits = 0;
            for _ in 0..n {
                let r = c.get(&url).await.unwrap();
                assert_eq!(r.status, 200);
                if r.upstream() == "flaky" {
                    flaky_hits += 1;
                }
            }
            flaky_hits
        }
    };
    assert_eq!(spread(20).await, 10, "both healthy: round robin");

    flaky.set_healthy(false);
    wait_until(|| async {
        proxy
            .metric("ferry_cluster_endpoints_healthy{cluster=\"a\"}")
            .await
            == 1.0
    })
    .await;
    assert_eq!(spread(30).await, 0, "no traffic to the unhealthy endpoint");
    assert!(
        proxy
            .stderr()
            .contains("endpoint marked unhealthy: answered 503"),
        "{}",
        proxy.stderr()
    );
    let (_, clusters) = proxy.admin_get("/clusters").await.unwrap();
    assert!(clusters.contains("\"UNHEALTHY\""), "{clusters}");

    // Panic mode: with every endpoint unhealthy, traffic still flows to all.
    good.set_healthy(false);
    wait_until(|| async {
        proxy
            .metric("ferry_cluster_endpoints_healthy{cluster=\"a\"}")
            .await
            == 0.0
    })
    .await;
    assert!(spread(20).await > 0);

    good.set_healthy(true);
    flaky.set_healthy(true);
    wait_until(|| async {
        proxy
            .metric("ferry_cluster_endpoints_healthy{cluster=\"a\"}")
            .await
            == 2.0
    })
    .await;
    assert_eq!(spread(20).await, 10, "back in rotation");
}

async fn wait_until<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not reached within 5 s");
}

#[tokio::test]
async fn a_stream_above_an_upstream_goaway_is_retried_as_refused() {
    // The upstream's first connection says GOAWAY before it takes any stream (last stream id 0,
    // NO_ERROR: shutting down gracefully), so the proxy's stream on it was never processed. The
    // next connection answers.
    let up = ferry_tests::upstream::CountingH2Upstream::start(ferry_tests::upstream::H2Behaviour {
        goaway_first: true,
        ..Default::default()
    })
    .await;
    let policy =
        "retryPolicy: { maxRetries: 1, backoffBase: 0.001s, httpRetryEvents: [STREAM_ERROR] }";
    let proxy = ProxyProcess::start(&table_yaml(
        &route_with(policy),
        &[("a", &[up.addr], "HTTP2")],
    ))
    .await
    .unwrap();
    let r = Client::http1().get(&proxy.url("web").await).await.unwrap();
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (200, "ok"),
        "the stream the upstream did not take was sent again"
    );
    assert_eq!((up.accepted(), up.served()), (2, 1));

    // Without a policy that retries it, the answer says what happened.
    let up = ferry_tests::upstream::CountingH2Upstream::start(ferry_tests::upstream::H2Behaviour {
        goaway_first: true,
        ..Default::default()
    })
    .await;
    let proxy = ProxyProcess::start(&table_yaml(&route_with(""), &[("a", &[up.addr], "HTTP2")]))
        .await
        .unwrap();
    let r = Client::http1().get(&proxy.url("web").await).await.unwrap();
    assert_eq!(r.status, 503);
    assert!(
        r.body
            .contains("the upstream is closing the connection (GOAWAY NO_ERROR)"),
        "{}",
        r.body
    );
}
