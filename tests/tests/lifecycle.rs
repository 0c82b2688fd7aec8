//! Process lifecycle: SIGTERM drains (in-flight requests finish, new connections are refused, exit
//! 0), /quitquitquit, and the admin endpoints that health checks and operators use.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failures should be loud
use std::time::{Duration, Instant};

use ferry_tests::{Client, ProxyProcess, Upstream, UpstreamProtocol, table_yaml};

const ALL_TO_A: &str = "- name: all\n  match: { prefix: / }\n  action: { weightedTargets: [{ cluster: a, weight: 1 }] }\n";

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_and_refuses_new_connections() {
    let up = Upstream::start("a", UpstreamProtocol::Http1).await;
    let mut proxy = ProxyProcess::start(&table_yaml(ALL_TO_A, &[("a", &[up.addr], "HTTP1")]))
        .await
        .expect("proxy");
    let addr = proxy.listener("web").await.expect("listener");
    let url = format!("http://{addr}");

    // Five requests that take 1.5 s each at the upstream.
    let mut in_flight = Vec::new();
    for _ in 0..5 {
        let url = url.clone();
        in_flight.push(tokio::spawn(async move {
            Client::http1()
                .get_with(&url, &[("x-delay-ms", "1500")])
                .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let sent_at = Instant::now();
    proxy.sigterm();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // New connections are refused while the old ones drain.
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(
        refused.is_err(),
        "a new connection was accepted during the drain"
    );
    let (status, body) = proxy
        .admin_get("/ready")
        .await
        .expect("admin still up while draining");
    assert_eq!((status, body.trim()), (503, "DRAINING"));

    for r in in_flight {
        let r = r.await.expect("task").expect("in-flight request completed");
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let status = proxy.wait(Duration::from_secs(10)).await.expect("exits");
    assert!(status.success(), "exit status {status}");
    assert!(
        sent_at.elapsed() < Duration::from_secs(5),
        "exited once drained, not at the drain timeout"
    );
}

#[tokio::test]
async fn drain_timeout_bounds_the_wait() {
    let up = Upstream::start("a", UpstreamProtocol::Http1).await;
    let mut proxy = ProxyProcess::start_with(
        &table_yaml(ALL_TO_A, &[("a", &[up.addr], "HTTP1")]),
        "table.yaml",
        &["--drain-timeout", "500ms"],
    )
    .await
    .expect("proxy");
    let url = proxy.url("web").await;
    let slow = tokio::spawn(async move {
        Client::http1()
            .get_with(&url, &[("x-delay-ms", "10000")])
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    proxy.sigterm();
    let status = proxy.wait(Duration::from_secs(5)).await.expect("exits");
    assert!(status.success());
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        proxy.stderr().contains("drain timeout reached"),
        "{}",
        proxy.stderr()
    );
    slow.abort();
}

#[tokio::test]
async fn quitquitquit_exits_cleanly_and_only_by_post() {
    let up = Upstream::start("a", UpstreamProtocol::Http1).await;
    let mut proxy = ProxyProcess::start(&table_yaml(ALL_TO_A, &[("a", &[up.addr], "HTTP1")]))
        .await
        .expect("proxy");
    assert_eq!(proxy.admin_get("/quitquitquit").await.expect("get").0, 405);
    assert_eq!(
        proxy.admin_post("/quitquitquit").await.expect("post").0,
        200
    );
    assert!(
        proxy
            .wait(Duration::from_secs(5))
            .await
            .expect("exits")
            .success()
    );
}

#[tokio::test]
async fn admin_endpoints() {
    let up = Upstream::start("a", UpstreamProtocol::Http1).await;
    let proxy = ProxyProcess::start(&table_yaml(ALL_TO_A, &[("a", &[up.addr], "HTTP1")]))
        .await
        .expect("proxy");
    let url = proxy.url("web").await;
    assert_eq!(
        Client::http1().get(&url).await.expect("request").status,
        200
    );

    assert_eq!(
        proxy.admin_get("/ready").await.expect("ready"),
        (200, "LIVE\n".to_owned())
    );
    assert_eq!(proxy.admin_get("/live").await.expect("live").0, 200);
    // The ECS health check: curl -s http://localhost:9901/server_info | grep state | grep -q LIVE
    let (status, info) = proxy.admin_get("/server_info").await.expect("server_info");
    assert_eq!(status, 200);
    assert!(
        info.lines()
            .any(|l| l.contains("state") && l.contains("LIVE")),
        "{info}"
    );

    let (_, dump) = proxy.admin_get("/config_dump").await.expect("config_dump");
    let dump: serde_json::Value = serde_json::from_str(&dump).expect("json");
    assert_eq!(dump["table"]["listeners"][0]["name"], "web");
    assert!(
        dump["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("sha-fnv-")),
        "{dump}"
    );

    let (_, clusters) = proxy.admin_get("/clusters").await.expect("clusters");
    let clusters: serde_json::Value = serde_json::from_str(&clusters).expect("json");
    assert_eq!(clusters[0]["name"], "a");
    assert_eq!(clusters[0]["endpoints"][0]["address"], up.addr.to_string());

    assert_eq!(proxy.admin_get("/nope").await.expect("404").0, 404);
    assert_eq!(
        proxy
            .admin_get("/logging?level=debug")
            .await
            .expect("get")
            .0,
        405
    );
    assert_eq!(
        proxy
            .admin_post("/logging?level=debug")
            .await
            .expect("post")
            .0,
        200
    );
    assert_eq!(
        proxy
            .admin_post("/logging?level=nonsense=[")
            .await
            .expect("post")
            .0,
        400
    );

    // drain_listeners: the listener stops accepting; the admin stays up.
    assert_eq!(
        proxy.admin_post("/drain_listeners").await.expect("drain").0,
        200
    );
    let addr = proxy.listener("web").await.err();
    assert!(addr.is_some(), "no listener is left after drain_listeners");
    assert_eq!(proxy.admin_get("/ready").await.expect("ready").0, 503);
}

/// Once up, the proxy gives back the pages of its start-up code (`--release-startup-pages`, on by
/// default): its file-backed RSS is well below that of the same proxy told to keep them, and it
/// serves on (the request path faults its pages back in). The kernel only drops pages that no
/// other process maps, so each proxy here runs its own copy of the binary: the other tests'
/// proxies share the pages of the usual one.
#[tokio::test]
async fn start_up_pages_are_released_once_serving() {
    fn rss_file_kb(pid: u32) -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("RssFile:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
    let up = Upstream::start("a", UpstreamProtocol::Http1).await;
    let yaml = table_yaml(
        "- { name: r, match: { prefix: / }, action: { weightedTargets: [{ cluster: a, weight: 1 }] } }",
        &[("a", &[up.addr], "HTTP1")],
    );
    let bins = tempfile::tempdir().unwrap();
    let own_copy = |name: &str| {
        let path = bins.path().join(name);
        std::fs::copy(ferry_tests::proxy::proxy_bin(), &path).unwrap();
        path
    };
    let (released_bin, kept_bin) = (own_copy("released"), own_copy("kept"));
    let released = ProxyProcess::start_bin(&released_bin, &yaml, "table.yaml", &[], &[])
        .await
        .unwrap();
    let kept = ProxyProcess::start_bin(
        &kept_bin,
        &yaml,
        "table.yaml",
        &["--release-startup-pages", "false"],
        &[],
    )
    .await
    .unwrap();
    for proxy in [&released, &kept] {
        let addr = proxy.listener("web").await.unwrap();
        let resp = Client::http1()
            .get(&format!("http://{addr}/"))
            .await
            .unwrap();
        assert_eq!(resp.status, 200);
    }
    let (r, k) = (rss_file_kb(released.pid()), rss_file_kb(kept.pid()));
    // Measured on the debug build: ~14 MB against ~25 MB.
    assert!(
        r * 5 < k * 4,
        "file-backed RSS: {r} kB released vs {k} kB kept"
    );
}
