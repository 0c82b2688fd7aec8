//! DNS service discovery against a real DNS server on loopback (tests/src/dns.rs) whose records the
//! tests change while the proxy runs: endpoints follow the records within the TTL, a DNS outage
//! keeps the last endpoints, IP preferences pick the family, LOADBALANCER names follow the first
//! address, and clusters sharing a name share one resolution loop.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failures should be loud
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_tests::{Client, DnsServer, ProxyProcess, Upstream, UpstreamProtocol};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// One DNS cluster, as YAML list item under `clusters:`.
fn dns_cluster(name: &str, hostname: &str, port: u16, extra: &str) -> String {
    format!(
        "  - name: {name}\n    lbPolicy: ROUND_ROBIN\n    dns: {{ hostname: {hostname}, port: {port}{extra} }}\n"
    )
}

/// A table whose listener `web` routes `/NAME...` to cluster NAME for each cluster given, and
/// everything else to the first.
fn table(version: &str, clusters: &[String], top: &str) -> String {
    let names: Vec<String> = clusters
        .iter()
        .map(|c| {
            c.trim_start()
                .trim_start_matches("- name: ")
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let mut routes = String::new();
    for n in &names {
        routes.push_str(&format!(
            "          - name: to-{n}\n            match: {{ prefix: /{n} }}\n            action: {{ weightedTargets: [{{ cluster: {n}, weight: 1 }}] }}\n"
        ));
    }
    routes.push_str(&format!(
        "          - name: default\n            match: {{ prefix: / }}\n            action: {{ weightedTargets: [{{ cluster: {}, weight: 1 }}] }}\n",
        names[0]
    ));
    format!(
        "version: {version}\n{top}listeners:\n  - name: web\n    address: 127.0.0.1:0\n    virtualHosts:\n      - name: all\n        domains: [\"*\"]\n        routes:\n{routes}clusters:\n{}",
        clusters.concat()
    )
}

async fn start_proxy(yaml: &str, dns: &DnsServer) -> ProxyProcess {
    let server = dns.addr.to_string();
    ProxyProcess::start_with(yaml, "table.yaml", &["--dns-resolver", &server])
        .await
        .expect("proxy")
}

/// The cluster's entry on `/clusters`.
async fn cluster_json(proxy: &ProxyProcess, name: &str) -> serde_json::Value {
    let (_, body) = proxy.admin_get("/clusters").await.expect("/clusters");
    let list: serde_json::Value = serde_json::from_str(&body).expect("json");
    list.as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

/// The cluster's endpoint addresses, sorted.
async fn endpoints(proxy: &ProxyProcess, name: &str) -> Vec<String> {
    let c = cluster_json(proxy, name).await;
    let mut out: Vec<String> = c["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["address"].as_str().map(str::to_owned))
        .collect();
    out.sort();
    out
}

/// Waits until the cluster's endpoints are exactly `want`; returns how long that took.
async fn wait_for_endpoints(proxy: &ProxyProcess, name: &str, want: &[SocketAddr]) -> Duration {
    let mut want: Vec<String> = want.iter().map(ToString::to_string).collect();
    want.sort();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        if endpoints(proxy, name).await == want {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "cluster {name} never had endpoints {want:?}; has {:?}\n{}",
        endpoints(proxy, name).await,
        proxy.stderr()
    );
}

async fn wait_for_metric(proxy: &ProxyProcess, series: &str, at_least: f64) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(25) {
        if proxy.metric(series).await >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{series} never reached {at_least}: {}", proxy.stderr());
}

#[tokio::test]
async fn three_a_records_reach_three_upstreams() {
    let dns = DnsServer::start().await;
    let ups = Upstream::start_group(
        &[
            ("a", ip("127.0.0.1")),
            ("b", ip("127.0.0.2")),
            ("c", ip("127.0.0.3")),
        ],
        UpstreamProtocol::Http1,
    )
    .await;
    let addrs: Vec<SocketAddr> = ups.iter().map(|u| u.addr).collect();
    let port = addrs[0].port();
    dns.set(
        "svc.ferry.test",
        &addrs.iter().map(SocketAddr::ip).collect::<Vec<_>>(),
    );
    let yaml = table(
        "v1",
        &[dns_cluster(
            "svc",
            "svc.ferry.test",
            port,
            ", responseType: ENDPOINTS",
        )],
        "",
    );
    let proxy = start_proxy(&yaml, &dns).await;
    // Ready means resolved: no wait for the endpoints after /ready says LIVE.
    let mut want: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    want.sort();
    assert_eq!(endpoints(&proxy, "svc").await, want);

    let url = proxy.url("web").await;
    let c = Client::http1();
    for _ in 0..30 {
        assert_eq!(c.get(&url).await.expect("request").status, 200);
    }
    for u in &ups {
        assert_eq!(u.hits(), 10, "round robin over the 3 addresses: {}", u.name);
    }

    let svc = cluster_json(&proxy, "svc").await;
    assert_eq!(svc["discovery"]["type"], "dns");
    assert_eq!(svc["discovery"]["hostname"], "svc.ferry.test");
    assert_eq!(svc["discovery"]["response_type"], "ENDPOINTS");
    assert_eq!(svc["discovery"]["resolved"], true);
    assert_eq!(svc["discovery"]["servers"], dns.addr.to_string());
    for e in svc["endpoints"].as_array().unwrap() {
        assert_eq!(e["source"], "dns:svc.ferry.test");
        assert_eq!(e["health"], "HEALTHY");
    }
    let m = proxy.metrics().await;
    let v = |s: &str| ferry_tests::proxy::metric_value(&m, s);
    assert_eq!(v("ferry_cluster_endpoints{cluster=\"svc\"}"), 3.0);
    assert_eq!(v("ferry_dns_addresses{hostname=\"svc.ferry.test\"}"), 3.0);
    assert!(v("ferry_dns_resolutions_total{hostname=\"svc.ferry.test\"}") >= 1.0);
    assert_eq!(
        v("ferry_dns_resolution_failures_total{hostname=\"svc.ferry.test\"}"),
        0.0
    );
    assert!(m.contains("ferry_dns_last_resolution_age_seconds{hostname=\"svc.ferry.test\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_changing_under_load_fail_no_request() {
    let dns = DnsServer::start().await;
    let ups = Upstream::start_group(
        &[
            ("a", ip("127.0.0.1")),
            ("b", ip("127.0.0.2")),
            ("c", ip("127.0.0.3")),
        ],
        UpstreamProtocol::Http1,
    )
    .await;
    let (a, b, c) = (&ups[0], &ups[1], &ups[2]);
    let port = a.addr.port();
    dns.set_ttl(1);
    dns.set("flip.ferry.test", &[a.addr.ip(), b.addr.ip()]);
    let yaml = table(
        "v1",
        &[dns_cluster(
            "flip",
            "flip.ferry.test",
            port,
            ", responseType: ENDPOINTS",
        )],
        "",
    );
    let proxy = start_proxy(&yaml, &dns).await;
    wait_for_endpoints(&proxy, "flip", &[a.addr, b.addr]).await;
    let url = Arc::new(proxy.url("web").await);

    let load = ferry_tests::Load::start(&url, 20, &[]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(a.hits() > 0 && b.hits() > 0, "both first records serve");

    dns.set("flip.ferry.test", &[b.addr.ip(), c.addr.ip()]);
    let took = wait_for_endpoints(&proxy, "flip", &[b.addr, c.addr]).await;
    eprintln!("records {{a,b}} -> {{b,c}} applied {took:?} after the change (TTL 1s)");
    assert!(
        took < Duration::from_secs(4),
        "within the TTL plus a query: {took:?}"
    );
    // Requests that picked a before the swap may still be finishing; none start after it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let a_after = a.hits();
    let c_before = c.hits();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (ok, failed) = load.stop().await;
    assert_eq!(failed, 0, "{failed} requests failed ({ok} succeeded)");
    assert_eq!(
        a.hits(),
        a_after,
        "no request went to a once it left the records"
    );
    assert!(c.hits() > c_before, "c receives traffic");
    assert!(ok > 200, "the load kept going: {ok} requests");
    assert!(
        proxy.stderr().contains("DNS: flip.ferry.test changed from"),
        "{}",
        proxy.stderr()
    );
}

#[tokio::test]
async fn a_dns_outage_keeps_the_last_endpoints() {
    let dns = DnsServer::start().await;
    let up = Upstream::start("steady", UpstreamProtocol::Http1).await;
    dns.set("steady.ferry.test", &[up.addr.ip()]);
    let yaml = table(
        "v1",
        &[dns_cluster(
            "steady",
            "steady.ferry.test",
            up.addr.port(),
            "",
        )],
        "",
    );
    let proxy = start_proxy(&yaml, &dns).await;
    wait_for_endpoints(&proxy, "steady", &[up.addr]).await;
    let url = proxy.url("web").await;

    dns.stop_answering();
    let outage = Instant::now();
    let failures = "ferry_dns_resolution_failures_total{hostname=\"steady.ferry.test\"}";
    let c = Client::http1();
    // Traffic goes on, to the last endpoints, while resolutions time out.
    while proxy.metric(failures).await < 2.0 {
        assert!(
            outage.elapsed() < Duration::from_secs(30),
            "{}",
            proxy.stderr()
        );
        let r = c.get(&url).await.expect("request");
        assert_eq!(
            (r.status.as_u16(), r.upstream()),
            (200, "steady".to_owned())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "two failed resolutions seen {:?} into the outage",
        outage.elapsed()
    );
    assert!(
        proxy
            .metric("ferry_dns_consecutive_failures{hostname=\"steady.ferry.test\"}")
            .await
            >= 1.0
    );
    assert!(
        proxy
            .metric("ferry_dns_last_resolution_age_seconds{hostname=\"steady.ferry.test\"}")
            .await
            >= 1.0
    );
    let log = proxy.stderr();
    assert!(
        log.contains("DNS: resolving steady.ferry.test failed")
            && log.contains("keeping its last 1 address(es)"),
        "{log}"
    );
    let st = cluster_json(&proxy, "steady").await;
    assert!(st["discovery"]["consecutive_failures"].as_u64() >= Some(1));
    assert!(st["discovery"]["last_error"].as_str().is_some(), "{st}");

    // DNS comes back: the failures stop and the loop says so.
    dns.resume_answering();
    wait_until(Duration::from_secs(30), || async {
        proxy
            .metric("ferry_dns_consecutive_failures{hostname=\"steady.ferry.test\"}")
            .await
            == 0.0
    })
    .await;
    assert!(
        proxy.stderr().contains("resolves again"),
        "{}",
        proxy.stderr()
    );
}

async fn wait_until<F, Fut>(limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not met within {limit:?}");
}

#[tokio::test]
async fn an_aaaa_only_name_follows_the_ip_preference() {
    let dns = DnsServer::start().await;
    let up = Upstream::start_on("[::1]:0".parse().unwrap(), "v6", UpstreamProtocol::Http1).await;
    dns.set("v6.ferry.test", &[ip("::1")]);
    let port = up.addr.port();
    let yaml = table(
        "v1",
        &[
            dns_cluster(
                "v6pref",
                "v6.ferry.test",
                port,
                ", ipPreference: IPv6_PREFERRED",
            ),
            dns_cluster(
                "v4pref",
                "v6.ferry.test",
                port,
                ", ipPreference: IPv4_PREFERRED",
            ),
            dns_cluster("v4only", "v6.ferry.test", port, ", ipPreference: IPv4_ONLY"),
        ],
        "",
    );
    let proxy = start_proxy(&yaml, &dns).await;
    wait_for_endpoints(&proxy, "v6pref", &[up.addr]).await;
    // IPv4_PREFERRED falls back to AAAA when there is no A record.
    wait_for_endpoints(&proxy, "v4pref", &[up.addr]).await;
    wait_for_metric(
        &proxy,
        "ferry_dns_resolution_failures_total{hostname=\"v6.ferry.test\"}",
        1.0,
    )
    .await;

    let url = proxy.url("web").await;
    let c = Client::http1();
    for path in ["/v6pref", "/v4pref"] {
        let r = c.get(&format!("{url}{path}")).await.expect("request");
        assert_eq!(
            (r.status.as_u16(), r.upstream()),
            (200, "v6".to_owned()),
            "{path}"
        );
    }
    let r = c.get(&format!("{url}/v4only")).await.expect("request");
    assert_eq!(r.status, 503);
    assert!(
        r.body.contains("cluster \"v4only\"")
            && r.body.contains("v6.ferry.test")
            && r.body.contains("has no A record (ipPreference IPv4_ONLY)"),
        "{}",
        r.body
    );
    assert!(endpoints(&proxy, "v4only").await.is_empty());
}

#[tokio::test]
async fn a_loadbalancer_name_sends_new_connections_to_the_changed_record() {
    let dns = DnsServer::start().await;
    let ups = Upstream::start_group(
        &[("lb1", ip("127.0.0.1")), ("lb2", ip("127.0.0.2"))],
        UpstreamProtocol::Http1,
    )
    .await;
    let (lb1, lb2) = (&ups[0], &ups[1]);
    dns.set("lb.ferry.test", &[lb1.addr.ip()]);
    let yaml = table(
        "v1",
        &[dns_cluster(
            "lb",
            "lb.ferry.test",
            lb1.addr.port(),
            ", responseType: LOADBALANCER",
        )],
        "",
    );
    let proxy = start_proxy(&yaml, &dns).await;
    wait_for_endpoints(&proxy, "lb", &[lb1.addr]).await;
    let url = proxy.url("web").await;
    for _ in 0..5 {
        assert_eq!(
            Client::http1().get(&url).await.expect("request").upstream(),
            "lb1"
        );
    }

    dns.set("lb.ferry.test", &[lb2.addr.ip()]);
    let took = wait_for_endpoints(&proxy, "lb", &[lb2.addr]).await;
    eprintln!("LOADBALANCER record change followed after {took:?}");
    for _ in 0..5 {
        assert_eq!(
            Client::http1().get(&url).await.expect("request").upstream(),
            "lb2"
        );
    }

    // Several addresses: the name stands for one load balancer, the first address.
    dns.set("lb.ferry.test", &[lb1.addr.ip(), lb2.addr.ip()]);
    wait_for_endpoints(&proxy, "lb", &[lb1.addr]).await;
    assert_eq!(
        Client::http1().get(&url).await.expect("request").upstream(),
        "lb1"
    );
    assert_eq!(
        cluster_json(&proxy, "lb").await["discovery"]["response_type"],
        "LOADBALANCER"
    );
}

#[tokio::test]
async fn a_name_that_never_resolved_answers_503_naming_it_until_it_does() {
    let dns = DnsServer::start().await;
    let up = Upstream::start("late", UpstreamProtocol::Http1).await;
    let yaml = table(
        "v1",
        &[dns_cluster("late", "late.ferry.test", up.addr.port(), "")],
        "",
    );
    let proxy = start_proxy(&yaml, &dns).await;
    wait_for_metric(
        &proxy,
        "ferry_dns_resolution_failures_total{hostname=\"late.ferry.test\"}",
        1.0,
    )
    .await;
    let url = proxy.url("web").await;
    let r = Client::http1().get(&url).await.expect("request");
    assert_eq!(r.status, 503);
    assert!(
        r.body.contains("no healthy upstream in cluster \"late\"")
            && r.body
                .contains("DNS name \"late.ferry.test\" has not resolved")
            && r.body.contains("late.ferry.test does not exist (NXDOMAIN)"),
        "{}",
        r.body
    );
    let late = cluster_json(&proxy, "late").await;
    assert_eq!(late["discovery"]["resolved"], false);
    assert!(
        !proxy
            .metrics()
            .await
            .contains("ferry_dns_last_resolution_age_seconds{hostname=\"late.ferry.test\"}")
    );

    // The name appears: the backoff retry finds it.
    dns.set("late.ferry.test", &[up.addr.ip()]);
    wait_for_endpoints(&proxy, "late", &[up.addr]).await;
    let r = Client::http1().get(&url).await.expect("request");
    assert_eq!((r.status.as_u16(), r.upstream()), (200, "late".to_owned()));
}

#[tokio::test]
async fn clusters_sharing_a_hostname_share_one_resolution_loop() {
    let dns = DnsServer::start().await;
    let up = Upstream::start("shared", UpstreamProtocol::Http1).await;
    dns.set_ttl(1);
    dns.set("shared.ferry.test", &[up.addr.ip()]);
    let port = up.addr.port();
    // The servers come from the table this time, not from --dns-resolver.
    let yaml = table(
        "v1",
        &[
            dns_cluster("one", "shared.ferry.test", port, ""),
            dns_cluster("two", "shared.ferry.test", port, ""),
        ],
        &format!("dns: {{ servers: [\"{}\"] }}\n", dns.addr),
    );
    let proxy = ProxyProcess::start(&yaml).await.expect("proxy");
    wait_for_endpoints(&proxy, "one", &[up.addr]).await;
    wait_for_endpoints(&proxy, "two", &[up.addr]).await;
    let url = proxy.url("web").await;
    let c = Client::http1();
    for path in ["/one", "/two"] {
        let r = c.get(&format!("{url}{path}")).await.expect("request");
        assert_eq!(r.status, 200, "{path}");
    }

    assert_eq!(proxy.metric("ferry_dns_resolution_loops").await, 1.0);
    assert_eq!(
        proxy
            .metric("ferry_dns_clusters{hostname=\"shared.ferry.test\"}")
            .await,
        2.0
    );
    // With a 1 s TTL one loop asks about once a second (one A query each time); two loops
    // would ask twice as often.
    let before = dns.queries("shared.ferry.test");
    let window = Duration::from_secs(4);
    tokio::time::sleep(window).await;
    let asked = dns.queries("shared.ferry.test") - before;
    eprintln!("{asked} queries in {window:?} for two clusters sharing the name");
    assert!((2..=6).contains(&asked), "{asked} queries in {window:?}");
}

#[tokio::test]
async fn refresh_bounds_cap_a_long_ttl() {
    let dns = DnsServer::start().await;
    let up = Upstream::start("ttl", UpstreamProtocol::Http1).await;
    // A TTL far above every ceiling: the refresh bounds alone set the pace.
    dns.set_ttl(3600);
    dns.set("table.ferry.test", &[up.addr.ip()]);
    dns.set("own.ferry.test", &[up.addr.ip()]);
    let port = up.addr.port();
    let yaml = table(
        "v1",
        &[
            dns_cluster("bytable", "table.ferry.test", port, ""),
            dns_cluster(
                "byown",
                "own.ferry.test",
                port,
                ", refresh: { min: 0.1s, max: 0.4s }",
            ),
        ],
        &format!(
            "dns: {{ servers: [\"{}\"], minRefresh: 0.5s, maxRefresh: 1s }}\n",
            dns.addr
        ),
    );
    let proxy = ProxyProcess::start(&yaml).await.expect("proxy");
    wait_for_endpoints(&proxy, "bytable", &[up.addr]).await;
    wait_for_endpoints(&proxy, "byown", &[up.addr]).await;
    let (t0, o0) = (
        dns.queries("table.ferry.test"),
        dns.queries("own.ferry.test"),
    );
    // The window starts just after both first answers: ~3 refreshes at 1 s, ~8 at 0.4 s.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let table_rate = dns.queries("table.ferry.test") - t0;
    let own_rate = dns.queries("own.ferry.test") - o0;
    eprintln!(
        "in 3.5s: {table_rate} queries under maxRefresh 1s, {own_rate} under refresh.max 400ms"
    );
    assert!((2..=4).contains(&table_rate), "{table_rate}");
    assert!((6..=10).contains(&own_rate), "{own_rate}");
}

#[tokio::test]
async fn table_swaps_keep_the_loop_of_a_reused_cluster_and_end_a_removed_one() {
    let dns = DnsServer::start().await;
    let up = Upstream::start("kept", UpstreamProtocol::Http1).await;
    dns.set("kept.ferry.test", &[up.addr.ip()]);
    let cluster = dns_cluster("kept", "kept.ferry.test", up.addr.port(), "");
    let proxy = start_proxy(&table("v1", std::slice::from_ref(&cluster), ""), &dns).await;
    wait_for_endpoints(&proxy, "kept", &[up.addr]).await;
    let url = proxy.url("web").await;

    // The same cluster in a new table: the loop and the endpoints carry over, nothing re-resolves
    // before the new table serves.
    let static_cluster = format!(
        "  - name: fixed\n    staticEndpoints: {{ endpoints: [{{ address: \"{}\" }}] }}\n",
        up.addr
    );
    proxy.write_config(&table("v2", &[cluster.clone(), static_cluster.clone()], ""));
    proxy.wait_for_version("v2").await.expect("v2");
    assert_eq!(endpoints(&proxy, "kept").await, [up.addr.to_string()]);
    let r = Client::http1().get(&url).await.expect("request");
    assert_eq!(r.status, 200);
    assert_eq!(proxy.metric("ferry_dns_resolution_loops").await, 1.0);
    let fixed = cluster_json(&proxy, "fixed").await;
    assert_eq!(fixed["discovery"]["type"], "static");
    assert_eq!(fixed["endpoints"][0]["source"], "static");

    // The DNS cluster leaves the table: its loop ends and its series go.
    proxy.write_config(&table("v3", &[static_cluster], ""));
    proxy.wait_for_version("v3").await.expect("v3");
    wait_until(Duration::from_secs(10), || async {
        proxy.metric("ferry_dns_resolution_loops").await == 0.0
    })
    .await;
    let asked = dns.queries("kept.ferry.test");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        dns.queries("kept.ferry.test"),
        asked,
        "no query after the loop ended"
    );
    assert!(
        !proxy
            .metrics()
            .await
            .contains("ferry_dns_resolutions_total{hostname=\"kept.ferry.test\"}")
    );
}

#[tokio::test]
async fn a_starting_proxy_is_ready_once_its_names_had_a_first_answer_or_failure() {
    let dns = DnsServer::start().await;
    let up = Upstream::start("slow", UpstreamProtocol::Http1).await;
    dns.set("slow.ferry.test", &[up.addr.ip()]);
    dns.stop_answering();
    let yaml = table(
        "v1",
        &[dns_cluster("slow", "slow.ferry.test", up.addr.port(), "")],
        "",
    );
    let started = Instant::now();
    // ProxyProcess::start returns once /ready says LIVE.
    let proxy = start_proxy(&yaml, &dns).await;
    let took = started.elapsed();
    eprintln!("ready {took:?} after start with a silent DNS server");
    assert!(
        took >= Duration::from_secs(2),
        "ready before the first resolution ended: {took:?}"
    );
    let slow = cluster_json(&proxy, "slow").await;
    assert_eq!(slow["discovery"]["resolved"], false);
    assert!(slow["discovery"]["last_error"].as_str().is_some(), "{slow}");
    let (_, info) = proxy.admin_get("/server_info").await.expect("server_info");
    assert!(info.contains("\"state\": \"LIVE\""), "{info}");

    // The name answers later: the cluster fills in; the proxy stayed ready throughout.
    dns.resume_answering();
    wait_for_endpoints(&proxy, "slow", &[up.addr]).await;
    assert_eq!(proxy.admin_get("/ready").await.expect("ready").0, 200);
}

#[tokio::test]
async fn dns_settings_errors_name_the_field() {
    let dns = DnsServer::start().await;
    let bad_port = table("v1", &[dns_cluster("x", "x.ferry.test", 0, "")], "");
    let err = ProxyProcess::start_with(
        &bad_port,
        "table.yaml",
        &["--dns-resolver", &dns.addr.to_string()],
    )
    .await
    .err()
    .expect("refused");
    assert!(err.to_string().contains("clusters[0].dns.port"), "{err}");
    let bad_server = table(
        "v1",
        &[dns_cluster("x", "x.ferry.test", 80, "")],
        "dns: { servers: [\"not-an-ip\"] }\n",
    );
    let err = ProxyProcess::start(&bad_server)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("dns.servers[0]"), "{err}");
    let good = table("v1", &[dns_cluster("x", "x.ferry.test", 80, "")], "");
    let err = ProxyProcess::start_with(&good, "table.yaml", &["--dns-resolver", "dns.local"])
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string()
            .contains("\"dns.local\" is not a DNS server address"),
        "{err}"
    );
}
