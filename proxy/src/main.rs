//! ferry-proxy: the command line.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use ferry_proxy::envoy_stats::{StatsCompat, StatsSettings};
use ferry_proxy::sidecar_env::SidecarEnv;
use ferry_proxy::tracing_export::{self, BatchSettings, Exporting, Tracer};
use ferry_proxy::{admin, agent_client, config, demo, server::Proxy};

mod heap_trim;
mod startup_pages;
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, reload, util::SubscriberInitExt};

/// The example served by `ferry-proxy demo` when no --config is given.
const DEMO_TABLE: &str = include_str!("../../examples/standalone.yaml");

#[derive(Parser, Debug)]
#[command(
    name = "ferry-proxy",
    version,
    about = "Ferry's sidecar proxy: HTTP routing from a hot-swappable table"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(flatten)]
    run: RunArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Args, Debug, Clone)]
struct RunArgs {
    /// Routing table file (YAML, or JSON when it ends in .json); watched and hot-swapped.
    #[arg(long, env = "FERRY_CONFIG")]
    config: Option<PathBuf>,
    /// Admin server address [default: 127.0.0.1:9901; 0.0.0.0:$ENVOY_ADMIN_ACCESS_PORT when set].
    #[arg(long, env = "FERRY_ADMIN_ADDR")]
    admin_addr: Option<SocketAddr>,
    /// Write the admin server's bound address to this file (useful with port 0).
    #[arg(long)]
    admin_address_path: Option<PathBuf>,
    /// Worker threads [default: $ENVOY_CONCURRENCY, else the number of cores].
    #[arg(long, env = "FERRY_CONCURRENCY")]
    concurrency: Option<usize>,
    /// Log filter: trace, debug, info, warn, error, off, or a tracing directive list
    /// [default: $ENVOY_LOG_LEVEL, else info].
    #[arg(long, env = "FERRY_LOG_LEVEL")]
    log_level: Option<String>,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT
    /// [default: $LISTENER_DRAIN_WAIT_TIME_S seconds, else 20s].
    #[arg(long, env = "FERRY_DRAIN_TIMEOUT", value_parser = humantime::parse_duration)]
    drain_timeout: Option<Duration>,
    /// DNS servers for DNS-discovered clusters, "ip[:port]" comma-separated (port 53 when omitted).
    /// Wins over the table's dns.servers; default: the system's /etc/resolv.conf.
    #[arg(long, env = "FERRY_DNS_RESOLVER", value_delimiter = ',', value_parser = dns_server, value_name = "ADDR[,ADDR]")]
    dns_resolver: Vec<SocketAddr>,
    /// Also expose Envoy's metric names and labels on /stats/prometheus (`envoy`), or only
    /// Envoy's (`envoy-only`); see README "Metrics".
    #[arg(long, env = "FERRY_STATS_COMPAT", value_enum, default_value = "none")]
    stats_compat: StatsCompat,
    /// Add App Mesh's appmesh_* labels to every series: mesh, virtual node or gateway (from
    /// --node / $APPMESH_RESOURCE_ARN, else the agent's table), listener protocol and port.
    #[arg(
        long,
        env = "ENABLE_ENVOY_STATS_TAGS",
        action = clap::ArgAction::Set,
        value_parser = switch,
        default_value = "false",
        num_args = 0..=1,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    envoy_stats_tags: bool,
    /// Once up, give back the memory of start-up code (see README "Memory").
    #[arg(
        long,
        env = "FERRY_RELEASE_STARTUP_PAGES",
        action = clap::ArgAction::Set,
        value_parser = switch,
        default_value = "true",
        num_args = 0..=1,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    release_startup_pages: bool,
    /// Check the config file (parse, validate, compile) and exit.
    #[arg(long)]
    validate: bool,
    /// Follow ferry-agent at this gRPC URL (http://host:port) instead of a config file
    /// [default: $FERRY_AGENT_URL when no --config is given].
    #[arg(long, env = "FERRY_AGENT", conflicts_with_all = ["config", "validate"], value_name = "URL")]
    agent: Option<String>,
    /// This proxy's identity for the agent: MESH/virtualNode/NAME or MESH/virtualGateway/NAME
    /// (or the resource's ARN) [default: $APPMESH_RESOURCE_ARN, else $APPMESH_VIRTUAL_NODE_NAME].
    #[arg(long, env = "FERRY_NODE", value_name = "ID")]
    node: Option<String>,
    /// Keep the last table accepted from the agent here, and serve it at start while the agent
    /// cannot be reached.
    #[arg(long, env = "FERRY_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Port of the agent's inbound listener (App Mesh's 15000). Default:
    /// $APPMESH_ENVOY_INGRESS_PORT, else the agent's.
    #[arg(long, env = "FERRY_INGRESS_PORT", value_name = "PORT")]
    ingress_port: Option<u16>,
    /// Port of the agent's outbound listener (App Mesh's 15001). Default:
    /// $APPMESH_ENVOY_EGRESS_PORT, else the agent's.
    #[arg(long, env = "FERRY_EGRESS_PORT", value_name = "PORT")]
    egress_port: Option<u16>,
    /// Export a span per HTTP request to this OpenTelemetry collector (OTLP over gRPC,
    /// http://host:4317, https:// for TLS). Without it nothing is traced (headers still pass).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// Share of new traces recorded, 0.0-1.0; a caller's sampled flag wins (parent-based).
    /// Default 1.0, or $XRAY_SAMPLING_RATE when set.
    #[arg(long, env = "FERRY_TRACE_SAMPLING", value_name = "RATE")]
    trace_sampling: Option<f64>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the standalone example with demo upstreams started in-process, and show the split.
    Demo {
        /// Table to serve (default: the built-in copy of examples/standalone.yaml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Requests to send through the proxy at start to show the weighted split.
        #[arg(long, default_value_t = 20)]
        requests: usize,
        /// Admin server address.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin_addr: SocketAddr,
    },
    /// Write (or with --clean remove) App Mesh's iptables interception rules, as its init
    /// container does; takes App Mesh's environment names (APPMESH_IGNORE_UID, APPMESH_APP_PORTS...).
    InitIptables(ferry_proxy::iptables::InterceptArgs),
}

