//! A real DNS server on loopback (hickory-server, UDP and TCP on one OS-chosen port) whose records
//! a test changes while the proxy runs. It is authoritative for whatever names the test sets:
//! A and AAAA records with a settable TTL, NXDOMAIN for any other name, NODATA for a name that has
//! only the other family. It can be told to stop answering (queries are read and dropped, so the
//! client times out, as with a dead server), and counts the queries per name.
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Header, HeaderCounts, Metadata, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA};
use hickory_server::proto::rr::{RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::{TcpListener, UdpSocket};

#[derive(Default)]
struct Zone {
    /// Lowercased names without the trailing dot.
    records: Mutex<HashMap<String, Vec<IpAddr>>>,
    queries: Mutex<HashMap<String, usize>>,
    ttl: AtomicU32,
    silent: AtomicBool,
}

pub struct DnsServer {
    pub addr: SocketAddr,
    zone: Arc<Zone>,
    server: Server<Handler>,
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl DnsServer {
    /// Starts a server on 127.0.0.1 (UDP and TCP on the same port) with a 1 s TTL.
    pub async fn start() -> DnsServer {
        let zone = Arc::new(Zone {
            ttl: AtomicU32::new(1),
            ..Zone::default()
        });
        let mut server = Server::new(Handler(Arc::clone(&zone)));
        // Bind UDP on port 0, then TCP on the same port; another process may hold that TCP port,
        // so try a few times.
        for _ in 0..20 {
            let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind DNS UDP");
            let addr = udp.local_addr().expect("local addr");
            let Ok(tcp) = TcpListener::bind(addr).await else {
                continue;
            };
            server.register_socket(udp);
            server.register_listener(tcp, Duration::from_secs(5), 64);
            return DnsServer { addr, zone, server };
        }
        panic!("no port free for both UDP and TCP on 127.0.0.1");
    }

    /// Sets the A/AAAA records of `name` (replacing any).
    pub fn set(&self, name: &str, addrs: &[IpAddr]) {
        self.zone
            .records
            .lock()
            .expect("zone")
            .insert(key(name), addrs.to_vec());
    }

    /// Removes `name`: it answers NXDOMAIN from now on.
    pub fn remove(&self, name: &str) {
        self.zone.records.lock().expect("zone").remove(&key(name));
    }

    /// The TTL of every answer from now on.
    pub fn set_ttl(&self, secs: u32) {
        self.zone.ttl.store(secs, Ordering::SeqCst);
    }

    /// Reads and drops every query from now on (the client times out).
    pub fn stop_answering(&self) {
        self.zone.silent.store(true, Ordering::SeqCst);
    }

    pub fn resume_answering(&self) {
        self.zone.silent.store(false, Ordering::SeqCst);
    }

    /// Queries received for `name` (any type), answered or not.
    pub fn queries(&self, name: &str) -> usize {
        self.zone
            .queries
            .lock()
            .expect("queries")
            .get(&key(name))
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.server.shutdown_token().cancel();
    }
}

struct Handler(Arc<Zone>);

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let zone = &self.0;
        let mut metadata = Metadata::response_from_request(&request.metadata);
        let nothing_sent = |metadata: Metadata| {
            ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            })
        };
        let Ok(info) = request.request_info() else {
            return nothing_sent(metadata);
        };
        let name = info.query.original().name().clone();
        let qtype = info.query.query_type();
        *zone
            .queries
            .lock()
            .expect("queries")
            .entry(key(&name.to_string()))
            .or_default() += 1;
        if zone.silent.load(Ordering::SeqCst) {
            return nothing_sent(metadata);
        }
        metadata.authoritative = true;
        let ttl = zone.ttl.load(Ordering::SeqCst);
        let found = zone
            .records
            .lock()
            .expect("zone")
            .get(&key(&name.to_string()))
            .cloned();
        let answers: Vec<Record> = match found {
            None => {
                metadata.response_code = ResponseCode::NXDomain;
                Vec::new()
            }
            Some(addrs) => addrs
                .iter()
                .filter_map(|ip| match (ip, qtype) {
                    (IpAddr::V4(v4), RecordType::A) => Some(RData::A(A(*v4))),
                    (IpAddr::V6(v6), RecordType::AAAA) => Some(RData::AAAA(AAAA(*v6))),
                    _ => None,
                })
                .map(|rdata| Record::from_rdata(name.clone(), ttl, rdata))
                .collect(),
        };
        let response = MessageResponseBuilder::from_message_request(request).build(
            metadata,
            answers.iter(),
            [],
            [],
            [],
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(_) => nothing_sent(metadata),
        }
    }
}
