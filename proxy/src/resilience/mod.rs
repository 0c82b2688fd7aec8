//! Resilience: what keeps an upstream's failure from becoming the caller's. Retries with a budget,
//! outlier ejection, active health checks and circuit breakers (connection-pool limits).
pub mod health;
pub mod limits;
pub mod outlier;
pub mod retry;

use std::sync::OnceLock;
use std::time::Instant;

/// Milliseconds since the process started: a cheap monotonic clock for endpoint state that lives
/// in atomics (ejection deadlines, health transitions).
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}
