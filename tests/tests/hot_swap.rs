//! Hot swap: rewriting the config file under load changes routing without failing a request, and
//! a bad file is rejected whole while the previous table keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failures should be loud
use std::sync::Arc;
use std::time::Duration;

use ferry_tests::{Client, ProxyProcess, Upstream, UpstreamProtocol};

fn table(version: &str, target: &str, a: std::net::SocketAddr, b: std::net::SocketAddr) -> String {
    format!(
        r#"version: {version}
listeners:
  - name: web
    address: 127.0.0.1:0
    virtualHosts:
      - name: all
        domains: ["*"]
        routes:
          - name: everything
            match: {{ prefix: / }}
            action:
              weightedTargets: [{{ cluster: {target}, weight: 100 }}]
clusters:
  - name: blue
    staticEndpoints: {{ endpoints: [{{ address: "{a}" }}] }}
  - name: green
    staticEndpoints: {{ endpoints: [{{ address: "{b}" }}] }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_swaps_under_load_fail_no_request() {
    let blue = Upstream::start("blue", UpstreamProtocol::Http1).await;
    let green = Upstream::start("green", UpstreamProtocol::Http1).await;
    let proxy = ProxyProcess::start(&table("v0", "blue", blue.addr, green.addr))
        .await
        .expect("proxy");
    let url = Arc::new(proxy.url("web").await);

    // 60 concurrent request loops, each on its own keep-alive connection.
    let load = ferry_tests::Load::start(&url, 60, &[]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 1..=50 {
        let target = if i % 2 == 1 { "green" } else { "blue" };
        let version = format!("v{i}");
        proxy.write_config(&table(&version, target, blue.addr, green.addr));
        proxy
            .wait_for_version(&version)
            .await
            .expect("swap applied");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (ok, failed) = load.stop().await;
    assert_eq!(failed, 0, "{failed} requests failed ({ok} succeeded)");
    assert!(
        ok > 500,
        "the load kept going through the swaps: {ok} requests"
    );
    assert_eq!(proxy.metric("ferry_config_swaps_total").await, 51.0);
    assert_eq!(proxy.metric("ferry_config_rejected_total").await, 0.0);

    // The last table (v50) sends everything to blue.
    let before = (blue.hits(), green.hits());
    let c = Client::http1();
    for _ in 0..100 {
        assert_eq!(c.get(&url).await.expect("request").upstream(), "blue");
    }
    assert_eq!(green.hits(), before.1);
    assert_eq!(blue.hits(), before.0 + 100);
}

#[tokio::test]
async fn a_bad_file_is_rejected_and_the_old_table_keeps_serving() {
    let blue = Upstream::start("blue", UpstreamProtocol::Http1).await;
    let green = Upstream::start("green", UpstreamProtocol::Http1).await;
    let good = table("good", "blue", blue.addr, green.addr);
    let proxy = ProxyProcess::start(&good).await.expect("proxy");
    let url = proxy.url("web").await;
    let c = Client::http1();

    // 1. A regex that does not compile, on line 10 of the file.
    let bad_regex = good
        .replace("version: good", "version: bad-regex")
        .replace("match: { prefix: / }", "match: { regex: '/(unclosed' }");
    proxy.write_config(&bad_regex);
    wait_for_metric(&proxy, "ferry_config_rejected_total", 1.0).await;
    let log = proxy.stderr();
    assert!(
        log.contains("table.yaml:10:")
            && log.contains("listeners[0].virtualHosts[0].routes[0].match.regex")
            && log.contains("invalid regex"),
        "the log names file:line and field: {log}"
    );
    assert!(log.contains("still serving version good"), "{log}");

    // 2. A route naming a cluster that does not exist.
    proxy.write_config(
        &good
            .replace("version: good", "version: bad-ref")
            .replace("cluster: blue, weight", "cluster: nowhere, weight"),
    );
    wait_for_metric(&proxy, "ferry_config_rejected_total", 2.0).await;
    assert!(
        proxy
            .stderr()
            .contains("routes[0].action.weightedTargets[0].cluster: no cluster named \"nowhere\""),
        "{}",
        proxy.stderr()
    );

    // 3. Not YAML at all.
    proxy.write_config("listeners: [ {name: web\n  oops: :\n");
    wait_for_metric(&proxy, "ferry_config_rejected_total", 3.0).await;

    // 4. A listener address already in use: rejected whole, the old listener keeps its port.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    proxy.write_config(
        &good
            .replace("version: good", "version: bad-bind")
            .replace("127.0.0.1:0", &taken_addr.to_string()),
    );
    wait_for_metric(&proxy, "ferry_config_rejected_total", 4.0).await;
    assert!(
        proxy
            .stderr()
            .contains("listeners[0].address: cannot listen on"),
        "{}",
        proxy.stderr()
    );

    // Through all of it the good table served, unchanged.
    let r = c.get(&url).await.expect("request");
    assert_eq!((r.status.as_u16(), r.upstream()), (200, "blue".to_owned()));
    let (_, dump) = proxy.admin_get("/config_dump").await.expect("dump");
    assert!(dump.contains("\"version\": \"good\""), "{dump}");

    // And a fixed file is applied.
    proxy.write_config(&table("fixed", "green", blue.addr, green.addr));
    proxy
        .wait_for_version("fixed")
        .await
        .expect("fixed table applied");
    assert_eq!(c.get(&url).await.expect("request").upstream(), "green");
}

#[tokio::test]
async fn json_config_files_hot_swap_too() {
    let blue = Upstream::start("blue", UpstreamProtocol::Http1).await;
    let to_json = |yaml: &str| {
        let t = ferry_api::decode_yaml(yaml, "t").expect("valid");
        ferry_api::encode_json(&t)
    };
    let green = Upstream::start("green", UpstreamProtocol::Http1).await;
    let proxy = ProxyProcess::start_with(
        &to_json(&table("j1", "blue", blue.addr, green.addr)),
        "table.json",
        &[],
    )
    .await
    .expect("proxy");
    let url = proxy.url("web").await;
    assert_eq!(upstream_of(&url).await, "blue");
    proxy.write_config(&to_json(&table("j2", "green", blue.addr, green.addr)));
    proxy.wait_for_version("j2").await.expect("applied");
    assert_eq!(upstream_of(&url).await, "green");
    // A JSON error names its line.
    proxy.write_config("{\n  \"listeners\": [\n    {\"name\": 7}\n  ]\n}\n");
    wait_for_metric(&proxy, "ferry_config_rejected_total", 1.0).await;
    assert!(
        proxy.stderr().contains("table.json:3:") && proxy.stderr().contains("listeners[0].name"),
        "{}",
        proxy.stderr()
    );
}

#[tokio::test]
async fn an_idle_proxy_leaves_its_config_file_alone_until_it_changes() {
    let blue = Upstream::start("blue", UpstreamProtocol::Http1).await;
    let green = Upstream::start("green", UpstreamProtocol::Http1).await;
    let proxy = ProxyProcess::start(&table("v1", "blue", blue.addr, green.addr))
        .await
        .expect("proxy");
    let url = proxy.url("web").await;
    // It serves, and logs into the same directory: writes beside the config file.
    assert_eq!(upstream_of(&url).await, "blue");
    // Let the check that follows the watch's start (one read) pass.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let opens = ferry_tests::opens::FileOpens::watch(proxy.dir.path(), Some(proxy.config.clone()));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        opens.count(),
        0,
        "the proxy kept opening its unchanged config file"
    );

    // A change is still seen, and read.
    proxy.write_config(&table("v2", "green", blue.addr, green.addr));
    proxy.wait_for_version("v2").await.expect("applied");
    assert!(
        opens.count() >= 1,
        "the watch saw the proxy read the new file"
    );
    assert_eq!(upstream_of(&url).await, "green");
}

/// Which upstream answers a request to `url`, on a new connection.
async fn upstream_of(url: &str) -> String {
    Client::http1().get(url).await.expect("request").upstream()
}

async fn wait_for_metric(proxy: &ProxyProcess, series: &str, want: f64) {
    for _ in 0..250 {
        if proxy.metric(series).await >= want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{series} never reached {want}: {}", proxy.stderr());
}
