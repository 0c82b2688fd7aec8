//! The load harness's gRPC upstream: answers every unary call on h2c with the request's own
//! message, `grpc-status: 0` in the trailers, as a gRPC echo service would.
//!
//! ```text
//! bench-grpc-upstream 127.0.0.1:18005
//! ```
//!
//! The service is [`ferry_benches::echo::grpc_only`], on hyper's HTTP/2 server.
use std::net::SocketAddr;

use ferry_benches::echo::grpc_only;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

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
                .serve_connection(TokioIo::new(stream), service_fn(grpc_only))
                .await;
        });
    }
}
