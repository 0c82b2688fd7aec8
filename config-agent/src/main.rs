//! ferry-agent: the command line.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ferry_agent::api::{self, Api, ApiConfig, Credentials};
use ferry_agent::compile::{self, Identity, Options};
use ferry_agent::explain::{Request, explain};
use ferry_agent::server::{Agent, admin, grpc};
use ferry_agent::store::{self, Store};

#[derive(Parser, Debug)]
#[command(
    name = "ferry-agent",
    version,
    about = "Ferry's control plane: App Mesh resources in, a routing table per proxy out, streamed over gRPC"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the resources in DIR to proxies (watched: every valid change is pushed at once).
    Serve {
        /// Directory of App Mesh resource files (YAML or JSON; describe output or create input).
        #[arg(long, env = "FERRY_RESOURCES")]
        resources: PathBuf,
        /// The gRPC address proxies connect to (`ferry-proxy --agent http://ADDR`).
        #[arg(long, env = "FERRY_GRPC_ADDR", default_value = "0.0.0.0:15010")]
        grpc_addr: SocketAddr,
        /// The admin server: /ready, /metrics, /proxies, /status.
        #[arg(
            long,
            env = "FERRY_AGENT_ADMIN_ADDR",
            default_value = "127.0.0.1:15011"
        )]
        admin_addr: SocketAddr,
        /// Write the bound gRPC address here (for --grpc-addr with port 0).
        #[arg(long)]
        grpc_address_path: Option<PathBuf>,
        /// Write the bound admin address here (for --admin-addr with port 0).
        #[arg(long)]
        admin_address_path: Option<PathBuf>,
        /// Log filter: trace, debug, info, warn, error, or a tracing directive list.
        #[arg(long, env = "FERRY_LOG_LEVEL", default_value = "info")]
        log_level: String,
        #[command(flatten)]
        api: Box<ApiFlags>,
    },
    /// Check the resources in DIR (App Mesh's rules, and that every proxy's table compiles).
    Validate {
        /// Directory of resource files.
        dir: PathBuf,
    },
    /// Print the routing table of one proxy as YAML (which `ferry-proxy --config` accepts).
    Compile {
        #[arg(long)]
        resources: PathBuf,
        /// MESH/virtualNode/NAME or MESH/virtualGateway/NAME (or the resource's ARN).
        #[arg(long)]
        node: String,
        /// Print JSON instead of YAML.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = compile::DEFAULT_INGRESS_PORT)]
        ingress_port: u16,
        #[arg(long, default_value_t = compile::DEFAULT_EGRESS_PORT)]
        egress_port: u16,
    },
    /// Show which listener, route and weighted targets a request would take, and why the others
    /// did not match.
    Explain {
        #[arg(long)]
        resources: PathBuf,
        #[arg(long)]
        node: String,
        /// "METHOD URL", e.g. 'GET http://color.mesh.local:8080/path' (GET when left out).
        #[arg(long)]
        request: String,
        /// A request header, 'name: value' (repeatable).
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// The listener to send it to (default: egress for a virtual node, the gateway listener
        /// on the URL's port for a virtual gateway).
        #[arg(long)]
        listener: Option<String>,
    },
}

/// The App Mesh API's flags.
#[derive(clap::Args, Debug)]
struct ApiFlags {
    /// The App Mesh API (2019-01-25): `aws appmesh --endpoint-url http://ADDR`.
    #[arg(long, env = "FERRY_API_ADDR", default_value = "127.0.0.1:9080")]
    api_addr: SocketAddr,
    /// Write the bound API address here (for --api-addr with port 0).
    #[arg(long)]
    api_address_path: Option<PathBuf>,
    /// The access key id API requests must be signed with (SigV4); its secret comes from
    /// FERRY_API_SECRET_ACCESS_KEY or --api-secret-access-key-file.
    #[arg(long, env = "FERRY_API_ACCESS_KEY_ID")]
    api_access_key_id: Option<String>,
    /// A file holding the secret access key (one line).
    #[arg(long)]
    api_secret_access_key_file: Option<PathBuf>,
    /// Without an access key, accept API writes anyway (local use only: anyone who reaches
    /// --api-addr can change the mesh).
    #[arg(long)]
    allow_unauthenticated: bool,
    /// The region in the ARNs the API returns.
    #[arg(long, env = "FERRY_API_REGION", default_value = "us-east-1")]
    api_region: String,
    /// The account id in the ARNs, meshOwner and resourceOwner.
    #[arg(long, env = "FERRY_API_ACCOUNT", default_value = "000000000000")]
    api_account: String,
    /// The most resources one mesh may hold through the API (LimitExceededException beyond).
    #[arg(long, default_value_t = 10_000)]
    api_max_resources_per_mesh: usize,
}

