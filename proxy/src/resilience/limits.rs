//! Circuit breakers (App Mesh `connectionPool`): caps on the connections and requests a cluster
//! may use. Over a cap the request is answered 503 at once (flag UO) instead of queueing without
//! bound; only `max_pending_requests` requests may wait for a connection to free up.
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub struct CircuitBreakers {
    /// Connections in use (HTTP/1.1: one per request in flight).
    connections: Option<Arc<Semaphore>>,
    max_pending: u32,
    pending: AtomicU32,
    /// Requests in flight (HTTP/2 and gRPC streams).
    requests: Option<Arc<Semaphore>>,
}

/// Which cap a refused request hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// No connection was free and the pending queue was full.
    Pending,
    /// The concurrent-request cap was reached.
    Requests,
}

impl Overflow {
    pub fn label(self) -> &'static str {
        match self {
            Overflow::Pending => "pending",
            Overflow::Requests => "requests",
        }
    }
}

/// Held for as long as the request uses the cluster.
#[derive(Debug)]
pub struct Permits {
    _connection: Option<OwnedSemaphorePermit>,
    _request: Option<OwnedSemaphorePermit>,
}

impl CircuitBreakers {
    /// `None` when there is nothing to cap.
    pub fn new(
        max_connections: u32,
        max_pending: u32,
        max_requests: u32,
    ) -> Option<CircuitBreakers> {
        let sem = |n: u32| (n > 0).then(|| Arc::new(Semaphore::new(n as usize)));
        let b = CircuitBreakers {
            connections: sem(max_connections),
            max_pending,
            pending: AtomicU32::new(0),
            requests: sem(max_requests),
        };
        (b.connections.is_some() || b.requests.is_some()).then_some(b)
    }

    /// Takes the permits a request needs, waiting for a connection only if the pending queue has room.
    pub async fn acquire(&self) -> Result<Permits, Overflow> {
        let request = match &self.requests {
            None => None,
            Some(s) => Some(
                Arc::clone(s)
                    .try_acquire_owned()
                    .map_err(|_| Overflow::Requests)?,
            ),
        };
        let connection = match &self.connections {
            None => None,
            Some(s) => match Arc::clone(s).try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    if self.pending.fetch_add(1, Ordering::Relaxed) >= self.max_pending {
                        self.pending.fetch_sub(1, Ordering::Relaxed);
                        return Err(Overflow::Pending);
                    }
                    let waited = Arc::clone(s).acquire_owned().await;
                    self.pending.fetch_sub(1, Ordering::Relaxed);
                    // The semaphore is never closed; treat the impossible as an overflow.
                    Some(waited.map_err(|_| Overflow::Pending)?)
                }
            },
        };
        Ok(Permits {
            _connection: connection,
            _request: request,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn over_the_connection_cap_without_a_queue_is_refused_at_once() {
        let b = CircuitBreakers::new(2, 0, 0).expect("caps");
        let _a = b.acquire().await.expect("first");
        let _b = b.acquire().await.expect("second");
        assert_eq!(b.acquire().await.err(), Some(Overflow::Pending));
    }

    #[tokio::test]
    async fn pending_requests_wait_for_a_free_connection() {
        let b = Arc::new(CircuitBreakers::new(1, 1, 0).expect("caps"));
        let first = b.acquire().await.expect("first");
        let waiter = tokio::spawn({
            let b = Arc::clone(&b);
            async move { b.acquire().await.is_ok() }
        });
        tokio::task::yield_now().await;
        assert_eq!(
            b.acquire().await.err(),
            Some(Overflow::Pending),
            "the queue holds one"
        );
        drop(first);
        assert!(waiter.await.expect("join"));
    }

    #[tokio::test]
    async fn request_cap() {
        let b = CircuitBreakers::new(0, 0, 1).expect("caps");
        let _a = b.acquire().await.expect("first");
        assert_eq!(b.acquire().await.err(), Some(Overflow::Requests));
        assert!(CircuitBreakers::new(0, 5, 0).is_none());
    }
}
