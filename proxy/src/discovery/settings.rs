//! What a table asks of DNS discovery, validated: the resolver (`dns`: servers, refresh bounds) and
//! each cluster's name (`clusters[].dns`). Errors name the field relative to the message they came
//! from; the table compiler prefixes the path.
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ferry_api::v1;

/// Re-resolution never comes sooner than this after an answer, however low its TTL (App Mesh's
/// Envoy refreshed DNS clusters every 5 s; a 1 s floor follows changes faster at little cost).
pub const DEFAULT_MIN_REFRESH: Duration = Duration::from_secs(1);
/// Nor later than this, however high the TTL: a name's endpoints are never older than a minute.
pub const DEFAULT_MAX_REFRESH: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SettingsError {
    /// The field, relative to the message validated (`servers[0]`, `hostname`).
    pub field: String,
    pub message: String,
}

fn err<T>(field: impl Into<String>, message: impl Into<String>) -> Result<T, SettingsError> {
    Err(SettingsError {
        field: field.into(),
        message: message.into(),
    })
}

/// The floor and ceiling of the re-resolution interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Refresh {
    pub min: Duration,
    pub max: Duration,
}

impl Default for Refresh {
    fn default() -> Self {
        Refresh {
            min: DEFAULT_MIN_REFRESH,
            max: DEFAULT_MAX_REFRESH,
        }
    }
}

impl Refresh {
    /// A TTL clamped to these bounds.
    pub fn clamp(&self, ttl: Duration) -> Duration {
        ttl.clamp(self.min, self.max.max(self.min))
    }
}

/// A cluster's own bounds; each one absent falls back to the table's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RefreshOverride {
    pub min: Option<Duration>,
    pub max: Option<Duration>,
}

impl RefreshOverride {
    pub fn over(&self, table: Refresh) -> Refresh {
        let max = self.max.unwrap_or(table.max);
        Refresh {
            min: self.min.unwrap_or(table.min).min(max),
            max,
        }
    }
}

/// The table's `dns` section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolverSettings {
    /// Empty: the system's /etc/resolv.conf.
    pub servers: Vec<SocketAddr>,
    pub refresh: Refresh,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpPreference {
    V4Only,
    V6Only,
    /// A records; AAAA only when the name has no A record.
    V4Preferred,
    /// AAAA records; A only when the name has no AAAA record.
    V6Preferred,
}

impl IpPreference {
    /// The App Mesh spelling, for messages and `/clusters`.
    pub fn as_str(self) -> &'static str {
        match self {
            IpPreference::V4Only => "IPv4_ONLY",
            IpPreference::V6Only => "IPv6_ONLY",
            IpPreference::V4Preferred => "IPv4_PREFERRED",
            IpPreference::V6Preferred => "IPv6_PREFERRED",
        }
    }

    /// Whether an address of this family may be used at all.
    pub fn allows(self, ip: IpAddr) -> bool {
        match self {
            IpPreference::V4Only => ip.is_ipv4(),
            IpPreference::V6Only => ip.is_ipv6(),
            IpPreference::V4Preferred | IpPreference::V6Preferred => true,
        }
    }
}

impl fmt::Display for IpPreference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseType {
    /// The name stands for one load balancer: the cluster has one endpoint, the first address of
    /// the latest answer, so new connections follow the record (Envoy's logical DNS).
    LoadBalancer,
    /// Every address is an endpoint (Envoy's strict DNS).
    Endpoints,
}

impl ResponseType {
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseType::LoadBalancer => "LOADBALANCER",
            ResponseType::Endpoints => "ENDPOINTS",
        }
    }
}

/// One cluster's `dns` discovery, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameSpec {
    /// Lowercased; a trailing dot is kept (it makes the name fully qualified).
    pub hostname: String,
    pub port: u16,
    pub response_type: ResponseType,
    pub ip_preference: IpPreference,
    pub refresh: RefreshOverride,
}

/// Validates the table's `dns` section (absent: the defaults).
pub fn resolver_settings(d: Option<&v1::DnsResolver>) -> Result<ResolverSettings, SettingsError> {
    let Some(d) = d else {
        return Ok(ResolverSettings::default());
    };
    let servers = d
        .servers
        .iter()
        .enumerate()
        .map(|(i, s)| parse_server(s).or_else(|m| err(format!("servers[{i}]"), m)))
        .collect::<Result<Vec<_>, _>>()?;
    let min = duration(d.min_refresh.as_ref(), "minRefresh")?.unwrap_or(DEFAULT_MIN_REFRESH);
    let max = duration(d.max_refresh.as_ref(), "maxRefresh")?.unwrap_or(DEFAULT_MAX_REFRESH);
    if min > max {
        return err(
            "minRefresh",
            format!("{min:?} is above maxRefresh ({max:?})"),
        );
    }
    Ok(ResolverSettings {
        servers,
        refresh: Refresh { min, max },
    })
}

