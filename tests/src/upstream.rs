//! Upstream servers for tests. An [`Upstream`] answers every request with a JSON description of
//! what it received (its own name, method, path, headers), so a test can see exactly what the
//! proxy forwarded. Special paths: `/slow/MS` answers after MS milliseconds, `/status/CODE`
//! answers with that status.
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 with prior knowledge only.
    Http2,
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub name: String,
    hits: Arc<AtomicUsize>,
    healthy: Arc<AtomicBool>,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    task: JoinHandle<()>,
}

impl Upstream {
    pub async fn start(name: &str, protocol: UpstreamProtocol) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        Self::serve(listener, name, protocol)
    }

    /// Starts on a given address (to bring an upstream back on the same port).
    pub async fn start_on(addr: SocketAddr, name: &str, protocol: UpstreamProtocol) -> Upstream {
        let listener = TcpListener::bind(addr).await.expect("bind upstream");
        Self::serve(listener, name, protocol)
    }

    /// Starts one upstream per `(name, ip)`, all on the same port (a DNS cluster has one port for
    /// every address its name resolves to). Any loopback address works: 127.0.0.0/8, or ::1.
    pub async fn start_group(
        members: &[(&str, IpAddr)],
        protocol: UpstreamProtocol,
    ) -> Vec<Upstream> {
        'attempt: for _ in 0..50 {
            let Some((_, first_ip)) = members.first() else {
                return Vec::new();
            };
            let first = TcpListener::bind(SocketAddr::new(*first_ip, 0))
                .await
                .expect("bind upstream");
            let port = first.local_addr().expect("local addr").port();
            let mut listeners = vec![first];
            for (_, ip) in &members[1..] {
                match TcpListener::bind(SocketAddr::new(*ip, port)).await {
                    Ok(l) => listeners.push(l),
                    // Taken on that address by someone else: try another port.
                    Err(_) => continue 'attempt,
                }
            }
            return listeners
                .into_iter()
                .zip(members)
                .map(|(l, (name, _))| Self::serve(l, name, protocol))
                .collect();
        }
        panic!("no port free on all of {members:?}");
    }

    fn serve(listener: TcpListener, name: &str, protocol: UpstreamProtocol) -> Upstream {
        let addr = listener.local_addr().expect("local addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let healthy = Arc::new(AtomicBool::new(true));
        let conns: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let state = Arc::new(State {
            name: name.to_owned(),
            hits: Arc::clone(&hits),
            healthy: Arc::clone(&healthy),
        });
        let tracked = Arc::clone(&conns);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&state);
                let conn = tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(answer(&state, req).await) }
                    });
                    let io = TokioIo::new(stream);
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let builder = match protocol {
                        UpstreamProtocol::Http1 => builder.http1_only(),
                        UpstreamProtocol::Http2 => builder.http2_only(),
                    };
                    let _ = builder.serve_connection_with_upgrades(io, svc).await;
                });
                if let Ok(mut c) = tracked.lock() {
                    c.retain(|h| !h.is_finished());
                    c.push(conn.abort_handle());
                }
            }
        });
        Upstream {
            addr,
            name: name.to_owned(),
            hits,
            healthy,
            conns,
            task,
        }
    }

    /// Dies as a process would: stops listening and closes every open connection.
    pub fn kill(&self) {
        self.task.abort();
        if let Ok(c) = self.conns.lock() {
            for h in c.iter() {
                h.abort();
            }
        }
    }

    /// What `/health` answers: 200 when healthy, 503 when not.
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::SeqCst);
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Stops accepting (existing connections may linger until their tasks end).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.kill();
    }
}

struct State {
    name: String,
    hits: Arc<AtomicUsize>,
    healthy: Arc<AtomicBool>,
}

type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).boxed()
}

