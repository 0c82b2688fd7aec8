//! Runs a ferry-proxy binary through the traffic it exists for, so that a profile-guided build
//! (`scripts/pgo-build.sh`) lays out and inlines the code of those paths as hot, and checks every
//! answer on the way: a training run that went wrong fails rather than teaching the compiler an
//! error path.
//!
//! ```text
//! pgo-train --proxy target/pgo-gen/release/ferry-proxy [--secs 3]
//! ```
//!
//! Everything is in this process and on 127.0.0.1: an upstream answering HTTP/1.1 and h2c (`200
//! ok`, and a gRPC echo), a TCP echo, and the clients. The proxy gets the load harness's table
//! ([`ferry_benches::load_table`]: the 90/10 split, a TCP and a gRPC listener) and, for `--secs`
//! each: HTTP/1.1 keep-alive GETs on 32 connections, POSTs with a body, HTTP/2 on 4 connections
//! × 16 streams, gRPC unary calls, TCP both ways, and the admin's metrics page. Then the table is
//! hot-swapped for the same one with what `ferry-agent` gives App Mesh routes (the default retry
//! policy, an access log), and the workloads run again: both are what users run. It is stopped
//! with SIGTERM, so that it exits as it does in production (and an instrumented build writes its
//! profile, which the environment's `LLVM_PROFILE_FILE` names).
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_benches::echo::{OK_BODY, ok_or_grpc};
use ferry_benches::load_table::{LoadTable, load_table};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A gRPC unary request: one uncompressed length-prefixed message (field 1 = "ping").
const GRPC_MESSAGE: &[u8] = b"\x00\x00\x00\x00\x06\x0a\x04ping";
const POST_BODY: [u8; 1024] = [b'x'; 1024];

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// Requests (or TCP round trips) that were answered right, and those that were not.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
}

