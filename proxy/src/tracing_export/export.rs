//! Getting finished spans to the collector without touching the request path: a request hands
//! its span to a bounded queue (`try_send`, never waits); one task batches the queue and exports
//! each batch over OTLP. When the collector is slow or gone the queue fills and further spans are
//! dropped and counted (`ferry_tracing_spans_dropped_total`), so requests never wait for it.
use std::time::Duration;

use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::TracingError;

/// Batching, as the OTel batch span processor's `OTEL_BSP_*` settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSettings {
    /// Spans waiting for export beyond this are dropped.
    pub max_queue: usize,
    /// Spans per export call.
    pub max_batch: usize,
    /// The longest a span waits for its batch to fill.
    pub delay: Duration,
    /// The longest one export call may take before its spans are given up.
    pub export_timeout: Duration,
}

impl Default for BatchSettings {
    /// The OpenTelemetry specification's defaults.
    fn default() -> Self {
        BatchSettings {
            max_queue: 2048,
            max_batch: 512,
            delay: Duration::from_millis(5000),
            export_timeout: Duration::from_secs(10),
        }
    }
}

/// The request path's end of the queue.
#[derive(Debug)]
pub struct Queue {
    tx: mpsc::Sender<SpanData>,
    dropped_full: IntCounter,
}

impl Queue {
    /// Queues a finished span, or drops and counts it when the queue is full.
    pub fn submit(&self, span: SpanData) {
        if self.tx.try_send(span).is_err() {
            self.dropped_full.inc();
        }
    }
}

/// The exporting task; [`Exporting::shutdown`] flushes what is queued.
pub struct Exporting {
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Exporting {
    /// Exports what is still queued (up to `timeout`), then stops.
    pub async fn shutdown(self, timeout: Duration) {
        let _ = self.stop.send(());
        if tokio::time::timeout(timeout, self.task).await.is_err() {
            tracing::warn!(
                ?timeout,
                "trace export did not finish in time; queued spans are lost"
            );
        }
    }
}

struct Counters {
    exported: IntCounter,
    dropped_failed: IntCounter,
}

/// Registers the export metrics in `registry` and starts the exporting task (on the current
/// tokio runtime) around `exporter`.
pub fn start<E: SpanExporter + 'static>(
    exporter: E,
    batch: BatchSettings,
    registry: &Registry,
) -> Result<(Queue, Exporting), TracingError> {
    let exported = IntCounter::new(
        "ferry_tracing_spans_exported_total",
        "Spans accepted by the OTLP collector",
    )
    .map_err(TracingError::Metrics)?;
    let dropped = IntCounterVec::new(
        Opts::new(
            "ferry_tracing_spans_dropped_total",
            "Spans not exported, by reason: queue_full (the collector is slower than the traffic \
             or unreachable) or export_failed (the collector refused them or did not answer)",
        ),
        &["reason"],
    )
    .map_err(TracingError::Metrics)?;
    registry
        .register(Box::new(exported.clone()))
        .map_err(TracingError::Metrics)?;
    registry
        .register(Box::new(dropped.clone()))
        .map_err(TracingError::Metrics)?;
    let counters = Counters {
        exported,
        dropped_failed: dropped.with_label_values(&["export_failed"]),
    };
    let (tx, rx) = mpsc::channel(batch.max_queue.max(1));
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(run(exporter, rx, stopped, batch, counters));
    let queue = Queue {
        tx,
        dropped_full: dropped.with_label_values(&["queue_full"]),
    };
    Ok((queue, Exporting { stop, task }))
}

async fn run<E: SpanExporter>(
    exporter: E,
    mut rx: mpsc::Receiver<SpanData>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
    settings: BatchSettings,
    counters: Counters,
) {
    let max_batch = settings.max_batch.max(1);
    let mut batch: Vec<SpanData> = Vec::with_capacity(max_batch);
    let mut healthy = true;
    let mut next_flush = Instant::now() + settings.delay;
    loop {
        let room = max_batch - batch.len();
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            n = rx.recv_many(&mut batch, room) => {
                if n == 0 {
                    break; // every sender is gone
                }
                if batch.len() < max_batch {
                    continue;
                }
            }
            _ = tokio::time::sleep_until(next_flush) => {}
        }
        if !batch.is_empty() {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(max_batch));
            healthy = export(&exporter, full, &settings, &counters, healthy).await;
        }
        next_flush = Instant::now() + settings.delay;
    }
    // Shutdown: what is queued now is exported, batch by batch.
    rx.close();
    loop {
        let room = max_batch - batch.len();
        rx.recv_many(&mut batch, room).await;
        if batch.is_empty() {
            break;
        }
        let full = std::mem::replace(&mut batch, Vec::with_capacity(max_batch));
        healthy = export(&exporter, full, &settings, &counters, healthy).await;
    }
    let _ = exporter.shutdown_with_timeout(Duration::from_secs(1));
}

/// Exports one batch; returns whether it went through. Failures are logged when they start and
/// when they stop, not once per batch.
async fn export<E: SpanExporter>(
    exporter: &E,
    batch: Vec<SpanData>,
    settings: &BatchSettings,
    counters: &Counters,
    was_healthy: bool,
) -> bool {
    let n = batch.len() as u64;
    // The exporter has its own timeout; this one bounds it should the exporter not keep it.
    let bound = settings.export_timeout + Duration::from_secs(1);
    let result = tokio::time::timeout(bound, exporter.export(batch)).await;
    match result {
        Ok(Ok(())) => {
            counters.exported.inc_by(n);
            if !was_healthy {
                tracing::info!("trace export to the OTLP collector works again");
            }
            true
        }
        Ok(Err(e)) => {
            counters.dropped_failed.inc_by(n);
            if was_healthy {
                tracing::warn!(spans = n, "trace export failed (spans dropped): {e}");
            }
            false
        }
        Err(_) => {
            counters.dropped_failed.inc_by(n);
            if was_healthy {
                tracing::warn!(spans = n, timeout = ?bound, "trace export timed out (spans dropped)");
            }
            false
        }
    }
}
