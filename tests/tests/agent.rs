//! ferry-agent end to end: the real agent serving a directory of App Mesh resources, real proxies
//! following it over gRPC, real upstreams, all on loopback.
//!
//! The mesh: `front` and `tester` both call `color.mesh.local:8080`, a virtual router with a header
//! route (`x-color: green` -> green) and a weighted split between `color-blue` and `color-green`
//! (their DNS names are 127.0.0.1, their ports the upstreams'). Requests go to each proxy's egress
//! listener with `Host: color.mesh.local:8080`, as an app does in explicit mode.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failures should be loud
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry_tests::agent::eventually;
use ferry_tests::{AgentProcess, AgentProxy, Client, Upstream, UpstreamProtocol};

const FRONT: &str = "color-mesh/virtualNode/front";
const TESTER: &str = "color-mesh/virtualNode/tester";
const HOST: &str = "color.mesh.local:8080";

/// The resource directory of the color mesh, edited the way an operator (or a ConfigMap) does:
/// write a temporary file, then rename it over the old one.
struct TestMesh {
    dir: tempfile::TempDir,
    blue: u16,
    green: u16,
    front_app: u16,
}

impl TestMesh {
    fn new(
        blue: &Upstream,
        green: &Upstream,
        front_app: &Upstream,
        weights: (i64, i64),
    ) -> TestMesh {
        let m = TestMesh {
            dir: tempfile::tempdir().unwrap(),
            blue: blue.addr.port(),
            green: green.addr.port(),
            front_app: front_app.addr.port(),
        };
        m.write(
            "mesh.yaml",
            "mesh: { meshName: color-mesh, spec: { egressFilter: { type: DROP_ALL } } }\n",
        );
        m.write("nodes.yaml", &m.nodes(""));
        m.write(
            "router.json",
            r#"{"virtualRouter": {"meshName": "color-mesh", "virtualRouterName": "color-router",
                "spec": {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}]}}}"#,
        );
        m.write(
            "services.yaml",
            "meshName: color-mesh\nvirtualServiceName: color.mesh.local\nspec: { provider: { virtualRouter: { virtualRouterName: color-router } } }\n",
        );
        m.set_weights(weights.0, weights.1);
        m
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, name: &str, contents: &str) {
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, contents).unwrap();
        std::fs::rename(&tmp, self.dir.path().join(name)).unwrap();
    }

    /// The virtual nodes; `front_extra` is added to front's spec (indented YAML).
    fn nodes(&self, front_extra: &str) -> String {
        format!(
            "meshName: color-mesh
virtualNodeName: front
spec:
  listeners: [{{ portMapping: {{ port: {front}, protocol: http }} }}]
  serviceDiscovery: {{ dns: {{ hostname: 127.0.0.1 }} }}
  backends: [{{ virtualService: {{ virtualServiceName: color.mesh.local }} }}]
{front_extra}---
meshName: color-mesh
virtualNodeName: tester
spec:
  backends: [{{ virtualService: {{ virtualServiceName: color.mesh.local }} }}]
---
meshName: color-mesh
virtualNodeName: color-blue
spec:
  listeners: [{{ portMapping: {{ port: {blue}, protocol: http }} }}]
  serviceDiscovery: {{ dns: {{ hostname: 127.0.0.1 }} }}
---
meshName: color-mesh
virtualNodeName: color-green
spec:
  listeners: [{{ portMapping: {{ port: {green}, protocol: http }} }}]
  serviceDiscovery: {{ dns: {{ hostname: 127.0.0.1 }} }}
",
            front = self.front_app,
            blue = self.blue,
            green = self.green,
        )
    }

    fn routes(blue: i64, green: i64) -> String {
        format!(
            "route:
  meshName: color-mesh
  virtualRouterName: color-router
  routeName: color-header
  spec:
    priority: 0
    httpRoute:
      match: {{ prefix: /, headers: [{{ name: x-color, match: {{ exact: green }} }}] }}
      action: {{ weightedTargets: [{{ virtualNode: color-green, weight: 1 }}] }}
---
route:
  meshName: color-mesh
  virtualRouterName: color-router
  routeName: color-split
  spec:
    priority: 10
    httpRoute:
      match: {{ prefix: / }}
      action:
        weightedTargets:
          - {{ virtualNode: color-blue, weight: {blue} }}
          - {{ virtualNode: color-green, weight: {green} }}
"
        )
    }

    fn set_weights(&self, blue: i64, green: i64) {
        self.write("routes.yaml", &Self::routes(blue, green));
    }
}