impl Tally {
    fn record(&self, result: Result<(), Failure>, what: &str) {
        match result {
            Ok(()) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                // The first few say why; the count says how many.
                if self.failed.load(Ordering::Relaxed) < 3 {
                    eprintln!("pgo-train: {what}: {e}");
                }
                self.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut proxy, mut secs) = (None, 3u64);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--proxy", Some(p)) => proxy = Some(PathBuf::from(p)),
            ("--secs", Some(s)) => match s.parse() {
                Ok(n) => secs = n,
                Err(e) => return usage(&format!("--secs: {e}")),
            },
            _ => return usage(&format!("unexpected argument {flag}")),
        }
    }
    let Some(proxy) = proxy else {
        return usage("--proxy is required");
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgo-train: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(train(proxy, Duration::from_secs(secs))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgo-train: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!("pgo-train: {message}\nusage: pgo-train --proxy PATH [--secs N]");
    ExitCode::from(2)
}

/// The proxy process, killed if training stops early (an error) rather than left running.
struct Proxy(Option<Child>);

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn train(proxy_bin: PathBuf, secs: Duration) -> Result<(), Failure> {
    let http_upstream = serve_http_upstream().await?;
    let tcp_upstream = serve_tcp_echo().await?;
    let [http, tcp, grpc, admin] = free_ports::<4>()?;
    let tmp = std::env::temp_dir();
    let config = tmp.join(format!("pgo-train-{}.yaml", std::process::id()));
    let access_log = tmp.join(format!("pgo-train-{}-access.log", std::process::id()));
    let table = |version: &str, appmesh_defaults: Option<String>| {
        load_table(&LoadTable {
            http: http.to_string(),
            upstream: http_upstream.to_string(),
            routes: 100,
            tcp: Some((tcp.to_string(), tcp_upstream.to_string())),
            grpc: Some((grpc.to_string(), http_upstream.to_string())),
            version: Some(version.to_owned()),
            appmesh_defaults,
        })
    };
    write_table(&config, &table("pgo-train", None))?;

    let child = Command::new(&proxy_bin)
        .arg("--config")
        .arg(&config)
        .args(["--concurrency", "1", "--log-level", "warn", "--admin-addr"])
        .arg(admin.to_string())
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", proxy_bin.display()))?;
    let mut proxy = Proxy(Some(child));
    let result = async {
        wait_ready(admin, &mut proxy).await?;
        run_workloads(http, tcp, grpc, admin, secs).await?;
        println!("-- again, with App Mesh's default retry policy and an access log");
        let defaults = "pgo-train-appmesh-defaults";
        write_table(
            &config,
            &table(defaults, Some(access_log.display().to_string())),
        )?;
        wait_for_version(admin, &mut proxy, defaults).await?;
        run_workloads(http, tcp, grpc, admin, secs).await
    }
    .await;
    let stopped = stop(&mut proxy).await;
    let _ = std::fs::remove_file(&config);
    let _ = std::fs::remove_file(&access_log);
    result?;
    stopped
}

/// Writes `table` to `path` whole (a new file renamed over it), so that the proxy watching the
/// path never reads half a table.
fn write_table(path: &std::path::Path, table: &ferry_api::v1::RoutingTable) -> Result<(), Failure> {
    let partial = path.with_extension("yaml.partial");
    std::fs::write(&partial, ferry_api::encode_yaml(table))
        .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
    std::fs::rename(&partial, path).map_err(|e| {
        format!(
            "cannot rename {} to {}: {e}",
            partial.display(),
            path.display()
        )
    })?;
    Ok(())
}

async fn run_workloads(
    http: SocketAddr,
    tcp: SocketAddr,
    grpc: SocketAddr,
    admin: SocketAddr,
    secs: Duration,
) -> Result<(), Failure> {
    // (what, how many concurrent clients)
    let phases = [
        ("HTTP/1.1 GET, 32 connections", 32),
        ("HTTP/1.1 POST 1 KiB, 8 connections", 8),
        ("HTTP/2 GET, 4 connections x 16 streams", 4),
        ("gRPC unary, 2 connections x 16 streams", 2),
        ("TCP 64 KiB round trips, 2 connections", 2),
        ("admin /stats/prometheus", 1),
    ];
    let mut failed = 0;
    for (phase, (name, clients)) in phases.into_iter().enumerate() {
        let deadline = Instant::now() + secs;
        let tally = Arc::new(Tally::default());
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..clients {
            let t = Arc::clone(&tally);
            match phase {
                0 => tasks.spawn(h1_loop(t, deadline, http, false)),
                1 => tasks.spawn(h1_loop(t, deadline, http, true)),
                2 => tasks.spawn(h2_loop(t, deadline, http, false)),
                3 => tasks.spawn(h2_loop(t, deadline, grpc, true)),
                4 => tasks.spawn(tcp_loop(t, deadline, tcp)),
                _ => tasks.spawn(admin_loop(t, deadline, admin)),
            };
        }
        while tasks.join_next().await.is_some() {}
        let (ok, bad) = (
            tally.ok.load(Ordering::Relaxed),
            tally.failed.load(Ordering::Relaxed),
        );
        println!("{name}: {ok} answered, {bad} failed");
        if ok == 0 || bad > 0 {
            failed += 1;
        }
    }
    if failed > 0 {
        return Err(format!("{failed} workload(s) failed or got no answer").into());
    }
    Ok(())
}

/// Unused ports on 127.0.0.1 for the proxy's listeners (bound, read, released: the proxy binds
/// them a moment later).
fn free_ports<const N: usize>() -> Result<[SocketAddr; N], Failure> {
    let listeners = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut addrs = [SocketAddr::from(([127, 0, 0, 1], 0)); N];
    for (a, l) in addrs.iter_mut().zip(&listeners) {
        *a = l.local_addr()?;
    }
    Ok(addrs)
}

async fn serve_http_upstream() -> Result<SocketAddr, Failure> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service_fn(ok_or_grpc))
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn serve_tcp_echo() -> Result<SocketAddr, Failure> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Ok(addr)
}

