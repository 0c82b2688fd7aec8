//! Envoy-compatible stats (`--stats-compat envoy`, `ENABLE_ENVOY_STATS_TAGS=1`): a real proxy in
//! front of real upstreams serves 2xx, 4xx, 5xx and retried requests, and its `/stats/prometheus`
//! holds the series, labels and counts that queries written for App Mesh's Envoy need.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failures should be loud
use std::time::Duration;

use ferry_tests::agent::eventually;
use ferry_tests::prom::{family_names, promtool_check, samples, sum};
use ferry_tests::{AgentProcess, AgentProxy, Client, ProxyProcess, Upstream, UpstreamProtocol};

/// A port nothing listens on (bound, then closed): connecting to it is refused.
fn dead_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// An App Mesh-shaped standalone table: an inbound listener to the local app, an outbound one
/// to `api` (503s retried on GATEWAY_ERROR) and `flaky` (one dead endpoint, connection errors
/// retried on the other), each cluster with its App Mesh stats name.
fn table(up: std::net::SocketAddr, dead: std::net::SocketAddr) -> String {
    format!(
        r#"listeners:
  - name: ingress
    address: 127.0.0.1:0
    direction: INBOUND
    virtualHosts:
      - name: all
        domains: ["*"]
        routes:
          - name: app
            match: {{ prefix: / }}
            action: {{ weightedTargets: [{{ cluster: app, weight: 1 }}] }}
  - name: egress
    address: 127.0.0.1:0
    direction: OUTBOUND
    virtualHosts:
      - name: all
        domains: ["*"]
        routes:
          - name: flaky
            match: {{ prefix: /flaky }}
            action:
              weightedTargets: [{{ cluster: flaky, weight: 1 }}]
              retryPolicy: {{ maxRetries: 1, tcpRetryEvents: [CONNECTION_ERROR], backoffBase: 0.001s, backoffMax: 0.002s }}
          - name: api
            match: {{ prefix: / }}
            action:
              weightedTargets: [{{ cluster: api, weight: 1 }}]
              retryPolicy: {{ maxRetries: 2, httpRetryEvents: [GATEWAY_ERROR], backoffBase: 0.001s, backoffMax: 0.002s }}
clusters:
  - name: app
    statsName: cds_ingress_shop_front_http_9080
    staticEndpoints: {{ endpoints: [{{ address: "{up}" }}] }}
  - name: api
    statsName: cds_egress_shop_api_http_8080
    staticEndpoints: {{ endpoints: [{{ address: "{up}" }}] }}
  - name: flaky
    statsName: cds_egress_shop_flaky_http_8080
    staticEndpoints: {{ endpoints: [{{ address: "{dead}" }}, {{ address: "{up}" }}] }}
"#
    )
}

const API: &str = "cds_egress_shop_api_http_8080";
const FLAKY: &str = "cds_egress_shop_flaky_http_8080";
const APP: &str = "cds_ingress_shop_front_http_9080";