impl RunArgs {
    /// App Mesh's image environment fills what neither a flag nor a FERRY_* variable set.
    fn apply_sidecar_env(&mut self, env: SidecarEnv) {
        self.log_level = self.log_level.take().or(env.log_level);
        self.admin_addr = self.admin_addr.or(env.admin_addr);
        self.concurrency = self.concurrency.or(env.concurrency);
        self.drain_timeout = self.drain_timeout.or(env.drain_timeout);
        if self.config.is_none() && !self.validate {
            self.agent = self.agent.take().or(env.agent_url);
        }
        self.node = self.node.take().or(env.node);
    }

    fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9901)))
    }

    fn drain_timeout(&self) -> Duration {
        self.drain_timeout.unwrap_or(Duration::from_secs(20))
    }
}

/// An on/off setting as App Mesh's environment spells it: `1`, `true`, `yes`, `on`; or `0`,
/// `false`, `no`, `off`, or empty (an ECS task definition may set a variable to "").
fn switch(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        other => Err(format!(
            "{other:?} is not 1/0, true/false, yes/no or on/off"
        )),
    }
}

fn dns_server(s: &str) -> Result<SocketAddr, String> {
    ferry_proxy::discovery::settings::parse_server(s)
}

fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    // Interception setup needs no runtime and no logging: it runs iptables and exits.
    if let Some(Command::InitIptables(args)) = &cli.command {
        return ferry_proxy::iptables::run(args);
    }
    ferry_proxy::server::after_tables_freed(heap_trim::release);
    if cli.command.is_none() {
        let env = SidecarEnv::from_process().context("App Mesh environment")?;
        cli.run.apply_sidecar_env(env);
    }
    let level = match &cli.command {
        Some(Command::Demo { .. } | Command::InitIptables(_)) => "info".to_owned(),
        None => cli
            .run
            .log_level
            .clone()
            .unwrap_or_else(|| "info".to_owned()),
    };
    let filter =
        EnvFilter::try_new(&level).with_context(|| format!("invalid --log-level {level:?}"))?;
    let (filter, reload_handle) = reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    if cli.command.is_none() {
        for name in ferry_proxy::sidecar_env::ignored_variables() {
            tracing::warn!(
                variable = name,
                "App Mesh setting not supported by ferry-proxy: ignored"
            );
        }
    }
    let set_level: admin::SetLogLevel = Arc::new(move |l: &str| {
        let f = EnvFilter::try_new(l).map_err(|e| format!("invalid level {l:?}: {e}"))?;
        reload_handle.reload(f).map_err(|e| e.to_string())
    });

    let workers = cli
        .run
        .concurrency
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    // One worker is one thread: a current-thread runtime serves it without the multi-thread
    // scheduler's cross-thread queues and atomics (~5% more requests per second at one worker in
    // benches/load). Table decoding and compiling run on the blocking pool either way.
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Some(Command::Demo {
                config,
                requests,
                admin_addr,
            }) => run_demo(config, requests, admin_addr, set_level).await,
            Some(Command::InitIptables(args)) => ferry_proxy::iptables::run(&args),
            None => run(cli.run, set_level).await,
        }
    })
}