async fn wait_ready(admin: SocketAddr, proxy: &mut Proxy) -> Result<(), Failure> {
    wait_for(admin, proxy, "/ready", "ready", |_| true).await
}

/// Waits until the proxy serves the table of `version` (its admin's /server_info says so).
async fn wait_for_version(
    admin: SocketAddr,
    proxy: &mut Proxy,
    version: &str,
) -> Result<(), Failure> {
    let what = format!("serving table {version}");
    wait_for(admin, proxy, "/server_info", &what, |body| {
        serde_json::from_slice::<serde_json::Value>(body)
            .is_ok_and(|info| info["config_version"] == version)
    })
    .await
}

/// Polls the admin's `path` until it answers 200 with a body `ok` accepts, for up to 20 s;
/// fails early if the proxy exits.
async fn wait_for(
    admin: SocketAddr,
    proxy: &mut Proxy,
    path: &str,
    what: &str,
    ok: impl Fn(&Bytes) -> bool,
) -> Result<(), Failure> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok((StatusCode::OK, body)) = admin_get(admin, path).await
            && ok(&body)
        {
            return Ok(());
        }
        if let Some(status) = proxy.0.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            return Err(format!("the proxy exited before it was {what}: {status}").into());
        }
        if Instant::now() > deadline {
            return Err(format!("the proxy's admin {admin} was not {what} within 20 s").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn admin_get(admin: SocketAddr, path: &str) -> Result<(StatusCode, Bytes), Failure> {
    let stream = TcpStream::connect(admin).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header(http::header::HOST, admin.to_string())
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    Ok((status, resp.into_body().collect().await?.to_bytes()))
}

/// One keep-alive connection sending requests back to back until `deadline`.
async fn h1_loop(tally: Arc<Tally>, deadline: Instant, to: SocketAddr, post: bool) {
    let connected = async {
        let stream = TcpStream::connect(to).await?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok::<_, Failure>(sender)
    };
    let mut sender = match connected.await {
        Ok(s) => s,
        Err(e) => return tally.record(Err(e), "connect"),
    };
    while Instant::now() < deadline {
        let exchange = async {
            sender.ready().await?;
            let builder = Request::builder()
                .uri("/")
                .header(http::header::HOST, "bench.svc.local");
            let req = if post {
                builder
                    .method(Method::POST)
                    .body(Full::new(Bytes::from_static(&POST_BODY)))?
            } else {
                builder.body(Full::new(Bytes::new()))?
            };
            let resp = sender.send_request(req).await?;
            expect_ok(resp.status(), &resp.into_body().collect().await?.to_bytes())
        };
        let result = exchange.await;
        let broken = result.is_err();
        tally.record(result, "HTTP/1.1 request");
        if broken {
            return;
        }
    }
}

fn expect_ok(status: StatusCode, body: &[u8]) -> Result<(), Failure> {
    if status != StatusCode::OK || body != OK_BODY {
        return Err(format!("answered {status} {:?}", String::from_utf8_lossy(body)).into());
    }
    Ok(())
}

/// One HTTP/2 connection with 16 streams in flight until `deadline`; gRPC calls with `grpc`.
async fn h2_loop(tally: Arc<Tally>, deadline: Instant, to: SocketAddr, grpc: bool) {
    let connected = async {
        let stream = TcpStream::connect(to).await?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await?;
        tokio::spawn(conn);
        Ok::<_, Failure>(sender)
    };
    let sender = match connected.await {
        Ok(s) => s,
        Err(e) => return tally.record(Err(e), "connect"),
    };
    let mut streams = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let mut sender = sender.clone();
        let tally = Arc::clone(&tally);
        streams.spawn(async move {
            while Instant::now() < deadline {
                let exchange = async {
                    let path = if grpc { "/bench.Echo/Unary" } else { "/" };
                    let builder = Request::builder().uri(format!("http://{to}{path}"));
                    let req = if grpc {
                        builder
                            .method(Method::POST)
                            .header(http::header::CONTENT_TYPE, "application/grpc")
                            .header(http::header::TE, "trailers")
                            .body(Full::new(Bytes::from_static(GRPC_MESSAGE)))?
                    } else {
                        builder.body(Full::new(Bytes::new()))?
                    };
                    let resp = sender.send_request(req).await?;
                    let status = resp.status();
                    let collected = resp.into_body().collect().await?;
                    if !grpc {
                        return expect_ok(status, &collected.to_bytes());
                    }
                    let grpc_status = collected
                        .trailers()
                        .and_then(|t| t.get("grpc-status"))
                        .map(|v| v.as_bytes().to_vec());
                    let message = collected.to_bytes();
                    if status != StatusCode::OK
                        || grpc_status.as_deref() != Some(b"0")
                        || message != GRPC_MESSAGE
                    {
                        return Err(format!(
                            "gRPC call answered {status}, grpc-status {grpc_status:?}, {} bytes",
                            message.len()
                        )
                        .into());
                    }
                    Ok(())
                };
                let result = exchange.await;
                let broken = result.is_err();
                tally.record(result, if grpc { "gRPC call" } else { "HTTP/2 request" });
                if broken {
                    return;
                }
            }
        });
    }
    while streams.join_next().await.is_some() {}
}

/// One TCP connection through the proxy to the echo: 64 KiB out, the same 64 KiB back, until
/// `deadline`; then a half-close, which the proxy passes on, and the echo's EOF back.
async fn tcp_loop(tally: Arc<Tally>, deadline: Instant, to: SocketAddr) {
    let mut stream = match TcpStream::connect(to).await {
        Ok(s) => s,
        Err(e) => return tally.record(Err(e.into()), "connect"),
    };
    let _ = stream.set_nodelay(true);
    let chunk: Vec<u8> = (0..64 * 1024).map(|n| (n % 251) as u8).collect();
    let mut back = vec![0u8; chunk.len()];
    while Instant::now() < deadline {
        let round = async {
            stream.write_all(&chunk).await?;
            stream.read_exact(&mut back).await?;
            if back != chunk {
                return Err::<(), Failure>("the echo came back different".into());
            }
            Ok(())
        };
        let result = round.await;
        let broken = result.is_err();
        tally.record(result, "TCP round trip");
        if broken {
            return;
        }
    }
    let closed = async {
        stream.shutdown().await?;
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await?;
        if !rest.is_empty() {
            return Err::<(), Failure>(format!("{} stray bytes after EOF", rest.len()).into());
        }
        Ok(())
    };
    tally.record(closed.await, "TCP half-close");
}

async fn admin_loop(tally: Arc<Tally>, deadline: Instant, admin: SocketAddr) {
    while Instant::now() < deadline {
        let result = match admin_get(admin, "/stats/prometheus").await {
            Ok((StatusCode::OK, body)) if !body.is_empty() => Ok(()),
            Ok((status, _)) => Err(format!("answered {status}").into()),
            Err(e) => Err(e),
        };
        tally.record(result, "admin /stats/prometheus");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SIGTERM (the proxy drains and exits as in production, and an instrumented build writes its
/// profile on exit), then waits for it; an exit other than success is an error. On any error the
/// child stays in `proxy`, whose drop kills it.
async fn stop(proxy: &mut Proxy) -> Result<(), Failure> {
    let Some(child) = proxy.0.as_mut() else {
        return Ok(());
    };
    let pid = rustix::process::Pid::from_child(child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM)
        .map_err(|e| format!("could not send SIGTERM to the proxy: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match child.try_wait()? {
            Some(status) => {
                proxy.0 = None;
                if !status.success() {
                    return Err(format!("the proxy exited with {status}").into());
                }
                return Ok(());
            }
            None if Instant::now() > deadline => {
                return Err("the proxy did not exit within 30 s of SIGTERM".into());
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
