//! Retry policies, App Mesh's way: which outcomes are retried (its event names and status sets),
//! how long to wait between tries (exponential backoff with full jitter), and a budget that caps
//! retries at a share of the cluster's requests so that retries cannot multiply an outage.
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::now_ms;

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
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        let cap = self
            .backoff_base
            .saturating_mul(factor)
            .min(self.backoff_max);
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

/// Caps retries at a share of the cluster's requests over a sliding window, as Linkerd's budget
/// does: retries may be at most `PERCENT`% of the requests of the last `WINDOW_SECS` seconds,
/// plus a floor of `MIN_PER_SECOND` retries a second so a quiet cluster can still retry. A burst
/// of failures is absorbed; an outage cannot be multiplied by three.
///
/// Ten one-second slots of atomic counters; a slot is reset when its second comes round again
/// (racy at the edge of a second by a few counts, which a budget can afford).
#[derive(Debug, Default)]
pub struct RetryBudget {
    slots: [Slot; WINDOW_SECS as usize],
}

const WINDOW_SECS: u64 = 10;

#[derive(Debug, Default)]
struct Slot {
    second: AtomicU64,
    requests: AtomicU32,
    retries: AtomicU32,
}

impl RetryBudget {
    const PERCENT: u64 = 20;
    const MIN_PER_SECOND: u64 = 10;

    fn slot(&self, second: u64) -> &Slot {
        let slot = &self.slots[(second % WINDOW_SECS) as usize];
        if slot.second.load(Ordering::Relaxed) != second {
            slot.second.store(second, Ordering::Relaxed);
            slot.requests.store(0, Ordering::Relaxed);
            slot.retries.store(0, Ordering::Relaxed);
        }
        slot
    }

    /// Counts a request that could be retried.
    pub fn record_request(&self) {
        self.record_request_at(now_ms() / 1000);
    }

    /// Takes a retry from the budget; false when it is spent.
    pub fn try_retry(&self) -> bool {
        self.try_retry_at(now_ms() / 1000)
    }

    fn record_request_at(&self, second: u64) {
        self.slot(second).requests.fetch_add(1, Ordering::Relaxed);
    }

    fn try_retry_at(&self, second: u64) -> bool {
        let current = self.slot(second);
        let (mut requests, mut retries) = (0u64, 0u64);
        for s in &self.slots {
            if second.saturating_sub(s.second.load(Ordering::Relaxed)) < WINDOW_SECS {
                requests += u64::from(s.requests.load(Ordering::Relaxed));
                retries += u64::from(s.retries.load(Ordering::Relaxed));
            }
        }
        let allowed = Self::MIN_PER_SECOND * WINDOW_SECS + requests * Self::PERCENT / 100;
        if retries >= allowed {
            return false;
        }
        current.retries.fetch_add(1, Ordering::Relaxed);
        true
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
        Outcome::Response {
            status: s,
            grpc: None,
        }
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
        assert!(
            gateway.retries(status(502))
                && gateway.retries(status(503))
                && gateway.retries(status(504))
        );
        assert!(!gateway.retries(status(500)) && !gateway.retries(status(409)));
        let client = policy(CLIENT_ERROR, false, &[]);
        assert!(
            client.retries(status(409))
                && !client.retries(status(500))
                && !client.retries(Outcome::Reset)
        );
    }

    #[test]
    fn connection_and_stream_events() {
        let tcp = policy(0, true, &[]);
        assert!(tcp.retries(Outcome::ConnectFailure));
        assert!(!tcp.retries(Outcome::Reset) && !tcp.retries(status(503)));
        let stream = policy(STREAM_ERROR, false, &[]);
        assert!(stream.retries(Outcome::RefusedStream) && !stream.retries(Outcome::Reset));
        let server = policy(SERVER_ERROR, false, &[]);
        assert!(
            server.retries(Outcome::Reset)
                && server.retries(Outcome::ConnectFailure)
                && server.retries(Outcome::PerTryTimeout)
        );
    }

    #[test]
    fn grpc_codes() {
        let g = policy(0, false, &[14, 4]);
        assert!(g.retries(Outcome::Response {
            status: 200,
            grpc: Some(14)
        }));
        assert!(!g.retries(Outcome::Response {
            status: 200,
            grpc: Some(5)
        }));
        assert!(!g.retries(Outcome::Response {
            status: 200,
            grpc: None
        }));
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
    fn budget_is_a_floor_plus_twenty_percent_of_the_window() {
        let b = RetryBudget::default();
        let granted = (0..500).filter(|_| b.try_retry_at(100)).count();
        assert_eq!(granted, 100, "the floor: 10 a second over 10 s");
        for _ in 0..1000 {
            b.record_request_at(101);
        }
        let more = (0..500).filter(|_| b.try_retry_at(101)).count();
        assert_eq!(more, 200, "20% of 1000 requests");
        // Eleven seconds later the window has moved on: the floor again.
        assert_eq!((0..500).filter(|_| b.try_retry_at(112)).count(), 100);
    }
}
