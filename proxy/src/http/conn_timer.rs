//! One timer for the sequential requests of a connection: the header read timeout of Ferry's
//! own HTTP/1.1 server, the route's request timeout of each request it handles, and the retry
//! policy's per-try timeout of each of their tries.
//!
//! Arming a tokio timer costs a timer-wheel insert when it is first polled and a removal when it
//! is dropped or moved: ~1,200 instructions, about 4% of a proxied request (callgrind). A busy
//! keep-alive connection sets a new deadline thousands of times a second, nearly always later
//! than the one before. So a later deadline is only written down: the armed timer fires early,
//! sees that the deadline moved, and is moved to it. That is at most one timer operation per
//! timeout period instead of one per request. An earlier deadline moves the timer at once.
use std::pin::Pin;

use tokio::time::{Instant, Sleep};

/// The timers a connection lends to each of its requests in turn.
#[derive(Default)]
pub struct RequestTimers {
    /// The route's request timeout.
    pub request: ConnTimer,
    /// The retry policy's per-try timeout.
    pub per_try: ConnTimer,
}

#[derive(Default)]
pub struct ConnTimer {
    deadline: Option<Instant>,
    /// Created on the first deadline; then only moved.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl ConnTimer {
    /// The next [`expired`](Self::expired) resolves at `deadline`.
    pub fn set(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
        match &mut self.sleep {
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            Some(sleep) if deadline < sleep.deadline() => sleep.as_mut().reset(deadline),
            Some(_) => {}
        }
    }

    /// Resolves when the deadline last set has passed; never before one is set.
    pub async fn expired(&mut self) {
        let (Some(deadline), Some(sleep)) = (self.deadline, self.sleep.as_mut()) else {
            return std::future::pending().await;
        };
        loop {
            sleep.as_mut().await;
            if Instant::now() >= deadline {
                return;
            }
            sleep.as_mut().reset(deadline);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::ConnTimer;

    /// Fires at the deadline last set, whether that moved it later (lazily) or earlier.
    #[tokio::test(start_paused = true)]
    async fn fires_at_the_latest_deadline() {
        let start = Instant::now();
        let mut timer = ConnTimer::default();
        timer.set(start + Duration::from_secs(10));
        // A later deadline, as the next request of a keep-alive connection sets it.
        timer.set(start + Duration::from_secs(15));
        timer.expired().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(15));

        // An earlier one moves the armed timer.
        let now = Instant::now();
        timer.set(now + Duration::from_secs(60));
        timer.set(now + Duration::from_secs(2));
        timer.expired().await;
        assert_eq!(Instant::now() - now, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn never_fires_without_a_deadline() {
        let mut timer = ConnTimer::default();
        let waited = tokio::time::timeout(Duration::from_secs(3600), timer.expired()).await;
        assert!(waited.is_err());
    }
}
