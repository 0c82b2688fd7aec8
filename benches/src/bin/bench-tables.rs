//! Writes the routing tables of the load harness (`benches/load/`) as YAML (or JSON, with
//! `--json`) on standard output.
//!
//! ```text
//! bench-tables --http 127.0.0.1:18001 --upstream 127.0.0.1:18000 [--routes N] \
//!              [--tcp 127.0.0.1:18002 --tcp-upstream 127.0.0.1:18003] \
//!              [--grpc 127.0.0.1:18014 --grpc-upstream 127.0.0.1:18005] [--version V] \
//!              [--appmesh-defaults ACCESS_LOG_PATH] [--json]
//! ```
//!
//! The table is [`ferry_benches::load_table`]'s (see there): N routes behind the 90/10 prefix route
//! every peer gets. With `--tcp`, a TCP listener forwards to `--tcp-upstream` (iperf3), split 90/10
//! the same way. With `--grpc`, a gRPC listener routes every call to `--grpc-upstream`
//! (bench-grpc-upstream), split 90/10 the same way over HTTP/2 clusters. With
//! `--appmesh-defaults`, the routes carry App Mesh's default retry policy and the HTTP and gRPC
//! listeners an access log to the given path, as in a table `ferry-agent` compiles.
use ferry_benches::load_table::{LoadTable, load_table};

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut http, mut upstream, mut routes) = (None, None, 0usize);
    let (mut tcp, mut tcp_upstream, mut version) = (None, None, None);
    let (mut grpc, mut grpc_upstream, mut appmesh_defaults) = (None, None, None);
    let mut json = false;
    while let Some(flag) = args.next() {
        if flag == "--json" {
            json = true;
            continue;
        }
        let mut value = || {
            args.next()
                .unwrap_or_else(|| fail(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--http" => http = Some(value()),
            "--upstream" => upstream = Some(value()),
            "--routes" => {
                routes = value()
                    .parse()
                    .unwrap_or_else(|e| fail(&format!("--routes: {e}")))
            }
            "--tcp" => tcp = Some(value()),
            "--tcp-upstream" => tcp_upstream = Some(value()),
            "--version" => version = Some(value()),
            "--grpc" => grpc = Some(value()),
            "--grpc-upstream" => grpc_upstream = Some(value()),
            "--appmesh-defaults" => appmesh_defaults = Some(value()),
            other => fail(&format!("unknown argument {other}")),
        }
    }
    let http = http.unwrap_or_else(|| fail("--http is required"));
    let upstream = upstream.unwrap_or_else(|| fail("--upstream is required"));
    let tcp = tcp.map(|listen| {
        let target = tcp_upstream.unwrap_or_else(|| fail("--tcp needs --tcp-upstream"));
        (listen, target)
    });
    let grpc = grpc.map(|listen| {
        let target = grpc_upstream.unwrap_or_else(|| fail("--grpc needs --grpc-upstream"));
        (listen, target)
    });
    let table = load_table(&LoadTable {
        http,
        upstream,
        routes,
        tcp,
        grpc,
        version,
        appmesh_defaults,
    });
    if json {
        print!("{}", ferry_api::encode_json(&table));
    } else {
        print!("{}", ferry_api::encode_yaml(&table));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("bench-tables: {message}");
    std::process::exit(2);
}
