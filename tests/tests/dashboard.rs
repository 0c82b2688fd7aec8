//! The Grafana dashboard in `examples/grafana/ferry-proxy.json`: it parses as a dashboard, promtool
//! accepts every PromQL expression in it, and every metric and label those expressions use is in
//! the exposition of a real proxy that served traffic.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failures should be loud
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use ferry_tests::prom::samples;
use ferry_tests::{Client, ProxyProcess, Upstream, UpstreamProtocol, table_yaml};

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/grafana/ferry-proxy.json"
);

/// Every PromQL expression of the dashboard (panel targets and variable queries), with Grafana's
/// variables replaced by what Prometheus would see.
fn expressions(dashboard: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    let mut titles = BTreeSet::new();
    for p in panels {
        let title = p["title"].as_str().expect("every panel has a title");
        assert!(titles.insert(title), "two panels titled {title:?}");
        let pos = &p["gridPos"];
        let (x, w) = (pos["x"].as_u64().unwrap(), pos["w"].as_u64().unwrap());
        assert!(x + w <= 24, "{title}: wider than the grid");
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert!(
                refs.insert(t["refId"].as_str().unwrap()),
                "{title}: refId twice"
            );
            let expr = t["expr"].as_str().expect("expr");
            assert!(!expr.trim().is_empty(), "{title}: empty query");
            out.push(expr.to_owned());
        }
    }
    for v in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        if v["type"] == "query" {
            let q = v["query"]["query"].as_str().expect("variable query");
            // label_values(metric, label) -> a selector promtool can check.
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|s| s.strip_suffix(')'))
                .expect("label_values query");
            let (metric, label) = inner.split_once(',').expect("metric, label");
            out.push(format!("count by ({}) ({})", label.trim(), metric.trim()));
        }
    }
    out.into_iter()
        .map(|e| {
            e.replace("$__rate_interval", "5m")
                .replace("$listener", ".*")
                .replace("$cluster", ".*")
        })
        .collect()
}

/// The `ferry_…` metric names an expression reads.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("ferry_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

/// The label names an expression groups by or matches on.
fn label_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (open, close) in [("by (", ')'), ("{", '}')] {
        let mut rest = expr;
        while let Some(i) = rest.find(open) {
            let tail = &rest[i + open.len()..];
            let end = tail.find(close).expect("closed");
            for part in tail[..end].split(',') {
                let name = part
                    .split(['=', '!', '~'])
                    .next()
                    .unwrap_or_default()
                    .trim();
                if !name.is_empty() {
                    out.insert(name.to_owned());
                }
            }
            rest = &tail[end..];
        }
    }
    out
}

#[tokio::test]
async fn dashboard_queries_use_metrics_a_real_proxy_exposes() {
    let text = std::fs::read_to_string(DASHBOARD).expect("the dashboard file");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(dashboard["uid"], "ferry-proxy");
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 30);
    let exprs = expressions(&dashboard);

    // promtool parses every expression (as recording rules).
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    let mut yaml = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        yaml.push_str(&format!(
            "      - record: dashboard:expr_{i}\n        expr: {}\n",
            serde_json::to_string(e).unwrap()
        ));
    }
    std::fs::write(&rules, yaml).unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool (apt-get install -y prometheus; scripts/test.sh does it)");
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A real proxy with a retried route, after 2xx and 5xx traffic.
    let up = Upstream::start("a", UpstreamProtocol::Http1).await;
    let routes = "- name: api\n  match: { prefix: / }\n  action:\n    weightedTargets: [{ cluster: a, weight: 1 }]\n    retryPolicy: { maxRetries: 1, httpRetryEvents: [GATEWAY_ERROR], backoffBase: 0.001s, backoffMax: 0.002s }\n";
    let proxy = ProxyProcess::start(&table_yaml(routes, &[("a", &[up.addr], "HTTP1")]))
        .await
        .expect("proxy");
    let url = proxy.url("web").await;
    let c = Client::http1();
    for path in ["/ok", "/status/503", "/status/404"] {
        c.get(&format!("{url}{path}")).await.unwrap();
    }
    let m = proxy.metrics().await;
    let mut kinds: BTreeMap<String, String> = BTreeMap::new();
    for l in m.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = l.split_once(' ').unwrap();
        kinds.insert(name.to_owned(), kind.to_owned());
    }
    let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in samples(&m) {
        labels
            .entry(s.name)
            .or_default()
            .extend(s.labels.into_keys());
    }

    let mut checked = BTreeSet::new();
    for e in &exprs {
        let names = metric_names(e);
        assert!(!names.is_empty(), "no ferry metric in {e}");
        let mut available = BTreeSet::new();
        for n in &names {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| n.strip_suffix(s))
                .filter(|f| kinds.get(*f).map(String::as_str) == Some("histogram"))
                .unwrap_or(n);
            assert!(
                kinds.contains_key(family),
                "{n} (in {e}) is not in the proxy's exposition"
            );
            assert!(
                labels.contains_key(n),
                "{n} (in {e}) has no series on a proxy that served traffic"
            );
            available.extend(labels[n].iter().cloned());
            checked.insert(family.to_owned());
        }
        for l in label_names(e) {
            assert!(
                available.contains(&l),
                "label {l} (in {e}) is not on {names:?}"
            );
        }
    }
    // The panels the dashboard promises: traffic, errors, latency, connections, retries,
    // ejections, health.
    for family in [
        "ferry_http_downstream_requests_total",
        "ferry_http_downstream_request_duration_seconds",
        "ferry_http_upstream_request_duration_seconds",
        "ferry_upstream_connections_active",
        "ferry_http_upstream_retries_total",
        "ferry_outlier_ejections_total",
        "ferry_cluster_endpoints_healthy",
    ] {
        assert!(checked.contains(family), "no panel reads {family}");
    }
}
