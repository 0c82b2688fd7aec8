//! The DNS side of compiling a table: the resolver settings (`dns`) and each DNS cluster's name
//! (`clusters[].dns`) validated, and each new DNS cluster joined to its name's resolution loop
//! (`crate::discovery`). A reused cluster keeps the loop it already follows.
use std::sync::Arc;

use ferry_api::v1::{self, cluster};

use super::CompileError;
use crate::cluster::Cluster;
use crate::discovery::{self, Discovery, DnsConfig, SettingsError};

/// What DNS clusters of one table are compiled against.
pub(super) struct DnsCtx<'a> {
    discovery: &'a Discovery,
    pub config: Arc<DnsConfig>,
}

fn at(prefix: &str, e: SettingsError) -> CompileError {
    CompileError {
        path: format!("{prefix}.{}", e.field),
        message: e.message,
    }
}

/// Validates `dns` and, when some cluster uses DNS, sets up the resolver the table will use.
pub(super) fn prepare<'a>(
    source: &v1::RoutingTable,
    discovery: Option<&'a Discovery>,
) -> Result<Option<DnsCtx<'a>>, CompileError> {
    let settings =
        discovery::settings::resolver_settings(source.dns.as_ref()).map_err(|e| at("dns", e))?;
    let Some(first) = source
        .clusters
        .iter()
        .position(|c| matches!(c.discovery, Some(cluster::Discovery::Dns(_))))
    else {
        return Ok(None);
    };
    let Some(discovery) = discovery else {
        return Err(CompileError {
            path: format!("clusters[{first}].dns"),
            message: "DNS discovery needs a running proxy; this table was compiled without one"
                .into(),
        });
    };
    let config = discovery.prepare(&settings).map_err(|e| CompileError {
        path: if e.from_table { "dns.servers" } else { "dns" }.into(),
        message: format!(
            "{}; name DNS servers with dns.servers or --dns-resolver",
            e.message
        ),
    })?;
    Ok(Some(DnsCtx { discovery, config }))
}

/// Validates a new cluster's `dns` and makes the cluster follow the name.
pub(super) fn subscribe(
    cluster: &Arc<Cluster>,
    d: &v1::DnsDiscovery,
    path: &str,
    ctx: Option<&DnsCtx<'_>>,
) -> Result<(), CompileError> {
    let spec = discovery::settings::name_spec(d).map_err(|e| at(&format!("{path}.dns"), e))?;
    let Some(ctx) = ctx else {
        // `prepare` returns a context whenever a cluster uses DNS.
        return Err(CompileError {
            path: format!("{path}.dns"),
            message: "DNS discovery is not set up for this table".into(),
        });
    };
    ctx.discovery.subscribe(cluster, spec, &ctx.config);
    Ok(())
}
