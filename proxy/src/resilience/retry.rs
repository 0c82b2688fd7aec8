//! Retry policies, App Mesh's way: which outcomes are retried (its event names and status sets),
//! how long to wait between tries (exponential backoff with full jitter), and a budget that caps
//! retries at a share of the cluster's requests so that retries cannot multiply an outage.
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The outcome of one try, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A response arrived; `grpc` is its grpc-status when it carried one.
    Response { status: u16, grpc: Option<u32> },
    /// No connection could be made.
    ConnectFailure,
    /// The upstream refused the HTTP/2 stream (REFUSED_STREAM): nothing was processed.
    RefusedStream,
    /// The connection or stream broke before a response arrived.
    Reset,
    /// The per-try timeout expired.
    PerTryTimeout,
}

/// `httpRetryEvents`, as bits.
pub const SERVER_ERROR: u8 = 1;
pub const GATEWAY_ERROR: u8 = 2;
pub const CLIENT_ERROR: u8 = 4;
pub const STREAM_ERROR: u8 = 8;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub per_try_timeout: Option<Duration>,
    pub http_events: u8,
    pub connection_error: bool,
    /// gRPC status codes that are retried.
    pub grpc_codes: Vec<u32>,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl RetryPolicy {
    pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(25);
    pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_millis(250);

    /// Whether this outcome is retried under this policy (attempts and budget aside).
    pub fn retries(&self, outcome: Outcome) -> bool {
        let http = |bit: u8| self.http_events & bit != 0;
        // server-error and gateway-error also cover resets and connect failures, as Envoy's 5xx
        // and gateway-error do; App Mesh's connection-error is connect failures only.
        let five = http(SERVER_ERROR) || http(GATEWAY_ERROR);
        match outcome {
            Outcome::Response { status, grpc } => {
                let by_status = (http(SERVER_ERROR) && matches!(status, 500..=508 | 510 | 511))
                    || (http(GATEWAY_ERROR) && matches!(status, 502..=504))
                    || (http(CLIENT_ERROR) && status == 409);
                let by_grpc = grpc.is_some_and(|code| self.grpc_codes.contains(&code));
                by_status || by_grpc
            }
            Outcome::ConnectFailure => self.connection_error || five,
            Outcome::RefusedStream => http(STREAM_ERROR) || five,
            Outcome::Reset | Outcome::PerTryTimeout => five,
        }
    }

    /// Whether gRPC statuses matter: then a response's trailers may have to be read.
    pub fn watches_grpc(&self) -> bool {
        !self.grpc_codes.is_empty()
    }

    /// The wait before retry number `retry` (1-based): uniform in [0, min(max, base * 2^(retry-1))].
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.saturating_sub(1)).unwrap_or(u32::MAX);
        let cap = self.backoff_base.saturating_mul(factor).min(self.backoff_max);
        let cap_us = u64::try_from(cap.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(fastrand::u64(..=cap_us))
    }
}

/// gRPC status code names as App Mesh spells them in `grpcRetryEvents`.
pub fn grpc_code(event: &str) -> Option<u32> {
    Some(match event {
        "cancelled" => 1,
        "deadline-exceeded" => 4,
        "resource-exhausted" => 8,
        "internal" => 13,
        "unavailable" => 14,
        _ => return None,
    })
}

/// Caps concurrent retries per cluster at `max(MIN_CONCURRENCY, PERCENT% of requests in flight)`,
/// as Envoy's retry budget does (20%, at least 3).
#[derive(Debug, Default)]
pub struct RetryBudget {
    requests: AtomicU32,
    retries: AtomicU32,
}

impl RetryBudget {
    const PERCENT: u32 = 20;
    const MIN_CONCURRENCY: u32 = 3;