/// Validates a cluster's `dns` discovery.
pub fn name_spec(d: &v1::DnsDiscovery) -> Result<NameSpec, SettingsError> {
    let hostname = d.hostname.trim().to_ascii_lowercase();
    validate_hostname(&hostname).or_else(|m| err("hostname", m))?;
    let port = match u16::try_from(d.port) {
        Ok(p) if p > 0 => p,
        _ if d.port == 0 => return err("port", "a DNS cluster needs the upstream port (1..65535)"),
        _ => return err("port", format!("{} is not a port (1..65535)", d.port)),
    };
    use v1::dns_discovery::ResponseType as R;
    let response_type = match d.response_type() {
        R::Unspecified | R::Loadbalancer => ResponseType::LoadBalancer,
        R::Endpoints => ResponseType::Endpoints,
    };
    use v1::IpPreference as P;
    let ip_preference = match d.ip_preference() {
        P::Unspecified | P::IPv4Preferred => IpPreference::V4Preferred,
        P::IPv6Preferred => IpPreference::V6Preferred,
        P::IPv4Only => IpPreference::V4Only,
        P::IPv6Only => IpPreference::V6Only,
    };
    if let Ok(ip) = hostname.parse::<IpAddr>()
        && !ip_preference.allows(ip)
    {
        return err(
            "hostname",
            format!("{ip} is not allowed by ipPreference {ip_preference}"),
        );
    }
    let refresh = match &d.refresh {
        None => RefreshOverride::default(),
        Some(r) => {
            let min = duration(r.min.as_ref(), "refresh.min")?;
            let max = duration(r.max.as_ref(), "refresh.max")?;
            if let (Some(min), Some(max)) = (min, max)
                && min > max
            {
                return err(
                    "refresh.min",
                    format!("{min:?} is above refresh.max ({max:?})"),
                );
            }
            RefreshOverride { min, max }
        }
    };
    Ok(NameSpec {
        hostname,
        port,
        response_type,
        ip_preference,
        refresh,
    })
}

/// A DNS server: "ip", "ip:port", "[v6]" or "[v6]:port"; port 53 when omitted.
pub fn parse_server(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("{s:?} is not a DNS server address (ip or ip:port)"))
}

fn validate_hostname(h: &str) -> Result<(), String> {
    if h.is_empty() {
        return Err("a DNS cluster needs a hostname".into());
    }
    if h.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let name = h.strip_suffix('.').unwrap_or(h);
    let labels_ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if labels_ok {
        Ok(())
    } else {
        Err(format!(
            "{h:?} is not a DNS name (letters, digits, '-' and '_' in dot-separated labels; no port)"
        ))
    }
}

fn duration(
    d: Option<&pbjson_types::Duration>,
    field: &str,
) -> Result<Option<Duration>, SettingsError> {
    let Some(d) = d else { return Ok(None) };
    if d.seconds < 0 || d.nanos < 0 || d.nanos >= 1_000_000_000 {
        return err(field, "durations must be positive");
    }
    let d = Duration::new(
        u64::try_from(d.seconds).unwrap_or(0),
        u32::try_from(d.nanos).unwrap_or(0),
    );
    if d.is_zero() {
        return err(field, "must be above zero");
    }
    Ok(Some(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dur(secs: i64) -> Option<pbjson_types::Duration> {
        Some(pbjson_types::Duration {
            seconds: secs,
            nanos: 0,
        })
    }

    #[test]
    fn servers_take_an_optional_port() {
        assert_eq!(
            parse_server("127.0.0.1:5353"),
            Ok("127.0.0.1:5353".parse().unwrap())
        );
        assert_eq!(parse_server("10.0.0.2"), Ok("10.0.0.2:53".parse().unwrap()));
        assert_eq!(
            parse_server("[::1]:5353"),
            Ok("[::1]:5353".parse().unwrap())
        );
        assert_eq!(parse_server("[::1]"), Ok("[::1]:53".parse().unwrap()));
        assert_eq!(parse_server("::1"), Ok("[::1]:53".parse().unwrap()));
        assert!(parse_server("dns.local").is_err());
    }

    #[test]
    fn resolver_defaults_and_errors() {
        assert_eq!(resolver_settings(None), Ok(ResolverSettings::default()));
        let bad = v1::DnsResolver {
            servers: vec!["127.0.0.1".into(), "nope".into()],
            ..Default::default()
        };
        assert_eq!(
            resolver_settings(Some(&bad)).unwrap_err().field,
            "servers[1]"
        );
        let inverted = v1::DnsResolver {
            min_refresh: dur(30),
            max_refresh: dur(5),
            ..Default::default()
        };
        assert_eq!(
            resolver_settings(Some(&inverted)).unwrap_err().field,
            "minRefresh"
        );
    }

    #[test]
    fn names_are_validated() {
        let ok = v1::DnsDiscovery {
            hostname: "Color.Mesh.Local".into(),
            port: 8080,
            ..Default::default()
        };
        let spec = name_spec(&ok).unwrap();
        assert_eq!(spec.hostname, "color.mesh.local");
        assert_eq!(spec.response_type, ResponseType::LoadBalancer);
        assert_eq!(spec.ip_preference, IpPreference::V4Preferred);
        for (hostname, port, field) in [
            ("", 80, "hostname"),
            ("a..b", 80, "hostname"),
            ("host:80", 80, "hostname"),
            ("ok.local", 0, "port"),
            ("ok.local", 70000, "port"),
        ] {
            let d = v1::DnsDiscovery {
                hostname: hostname.into(),
                port,
                ..Default::default()
            };
            assert_eq!(name_spec(&d).unwrap_err().field, field, "{hostname}:{port}");
        }
        let v6_literal_v4_only = v1::DnsDiscovery {
            hostname: "::1".into(),
            port: 80,
            ip_preference: v1::IpPreference::IPv4Only as i32,
            ..Default::default()
        };
        assert!(name_spec(&v6_literal_v4_only).is_err());
    }

    #[test]
    fn overrides_fall_back_to_the_table() {
        let table = Refresh::default();
        let o = RefreshOverride {
            min: None,
            max: Some(Duration::from_millis(500)),
        };
        let r = o.over(table);
        assert_eq!(r.max, Duration::from_millis(500));
        assert_eq!(
            r.min,
            Duration::from_millis(500),
            "the floor never exceeds the ceiling"
        );
        assert_eq!(
            r.clamp(Duration::from_secs(300)),
            Duration::from_millis(500)
        );
        assert_eq!(table.clamp(Duration::ZERO), DEFAULT_MIN_REFRESH);
    }
}
