//! The load harness's gRPC upstream: answers every unary call on h2c with the request's own
//! message, `grpc-status: 0` in the trailers, as a gRPC echo service would.
//!
//! ```text
//! bench-grpc-upstream 127.0.0.1:18005 [MAX_STREAMS [DELAY_MS]]
//! ```
//!
//! MAX_STREAMS is the SETTINGS_MAX_CONCURRENT_STREAMS it announces (256 unless given; ASP.NET
//! Core's Kestrel announces 100), to load a proxy past an upstream's stream limit. DELAY_MS makes
//! every call take that long (0 unless given), as a service that does some work does: then how
//! many calls a proxy keeps in flight, not its CPU, bounds its throughput.
//!
//! The service is [`ferry_benches::echo::grpc_only`], on hyper's HTTP/2 server.
use std::net::SocketAddr;
use std::time::Duration;

use ferry_benches::echo::grpc_only;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let usage = || -> ! {
        eprintln!("usage: bench-grpc-upstream ADDR [MAX_STREAMS]");
        std::process::exit(2);
    };
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = match args.next().map(|a| a.parse()) {
        Some(Ok(a)) => a,
        _ => usage(),
    };
    let max_streams: u32 = match args.next().map(|n| n.parse()) {
        None => 256,
        Some(Ok(n)) => n,
        Some(Err(_)) => usage(),
    };
    let delay = match args.next().map(|n| n.parse()) {
        None => Duration::ZERO,
        Some(Ok(ms)) => Duration::from_millis(ms),
        Some(Err(_)) => usage(),
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
            builder.max_concurrent_streams(max_streams);
            let _ = builder
                .serve_connection(
                    TokioIo::new(stream),
                    service_fn(move |req| async move {
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        grpc_only(req).await
                    }),
                )
                .await;
        });
    }
}
