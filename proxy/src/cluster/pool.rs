//! Talking to an endpoint: HTTP/1.1 connections are pooled per endpoint and reused once a response
//! has been read whole; HTTP/2 multiplexes requests on a connection per endpoint, more while
//! they exceed the upstream's stream limit ([`super::h2_client`]). A request that a pooled
//! HTTP/1.1 connection could not even send (the upstream closed it meanwhile) is given back by
//! hyper and sent on another connection, so keep-alive races never reach the client.
//!
//! Bodiless HTTP/1.1 requests go through Ferry's direct client ([`super::h1`]) instead, with a
//! pool of its own; a request with a body takes an idle direct connection before opening one.
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::Either;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::tls::ClientStream;

use super::counted::Counted;
use super::h1::{self, ActiveGuard};
use super::h2_client;
use super::{Cluster, Endpoint, UpstreamIncoming, UpstreamProtocol};
use crate::http::RequestBody;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect to {addr} failed: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("connect to {addr} timed out after {after:?}")]
    ConnectTimeout { addr: SocketAddr, after: Duration },
    #[error("handshake with {addr} failed: {source}")]
    Handshake {
        addr: SocketAddr,
        source: hyper::Error,
    },
    #[error("TLS to {addr} failed ({}): {source}", .cause.label())]
    Tls {
        addr: SocketAddr,
        cause: crate::tls::FailureCause,
        source: io::Error,
    },
    #[error("request to {addr} failed: {source}")]
    Request {
        addr: SocketAddr,
        source: hyper::Error,
    },
    #[error("handshake with {addr} failed: {source}")]
    H2Handshake { addr: SocketAddr, source: h2::Error },
    /// An HTTP/2 stream that failed: refused, reset, or its connection gone.
    #[error("request to {addr} failed: {}", describe_stream_error(.source))]
    Stream { addr: SocketAddr, source: h2::Error },
    #[error("request to {addr} failed: {source}")]
    Exchange {
        addr: SocketAddr,
        source: super::h1::ExchangeError,
    },
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// A failed attempt to open an endpoint's shared HTTP/2 connection: the error of the request
    /// that made it, and of every request that waited for it rather than trying again.
    #[error(transparent)]
    OpenFailed(Arc<UpstreamError>),
}

/// Why an upstream never processed an HTTP/2 stream, which may therefore be sent again.
enum NotTaken {
    /// RST_STREAM REFUSED_STREAM.
    Refused,
    /// Its GOAWAY named a last stream below this one (RFC 9113 §6.8; an upstream shutting down
    /// gracefully). h2 gives the GOAWAY's error only to those streams; the ones it had taken
    /// finish, or end with the connection as broken pipes.
    GoingAway(h2::Reason),
}

fn not_taken(e: &h2::Error) -> Option<NotTaken> {
    match e.reason()? {
        reason if e.is_go_away() && e.is_remote() => Some(NotTaken::GoingAway(reason)),
        h2::Reason::REFUSED_STREAM => Some(NotTaken::Refused),
        _ => None,
    }
}

/// An HTTP/2 stream's failure in an operator's words where h2's own would mislead: a graceful
/// GOAWAY reads "connection error received: not a result of an error".
fn describe_stream_error(e: &h2::Error) -> String {
    match not_taken(e) {
        Some(NotTaken::GoingAway(reason)) => format!(
            "the upstream is closing the connection (GOAWAY {reason:?}) and did not take the stream"
        ),
        Some(NotTaken::Refused) => "the upstream refused the stream (REFUSED_STREAM)".to_owned(),
        None => e.to_string(),
    }
}

impl UpstreamError {
    /// Whether the upstream never processed the HTTP/2 stream (refused, or above its GOAWAY), so
    /// that the request may be sent again: the `stream-error` retry event.
    pub fn is_stream_not_taken(&self) -> bool {
        matches!(self, UpstreamError::Stream { source, .. } if not_taken(source).is_some())
    }

