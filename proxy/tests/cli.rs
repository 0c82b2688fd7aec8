//! The ferry-proxy command line: invalid configuration at start-up is a non-zero exit with the
//! same file:line and field message the hot-swap path logs, and --validate checks a file.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failures should be loud
use std::process::Command;

fn proxy() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferry-proxy"))
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).expect("write");
    p
}

const VALID: &str = "\
listeners:
  - name: web
    address: 127.0.0.1:0
    virtualHosts:
      - name: all
        domains: ['*']
        routes:
          - name: r
            match: { prefix: / }
            action: { weightedTargets: [{ cluster: c, weight: 1 }] }
clusters:
  - name: c
    staticEndpoints: { endpoints: [{ address: 127.0.0.1:1 }] }
";

#[test]
fn validate_accepts_the_examples() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/standalone.yaml");
    let out = proxy()
        .args(["--validate", "--config", examples])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid (version standalone-1)"));
}

#[test]
fn validate_binds_nothing_so_it_can_check_the_file_a_running_proxy_serves() {
    // The port is taken, as it is when a proxy serves this very file.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let dir = tempfile::tempdir().expect("tempdir");
    let table = VALID.replace("127.0.0.1:0", &addr.to_string());
    let stdout = accepted_by_validate(&dir, "served.yaml", &table);
    assert!(stdout.contains("valid"), "{stdout}");
}

#[test]
fn invalid_config_at_startup_exits_non_zero_naming_file_line_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        // (replace this, with that, expected line, expected field path, expected words)
        (
            "weight: 1",
            "weight: 101",
            10,
            "listeners[0].virtualHosts[0].routes[0].action.weightedTargets[0].weight",
            "out of range",
        ),
        (
            "prefix: /",
            "prefix: nope",
            9,
            "listeners[0].virtualHosts[0].routes[0].match.prefix",
            "must start with '/'",
        ),
        (
            "match: { prefix: / }",
            "match: { prefix: /, headers: [{ name: x-v, regex: '(' }] }",
            9,
            "listeners[0].virtualHosts[0].routes[0].match.headers[0].regex",
            "invalid regex",
        ),
        (
            "weight: 1 }] }",
            "weight: 1 }], retryPolicy: { maxRetries: 1, perTryTimeout: -1s, httpRetryEvents: [SERVER_ERROR] } }",
            10,
            "listeners[0].virtualHosts[0].routes[0].action.retryPolicy.perTryTimeout",
            "zero or positive",
        ),
        (
            "address: 127.0.0.1:1 }",
            "address: nowhere }",
            13,
            "clusters[0].staticEndpoints.endpoints[0].address",
            "not an ip:port",
        ),
        (
            "    staticEndpoints:",
            "    connectTimeout: -1s\n    staticEndpoints:",
            13,
            "clusters[0].connectTimeout",
            "zero or positive",
        ),
        (
            "address: 127.0.0.1:0",
            "address: localhost",
            3,
            "listeners[0].address",
            "not an ip:port",
        ),
        (
            "cluster: c,",
            "cluster: d,",
            10,
            "listeners[0].virtualHosts[0].routes[0].action.weightedTargets[0].cluster",
            "no cluster named",
        ),
        (
            "domains: ['*']",
            "domains: ['a b']",
            6,
            "listeners[0].virtualHosts[0].domains[0]",
            "not a domain",
        ),
        (
            "  - name: web",
            "  - name: web\n    protocol: FTP",
            3,
            "listeners[0].protocol",
            "FTP",
        ),
    ];
    for (from, to, line, field, words) in cases {
        let path = write(&dir, "bad.yaml", &VALID.replace(from, to));
        let out = proxy()
            .args(["--admin-addr", "127.0.0.1:0", "--config"])
            .arg(&path)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{to}: should fail");
        let want = format!("{}:{line}:", path.display());
        assert!(stderr.contains(&want), "{to}: want {want} in: {stderr}");
        assert!(stderr.contains(field), "{to}: want {field} in: {stderr}");
        assert!(stderr.contains(words), "{to}: want {words:?} in: {stderr}");
    }
}

/// Writes `table` as `name` and runs `--validate` on it.
fn validate(dir: &tempfile::TempDir, name: &str, table: &str) -> std::process::Output {
    let path = write(dir, name, table);
    proxy()
        .args(["--validate", "--config"])
        .arg(&path)
        .output()
        .expect("run")
}

