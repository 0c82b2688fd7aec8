//! The App Mesh API of ferry-agent, driven by the real clients App Mesh users have: boto3 and the
//! AWS CLI, installed from PyPI into a virtualenv (`scripts/test.sh` makes it: `target/pyvenv`,
//! or `FERRY_PYVENV`). The Python side is `tests/appmesh_api/steps.py`; each step asserts what the
//! API answers, and this side checks what the agent does with it: the proxy it feeds, the files
//! it writes, what survives a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failures should be loud
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ferry_tests::agent::{agent_bin, eventually};
use ferry_tests::{AgentProcess, AgentProxy, Client, Upstream, UpstreamProtocol};

const HOST: &str = "color.mesh.local:8080";
const KEY_ID: &str = "AKIDFERRYTEST";
const SECRET: &str = "ferry-test-secret";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The virtualenv with boto3 and awscli. Missing under CI (`CI` set) is a failure; locally the
/// test says so loudly and passes without running.
fn venv() -> Option<PathBuf> {
    let dir = std::env::var_os("FERRY_PYVENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/pyvenv"));
    if dir.join("bin/python").exists() && dir.join("bin/aws").exists() {
        return Some(dir);
    }
    let why = format!(
        "no virtualenv with boto3 and awscli at {} (scripts/test.sh makes it: python3 -m venv {0} && {0}/bin/pip install boto3 awscli)",
        dir.display()
    );
    assert!(std::env::var_os("CI").is_none(), "{why}");
    eprintln!("SKIPPED (not under CI): {why}");
    None
}

struct Py {
    venv: PathBuf,
}

impl Py {
    /// Runs a step of steps.py; its failure fails the test with the Python traceback.
    fn step(&self, agent: &AgentProcess, args: &[&str]) -> serde_json::Value {
        let script = workspace().join("tests/appmesh_api/steps.py");
        let out = Command::new(self.venv.join("bin/python"))
            .arg(&script)
            .arg(args[0])
            .arg(format!("http://{}", agent.api))
            .args(&args[1..])
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "steps.py {args:?} failed:\n{}{stdout}\nagent log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            agent.stderr()
        );
        stdout
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or_default()
    }

    /// `aws appmesh ARGS... --endpoint-url` with the given credentials: (success, stdout, stderr).
    fn aws(&self, agent: &AgentProcess, secret: &str, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(self.venv.join("bin/aws"))
            .arg("appmesh")
            .args(args)
            .args(["--endpoint-url", &format!("http://{}", agent.api)])
            .args(["--region", "us-west-2", "--output", "json"])
            .env("AWS_ACCESS_KEY_ID", KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_MAX_ATTEMPTS", "1")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn aws_json(&self, agent: &AgentProcess, args: &[&str]) -> serde_json::Value {
        let (ok, out, err) = self.aws(agent, SECRET, args);
        assert!(ok, "aws appmesh {args:?} failed: {err}");
        serde_json::from_str(&out).unwrap()
    }
}

