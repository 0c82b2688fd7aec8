//! Metrics: the exposition is valid (promtool) and its counts match the traffic sent.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failures should be loud

use ferry_tests::{Client, ProxyProcess, Upstream, UpstreamProtocol, table_yaml};

#[tokio::test]
async fn counts_match_traffic_and_promtool_accepts_the_exposition() {
    let up = Upstream::start("a", UpstreamProtocol::Http1).await;
    let routes = "- name: api\n  match: { prefix: /api }\n  action: { weightedTargets: [{ cluster: a, weight: 1 }] }\n";
    let proxy = ProxyProcess::start(&table_yaml(routes, &[("a", &[up.addr], "HTTP1")]))
        .await
        .expect("proxy");
    let url = proxy.url("web").await;
    let c = Client::http1();
    for _ in 0..37 {
        assert_eq!(
            c.get(&format!("{url}/api/ok")).await.expect("ok").status,
            200
        );
    }
    for _ in 0..3 {
        assert_eq!(
            c.get(&format!("{url}/api/status/503"))
                .await
                .expect("503")
                .status,
            503
        );
    }
    for _ in 0..5 {
        assert_eq!(
            c.get(&format!("{url}/elsewhere"))
                .await
                .expect("404")
                .status,
            404
        );
    }

    let m = proxy.metrics().await;
    let v = |s: &str| ferry_tests::proxy::metric_value(&m, s);
    assert_eq!(
        v(
            "ferry_http_downstream_requests_total{code_class=\"2xx\",listener=\"web\",route=\"api\"}"
        ),
        37.0
    );
    assert_eq!(
        v(
            "ferry_http_downstream_requests_total{code_class=\"5xx\",listener=\"web\",route=\"api\"}"
        ),
        3.0
    );
    assert_eq!(
        v("ferry_http_downstream_requests_total{code_class=\"4xx\",listener=\"web\",route=\"\"}"),
        5.0
    );
    assert_eq!(
        v("ferry_http_upstream_requests_total{cluster=\"a\",code_class=\"2xx\"}"),
        37.0
    );
    assert_eq!(
        v("ferry_http_upstream_requests_total{cluster=\"a\",code_class=\"5xx\"}"),
        3.0
    );
    assert_eq!(
        v("ferry_http_upstream_request_duration_seconds_count{cluster=\"a\"}"),
        40.0
    );
    assert_eq!(
        v("ferry_http_downstream_request_duration_seconds_count{listener=\"web\"}"),
        45.0
    );
    assert_eq!(
        v("ferry_downstream_connections_active{listener=\"web\"}"),
        1.0,
        "the client's one keep-alive connection"
    );
    assert_eq!(v("ferry_config_swaps_total"), 1.0);
    assert_eq!(v("ferry_server_live"), 1.0);
    assert!(m.contains("ferry_config_info{version=\"sha-fnv-"), "{m}");

    let (code, out) = ferry_tests::prom::promtool_check(&m);
    assert_eq!(code, 0, "promtool check metrics failed:\n{out}");
}

/// A route's series appear on its first request (all five status classes), continue across a
/// table swap that keeps the route, and go when a swap removes it.
#[tokio::test]
async fn route_series_appear_on_first_request_and_go_with_the_route() {
    let up = Upstream::start("a", UpstreamProtocol::Http1).await;
    let api = "- name: api\n  match: { prefix: /api }\n  action: { weightedTargets: [{ cluster: a, weight: 1 }] }\n";
    let idle = "- name: idle\n  match: { prefix: /idle }\n  action: { weightedTargets: [{ cluster: a, weight: 1 }] }\n";
    let clusters: &[(&str, &[std::net::SocketAddr], &str)] = &[("a", &[up.addr], "HTTP1")];
    let v1 = format!(
        "version: v1\n{}",
        table_yaml(&format!("{api}{idle}"), clusters)
    );
    let proxy = ProxyProcess::start(&v1).await.expect("proxy");
    let url = proxy.url("web").await;
    let c = Client::http1();
    let series = |m: &str, route: &str| {
        m.lines()
            .filter(|l| {
                l.starts_with("ferry_http_downstream_requests_total{")
                    && l.contains(&format!("route=\"{route}\""))
            })
            .count()
    };
    assert_eq!(
        c.get(&format!("{url}/api/ok")).await.expect("ok").status,
        200
    );
    let m = proxy.metrics().await;
    assert_eq!(series(&m, "api"), 5, "{m}");
    assert_eq!(
        series(&m, "idle"),
        0,
        "a route without traffic exports no series:\n{m}"
    );

    assert_eq!(
        c.get(&format!("{url}/idle/ok")).await.expect("ok").status,
        200
    );
    let m = proxy.metrics().await;
    assert_eq!(series(&m, "idle"), 5, "{m}");
    let v = |m: &str, s: &str| ferry_tests::proxy::metric_value(m, s);
    let idle_2xx =
        "ferry_http_downstream_requests_total{code_class=\"2xx\",listener=\"web\",route=\"idle\"}";
    let idle_5xx =
        "ferry_http_downstream_requests_total{code_class=\"5xx\",listener=\"web\",route=\"idle\"}";
    assert_eq!(v(&m, idle_2xx), 1.0);
    assert_eq!(v(&m, idle_5xx), 0.0);

    // v2 keeps `api` (its count continues) and drops `idle` (its series go).
    proxy.write_config(&format!("version: v2\n{}", table_yaml(api, clusters)));
    proxy.wait_for_version("v2").await.expect("v2");
    assert_eq!(
        c.get(&format!("{url}/api/ok")).await.expect("ok").status,
        200
    );
    let m = proxy.metrics().await;
    assert_eq!(
        v(
            &m,
            "ferry_http_downstream_requests_total{code_class=\"2xx\",listener=\"web\",route=\"api\"}"
        ),
        2.0
    );
    assert_eq!(series(&m, "idle"), 0, "{m}");
}