    /// Whether no connection could be made (as opposed to one that failed mid-request).
    pub fn is_connect(&self) -> bool {
        match self {
            UpstreamError::Tls { .. }
            | UpstreamError::Connect { .. }
            | UpstreamError::ConnectTimeout { .. }
            | UpstreamError::Handshake { .. }
            | UpstreamError::H2Handshake { .. } => true,
            UpstreamError::OpenFailed(e) => e.is_connect(),
            UpstreamError::Request { .. }
            | UpstreamError::Stream { .. }
            | UpstreamError::Exchange { .. }
            | UpstreamError::Timeout(_) => false,
        }
    }
}

/// An HTTP/1.1 connection lent to one request, returned to its endpoint's pool when the response
/// has been read completely (dropping it instead closes the connection).
pub struct PooledConn {
    sender: http1::SendRequest<RequestBody>,
    endpoint: Arc<Endpoint>,
}

impl PooledConn {
    pub fn release(self) {
        self.endpoint.push_idle(self.sender);
    }
}

/// Sends `req` to `ep`. `upgrade` requests get a fresh connection that is never pooled.
///
/// The path is chosen before the first await and the request moved straight into the future
/// that sends it: an `async fn` would keep its own copy of the request (360 bytes) beside that
/// future for as long as it runs. The same holds for the functions below, which take their
/// request into an `async move` block and use it in place.
pub fn send<'a>(
    cluster: &'a Arc<Cluster>,
    ep: &'a Arc<Endpoint>,
    req: Request<RequestBody>,
    upgrade: bool,
) -> impl Future<Output = Result<(Response<UpstreamIncoming>, Option<PooledConn>), UpstreamError>> + 'a
{
    match cluster.protocol {
        _ if can_borrow(cluster, &req, upgrade) => Either::Left(
            h1::send(cluster, ep, req).map(move |result| direct_sent(cluster, ep, result)),
        ),
        UpstreamProtocol::Http1 | UpstreamProtocol::Tcp => {
            Either::Right(Either::Left(send_h1(cluster, ep, req, upgrade).map(
                |result| result.map(|(resp, pooled)| (resp.map(UpstreamIncoming::Hyper), pooled)),
            )))
        }
        UpstreamProtocol::Http2 => Either::Right(Either::Right(
            h2_client::send(cluster, ep, req)
                .map(|result| result.map(|resp| (resp.map(UpstreamIncoming::H2), None))),
        )),
    }
}

/// Whether [`send_borrowed`] can carry `req`: a bodiless HTTP/1.1 request, which Ferry's direct
/// client writes from a borrowed request.
pub fn can_borrow(cluster: &Cluster, req: &Request<RequestBody>, upgrade: bool) -> bool {
    matches!(
        cluster.protocol,
        UpstreamProtocol::Http1 | UpstreamProtocol::Tcp
    ) && h1::can_send(req, upgrade)
}

/// [`send`] for a request that [`can_borrow`] allows, which stays the caller's: a retry sends
/// the same request again instead of a copy made before every try.
pub fn send_borrowed<'a>(
    cluster: &'a Arc<Cluster>,
    ep: &'a Arc<Endpoint>,
    req: &'a Request<RequestBody>,
) -> impl Future<Output = Result<(Response<UpstreamIncoming>, Option<PooledConn>), UpstreamError>> + 'a
{
    h1::send_direct(cluster, ep, req).map(move |result| direct_sent(cluster, ep, result))
}

/// The direct client's result in [`send`]'s terms. Idle direct connections are reaped after a
/// successful exchange only.
fn direct_sent(
    cluster: &Cluster,
    ep: &Arc<Endpoint>,
    result: Result<Response<h1::DirectBody>, UpstreamError>,
) -> Result<(Response<UpstreamIncoming>, Option<PooledConn>), UpstreamError> {
    result.map(|resp| {
        ep.reap_idle_direct(cluster.idle_timeout);
        (resp.map(UpstreamIncoming::Direct), None)
    })
}

