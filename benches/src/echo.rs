//! Upstream services for load runs: a gRPC unary echo (the harness's `bench-grpc-upstream`) and
//! a plain `200 ok` for everything else (`pgo-train`'s HTTP upstream).
//!
//! Written on hyper rather than tonic so that they need no generated code: a gRPC unary call is a
//! POST whose body is one length-prefixed message, and its answer the same framing plus trailers,
//! which is all a load tool sends.
use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};

pub type Body = BoxBody<Bytes, Infallible>;

/// The body `ok_or_grpc` answers a plain request with.
pub const OK_BODY: &[u8] = b"ok\n";

fn is_grpc(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

fn text(status: StatusCode, body: &'static [u8]) -> Response<Body> {
    let mut resp = Response::new(BodyExt::boxed(Full::new(Bytes::from_static(body))));
    *resp.status_mut() = status;
    resp
}

/// Answers a unary call with the request's own message, `grpc-status: 0` in the trailers.
async fn unary(req: Request<Incoming>) -> Response<Body> {
    let message = match req.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        // The client went away mid-call: nothing to answer.
        Err(_) => Bytes::new(),
    };
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let frames = futures_util::stream::iter([
        Ok::<_, Infallible>(Frame::data(message)),
        Ok(Frame::trailers(trailers)),
    ]);
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    resp
}

/// The gRPC echo: anything but a gRPC call gets 415, as gRPC servers answer.
pub async fn grpc_only(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if is_grpc(&req) {
        return Ok(unary(req).await);
    }
    Ok(text(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        b"not a gRPC call\n",
    ))
}

/// gRPC calls are echoed; any other request, its body read, gets `200` [`OK_BODY`].
pub async fn ok_or_grpc(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if is_grpc(&req) {
        return Ok(unary(req).await);
    }
    // Read the body whole so that the connection can carry the next request.
    let _ = req.into_body().collect().await;
    Ok(text(StatusCode::OK, OK_BODY))
}
