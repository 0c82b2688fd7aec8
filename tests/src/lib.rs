//! Test harness for Ferry's end-to-end tests: real upstream servers (HTTP/1.1, HTTP/2, WebSocket)
//! on loopback, the real `ferry-proxy` binary run as a child process, HTTP clients, and a DNS
//! server whose records a test changes while the proxy runs.
//!
//! Every socket is bound to port 0 so tests run in parallel; the proxy reports its admin address
//! through `--admin-address-path` and its listeners' bound addresses on `/listeners`.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step should fail loudly

pub mod agent;
pub mod client;
pub mod dns;
pub mod load;
pub mod opens;
pub mod prom;
pub mod proxy;
pub mod scripted;
pub mod tcp;
pub mod tls;
pub mod upstream;

pub use agent::{AgentProcess, AgentProxy};
pub use client::{Client, Reply};
pub use dns::DnsServer;
pub use load::Load;
pub use proxy::ProxyProcess;
pub use upstream::{Upstream, UpstreamProtocol, WsEchoUpstream};

/// A routing-table YAML with one listener (`web`, port 0) whose virtual host `*` has `routes`,
/// and the given `clusters` (each a name and its upstream addresses).
pub fn table_yaml(routes: &str, clusters: &[(&str, &[std::net::SocketAddr], &str)]) -> String {
    let mut out = String::from(
        "listeners:\n  - name: web\n    address: 127.0.0.1:0\n    virtualHosts:\n      - name: all\n        domains: [\"*\"]\n        routes:\n",
    );
    for line in routes.lines() {
        out.push_str("          ");
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("clusters:\n");
    for (name, addrs, protocol) in clusters {
        out.push_str(&format!(
            "  - name: {name}\n    protocol: {protocol}\n    staticEndpoints:\n      endpoints:\n"
        ));
        for a in *addrs {
            out.push_str(&format!("        - address: {a}\n"));
        }
        if addrs.is_empty() {
            out.push_str("        []\n");
        }
    }
    out
}

/// The status code of a raw HTTP/1.x response's text (0 when there is none: nothing came back).
pub fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
