//! Asking DNS: building the hickory resolver (named servers, or the system's /etc/resolv.conf; the
//! system's /etc/hosts either way), and resolving one name under an IP preference into addresses
//! and the time they stay valid.
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RecordType;

use super::settings::IpPreference;

/// How long one query waits for a server's answer, and how often it is retried, when the servers
/// are named explicitly (the system's resolv.conf options apply otherwise). Short, so that a DNS
/// outage is seen and logged within seconds; the endpoints stay meanwhile.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
const QUERY_ATTEMPTS: usize = 2;
/// A whole resolution (both families, every server, every retry) gives up after this.
pub const RESOLUTION_DEADLINE: Duration = Duration::from_secs(15);

/// The TTL given to an IP literal used as a hostname (it never changes; the ceiling applies).
const LITERAL_TTL: Duration = Duration::from_secs(86_400);

/// Builds a resolver for `servers`, or for the system's configuration when there are none.
pub fn build(servers: &[SocketAddr]) -> Result<TokioResolver, String> {
    let mut builder = if servers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| {
            format!("cannot read the system resolver configuration (/etc/resolv.conf): {e}")
        })?
    } else {
        let name_servers = servers
            .iter()
            .map(|s| {
                let mut ns = NameServerConfig::udp_and_tcp(s.ip());
                for c in &mut ns.connections {
                    c.port = s.port();
                }
                ns
            })
            .collect();
        let mut builder = TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(name_servers),
            TokioRuntimeProvider::default(),
        );
        let opts = builder.options_mut();
        opts.timeout = QUERY_TIMEOUT;
        opts.attempts = QUERY_ATTEMPTS;
        builder
    };
    // The resolver's own cache would only serve answers older than the TTL we re-resolve on:
    // each name has a single resolution loop, which clears its entries before asking (see
    // `lookup`). Keep the cache small.
    builder.options_mut().cache_size = 64;
    builder
        .build()
        .map_err(|e| format!("cannot build the DNS resolver: {e}"))
}

/// A successful resolution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// In answer order, without duplicates.
    pub addrs: Vec<IpAddr>,
    /// How long the answer stays valid (the lowest record TTL).
    pub ttl: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// NXDOMAIN: the name does not exist.
    NoSuchName,
    /// The name exists but has no record of the families asked.
    NoRecords,
    /// No server answered in time.
    Timeout,
    /// A server answered with an error (SERVFAIL, REFUSED, ...) or the query could not be sent.
    Error,
}

/// Why a resolution failed, in a sentence that names the host.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ResolveError {
    pub kind: FailureKind,
    pub message: String,
}

/// Resolves `host` under `pref`: the preferred family first, the other only if the first has no
/// record (an error such as a timeout is not a reason to switch families).
pub async fn resolve(
    resolver: &TokioResolver,
    host: &str,
    pref: IpPreference,
) -> Result<Answer, ResolveError> {
    if let Ok(ip) = host.trim_end_matches('.').parse::<IpAddr>() {
        return Ok(Answer {
            addrs: vec![ip],
            ttl: LITERAL_TTL,
        });
    }
    use RecordType::{A, AAAA};
    let (first, fallback) = match pref {
        IpPreference::V4Only => (A, None),
        IpPreference::V6Only => (AAAA, None),
        IpPreference::V4Preferred => (A, Some(AAAA)),
        IpPreference::V6Preferred => (AAAA, Some(A)),
    };
    let first_err = match lookup(resolver, host, first).await {
        Ok(a) => return Ok(a),
        Err(e) => e,
    };
    let Some(fallback) = fallback else {
        return Err(explain(host, pref, first_err));
    };
    if !matches!(first_err.kind, FailureKind::NoRecords) {
        return Err(explain(host, pref, first_err));
    }
    lookup(resolver, host, fallback)
        .await
        .map_err(|e| explain(host, pref, e))
}

