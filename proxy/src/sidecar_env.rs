//! App Mesh's Envoy image environment, read as ferry-proxy's defaults, so that an ECS task
//! definition or a Kubernetes pod spec written for `aws-appmesh-envoy` runs with only the image
//! changed. Flags and Ferry's own `FERRY_*` variables win over these; these win over the built-in
//! defaults.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// A variable is set to something Ferry cannot use: refusing to start is better than running with
/// a setting other than the one the operator wrote.
#[derive(Debug, thiserror::Error)]
#[error("{name}={value:?}: {reason}")]
pub struct EnvError {
    pub name: &'static str,
    pub value: String,
    pub reason: String,
}

/// What the App Mesh environment says, each `None` when its variable is unset or empty.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SidecarEnv {
    /// `ENVOY_LOG_LEVEL`, as a tracing filter.
    pub log_level: Option<String>,
    /// `ENVOY_ADMIN_ACCESS_PORT`: the admin server on every address, as App Mesh's image binds it
    /// (`ENVOY_ADMIN_ACCESS_ENABLE_IPV6` for `[::]`), so Prometheus and the ECS/Kubernetes health
    /// checks reach it. The admin's mutating endpoints still answer loopback clients only.
    pub admin_addr: Option<SocketAddr>,
    /// `ENVOY_CONCURRENCY`: worker threads.
    pub concurrency: Option<usize>,
    /// `LISTENER_DRAIN_WAIT_TIME_S` (5–110, as App Mesh allows): how long in-flight requests may
    /// take after SIGTERM.
    pub drain_timeout: Option<Duration>,
    /// `FERRY_AGENT_URL`: the agent to follow.
    pub agent_url: Option<String>,
    /// `APPMESH_RESOURCE_ARN`, else `APPMESH_VIRTUAL_NODE_NAME` (older images:
    /// `mesh/MESH/virtualNode/NAME`): the proxy's identity.
    pub node: Option<String>,
}

impl SidecarEnv {
    /// Reads the process environment.
    pub fn from_process() -> Result<SidecarEnv, EnvError> {
        SidecarEnv::read(|name| std::env::var(name).ok())
    }

    /// Reads variables through `get` (a test passes its own).
    pub fn read(get: impl Fn(&str) -> Option<String>) -> Result<SidecarEnv, EnvError> {
        let var = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let bad = |name: &'static str, value: &str, reason: &str| EnvError {
            name,
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let log_level = match var("ENVOY_LOG_LEVEL") {
            None => None,
            Some(v) => Some(
                log_level(&v)
                    .ok_or_else(|| {
                        bad(
                            "ENVOY_LOG_LEVEL",
                            &v,
                            "expected trace, debug, info, warning, error, critical or off",
                        )
                    })?
                    .to_owned(),
            ),
        };
        let admin_addr = match var("ENVOY_ADMIN_ACCESS_PORT") {
            None => None,
            Some(v) => {
                let port: u16 = v
                    .parse()
                    .map_err(|_| bad("ENVOY_ADMIN_ACCESS_PORT", &v, "not a port"))?;
                let ipv6 = var("ENVOY_ADMIN_ACCESS_ENABLE_IPV6")
                    .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true"));
                let ip = if ipv6 {
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                } else {
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                };
                Some(SocketAddr::new(ip, port))
            }
        };
        let concurrency = match var("ENVOY_CONCURRENCY") {
            None => None,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n >= 1 => Some(n),
                _ => {
                    return Err(bad(
                        "ENVOY_CONCURRENCY",
                        &v,
                        "expected a number of threads, 1 or more",
                    ));
                }
            },
        };
        let drain_timeout = match var("LISTENER_DRAIN_WAIT_TIME_S") {
            None => None,
            Some(v) => match v.parse::<u64>() {
                Ok(s) if (5..=110).contains(&s) => Some(Duration::from_secs(s)),
                _ => {
                    return Err(bad(
                        "LISTENER_DRAIN_WAIT_TIME_S",
                        &v,
                        "expected whole seconds from 5 to 110, as App Mesh allows",
                    ));
                }
            },
        };
        let node = var("APPMESH_RESOURCE_ARN").or_else(|| var("APPMESH_VIRTUAL_NODE_NAME"));
        Ok(SidecarEnv {
            log_level,
            admin_addr,
            concurrency,
            drain_timeout,
            agent_url: var("FERRY_AGENT_URL"),
            node,
        })
    }
}

