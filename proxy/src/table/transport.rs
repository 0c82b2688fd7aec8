//! Compiles the transport parts of a table: TLS on listeners and clusters, and TCP routes.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ferry_api::v1;

use super::Transparent;
use super::compile::{CompileError, err, timeout, weighted_targets};
use crate::cluster::{Cluster, ClusterSettings, LbPolicy, UpstreamProtocol};
use crate::metrics::Metrics;
use crate::route::{PathMatch, Rewrite, Route, RouteAction, WeightedTargets};
use crate::tcp::{TcpRoute, TcpRoutes};
use crate::tls::client::{ClientTls, ClientTlsSpec};
use crate::tls::server::{Mode, ServerTls, ServerTlsSpec};

fn alpn(configured: &[String], default: &[&str]) -> Vec<Vec<u8>> {
    if configured.is_empty() {
        default.iter().map(|p| p.as_bytes().to_vec()).collect()
    } else {
        configured.iter().map(|p| p.as_bytes().to_vec()).collect()
    }
}

/// A listener's TLS termination; `None` when its mode is DISABLED (or unset).
pub fn server_tls(
    t: &v1::ServerTls,
    tcp: bool,
    path: &str,
    listener: &str,
    metrics: &Metrics,
) -> Result<Option<ServerTls>, CompileError> {
    use v1::server_tls::Mode as M;
    let mode = match t.mode() {
        M::Unspecified | M::Disabled => return Ok(None),
        M::Strict => Mode::Strict,
        M::Permissive => Mode::Permissive,
    };
    if t.certificate_chain.is_empty() {
        return err(
            format!("{path}.certificateChain"),
            "TLS needs a certificate chain file",
        );
    }
    if t.private_key.is_empty() {
        return err(format!("{path}.privateKey"), "TLS needs a private key file");
    }
    let validation = t.validation.as_ref();
    let trust_chain = validation
        .map(|v| v.trust_chain.clone())
        .filter(|s| !s.is_empty());
    if validation.is_some() && trust_chain.is_none() {
        return err(
            format!("{path}.validation.trustChain"),
            "client validation needs a trust bundle file",
        );
    }
    let spec = ServerTlsSpec {
        mode,
        certificate_chain: t.certificate_chain.clone(),
        private_key: t.private_key.clone(),
        trust_chain,
        allowed_sans: validation
            .map(|v| v.subject_alt_names.clone())
            .unwrap_or_default(),
        alpn: alpn(&t.alpn, if tcp { &[] } else { &["h2", "http/1.1"] }),
    };
    ServerTls::new(spec, listener, metrics.tls_failures())
        .map(Some)
        .or_else(|e| err(path, e.to_string()))
}

/// A cluster's TLS origination; `None` when it has none or `enforce` is false.
pub fn client_tls(
    t: &v1::ClientTls,
    cluster: &v1::Cluster,
    protocol: UpstreamProtocol,
    path: &str,
    metrics: &Metrics,
) -> Result<Option<ClientTls>, CompileError> {
    if t.enforce == Some(false) {
        return Ok(None);
    }
    let Some(validation) = t.validation.as_ref().filter(|v| !v.trust_chain.is_empty()) else {
        return err(
            format!("{path}.validation.trustChain"),
            "TLS origination needs a trust bundle to validate the server",
        );
    };
    if validation.subject_alt_names.iter().any(|s| s.contains('*')) {
        return err(
            format!("{path}.validation.subjectAlternativeNames"),
            "wildcard SANs are not allowed on an enforced TLS policy (as App Mesh)",
        );
    }
    let ports = t
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            u16::try_from(*p).ok().filter(|p| *p > 0).map_or_else(
                || err(format!("{path}.ports[{i}]"), format!("{p} is not a port")),
                Ok,
            )
        })
        .collect::<Result<Vec<u16>, _>>()?;
    let (certificate_chain, private_key) =
        match (t.certificate_chain.is_empty(), t.private_key.is_empty()) {
            (true, true) => (None, None),
            (false, false) => (
                Some(t.certificate_chain.clone()),
                Some(t.private_key.clone()),
            ),
            _ => {
                return err(
                    format!("{path}.certificateChain"),
                    "a client certificate needs both certificateChain and privateKey",
                );
            }
        };
    let default_alpn: &[&str] = match protocol {
        UpstreamProtocol::Http2 => &["h2"],
        UpstreamProtocol::Http1 => &["http/1.1"],
        UpstreamProtocol::Tcp => &[],
    };
    let spec = ClientTlsSpec {
        ports,
        trust_chain: validation.trust_chain.clone(),
        sans: validation.subject_alt_names.clone(),
        certificate_chain,
        private_key,
        sni: (!t.sni.is_empty()).then(|| t.sni.clone()),
        alpn: alpn(&t.alpn, default_alpn),
    };
    ClientTls::new(spec, &cluster.name, metrics.upstream_tls_failures())
        .map(Some)
        .or_else(|e| err(path, e.to_string()))
}

