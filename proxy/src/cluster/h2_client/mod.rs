//! Ferry's HTTP/2 upstream client (HTTP/2 and gRPC clusters), on the h2 crate directly.
//!
//! hyper's HTTP/2 client hands each request across a channel to a task that owns the
//! connection's sender, which then spawns a task per request to wait for the response and send
//! it back through a oneshot, and another to stream the body when it is not there at once. Here
//! the request's own task opens the stream, sends the body and waits for the response: no
//! channel, no spawn per request. One task per connection still drives its reads and writes.
//! Callgrind, 20,000 gRPC unary calls: 1,569 M instructions against 1,722 M with hyper's client
//! (−8.9%) (issue #7).
//!
//! Each endpoint's requests share its connections ([`conns`]): usually one, more while the
//! requests exceed the upstream's stream limit.
mod body;
mod conns;
mod pipe;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use h2::client::ResponseFuture;
use http::header::{CONTENT_LENGTH, HeaderValue, TE};
use http::{HeaderMap, Method, Request, Response};
use http_body::Body;

pub use body::H2Body;
use conns::HeldSlot;
pub use conns::{H2Pool, H2Status};
use pipe::Pipe;

use super::pool::UpstreamError;
use super::{Cluster, Endpoint};
use crate::http::{RequestBody, X_REQUEST_ID, is_hop_by_hop, strip_hop_by_hop};

/// Sends `req` on one of `ep`'s connections, opening one if none has room (see [`conns`]). A
/// request that could not be given a stream (the connection closed or the upstream sent GOAWAY
/// meanwhile) goes on a new connection, so that race never reaches the client.
///
/// Not an `async fn`, for the reason `pool::send` gives.
#[allow(clippy::manual_async_fn)]
pub fn send<'a>(
    cluster: &'a Cluster,
    ep: &'a Arc<Endpoint>,
    req: Request<RequestBody>,
) -> impl Future<Output = Result<Response<H2Body>, UpstreamError>> + 'a {
    async move {
        let (head, body) = req.into_parts();
        let mut head = Request::from_parts(head, ());
        strip_connection_headers(head.headers_mut());
        never_index_request_id(head.headers_mut());
        if let Some(len) = body.size_hint().exact()
            && (len != 0 || has_payload_semantics(head.method()))
            && !head.headers().contains_key(CONTENT_LENGTH)
        {
            head.headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(len));
        }
        let eos = body.is_end_stream();
        let mut ready = None;
        // Two rounds at most: a connection open already, then a fresh one if it turned out gone.
        for _ in 0..2 {
            let slot = conns::stream(cluster, ep).await?;
            match slot.sender().ready().await {
                Ok(sender) => {
                    ready = Some((sender, slot));
                    break;
                }
                Err(_) => ep.h2.forget(slot.conn()),
            }
        }
        let (mut sender, slot) = match ready {
            Some(ready) => ready,
            // Both rounds found dead connections: open one last and report what it says.
            None => {
                let slot = conns::stream(cluster, ep).await?;
                let sender =
                    slot.sender()
                        .ready()
                        .await
                        .map_err(|source| UpstreamError::Stream {
                            addr: ep.addr,
                            source,
                        })?;
                (sender, slot)
            }
        };
        let (response, tx) =
            sender
                .send_request(head, eos)
                .map_err(|source| UpstreamError::Stream {
                    addr: ep.addr,
                    source,
                })?;
        drop(sender);
        let exchange = Exchange {
            response,
            pipe: (!eos).then(|| Pipe::new(body, tx)),
        };
        let (resp, pipe) = exchange.await;
        let resp = resp.map_err(|source| UpstreamError::Stream {
            addr: ep.addr,
            source,
        })?;
        let slot = match pipe {
            None => HeldSlot::Alone(slot),
            // The response came before the body was sent whole (a streaming call): the rest
            // of the body streams from a task of its own, for as long as the client sends, and
            // the stream counts on its connection until that ends too.
            Some(pipe) => {
                let slot = Arc::new(slot);
                let held = Arc::clone(&slot);
                tokio::spawn(async move {
                    log_unsent(pipe.await);
                    drop(held);
                });
                HeldSlot::Shared(slot)
            }
        };
        let (parts, recv) = resp.into_parts();
        let body = H2Body::new(recv, &parts.headers, slot);
        Ok(Response::from_parts(parts, body))
    }
}

