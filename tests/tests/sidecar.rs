//! The sidecar's deployment files in `docker/`: the ECS task definition, the Kubernetes manifests
//! and the compose demo. No container engine runs here, so each file is read as its platform would
//! read it, and the proxy is started with exactly the environment the file gives its proxy
//! container (only ports changed, so tests can run side by side): it must accept it, report
//! PRE_INITIALIZING to App Mesh's health check until the agent's table arrives, then LIVE.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry_tests::agent::{AgentProcess, agent_bin};
use ferry_tests::proxy::proxy_bin;
use serde_json::Value;

/// App Mesh's documented health check for the Envoy container (ECS and Kubernetes).
const APP_MESH_HEALTH_CHECK: &str =
    "curl -s http://localhost:9901/server_info | grep state | grep -q LIVE";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A proxy started with nothing but `env` (and `--admin-address-path`, to learn the port).
struct Sidecar {
    child: Child,
    admin: SocketAddr,
    dir: tempfile::TempDir,
}

impl Sidecar {
    async fn start(env: &BTreeMap<String, String>) -> Sidecar {
        let dir = tempfile::tempdir().unwrap();
        let admin_file = dir.path().join("admin.addr");
        let child = Command::new(proxy_bin())
            .env_clear()
            .envs(env)
            .arg("--admin-address-path")
            .arg(&admin_file)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        let mut s = Sidecar {
            child,
            admin: "127.0.0.1:0".parse().unwrap(),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = s.child.try_wait().unwrap() {
                panic!("ferry-proxy exited ({status}): {}", s.stderr());
            }
            if let Ok(a) = std::fs::read_to_string(&admin_file)
                && let Ok(addr) = a.trim().parse::<SocketAddr>()
            {
                s.admin = SocketAddr::from(([127, 0, 0, 1], addr.port()));
                return s;
            }
            assert!(Instant::now() < deadline, "no admin: {}", s.stderr());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Runs `command` (a health check written for port 9901) against this proxy's admin port.
    fn health_check(&self, command: &str) -> bool {
        let command = command.replace(":9901", &format!(":{}", self.admin.port()));
        Command::new("sh")
            .args(["-c", &command])
            .status()
            .unwrap()
            .success()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The proxy container's environment from a deployment file, pointed at a local agent on
/// `grpc_port`, with the ports a shared test machine needs.
fn local_env(mut env: BTreeMap<String, String>, grpc_port: u16) -> BTreeMap<String, String> {
    for name in [
        "APPMESH_RESOURCE_ARN",
        "FERRY_AGENT_URL",
        "ENVOY_ADMIN_ACCESS_PORT",
    ] {
        assert!(env.contains_key(name), "the proxy container sets {name}");
    }
    env.insert(
        "FERRY_AGENT_URL".into(),
        format!("http://127.0.0.1:{grpc_port}"),
    );
    env.insert("ENVOY_ADMIN_ACCESS_PORT".into(), "0".into());
    env.insert("APPMESH_ENVOY_INGRESS_PORT".into(), "0".into());
    env.insert("APPMESH_ENVOY_EGRESS_PORT".into(), "0".into());
    // A state directory from the file would be a path inside the container.
    env.remove("FERRY_STATE_DIR");
    env
}

/// Starts the proxy on `env` before its agent: the health check fails until the agent serving
/// `resources` is up and the table has arrived, then passes; the agent knows the proxy by the ARN.
async fn sidecar_goes_live_once_the_table_arrives(
    env: BTreeMap<String, String>,
    health_check: &str,
    resources: &Path,
) {
    let grpc_port = free_port();
    let arn = env["APPMESH_RESOURCE_ARN"].clone();
    let proxy = Sidecar::start(&local_env(env, grpc_port)).await;
    let (_, info) =
        ferry_tests::proxy::admin_request(proxy.admin, http::Method::GET, "/server_info")
            .await
            .unwrap();
    assert!(info.contains("\"state\": \"PRE_INITIALIZING\""), "{info}");
    assert!(
        !proxy.health_check(health_check),
        "the health check must fail while the proxy has no table"
    );

    let grpc: SocketAddr = format!("127.0.0.1:{grpc_port}").parse().unwrap();
    let agent = AgentProcess::start_on(resources, grpc).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !proxy.health_check(health_check) {
        assert!(
            Instant::now() < deadline,
            "not LIVE after the agent started: {}\nagent: {}",
            proxy.stderr(),
            agent.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let node = arn.split_once(":mesh/").unwrap().1;
    let status = agent.proxy(node).await.expect("the agent knows the proxy");
    assert_eq!(status["state"], "IN_SYNC", "{status}");
}

fn env_list(list: &Value) -> BTreeMap<String, String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ecs_task_definition_for_the_app_mesh_image_runs_with_only_the_image_changed() {
    let path = repo().join("docker/ecs/task-definition.json");
    let task: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let proxy_config = &task["proxyConfiguration"];
    assert_eq!(proxy_config["type"], "APPMESH");
    let property = |name: &str| {
        proxy_config["properties"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["value"].as_str())
            .unwrap_or_else(|| panic!("proxyConfiguration has no {name}"))
            .to_owned()
    };
    let containers = task["containerDefinitions"].as_array().unwrap();
    let proxy = containers
        .iter()
        .find(|c| c["name"] == proxy_config["containerName"])
        .expect("the proxyConfiguration's container");
    // The interception skips the proxy's own traffic only if it runs as the ignored UID.
    assert_eq!(
        proxy["user"].as_str(),
        Some(property("IgnoredUID").as_str())
    );
    assert_eq!(property("ProxyIngressPort"), "15000");
    assert_eq!(property("ProxyEgressPort"), "15001");
    let app_ports = property("AppPorts");
    assert!(containers.iter().any(|c| {
        c["portMappings"].as_array().is_some_and(|m| {
            m.iter()
                .any(|p| p["containerPort"].as_u64() == app_ports.parse().ok())
        })
    }));
    let check = proxy["healthCheck"]["command"].as_array().unwrap();
    assert_eq!(check[0], "CMD-SHELL");
    assert_eq!(check[1], APP_MESH_HEALTH_CHECK);
    assert!(
        containers
            .iter()
            .any(|c| c["dependsOn"][0]["condition"] == "HEALTHY"),
        "the app waits for the proxy"
    );

    sidecar_goes_live_once_the_table_arrives(
        env_list(&proxy["environment"]),
        APP_MESH_HEALTH_CHECK,
        &repo().join("examples/mesh/resources"),
    )
    .await;
}

/// Kubernetes objects by kind and name.
fn k8s_objects() -> BTreeMap<(String, String), Value> {
    let mut out = BTreeMap::new();
    for file in ["agent.yaml", "color.yaml"] {
        for doc in yaml_docs(&repo().join("docker/k8s").join(file)) {
            let kind = doc["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{file}: {doc}"));
            assert!(doc["apiVersion"].is_string(), "{file}: {doc}");
            let name = doc["metadata"]["name"].as_str().unwrap().to_owned();
            out.insert((kind.to_owned(), name), doc);
        }
    }
    out
}

fn container<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_manifests_run_the_sidecar_against_the_agents_configmap() {
    let objects = k8s_objects();
    let get = |kind: &str, name: &str| {
        objects
            .get(&(kind.to_owned(), name.to_owned()))
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };

    // The agent's resources, as the ConfigMap mounts them: valid, and compiling the pod's node.
    let resources = tempfile::tempdir().unwrap();
    let data = get("ConfigMap", "ferry-mesh")["data"].as_object().unwrap();
    for (file, text) in data {
        std::fs::write(resources.path().join(file), text.as_str().unwrap()).unwrap();
    }
    let validate = Command::new(agent_bin())
        .arg("validate")
        .arg(resources.path())
        .output()
        .unwrap();
    assert!(
        validate.status.success(),
        "{}",
        String::from_utf8_lossy(&validate.stderr)
    );
    let agent = get("Deployment", "ferry-agent");
    let agent_pod = &agent["spec"]["template"]["spec"];
    assert_eq!(
        agent_pod["volumes"][0]["configMap"]["name"], "ferry-mesh",
        "the agent serves the ConfigMap"
    );
    let agent_args = container(&agent_pod["containers"], "ferry-agent")["args"].to_string();
    assert!(agent_args.contains("0.0.0.0:15010"), "{agent_args}");

    let front = &get("Deployment", "front")["spec"]["template"]["spec"];
    let init = &front["initContainers"][0];
    assert_eq!(init["args"][0], "init-iptables");
    assert_eq!(
        init["securityContext"]["capabilities"]["add"][0],
        "NET_ADMIN"
    );
    let init_env = env_list(&init["env"]);
    let envoy = container(&front["containers"], "envoy");
    assert_eq!(
        envoy["securityContext"]["runAsUser"].to_string(),
        init_env["APPMESH_IGNORE_UID"],
        "the proxy runs as the UID the rules skip"
    );
    let app = container(&front["containers"], "app");
    assert_eq!(
        app["ports"][0]["containerPort"].to_string(),
        init_env["APPMESH_APP_PORTS"]
    );
    assert_eq!(
        front["containers"][0]["name"], "envoy",
        "the proxy starts first, so its postStart hook holds the app until it is LIVE"
    );
    let probe = envoy["readinessProbe"]["exec"]["command"]
        .as_array()
        .unwrap();
    assert_eq!(probe[2], APP_MESH_HEALTH_CHECK);
    let env = env_list(&envoy["env"]);
    assert_eq!(
        env["FERRY_AGENT_URL"], "http://ferry-agent.ferry-system.svc.cluster.local:15010",
        "the agent's Service"
    );
    get("Service", "ferry-agent");

    sidecar_goes_live_once_the_table_arrives(env, APP_MESH_HEALTH_CHECK, resources.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_demo_runs_the_sidecar_against_the_mounted_resources() {
    let dir = repo().join("docker/compose");
    let compose = &yaml_docs(&dir.join("compose.yaml"))[0];
    let services = &compose["services"];
    // The agent's resource directory, as its volumes assemble it.
    let resources = tempfile::tempdir().unwrap();
    for volume in services["agent"]["volumes"].as_array().unwrap() {
        let spec = volume.as_str().unwrap();
        let mut parts = spec.split(':');
        let (src, dst) = (parts.next().unwrap(), parts.next().unwrap());
        let name = Path::new(dst).file_name().unwrap();
        std::fs::copy(dir.join(src), resources.path().join(name))
            .unwrap_or_else(|e| panic!("{spec}: {e}"));
    }
    let init = &services["proxyinit"];
    assert_eq!(init["command"][0], "init-iptables");
    assert_eq!(init["cap_add"][0], "NET_ADMIN");
    assert_eq!(init["network_mode"], "service:front");
    let envoy = &services["envoy"];
    assert_eq!(envoy["network_mode"], "service:front");
    assert_eq!(envoy["healthcheck"]["test"][1], APP_MESH_HEALTH_CHECK);
    let env: BTreeMap<String, String> = envoy["environment"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(env["FERRY_AGENT_URL"], "http://agent:15010");
    sidecar_goes_live_once_the_table_arrives(env, APP_MESH_HEALTH_CHECK, resources.path()).await;
}

#[test]
fn the_dockerfiles_run_the_proxy_as_1337_and_copy_what_exists() {
    let proxy = std::fs::read_to_string(repo().join("docker/proxy.Dockerfile")).unwrap();
    // The last stage is the default image: the App Mesh drop-in, with the entrypoint.
    let last = proxy.rsplit("\nFROM ").next().unwrap();
    assert!(last.contains("USER 1337:1337"), "{last}");
    assert!(last.contains("curl") && last.contains("iptables"), "{last}");
    for dockerfile in ["docker/proxy.Dockerfile", "docker/agent.Dockerfile"] {
        let text = std::fs::read_to_string(repo().join(dockerfile)).unwrap();
        assert!(
            text.matches("\nFROM ").count() >= 1,
            "multi-stage: {dockerfile}"
        );
        for line in text
            .lines()
            .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
        {
            let src = line.split_whitespace().nth(1).unwrap();
            assert!(repo().join(src).exists(), "{dockerfile}: {line}");
        }
    }
}

fn entrypoint() -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg(repo().join("docker/entrypoint.sh"))
        .env("FERRY_PROXY_BIN", proxy_bin());
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_entrypoint_execs_the_proxy_and_waits_until_it_is_live() {
    // No proxy there: wait-ready gives up after its limit, saying so.
    let out = entrypoint()
        .args(["wait-ready", "1"])
        .env("FERRY_ADMIN_ADDR", format!("127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not LIVE after 1s"),
        "{out:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("table.yaml");
    std::fs::copy(repo().join("examples/standalone.yaml"), &config).unwrap();
    let admin_port = free_port();
    let mut child = entrypoint()
        .arg("--config")
        .arg(&config)
        .env("FERRY_ADMIN_ADDR", format!("127.0.0.1:{admin_port}"))
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    // As the postStart hook runs it, with the proxy's own admin setting (0.0.0.0 is dialled on
    // loopback).
    let waited = entrypoint()
        .args(["wait-ready", "20"])
        .env("FERRY_ADMIN_ADDR", format!("0.0.0.0:{admin_port}"))
        .output()
        .unwrap();
    let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
    assert!(waited.status.success(), "{waited:?}\nproxy: {log}");
    // The entrypoint replaced itself with the proxy (signals reach the proxy directly).
    let exe = std::fs::read_link(format!("/proc/{}/exe", child.id())).unwrap();
    assert_eq!(exe.file_name().unwrap(), "ferry-proxy");
    let _ = child.kill();
    let _ = child.wait();

    let dry = entrypoint()
        .args(["init-iptables", "--dry-run", "--app-ports", "9080"])
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&dry.stdout);
    assert!(dry.status.success(), "{dry:?}");
    assert!(
        rules.contains("APPMESH_INGRESS") && rules.contains("9080"),
        "{rules}"
    );
}

#[test]
fn a_bad_app_mesh_variable_stops_the_proxy_naming_it() {
    let out = Command::new(proxy_bin())
        .env_clear()
        .env("LISTENER_DRAIN_WAIT_TIME_S", "300")
        .args(["--config", "/nonexistent.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("LISTENER_DRAIN_WAIT_TIME_S=\"300\": expected whole seconds from 5 to 110"),
        "{stderr}"
    );
}