#[tokio::test]
async fn a_swap_drops_the_series_of_removed_routes_and_clusters_and_keeps_the_rest() {
    let a = Upstream::start("a", UpstreamProtocol::Http1).await;
    let b = Upstream::start("b", UpstreamProtocol::Http1).await;
    let routes = |names: &[(&str, &str)]| {
        names
            .iter()
            .map(|(route, cluster)| {
                format!(
                    "- name: {route}\n  match: {{ prefix: /{route} }}\n  action: {{ weightedTargets: [{{ cluster: {cluster}, weight: 1 }}] }}\n"
                )
            })
            .collect::<String>()
    };
    let first = table_yaml(
        &routes(&[("api", "a"), ("kept", "b")]),
        &[("a", &[a.addr], "HTTP1"), ("b", &[b.addr], "HTTP1")],
    );
    let proxy = ProxyProcess::start(&format!("version: v1\n{first}"))
        .await
        .expect("proxy");
    let url = proxy.url("web").await;
    let c = Client::http1();
    for path in ["/api", "/kept"] {
        assert_eq!(
            c.get(&format!("{url}{path}")).await.expect("ok").status,
            200
        );
    }
    let api =
        "ferry_http_downstream_requests_total{code_class=\"2xx\",listener=\"web\",route=\"api\"}";
    let kept =
        "ferry_http_downstream_requests_total{code_class=\"2xx\",listener=\"web\",route=\"kept\"}";
    let cluster_a = "ferry_http_upstream_requests_total{cluster=\"a\",code_class=\"2xx\"}";
    let m = proxy.metrics().await;
    assert!(
        m.contains(api) && m.contains(kept) && m.contains(cluster_a),
        "{m}"
    );

    let second = table_yaml(&routes(&[("kept", "b")]), &[("b", &[b.addr], "HTTP1")]);
    proxy.write_config(&format!("version: v2\n{second}"));
    proxy.wait_for_version("v2").await.expect("swap applied");
    // As soon as the new version is served, the removed route's and cluster's series are gone.
    let m = proxy.metrics().await;
    assert!(!m.contains("route=\"api\""), "{m}");
    assert!(!m.contains("cluster=\"a\""), "{m}");
    assert_eq!(ferry_tests::proxy::metric_value(&m, kept), 1.0);
    assert_eq!(c.get(&format!("{url}/kept")).await.expect("ok").status, 200);
    assert_eq!(proxy.metric(kept).await, 2.0);

    // Same route names in the same order (only a weight changed): every series goes on counting.
    let third = second.replace("weight: 1", "weight: 7");
    proxy.write_config(&format!("version: v3\n{third}"));
    proxy.wait_for_version("v3").await.expect("swap applied");
    assert_eq!(c.get(&format!("{url}/kept")).await.expect("ok").status, 200);
    assert_eq!(proxy.metric(kept).await, 3.0);

    // As many routes as before, one renamed: the old name's series goes.
    let fourth = table_yaml(&routes(&[("renamed", "b")]), &[("b", &[b.addr], "HTTP1")]);
    proxy.write_config(&format!("version: v4\n{fourth}"));
    proxy.wait_for_version("v4").await.expect("swap applied");
    let m = proxy.metrics().await;
    assert!(!m.contains("route=\"kept\""), "{m}");
    assert_eq!(
        c.get(&format!("{url}/renamed")).await.expect("ok").status,
        200
    );
    assert_eq!(
        proxy
            .metric("ferry_http_downstream_requests_total{code_class=\"2xx\",listener=\"web\",route=\"renamed\"}")
            .await,
        1.0
    );
}