// Not an `async fn`, on purpose: see `pool::send`.
#[allow(clippy::manual_async_fn)]
fn send_h1<'a>(
    cluster: &'a Cluster,
    ep: &'a Arc<Endpoint>,
    mut req: Request<RequestBody>,
    upgrade: bool,
) -> impl Future<Output = Result<(Response<Incoming>, Option<PooledConn>), UpstreamError>> + 'a {
    async move {
        if !upgrade {
            while let Some(idle) = ep.pop_idle() {
                if idle.since.elapsed() > cluster.idle_timeout || idle.sender.is_closed() {
                    continue;
                }
                let mut sender = idle.sender;
                if sender.ready().await.is_err() {
                    continue;
                }
                match sender.try_send_request(req).await {
                    Ok(resp) => {
                        return Ok((
                            resp,
                            Some(PooledConn {
                                sender,
                                endpoint: Arc::clone(ep),
                            }),
                        ));
                    }
                    Err(mut e) => match e.take_message() {
                        // Never written: safe to send on another connection.
                        Some(r) => req = r,
                        None => {
                            return Err(UpstreamError::Request {
                                addr: ep.addr,
                                source: e.into_error(),
                            });
                        }
                    },
                }
            }
        }
        // Boxed: connecting (TCP, maybe TLS, the handshake) is the rare path, and its state would
        // otherwise make every request's future larger, and so every move of it dearer.
        let mut sender = Box::pin(open_h1(cluster, ep, upgrade)).await?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|source| UpstreamError::Request {
                addr: ep.addr,
                source,
            })?;
        let pooled = (!upgrade).then(|| PooledConn {
            sender,
            endpoint: Arc::clone(ep),
        });
        Ok((resp, pooled))
    }
}

/// An HTTP/1.1 connection for hyper's client, driven by its own task: an idle connection of
/// the direct client when there is one (so the two pools do not grow apart), else a new one.
async fn open_h1(
    cluster: &Cluster,
    ep: &Endpoint,
    upgrade: bool,
) -> Result<http1::SendRequest<RequestBody>, UpstreamError> {
    let (io, active) = match ep.pop_direct(cluster.idle_timeout) {
        Some(idle) => (*idle).into_stream(),
        None => (
            connect(cluster, ep).await?,
            ActiveGuard::new(cluster.metrics.cx_active.clone()),
        ),
    };
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|source| UpstreamError::Handshake {
            addr: ep.addr,
            source,
        })?;
    let drive = async move {
        if upgrade {
            let _ = conn.with_upgrades().await;
        } else {
            let _ = conn.await;
        }
        drop::<ActiveGuard>(active);
    };
    tokio::spawn(drive);
    Ok(sender)
}

/// Opens a connection to `ep` (TLS when the cluster originates it on this port), counting it.
pub async fn connect_stream(
    cluster: &Cluster,
    ep: &Endpoint,
) -> Result<ClientStream, UpstreamError> {
    let addr = ep.addr;
    let attempt = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| UpstreamError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        match cluster.tls.as_ref().filter(|t| t.applies_to(addr.port())) {
            None => Ok(ClientStream::Plain(tcp)),
            Some(tls) => {
                let host = cluster.dns().map(|d| d.hostname().to_owned());
                tls.connect(tcp, addr.ip(), host.as_deref())
                    .await
                    .map_err(|(cause, source)| UpstreamError::Tls {
                        addr,
                        cause,
                        source,
                    })
            }
        }
    };
    let result = match cluster.connect_timeout {
        Some(after) => tokio::time::timeout(after, attempt)
            .await
            .unwrap_or(Err(UpstreamError::ConnectTimeout { addr, after })),
        None => attempt.await,
    };
    match result {
        Ok(s) => {
            cluster.metrics.cx_total.inc();
            Ok(s)
        }
        Err(e) => {
            cluster.metrics.cx_connect_fail.inc();
            Err(e)
        }
    }
}

/// An HTTP connection to `ep`, counting its bytes (TCP-proxied connections count theirs when
/// the splice ends).
pub(super) async fn connect(
    cluster: &Cluster,
    ep: &Endpoint,
) -> Result<Counted<ClientStream>, UpstreamError> {
    let stream = connect_stream(cluster, ep).await?;
    let (rx, tx) = (
        cluster.metrics.rx_bytes.clone(),
        cluster.metrics.tx_bytes.clone(),
    );
    Ok(Counted::new(stream, rx, tx))
}