/// A TCP listener's routes.
pub fn tcp_routes(
    l: &v1::Listener,
    path: &str,
    clusters: &HashMap<String, Arc<Cluster>>,
    listener_idle: Option<Duration>,
    metrics: &Metrics,
) -> Result<TcpRoutes, CompileError> {
    if l.tcp_routes.is_empty() {
        return err(
            format!("{path}.tcpRoutes"),
            "a TCP listener needs at least one TCP route",
        );
    }
    let mut routes = Vec::with_capacity(l.tcp_routes.len());
    let mut seen = std::collections::HashSet::new();
    for (i, r) in l.tcp_routes.iter().enumerate() {
        let rpath = format!("{path}.tcpRoutes[{i}]");
        if r.name.is_empty() {
            return err(
                format!("{rpath}.name"),
                "a route needs a name (it labels metrics and logs)",
            );
        }
        let port = match r.port {
            0 => None,
            p => Some(
                u16::try_from(p)
                    .or_else(|_| err(format!("{rpath}.port"), format!("{p} is not a port")))?,
            ),
        };
        if !seen.insert(port) {
            return err(
                format!("{rpath}.port"),
                "another TCP route of this listener already takes this port (TCP routes are told apart only by port)",
            );
        }
        let targets = weighted_targets(
            &r.weighted_targets,
            &format!("{rpath}.weightedTargets"),
            clusters,
            false,
        )?;
        let idle = timeout(
            r.timeouts.as_ref().and_then(|t| t.idle.as_ref()),
            &format!("{rpath}.timeouts.idle"),
            listener_idle,
        )?;
        routes.push(TcpRoute {
            name: r.name.clone(),
            port,
            targets,
            idle,
            connections: metrics.tcp_route(&l.name, &r.name),
        });
    }
    Ok(TcpRoutes { routes })
}

/// A transparent listener's egress filter: ALLOW_ALL passes traffic for no known service through to
/// the destination the client dialled; DROP_ALL (App Mesh's default) refuses it and counts it.
pub fn transparent(
    l: &v1::Listener,
    path: &str,
    tcp: bool,
    request_timeout: Option<Duration>,
    listener_idle: Option<Duration>,
    metrics: &Metrics,
) -> Result<Option<Transparent>, CompileError> {
    use v1::listener::EgressPolicy as E;
    if !l.original_dst {
        if !l.egress_allowed_hosts.is_empty() {
            return err(
                format!("{path}.egressAllowedHosts"),
                "allowed hosts need originalDst: true (they are exceptions to the egress policy)",
            );
        }
        if l.egress_policy() != E::Unspecified {
            return err(
                format!("{path}.egressPolicy"),
                "an egress policy needs originalDst: true (it filters traffic to destinations the table does not know)",
            );
        }
        return Ok(None);
    }
    let dropped = metrics.egress_dropped(&l.name);
    let allow_all = l.egress_policy() == E::AllowAll;
    if allow_all && !l.egress_allowed_hosts.is_empty() {
        return err(
            format!("{path}.egressAllowedHosts"),
            "ALLOW_ALL lets every host through already: allowed hosts are DROP_ALL's exceptions",
        );
    }
    let mut allowed_hosts = Vec::with_capacity(l.egress_allowed_hosts.len());
    for (i, h) in l.egress_allowed_hosts.iter().enumerate() {
        let name = h.strip_prefix("*.").unwrap_or(h);
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return err(
                format!("{path}.egressAllowedHosts[{i}]"),
                format!("{h:?} is not a host name or \"*.suffix\" (no port, no other wildcard)"),
            );
        }
        allowed_hosts.push(h.to_ascii_lowercase());
    }
    if !allow_all && allowed_hosts.is_empty() {
        return Ok(Some(Transparent {
            allow_all,
            allowed_hosts: Box::new([]),
            http_passthrough: None,
            tcp_passthrough: None,
            http_ports: None,
            dropped,
        }));
    }
    let allowed_hosts = allowed_hosts.into_boxed_slice();
    let passthrough = |name: String, protocol: UpstreamProtocol| {
        let settings = ClusterSettings {
            protocol,
            lb: LbPolicy::RoundRobin,
            connect_timeout: Some(Duration::from_secs(5)),
            idle_timeout: Duration::from_secs(60),
            outlier: None,
            health: None,
            breakers: None,
            tls: None,
            original_dst: true,
        };
        let definition = v1::Cluster {
            name: name.clone(),
            ..Default::default()
        };
        let cluster = Arc::new(Cluster::new(definition, settings, metrics.cluster(&name)));
        WeightedTargets::new(vec![(cluster, 1)]).map_or_else(|| err(path, "passthrough"), Ok)
    };
    // Both kinds on an HTTP listener: its ports that no virtual host names carry TCP.
    let tcp_passthrough = TcpRoute {
        name: "passthrough".into(),
        port: None,
        targets: passthrough(
            if tcp {
                format!("passthrough-{}", l.name)
            } else {
                format!("passthrough-tcp-{}", l.name)
            },
            UpstreamProtocol::Tcp,
        )?,
        idle: listener_idle,
        connections: metrics.tcp_route(&l.name, "passthrough"),
    };
    if tcp {
        return Ok(Some(Transparent {
            allow_all,
            allowed_hosts,
            http_passthrough: None,
            tcp_passthrough: Some(tcp_passthrough),
            http_ports: None,
            dropped,
        }));
    }
    let targets = passthrough(format!("passthrough-{}", l.name), UpstreamProtocol::Http1)?;
    let route = Route {
        name: "passthrough".into(),
        path: PathMatch::Any,
        headers: Box::new([]),
        method: None,
        scheme: None,
        query: Box::new([]),
        port: None,
        action: RouteAction {
            targets,
            retry: None,
            stream_idle: None,
            request_timeout,
            rewrite: Rewrite::default(),
        },
        metrics: metrics.route(&l.name, "passthrough"),
    };
    Ok(Some(Transparent {
        allow_all,
        allowed_hosts,
        http_passthrough: Some(route),
        tcp_passthrough: Some(tcp_passthrough),
        http_ports: None,
        dropped,
    }))
}
