//! The TCP proxy's copy loop: 32 MiB through a proxy-shaped relay on loopback (client -> relay ->
//! sink), with tokio's default 8 KiB buffers versus the 64 KiB that ferry-proxy uses.
#![allow(clippy::expect_used)] // a benchmark: a failed setup should stop it loudly
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BYTES: usize = 32 * 1024 * 1024;

async fn relay_once(buffer: usize) {
    // The sink reads everything, then answers with one byte so the client knows it is done.
    let sink = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
    let sink_addr = sink.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut s, _) = sink.accept().await.expect("accept");
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0;
        while total < BYTES {
            let n = s.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            total += n;
        }
        s.write_all(b"k").await.expect("ack");
    });
    let relay = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
    let relay_addr = relay.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut down, _) = relay.accept().await.expect("accept");
        let mut up = TcpStream::connect(sink_addr).await.expect("connect sink");
        let _ = tokio::io::copy_bidirectional_with_sizes(&mut down, &mut up, buffer, buffer).await;
    });
    let mut client = TcpStream::connect(relay_addr).await.expect("connect relay");
    let chunk = vec![7u8; 256 * 1024];
    let mut sent = 0;
    while sent < BYTES {
        client.write_all(&chunk).await.expect("write");
        sent += chunk.len();
    }
    let mut ack = [0u8; 1];
    client.read_exact(&mut ack).await.expect("ack");
}

fn copy_buffers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("tcp_relay_32MiB");
    g.throughput(Throughput::Bytes(BYTES as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    for buffer in [8 * 1024, 64 * 1024, 256 * 1024] {
        g.bench_with_input(
            BenchmarkId::from_parameter(buffer / 1024),
            &buffer,
            |b, &buffer| {
                b.iter(|| rt.block_on(relay_once(buffer)));
            },
        );
    }
    g.finish();
}

criterion_group!(benches, copy_buffers);
criterion_main!(benches);
