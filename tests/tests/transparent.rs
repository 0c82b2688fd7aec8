//! Transparent interception (issue #9), in real network namespaces with iptables: a client host
//! and a server host joined by a veth pair (TEST-NET addresses 198.51.100.0/24, inside namespaces
//! this test makes). The proxy runs in the client namespace as the ignored UID (1337), after
//! `ferry-proxy init-iptables`; unmodified clients (curl, bash's /dev/tcp) dial services and are
//! routed by the proxy. Needs root (CI is root); otherwise each test says loudly that it skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failures should be loud
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!(
                "SKIPPED: {} needs root for network namespaces and iptables",
                module_path!()
            );
            return;
        }
    };
}

fn run(cmd: &str, args: &[&str]) -> Output {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace (a test host), removed with everything in it when dropped.
struct Host {
    name: String,
    children: Vec<Child>,
}

impl Host {
    fn new(role: &str) -> Host {
        let name = format!(
            "ferry-{role}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        run("ip", &["netns", "add", &name]);
        let h = Host {
            name,
            children: Vec::new(),
        };
        h.exec(&["ip", "link", "set", "lo", "up"]);
        h
    }

    fn exec(&self, cmd: &[&str]) -> Output {
        let mut args = vec!["netns", "exec", &self.name];
        args.extend_from_slice(cmd);
        run("ip", &args)
    }

    /// Runs `cmd` in the namespace, returning stdout even when it fails.
    fn try_exec(&self, cmd: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(cmd)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn spawn(&mut self, cmd: &[&str], log: &std::path::Path) {
        let file = std::fs::File::create(log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(cmd)
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap();
        self.children.push(child);
    }

    /// `curl -s` in this namespace; returns the body (and status with `-w`).
    /// The first line a TCP server at `ip:port` sends, read from this host by bash's /dev/tcp.
    fn first_line_from(&self, ip: &str, port: u16) -> String {
        let script = format!("exec 3<>/dev/tcp/{ip}/{port}; timeout 3 head -1 <&3");
        self.try_exec(&["bash", "-c", &script])
    }

    fn curl(&self, args: &[&str]) -> String {
        let mut all = vec!["curl", "-s", "--max-time", "5"];
        all.extend_from_slice(args);
        self.try_exec(&all)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Joins two hosts with a veth pair: `a` gets `a_ip`, `b` gets each of `b_ips` (all /24).
fn link(a: &Host, a_ip: &str, b: &Host, b_ips: &[&str]) {
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let (va, vb) = (
        format!("fa{}{n}", std::process::id() % 10000),
        format!("fb{}{n}", std::process::id() % 10000),
    );
    run(
        "ip",
        &["link", "add", &va, "type", "veth", "peer", "name", &vb],
    );
    run("ip", &["link", "set", &va, "netns", &a.name]);
    run("ip", &["link", "set", &vb, "netns", &b.name]);
    a.exec(&["ip", "addr", "add", &format!("{a_ip}/24"), "dev", &va]);
    a.exec(&["ip", "link", "set", &va, "up"]);
    for ip in b_ips {
        b.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", &vb]);
    }
    b.exec(&["ip", "link", "set", &vb, "up"]);
}

fn bin(name: &str) -> String {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join(name)
        .display()
        .to_string()
}

/// A directory the proxy's UID (1337) can read and write.
fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// Starts ferry-proxy in `host` as UID 1337 on `table` (admin on 127.0.0.1:9901 there).
fn start_proxy(host: &mut Host, dir: &tempfile::TempDir, table: &str) {
    let config = dir.path().join("table.yaml");
    std::fs::write(&config, table).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let proxy = bin("ferry-proxy");
    let config = config.display().to_string();
    let log = dir.path().join("proxy.log");
    host.spawn(
        &[
            "setpriv",
            "--reuid=1337",
            "--regid=1337",
            "--clear-groups",
            &proxy,
            "--config",
            &config,
        ],
        &log,
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if host.curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://127.0.0.1:9901/ready",
        ]) == "200"
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "proxy not ready: {}",
        std::fs::read_to_string(dir.path().join("proxy.log")).unwrap_or_default()
    );
}

fn start_upstreams(host: &mut Host, dir: &tempfile::TempDir, args: &[&str]) {
    let mut cmd = vec![bin("ferry-test-upstream")];
    cmd.extend(args.iter().map(|s| (*s).to_owned()));
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    host.spawn(&cmd, &dir.path().join("upstreams.log"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::fs::read_to_string(dir.path().join("upstreams.log"))
            .unwrap_or_default()
            .contains("ready")
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("upstreams not ready");
}

fn init_iptables(host: &Host, args: &[&str]) {
    let proxy = bin("ferry-proxy");
    let mut cmd = vec![proxy.as_str(), "init-iptables"];
    cmd.extend_from_slice(args);
    host.exec(&cmd);
}

fn egress_table(policy: &str) -> String {
    format!(
        r#"listeners:
  - name: egress
    address: 0.0.0.0:15001
    originalDst: true
    egressPolicy: {policy}
    egressAllowedHosts: ["*.amazonaws.com"]
    virtualHosts:
      - name: color
        domains: ["color.mesh.local:8080"]
        routes:
          - name: split
            match: {{ prefix: / }}
            action: {{ weightedTargets: [{{ cluster: v1, weight: 50 }}, {{ cluster: v2, weight: 50 }}] }}
clusters:
  - {{ name: v1, staticEndpoints: {{ endpoints: [{{ address: "198.51.100.2:9001" }}] }} }}
  - {{ name: v2, staticEndpoints: {{ endpoints: [{{ address: "198.51.100.2:9002" }}] }} }}
"#
    )
}

fn count(body: &str, upstream: &str) -> usize {
    body.matches(&format!("\"upstream\":\"{upstream}\""))
        .count()
}

#[test]
fn http_egress_is_intercepted_routed_split_and_filtered() {
    require_root!();
    let dir = shared_dir();
    let mut client = Host::new("client");
    let mut server = Host::new("server");
    link(
        &client,
        "198.51.100.1",
        &server,
        &["198.51.100.2", "198.51.100.3", "198.51.100.4"],
    );
    start_upstreams(
        &mut server,
        &dir,
        &[
            "--http",
            "198.51.100.2:9001",
            "v1",
            "--http",
            "198.51.100.2:9002",
            "v2",
            "--http",
            "198.51.100.2:7777",
            "direct",
            "--http",
            "198.51.100.3:8080",
            "ignored-ip",
            // Stand-ins for AWS's APIs, which App Mesh's DROP_ALL lets through.
            "--http",
            "198.51.100.4:8080",
            "aws-http",
            "--tcp",
            "198.51.100.4:443",
            "aws-tls",
        ],
    );
    init_iptables(
        &client,
        &[
            "--ignore-uid",
            "1337",
            "--egress-ignored-ports",
            "9001",
            "--egress-ignored-ip",
            "198.51.100.3",
        ],
    );
    start_proxy(&mut client, &dir, &egress_table("DROP_ALL"));

    // An unmodified client dials the service (nothing listens on :8080 at the server): the proxy
    // routes it by the original port and Host, with the weighted split.
    let urls: Vec<String> = (0..100)
        .map(|_| "http://color.mesh.local:8080/".to_owned())
        .collect();
    let mut args = vec!["--resolve", "color.mesh.local:8080:198.51.100.2"];
    args.extend(urls.iter().map(String::as_str));
    let body = client.curl(&args);
    let (v1, v2) = (count(&body, "v1"), count(&body, "v2"));
    assert_eq!(v1 + v2, 100, "{body}");
    assert!((30..=70).contains(&v1), "50/50 split: v1 {v1}, v2 {v2}");
    assert!(body.contains("x-forwarded-for"), "went through the proxy");

    // Ignored ports and IPs bypass the proxy (no forwarding headers added).
    let direct = client.curl(&["http://198.51.100.2:9001/"]);
    assert!(
        direct.contains("\"upstream\":\"v1\"") && !direct.contains("x-forwarded-for"),
        "{direct}"
    );
    let other = client.curl(&["http://198.51.100.3:8080/"]);
    assert!(
        other.contains("\"upstream\":\"ignored-ip\"") && !other.contains("x-forwarded-for"),
        "{other}"
    );

    // DROP_ALL: a destination the table does not know is refused and counted. On a known HTTP
    // port, an unknown Host gets a 404 that says why; on any other port the connection is closed.
    let refused = client.curl(&[
        "-w",
        " %{http_code}",
        "--resolve",
        "unknown.example:8080:198.51.100.2",
        "http://unknown.example:8080/",
    ]);
    assert!(
        refused.contains("egress filter DROP_ALL") && refused.ends_with(" 404"),
        "{refused}"
    );
    let closed = client.curl(&["-w", "%{http_code}", "http://198.51.100.2:7777/"]);
    assert_eq!(closed, "000", "an unknown port is closed, not answered");
    let metrics = client.curl(&["http://127.0.0.1:9901/stats/prometheus"]);
    assert!(
        metrics.contains("ferry_egress_dropped_total{listener=\"egress\"} 2"),
        "{metrics}"
    );

    // DROP_ALL's exceptions (App Mesh lets *.amazonaws.com through): by Host for HTTP, by the TLS
    // server name (read from the ClientHello, which still reaches the upstream) otherwise.
    let aws = client.curl(&[
        "--resolve",
        "sts.amazonaws.com:8080:198.51.100.4",
        "http://sts.amazonaws.com:8080/",
    ]);
    assert!(
        aws.contains("\"upstream\":\"aws-http\"") && aws.contains("x-forwarded-for"),
        "{aws}"
    );
    let tls = |name: &str| {
        let resolve = format!("{name}:443:198.51.100.4");
        let url = format!("https://{name}/");
        // The stand-in is not a TLS server (it sends a banner): what matters is whether the
        // connection was passed through or closed, which the counters say.
        client.curl(&["-k", "--resolve", &resolve, &url])
    };
    tls("s3.us-west-2.amazonaws.com");
    tls("amazonaws.com.evil.example");
    let metrics = client.curl(&["http://127.0.0.1:9901/stats/prometheus"]);
    for series in [
        "ferry_tcp_connections_total{listener=\"egress\",route=\"passthrough\"} 1",
        "ferry_egress_dropped_total{listener=\"egress\"} 3",
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }

    // Explicit mode: the egress listener also answers connections made to it directly, by Host.
    let explicit = client.curl(&[
        "-H",
        "Host: color.mesh.local:8080",
        "http://127.0.0.1:15001/",
    ]);
    assert!(explicit.contains("\"upstream\":\"v"), "{explicit}");

    // --clean removes the interception: the service port is unreachable again.
    init_iptables(&client, &["--clean"]);
    let after = client.curl(&[
        "-w",
        "%{http_code}",
        "--resolve",
        "color.mesh.local:8080:198.51.100.2",
        "http://color.mesh.local:8080/",
    ]);
    assert_eq!(after, "000", "nothing listens on the service port itself");
}

#[test]
fn allow_all_passes_unknown_http_and_tcp_through_and_tcp_routes_by_port() {
    require_root!();
    let dir = shared_dir();
    let mut client = Host::new("client");
    let mut server = Host::new("server");
    link(&client, "198.51.100.1", &server, &["198.51.100.2"]);
    start_upstreams(
        &mut server,
        &dir,
        &[
            "--http",
            "198.51.100.2:7777",
            "direct",
            "--tcp",
            "198.51.100.2:6432",
            "db",
            "--tcp",
            "198.51.100.2:6433",
            "other",
        ],
    );
    init_iptables(&client, &["--ignore-uid", "1337"]);

    // A TCP egress listener: port 5432 is the database service; anything else passes through.
    let table = r#"listeners:
  - name: egress
    address: 0.0.0.0:15001
    protocol: TCP
    originalDst: true
    egressPolicy: ALLOW_ALL
    tcpRoutes:
      - name: db
        port: 5432
        weightedTargets: [{ cluster: db, weight: 1 }]
clusters:
  - { name: db, protocol: TCP, staticEndpoints: { endpoints: [{ address: "198.51.100.2:6432" }] } }
"#;
    start_proxy(&mut client, &dir, table);
    let banner = |port: u16| client.first_line_from("198.51.100.2", port);
    assert_eq!(banner(5432), "db\n", "the TCP route for the service port");
    let passed = banner(6433);
    let log = std::fs::read_to_string(dir.path().join("proxy.log")).unwrap_or_default();
    assert_eq!(
        passed, "other\n",
        "ALLOW_ALL: an unknown destination passes through; proxy log: {log}"
    );
    let metrics = client.curl(&["http://127.0.0.1:9901/stats/prometheus"]);
    assert!(
        metrics.contains("ferry_tcp_connections_total{listener=\"egress\",route=\"db\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("ferry_tcp_connections_total{listener=\"egress\",route=\"passthrough\"} 1"),
        "{metrics}"
    );

    // App Mesh's egress: one redirected port carries HTTP and TCP. An HTTP listener with a TCP
    // route: HTTP ports (those its virtual hosts name) are parsed as HTTP, the TCP route's port is
    // proxied as TCP, and any other port passes through as TCP untouched, so a server-first
    // protocol (the upstream speaks first, as MySQL or SMTP do) works through ALLOW_ALL.
    let mut client2 = Host::new("client2");
    let mut server2 = Host::new("server2");
    link(&client2, "198.51.100.1", &server2, &["198.51.100.2"]);
    let dir2 = shared_dir();
    start_upstreams(
        &mut server2,
        &dir2,
        &[
            "--http",
            "198.51.100.2:9001",
            "v1",
            "--http",
            "198.51.100.2:8080",
            "external",
            "--tcp",
            "198.51.100.2:6432",
            "db",
            "--tcp",
            "198.51.100.2:6433",
            "other",
        ],
    );
    init_iptables(&client2, &["--ignore-uid", "1337"]);
    let mixed = r#"listeners:
  - name: egress
    address: 0.0.0.0:15001
    originalDst: true
    egressPolicy: ALLOW_ALL
    virtualHosts:
      - name: color
        domains: ["color.mesh.local:8080"]
        routes: [{ name: color, match: { prefix: / }, action: { weightedTargets: [{ cluster: v1, weight: 1 }] } }]
    tcpRoutes:
      - name: db
        port: 5432
        weightedTargets: [{ cluster: db, weight: 1 }]
clusters:
  - { name: v1, staticEndpoints: { endpoints: [{ address: "198.51.100.2:9001" }] } }
  - { name: db, protocol: TCP, staticEndpoints: { endpoints: [{ address: "198.51.100.2:6432" }] } }
"#;
    start_proxy(&mut client2, &dir2, mixed);
    let routed = client2.curl(&[
        "--resolve",
        "color.mesh.local:8080:198.51.100.2",
        "http://color.mesh.local:8080/",
    ]);
    assert!(
        routed.contains("\"upstream\":\"v1\"") && routed.contains("x-forwarded-for"),
        "HTTP routed by port and Host: {routed}"
    );
    let banner2 = |port: u16| client2.first_line_from("198.51.100.2", port);
    assert_eq!(banner2(5432), "db\n", "the TCP route on the HTTP listener");
    assert_eq!(
        banner2(6433),
        "other\n",
        "a server-first protocol on an unknown port passes through as TCP"
    );
    // An unknown host on an HTTP port is passed through as HTTP, to where the client dialled.
    let passed = client2.curl(&[
        "--resolve",
        "external.example:8080:198.51.100.2",
        "http://external.example:8080/somewhere",
    ]);
    assert!(
        passed.contains("\"upstream\":\"external\"") && passed.contains("x-forwarded-for"),
        "{passed}"
    );
    let metrics = client2.curl(&["http://127.0.0.1:9901/stats/prometheus"]);
    for series in [
        "ferry_tcp_connections_total{listener=\"egress\",route=\"db\"} 1",
        "ferry_tcp_connections_total{listener=\"egress\",route=\"passthrough\"} 1",
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }
}

#[test]
fn ingress_redirection_delivers_inbound_traffic_through_the_ingress_listener() {
    require_root!();
    let dir = shared_dir();
    let client = Host::new("client");
    let mut server = Host::new("server");
    link(&client, "198.51.100.1", &server, &["198.51.100.2"]);
    // The app listens on its port; iptables sends inbound traffic for it to the proxy first.
    start_upstreams(&mut server, &dir, &["--http", "0.0.0.0:8080", "app"]);
    init_iptables(&server, &["--ignore-uid", "1337", "--app-ports", "8080"]);
    let table = r#"listeners:
  - name: ingress
    address: 0.0.0.0:15000
    originalDst: true
    virtualHosts:
      - name: app
        domains: ["*"]
        routes: [{ name: app, match: { prefix: / }, action: { weightedTargets: [{ cluster: local-app, weight: 1 }] } }]
clusters:
  - { name: local-app, staticEndpoints: { endpoints: [{ address: "127.0.0.1:8080" }] } }
"#;
    start_proxy(&mut server, &dir, table);
    let body = client.curl(&["http://198.51.100.2:8080/inbound"]);
    assert!(body.contains("\"upstream\":\"app\""), "{body}");
    assert!(
        body.contains("\"x-forwarded-for\":\"198.51.100.1\""),
        "through the ingress listener: {body}"
    );
    let metrics = server.curl(&["http://127.0.0.1:9901/stats/prometheus"]);
    assert!(metrics.contains("ferry_http_downstream_requests_total{code_class=\"2xx\",listener=\"ingress\",route=\"app\"} 1"), "{metrics}");
}
