//! Ferry's own HTTP/1.1 client for requests without a body — most of a mesh's traffic. hyper's
//! client drives each connection from a task of its own and hands every request and response
//! across a channel; this one writes the head and reads the response on the request's own task,
//! which the profile showed to be ~40% of the proxy's user time at saturation (issue #7).
//! Requests with a body, upgrades and CONNECT keep hyper's client.
mod body;
mod chunked;
mod conn;
mod head;

use std::io;
use std::sync::Arc;

use http::header::TRANSFER_ENCODING;
use http::{Method, Request, Response};
use http_body::Body;
use tokio::sync::oneshot;

pub use body::DirectBody;
pub use chunked::{ChunkError, ChunkedDecoder, Decoded};
pub use conn::{ActiveGuard, ExchangeError, RawConn};
pub use head::{Framing, HeadError, ResponseHead, parse_response};

use super::pool::{UpstreamError, connect};
use super::{Cluster, Endpoint};
use crate::http::RequestBody;

/// Whether the direct client can carry `req`: no body, no upgrade, not CONNECT, and no
/// Transfer-Encoding that would promise a body.
pub fn can_send(req: &Request<RequestBody>, upgrade: bool) -> bool {
    !upgrade
        && req.body().is_end_stream()
        && req.method() != Method::CONNECT
        && !req.headers().contains_key(TRANSFER_ENCODING)
}

/// Sends a bodiless request on an idle pooled connection, or a new one.
///
/// A request that a pooled connection could not carry goes again on another connection, so
/// keep-alive races never reach the client: always when it could not be written, and when the
/// upstream closed the connection with nothing sent back only if it is idempotent (RFC 9112
/// §9.3.1: the upstream may have acted on it).
///
/// Not an `async fn`: an `async fn` keeps each by-value argument twice in its state (as passed
/// and as the local it is moved into). The request here is captured once and only borrowed.
#[allow(clippy::manual_async_fn)]
pub fn send(
    cluster: &Arc<Cluster>,
    ep: &Arc<Endpoint>,
    req: Request<RequestBody>,
) -> impl Future<Output = Result<Response<DirectBody>, UpstreamError>> {
    async move { send_direct(cluster, ep, &req).await }
}

/// [`send`] for a borrowed request.
pub async fn send_direct(
    cluster: &Arc<Cluster>,
    ep: &Arc<Endpoint>,
    req: &Request<RequestBody>,
) -> Result<Response<DirectBody>, UpstreamError> {
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let method = req.method();
    let headers = req.headers();
    let exchange = |mut conn: Box<RawConn>| async move {
        let result = async {
            conn.write_head(method, target, headers).await?;
            conn.read_head(method).await
        }
        .await;
        (result, conn)
    };
    while let Some(conn) = ep.pop_direct(cluster.idle_timeout) {
        match exchange(conn).await {
            (Ok(head), conn) => return Ok(respond(head, conn, ep)),
            (Err(e), _) if e.is_resendable(method) => {
                tracing::debug!(endpoint = %ep.addr, error = %e, "pooled connection was closed; sending on another");
            }
            (Err(e), _) => return Err(exchange_error(ep, e)),
        }
    }
    // Boxed: connecting is the rare path, and its state would make every request's future larger.
    let (conn, freed) = Box::pin(open_or_take_freed(cluster, ep)).await?;
    let conn = match exchange(conn).await {
        (Ok(head), conn) => return Ok(respond(head, conn, ep)),
        (Err(e), _) if freed && e.is_resendable(method) => {
            tracing::debug!(endpoint = %ep.addr, error = %e, "freed connection was closed; opening another");
            Box::pin(open(cluster, ep)).await?
        }
        (Err(e), _) => return Err(exchange_error(ep, e)),
    };
    match exchange(conn).await {
        (Ok(head), conn) => Ok(respond(head, conn, ep)),
        (Err(e), _) => Err(exchange_error(ep, e)),
    }
}

/// A new connection to `ep`, or one that another request frees while it is being opened,
/// whichever comes first (`true`: a freed one). The new connection, when not taken, goes to the
/// pool or to the next request waiting (see `handoff`).
async fn open_or_take_freed(
    cluster: &Arc<Cluster>,
    ep: &Arc<Endpoint>,
) -> Result<(Box<RawConn>, bool), UpstreamError> {
    let (tx, mut opened) = oneshot::channel();
    let (c, e) = (Arc::clone(cluster), Arc::clone(ep));
    // A task of its own, so that the connection is still made, and kept, when this request takes
    // a freed one or goes away (its client left, its timeout fired).
    tokio::spawn(async move {
        let result = open(&c, &e).await;
        if let Err(Ok(conn)) = tx.send(result) {
            e.push_direct(conn);
            e.reap_idle_direct(c.idle_timeout);
        }
    });
    let mut freed = ep.wait_direct();
    let first = tokio::select! {
        biased;
        result = &mut opened => Err(result),
        conn = freed.recv() => Ok(conn),
    };
    match first {
        Ok(conn) => Ok((conn, true)),
        Err(result) => {
            // Offered to this request as its own connection came: back to the pool with it.
            if let Some(conn) = freed.leave() {
                ep.push_direct(conn);
            }
            match result {
                Ok(opened) => opened.map(|conn| (conn, false)),
                // Only when the runtime is shutting down.
                Err(_) => Err(UpstreamError::Connect {
                    addr: ep.addr,
                    source: io::Error::other("the connecting task ended"),
                }),
            }
        }
    }
}

fn exchange_error(ep: &Endpoint, source: ExchangeError) -> UpstreamError {
    UpstreamError::Exchange {
        addr: ep.addr,
        source,
    }
}

fn respond(
    head: head::ResponseHead,
    conn: Box<RawConn>,
    ep: &Arc<Endpoint>,
) -> Response<DirectBody> {
    let pool = head.keep_alive.then(|| Arc::clone(ep));
    let mut resp = Response::new(DirectBody::new(head.framing, conn, pool));
    *resp.status_mut() = head.status;
    *resp.version_mut() = head.version;
    *resp.headers_mut() = head.headers;
    resp
}

/// A new connection to `ep` for the direct client.
pub async fn open(cluster: &Cluster, ep: &Endpoint) -> Result<Box<RawConn>, UpstreamError> {
    let io = connect(cluster, ep).await?;
    Ok(RawConn::new(io, cluster.metrics.cx_active.clone()))
}
