//! `ferry-proxy demo`: the standalone example in one command. It starts a small HTTP server on
//! every loopback endpoint of the table's static clusters (each answers with its cluster's name),
//! serves the table, sends a few requests through the proxy to show the weighted split, and keeps
//! running so that `curl` works against it.
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use ferry_api::v1::{self, cluster::Discovery};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// The loopback endpoints of `table`'s static clusters, with the cluster each belongs to.
pub fn demo_endpoints(table: &v1::RoutingTable) -> Vec<(SocketAddr, String)> {
    let mut out = Vec::new();
    for c in &table.clusters {
        if let Some(Discovery::StaticEndpoints(s)) = &c.discovery {
            for e in &s.endpoints {
                if let Ok(a) = e.address.parse::<SocketAddr>()
                    && a.ip().is_loopback()
                    && !out.iter().any(|(x, _)| *x == a)
                {
                    out.push((a, c.name.clone()));
                }
            }
        }
    }
    out
}

/// Serves "hello from CLUSTER (ADDR)" on `addr` until the process exits.
pub async fn spawn_upstream(addr: SocketAddr, cluster: String) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let cluster = cluster.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let body = format!(
                        "hello from {cluster} ({addr}): {} {}\n",
                        req.method(),
                        req.uri().path()
                    );
                    async move {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(body))))
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(())
}

/// Sends `n` GET requests to `url` and prints how many each upstream answered.
pub async fn show_split(url: &str, n: usize) -> anyhow::Result<()> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..n {
        let resp = client.get(url.parse()?).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        let text = String::from_utf8_lossy(&body);
        let who = text.split(" (").next().unwrap_or("").trim().to_owned();
        *counts.entry(format!("{status} {who}")).or_default() += 1;
    }
    println!("{n} requests to {url}:");
    for (who, count) in counts {
        println!("  {count:>4}  {who}");
    }
    Ok(())
}