#[tokio::test]
async fn envoy_queries_find_their_series_with_the_right_counts() {
    let up = Upstream::start("api", UpstreamProtocol::Http1).await;
    let proxy = ProxyProcess::start_with(
        &table(up.addr, dead_addr()),
        "table.yaml",
        &["--stats-compat", "envoy"],
    )
    .await
    .expect("proxy");
    let egress = proxy.url("egress").await;
    let ingress = proxy.url("ingress").await;
    let c = Client::http1();
    for _ in 0..20 {
        assert_eq!(c.get(&format!("{egress}/ok")).await.unwrap().status, 200);
    }
    // Each is tried three times (two retries), and each try is a 5xx from the upstream.
    for _ in 0..3 {
        let r = c.get(&format!("{egress}/status/503")).await.unwrap();
        assert_eq!(r.status, 503);
    }
    for _ in 0..5 {
        let r = c.get(&format!("{egress}/status/404")).await.unwrap();
        assert_eq!(r.status, 404);
    }
    // The dead endpoint refuses the tries that go to it first; the retry reaches the live one.
    for _ in 0..30 {
        assert_eq!(c.get(&format!("{egress}/flaky")).await.unwrap().status, 200);
    }
    for _ in 0..7 {
        assert_eq!(c.get(&format!("{ingress}/in")).await.unwrap().status, 200);
    }

    let m = proxy.metrics().await;
    let cluster = |name: &str, cluster: &str| sum(&m, name, &[("envoy_cluster_name", cluster)]).0;
    let class = |cluster: &str, class: &str| {
        sum(
            &m,
            "envoy_cluster_upstream_rq_xx",
            &[
                ("envoy_cluster_name", cluster),
                ("envoy_response_code_class", class),
            ],
        )
    };

    // sum(rate(envoy_cluster_upstream_rq_xx{envoy_response_code_class="5"}[1m])) has its series:
    // api's nine 503 tries, and flaky's refused tries (charged 503, as Envoy does).
    let (api_5xx, series) = class(API, "5");
    assert_eq!((api_5xx, series), (9.0, 1), "{m}");
    assert_eq!(class(API, "2").0, 20.0);
    assert_eq!(class(API, "4").0, 5.0);
    assert_eq!(cluster("envoy_cluster_upstream_rq_total", API), 34.0);
    assert_eq!(cluster("envoy_cluster_upstream_rq_retry", API), 6.0);
    assert_eq!(cluster("envoy_cluster_upstream_rq_time_count", API), 34.0);
    let refused = cluster("envoy_cluster_upstream_cx_connect_fail", FLAKY);
    assert!(
        refused >= 1.0,
        "30 requests never tried the dead endpoint first?\n{m}"
    );
    assert_eq!(class(FLAKY, "5").0, refused);
    assert_eq!(class(FLAKY, "2").0, 30.0);
    assert_eq!(cluster("envoy_cluster_upstream_rq_retry", FLAKY), refused);
    assert_eq!(
        cluster("envoy_cluster_upstream_rq_retry_success", FLAKY),
        refused
    );
    let all_5xx = sum(
        &m,
        "envoy_cluster_upstream_rq_xx",
        &[("envoy_response_code_class", "5")],
    );
    assert_eq!(all_5xx, (9.0 + refused, 3), "one series per cluster");
    assert_eq!(class(APP, "2").0, 7.0);

    // Histograms in milliseconds on Envoy's buckets.
    let buckets: Vec<String> = samples(&m)
        .into_iter()
        .filter(|s| {
            s.name == "envoy_cluster_upstream_rq_time_bucket"
                && s.labels["envoy_cluster_name"] == API
        })
        .map(|s| s.labels["le"].clone())
        .collect();
    assert_eq!(
        buckets,
        [
            "0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000",
            "10000", "30000", "60000", "300000", "600000", "1800000", "3600000", "+Inf"
        ]
    );
    assert_eq!(
        sum(
            &m,
            "envoy_cluster_upstream_rq_time_bucket",
            &[("envoy_cluster_name", API), ("le", "+Inf")]
        )
        .0,
        34.0
    );

    // Connections, bytes, membership.
    assert!(cluster("envoy_cluster_upstream_cx_total", API) >= 1.0);
    assert!(cluster("envoy_cluster_upstream_cx_active", API) >= 1.0);
    assert!(cluster("envoy_cluster_upstream_cx_rx_bytes_total", API) > 1000.0);
    assert!(cluster("envoy_cluster_upstream_cx_tx_bytes_total", API) > 1000.0);
    assert_eq!(cluster("envoy_cluster_membership_total", FLAKY), 2.0);
    assert_eq!(cluster("envoy_cluster_membership_healthy", FLAKY), 2.0);
    assert_eq!(
        cluster("envoy_cluster_outlier_detection_ejections_active", FLAKY),
        0.0
    );

    // The connection managers: ingress and egress.
    let downstream = |prefix: &str, class: &str| {
        sum(
            &m,
            "envoy_http_downstream_rq_xx",
            &[
                ("envoy_http_conn_manager_prefix", prefix),
                ("envoy_response_code_class", class),
            ],
        )
        .0
    };
    assert_eq!(downstream("egress", "2"), 50.0);
    assert_eq!(downstream("egress", "5"), 3.0);
    assert_eq!(downstream("egress", "4"), 5.0);
    assert_eq!(downstream("ingress", "2"), 7.0);
    let prefix = |p: &'static str| [("envoy_http_conn_manager_prefix", p)];
    assert_eq!(
        sum(&m, "envoy_http_downstream_rq_total", &prefix("egress")).0,
        58.0
    );
    assert_eq!(
        sum(
            &m,
            "envoy_http_downstream_rq_time_count",
            &prefix("ingress")
        )
        .0,
        7.0
    );
    assert_eq!(
        sum(&m, "envoy_http_downstream_cx_active", &prefix("egress")).0,
        1.0,
        "the client's keep-alive connection"
    );

    // The server.
    assert_eq!(sum(&m, "envoy_server_live", &[]).0, 1.0);
    assert!(sum(&m, "envoy_server_memory_allocated", &[]).0 > 1_000_000.0);
    assert_eq!(sum(&m, "envoy_server_uptime", &[]).1, 1);
    // Ferry's own names are still there.
    assert_eq!(
        sum(
            &m,
            "ferry_http_upstream_requests_total",
            &[("cluster", "api"), ("code_class", "5xx")]
        )
        .0,
        9.0
    );

    // promtool parses it; its only complaints are about Envoy's own names, which keep Envoy's
    // "_total" conventions (counters without it, the gauge membership_total with it).
    let (code, out) = promtool_check(&m);
    assert!(code == 0 || code == 3, "promtool failed ({code}):\n{out}");
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let envoy_convention = line.ends_with("counter metrics should have \"_total\" suffix")
            || line.starts_with("envoy_cluster_membership_total non-counter");
        assert!(
            line.starts_with("envoy_") && envoy_convention,
            "promtool: {line}"
        );
    }
}

