//! The executor for hyper's HTTP/2 client connections: it spawns each future in a box.
//!
//! hyper's HTTP/2 client spawns two tasks per request (one that hands the response to the caller,
//! one that streams the request body), and all of its tasks are one enum type as large as its
//! biggest variant, the connection itself: 1,472 bytes for a variant of 112. Spawned as is, every
//! request's tasks would take a task cell of 1.6 KB each, copied as tokio moves the future into
//! place and again when it finishes. Boxed, each copy is of a pointer, and the cell is small.
use std::future::Future;

use hyper::rt::Executor;

/// Spawns futures on the current tokio runtime, each behind a box.
#[derive(Clone, Copy, Debug, Default)]
pub struct BoxedSpawn;

impl<F> Executor<F> for BoxedSpawn
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(Box::pin(fut));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_what_it_is_given() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        BoxedSpawn.execute(async move {
            let _ = tx.send(7);
        });
        assert_eq!(rx.await.ok(), Some(7));
    }
}
