//! One upstream address, its in-flight count (for least-request) and its idle connections.
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_queue::SegQueue;
use hyper::client::conn::http1;

use super::h1::RawConn;
use super::handoff::{Handoff, Waiter};
use crate::http::RequestBody;
use crate::resilience::health::HealthState;
use crate::resilience::outlier::OutlierState;

/// Idle HTTP/1.1 connections kept per endpoint beyond which a finished one is closed.
const MAX_IDLE_PER_ENDPOINT: usize = 1024;

pub struct Endpoint {
    pub addr: SocketAddr,
    /// Active health-check verdict (healthy until a checker says otherwise).
    pub health: HealthState,
    /// Outlier-detection state: consecutive errors and ejection.
    pub outlier: OutlierState,
    active: AtomicU32,
    /// Idle HTTP/1.1 connections (lock-free queue: the request path takes no lock).
    idle: SegQueue<IdleConn>,
    idle_count: AtomicUsize,
    /// Idle connections of the direct HTTP/1.1 client (bodiless requests), lock-free too.
    direct: SegQueue<IdleDirect>,
    direct_count: AtomicUsize,
    /// Requests of the direct client opening a connection, which take a freed one if it comes
    /// first.
    handoff: Handoff<Box<RawConn>>,
    /// A task is closing this endpoint's expired and dead direct connections.
    reaping: AtomicBool,
    /// The HTTP/2 connections, multiplexing the requests to this endpoint.
    pub(super) h2: super::h2_client::H2Pool,
}

pub(super) struct IdleConn {
    pub(super) sender: http1::SendRequest<RequestBody>,
    pub(super) since: Instant,
}

struct IdleDirect {
    conn: Box<RawConn>,
    since: Instant,
}

impl IdleDirect {
    /// Not idle past the timeout, and neither closed nor written to by the upstream.
    fn is_usable(&mut self, idle_timeout: Duration) -> bool {
        self.since.elapsed() <= idle_timeout && self.conn.is_reusable()
    }
}

impl Endpoint {
    pub fn new(addr: SocketAddr) -> Endpoint {
        Endpoint {
            addr,
            health: HealthState::default(),
            outlier: OutlierState::default(),
            active: AtomicU32::new(0),
            idle: SegQueue::new(),
            idle_count: AtomicUsize::new(0),
            direct: SegQueue::new(),
            direct_count: AtomicUsize::new(0),
            handoff: Handoff::default(),
            reaping: AtomicBool::new(false),
            h2: super::h2_client::H2Pool::default(),
        }
    }

    /// Requests in flight to this endpoint.
    pub fn active_requests(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    /// The state of this endpoint's HTTP/2 connections (for `/clusters`).
    pub fn http2_status(&self) -> super::h2_client::H2Status {
        self.h2.status()
    }

    /// Idle pooled HTTP/1.1 connections (of both clients).
    pub fn idle_connections(&self) -> usize {
        self.idle_count.load(Ordering::Relaxed) + self.direct_count.load(Ordering::Relaxed)
    }

    /// An idle direct connection that can take a request; expired and dead ones are closed.
    pub(super) fn pop_direct(&self, idle_timeout: Duration) -> Option<Box<RawConn>> {
        while let Some(mut idle) = self.direct.pop() {
            self.direct_count.fetch_sub(1, Ordering::Relaxed);
            if idle.is_usable(idle_timeout) {
                return Some(idle.conn);
            }
        }
        None
    }

    /// Waits for the next direct connection returned to this endpoint (while opening one).
    pub(super) fn wait_direct(&self) -> Waiter<'_, Box<RawConn>> {
        self.handoff.wait()
    }

    /// Returns a direct connection whose last response was read completely, or a new one its
    /// request did not need: to a request waiting for one, else to the pool.
    ///
    /// Not one that holds bytes the upstream sent past the end of its response (a body longer
    /// than its Content-Length, a body on a HEAD or 204 response, a response nobody asked
    /// for): they would be read as the response to the next request it carries, a request
    /// that may not even be written yet (a desync). The pool's own check when a connection is
    /// taken ([`RawConn::is_reusable`]) does not see a connection handed straight to a waiting
    /// request, so the check is here, before either. hyper's client and Envoy close such a
    /// connection too. Bytes that come later, while it is idle, are caught when it is taken.
    pub(super) fn push_direct(&self, conn: Box<RawConn>) {
        if conn.holds_unread() {
            tracing::debug!(
                endpoint = %self.addr,
                "the upstream sent bytes after the response; closing the connection"
            );
            return;
        }
        let Some(conn) = self.handoff.offer(conn) else {
            return;
        };
        if self.idle_connections() >= MAX_IDLE_PER_ENDPOINT {
            return;
        }
        self.direct_count.fetch_add(1, Ordering::Relaxed);
        self.direct.push(IdleDirect {
            conn,
            since: Instant::now(),
        });
    }

    /// Makes sure a task closes this endpoint's idle direct connections once they expire or the
    /// upstream closes them, so none lingers half-closed while no request comes to notice it.
    /// The task ends when the pool is empty or the endpoint is gone.
    pub(super) fn reap_idle_direct(self: &Arc<Self>, idle_timeout: Duration) {
        if self.reaping.load(Ordering::Relaxed) || self.reaping.swap(true, Ordering::AcqRel) {
            return;
        }
        let period = idle_timeout.clamp(Duration::from_millis(50), Duration::from_secs(2));
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(ep) = weak.upgrade() else { return };
                ep.sweep_direct(idle_timeout);
                if ep.direct_count.load(Ordering::Relaxed) == 0 {
                    ep.reaping.store(false, Ordering::Release);
                    return;
                }
            }
        });
    }

    /// Closes the idle direct connections that expired or that the upstream closed.
    fn sweep_direct(&self, idle_timeout: Duration) {
        for _ in 0..self.direct_count.load(Ordering::Relaxed) {
            let Some(mut idle) = self.direct.pop() else {
                break;
            };
            if idle.is_usable(idle_timeout) {
                self.direct.push(idle);
            } else {
                self.direct_count.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    pub(super) fn pop_idle(&self) -> Option<IdleConn> {
        let c = self.idle.pop()?;
        self.idle_count.fetch_sub(1, Ordering::Relaxed);
        Some(c)
    }

    /// Returns a connection whose last response was read completely.
    pub(super) fn push_idle(&self, sender: http1::SendRequest<RequestBody>) {
        if sender.is_closed() || self.idle_count.load(Ordering::Relaxed) >= MAX_IDLE_PER_ENDPOINT {
            return;
        }
        self.idle_count.fetch_add(1, Ordering::Relaxed);
        self.idle.push(IdleConn {
            sender,
            since: Instant::now(),
        });
    }
}

/// Counts one request in flight to an endpoint for as long as it lives.
pub struct ActiveRequest(Arc<Endpoint>);

impl ActiveRequest {
    pub fn new(ep: Arc<Endpoint>) -> ActiveRequest {
        ep.active.fetch_add(1, Ordering::Relaxed);
        ActiveRequest(ep)
    }

    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.0
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}