/// Runs `--validate` on `table`, asserts it is accepted, returns stdout.
fn accepted_by_validate(dir: &tempfile::TempDir, name: &str, table: &str) -> String {
    let out = validate(dir, name, table);
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `--validate` on `table`, asserts it is refused, returns stderr.
fn refused_by_validate(dir: &tempfile::TempDir, name: &str, table: &str) -> String {
    let out = validate(dir, name, table);
    assert!(!out.status.success(), "{name} should be refused");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_egress_policy_needs_a_transparent_listener() {
    let dir = tempfile::tempdir().expect("tempdir");
    let explicit = VALID.replace(
        "    address: 127.0.0.1:0",
        "    address: 127.0.0.1:0\n    egressPolicy: ALLOW_ALL",
    );
    let stderr = refused_by_validate(&dir, "egress.yaml", &explicit);
    assert!(
        stderr.contains("listeners[0].egressPolicy: an egress policy needs originalDst: true"),
        "{stderr}"
    );
}

#[test]
fn a_retry_policy_without_events_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let with_retry = VALID.replace(
        "action: { weightedTargets: [{ cluster: c, weight: 1 }] }",
        "action: { weightedTargets: [{ cluster: c, weight: 1 }], retryPolicy: { maxRetries: 2 } }",
    );
    let stderr = refused_by_validate(&dir, "retry.yaml", &with_retry);
    assert!(
        stderr.contains("action.retryPolicy: a retry policy needs at least one of"),
        "{stderr}"
    );
}

#[test]
fn missing_or_empty_config_is_a_clear_error() {
    let out = proxy()
        .args(["--config", "/nonexistent/table.yaml"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/table.yaml: cannot read"));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(&dir, "empty.yaml", "\n");
    let out = proxy().arg("--config").arg(&path).output().expect("run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("the file is empty"));
}

#[test]
fn tcp_routes_on_an_http_listener_need_original_destinations_and_ports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tcp_route =
        "\n    tcpRoutes: [{ name: db, port: 5432, weightedTargets: [{ cluster: c, weight: 1 }] }]";
    let explicit = VALID.replace(
        "    address: 127.0.0.1:0",
        &format!("    address: 127.0.0.1:0{tcp_route}"),
    );
    let stderr = refused_by_validate(&dir, "explicit.yaml", &explicit);
    assert!(
        stderr.contains(
            "listeners[0].tcpRoutes: TCP routes on an HTTP listener need `originalDst: true`"
        ),
        "{stderr}"
    );
    let any_port = VALID.replace(
        "    address: 127.0.0.1:0",
        &format!(
            "    address: 127.0.0.1:0\n    originalDst: true{}",
            tcp_route.replace("port: 5432, ", "")
        ),
    );
    let stderr = refused_by_validate(&dir, "any-port.yaml", &any_port);
    assert!(
        stderr.contains(
            "listeners[0].tcpRoutes[0].port: a TCP route on an HTTP listener needs its port"
        ),
        "{stderr}"
    );
    // Both, as the agent compiles a node with HTTP and TCP backends: accepted.
    let mixed = VALID.replace(
        "    address: 127.0.0.1:0",
        &format!("    address: 127.0.0.1:0\n    originalDst: true{tcp_route}"),
    );
    accepted_by_validate(&dir, "mixed.yaml", &mixed);
}

#[test]
fn allowed_hosts_are_drop_alls_exceptions_written_as_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let with = |policy: &str, hosts: &str| {
        VALID.replace(
            "    address: 127.0.0.1:0",
            &format!("    address: 127.0.0.1:0\n    originalDst: true\n    egressPolicy: {policy}\n    egressAllowedHosts: {hosts}"),
        )
    };
    let stderr = refused_by_validate(
        &dir,
        "allow-all.yaml",
        &with("ALLOW_ALL", "['*.amazonaws.com']"),
    );
    assert!(
        stderr
            .contains("listeners[0].egressAllowedHosts: ALLOW_ALL lets every host through already"),
        "{stderr}"
    );
    let stderr = refused_by_validate(
        &dir,
        "port.yaml",
        &with("DROP_ALL", "['*.amazonaws.com', 'api.example.com:443']"),
    );
    assert!(
        stderr.contains(
            "listeners[0].egressAllowedHosts[1]: \"api.example.com:443\" is not a host name"
        ),
        "{stderr}"
    );
}

#[test]
fn stats_settings_are_checked_at_start() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/standalone.yaml");
    let out = proxy()
        .args([
            "--config",
            examples,
            "--validate",
            "--stats-compat",
            "envoyy",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("possible values: none, envoy, envoy-only"),
        "{err}"
    );

    let out = proxy()
        .args(["--config", examples, "--validate"])
        .env("ENABLE_ENVOY_STATS_TAGS", "maybe")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"maybe\" is not 1/0"), "{err}");

    for ok in ["", "0", "1", "true"] {
        let out = proxy()
            .args(["--config", examples, "--validate"])
            .env("ENABLE_ENVOY_STATS_TAGS", ok)
            .env("FERRY_STATS_COMPAT", "envoy-only")
            .output()
            .expect("run");
        assert!(out.status.success(), "ENABLE_ENVOY_STATS_TAGS={ok:?}");
    }
}

#[test]
fn bad_tracing_settings_are_start_up_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = write(&dir, "table.yaml", VALID);
    // (arguments, environment, expected words)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 3] = [
        (
            &[
                "--otlp-endpoint",
                "http://127.0.0.1:4317",
                "--trace-sampling",
                "1.5",
            ],
            &[],
            "--trace-sampling 1.5 is not a rate between 0.0 and 1.0",
        ),
        (
            &["--otlp-endpoint", "http://collector:4317/ with spaces"],
            &[],
            "cannot set up the OTLP exporter",
        ),
        (
            &["--otlp-endpoint", "http://127.0.0.1:4317"],
            &[("OTEL_BSP_MAX_QUEUE_SIZE", "lots")],
            "OTEL_BSP_MAX_QUEUE_SIZE=\"lots\" is not a positive whole number",
        ),
    ];
    for (args, env, expected) in cases {
        let out = proxy()
            .arg("--config")
            .arg(&table)
            .args(["--admin-addr", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