/// `ferry-agent validate DIR`: (success, output).
fn validate(dir: &Path) -> (bool, String) {
    let out = Command::new(agent_bin())
        .arg("validate")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

async fn start_agent(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> AgentProcess {
    AgentProcess::start_with(dir, "127.0.0.1:0".parse().unwrap(), args, env)
        .await
        .unwrap()
}

/// Which upstream answers `n` requests to color.mesh.local through `egress`: (blue, green).
async fn split(client: &Client, egress: &str, n: usize) -> (usize, usize) {
    let (mut blue, mut green) = (0, 0);
    for _ in 0..n {
        let r = client
            .get_with(&format!("{egress}/"), &[("host", HOST)])
            .await
            .unwrap();
        match r.upstream().as_str() {
            "blue" => blue += 1,
            "green" => green += 1,
            other => panic!("unexpected answer from {other:?}: {r:?}"),
        }
    }
    (blue, green)
}

/// The issue's walk-through: boto3 builds the mesh, a proxy fed by the agent routes by it, an
/// update reaches the proxy, the AWS CLI reads it, and the files pass `ferry-agent validate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_builds_a_mesh_that_a_proxy_follows() {
    let Some(venv) = venv() else { return };
    let py = Py { venv };
    let blue = Upstream::start("blue", UpstreamProtocol::Http1).await;
    let green = Upstream::start("green", UpstreamProtocol::Http1).await;
    let dir = tempfile::tempdir().unwrap();
    let mut agent = start_agent(dir.path(), &["--allow-unauthenticated"], &[]).await;

    py.step(
        &agent,
        &[
            "build",
            &blue.addr.port().to_string(),
            &green.addr.port().to_string(),
        ],
    );
    // The layout the README documents, and files the agent's own validator accepts.
    for f in [
        "color-mesh/mesh.json",
        "color-mesh/virtualNodes/color-blue.json",
        "color-mesh/virtualRouters/color-router.json",
        "color-mesh/virtualRouters/color-router/routes/color-split.json",
        "color-mesh/virtualServices/color.mesh.local.json",
        "color-mesh/virtualGateways/ingress-gw.json",
        "color-mesh/virtualGateways/ingress-gw/gatewayRoutes/to-color.json",
    ] {
        assert!(dir.path().join(f).is_file(), "{f} missing");
    }
    assert!(
        !dir.path()
            .join("color-mesh/virtualNodes/spare.json")
            .exists()
    );
    let (ok, out) = validate(dir.path());
    assert!(ok, "{out}");
    let metrics = agent.metrics().await;
    for series in [
        r#"ferry_agent_api_requests_total{operation="CreateRoute",result="ok"} 1"#,
        r#"ferry_agent_api_requests_total{operation="UpdateRoute",result="BadRequestException"} 1"#,
        r#"ferry_agent_api_requests_total{operation="DeleteVirtualNode",result="ResourceInUseException"} 1"#,
        r#"ferry_agent_api_requests_total{operation="ListVirtualNodes",result="ok"} 6"#,
    ] {
        assert!(metrics.contains(series), "{series} not in\n{metrics}");
    }

    // A proxy for `front` routes 50/50 to the real upstreams.
    let states = tempfile::tempdir().unwrap();
    let front = AgentProxy::start(&agent.url(), "color-mesh/virtualNode/front", states.path())
        .await
        .unwrap();
    let egress = front.url("egress").await;
    let client = Client::http1();
    let (b, g) = split(&client, &egress, 60).await;
    assert!(b > 5 && g > 5, "50/50 gave blue {b}, green {g}");

    // boto3 moves everything to green; the proxy follows.
    py.step(&agent, &["weights", "0", "100", "2"]);
    let moved = eventually(Duration::from_secs(10), || {
        let (client, egress) = (&client, &egress);
        async move { (split(client, egress, 5).await.0 == 0).then_some(()) }
    })
    .await;
    assert!(
        moved.is_some(),
        "the proxy did not follow: {}",
        front.stderr()
    );
    assert_eq!(split(&client, &egress, 40).await, (0, 40));

    // The AWS CLI against the agent, and its describe output as a dump the agent serves.
    let meshes = py.aws_json(&agent, &["list-meshes"]);
    assert_eq!(meshes["meshes"][0]["meshName"], "color-mesh", "{meshes}");
    assert_eq!(meshes["meshes"][0]["version"], 1, "{meshes}");
    let dump = tempfile::tempdir().unwrap();
    let nodes = py.aws_json(&agent, &["list-virtual-nodes", "--mesh-name", "color-mesh"]);
    let names: Vec<&str> = nodes["virtualNodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["virtualNodeName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["color-blue", "color-green", "front"]);
    let mut dumps: Vec<(String, Vec<&str>)> = vec![
        ("mesh.json".into(), vec!["describe-mesh"]),
        (
            "router.json".into(),
            vec![
                "describe-virtual-router",
                "--virtual-router-name",
                "color-router",
            ],
        ),
        (
            "route.json".into(),
            vec![
                "describe-route",
                "--virtual-router-name",
                "color-router",
                "--route-name",
                "color-split",
            ],
        ),
        (
            "service.json".into(),
            vec![
                "describe-virtual-service",
                "--virtual-service-name",
                "color.mesh.local",
            ],
        ),
    ];
    for n in &names {
        dumps.push((
            format!("node-{n}.json"),
            vec!["describe-virtual-node", "--virtual-node-name", n],
        ));
    }
    for (file, mut args) in dumps {
        args.extend(["--mesh-name", "color-mesh"]);
        let (ok, out, err) = py.aws(&agent, SECRET, &args);
        assert!(ok, "aws appmesh {args:?}: {err}");
        std::fs::write(dump.path().join(file), out).unwrap();
    }
    let (ok, out) = validate(dump.path());
    assert!(ok, "the AWS CLI's describe output is not accepted: {out}");
    let route: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dump.path().join("route.json")).unwrap())
            .unwrap();
    assert_eq!(route["route"]["metadata"]["version"], 2, "{route}");

    // Metadata lives in the files: a restarted agent answers the same.
    let before = py.step(&agent, &["describe-route"]);
    assert_eq!(before["version"], 2, "{before}");
    agent.kill();
    let agent = start_agent(dir.path(), &["--allow-unauthenticated"], &[]).await;
    let after = py.step(&agent, &["describe-route"]);
    assert_eq!(before, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigv4_signatures_are_verified_with_the_configured_key() {
    let Some(venv) = venv() else { return };
    let py = Py { venv };
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join(".secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let agent = start_agent(
        dir.path(),
        &[
            "--api-access-key-id",
            KEY_ID,
            "--api-secret-access-key-file",
            secret_file.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    py.step(&agent, &["auth", KEY_ID, SECRET]);
    let meshes = py.aws_json(&agent, &["list-meshes"]);
    assert_eq!(meshes["meshes"][0]["meshName"], "signed", "{meshes}");
    let (ok, _, err) = py.aws(&agent, "not-the-secret", &["list-meshes"]);
    assert!(
        !ok && err.contains("InvalidSignatureException"),
        "a wrong secret must be refused: {err}"
    );

    // The secret from the environment works the same.
    let dir = tempfile::tempdir().unwrap();
    let agent = start_agent(
        dir.path(),
        &["--api-access-key-id", KEY_ID],
        &[("FERRY_API_SECRET_ACCESS_KEY", SECRET)],
    )
    .await;
    py.step(&agent, &["auth", KEY_ID, SECRET]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_refused_without_a_key_or_allow_unauthenticated() {
    let Some(venv) = venv() else { return };
    let py = Py { venv };
    let dir = tempfile::tempdir().unwrap();
    let agent = start_agent(dir.path(), &[], &[]).await;
    py.step(&agent, &["no-auth"]);
    let (ok, _, err) = py.aws(&agent, SECRET, &["create-mesh", "--mesh-name", "m"]);
    assert!(!ok && err.contains("ForbiddenException"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

const NODES_YAML: &str = "# hand-written: the nodes of the color mesh
meshName: color-mesh
virtualNodeName: color-blue
spec:
  listeners: [{ portMapping: { port: 8080, protocol: http } }]
  serviceDiscovery: { dns: { hostname: 127.0.0.1 } }
---
# kept as written
meshName: color-mesh
virtualNodeName: color-green
spec:
  listeners: [{ portMapping: { port: 8081, protocol: http } }]
  serviceDiscovery: { dns: { hostname: 127.0.0.1 } }
---
meshName: color-mesh
virtualNodeName: unused
spec: {}
";

/// Hand-written files (several resources per file, YAML and JSON) are changed in place; writers
/// running at once lose nothing; a stale `If-Match` is refused; client tokens make creates
/// idempotent; the per-mesh limit holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_written_files_and_concurrent_writers() {
    let Some(venv) = venv() else { return };
    let py = Py { venv };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("mesh.yaml"),
        "mesh: { meshName: color-mesh, spec: {} }\n",
    )
    .unwrap();
    std::fs::write(d.join("nodes.yaml"), NODES_YAML).unwrap();
    std::fs::write(
        d.join("router.json"),
        r#"[{"virtualRouter": {"meshName": "color-mesh", "virtualRouterName": "color-router",
             "spec": {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}]}}},
            {"meshName": "color-mesh", "virtualRouterName": "color-router", "routeName": "color-split",
             "spec": {"httpRoute": {"match": {"prefix": "/"}, "action": {"weightedTargets": [
               {"virtualNode": "color-blue", "weight": 1}]}}}}]"#,
    )
    .unwrap();
    // 5 resources; the limit lets the step create a few and then refuses.
    let agent = start_agent(
        d,
        &[
            "--allow-unauthenticated",
            "--api-max-resources-per-mesh",
            "9",
        ],
        &[],
    )
    .await;
    let out = py.step(&agent, &["concurrency", "9"]);

    // The route stayed in router.json, beside its router, with every update counted.
    let router: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("router.json")).unwrap()).unwrap();
    assert_eq!(
        router[0]["virtualRouter"]["virtualRouterName"],
        "color-router"
    );
    assert_eq!(
        router[1]["route"]["metadata"]["version"], out["version"],
        "{router}"
    );
    assert!(!d.join("color-mesh/virtualRouters").exists());
    // nodes.yaml: color-blue rewritten in place, color-green's document untouched, unused gone.
    let nodes = std::fs::read_to_string(d.join("nodes.yaml")).unwrap();
    let green_doc = NODES_YAML.split("---\n").nth(1).unwrap();
    assert!(nodes.contains(green_doc), "{nodes}");
    assert!(
        nodes.contains("9999") && !nodes.contains("unused"),
        "{nodes}"
    );
    assert!(d.join("color-mesh/virtualNodes/twice.json").is_file());
    let (ok, out) = validate(d);
    assert!(ok, "{out}");
}