impl ApiFlags {
    fn config(&self) -> anyhow::Result<ApiConfig> {
        let secret = match (
            &self.api_secret_access_key_file,
            std::env::var("FERRY_API_SECRET_ACCESS_KEY"),
        ) {
            (Some(f), _) => Some(
                std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read {}", f.display()))?
                    .trim()
                    .to_owned(),
            ),
            (None, Ok(s)) => Some(s.trim().to_owned()),
            (None, Err(_)) => None,
        };
        let credentials = match (&self.api_access_key_id, secret) {
            (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => Some(Credentials {
                access_key_id: id.clone(),
                secret_access_key: secret,
            }),
            (None, None) => None,
            (Some(_), _) => anyhow::bail!(
                "--api-access-key-id needs its secret: set FERRY_API_SECRET_ACCESS_KEY or --api-secret-access-key-file"
            ),
            (None, Some(_)) => anyhow::bail!(
                "a secret access key is set but no --api-access-key-id (FERRY_API_ACCESS_KEY_ID)"
            ),
        };
        Ok(ApiConfig {
            identity: api::Identity {
                region: self.api_region.clone(),
                account: self.api_account.clone(),
            },
            credentials,
            allow_unauthenticated: self.allow_unauthenticated,
            max_resources_per_mesh: self.api_max_resources_per_mesh,
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match &cli.command {
        Command::Serve { log_level, .. } => log_level.clone(),
        _ => "warn".to_owned(),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Serve {
            resources,
            grpc_addr,
            admin_addr,
            grpc_address_path,
            admin_address_path,
            api,
            ..
        } => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the async runtime")
            .and_then(|rt| {
                rt.block_on(serve(
                    resources,
                    grpc_addr,
                    admin_addr,
                    grpc_address_path,
                    admin_address_path,
                    api,
                ))
            }),
        Command::Validate { dir } => return validate(&dir),
        Command::Compile {
            resources,
            node,
            json,
            ingress_port,
            egress_port,
        } => print_table(
            &resources,
            &node,
            json,
            Options {
                ingress_port,
                egress_port,
            },
        ),
        Command::Explain {
            resources,
            node,
            request,
            headers,
            listener,
        } => run_explain(&resources, &node, &request, &headers, listener.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    resources: PathBuf,
    grpc_addr: SocketAddr,
    admin_addr: SocketAddr,
    grpc_address_path: Option<PathBuf>,
    admin_address_path: Option<PathBuf>,
    api_flags: Box<ApiFlags>,
) -> anyhow::Result<()> {
    let api_config = api_flags.config()?;
    let store = Store::new(resources.clone());
    store.reload_and_log();
    let _watcher = store::spawn_watcher(store.clone(), Duration::from_secs(10))
        .with_context(|| format!("cannot watch {}", resources.display()))?;
    let agent = Agent::new(store, Options::default());
    let grpc_listener = tokio::net::TcpListener::bind(grpc_addr)
        .await
        .with_context(|| format!("cannot listen on {grpc_addr} (gRPC)"))?;
    let grpc_local = grpc_listener.local_addr()?;
    let admin_listener = admin::bind(admin_addr)
        .await
        .with_context(|| format!("cannot listen on {admin_addr} (admin)"))?;
    let admin_local = admin_listener.local_addr()?;
    admin::spawn(agent.clone(), admin_listener);
    let api_listener = tokio::net::TcpListener::bind(api_flags.api_addr)
        .await
        .with_context(|| format!("cannot listen on {} (App Mesh API)", api_flags.api_addr))?;
    let api_local = api_listener.local_addr()?;
    let auth = match (&api_config.credentials, api_config.allow_unauthenticated) {
        (Some(_), _) => "SigV4 with the configured key",
        (None, true) => "none (--allow-unauthenticated)",
        (None, false) => "none configured: reads only",
    };
    api::spawn(
        Api::new(agent.store.clone(), agent.metrics.clone(), api_config),
        api_listener,
    );
    tracing::info!(grpc = %grpc_local, admin = %admin_local, api = %api_local, api_auth = auth, dir = %resources.display(), "ferry-agent serving");
    for (path, addr) in [
        (&grpc_address_path, grpc_local),
        (&admin_address_path, admin_local),
        (&api_flags.api_address_path, api_local),
    ] {
        if let Some(p) = path {
            std::fs::write(p, addr.to_string())
                .with_context(|| format!("cannot write {}", p.display()))?;
        }
    }
    let stopping = agent.clone();
    let (stop_tx, mut stopped) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending::<()>().await,
        }
        tracing::info!("shutting down: closing the proxy streams (the proxies keep serving)");
        stopping.shut_down();
        stop_tx.send_replace(true);
    };
    let server = grpc::serve(agent, grpc_listener, shutdown);
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => r.context("the gRPC server failed")?,
        // Streams end at once; do not wait longer than this for the last ones.
        _ = async {
            stopped.wait_for(|s| *s).await.ok();
            tokio::time::sleep(Duration::from_secs(5)).await;
        } => tracing::warn!("gave up waiting for the last streams to close"),
    }
    Ok(())
}

fn validate(dir: &std::path::Path) -> ExitCode {
    let model = match store::load_dir(dir) {
        Ok(m) => m,
        Err(p) => {
            eprintln!("{p}");
            eprintln!("{}: {} problem(s)", dir.display(), p.0.len());
            return ExitCode::FAILURE;
        }
    };
    let mut failed = false;
    let ids = model.identities();
    for id in &ids {
        let Ok(identity) = Identity::parse(id) else {
            continue;
        };
        match compile::compile(&model, &identity, Options::default()) {
            Ok(c) => {
                for w in c.warnings {
                    eprintln!("{id}: warning: {w}");
                }
            }
            Err(e) => {
                failed = true;
                eprintln!("{id}: cannot be compiled:\n{e}");
            }
        }
    }
    if failed {
        return ExitCode::FAILURE;
    }
    println!(
        "{}: valid: {} resources; proxy identities: {}",
        dir.display(),
        model.len(),
        if ids.is_empty() {
            "none".to_owned()
        } else {
            ids.join(", ")
        }
    );
    ExitCode::SUCCESS
}

fn compiled(
    resources: &std::path::Path,
    node: &str,
    opts: Options,
) -> anyhow::Result<compile::Compiled> {
    let model = store::load_dir(resources).map_err(|p| anyhow::anyhow!("{p}"))?;
    let identity = Identity::parse(node).map_err(|e| anyhow::anyhow!(e))?;
    let c = compile::compile(&model, &identity, opts).map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in &c.warnings {
        eprintln!("warning: {w}");
    }
    Ok(c)
}

fn print_table(
    resources: &std::path::Path,
    node: &str,
    json: bool,
    opts: Options,
) -> anyhow::Result<()> {
    let c = compiled(resources, node, opts)?;
    if json {
        println!("{}", ferry_api::encode_json(&c.table));
    } else {
        print!("{}", ferry_api::encode_yaml(&c.table));
    }
    Ok(())
}

fn run_explain(
    resources: &std::path::Path,
    node: &str,
    request: &str,
    headers: &[String],
    listener: Option<&str>,
) -> anyhow::Result<()> {
    let c = compiled(resources, node, Options::default())?;
    let req = Request::parse(request, headers).map_err(|e| anyhow::anyhow!(e))?;
    let text = explain(&c.table, &req, listener).map_err(|e| anyhow::anyhow!(e))?;
    print!("{text}");
    Ok(())
}