async fn run(args: RunArgs, set_level: admin::SetLogLevel) -> anyhow::Result<()> {
    if let Some(url) = args.agent.clone() {
        return run_agent(args, url, set_level).await;
    }
    // Checked here rather than by clap: the agent may come from $FERRY_AGENT_URL.
    for (given, flag) in [
        (args.state_dir.is_some(), "--state-dir"),
        (args.ingress_port.is_some(), "--ingress-port"),
        (args.egress_port.is_some(), "--egress-port"),
    ] {
        if given {
            bail!("{flag} only applies with --agent URL (or FERRY_AGENT_URL)");
        }
    }
    let Some(config_path) = args.config.clone() else {
        bail!("--config FILE or --agent URL is required (or try `ferry-proxy demo`)");
    };
    let proxy =
        Proxy::with_dns_servers(args.dns_resolver.clone()).with_stats(stats_settings(&args));
    // A --validate run exports nothing.
    let tracing = if args.validate {
        None
    } else {
        start_tracing(&args, &proxy)?
    };
    let proxy = Arc::new(proxy.with_tracer(tracing.as_ref().map(|(t, _)| Arc::clone(t))));
    if args.validate {
        // Binds nothing: the file may be the one a running proxy serves.
        let version = config::check_file(&proxy, &config_path)
            .await
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        println!("{}: valid (version {version})", config_path.display());
        return Ok(());
    }
    let applied = match config::apply_file(&proxy, &config_path).await {
        Ok(a) => a,
        Err(e) => bail!("invalid configuration: {e}"),
    };
    let version = &applied.version;
    tracing::info!(file = %config_path.display(), %version, "routing table loaded");
    // Watched before anyone is told the proxy is up (the admin address file, /ready serving):
    // an edit made as soon as it is up is seen.
    let _watcher = config::watch(Arc::clone(&proxy), config_path.clone(), &applied)
        .with_context(|| format!("cannot watch {}", config_path.display()))?;
    let admin_addr = admin::spawn(args.admin_addr(), Arc::clone(&proxy), set_level)
        .await
        .with_context(|| format!("cannot start the admin server on {}", args.admin_addr()))?;
    tracing::info!(address = %admin_addr, "admin server listening");
    if let Some(p) = &args.admin_address_path {
        std::fs::write(p, admin_addr.to_string())
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    if args.release_startup_pages {
        release_startup_pages();
    }
    wait_for_shutdown(&proxy).await?;
    shutdown(&proxy, args.drain_timeout(), tracing.map(|(_, e)| e)).await;
    Ok(())
}

/// See `startup_pages`: called once the proxy serves its first table.
fn release_startup_pages() {
    match startup_pages::release() {
        Ok(bytes) => tracing::debug!(kib = bytes / 1024, "start-up pages released"),
        // Kernels before 5.4 have no MADV_PAGEOUT: the pages simply stay.
        Err(e) => tracing::debug!("start-up pages not released: {e}"),
    }
}

/// How /stats/prometheus names and labels series; the node identity feeds the appmesh_* labels.
fn stats_settings(args: &RunArgs) -> StatsSettings {
    StatsSettings {
        compat: args.stats_compat,
        tags: args.envoy_stats_tags,
        // With App Mesh's environment applied (APPMESH_RESOURCE_ARN, APPMESH_VIRTUAL_NODE_NAME).
        node: args.node.clone(),
    }
}

/// Agent mode: tables come from ferry-agent over gRPC (see `agent_client`).
async fn run_agent(
    args: RunArgs,
    url: String,
    set_level: admin::SetLogLevel,
) -> anyhow::Result<()> {
    let node = args.node.clone().context(
        "--node ID (or APPMESH_RESOURCE_ARN) is required with --agent: MESH/virtualNode/NAME or MESH/virtualGateway/NAME",
    )?;
    let env_port = |name: &str| -> anyhow::Result<Option<u16>> {
        match std::env::var(name) {
            Ok(v) => Ok(Some(
                v.parse()
                    .with_context(|| format!("{name}={v:?} is not a port"))?,
            )),
            Err(_) => Ok(None),
        }
    };
    let cfg = agent_client::AgentConfig {
        url,
        node,
        state_dir: args.state_dir.clone(),
        ingress_port: match args.ingress_port {
            Some(p) => Some(p),
            None => env_port("APPMESH_ENVOY_INGRESS_PORT")?,
        },
        egress_port: match args.egress_port {
            Some(p) => Some(p),
            None => env_port("APPMESH_ENVOY_EGRESS_PORT")?,
        },
        instance: std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_owned())
            .unwrap_or_default(),
    };
    let proxy =
        Proxy::with_dns_servers(args.dns_resolver.clone()).with_stats(stats_settings(&args));
    let tracing = start_tracing(&args, &proxy)?;
    let proxy = Arc::new(proxy.with_tracer(tracing.as_ref().map(|(t, _)| Arc::clone(t))));
    agent_client::load_state(&proxy, &cfg).await;
    let admin_addr = admin::spawn(args.admin_addr(), Arc::clone(&proxy), set_level)
        .await
        .with_context(|| format!("cannot start the admin server on {}", args.admin_addr()))?;
    tracing::info!(address = %admin_addr, agent = %cfg.url, node = %cfg.node, "admin server listening; following the agent");
    if let Some(p) = &args.admin_address_path {
        std::fs::write(p, admin_addr.to_string())
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    let follower = agent_client::spawn(Arc::clone(&proxy), cfg);
    if args.release_startup_pages {
        // After the first table from the agent (or the saved one) is serving.
        let proxy = Arc::clone(&proxy);
        tokio::spawn(async move {
            while !proxy.is_ready() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            release_startup_pages();
        });
    }
    wait_for_shutdown(&proxy).await?;
    follower.abort();
    shutdown(&proxy, args.drain_timeout(), tracing.map(|(_, e)| e)).await;
    Ok(())
}

async fn run_demo(
    config_path: Option<PathBuf>,
    requests: usize,
    admin_addr: SocketAddr,
    set_level: admin::SetLogLevel,
) -> anyhow::Result<()> {
    let (name, text) = match &config_path {
        Some(p) => (
            p.display().to_string(),
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
        ),
        None => (
            "examples/standalone.yaml (built in)".to_owned(),
            DEMO_TABLE.to_owned(),
        ),
    };
    let format = config_path
        .as_deref()
        .map_or(ferry_api::Format::Yaml, ferry_api::Format::from_path);
    let table = ferry_api::decode(&text, format, &name)?;
    for (addr, cluster) in demo::demo_endpoints(&table) {
        demo::spawn_upstream(addr, cluster.clone())
            .await
            .with_context(|| format!("cannot start the demo upstream {cluster} on {addr}"))?;
        println!("demo upstream {cluster:>8} on http://{addr}");
    }
    let proxy = Arc::new(Proxy::new());
    config::apply_text(&proxy, &name, &text, format).await?;
    let admin_addr = admin::spawn(admin_addr, Arc::clone(&proxy), set_level).await?;
    let listeners = proxy.listeners().await;
    for l in &listeners {
        println!("ferry-proxy listener {} on http://{}", l.name, l.address);
    }
    println!("admin on http://{admin_addr} (try /stats/prometheus, /config_dump, /clusters)");
    if let Some(first) = listeners.first() {
        demo::show_split(&format!("http://{}/", first.address), requests).await?;
        println!(
            "\ntry: curl -i http://{}/   (Ctrl-C to stop)",
            first.address
        );
    }
    wait_for_shutdown(&proxy).await?;
    shutdown(&proxy, Duration::from_secs(5), None).await;
    Ok(())
}

async fn wait_for_shutdown(proxy: &Proxy) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = int.recv() => tracing::info!("SIGINT: draining"),
        _ = proxy.shutdown_requested() => tracing::info!("/quitquitquit: draining"),
    }
    Ok(())
}