struct Setup {
    _upstreams: Vec<Upstream>,
    mesh: TestMesh,
    agent: AgentProcess,
    states: tempfile::TempDir,
}

impl Setup {
    /// Upstreams, the mesh with the split route at `weights` (blue, green), and the agent.
    async fn start(weights: (i64, i64)) -> Setup {
        let blue = Upstream::start("blue", UpstreamProtocol::Http1).await;
        let green = Upstream::start("green", UpstreamProtocol::Http1).await;
        let front_app = Upstream::start("front-app", UpstreamProtocol::Http1).await;
        let mesh = TestMesh::new(&blue, &green, &front_app, weights);
        let agent = AgentProcess::start(mesh.path()).await.unwrap();
        let ready = eventually(Duration::from_secs(10), || async {
            (agent.admin_get("/ready").await.ok()?.0 == 200).then_some(())
        })
        .await;
        assert!(ready.is_some(), "agent not ready: {}", agent.stderr());
        Setup {
            _upstreams: vec![blue, green, front_app],
            mesh,
            agent,
            states: tempfile::tempdir().unwrap(),
        }
    }

    fn state_dir(&self, node: &str) -> PathBuf {
        self.states.path().join(node.replace('/', "_"))
    }

    async fn proxy(&self, node: &str) -> AgentProxy {
        AgentProxy::start(&self.agent.url(), node, &self.state_dir(node))
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn an_idle_agent_leaves_its_resource_files_alone_until_they_change() {
    let s = Setup::start((100, 0)).await;
    // Let the first load settle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let files = std::fs::read_dir(s.mesh.path()).unwrap().count();
    let opens = ferry_tests::opens::FileOpens::watch(s.mesh.path(), None);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The agent's safety-net poll (every 10 s) reads each file once; on a slow machine it may
    // fall in this second. Nothing else may read them.
    assert!(
        opens.count() <= files,
        "the agent kept reading its unchanged resources: {} opens of {files} files in 1 s",
        opens.count()
    );

    let before = opens.count();
    let generation0 = s.agent.status().await["generation"].as_u64().unwrap();
    s.mesh.set_weights(0, 100);
    let reread = eventually(Duration::from_secs(5), || async {
        (opens.count() > before).then_some(())
    })
    .await;
    assert!(reread.is_some(), "the change was read");
    let generation = eventually(Duration::from_secs(5), || async {
        let status = s.agent.status().await;
        (status["generation"].as_u64()? > generation0).then_some(())
    })
    .await;
    assert!(generation.is_some(), "{}", s.agent.status().await);
}

/// Which upstream answers a request to `proxy`'s egress for color.mesh.local ("" if the proxy
/// answered itself).
async fn color(client: &Client, egress: &str, headers: &[(&str, &str)]) -> String {
    let mut h = vec![("host", HOST)];
    h.extend_from_slice(headers);
    match client.get_with(&format!("{egress}/"), &h).await {
        Ok(r) => r.upstream(),
        Err(_) => String::new(),
    }
}

/// Counts the colors of `n` requests.
async fn split(client: &Client, egress: &str, n: usize) -> (usize, usize) {
    let (mut blue, mut green) = (0, 0);
    for _ in 0..n {
        match color(client, egress, &[]).await.as_str() {
            "blue" => blue += 1,
            "green" => green += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    (blue, green)
}

/// Time from `t0` until `proxy` routes to `want`.
async fn until_color(client: &Client, egress: &str, want: &str, t0: Instant) -> Duration {
    loop {
        if color(client, egress, &[]).await == want {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{egress} never routed to {want}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn proxy_state(agent: &AgentProcess, node: &str) -> String {
    agent
        .proxy(node)
        .await
        .map(|p| p["state"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

async fn wait_state(agent: &AgentProcess, node: &str, state: &str) -> serde_json::Value {
    let found = eventually(Duration::from_secs(15), || async {
        let p = agent.proxy(node).await?;
        (p["state"] == state).then_some(p)
    })
    .await;
    match found {
        Some(p) => p,
        None => panic!(
            "{node} never {state}: {:?}\nagent: {}",
            agent.proxy(node).await,
            agent.stderr()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_split_follows_the_route_and_edits_reach_every_proxy_within_a_second() {
    let s = Setup::start((90, 10)).await;
    let front = s.proxy(FRONT).await;
    let tester = s.proxy(TESTER).await;
    let client = Client::http1();
    let egress = [front.url("egress").await, tester.url("egress").await];

    // 90/10, on both proxies.
    for e in &egress {
        let (blue, green) = split(&client, e, 400).await;
        let share = green as f64 / 400.0;
        assert!(
            (0.04..=0.18).contains(&share),
            "{e}: blue {blue}, green {green}"
        );
    }
    // The header route wins over the split.
    for e in &egress {
        for _ in 0..20 {
            assert_eq!(color(&client, e, &[("x-color", "green")]).await, "green");
        }
    }
    // The inbound listener leads to the local app (127.0.0.1:<front's listener port>).
    let ingress = front.url("ingress").await;
    let r = client.get(&format!("{ingress}/hello")).await.unwrap();
    assert_eq!(r.upstream(), "front-app");
    // A name the node has no backend for gets 404 from the proxy (DROP_ALL, no route).
    let r = client
        .get_with(&format!("{}/", egress[0]), &[("host", "other.mesh.local")])
        .await
        .unwrap();
    assert_eq!(r.status, 404);

    // Propagation: each edit of the route file flips every proxy to the other color.
    let mut samples = Vec::new();
    for i in 0..20 {
        let (b, g, want) = if i % 2 == 0 {
            (0, 100, "green")
        } else {
            (100, 0, "blue")
        };
        let t0 = Instant::now();
        s.mesh.set_weights(b, g);
        let (a, c) = tokio::join!(
            until_color(&client, &egress[0], want, t0),
            until_color(&client, &egress[1], want, t0)
        );
        samples.push(a.max(c));
        // Let a moment pass so that edits are distinct events.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    samples.sort();
    let pct =
        |p: f64| samples[((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1];
    eprintln!(
        "propagation (route file renamed -> both proxies route by the new weights), {} edits: min {:?}, p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        samples.len(),
        samples[0],
        pct(0.5),
        pct(0.9),
        pct(0.99),
        samples[samples.len() - 1]
    );
    assert!(
        pct(0.99) < Duration::from_secs(1),
        "p99 {:?}: {samples:?}",
        pct(0.99)
    );

    // Both proxies run the agent's latest table; each got exactly one snapshot per change.
    let f = wait_state(&s.agent, FRONT, "IN_SYNC").await;
    let t = wait_state(&s.agent, TESTER, "IN_SYNC").await;
    assert_eq!(f["serving_version"], front.version().await.as_str());
    assert_eq!(t["serving_version"], tester.version().await.as_str());
    assert_eq!(f["snapshots_sent"], 21, "{f}");
    assert_eq!(f["acks"], 21, "{f}");
    assert_eq!(f["nacks"], 0, "{f}");
    let metrics = s.agent.metrics().await;
    assert!(
        metrics.contains("ferry_agent_connected_proxies 2"),
        "{metrics}"
    );
    assert!(metrics.contains("ferry_agent_acks_total 42"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_edit_is_rejected_at_the_agent_and_changes_nothing() {
    let s = Setup::start((100, 0)).await;
    let front = s.proxy(FRONT).await;
    let tester = s.proxy(TESTER).await;
    let client = Client::http1();
    let egress = [front.url("egress").await, tester.url("egress").await];
    for e in &egress {
        until_color(&client, e, "blue", Instant::now()).await;
    }
    let versions = [front.version().await, tester.version().await];

    // Weight 150: App Mesh's API refuses it, and so does the agent, naming file, resource, field.
    s.mesh.write("routes.yaml", &TestMesh::routes(150, 0));
    let rejected = eventually(Duration::from_secs(5), || async {
        s.agent.status().await["last_rejected"]
            .as_str()
            .map(str::to_owned)
    })
    .await
    .expect("the agent reports the rejection");
    let routes = s.mesh.path().join("routes.yaml").display().to_string();
    assert!(rejected.starts_with(&format!("{routes}:21:")), "{rejected}");
    assert!(
        rejected.ends_with(": route color-split (mesh color-mesh, virtualRouter color-router): spec.httpRoute.action.weightedTargets[0].weight: 150 is out of range 0..100"),
        "{rejected}"
    );
    // Nothing reaches the proxies: no snapshot, no NACK, the same versions, the same routing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!([front.version().await, tester.version().await], versions);
    for node in [FRONT, TESTER] {
        let p = s.agent.proxy(node).await.unwrap();
        assert_eq!(p["state"], "IN_SYNC", "{p}");
        assert_eq!(p["nacks"], 0, "{p}");
        assert_eq!(p["snapshots_sent"], 1, "{p}");
    }
    for e in &egress {
        let (blue, green) = split(&client, e, 20).await;
        assert_eq!((blue, green), (20, 0));
    }
    assert!(
        s.agent
            .metrics()
            .await
            .contains("ferry_agent_resource_reloads_total{result=\"rejected\"} 1")
    );
    assert_eq!(s.agent.admin_get("/ready").await.unwrap().0, 200);

    // The next valid edit goes through.
    s.mesh.set_weights(0, 100);
    for e in &egress {
        until_color(&client, e, "green", Instant::now()).await;
    }
    assert!(s.agent.status().await["last_rejected"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_the_proxy_cannot_use_is_nacked_and_shown_in_proxies() {
    let s = Setup::start((100, 0)).await;
    let front = s.proxy(FRONT).await;
    let tester = s.proxy(TESTER).await;
    let client = Client::http1();
    let egress = front.url("egress").await;
    let served = front.version().await;

    // Valid App Mesh, but front's proxy cannot read the CA bundle the client policy names.
    s.mesh.write(
        "nodes.yaml",
        &s.mesh.nodes(
            "  backendDefaults:\n    clientPolicy:\n      tls:\n        validation: { trust: { file: { certificateChain: /nonexistent/ca.pem } } }\n",
        ),
    );
    let p = wait_state(&s.agent, FRONT, "NACKED").await;
    let error = p["last_nack"]["error"].as_str().unwrap();
    assert!(
        error.starts_with("clusters[") && error.contains(".tls: /nonexistent/ca.pem: cannot read"),
        "{p}"
    );
    assert_eq!(p["serving_version"], served.as_str(), "{p}");
    assert_ne!(p["latest_version"], served.as_str(), "{p}");
    assert_eq!(p["last_nack"]["nonce"], p["last_sent"]["nonce"], "{p}");
    // front keeps serving its previous table.
    assert_eq!(front.version().await, served);
    assert_eq!(color(&client, &egress, &[]).await, "blue");
    assert!(
        front
            .metrics()
            .await
            .contains("ferry_agent_snapshots_total{result=\"nack\"} 1")
    );
    // tester's table did not change, so it got nothing and stays in sync.
    let t = s.agent.proxy(TESTER).await.unwrap();
    assert_eq!(
        (t["state"].as_str(), t["snapshots_sent"].as_u64()),
        (Some("IN_SYNC"), Some(1)),
        "{t}"
    );
    assert!(
        s.agent
            .metrics()
            .await
            .contains("ferry_agent_nacks_total 1")
    );

    // Fixing the resources brings front back in sync.
    s.mesh.write("nodes.yaml", &s.mesh.nodes(""));
    let p = wait_state(&s.agent, FRONT, "IN_SYNC").await;
    assert_eq!(p["serving_version"], served.as_str());
    drop(tester);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_agent_leaves_proxies_serving_and_restarting_it_resyncs_them() {
    let mut s = Setup::start((100, 0)).await;
    let front = s.proxy(FRONT).await;
    let tester = s.proxy(TESTER).await;
    let client = Client::http1();
    let egress = [front.url("egress").await, tester.url("egress").await];
    for e in &egress {
        until_color(&client, e, "blue", Instant::now()).await;
    }
    let grpc = s.agent.grpc;
    s.agent.kill();

    // The proxies notice, and keep serving.
    for p in [&front, &tester] {
        let gone = eventually(Duration::from_secs(10), || async {
            p.metrics()
                .await
                .contains("ferry_agent_connected 0")
                .then_some(())
        })
        .await;
        assert!(gone.is_some(), "{} still connected", p.node);
    }
    for e in &egress {
        assert_eq!(split(&client, e, 50).await, (50, 0));
    }

    // An edit made while the agent is down reaches them when it is back.
    s.mesh.set_weights(0, 100);
    s.agent = AgentProcess::start_on(s.mesh.path(), grpc).await.unwrap();
    let t0 = Instant::now();
    for e in &egress {
        until_color(&client, e, "green", t0).await;
    }
    eprintln!("resync after the agent restart: {:?}", t0.elapsed());
    for node in [FRONT, TESTER] {
        wait_state(&s.agent, node, "IN_SYNC").await;
    }
    assert_eq!(s.agent.proxies().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_restarted_while_the_agent_is_down_serves_from_its_state_dir() {
    let mut s = Setup::start((100, 0)).await;
    let mut front = s.proxy(FRONT).await;
    let client = Client::http1();
    until_color(&client, &front.url("egress").await, "blue", Instant::now()).await;
    let version = front.version().await;
    let saved = s.state_dir(FRONT).join("last-accepted-table.json");
    let text = std::fs::read_to_string(&saved).expect("the accepted table is saved");
    assert!(text.contains(&version));

    let grpc = s.agent.grpc;
    s.agent.kill();
    front.kill();

    // Back up with no agent: it serves the saved table at once.
    let front = s.proxy(FRONT).await;
    assert_eq!(front.version().await, version);
    let egress = front.url("egress").await;
    assert_eq!(split(&client, &egress, 20).await, (20, 0));
    let r = client
        .get(&format!("{}/x", front.url("ingress").await))
        .await
        .unwrap();
    assert_eq!(r.upstream(), "front-app");

    // When the agent is back, the proxy says what it serves, and the agent sends nothing new.
    s.agent = AgentProcess::start_on(s.mesh.path(), grpc).await.unwrap();
    let p = wait_state(&s.agent, FRONT, "IN_SYNC").await;
    assert_eq!(p["serving_version"], version.as_str());
    assert_eq!(p["snapshots_sent"], 0, "{p}");
    assert_eq!(proxy_state(&s.agent, FRONT).await, "IN_SYNC");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_node_is_shown_with_the_reason_and_served_once_it_exists() {
    let s = Setup::start((90, 10)).await;
    let node = "color-mesh/virtualNode/late";
    // Not ready (no table), so start it by hand rather than waiting.
    let state = s.state_dir(node);
    let url = s.agent.url();
    let start = tokio::spawn(async move { AgentProxy::start(&url, node, &state).await });
    let p = wait_state(&s.agent, node, "NO_TABLE").await;
    assert_eq!(
        p["error"],
        "color-mesh/virtualNode/late: there is no virtualNode \"late\" in mesh color-mesh"
    );
    s.mesh.write(
        "late.yaml",
        "meshName: color-mesh\nvirtualNodeName: late\nspec: { backends: [{ virtualService: { virtualServiceName: color.mesh.local } }] }\n",
    );
    let late = start.await.unwrap().unwrap();
    let client = Client::http1();
    let c = color(&client, &late.url("egress").await, &[("x-color", "green")]).await;
    assert_eq!(c, "green");
    wait_state(&s.agent, node, "IN_SYNC").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_stops_on_sigterm_and_its_proxies_keep_serving() {
    let mut s = Setup::start((100, 0)).await;
    let front = s.proxy(FRONT).await;
    let client = Client::http1();
    let egress = front.url("egress").await;
    until_color(&client, &egress, "blue", Instant::now()).await;
    let t0 = Instant::now();
    let status = s.agent.sigterm(Duration::from_secs(10)).await.unwrap();
    assert!(status.success(), "{status}: {}", s.agent.stderr());
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(split(&client, &egress, 20).await, (20, 0));
}

/// A port nobody listens on now (for listeners whose port is part of the resources).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_gateway_routes_in_two_hops_with_app_mesh_rewrites() {
    let s = Setup::start((100, 0)).await;
    let gw_port = free_port();
    let egress_port = free_port();
    s.mesh.write(
        "gateway.yaml",
        &format!(
            "meshName: color-mesh
virtualGatewayName: gw
spec:
  listeners: [{{ portMapping: {{ port: {gw_port}, protocol: http }} }}]
---
meshName: color-mesh
virtualGatewayName: gw
gatewayRouteName: colors
spec:
  httpRoute:
    match: {{ prefix: /color }}
    action: {{ target: {{ virtualService: {{ virtualServiceName: color.mesh.local }} }} }}
---
meshName: color-mesh
virtualGatewayName: gw
gatewayRouteName: kept
spec:
  priority: 0
  httpRoute:
    match: {{ prefix: /keep/, headers: [{{ name: x-color, match: {{ exact: green }} }}] }}
    action:
      target: {{ virtualService: {{ virtualServiceName: color.mesh.local }} }}
      rewrite: {{ prefix: {{ defaultPrefix: DISABLED }} }}
"
        ),
    );
    let node = "color-mesh/virtualGateway/gw";
    let gw = AgentProxy::start_with_ports(&s.agent.url(), node, &s.state_dir(node), 0, egress_port)
        .await
        .unwrap();
    let client = Client::http1();
    // First hop: prefix /color becomes /, Host becomes the service; second hop: the service's
    // router (color-split: all blue).
    let r = client
        .get(&format!("http://127.0.0.1:{gw_port}/color/hello"))
        .await
        .unwrap();
    assert_eq!(r.upstream(), "blue", "{}", r.body);
    assert_eq!(r.json()["path"], "/hello");
    assert_eq!(r.seen_header("host").as_deref(), Some("color.mesh.local"));
    // The service's header route still applies on the second hop; this route keeps its prefix.
    let r = client
        .get_with(
            &format!("http://127.0.0.1:{gw_port}/keep/x"),
            &[("x-color", "green")],
        )
        .await
        .unwrap();
    assert_eq!(r.upstream(), "green", "{}", r.body);
    assert_eq!(r.json()["path"], "/keep/x");
    // No gateway route: 404 from the gateway itself.
    let r = client
        .get(&format!("http://127.0.0.1:{gw_port}/other"))
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    wait_state(&s.agent, node, "IN_SYNC").await;
    drop(gw);
}
