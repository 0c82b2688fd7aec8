//! The real `ferry-agent` binary as a child process, serving a resource directory, and proxies
//! that follow it (`ferry-proxy --agent URL --node ID`).
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::proxy::{admin_request, proxy_bin};

/// Where the `ferry-agent` binary is: `FERRY_AGENT_BIN`, else next to this test's target dir.
pub fn agent_bin() -> PathBuf {
    if let Ok(p) = std::env::var("FERRY_AGENT_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("ferry-agent");
    assert!(
        bin.exists(),
        "{} is missing: `cargo test --workspace` builds it; or run `cargo build -p ferry-agent`",
        bin.display()
    );
    bin
}

/// Polls `f` every 10 ms until it returns `Some`, for up to `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub struct AgentProcess {
    child: Child,
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    /// The App Mesh API (`--api-addr`, on a port chosen by the OS).
    pub api: SocketAddr,
    pub resources: PathBuf,
    logs: tempfile::TempDir,
}

impl AgentProcess {
    /// Starts the agent on `resources` (gRPC and admin on ports chosen by the OS) and waits until
    /// it answers on both; `/ready` may still say no if the resources are invalid.
    pub async fn start(resources: &Path) -> anyhow::Result<AgentProcess> {
        Self::start_on(resources, "127.0.0.1:0".parse()?).await
    }

    /// Starts the agent with its gRPC server on `grpc` (to bring it back on the same port).
    pub async fn start_on(resources: &Path, grpc: SocketAddr) -> anyhow::Result<AgentProcess> {
        Self::start_with(resources, grpc, &[], &[]).await
    }

