//! Test upstreams as a process, for tests that need them inside a network namespace:
//! `ferry-test-upstream [--http ADDR NAME]... [--tcp ADDR BANNER]...` serves until killed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test tool: bad arguments should stop it loudly
use ferry_tests::tcp::TcpEcho;
use ferry_tests::{Upstream, UpstreamProtocol};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut keep = (Vec::new(), Vec::new());
    let mut i = 0;
    while i + 2 < args.len() + 1 && i < args.len() {
        let (kind, addr, name) = (
            &args[i],
            args[i + 1].parse().expect("address"),
            &args[i + 2],
        );
        match kind.as_str() {
            "--http" => keep
                .0
                .push(Upstream::start_on(addr, name, UpstreamProtocol::Http1).await),
            "--tcp" => keep.1.push(TcpEcho::start_on(addr, name, Some(name)).await),
            other => panic!("unknown argument {other}"),
        }
        i += 3;
    }
    println!("ready");
    std::future::pending::<()>().await;
}