async fn shutdown(proxy: &Proxy, drain_timeout: Duration, spans: Option<Exporting>) {
    if proxy.drain(drain_timeout).await {
        tracing::info!("drained; exiting");
    } else {
        tracing::warn!(timeout = ?drain_timeout, "drain timeout reached with requests still in flight; exiting");
    }
    proxy.flush_logs(Duration::from_secs(2)).await;
    if let Some(spans) = spans {
        spans.shutdown(Duration::from_secs(2)).await;
    }
}

/// Starts span export when --otlp-endpoint (OTEL_EXPORTER_OTLP_ENDPOINT) is set. service.name is
/// $OTEL_SERVICE_NAME, else the node identity (App Mesh's `MESH/NAME`), else "ferry-proxy".
fn start_tracing(
    args: &RunArgs,
    proxy: &Proxy,
) -> anyhow::Result<Option<(Arc<Tracer>, Exporting)>> {
    let Some(endpoint) = args.otlp_endpoint.clone().filter(|e| !e.trim().is_empty()) else {
        return Ok(None);
    };
    let sampling = match args.trace_sampling {
        Some(rate) => rate,
        None => match std::env::var("XRAY_SAMPLING_RATE") {
            Ok(v) => v
                .trim()
                .parse()
                .with_context(|| format!("XRAY_SAMPLING_RATE={v:?} is not a rate"))?,
            Err(_) => 1.0,
        },
    };
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let insecure = env("OTEL_EXPORTER_OTLP_TRACES_INSECURE")
        .or_else(|| env("OTEL_EXPORTER_OTLP_INSECURE"))
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let endpoint = tracing_export::endpoint_with_scheme(&endpoint, insecure);
    let service_name = env("OTEL_SERVICE_NAME")
        .or_else(|| {
            args.node
                .clone()
                .or_else(|| env("APPMESH_RESOURCE_ARN"))
                .map(|n| tracing_export::service_name_for_node(&n))
        })
        .unwrap_or_else(|| "ferry-proxy".to_owned());
    let settings = tracing_export::Settings {
        endpoint: endpoint.clone(),
        sampling,
        service_name: service_name.clone(),
        batch: BatchSettings::from_env(env)?,
    };
    let started = Tracer::start(settings, proxy.metrics.registry())?;
    tracing::info!(%endpoint, sampling, service = %service_name, "exporting spans over OTLP");
    Ok(Some(started))
}