/// The response, with the request body streaming beside it until the response comes. What is
/// left of the body when the response comes stays in `pipe`.
struct Exchange {
    response: ResponseFuture,
    pipe: Option<Pipe>,
}

impl Future for Exchange {
    /// The response, and what is left of the body when it came.
    type Output = (Result<Response<h2::RecvStream>, h2::Error>, Option<Pipe>);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(pipe) = &mut this.pipe
            && let Poll::Ready(result) = Pin::new(pipe).poll(cx)
        {
            // The stream is reset (by the upstream, or by the pipe when the client's body
            // broke): the response future reports it.
            log_unsent(result);
            this.pipe = None;
        }
        let resp = ready!(Pin::new(&mut this.response).poll(cx));
        Poll::Ready((resp, this.pipe.take()))
    }
}

/// A request body that did not go out whole: the response (or its absence) tells the client.
fn log_unsent(piped: Result<(), pipe::PipeError>) {
    if let Err(e) = piped {
        tracing::debug!("request body not sent whole: {e}");
    }
}

/// Headers that HTTP/2 forbids (RFC 9113 §8.2.2): the hop-by-hop ones. The handler has removed
/// them already, except those an upgrade keeps; h2 would refuse the request over them. One pass
/// over the fields finds none in the common case (a gRPC call's `TE: trailers` is allowed).
fn strip_connection_headers(h: &mut HeaderMap) {
    if !h
        .iter()
        .any(|(n, v)| is_hop_by_hop(n) && !(n == TE && v == "trailers"))
    {
        return;
    }
    strip_hop_by_hop(h, false);
    // h2 takes `TE: trailers` only as written; the HTTP/1.1 strip keeps any case of it.
    if h.get(TE).is_some_and(|v| v != "trailers") {
        h.remove(TE);
    }
}

/// Marks the request id never-indexed (RFC 7541 §6.2.3), as the ids and trace contexts Ferry
/// makes are from the start. h2's HPACK encoder otherwise adds every new value to the
/// connection's dynamic table, where an id that never repeats pushes out the entries that do
/// (the authority, the content type, the user agent), which then go out as literals again.
/// Callgrind, 20,000 gRPC unary calls: 1,517 M instructions against 1,569 M (−3.3%). This
/// covers the ids that clients send; one lookup, where marking five names cost half the gain.
fn never_index_request_id(h: &mut HeaderMap) {
    if let Some(v) = h.get_mut(&X_REQUEST_ID) {
        v.set_sensitive(true);
    }
}

/// Whether a body on `method` has a meaning, so that an empty one is announced with
/// `Content-Length: 0` (as hyper's client did).
fn has_payload_semantics(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::DELETE | Method::CONNECT
    )
}

#[cfg(test)]
mod tests {
    use http::HeaderName;

    use super::*;

    #[test]
    fn a_client_request_id_is_never_indexed_and_other_headers_are_left_alone() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("from-the-client"));
        h.insert("content-type", HeaderValue::from_static("application/grpc"));
        never_index_request_id(&mut h);
        assert!(h["x-request-id"].is_sensitive());
        assert!(!h["content-type"].is_sensitive());
    }

    #[test]
    fn headers_http2_forbids_are_removed_and_te_trailers_kept() {
        let mut h = HeaderMap::new();
        for name in ["connection", "upgrade", "keep-alive", "proxy-connection"] {
            h.insert(name, HeaderValue::from_static("x"));
        }
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_connection_headers(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["te", "x-kept"]);
        h.insert("te", HeaderValue::from_static("gzip"));
        strip_connection_headers(&mut h);
        assert!(!h.contains_key("te"));
        // h2 refuses any other spelling of `trailers`, which the HTTP/1.1 strip keeps.
        h.insert("te", HeaderValue::from_static("Trailers"));
        strip_connection_headers(&mut h);
        assert!(!h.contains_key("te"));
    }
}
