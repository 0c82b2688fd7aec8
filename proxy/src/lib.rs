//! ferry-proxy: the data plane. A routing table (ferry-api) is compiled into a runtime table that
//! the request path reads through arc-swap guards, without locks.
#![forbid(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod agent_client;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod discovery;
pub mod envoy_stats;
pub mod flags;
pub mod http;
pub mod iptables;
pub mod metrics;
mod read_scratch;
pub mod resilience;
pub mod route;
pub mod server;
pub mod sidecar_env;
#[cfg(target_os = "linux")]
mod splice;
pub mod table;
pub mod tcp;
pub mod tls;
pub mod tracing_export;
