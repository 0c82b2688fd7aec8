//! The real `ferry-proxy` binary as a child process, with its config file in a temp directory.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Where the `ferry-proxy` binary is: `FERRY_PROXY_BIN`, else next to this test's target dir.
pub fn proxy_bin() -> PathBuf {
    if let Ok(p) = std::env::var("FERRY_PROXY_BIN") {
        return PathBuf::from(p);
    }
    // target/debug/deps/<test> -> target/debug/ferry-proxy
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("ferry-proxy");
    assert!(
        bin.exists(),
        "{} is missing: `cargo test --workspace` builds it; or run `cargo build -p ferry-proxy`",
        bin.display()
    );
    bin
}

pub struct ProxyProcess {
    child: Child,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    stderr_path: PathBuf,
    stdout_path: PathBuf,
}

impl ProxyProcess {
    /// Starts the proxy on `yaml` and waits until it is ready.
    pub async fn start(yaml: &str) -> anyhow::Result<ProxyProcess> {
        Self::start_with(yaml, "table.yaml", &[]).await
    }

    /// Starts the proxy with the config file named `file_name` and extra arguments.
    pub async fn start_with(
        contents: &str,
        file_name: &str,
        args: &[&str],
    ) -> anyhow::Result<ProxyProcess> {
        Self::start_with_env(contents, file_name, args, &[]).await
    }

    /// [`ProxyProcess::start_with`], with extra environment variables for the proxy process.
    pub async fn start_with_env(
        contents: &str,
        file_name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<ProxyProcess> {
        Self::start_bin(&proxy_bin(), contents, file_name, args, env).await
    }

    /// [`ProxyProcess::start_with_env`], running the proxy binary at `bin`.
    pub async fn start_bin(
        bin: &Path,
        contents: &str,
        file_name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<ProxyProcess> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join(file_name);
        std::fs::write(&config, contents)?;
        let admin_file = dir.path().join("admin.addr");
        let stderr_path = dir.path().join("stderr.log");
        let stdout_path = dir.path().join("stdout.log");
        let default_level = std::env::var("FERRY_TEST_LOG_LEVEL").unwrap_or_else(|_| "info".into());
        let level: &[&str] = if args.contains(&"--log-level") {
            &[]
        } else {
            &["--log-level", &default_level]
        };
        let child = Command::new(bin)
            .arg("--config")
            .arg(&config)
            // A test may bind the admin server wider (`--admin-addr 0.0.0.0:0`).
            .args(if args.contains(&"--admin-addr") {
                &[][..]
            } else {
                &["--admin-addr", "127.0.0.1:0"][..]
            })
            .args(["--concurrency", "2"])
            // FERRY_TEST_LOG_LEVEL=debug shows the proxies' debug logs in failure messages.
            .args(level)
            .arg("--admin-address-path")
            .arg(&admin_file)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::from(std::fs::File::create(&stdout_path)?))
            .stderr(Stdio::from(std::fs::File::create(&stderr_path)?))
            .spawn()
            .context("spawn ferry-proxy")?;
        let mut p = ProxyProcess {
            child,
            admin: "127.0.0.1:0".parse()?,
            dir,
            config,
            stderr_path,
            stdout_path,
        };
        p.admin =
            wait_until_ready(&mut p.child, &admin_file, "ferry-proxy", &p.stderr_path).await?;
        Ok(p)
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

    /// `http://ADDR` of listener `name`.
    pub async fn url(&self, name: &str) -> String {
        format!("http://{}", self.listener(name).await.expect("listener"))
    }

    pub async fn admin_get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        admin_request(self.admin, http::Method::GET, path).await
    }

    pub async fn admin_post(&self, path: &str) -> anyhow::Result<(u16, String)> {
        admin_request(self.admin, http::Method::POST, path).await
    }

    pub async fn metrics(&self) -> String {
        self.admin_get("/stats/prometheus")
            .await
            .expect("metrics")
            .1
    }

    /// The value of one sample line `name{labels}` in the exposition, or 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics().await, series)
    }

    /// Polls until `series` reaches `want` or 5 s pass, and returns its last value (the proxy
    /// counts some refusals only after the connection ends).
    pub async fn wait_metric(&self, series: &str, want: f64) -> f64 {
        self.wait_metric_until(series, |v| v >= want).await
    }

    /// Polls until `series` falls below `limit` or 5 s pass, and returns its last value (a
    /// gauge that the proxy lowers once a connection has closed).
    pub async fn wait_metric_below(&self, series: &str, limit: f64) -> f64 {
        self.wait_metric_until(series, |v| v < limit).await
    }

    async fn wait_metric_until(&self, series: &str, done: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let v = self.metric(series).await;
            if done(v) || Instant::now() > deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Replaces the config file atomically (write a temporary file, then rename it over the old).
    pub fn write_config(&self, contents: &str) {
        let tmp = self.dir.path().join(".table.tmp");
        std::fs::write(&tmp, contents).expect("write config");
        std::fs::rename(&tmp, &self.config).expect("rename config");
    }

    /// Waits until the served config version is `version` (checks `/config_dump`).
    pub async fn wait_for_version(&self, version: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok((200, body)) = self.admin_get("/config_dump").await {
                let v: serde_json::Value = serde_json::from_str(&body)?;
                if v["version"] == version {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!(
            "version {version} not applied within 10s: {}",
            self.stderr()
        )
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit (up to `timeout`).
    pub async fn wait(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!("ferry-proxy still running after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until a proxy writes its admin address to `admin_file` and `/ready` answers 200 (20 s
/// at most); `what` names it in errors, which carry the log at `stderr_log`.
pub async fn wait_until_ready(
    child: &mut Child,
    admin_file: &Path,
    what: &str,
    stderr_log: &Path,
) -> anyhow::Result<SocketAddr> {
    let log = || std::fs::read_to_string(stderr_log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited early ({status}): {}", log());
        }
        if let Ok(a) = std::fs::read_to_string(admin_file)
            && let Ok(addr) = a.trim().parse::<SocketAddr>()
            && admin_request(addr, http::Method::GET, "/ready")
                .await
                .is_ok_and(|(s, _)| s == 200)
        {
            return Ok(addr);
        }
        if Instant::now() > deadline {
            bail!("{what} not ready within 20s: {}", log());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One plain HTTP/1.1 request to the admin server.
pub async fn admin_request(
    admin: SocketAddr,
    method: http::Method,
    path: &str,
) -> anyhow::Result<(u16, String)> {
    let client = crate::Client::http1();
    let reply = client
        .send(
            method,
            &format!("http://{admin}{path}"),
            &[],
            bytes::Bytes::new(),
        )
        .await?;
    Ok((reply.status.as_u16(), reply.body))
}

/// The value of the sample `series` (exact text before the value, e.g. `a_total{x="y"}`).
pub fn metric_value(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}