/// Adds the preference to a "no records" message, since it decides which families were asked.
fn explain(host: &str, pref: IpPreference, e: ResolveError) -> ResolveError {
    match e.kind {
        FailureKind::NoRecords => {
            let families = match pref {
                IpPreference::V4Only => "A record",
                IpPreference::V6Only => "AAAA record",
                IpPreference::V4Preferred | IpPreference::V6Preferred => "A or AAAA record",
            };
            ResolveError {
                kind: FailureKind::NoRecords,
                message: format!("{host} has no {families} (ipPreference {pref})"),
            }
        }
        _ => e,
    }
}

/// One query for one record type, always asked of the servers (never the resolver's cache).
async fn lookup(
    resolver: &TokioResolver,
    host: &str,
    rtype: RecordType,
) -> Result<Answer, ResolveError> {
    resolver.clear_lookup_cache(host, rtype);
    let asked = Instant::now();
    let lookup = resolver
        .lookup(host, rtype)
        .await
        .map_err(|e| classify(host, rtype, e))?;
    let mut addrs: Vec<IpAddr> = Vec::new();
    for ip in lookup.answers().iter().filter_map(|r| r.data.ip_addr()) {
        let right_family = match rtype {
            RecordType::A => ip.is_ipv4(),
            _ => ip.is_ipv6(),
        };
        if right_family && !addrs.contains(&ip) {
            addrs.push(ip);
        }
    }
    if addrs.is_empty() {
        return Err(ResolveError {
            kind: FailureKind::NoRecords,
            message: format!("{host} has no {rtype} record"),
        });
    }
    Ok(Answer {
        addrs,
        ttl: lookup.valid_until().saturating_duration_since(asked),
    })
}

fn classify(host: &str, rtype: RecordType, e: NetError) -> ResolveError {
    let (kind, message) = match &e {
        NetError::Dns(DnsError::NoRecordsFound(nr))
            if nr.response_code == ResponseCode::NXDomain =>
        {
            (
                FailureKind::NoSuchName,
                format!("{host} does not exist (NXDOMAIN)"),
            )
        }
        NetError::Dns(DnsError::NoRecordsFound(_)) => (
            FailureKind::NoRecords,
            format!("{host} has no {rtype} record"),
        ),
        NetError::Dns(DnsError::ResponseCode(code)) => (
            FailureKind::Error,
            format!("the DNS server answered {} for {host}", Code(*code)),
        ),
        NetError::Timeout => (
            FailureKind::Timeout,
            format!("no DNS server answered for {host} (timed out)"),
        ),
        other => (
            FailureKind::Error,
            format!("resolving {host} failed: {other}"),
        ),
    };
    ResolveError { kind, message }
}

/// A response code as dig prints it (SERVFAIL, REFUSED).
struct Code(ResponseCode);

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            ResponseCode::ServFail => f.write_str("SERVFAIL"),
            ResponseCode::Refused => f.write_str("REFUSED"),
            ResponseCode::NXDomain => f.write_str("NXDOMAIN"),
            ResponseCode::FormErr => f.write_str("FORMERR"),
            ResponseCode::NotImp => f.write_str("NOTIMP"),
            other => write!(f, "{other}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ip_literals_resolve_to_themselves() {
        let r = build(&["127.0.0.1:9".parse().unwrap()]).unwrap();
        let a = resolve(&r, "10.1.2.3", IpPreference::V4Only).await.unwrap();
        assert_eq!(a.addrs, ["10.1.2.3".parse::<IpAddr>().unwrap()]);
    }

    #[tokio::test]
    async fn hosts_file_entries_resolve() {
        // /etc/hosts names localhost on every Linux this runs on.
        let r = build(&["127.0.0.1:9".parse().unwrap()]).unwrap();
        let a = resolve(&r, "localhost", IpPreference::V4Only)
            .await
            .unwrap();
        assert!(a.addrs.iter().all(|ip| ip.is_loopback() && ip.is_ipv4()));
    }
}