async fn answer(state: &State, req: Request<hyper::body::Incoming>) -> Response<TestBody> {
    let path = req.uri().path().to_owned();
    let name = state.name.as_str();
    // Health probes are not traffic: they do not count as hits.
    if path == "/health" {
        let ok = state.healthy.load(Ordering::SeqCst);
        let mut resp = Response::new(full(if ok { "ok" } else { "unhealthy" }));
        *resp.status_mut() = if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        // Still says who answered: routing tests send client traffic to /health too.
        resp.headers_mut()
            .insert("x-upstream", name.parse().expect("header value"));
        return resp;
    }
    state.hits.fetch_add(1, Ordering::SeqCst);
    // gRPC statuses: trailers-only (in the headers) or in real trailers after a message.
    let grpc = |marker: &str| {
        path.rfind(marker)
            .and_then(|i| path[i + marker.len()..].parse::<u32>().ok())
    };
    if let Some(code) = grpc("/grpc-status/") {
        let mut resp = Response::new(full(Bytes::new()));
        resp.headers_mut()
            .insert("content-type", "application/grpc".parse().expect("value"));
        resp.headers_mut()
            .insert("grpc-status", code.to_string().parse().expect("value"));
        resp.headers_mut()
            .insert("x-upstream", name.parse().expect("value"));
        return resp;
    }
    if let Some(code) = grpc("/grpc-trailer/") {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", code.to_string().parse().expect("value"));
        let frames = vec![
            Ok::<_, Infallible>(http_body::Frame::data(Bytes::from_static(&[
                0, 0, 0, 0, 1, 0x08,
            ]))),
            Ok(http_body::Frame::trailers(trailers)),
        ];
        let body = BodyExt::boxed(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )));
        let mut resp = Response::new(body);
        resp.headers_mut()
            .insert("content-type", "application/grpc".parse().expect("value"));
        resp.headers_mut()
            .insert("x-upstream", name.parse().expect("value"));
        return resp;
    }
    let mut status = StatusCode::OK;
    let delay = path
        .strip_prefix("/slow/")
        .and_then(|s| s.parse::<u64>().ok())
        .or_else(|| req.headers().get("x-delay-ms")?.to_str().ok()?.parse().ok());
    if let Some(ms) = delay {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(code) = path
        .rfind("/status/")
        .and_then(|i| path[i + 8..].parse::<u16>().ok())
    {
        status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    }
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let version = format!("{:?}", req.version());
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let authority = req.uri().authority().map(|a| a.to_string());
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let json = serde_json::json!({
        "upstream": name,
        "method": method,
        "path": path,
        "uri": uri,
        "authority": authority,
        "version": version,
        "headers": headers,
        "body_len": body.len(),
    });
    let mut resp = Response::new(full(json.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("x-upstream", name.parse().expect("header value"));
    resp
}

/// A WebSocket server that echoes every text and binary message.
pub struct WsEchoUpstream {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl WsEchoUpstream {
    pub async fn start() -> WsEchoUpstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind ws upstream");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    while let Some(Ok(msg)) = ws.next().await {
                        if msg.is_text() || msg.is_binary() {
                            if ws.send(msg).await.is_err() {
                                break;
                            }
                        } else if msg.is_close() {
                            break;
                        }
                    }
                });
            }
        });
        WsEchoUpstream { addr, task }
    }
}

impl Drop for WsEchoUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves HTTP/2 (prior knowledge) on `listener`, with the connections' settings `builder`
/// (`h2::server::Builder::new()` for h2's defaults): every stream goes to `on_stream` in a task
/// of its own. Returns the accept loop's task.
pub fn serve_h2<F, Fut>(
    listener: TcpListener,
    builder: h2::server::Builder,
    on_stream: F,
) -> JoinHandle<()>
where
    F: Fn(http::Request<h2::RecvStream>, h2::server::SendResponse<Bytes>) -> Fut
        + Clone
        + Send
        + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let on_stream = on_stream.clone();
            let builder = builder.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = builder.handshake(stream).await else {
                    return;
                };
                while let Some(Ok((req, respond))) = conn.accept().await {
                    tokio::spawn(on_stream(req, respond));
                }
            });
        }
    })
}

