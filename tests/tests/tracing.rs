//! Distributed tracing: two chained proxies (client -> A egress -> B ingress -> upstream) export one
//! span per hop over OTLP/gRPC to a real OTLP receiver (the generated TraceService server), with
//! the caller's trace id and parentage kept; tracestate, B3 and x-amzn-trace-id reach the upstream
//! unchanged; sampling and a dead collector behave as documented.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failures should be loud
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_tests::{Client, ProxyProcess, Reply, Upstream, UpstreamProtocol};
use http::Method;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tokio::net::TcpListener;

// === OTLP receiver ===

/// One span as the collector got it, with its resource's service.name.
#[derive(Clone, Debug)]
struct Received {
    service: String,
    span: Span,
}

impl Received {
    fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }
    fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }
    fn parent_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }
    fn attr(&self, key: &str) -> Option<String> {
        attr(&self.span.attributes, key)
    }
}

fn attr(attributes: &[KeyValue], key: &str) -> Option<String> {
    let v = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match v.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| attr(&r.attributes, "service.name"))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push(Received {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    /// A collector on a loopback port; returns its `http://` endpoint.
    async fn start() -> (Collector, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let collector = Collector::default();
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        (collector, format!("http://{addr}"))
    }

    /// A collector serving TLS with `cert`; returns its `https://localhost:PORT` endpoint.
    async fn start_tls(cert: &ferry_tests::tls::Issued) -> (Collector, String) {
        use tonic::transport::{Identity, ServerTlsConfig};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let collector = Collector::default();
        let service = TraceServiceServer::new(collector.clone());
        let tls =
            ServerTlsConfig::new().identity(Identity::from_pem(&cert.cert_pem, &cert.key_pem));
        let mut server = tonic::transport::Server::builder().tls_config(tls).unwrap();
        tokio::spawn(async move {
            server
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        (collector, format!("https://localhost:{port}"))
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }

    fn of_trace(&self, trace_id: &str) -> Vec<Received> {
        self.spans()
            .into_iter()
            .filter(|s| s.trace_id() == trace_id)
            .collect()
    }

    /// Waits (up to 20 s) until at least `n` spans arrived.
    async fn wait_for(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.spans().len() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

// === Two chained proxies ===

/// Proxy B: an INBOUND listener routing everything to `upstream` over HTTP/1.1.
fn ingress_table(upstream: SocketAddr) -> String {
    format!(
        "listeners:
  - name: ingress
    address: 127.0.0.1:0
    direction: INBOUND
    virtualHosts:
      - name: all
        domains: [\"*\"]
        routes:
          - name: to-app
            match: {{ prefix: / }}
            action: {{ weightedTargets: [{{ cluster: app, weight: 1 }}] }}
clusters:
  - name: app
    protocol: HTTP1
    staticEndpoints:
      endpoints:
        - address: {upstream}
"
    )
}

/// Proxy A: an OUTBOUND listener routing everything to proxy B over HTTP/2.
fn egress_table(next_hop: SocketAddr) -> String {
    format!(
        "listeners:
  - name: egress
    address: 127.0.0.1:0
    direction: OUTBOUND
    virtualHosts:
      - name: all
        domains: [\"*\"]
        routes:
          - name: to-b
            match: {{ prefix: / }}
            action: {{ weightedTargets: [{{ cluster: b, weight: 1 }}] }}
clusters:
  - name: b
    protocol: HTTP2
    staticEndpoints:
      endpoints:
        - address: {next_hop}
"
    )
}

/// Batches leave after 100 ms instead of the default 5 s, so spans arrive while the test runs.
const FAST_BATCHES: &[(&str, &str)] = &[("OTEL_BSP_SCHEDULE_DELAY", "100")];

struct Chain {
    upstream: Upstream,
    a: ProxyProcess,
    b: ProxyProcess,
    url: String,
}

/// client -> A (egress) -> B (ingress) -> upstream; `a_args`/`b_args` are each proxy's extra flags.
async fn chain(a_args: &[&str], b_args: &[&str]) -> Chain {
    let upstream = Upstream::start("app", UpstreamProtocol::Http1).await;
    let b = ProxyProcess::start_with_env(
        &ingress_table(upstream.addr),
        "table.yaml",
        b_args,
        FAST_BATCHES,
    )
    .await
    .expect("proxy B");
    let b_addr = b.listener("ingress").await.expect("B's listener");
    let a = ProxyProcess::start_with_env(&egress_table(b_addr), "table.yaml", a_args, FAST_BATCHES)
        .await
        .expect("proxy A");
    let url = a.url("egress").await;
    Chain {
        upstream,
        a,
        b,
        url,
    }
}

impl Chain {
    /// SIGTERM both proxies and wait for them to exit: whatever they queued is exported by then.
    async fn stop(&mut self) {
        self.a.sigterm();
        self.b.sigterm();
        for p in [&mut self.a, &mut self.b] {
            let status = p.wait(Duration::from_secs(30)).await.expect("proxy exits");
            assert!(status.success(), "proxy exit: {status}: {}", p.stderr());
        }
    }
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn traceparent(trace_id: &str, parent: &str, flags: &str) -> String {
    format!("00-{trace_id}-{parent}-{flags}")
}

/// The W3C parts of a traceparent: (trace id, parent id, flags).
fn tp_parts(v: &str) -> (String, String, String) {
    let parts: Vec<&str> = v.split('-').collect();
    assert_eq!(parts.len(), 4, "traceparent {v:?}");
    assert_eq!(parts[0], "00", "traceparent {v:?}");
    (
        parts[1].to_owned(),
        parts[2].to_owned(),
        parts[3].to_owned(),
    )
}

async fn get(c: &Client, url: &str, headers: &[(&str, &str)]) -> Reply {
    let r = c.get_with(url, headers).await.expect("request");
    assert_eq!(r.status, 200, "{}", r.body);
    r
}

/// The two spans of one request through A then B: A's CLIENT span and B's SERVER span.
fn client_and_server(spans: &[Received]) -> (&Received, &Received) {
    let kind = |k: SpanKind| {
        spans
            .iter()
            .find(|s| s.span.kind == k as i32)
            .unwrap_or_else(|| panic!("no {k:?} span in {spans:#?}"))
    };
    (kind(SpanKind::Client), kind(SpanKind::Server))
}

#[tokio::test]
async fn each_hop_exports_a_span_nested_under_its_caller() {
    let (collector, endpoint) = Collector::start().await;
    let mut c = chain(
        &[
            "--otlp-endpoint",
            &endpoint,
            "--node",
            "shop/virtualNode/front",
        ],
        &[
            "--otlp-endpoint",
            &endpoint,
            "--node",
            "shop/virtualNode/app",
        ],
    )
    .await;

    // 1. HTTP/1.1 with W3C context plus every other propagation header.
    let tp = traceparent(TRACE_ID, CALLER_SPAN, "01");
    let passthrough = [
        ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
        (
            "b3",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
        ),
        ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
        ("x-b3-spanid", "e457b5a2e4d86bd1"),
        ("x-b3-parentspanid", "05e3ac9a4f6e3b90"),
        ("x-b3-sampled", "1"),
        (
            "x-amzn-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        ),
    ];
    let mut headers = vec![("traceparent", tp.as_str()), ("user-agent", "trace-test/1")];
    headers.extend(passthrough);
    let h1 = Client::http1();
    let seen = get(&h1, &format!("{}/cart/items", c.url), &headers).await;
    for (name, value) in passthrough {
        assert_eq!(
            seen.seen_header(name).as_deref(),
            Some(value),
            "{name} must reach the upstream unchanged"
        );
    }
    let forwarded = seen
        .seen_header("traceparent")
        .expect("traceparent upstream");
    let (fwd_trace, fwd_parent, fwd_flags) = tp_parts(&forwarded);
    assert_eq!((fwd_trace.as_str(), fwd_flags.as_str()), (TRACE_ID, "01"));

    // 2. HTTP/2 gRPC call carrying only X-Ray's header: its Root becomes the W3C trace id.
    let xray = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    let h2 = Client::http2();
    let grpc = h2
        .send(
            Method::POST,
            &format!("{}/shop.Cart/Add", c.url),
            &[
                ("content-type", "application/grpc"),
                ("x-amzn-trace-id", xray),
            ],
            Bytes::from_static(&[0, 0, 0, 0, 0]),
        )
        .await
        .expect("grpc request");
    assert_eq!(grpc.status, 200, "{}", grpc.body);
    assert_eq!(grpc.seen_header("x-amzn-trace-id").as_deref(), Some(xray));
    let xray_trace = "5759e988bd862e3fe1be46a994272793";
    let (grpc_trace, _, _) = tp_parts(&grpc.seen_header("traceparent").expect("traceparent"));
    assert_eq!(grpc_trace, xray_trace);

    // 3. No context at all: A starts a trace and B joins it.
    let fresh = get(&h1, &format!("{}/fresh", c.url), &[]).await;
    let (new_trace, new_parent, new_flags) =
        tp_parts(&fresh.seen_header("traceparent").expect("traceparent"));
    assert_eq!(new_flags, "01");

    collector.wait_for(6).await;
    c.stop().await;

    // --- What the collector received: one span per hop and request, nothing else.
    let all = collector.spans();
    assert_eq!(all.len(), 6, "{all:#?}");

    let spans = collector.of_trace(TRACE_ID);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let (a, b) = client_and_server(&spans);
    assert_eq!(
        a.parent_id(),
        CALLER_SPAN,
        "A nests under the caller's span"
    );
    assert_eq!(b.parent_id(), a.span_id(), "B nests under A");
    // The caller's tracestate is the spans' too.
    assert_eq!(
        a.span.trace_state,
        "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    );
    assert_eq!(b.span.trace_state, a.span.trace_state);
    assert_eq!(fwd_parent, b.span_id(), "the upstream's parent is B's span");
    assert_eq!(a.service, "shop/front");
    assert_eq!(b.service, "shop/app");
    assert_eq!(a.span.name, "GET");
    for s in [a, b] {
        assert_eq!(s.attr("http.request.method").as_deref(), Some("GET"));
        assert_eq!(s.attr("http.response.status_code").as_deref(), Some("200"));
        assert_eq!(s.attr("url.path").as_deref(), Some("/cart/items"));
        assert!(s.span.end_time_unix_nano >= s.span.start_time_unix_nano);
    }
    assert_eq!(a.attr("ferry.direction").as_deref(), Some("egress"));
    assert_eq!(a.attr("ferry.route").as_deref(), Some("to-b"));
    assert_eq!(a.attr("ferry.cluster").as_deref(), Some("b"));
    assert_eq!(b.attr("ferry.direction").as_deref(), Some("ingress"));
    assert_eq!(b.attr("ferry.cluster").as_deref(), Some("app"));
    assert_eq!(
        b.attr("ferry.upstream.address"),
        Some(c.upstream_addr().to_string())
    );
    assert_eq!(
        b.attr("user_agent.original").as_deref(),
        Some("trace-test/1")
    );
    // B was reached over HTTP/2 (cluster b's protocol), A over HTTP/1.1.
    assert_eq!(a.attr("network.protocol.version").as_deref(), Some("1.1"));
    assert_eq!(b.attr("network.protocol.version").as_deref(), Some("2"));

    let grpc_spans = collector.of_trace(xray_trace);
    assert_eq!(grpc_spans.len(), 2, "{grpc_spans:#?}");
    let (ga, gb) = client_and_server(&grpc_spans);
    assert_eq!(
        ga.parent_id(),
        "53995c3f42cd8ad8",
        "X-Ray's Parent is A's parent"
    );
    assert_eq!(gb.parent_id(), ga.span_id());
    for s in [ga, gb] {
        assert_eq!(s.span.name, "shop.Cart/Add");
        assert_eq!(s.attr("rpc.system").as_deref(), Some("grpc"));
        assert_eq!(s.attr("rpc.service").as_deref(), Some("shop.Cart"));
        assert_eq!(s.attr("rpc.method").as_deref(), Some("Add"));
        assert_eq!(s.attr("network.protocol.version").as_deref(), Some("2"));
    }

    let fresh_spans = collector.of_trace(&new_trace);
    assert_eq!(fresh_spans.len(), 2, "{fresh_spans:#?}");
    let (fa, fb) = client_and_server(&fresh_spans);
    assert!(fa.span.parent_span_id.is_empty(), "A's span is the root");
    assert_eq!(fb.parent_id(), fa.span_id());
    assert_eq!(new_parent, fb.span_id());
}

#[tokio::test]
async fn grpc_spans_carry_the_grpc_status_from_headers_or_trailers() {
    let (collector, endpoint) = Collector::start().await;
    let upstream = Upstream::start("grpc", UpstreamProtocol::Http2).await;
    let table = ingress_table(upstream.addr).replace("protocol: HTTP1", "protocol: HTTP2");
    let mut proxy = ProxyProcess::start_with_env(
        &table,
        "table.yaml",
        &["--otlp-endpoint", &endpoint],
        FAST_BATCHES,
    )
    .await
    .expect("proxy");
    let url = proxy.url("ingress").await;
    let h2 = Client::http2();
    let grpc = [("content-type", "application/grpc")];
    // The upstream answers /grpc-status/N trailers-only, /grpc-trailer/N in real trailers.
    for path in ["/test.Echo/grpc-status/5", "/test.Echo/grpc-trailer/7"] {
        let r = h2
            .send(Method::POST, &format!("{url}{path}"), &grpc, Bytes::new())
            .await
            .expect("grpc call");
        assert_eq!(r.status, 200);
    }
    collector.wait_for(2).await;
    proxy.sigterm();
    proxy.wait(Duration::from_secs(30)).await.expect("exit");
    let mut got: Vec<(String, Option<String>)> = collector
        .spans()
        .iter()
        .map(|s| (s.span.name.clone(), s.attr("rpc.grpc.status_code")))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("test.Echo/grpc-status/5".to_owned(), Some("5".to_owned())),
            ("test.Echo/grpc-trailer/7".to_owned(), Some("7".to_owned())),
        ]
    );
}

impl Chain {
    fn upstream_addr(&self) -> SocketAddr {
        self.upstream.addr
    }
}

#[tokio::test]
async fn sampling_zero_records_no_new_trace_but_follows_a_sampled_caller() {
    let (collector, endpoint) = Collector::start().await;
    // A samples nothing; B would sample everything but follows A's decision (parent-based).
    let mut c = chain(
        &["--otlp-endpoint", &endpoint, "--trace-sampling", "0"],
        &["--otlp-endpoint", &endpoint],
    )
    .await;
    let h1 = Client::http1();
    let mut unsampled = Vec::new();
    for _ in 0..20 {
        let r = get(&h1, &c.url, &[]).await;
        let (trace, _, flags) = tp_parts(&r.seen_header("traceparent").expect("traceparent"));
        assert_eq!(flags, "00", "A's decision not to sample travels downstream");
        unsampled.push(trace);
    }
    // A caller that sampled its trace is followed even at rate 0.
    let tp = traceparent(TRACE_ID, CALLER_SPAN, "01");
    get(&h1, &c.url, &[("traceparent", &tp)]).await;

    collector.wait_for(2).await;
    c.stop().await;
    let all = collector.spans();
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(all.iter().all(|s| s.trace_id() == TRACE_ID), "{all:#?}");
    for t in &unsampled {
        assert!(collector.of_trace(t).is_empty());
    }
}

#[tokio::test]
async fn an_unsampled_caller_is_followed_and_its_traceparent_kept() {
    let (collector, endpoint) = Collector::start().await;
    let mut c = chain(
        &["--otlp-endpoint", &endpoint],
        &["--otlp-endpoint", &endpoint],
    )
    .await;
    let tp = traceparent(TRACE_ID, CALLER_SPAN, "00");
    let r = get(&Client::http1(), &c.url, &[("traceparent", &tp)]).await;
    assert_eq!(r.seen_header("traceparent"), Some(tp));
    c.stop().await;
    assert!(collector.spans().is_empty(), "{:#?}", collector.spans());
}

#[tokio::test]
async fn without_an_endpoint_headers_pass_untouched_and_nothing_is_exported() {
    let (collector, _endpoint) = Collector::start().await;
    let mut c = chain(&[], &[]).await;
    let h1 = Client::http1();
    let tp = traceparent(TRACE_ID, CALLER_SPAN, "01");
    let headers = [
        ("traceparent", tp.as_str()),
        ("tracestate", "congo=t61rcWkgMzE"),
        ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
        (
            "x-amzn-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793",
        ),
    ];
    let r = get(&h1, &c.url, &headers).await;
    for (name, value) in headers {
        assert_eq!(r.seen_header(name).as_deref(), Some(value), "{name}");
    }
    // No context in, none made up.
    let bare = get(&h1, &c.url, &[]).await;
    assert_eq!(bare.seen_header("traceparent"), None);
    let metrics = c.a.metrics().await;
    assert!(
        !metrics.contains("ferry_tracing_"),
        "no tracing metrics without an exporter"
    );
    c.stop().await;
    assert!(collector.spans().is_empty());
}

#[tokio::test]
async fn a_dead_collector_does_not_fail_requests() {
    // One endpoint refuses connections (nothing listens); the other accepts and never answers.
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            open.push(s); // accepted, never read nor answered
        }
    });
    let refused_url = format!("http://{refused}");
    let silent_url = format!("http://{silent_addr}");
    let export_env: &[(&str, &str)] = &[
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "300"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "16"),
    ];
    let upstream = Upstream::start("app", UpstreamProtocol::Http1).await;
    for endpoint in [&refused_url, &silent_url] {
        let proxy = ProxyProcess::start_with_env(
            &ingress_table(upstream.addr),
            "table.yaml",
            &["--otlp-endpoint", endpoint],
            export_env,
        )
        .await
        .expect("proxy starts with an unreachable collector");
        let url = proxy.url("ingress").await;
        let h1 = Client::http1();
        for i in 0..200 {
            let r = h1
                .get(&format!("{url}/n/{i}"))
                .await
                .unwrap_or_else(|e| panic!("request {i} via {endpoint}: {e}"));
            assert_eq!(r.status, 200, "request {i} via {endpoint}: {}", r.body);
        }
        // The spans it could not deliver are counted.
        let deadline = Instant::now() + Duration::from_secs(20);
        let failed = "ferry_tracing_spans_dropped_total{reason=\"export_failed\"}";
        while proxy.metric(failed).await == 0.0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let m = proxy.metrics().await;
        let v = |s: &str| ferry_tests::proxy::metric_value(&m, s);
        assert!(v(failed) > 0.0, "{endpoint}: {m}");
        assert_eq!(v("ferry_tracing_spans_exported_total"), 0.0);
    }
    held.abort();
}

#[tokio::test]
async fn spans_reach_a_collector_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ferry_tests::tls::Ca::new("collector-ca");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let cert = ca.issue(dir.path(), "collector", &["localhost"]);
    let (collector, endpoint) = Collector::start_tls(&cert).await;
    let upstream = Upstream::start("app", UpstreamProtocol::Http1).await;
    // The collector's CA is trusted through SSL_CERT_FILE, as a system trust store would be.
    let env = [
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("SSL_CERT_FILE", ca_file.to_str().unwrap()),
    ];
    let mut proxy = ProxyProcess::start_with_env(
        &ingress_table(upstream.addr),
        "table.yaml",
        &["--otlp-endpoint", &endpoint],
        &env,
    )
    .await
    .expect("proxy");
    let url = proxy.url("ingress").await;
    let tp = traceparent(TRACE_ID, CALLER_SPAN, "01");
    get(&Client::http1(), &url, &[("traceparent", &tp)]).await;
    collector.wait_for(1).await;
    proxy.sigterm();
    proxy.wait(Duration::from_secs(30)).await.expect("exit");
    let spans = collector.of_trace(TRACE_ID);
    assert_eq!(spans.len(), 1, "{spans:#?}\n{}", proxy.stderr());
    assert_eq!(spans[0].parent_id(), CALLER_SPAN);
    assert_eq!(spans[0].service, "ferry-proxy");
}
