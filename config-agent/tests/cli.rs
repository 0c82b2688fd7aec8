//! The `ferry-agent` command line: validate, compile and explain, as a user runs them.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::path::PathBuf;
use std::process::{Command, Output};

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry-agent"))
        .args(args)
        .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .expect("run ferry-agent")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn validate_accepts_the_example_and_lists_its_proxies() {
    let out = agent(&["validate", "examples/mesh/resources"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "examples/mesh/resources: valid: 9 resources; proxy identities: color-mesh/virtualNode/color-blue, color-mesh/virtualNode/color-green, color-mesh/virtualNode/front\n"
    );
}

#[test]
fn validate_fails_with_every_problem_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir("../examples/mesh/resources").unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
    }
    let routes = dir.path().join("router.json");
    let text_in = std::fs::read_to_string(&routes).unwrap();
    std::fs::write(
        &routes,
        text_in.replace("\"weight\": 90", "\"weight\": 190"),
    )
    .unwrap();
    let out = agent(&["validate", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("router.json:38:46: route color-split (mesh color-mesh, virtualRouter color-router): spec.httpRoute.action.weightedTargets[0].weight: 190 is out of range 0..100"),
        "{err}"
    );
    assert!(err.ends_with(": 1 problem(s)\n"), "{err}");
}

#[test]
fn compile_prints_a_table_the_proxy_reads() {
    let out = agent(&[
        "compile",
        "--resources",
        "examples/mesh/resources",
        "--node",
        "color-mesh/virtualNode/front",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = ferry_api::decode_yaml(&text(&out.stdout), "stdout").unwrap();
    assert_eq!(table.node_id, "color-mesh/virtualNode/front");
    assert_eq!(table.version, ferry_agent::compile::version_of(&table));
    let json = agent(&[
        "compile",
        "--resources",
        "examples/mesh/resources",
        "--node",
        "color-mesh/virtualNode/front",
        "--json",
        "--egress-port",
        "25001",
    ]);
    let t = ferry_api::decode_json(&text(&json.stdout), "stdout").unwrap();
    assert_eq!(t.listeners[1].address, "127.0.0.1:25001");
    let unknown = agent(&[
        "compile",
        "--resources",
        "examples/mesh/resources",
        "--node",
        "color-mesh/virtualNode/x",
    ]);
    assert!(!unknown.status.success());
    assert!(text(&unknown.stderr).contains("there is no virtualNode \"x\" in mesh color-mesh"));
}

#[test]
fn explain_names_the_listener_route_targets_and_why_others_did_not_match() {
    let out = agent(&[
        "explain",
        "--resources",
        "examples/mesh/resources",
        "--node",
        "color-mesh/virtualNode/front",
        "--request",
        "GET http://color.mesh.local:8080/hello",
        "-H",
        "x-color: blue",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    for line in [
        "listener: egress (127.0.0.1:15001, OUTBOUND, HTTP)",
        "virtual host: color.mesh.local:8080 (exact domain \"color.mesh.local:8080\")",
        "  1. color.mesh.local:8080/color-header (priority 0): no: header x-color: \"blue\" is not exactly \"green\"",
        "  2. color.mesh.local:8080/color-split (priority 10): MATCH",
        "weighted targets: color-blue:8080 weight 90 (90%), color-green:8080 weight 10 (10%)",
        "  color-blue:8080: DNS 127.0.0.2:8080 (LOADBALANCER); HTTP1, outlier detection",
        "timeout: 5s",
        "retries: up to 3 on SERVER_ERROR, GATEWAY_ERROR, CONNECTION_ERROR, 2s per try",
    ] {
        assert!(s.lines().any(|l| l == line), "missing {line:?} in:\n{s}");
    }
    let ingress = agent(&[
        "explain",
        "--resources",
        "examples/mesh/resources",
        "--node",
        "color-mesh/virtualNode/front",
        "--request",
        "http://front.mesh.local:9080/",
        "--listener",
        "ingress",
    ]);
    let s = text(&ingress.stdout);
    assert!(
        s.contains("weighted targets: ingress:9080 weight 100 (100%)"),
        "{s}"
    );
    assert!(
        s.contains("ingress:9080: static 127.0.0.1:9080; HTTP1"),
        "{s}"
    );
    let gw = agent(&[
        "explain",
        "--resources",
        "config-agent/tests/golden/gateway/resources",
        "--node",
        "edge/virtualGateway/ingress-gw",
        "--request",
        "GET http://www.example.com:8080/v1/items",
    ]);
    let s = text(&gw.stdout);
    assert!(
        s.contains("rewrite: Host -> color.edge.local, prefix /v1/ -> /api/ (path /api/items)"),
        "{s}"
    );
    assert!(s.contains("then, through the gateway's own egress:"), "{s}");
    assert!(
        s.contains("  1. color.edge.local:8080/all (priority 1001): MATCH"),
        "{s}"
    );
}