/// An HTTP/2 upstream that refuses its first `refuse` streams (RST_STREAM REFUSED_STREAM, the
/// signal that nothing was processed) and answers 200 "ok" after that.
pub struct RefusingH2Upstream {
    pub addr: SocketAddr,
    streams: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl RefusingH2Upstream {
    pub async fn start(refuse: usize) -> RefusingH2Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let streams = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&streams);
        let task = serve_h2(
            listener,
            h2::server::Builder::new(),
            move |_req, mut respond| {
                let counter = Arc::clone(&counter);
                async move {
                    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                    if n <= refuse {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                        return;
                    }
                    let resp = http::Response::builder()
                        .status(200)
                        .header("x-upstream", "refusing")
                        .body(())
                        .expect("response");
                    if let Ok(mut body) = respond.send_response(resp, false) {
                        let _ = body.send_data(Bytes::from_static(b"ok"), true);
                    }
                }
            },
        );
        RefusingH2Upstream {
            addr,
            streams,
            task,
        }
    }

    /// Streams opened so far (refused or answered).
    pub fn streams(&self) -> usize {
        self.streams.load(Ordering::SeqCst)
    }
}

impl Drop for RefusingH2Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How a [`CountingH2Upstream`] behaves.
#[derive(Clone, Copy, Debug, Default)]
pub struct H2Behaviour {
    /// Its first connection says GOAWAY (NO_ERROR, last stream 0) before it takes any stream,
    /// as an upstream shutting down gracefully does.
    pub goaway_first: bool,
    /// SETTINGS_MAX_CONCURRENT_STREAMS: streams past it are refused (RST_STREAM
    /// REFUSED_STREAM), even before the client has seen the setting.
    pub max_concurrent_streams: Option<u32>,
    /// The first connection's SETTINGS_MAX_CONCURRENT_STREAMS instead (0: an upstream that
    /// takes no more streams on it).
    pub first_connection_streams: Option<u32>,
    /// How long each connection waits after it is accepted before it sends its SETTINGS (a busy
    /// upstream): a client that does not wait for them sends its first streams without knowing
    /// the limit.
    pub settings_delay: Duration,
    /// How long every answer waits before its headers.
    pub answer_delay: Duration,
}