    /// Counts a request in flight for as long as the guard lives.
    pub fn request(&self) -> BudgetGuard<'_> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        BudgetGuard { counter: &self.requests }
    }

    /// A retry slot, or `None` when the budget is spent.
    pub fn try_retry(&self) -> Option<BudgetGuard<'_>> {
        let allowed = (self.requests.load(Ordering::Relaxed) * Self::PERCENT / 100).max(Self::MIN_CONCURRENCY);
        let prev = self.retries.fetch_add(1, Ordering::Relaxed);
        if prev >= allowed {
            self.retries.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(BudgetGuard { counter: &self.retries })
    }
}

pub struct BudgetGuard<'a> {
    counter: &'a AtomicU32,
}

impl Drop for BudgetGuard<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(http_events: u8, connection_error: bool, grpc: &[u32]) -> RetryPolicy {
        RetryPolicy {
            max_retries: 2,
            per_try_timeout: None,
            http_events,
            connection_error,
            grpc_codes: grpc.to_vec(),
            backoff_base: RetryPolicy::DEFAULT_BACKOFF_BASE,
            backoff_max: RetryPolicy::DEFAULT_BACKOFF_MAX,
        }
    }

    fn status(s: u16) -> Outcome {
        Outcome::Response { status: s, grpc: None }
    }

    #[test]
    fn app_mesh_status_sets() {
        let server = policy(SERVER_ERROR, false, &[]);
        for s in [500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511] {
            assert!(server.retries(status(s)), "{s}");
        }
        for s in [200, 404, 409, 509, 512] {
            assert!(!server.retries(status(s)), "{s}");
        }
        let gateway = policy(GATEWAY_ERROR, false, &[]);
        assert!(gateway.retries(status(502)) && gateway.retries(status(503)) && gateway.retries(status(504)));
        assert!(!gateway.retries(status(500)) && !gateway.retries(status(409)));
        let client = policy(CLIENT_ERROR, false, &[]);
        assert!(client.retries(status(409)) && !client.retries(status(500)) && !client.retries(Outcome::Reset));
    }

    #[test]
    fn connection_and_stream_events() {
        let tcp = policy(0, true, &[]);
        assert!(tcp.retries(Outcome::ConnectFailure));
        assert!(!tcp.retries(Outcome::Reset) && !tcp.retries(status(503)));
        let stream = policy(STREAM_ERROR, false, &[]);
        assert!(stream.retries(Outcome::RefusedStream) && !stream.retries(Outcome::Reset));
        let server = policy(SERVER_ERROR, false, &[]);
        assert!(server.retries(Outcome::Reset) && server.retries(Outcome::ConnectFailure) && server.retries(Outcome::PerTryTimeout));
    }

    #[test]
    fn grpc_codes() {
        let g = policy(0, false, &[14, 4]);
        assert!(g.retries(Outcome::Response { status: 200, grpc: Some(14) }));
        assert!(!g.retries(Outcome::Response { status: 200, grpc: Some(5) }));
        assert!(!g.retries(Outcome::Response { status: 200, grpc: None }));
        assert_eq!(grpc_code("unavailable"), Some(14));
    }

    #[test]
    fn backoff_is_bounded_and_grows() {
        let p = policy(SERVER_ERROR, false, &[]);
        for _ in 0..1000 {
            assert!(p.backoff(1) <= Duration::from_millis(25));
            assert!(p.backoff(3) <= Duration::from_millis(100));
            assert!(p.backoff(40) <= Duration::from_millis(250));
        }
    }

    #[test]
    fn budget_allows_at_least_three_then_twenty_percent() {
        let b = RetryBudget::default();
        let held: Vec<_> = (0..3).filter_map(|_| b.try_retry()).collect();
        assert_eq!(held.len(), 3);
        assert!(b.try_retry().is_none());
        let _requests: Vec<_> = (0..100).map(|_| b.request()).collect();
        let more: Vec<_> = (0..50).filter_map(|_| b.try_retry()).collect();
        assert_eq!(held.len() + more.len(), 20);
    }
}