/// App Mesh image variables that Ferry does not act on. Each one set is logged as a warning at
/// start, so nobody believes it took effect.
const NOT_SUPPORTED: &[&str] = &[
    "ENABLE_ENVOY_XRAY_TRACING",
    "ENABLE_ENVOY_DATADOG_TRACING",
    "ENABLE_ENVOY_JAEGER_TRACING",
    "ENVOY_TRACING_CFG_FILE",
    "ENABLE_ENVOY_DOG_STATSD",
    "ENVOY_STATS_CONFIG_FILE",
    "ENVOY_STATS_SINKS_CFG_FILE",
    "APPMESH_METRIC_EXTENSION_VERSION",
    "ENVOY_INITIAL_FETCH_TIMEOUT",
    "ENVOY_ADMIN_ACCESS_LOG_FILE",
];

/// The App Mesh variables set in this process that Ferry ignores.
pub fn ignored_variables() -> Vec<&'static str> {
    NOT_SUPPORTED
        .iter()
        .copied()
        .filter(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
        .collect()
}

/// Envoy's level names as tracing filter levels (Envoy's `warning` and `critical` have no tracing
/// twin: `warn` and `error` are the nearest).
fn log_level(envoy: &str) -> Option<&'static str> {
    Some(match envoy.to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "info" => "info",
        "warning" | "warn" => "warn",
        "error" | "critical" => "error",
        "off" => "off",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<SidecarEnv, EnvError> {
        SidecarEnv::read(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn an_app_mesh_task_definitions_environment() {
        let env = read(&[
            (
                "APPMESH_RESOURCE_ARN",
                "arn:aws:appmesh:us-west-2:111122223333:mesh/m/virtualNode/web",
            ),
            ("ENVOY_LOG_LEVEL", "warning"),
            ("ENVOY_ADMIN_ACCESS_PORT", "9901"),
            ("ENVOY_CONCURRENCY", "2"),
            ("LISTENER_DRAIN_WAIT_TIME_S", "30"),
            ("FERRY_AGENT_URL", "http://agent:9000"),
        ])
        .unwrap();
        assert_eq!(
            env,
            SidecarEnv {
                log_level: Some("warn".into()),
                admin_addr: Some("0.0.0.0:9901".parse().unwrap()),
                concurrency: Some(2),
                drain_timeout: Some(Duration::from_secs(30)),
                agent_url: Some("http://agent:9000".into()),
                node: Some("arn:aws:appmesh:us-west-2:111122223333:mesh/m/virtualNode/web".into()),
            }
        );
    }

    #[test]
    fn nothing_set_is_all_defaults_and_the_old_node_name_is_read() {
        assert_eq!(read(&[]).unwrap(), SidecarEnv::default());
        let env = read(&[
            ("APPMESH_VIRTUAL_NODE_NAME", "mesh/m/virtualNode/web"),
            ("ENVOY_ADMIN_ACCESS_PORT", "9901"),
            ("ENVOY_ADMIN_ACCESS_ENABLE_IPV6", "true"),
            ("ENVOY_LOG_LEVEL", "critical"),
        ])
        .unwrap();
        assert_eq!(env.node.as_deref(), Some("mesh/m/virtualNode/web"));
        assert_eq!(env.admin_addr, Some("[::]:9901".parse().unwrap()));
        assert_eq!(env.log_level.as_deref(), Some("error"));
    }

    #[test]
    fn bad_values_are_refused_naming_the_variable() {
        for (name, value, words) in [
            ("ENVOY_LOG_LEVEL", "loud", "expected trace, debug"),
            ("ENVOY_ADMIN_ACCESS_PORT", "99999", "not a port"),
            ("ENVOY_CONCURRENCY", "0", "1 or more"),
            ("LISTENER_DRAIN_WAIT_TIME_S", "300", "from 5 to 110"),
        ] {
            let e = read(&[(name, value)]).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("{name}=\"{value}\": ")) && e.contains(words),
                "{e}"
            );
        }
    }
}
