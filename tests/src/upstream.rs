//! Upstream servers for tests. An [`Upstream`] answers every request with a JSON description of
//! what it received (its own name, method, path, headers), so a test can see exactly what the
//! proxy forwarded. Special paths: `/slow/MS` answers after MS milliseconds, `/status/CODE`
//! answers with that status.
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
        let (n, h) = (name.to_owned(), Arc::clone(&hits));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (n, h) = (n.clone(), Arc::clone(&h));
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let (n, h) = (n.clone(), Arc::clone(&h));
                        async move { Ok::<_, Infallible>(answer(&n, &h, req).await) }
                    });
                    let io = TokioIo::new(stream);
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let builder = match protocol {
                        UpstreamProtocol::Http1 => builder.http1_only(),
                        UpstreamProtocol::Http2 => builder.http2_only(),
                    };
                    let _ = builder.serve_connection_with_upgrades(io, svc).await;
                });
            }
        });
        Upstream {
            addr,
            name: name.to_owned(),
            hits,
            task,
        }
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
        self.task.abort();
    }
}

async fn answer(
    name: &str,
    hits: &AtomicUsize,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    hits.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_owned();
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
    let mut resp = Response::new(Full::new(Bytes::from(json.to_string())));
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
