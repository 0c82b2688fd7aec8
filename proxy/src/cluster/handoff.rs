//! Requests of one endpoint that wait for a connection to be freed while their own is being
//! opened.
//!
//! A request that finds no idle connection opens one, and takes whichever comes first: that new
//! connection or one another request frees meanwhile; the one it does not take goes to the pool.
//! Without it, a request waits for its own connect even when connections are freed long before
//! that completes: toward an upstream whose accept queue is full (its SYNs are dropped and resent
//! after 1 s), behind a slow TLS handshake, or in a cold start's burst. In the load harness at 256
//! connections it took the p99.9 from 20.5 to 18.2 ms (issue #7; the rest of that tail is the CPU
//! of the burst itself). hyper's pool and Envoy's queue of pending requests work the same way.
//!
//! Lock-free like the idle pool: a queue of one-shot senders, oldest first.
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_queue::SegQueue;
use tokio::sync::oneshot;

/// Beyond this many queued senders more than twice the waiting requests, `wait` drops the senders
/// of requests that stopped waiting. Only a pool that never gets a connection back (every response
/// closes its connection) leaves them behind; elsewhere `offer` drops them as it passes.
const STALE_SLACK: usize = 16;

pub struct Handoff<T> {
    /// One per waiting request, and those of requests that stopped waiting (stale).
    senders: SegQueue<oneshot::Sender<T>>,
    /// Requests waiting now (live `Waiter`s).
    waiting: AtomicUsize,
}

/// One request's place in the queue; dropping it leaves the queue.
pub struct Waiter<'a, T> {
    rx: oneshot::Receiver<T>,
    handoff: &'a Handoff<T>,
}

impl<T> Default for Handoff<T> {
    fn default() -> Self {
        Handoff {
            senders: SegQueue::new(),
            waiting: AtomicUsize::new(0),
        }
    }
}

impl<T> Handoff<T> {
    /// Joins the queue: the returned waiter receives the next item offered.
    pub fn wait(&self) -> Waiter<'_, T> {
        self.drop_stale();
        let (tx, rx) = oneshot::channel();
        self.waiting.fetch_add(1, Ordering::Relaxed);
        self.senders.push(tx);
        Waiter { rx, handoff: self }
    }

    /// Gives `item` to the longest-waiting request; `Some(item)` back when none is waiting.
    pub fn offer(&self, mut item: T) -> Option<T> {
        // The common case, on every connection returned to the pool: no one waits.
        if self.senders.is_empty() {
            return Some(item);
        }
        while let Some(tx) = self.senders.pop() {
            match tx.send(item) {
                Ok(()) => return None,
                // That request stopped waiting (it got its own connection, or was cancelled).
                Err(back) => item = back,
            }
        }
        Some(item)
    }

    fn drop_stale(&self) {
        // Bounded: each `wait` adds one sender and looks at no more than four.
        for _ in 0..4 {
            let waiting = self.waiting.load(Ordering::Relaxed);
            if self.senders.len() <= 2 * waiting + STALE_SLACK {
                return;
            }
            let Some(tx) = self.senders.pop() else {
                return;
            };
            if !tx.is_closed() {
                self.senders.push(tx);
            }
        }
    }
}

impl<T> Waiter<'_, T> {
    /// The item offered to this waiter; pending until one is (never, if none is).
    pub async fn recv(&mut self) -> T {
        match (&mut self.rx).await {
            Ok(item) => item,
            // The sender went without sending: only when the queue itself is dropped.
            Err(_) => std::future::pending().await,
        }
    }

    /// Leaves the queue; an item offered before it left is returned, not lost.
    pub fn leave(mut self) -> Option<T> {
        self.rx.close();
        self.rx.try_recv().ok()
    }
}

impl<T> Drop for Waiter<'_, T> {
    // An item offered in the instant before a waiter is dropped (its request went away) is
    // dropped with it: the connection closes. `leave` is the way out that keeps it.
    fn drop(&mut self) {
        self.handoff.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_offer_goes_to_the_oldest_request_still_waiting() {
        let h = Handoff::default();
        let first = h.wait();
        let mut second = h.wait();
        let mut third = h.wait();
        drop(first);
        assert_eq!(h.offer(1), None);
        assert_eq!(second.recv().await, 1);
        assert_eq!(h.offer(2), None);
        assert_eq!(third.recv().await, 2);
        assert_eq!(h.offer(3), Some(3), "no one is waiting");
    }

    #[test]
    fn an_item_offered_as_its_waiter_leaves_comes_back() {
        let h = Handoff::default();
        let w = h.wait();
        assert_eq!(h.offer(7), None);
        assert_eq!(w.leave(), Some(7));
        let w = h.wait();
        assert_eq!(w.leave(), None);
        assert_eq!(h.offer(8), Some(8), "a waiter that left takes nothing");
    }

    #[test]
    fn requests_that_stopped_waiting_do_not_pile_up() {
        // A pool that never gets a connection back: each request waits, then leaves.
        let h = Handoff::<u32>::default();
        let still = h.wait();
        for _ in 0..10_000 {
            drop(h.wait());
        }
        let queued = h.senders.len();
        assert!(queued <= 2 + STALE_SLACK + 1, "{queued} senders queued");
        assert_eq!(h.waiting.load(Ordering::Relaxed), 1);
        assert_eq!(h.offer(5), None, "the request still waiting gets it");
        assert_eq!(still.leave(), Some(5));
    }
}
