//! The load harness's gRPC upstream: answers every unary call on h2c with the request's own
//! message, `grpc-status: 0` in the trailers, as a gRPC echo service would.
//!
//! ```text
//! bench-grpc-upstream 127.0.0.1:18005
//! ```
//!
//! Written on hyper's HTTP/2 server rather than tonic so that it needs no generated code: a gRPC
//! unary call is a POST whose body is one length-prefixed message, and its answer the same framing
//! plus trailers, which is all the harness sends (h2load with a gRPC body).
use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

type Body = BoxBody<Bytes, Infallible>;

async fn unary(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
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
    Ok(resp)
}

/// Anything but a gRPC call gets 415, as gRPC servers answer.
async fn serve(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        return unary(req).await;
    }
    let mut resp = Response::new(BodyExt::boxed(Full::new(Bytes::from_static(
        b"not a gRPC call\n",
    ))));
    *resp.status_mut() = http::StatusCode::UNSUPPORTED_MEDIA_TYPE;
    Ok(resp)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr: SocketAddr = match std::env::args().nth(1).map(|a| a.parse()) {
        Some(Ok(a)) => a,
        _ => {
            eprintln!("usage: bench-grpc-upstream ADDR");
            std::process::exit(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bench-grpc-upstream: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            builder.max_concurrent_streams(256);
            let _ = builder
                .serve_connection(TokioIo::new(stream), service_fn(serve))
                .await;
        });
    }
}
