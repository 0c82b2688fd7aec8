//! Outlier detection (App Mesh `outlierDetection`): an endpoint that returns `max_server_errors`
//! consecutive 5xx responses or connect failures is ejected for `base_ejection × times ejected`
//! (capped at 300 s), never more than `max_ejection_percent` of the cluster at once.
//!
//! As Envoy does for consecutive 5xx, the ejection happens as soon as the threshold is reached,
//! not at the next `interval`; an ejected endpoint returns when its time is up (checked whenever
//! endpoints are picked). `interval` is the period after which an endpoint that stayed clean is
//! forgiven one past ejection, so a flapping endpoint is ejected for longer each time.
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::now_ms;

/// Longest single ejection, as Envoy's default `max_ejection_time`.
const MAX_EJECTION: Duration = Duration::from_secs(300);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutlierPolicy {
    pub max_server_errors: u32,
    pub interval: Duration,
    pub base_ejection: Duration,
    pub max_ejection_percent: u32,
}

/// One endpoint's outlier state, in atomics: read on every pick, written on every outcome.
#[derive(Debug, Default)]
pub struct OutlierState {
    consecutive_errors: AtomicU32,
    /// `now_ms()` until which the endpoint is ejected; 0 = not ejected.
    ejected_until: AtomicU64,
    times_ejected: AtomicU32,
    /// When the last ejection ended or was forgiven, for the decay of `times_ejected`.
    last_change: AtomicU64,
}

impl OutlierState {
    pub fn is_ejected(&self, now: u64) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && now < until
    }

    pub fn times_ejected(&self) -> u32 {
        self.times_ejected.load(Ordering::Relaxed)
    }

    /// Records a success: the consecutive-error streak ends.
    pub fn success(&self) {
        if self.consecutive_errors.load(Ordering::Relaxed) != 0 {
            self.consecutive_errors.store(0, Ordering::Relaxed);
        }
    }

    /// Records an error; returns true when the streak reached the policy's threshold.
    pub fn error(&self, policy: &OutlierPolicy) -> bool {
        let n = self.consecutive_errors.fetch_add(1, Ordering::Relaxed) + 1;
        n >= policy.max_server_errors
    }

    /// Ejects the endpoint; returns the ejection's length.
    pub fn eject(&self, policy: &OutlierPolicy) -> Duration {
        let now = now_ms();
        // Forgive one past ejection per clean interval since the last change.
        let interval_ms = u64::try_from(policy.interval.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let clean = now.saturating_sub(self.last_change.load(Ordering::Relaxed)) / interval_ms;
        let times = self
            .times_ejected
            .load(Ordering::Relaxed)
            .saturating_sub(u32::try_from(clean).unwrap_or(u32::MAX))
            + 1;
        self.times_ejected.store(times, Ordering::Relaxed);
        let length = policy
            .base_ejection
            .saturating_mul(times)
            .min(MAX_EJECTION.max(policy.base_ejection));
        let until = now + u64::try_from(length.as_millis()).unwrap_or(u64::MAX).max(1);
        self.ejected_until.store(until, Ordering::Relaxed);
        self.last_change.store(until, Ordering::Relaxed);
        self.consecutive_errors.store(0, Ordering::Relaxed);
        length
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> OutlierPolicy {
        OutlierPolicy {
            max_server_errors: 3,
            interval: Duration::from_secs(10),
            base_ejection: Duration::from_millis(100),
            max_ejection_percent: 50,
        }
    }

    #[test]
    fn threshold_is_consecutive() {
        let s = OutlierState::default();
        let p = policy();
        assert!(!s.error(&p) && !s.error(&p));
        s.success();
        assert!(!s.error(&p) && !s.error(&p));
        assert!(s.error(&p));
    }

    #[test]
    fn ejection_lengthens_with_repeats_and_ends() {
        let s = OutlierState::default();
        let p = policy();
        assert_eq!(s.eject(&p), Duration::from_millis(100));
        assert!(s.is_ejected(now_ms()));
        assert_eq!(s.eject(&p), Duration::from_millis(200));
        assert!(!s.is_ejected(now_ms() + 1_000));
    }
}