/// An HTTP/2 upstream that counts the connections it accepted and those that ended, the streams
/// it served and the most it had open at once on one connection. `/slow` answers five chunks
/// 200 ms apart ("chunk 0;"...); `/early` answers "ok" at once, then reads the request body to
/// its end before the stream counts as closed; anything else answers "ok". See [`H2Behaviour`]
/// for the rest.
pub struct CountingH2Upstream {
    pub addr: SocketAddr,
    counts: Arc<H2Counts>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct H2Counts {
    accepted: AtomicUsize,
    ended: AtomicUsize,
    served: AtomicUsize,
    most_open: AtomicUsize,
}

impl CountingH2Upstream {
    pub async fn start(behaviour: H2Behaviour) -> CountingH2Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let counts = Arc::new(H2Counts::default());
        let c = Arc::clone(&counts);
        let mut builder = h2::server::Builder::new();
        if let Some(n) = behaviour.max_concurrent_streams {
            builder.max_concurrent_streams(n);
        }
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let first = c.accepted.fetch_add(1, Ordering::SeqCst) == 0;
                let (c, mut builder) = (Arc::clone(&c), builder.clone());
                if let (true, Some(n)) = (first, behaviour.first_connection_streams) {
                    builder.max_concurrent_streams(n);
                }
                tokio::spawn(async move {
                    tokio::time::sleep(behaviour.settings_delay).await;
                    if let Ok(mut conn) = builder.handshake(tcp).await {
                        if first && behaviour.goaway_first {
                            conn.abrupt_shutdown(h2::Reason::NO_ERROR);
                        }
                        let open = Arc::new(AtomicUsize::new(0));
                        while let Some(Ok((req, respond))) = conn.accept().await {
                            c.served.fetch_add(1, Ordering::SeqCst);
                            let now_open = open.fetch_add(1, Ordering::SeqCst) + 1;
                            c.most_open.fetch_max(now_open, Ordering::SeqCst);
                            let open = Arc::clone(&open);
                            tokio::spawn(async move {
                                tokio::time::sleep(behaviour.answer_delay).await;
                                Self::answer(req, respond).await;
                                open.fetch_sub(1, Ordering::SeqCst);
                            });
                        }
                    }
                    c.ended.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        CountingH2Upstream { addr, counts, task }
    }

    async fn answer(
        req: http::Request<h2::RecvStream>,
        mut respond: h2::server::SendResponse<Bytes>,
    ) {
        let resp = http::Response::builder()
            .status(200)
            .body(())
            .expect("response");
        let Ok(mut body) = respond.send_response(resp, false) else {
            return;
        };
        match req.uri().path() {
            "/slow" => {
                for i in 0..5 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let _ = body.send_data(format!("chunk {i};").into(), i == 4);
                }
            }
            path => {
                let _ = body.send_data(Bytes::from_static(b"ok"), true);
                if path == "/early" {
                    // The whole answer at once, then the request body read to its end: the
                    // stream stays open (and counts against the limit) until the client ends it.
                    let mut rx = req.into_body();
                    while let Some(Ok(data)) = rx.data().await {
                        let _ = rx.flow_control().release_capacity(data.len());
                    }
                }
            }
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.counts.accepted.load(Ordering::SeqCst)
    }

    /// Connections that have ended (closed by the proxy, or after GOAWAY).
    pub fn ended(&self) -> usize {
        self.counts.ended.load(Ordering::SeqCst)
    }

    /// Streams taken (and answered, or being answered).
    pub fn served(&self) -> usize {
        self.counts.served.load(Ordering::SeqCst)
    }

    /// The most streams that were open at once on one connection.
    pub fn most_open(&self) -> usize {
        self.counts.most_open.load(Ordering::SeqCst)
    }
}

impl Drop for CountingH2Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An HTTP/2 upstream that streams every request body back as it arrives, as a bidirectional
/// gRPC call does: it answers the headers at once (200, `application/grpc`), then echoes each
/// DATA frame, and ends with trailers (`grpc-status: 0`, and `x-echoed-bytes`) when the request
/// ends.
pub struct EchoH2Upstream {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl EchoH2Upstream {
    pub async fn start() -> EchoH2Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let task = serve_h2(listener, h2::server::Builder::new(), echo_stream);
        EchoH2Upstream { addr, task }
    }
}

async fn echo_stream(
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) {
    let resp = http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(())
        .expect("response");
    let Ok(mut tx) = respond.send_response(resp, false) else {
        return;
    };
    let mut rx = req.into_body();
    let mut echoed = 0usize;
    while let Some(Ok(data)) = rx.data().await {
        let _ = rx.flow_control().release_capacity(data.len());
        echoed += data.len();
        let mut rest = data;
        // Sent as the window allows, so a large body does not pile up in h2's buffers.
        while !rest.is_empty() {
            tx.reserve_capacity(rest.len());
            let Some(Ok(n)) = std::future::poll_fn(|cx| tx.poll_capacity(cx)).await else {
                return;
            };
            let chunk = rest.split_to(n.min(rest.len()));
            if tx.send_data(chunk, false).is_err() {
                return;
            }
        }
    }
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    trailers.insert("x-echoed-bytes", http::HeaderValue::from(echoed));
    let _ = tx.send_trailers(trailers);
}

impl Drop for EchoH2Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
