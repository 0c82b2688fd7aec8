//! Routing end to end: every match kind (positive and negative), priorities, virtual hosts,
//! rewrites, proxy headers, and the proxy's own error replies.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failures should be loud
use std::time::Duration;

use ferry_tests::{Client, ProxyProcess, Upstream, UpstreamProtocol, table_yaml};

struct Setup {
    _proxy: ProxyProcess,
    url: String,
    _a: Upstream,
    _b: Upstream,
}

/// A proxy whose routes send matching requests to cluster `a`, everything else to `b`.
async fn setup(routes: &str) -> Setup {
    let a = Upstream::start("a", UpstreamProtocol::Http1).await;
    let b = Upstream::start("b", UpstreamProtocol::Http1).await;
    let yaml = table_yaml(
        routes,
        &[("a", &[a.addr], "HTTP1"), ("b", &[b.addr], "HTTP1")],
    );
    let proxy = ProxyProcess::start(&yaml).await.expect("proxy starts");
    let url = proxy.url("web").await;
    Setup {
        _proxy: proxy,
        url,
        _a: a,
        _b: b,
    }
}

/// `route` (a route that targets cluster a) plus a catch-all to b at lower priority.
fn with_fallback(route: &str) -> String {
    format!(
        "- name: under-test\n  priority: 0\n{}\n- name: fallback\n  priority: 100\n  match: {{ prefix: / }}\n  action: {{ weightedTargets: [{{ cluster: b, weight: 1 }}] }}\n",
        route
            .lines()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

const TO_A: &str = "action: { weightedTargets: [{ cluster: a, weight: 1 }] }";

async fn who(s: &Setup, path: &str, headers: &[(&str, &str)]) -> String {
    let r = Client::http1()
        .get_with(&format!("{}{path}", s.url), headers)
        .await
        .expect("request");
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.upstream()
}

async fn who_method(s: &Setup, method: http::Method, path: &str) -> String {
    let r = Client::http1()
        .send(
            method,
            &format!("{}{path}", s.url),
            &[],
            bytes::Bytes::new(),
        )
        .await
        .expect("request");
    r.upstream()
}

#[tokio::test]
async fn prefix_match() {
    let s = setup(&with_fallback(&format!(
        "match: {{ prefix: /api }}\n{TO_A}"
    )))
    .await;
    assert_eq!(who(&s, "/api", &[]).await, "a");
    assert_eq!(who(&s, "/api/v1/users?x=1", &[]).await, "a");
    assert_eq!(who(&s, "/other", &[]).await, "b");
    assert_eq!(who(&s, "/ap", &[]).await, "b");
}

#[tokio::test]
async fn exact_path_match_ignores_query() {
    let s = setup(&with_fallback(&format!(
        "match: {{ exact: /health }}\n{TO_A}"
    )))
    .await;
    assert_eq!(who(&s, "/health", &[]).await, "a");
    assert_eq!(who(&s, "/health?verbose=1", &[]).await, "a");
    assert_eq!(who(&s, "/health/x", &[]).await, "b");
    assert_eq!(who(&s, "/healthz", &[]).await, "b");
}

#[tokio::test]
async fn regex_path_match_is_anchored() {
    let s = setup(&with_fallback(&format!(
        "match: {{ regex: '/users/[0-9]+' }}\n{TO_A}"
    )))
    .await;
    assert_eq!(who(&s, "/users/42", &[]).await, "a");
    assert_eq!(who(&s, "/users/42/orders", &[]).await, "b");
    assert_eq!(who(&s, "/x/users/42", &[]).await, "b");
}

#[tokio::test]
async fn path_is_normalized_before_matching_and_forwarding() {
    let s = setup(&with_fallback(&format!(
        "match: {{ prefix: /admin/ }}\n{TO_A}"
    )))
    .await;
    let r = Client::http1()
        .get(&format!("{}//admin/./x/../panel", s.url))
        .await
        .expect("request");
    assert_eq!(r.upstream(), "a");
    assert_eq!(r.json()["path"], "/admin/panel");
}

#[tokio::test]
async fn header_matches_each_kind_and_invert() {
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let cases: &[(&str, Headers, Headers)] = &[
        (
            "{ name: x-v, exact: canary }",
            &[("x-v", "canary")],
            &[("x-v", "canary2")],
        ),
        (
            "{ name: x-v, prefix: can }",
            &[("x-v", "canary")],
            &[("x-v", "xcan")],
        ),
        (
            "{ name: x-v, suffix: ary }",
            &[("x-v", "canary")],
            &[("x-v", "aryx")],
        ),
        (
            "{ name: x-v, regex: 'c[a-z]+y' }",
            &[("x-v", "canary")],
            &[("x-v", "canary!")],
        ),
        (
            "{ name: x-v, range: { start: 10, end: 20 } }",
            &[("x-v", "19")],
            &[("x-v", "20")],
        ),
        (
            "{ name: x-v, present: true }",
            &[("x-v", "")],
            &[("x-other", "1")],
        ),
        (
            "{ name: x-v, present: false }",
            &[("x-other", "1")],
            &[("x-v", "1")],
        ),
        (
            "{ name: x-v, exact: beta, invert: true }",
            &[("x-v", "alpha")],
            &[("x-v", "beta")],
        ),
    ];
    for (rule, yes, no) in cases {
        let s = setup(&with_fallback(&format!(
            "match: {{ prefix: /, headers: [{rule}] }}\n{TO_A}"
        )))
        .await;
        assert_eq!(who(&s, "/", yes).await, "a", "{rule} should match {yes:?}");
        assert_eq!(
            who(&s, "/", no).await,
            "b",
            "{rule} should not match {no:?}"
        );
    }
}

#[tokio::test]
async fn method_scheme_and_port_matches() {
    let s = setup(&with_fallback(&format!(
        "match: {{ prefix: /, method: POST }}\n{TO_A}"
    )))
    .await;
    assert_eq!(who_method(&s, http::Method::POST, "/").await, "a");
    assert_eq!(who_method(&s, http::Method::GET, "/").await, "b");

    let s = setup(&with_fallback(&format!(
        "match: {{ prefix: /, scheme: http }}\n{TO_A}"
    )))
    .await;
    assert_eq!(who(&s, "/", &[]).await, "a");
    let s = setup(&with_fallback(&format!(
        "match: {{ prefix: /, scheme: https }}\n{TO_A}"
    )))
    .await;
    assert_eq!(
        who(&s, "/", &[]).await,
        "b",
        "plaintext listener: scheme is http"
    );

    // Port: the listener's own port matches; another does not.
    let s = setup(&with_fallback(&format!(
        "match: {{ prefix: /, port: 1 }}\n{TO_A}"
    )))
    .await;
    assert_eq!(who(&s, "/", &[]).await, "b");
}

#[tokio::test]
async fn port_match_uses_the_listener_port() {
    let a = Upstream::start("a", UpstreamProtocol::Http1).await;
    let b = Upstream::start("b", UpstreamProtocol::Http1).await;
    // A fixed free port, so the route can name it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let routes = with_fallback(&format!("match: {{ prefix: /, port: {port} }}\n{TO_A}"));
    let yaml = table_yaml(
        &routes,
        &[("a", &[a.addr], "HTTP1"), ("b", &[b.addr], "HTTP1")],
    )
    .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    let proxy = ProxyProcess::start(&yaml).await.expect("proxy");
    let r = Client::http1()
        .get(&proxy.url("web").await)
        .await
        .expect("request");
    assert_eq!(r.upstream(), "a");
}

#[tokio::test]
async fn query_parameter_matches() {
    let s = setup(&with_fallback(&format!(
        "match: {{ prefix: /, queryParameters: [{{ name: v, exact: '2' }}, {{ name: debug }}] }}\n{TO_A}"
    )))
    .await;
    assert_eq!(who(&s, "/?v=2&debug", &[]).await, "a");
    assert_eq!(who(&s, "/?debug=1&v=2", &[]).await, "a");
    assert_eq!(who(&s, "/?v=3&debug", &[]).await, "b");
    assert_eq!(who(&s, "/?v=2", &[]).await, "b");
    assert_eq!(who(&s, "/", &[]).await, "b");
}

#[tokio::test]
async fn priority_order_wins_over_file_order() {
    // The more specific route is written last but has the higher priority (lower number).
    let routes = format!(
        "- name: broad\n  priority: 5\n  match: {{ prefix: / }}\n  action: {{ weightedTargets: [{{ cluster: b, weight: 1 }}] }}\n\
         - name: specific\n  priority: 1\n  match: {{ prefix: /special }}\n  {TO_A}\n"
    );
    let s = setup(&routes).await;
    assert_eq!(who(&s, "/special/x", &[]).await, "a");
    assert_eq!(who(&s, "/x", &[]).await, "b");
}

#[tokio::test]
async fn equal_priorities_keep_table_order() {
    let routes = format!(
        "- name: first\n  match: {{ prefix: / }}\n  {TO_A}\n\
         - name: second\n  match: {{ prefix: /x }}\n  action: {{ weightedTargets: [{{ cluster: b, weight: 1 }}] }}\n"
    );
    let s = setup(&routes).await;
    assert_eq!(who(&s, "/x", &[]).await, "a");
}

#[tokio::test]
async fn virtual_hosts_by_authority() {
    let a = Upstream::start("a", UpstreamProtocol::Http1).await;
    let b = Upstream::start("b", UpstreamProtocol::Http1).await;
    let c = Upstream::start("c", UpstreamProtocol::Http1).await;
    let yaml = format!(
        r#"
listeners:
  - name: web
    address: 127.0.0.1:0
    virtualHosts:
      - name: exact
        domains: ["api.mesh.local", "api.mesh.local:8080"]
        routes: [{{ name: ra, match: {{ prefix: / }}, action: {{ weightedTargets: [{{ cluster: a, weight: 1 }}] }} }}]
      - name: wildcard
        domains: ["*.mesh.local"]
        routes: [{{ name: rb, match: {{ prefix: / }}, action: {{ weightedTargets: [{{ cluster: b, weight: 1 }}] }} }}]
      - name: other
        domains: ["*"]
        routes: [{{ name: rc, match: {{ prefix: / }}, action: {{ weightedTargets: [{{ cluster: c, weight: 1 }}] }} }}]
clusters:
  - {{ name: a, staticEndpoints: {{ endpoints: [{{ address: "{}" }}] }} }}
  - {{ name: b, staticEndpoints: {{ endpoints: [{{ address: "{}" }}] }} }}
  - {{ name: c, staticEndpoints: {{ endpoints: [{{ address: "{}" }}] }} }}
"#,
        a.addr, b.addr, c.addr
    );
    let proxy = ProxyProcess::start(&yaml).await.expect("proxy");
    let url = proxy.url("web").await;
    let client = Client::http1();
    for (host, want) in [
        ("api.mesh.local", "a"),
        ("API.Mesh.Local:8080", "a"),
        ("api.mesh.local:9999", "a"),
        ("color.mesh.local", "b"),
        ("example.com", "c"),
    ] {
        let r = client
            .get_with(&url, &[("host", host)])
            .await
            .expect("request");
        assert_eq!(r.upstream(), want, "host {host}");
        // Host is preserved upstream.
        assert_eq!(r.seen_header("host").as_deref(), Some(host));
    }
}

#[tokio::test]
async fn no_virtual_host_and_no_route_are_404_with_a_reason() {
    let a = Upstream::start("a", UpstreamProtocol::Http1).await;
    let yaml = format!(
        "listeners:\n  - name: web\n    address: 127.0.0.1:0\n    virtualHosts:\n      - name: only\n        domains: [only.local]\n        routes: [{{ name: r, match: {{ prefix: /yes }}, action: {{ weightedTargets: [{{ cluster: a, weight: 1 }}] }} }}]\nclusters:\n  - {{ name: a, staticEndpoints: {{ endpoints: [{{ address: \"{}\" }}] }} }}\n",
        a.addr
    );
    let proxy = ProxyProcess::start(&yaml).await.expect("proxy");
    let url = proxy.url("web").await;
    let r = Client::http1()
        .get_with(&url, &[("host", "elsewhere.local")])
        .await
        .expect("request");
    assert_eq!(r.status, 404);
    assert!(
        r.body.contains("no virtual host") && r.body.contains("elsewhere.local"),
        "{}",
        r.body
    );
    let r = Client::http1()
        .get_with(&format!("{url}/no"), &[("host", "only.local")])
        .await
        .expect("request");
    assert_eq!(r.status, 404);
    assert!(r.body.contains("no route"), "{}", r.body);
    assert_eq!(a.hits(), 0);
}

#[tokio::test]
async fn prefix_path_and_host_rewrites() {
    let routes = "\
- name: strip
  match: { prefix: /api/ }
  action: { weightedTargets: [{ cluster: a, weight: 1 }], rewrite: { prefix: / } }
- name: replace
  match: { prefix: /old }
  action: { weightedTargets: [{ cluster: a, weight: 1 }], rewrite: { prefix: /new } }
- name: whole
  match: { exact: /legacy }
  action: { weightedTargets: [{ cluster: a, weight: 1 }], rewrite: { path: /modern, host: modern.local } }
";
    let s = setup(routes).await;
    let c = Client::http1();
    let r = c
        .get(&format!("{}/api/users?id=7", s.url))
        .await
        .expect("request");
    assert_eq!(r.json()["uri"], "/users?id=7");
    let r = c
        .get(&format!("{}/old/thing", s.url))
        .await
        .expect("request");
    assert_eq!(r.json()["path"], "/new/thing");
    let r = c.get(&format!("{}/legacy", s.url)).await.expect("request");
    assert_eq!(r.json()["path"], "/modern");
    assert_eq!(r.seen_header("host").as_deref(), Some("modern.local"));
}

#[tokio::test]
async fn proxy_headers() {
    let s = setup(&with_fallback(&format!("match: {{ prefix: / }}\n{TO_A}"))).await;
    let c = Client::http1();
    let r = c
        .get_with(
            &s.url,
            &[
                ("x-forwarded-for", "203.0.113.9"),
                ("connection", "x-hop"),
                ("x-hop", "secret"),
                ("x-request-id", "req-123"),
                ("x-app", "kept"),
            ],
        )
        .await
        .expect("request");
    assert_eq!(
        r.seen_header("x-forwarded-for").as_deref(),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(r.seen_header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(r.seen_header("x-request-id").as_deref(), Some("req-123"));
    assert_eq!(r.seen_header("x-app").as_deref(), Some("kept"));
    assert_eq!(
        r.seen_header("x-hop"),
        None,
        "headers named in Connection are hop-by-hop"
    );

    let r = c.get(&s.url).await.expect("request");
    let id = r.seen_header("x-request-id").expect("generated id");
    assert_eq!(id.len(), 36, "uuid: {id}");
    assert_eq!(
        r.seen_header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
}

#[tokio::test]
async fn no_endpoint_is_503_connect_failure_is_503_timeout_is_504() {
    let a = Upstream::start("a", UpstreamProtocol::Http1).await;
    // A port with nothing listening: bind, note it, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let routes = "\
- name: empty
  match: { prefix: /empty }
  action: { weightedTargets: [{ cluster: empty, weight: 1 }] }
- name: dead
  match: { prefix: /dead }
  action: { weightedTargets: [{ cluster: dead, weight: 1 }] }
- name: slow
  match: { prefix: /slow }
  action: { weightedTargets: [{ cluster: a, weight: 1 }], timeouts: { request: 0.3s } }
- name: unlimited
  match: { prefix: /patient }
  action: { weightedTargets: [{ cluster: a, weight: 1 }], timeouts: { request: 0s } }
";
    let yaml = table_yaml(
        routes,
        &[
            ("empty", &[], "HTTP1"),
            ("dead", &[dead], "HTTP1"),
            ("a", &[a.addr], "HTTP1"),
        ],
    );
    let proxy = ProxyProcess::start(&yaml).await.expect("proxy");
    let url = proxy.url("web").await;
    let c = Client::http1();

    let r = c.get(&format!("{url}/empty")).await.expect("request");
    assert_eq!(r.status, 503);
    assert!(r.body.contains("no healthy upstream"), "{}", r.body);

    let r = c.get(&format!("{url}/dead")).await.expect("request");
    assert_eq!(r.status, 503);
    assert!(r.body.contains("connect"), "{}", r.body);

    let started = std::time::Instant::now();
    let r = c.get(&format!("{url}/slow/2000")).await.expect("request");
    assert_eq!(r.status, 504);
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "timed out early, not after the upstream answered"
    );

    // "0s" disables the timeout: a 500 ms answer gets through.
    let r = c
        .get_with(&format!("{url}/patient"), &[("x-delay-ms", "500")])
        .await
        .expect("request");
    assert_eq!(r.status, 200);
    // The normalized path is what is routed: /patient/../slow is /slow, with its 0.3 s timeout.
    let r = c
        .get_with(&format!("{url}/patient/../slow"), &[("x-delay-ms", "500")])
        .await
        .expect("request");
    assert_eq!(r.status, 504);

    let m = proxy.metrics().await;
    assert!(
        m.contains("ferry_upstream_no_healthy_endpoint_total{cluster=\"empty\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("ferry_upstream_connect_failures_total{cluster=\"dead\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("ferry_http_upstream_request_timeouts_total{cluster=\"a\"} 2"),
        "{m}"
    );
}