    /// Starts the agent with extra `serve` arguments and environment variables.
    pub async fn start_with(
        resources: &Path,
        grpc: SocketAddr,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<AgentProcess> {
        let level = std::env::var("FERRY_TEST_LOG_LEVEL").unwrap_or_else(|_| "info".into());
        // The port may still be held for a moment after the previous agent died: retry.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let logs = tempfile::tempdir()?;
            let grpc_file = logs.path().join("grpc.addr");
            let admin_file = logs.path().join("admin.addr");
            let api_file = logs.path().join("api.addr");
            let child = Command::new(agent_bin())
                .arg("serve")
                .arg("--resources")
                .arg(resources)
                .args(["--grpc-addr", &grpc.to_string()])
                .args(["--admin-addr", "127.0.0.1:0"])
                .arg("--grpc-address-path")
                .arg(&grpc_file)
                .arg("--admin-address-path")
                .arg(&admin_file)
                .args(["--api-addr", "127.0.0.1:0"])
                .arg("--api-address-path")
                .arg(&api_file)
                .args(["--log-level", &level])
                .args(args)
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .stderr(Stdio::from(std::fs::File::create(
                    logs.path().join("stderr.log"),
                )?))
                .spawn()
                .context("spawn ferry-agent")?;
            let mut a = AgentProcess {
                child,
                grpc,
                admin: "127.0.0.1:0".parse()?,
                api: "127.0.0.1:0".parse()?,
                resources: resources.to_owned(),
                logs,
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            let exited = loop {
                if let Some(status) = a.child.try_wait()? {
                    break format!("ferry-agent exited early ({status}): {}", a.stderr());
                }
                if let (Ok(g), Ok(ad), Ok(ap)) = (
                    std::fs::read_to_string(&grpc_file),
                    std::fs::read_to_string(&admin_file),
                    std::fs::read_to_string(&api_file),
                ) && let (Ok(g), Ok(ad), Ok(ap)) =
                    (g.trim().parse(), ad.trim().parse(), ap.trim().parse())
                {
                    a.grpc = g;
                    a.admin = ad;
                    a.api = ap;
                    if a.admin_get("/live").await.is_ok() {
                        return Ok(a);
                    }
                }
                if Instant::now() > deadline {
                    bail!("ferry-agent not up within 20s: {}", a.stderr());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            if attempts >= 50 || !exited.contains("cannot listen") {
                bail!("{exited}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    pub async fn admin_get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        admin_request(self.admin, http::Method::GET, path).await
    }

    /// `/proxies`, parsed.
    pub async fn proxies(&self) -> Vec<serde_json::Value> {
        let (_, body) = self.admin_get("/proxies").await.expect("/proxies");
        serde_json::from_str(&body).expect("/proxies is JSON")
    }

    /// The `/proxies` entry of `node` (the first, when several proxies share it).
    pub async fn proxy(&self, node: &str) -> Option<serde_json::Value> {
        self.proxies().await.into_iter().find(|p| p["node"] == node)
    }

    /// `/status`, parsed.
    pub async fn status(&self) -> serde_json::Value {
        let (_, body) = self.admin_get("/status").await.expect("/status");
        serde_json::from_str(&body).expect("/status is JSON")
    }

    pub async fn metrics(&self) -> String {
        self.admin_get("/metrics").await.expect("metrics").1
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("stderr.log")).unwrap_or_default()
    }

    /// SIGTERM, then waits up to `timeout` for the exit.
    pub async fn sigterm(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!(
                    "ferry-agent still running {timeout:?} after SIGTERM: {}",
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: the agent dies without closing anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `ferry-proxy` following an agent, with its listeners on ports chosen by the OS
/// (`--ingress-port 0 --egress-port 0`) and a state directory.
pub struct AgentProxy {
    child: Child,
    pub admin: SocketAddr,
    pub node: String,
    pub state_dir: PathBuf,
    logs: tempfile::TempDir,
}

impl AgentProxy {
    /// Starts a proxy for `node` following `agent_url`, keeping its state in `state_dir`, and
    /// waits until it is ready (it has a table: from the agent or from `state_dir`).
    pub async fn start(
        agent_url: &str,
        node: &str,
        state_dir: &Path,
    ) -> anyhow::Result<AgentProxy> {
        Self::start_with_ports(agent_url, node, state_dir, 0, 0).await
    }

    /// [`AgentProxy::start`] with given `--ingress-port` / `--egress-port`.
    pub async fn start_with_ports(
        agent_url: &str,
        node: &str,
        state_dir: &Path,
        ingress_port: u16,
        egress_port: u16,
    ) -> anyhow::Result<AgentProxy> {
        Self::start_with_env(agent_url, node, state_dir, ingress_port, egress_port, &[]).await
    }

    /// [`AgentProxy::start_with_ports`], with extra environment variables for the proxy process
    /// (App Mesh's, such as `ENABLE_ENVOY_STATS_TAGS=1`).
    pub async fn start_with_env(
        agent_url: &str,
        node: &str,
        state_dir: &Path,
        ingress_port: u16,
        egress_port: u16,
        env: &[(&str, &str)],
    ) -> anyhow::Result<AgentProxy> {
        let logs = tempfile::tempdir()?;
        let admin_file = logs.path().join("admin.addr");
        let level = std::env::var("FERRY_TEST_LOG_LEVEL").unwrap_or_else(|_| "info".into());
        let child = Command::new(proxy_bin())
            .args(["--agent", agent_url, "--node", node])
            .arg("--state-dir")
            .arg(state_dir)
            .args(["--ingress-port", &ingress_port.to_string()])
            .args(["--egress-port", &egress_port.to_string()])
            .args(["--admin-addr", "127.0.0.1:0", "--concurrency", "2"])
            .args(["--log-level", &level])
            .arg("--admin-address-path")
            .arg(&admin_file)
            .envs(env.iter().copied())
            .stdout(Stdio::from(std::fs::File::create(
                logs.path().join("stdout.log"),
            )?))
            .stderr(Stdio::from(std::fs::File::create(
                logs.path().join("stderr.log"),
            )?))
            .spawn()
            .context("spawn ferry-proxy")?;
        let mut p = AgentProxy {
            child,
            admin: "127.0.0.1:0".parse()?,
            node: node.to_owned(),
            state_dir: state_dir.to_owned(),
            logs,
        };
        let log = p.logs.path().join("stderr.log");
        p.admin = crate::proxy::wait_until_ready(
            &mut p.child,
            &admin_file,
            &format!("ferry-proxy ({node})"),
            &log,
        )
        .await?;
        Ok(p)
    }

    pub async fn admin_get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        admin_request(self.admin, http::Method::GET, path).await
    }

    /// The bound address of listener `name` (from `/listeners`).
    pub async fn listener(&self, name: &str) -> anyhow::Result<SocketAddr> {
        let (_, body) = self.admin_get("/listeners").await?;
        let list: serde_json::Value = serde_json::from_str(&body)?;
        for l in list.as_array().into_iter().flatten() {
            if l["name"] == name {
                return Ok(l["address"].as_str().unwrap_or_default().parse()?);
            }
        }
        bail!("no listener {name:?} in {body}")
    }

    /// `http://ADDR` of listener `name`, on loopback.
    pub async fn url(&self, name: &str) -> String {
        let a = self.listener(name).await.expect("listener");
        format!("http://127.0.0.1:{}", a.port())
    }

    /// The version of the table being served (from `/config_dump`).
    pub async fn version(&self) -> String {
        let (_, body) = self.admin_get("/config_dump").await.expect("/config_dump");
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        v["version"].as_str().unwrap_or_default().to_owned()
    }

    pub async fn metrics(&self) -> String {
        self.admin_get("/stats/prometheus")
            .await
            .expect("metrics")
            .1
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("stderr.log")).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AgentProxy {
    fn drop(&mut self) {
        self.kill();
    }
}