#[tokio::test]
async fn envoy_only_from_the_environment_exposes_only_envoy_names() {
    let up = Upstream::start("api", UpstreamProtocol::Http1).await;
    let proxy = ProxyProcess::start_with_env(
        &table(up.addr, dead_addr()),
        "table.yaml",
        &[],
        &[("FERRY_STATS_COMPAT", "envoy-only")],
    )
    .await
    .expect("proxy");
    let egress = proxy.url("egress").await;
    assert_eq!(
        Client::http1()
            .get(&format!("{egress}/ok"))
            .await
            .unwrap()
            .status,
        200
    );
    let m = proxy.metrics().await;
    let names = family_names(&m);
    assert!(names.iter().all(|n| n.starts_with("envoy_")), "{names:?}");
    assert_eq!(
        sum(
            &m,
            "envoy_cluster_upstream_rq_xx",
            &[
                ("envoy_cluster_name", API),
                ("envoy_response_code_class", "2")
            ]
        )
        .0,
        1.0
    );
    assert!(!m.contains("appmesh_"), "no tags unless asked for");
}

/// A small App Mesh: `front` (its app on an upstream) calls `api.shop.local`, provided by the
/// virtual node `api`; a proxy for `front` follows the agent with `ENABLE_ENVOY_STATS_TAGS=1`.
#[tokio::test]
async fn app_mesh_tags_label_the_series_of_an_agent_fed_proxy() {
    let api = Upstream::start("api", UpstreamProtocol::Http1).await;
    let app = Upstream::start("front-app", UpstreamProtocol::Http1).await;
    let dir = tempfile::tempdir().unwrap();
    let (api_port, app_port) = (api.addr.port(), app.addr.port());
    std::fs::write(
        dir.path().join("mesh.yaml"),
        format!(
            "mesh: {{ meshName: shop }}
---
meshName: shop
virtualNodeName: front
spec:
  listeners: [{{ portMapping: {{ port: {app_port}, protocol: http }} }}]
  serviceDiscovery: {{ dns: {{ hostname: 127.0.0.1 }} }}
  backends: [{{ virtualService: {{ virtualServiceName: api.shop.local }} }}]
---
meshName: shop
virtualNodeName: api
spec:
  listeners: [{{ portMapping: {{ port: {api_port}, protocol: http }} }}]
  serviceDiscovery: {{ dns: {{ hostname: 127.0.0.1 }} }}
---
meshName: shop
virtualServiceName: api.shop.local
spec: {{ provider: {{ virtualNode: {{ virtualNodeName: api }} }} }}
"
        ),
    )
    .unwrap();
    let agent = AgentProcess::start(dir.path()).await.expect("agent");
    let state = tempfile::tempdir().unwrap();
    let proxy = AgentProxy::start_with_env(
        &agent.url(),
        "shop/virtualNode/front",
        state.path(),
        0,
        0,
        &[
            ("ENABLE_ENVOY_STATS_TAGS", "1"),
            ("FERRY_STATS_COMPAT", "envoy"),
        ],
    )
    .await
    .expect("proxy");
    let egress = proxy.url("egress").await;
    let ingress = proxy.url("ingress").await;
    let c = Client::http1();
    let host = format!("api.shop.local:{api_port}");
    for _ in 0..4 {
        let r = c
            .get_with(&format!("{egress}/status/503"), &[("host", &host)])
            .await
            .unwrap();
        assert_eq!(r.status, 503);
    }
    for _ in 0..2 {
        let r = c.get(&format!("{ingress}/hello")).await.unwrap();
        assert_eq!(r.status, 200);
    }

    // The agent connection gauge is set once the stream is up.
    let m = eventually(Duration::from_secs(10), || async {
        let m = proxy.metrics().await;
        (sum(&m, "envoy_control_plane_connected_state", &[]).0 == 1.0).then_some(m)
    })
    .await
    .expect("envoy_control_plane_connected_state 1");

    let egress_cluster = format!("cds_egress_shop_api_http_{api_port}");
    let node = [("appmesh_mesh", "shop"), ("appmesh_virtual_node", "front")];
    let port = api_port.to_string();
    let mut want = node.to_vec();
    want.extend([
        ("envoy_cluster_name", egress_cluster.as_str()),
        ("envoy_response_code_class", "5"),
        ("appmesh_listener_protocol", "http"),
        ("appmesh_listener_port", port.as_str()),
    ]);
    // App Mesh's default retry policy retries 503 twice: three tries per request.
    assert_eq!(
        sum(&m, "envoy_cluster_upstream_rq_xx", &want),
        (12.0, 1),
        "{m}"
    );
    let app_cluster = format!("cds_ingress_shop_front_http_{app_port}");
    let mut want = node.to_vec();
    want.push(("envoy_cluster_name", app_cluster.as_str()));
    assert_eq!(sum(&m, "envoy_cluster_upstream_rq_total", &want).0, 2.0);
    let mut want = node.to_vec();
    want.extend([
        ("envoy_http_conn_manager_prefix", "egress"),
        ("envoy_response_code_class", "5"),
        ("appmesh_listener_protocol", "http"),
    ]);
    assert_eq!(sum(&m, "envoy_http_downstream_rq_xx", &want).0, 4.0);
    // Process-wide series carry the identity; native series carry the tags too.
    assert_eq!(sum(&m, "envoy_server_live", &node).0, 1.0);
    let native_cluster = samples(&m)
        .into_iter()
        .find(|s| {
            s.name == "ferry_http_upstream_requests_total"
                && s.labels.get("code_class").map(String::as_str) == Some("5xx")
                && s.labels.get("appmesh_listener_port") == Some(&port)
        })
        .expect("a tagged native series");
    assert_eq!(native_cluster.labels["appmesh_mesh"], "shop");
    assert_eq!(native_cluster.value, 12.0);

    let (code, out) = promtool_check(&m);
    assert!(code == 0 || code == 3, "promtool failed ({code}):\n{out}");
}
