//! Access-log destinations. Each path gets one sink with its own writer thread, so the request path
//! never does I/O and never waits on a slow disk or a full stdout pipe: it hands the line to a
//! bounded queue, and when the queue is full the line is dropped and counted.
use std::collections::HashMap;
use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::{Duration, Instant};

/// Lines queued per sink before new ones are dropped: a few seconds of a busy proxy's traffic.
const QUEUE_CAPACITY: usize = 16_384;
/// Write buffer of the writer thread; a burst is written in chunks of this size.
const BUFFER_SIZE: usize = 64 * 1024;
/// Longest time the writer gathers lines, once they keep coming, before it writes them: how
/// late a line may appear in the file under load.
const GATHER: Duration = Duration::from_millis(50);
/// Shortest gathering time, for a proxy so busy that it fills a quarter of the queue in less.
const MIN_GATHER: Duration = Duration::from_millis(1);
/// Longest pause between retries while [`AccessLogSink::flush_blocking`] waits for queue space.
const MAX_FLUSH_RETRY_PAUSE: Duration = Duration::from_millis(10);

enum Message {
    Line(String),
    /// Write and flush everything queued before this message, then reply whether that worked.
    Flush(SyncSender<bool>),
}

#[derive(Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
}

/// One access-log destination (a file, stdout or stderr), shared by every listener that logs to
/// it. Lines go through a bounded queue to a dedicated writer thread, which exits, after
/// flushing, once the last handle is dropped. Dropping does not wait for the thread: call
/// [`AccessLogSink::flush_blocking`] at shutdown so that the last lines are not lost.
pub struct AccessLogSink {
    path: String,
    queue: SyncSender<Message>,
    counters: Arc<Counters>,
    /// Unparked for a flush request, which should not wait out a gathering round.
    writer: std::thread::Thread,
}

impl AccessLogSink {
    /// Opens `path` for appending, creating the file if needed, and starts its writer thread.
    /// `stdout`/`/dev/stdout` and `stderr`/`/dev/stderr` name the process's own streams.
    pub fn open(path: &str) -> io::Result<Arc<AccessLogSink>> {
        let out = open_destination(path)?;
        AccessLogSink::start(path, out, QUEUE_CAPACITY)
    }

    fn start(
        path: &str,
        out: Box<dyn Write + Send>,
        capacity: usize,
    ) -> io::Result<Arc<AccessLogSink>> {
        let (queue, rx) = mpsc::sync_channel(capacity);
        let counters = Arc::new(Counters::default());
        let thread_counters = Arc::clone(&counters);
        let thread_path = path.to_owned();
        let writer = std::thread::Builder::new()
            .name("ferry-accesslog".to_owned())
            .spawn(move || {
                let out = BufWriter::with_capacity(BUFFER_SIZE, out);
                write_lines(&rx, out, &thread_counters, &thread_path, capacity);
            })?
            .thread()
            .clone();
        Ok(Arc::new(AccessLogSink {
            path: path.to_owned(),
            queue,
            counters,
            writer,
        }))
    }

    /// The destination, as given to [`AccessLogSink::open`].
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Queues one line (which should end in `\n`). Never blocks and never does I/O: when the
    /// writer has fallen behind and the queue is full, the line is dropped and counted.
    pub fn submit(&self, line: String) {
        match self.queue.try_send(Message::Line(line)) {
            Ok(()) => {}
            // Disconnected only if the writer thread panicked; count those lines as lost too.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Lines written and flushed to the destination.
    pub fn written(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }

    /// Lines lost: queue full, or the destination failed to take them.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Waits, at most `timeout`, until every line submitted before this call is written and
    /// flushed. Returns whether that happened (false on timeout or a write error).
    pub fn flush_blocking(&self, timeout: Duration) -> bool {
        // A timeout too large to add to now means no deadline.
        let deadline = Instant::now().checked_add(timeout);
        let remaining = || deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        // The flush request queues behind the lines already submitted, so the reply comes after
        // they are written.
        let mut request = Message::Flush(reply_tx);
        let mut pause = Duration::from_micros(100);
        loop {
            match self.queue.try_send(request) {
                Ok(()) => {
                    self.writer.unpark();
                    break;
                }
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    // std's bounded channel cannot wait for space with a timeout; the queue is
                    // only full when the writer is far behind, so short sleeps are fine here.
                    let left = remaining();
                    if left == Some(Duration::ZERO) {
                        return false;
                    }
                    std::thread::sleep(left.map_or(pause, |left| left.min(pause)));
                    pause = (pause * 2).min(MAX_FLUSH_RETRY_PAUSE);
                    request = back;
                }
            }
        }
        let reply = match remaining() {
            Some(left) => reply_rx.recv_timeout(left).ok(),
            None => reply_rx.recv().ok(),
        };
        reply == Some(true)
    }
}

impl fmt::Debug for AccessLogSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessLogSink")
            .field("path", &self.path)
            .field("written", &self.written())
            .field("dropped", &self.dropped())
            .finish()
    }
}

/// The writer thread. Idle, it blocks until a line comes and writes it at once. While lines keep
/// coming it gathers them instead, parked for up to [`GATHER`] between rounds, and writes each
/// round's lines in one go: a writer that waited on the queue for every line made the proxy wake
/// it (a futex call) and write (a `write(2)`) once per request, which cost ~40% of the requests
/// per second of a saturated proxy (issue #7). A flush request unparks it. Returns when every
/// sink handle is gone and the queue is drained.
fn write_lines(
    rx: &Receiver<Message>,
    mut out: BufWriter<Box<dyn Write + Send>>,
    counters: &Counters,
    path: &str,
    capacity: usize,
) {
    let mut health = Health {
        path,
        failing: false,
    };
    // Lines in `out` not yet flushed; counted as written once they are.
    let mut pending = 0u64;
    let mut pause = GATHER;
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        loop {
            let mut taken = 0usize;
            while let Some(message) = next {
                taken += 1;
                match message {
                    Message::Line(line) => match out.write_all(line.as_bytes()) {
                        Ok(()) => pending += 1,
                        Err(e) => {
                            counters.dropped.fetch_add(1, Ordering::Relaxed);
                            health.report(Err(e));
                        }
                    },
                    Message::Flush(reply) => {
                        let ok = flush(&mut out, &mut pending, counters, &mut health);
                        // The requester may have timed out and gone; nothing to do then.
                        let _ = reply.try_send(ok);
                    }
                }
                next = rx.try_recv().ok();
            }
            flush(&mut out, &mut pending, counters, &mut health);
            // A round that filled a quarter of the queue gathers for less time next, so that a
            // busier proxy does not overflow it while the writer is parked.
            pause = if taken > capacity / 4 {
                (pause / 2).max(MIN_GATHER)
            } else {
                (pause * 2).min(GATHER)
            };
            std::thread::park_timeout(pause);
            match rx.try_recv() {
                Ok(message) => next = Some(message),
                // Nothing came while parked: idle again, wait on the queue.
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
    }
}

fn flush(
    out: &mut BufWriter<Box<dyn Write + Send>>,
    pending: &mut u64,
    counters: &Counters,
    health: &mut Health<'_>,
) -> bool {
    let result = out.flush();
    let ok = result.is_ok();
    if ok {
        counters.written.fetch_add(*pending, Ordering::Relaxed);
        *pending = 0;
    }
    health.report(result);
    ok
}

/// Logs when a destination starts and stops failing, rather than once per line: a full disk
/// would otherwise flood the proxy's own log.
struct Health<'a> {
    path: &'a str,
    failing: bool,
}

impl Health<'_> {
    fn report(&mut self, result: io::Result<()>) {
        match result {
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::info!(path = self.path, "access log is writable again");
            }
            Ok(()) => {}
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::warn!(
                    path = self.path,
                    error = %e,
                    "cannot write access log; dropping lines until it recovers"
                );
            }
            Err(_) => {}
        }
    }
}

/// One name per process stream, so that `stdout` and `/dev/stdout` share a sink.
fn canonical_path(path: &str) -> &str {
    match path {
        "stdout" | "/dev/stdout" => "/dev/stdout",
        "stderr" | "/dev/stderr" => "/dev/stderr",
        other => other,
    }
}

fn open_destination(path: &str) -> io::Result<Box<dyn Write + Send>> {
    match canonical_path(path) {
        // The process's streams, not new file descriptors: std's handles lock per write, so
        // our whole-line writes do not interleave with other output of this process.
        "/dev/stdout" => return Ok(Box::new(io::stdout())),
        "/dev/stderr" => return Ok(Box::new(io::stderr())),
        _ => {}
    }
    if path.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "access log path is empty",
        ));
    }
    match OpenOptions::new().append(true).create(true).open(path) {
        Ok(file) => Ok(Box::new(file)),
        Err(e) => {
            let missing_dir = Path::new(path)
                .parent()
                .filter(|dir| !dir.as_os_str().is_empty() && !dir.is_dir());
            let message = match missing_dir {
                Some(dir) if e.kind() == io::ErrorKind::NotFound => format!(
                    "cannot open access log {path}: directory {} does not exist",
                    dir.display()
                ),
                _ => format!("cannot open access log {path}: {e}"),
            };
            Err(io::Error::new(e.kind(), message))
        }
    }
}

/// The sinks of the process, by path. Long-lived: successive routing tables get the same sink,
/// and so the same file handle and writer thread, for the same path.
#[derive(Debug, Default)]
pub struct SinkRegistry {
    sinks: HashMap<String, Arc<AccessLogSink>>,
}

impl SinkRegistry {
    /// The sink for `path`, opened on first use. `stdout` and `/dev/stdout` (and `stderr` and
    /// `/dev/stderr`) are the same sink; file paths are compared as written.
    pub fn get_or_open(&mut self, path: &str) -> io::Result<Arc<AccessLogSink>> {
        let path = canonical_path(path);
        if let Some(sink) = self.sinks.get(path) {
            return Ok(Arc::clone(sink));
        }
        let sink = AccessLogSink::open(path)?;
        self.sinks.insert(path.to_owned(), Arc::clone(&sink));
        Ok(sink)
    }

    /// Every sink with its path, e.g. to export the written and dropped counts.
    pub fn all(&self) -> impl Iterator<Item = (&str, &Arc<AccessLogSink>)> {
        self.sinks.iter().map(|(path, sink)| (path.as_str(), sink))
    }

    /// Closes the sinks no routing table uses any more (only the registry holds them), after a
    /// reload changed their paths. Returns how many were closed. Their writer threads flush
    /// and exit on their own.
    pub fn prune_unused(&mut self) -> usize {
        let before = self.sinks.len();
        // A count of 1 cannot grow behind our back: new handles only come from `&mut self`.
        self.sinks.retain(|_, sink| Arc::strong_count(sink) > 1);
        before - self.sinks.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "ferry-access-log-test-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn file(&self, name: &str) -> String {
            self.0.join(name).to_str().unwrap().to_owned()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const WAIT: Duration = Duration::from_secs(10);

    #[test]
    fn lines_appear_in_order_after_flush_blocking() {
        let dir = TempDir::new();
        let path = dir.file("access.log");
        std::fs::write(&path, "kept from before\n").unwrap();

        let sink = AccessLogSink::open(&path).unwrap();
        assert_eq!(sink.path(), path);
        let mut want = String::from("kept from before\n");
        for i in 0..5_000 {
            let line = format!("line {i}\n");
            want.push_str(&line);
            sink.submit(line);
        }
        assert!(sink.flush_blocking(WAIT));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), want);
        assert_eq!((sink.written(), sink.dropped()), (5_000, 0));

        // Again, with nothing new: returns at once.
        assert!(sink.flush_blocking(WAIT));
        sink.submit("last\n".to_owned());
        assert!(sink.flush_blocking(WAIT));
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .ends_with("line 4999\nlast\n")
        );
    }

    #[test]
    fn lines_appear_without_an_explicit_flush() {
        let dir = TempDir::new();
        let path = dir.file("access.log");
        let sink = AccessLogSink::open(&path).unwrap();
        sink.submit("prompt\n".to_owned());
        let deadline = Instant::now() + WAIT;
        while std::fs::read_to_string(&path).unwrap() != "prompt\n" {
            assert!(Instant::now() < deadline, "the line never appeared");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn dropping_the_last_handle_flushes() {
        let dir = TempDir::new();
        let path = dir.file("access.log");
        let sink = AccessLogSink::open(&path).unwrap();
        let second = Arc::clone(&sink);
        for i in 0..100 {
            sink.submit(format!("{i}\n"));
        }
        drop(sink);
        second.submit("from the second handle\n".to_owned());
        drop(second);
        let deadline = Instant::now() + WAIT;
        loop {
            let text = std::fs::read_to_string(&path).unwrap();
            if text.lines().count() == 101 {
                assert!(text.starts_with("0\n1\n"));
                assert!(text.ends_with("99\nfrom the second handle\n"));
                break;
            }
            assert!(Instant::now() < deadline, "lines lost: {text:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn open_fails_clearly_when_the_directory_is_missing() {
        let dir = TempDir::new();
        let path = dir.file("no/such/dir/access.log");
        let err = AccessLogSink::open(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(
            err.to_string()
                .starts_with(&format!("cannot open access log {path}: directory ")),
            "{err}"
        );
        assert!(
            err.to_string().ends_with("no/such/dir does not exist"),
            "{err}"
        );

        let err = AccessLogSink::open("").unwrap_err();
        assert_eq!(err.to_string(), "access log path is empty");
    }

    #[test]
    fn registry_shares_one_sink_per_path() {
        let dir = TempDir::new();
        let a = dir.file("a.log");
        let b = dir.file("b.log");
        let mut registry = SinkRegistry::default();

        let first = registry.get_or_open(&a).unwrap();
        let again = registry.get_or_open(&a).unwrap();
        let other = registry.get_or_open(&b).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert!(!Arc::ptr_eq(&first, &other));

        let stdout = registry.get_or_open("stdout").unwrap();
        assert!(Arc::ptr_eq(
            &stdout,
            &registry.get_or_open("/dev/stdout").unwrap()
        ));
        assert_eq!(stdout.path(), "/dev/stdout");

        let mut paths: Vec<&str> = registry.all().map(|(path, _)| path).collect();
        paths.sort_unstable();
        assert_eq!(paths, ["/dev/stdout", a.as_str(), b.as_str()]);

        // Only the sinks nothing else holds are closed.
        drop((again, other, stdout));
        assert_eq!(registry.prune_unused(), 2);
        assert!(Arc::ptr_eq(&first, &registry.get_or_open(&a).unwrap()));
        assert_eq!(registry.all().count(), 1);
    }

    /// A destination whose first write blocks until the test releases it, to fill the queue.
    struct GatedWriter {
        entered: mpsc::Sender<()>,
        release: Option<mpsc::Receiver<()>>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for GatedWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if let Some(release) = self.release.take() {
                let _ = self.entered.send(());
                let _ = release.recv();
            }
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A destination that keeps what it is given and counts the `write` calls that bring it.
    struct CountingWriter {
        written: Arc<Mutex<Vec<u8>>>,
        writes: Arc<AtomicUsize>,
    }

    impl Write for CountingWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.writes.fetch_add(1, Ordering::Relaxed);
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Lines that keep coming, as from a busy proxy, are written in a few large writes, not one
    /// per line, and none is lost or reordered.
    #[test]
    fn a_steady_stream_of_lines_is_gathered_into_few_writes() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let writes = Arc::new(AtomicUsize::new(0));
        let destination = CountingWriter {
            written: Arc::clone(&written),
            writes: Arc::clone(&writes),
        };
        let sink = AccessLogSink::start("counting", Box::new(destination), QUEUE_CAPACITY).unwrap();
        let mut want = String::new();
        for i in 0..2_000 {
            let line = format!("line {i}\n");
            want.push_str(&line);
            sink.submit(line);
            std::thread::sleep(Duration::from_micros(150));
        }
        assert!(sink.flush_blocking(WAIT));
        assert_eq!(
            String::from_utf8(written.lock().unwrap().clone()).unwrap(),
            want
        );
        assert_eq!((sink.written(), sink.dropped()), (2_000, 0));
        let writes = writes.load(Ordering::Relaxed);
        assert!(writes <= 100, "{writes} writes for 2,000 lines");
    }

    #[test]
    fn full_queue_drops_and_counts_lines() {
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        let written = Arc::new(Mutex::new(Vec::new()));
        let writer = GatedWriter {
            entered: entered_tx,
            release: Some(release_rx),
            written: Arc::clone(&written),
        };
        let sink = AccessLogSink::start("gated", Box::new(writer), 4).unwrap();

        // The writer takes "a" and blocks writing it out.
        sink.submit("a\n".to_owned());
        entered_rx.recv_timeout(WAIT).unwrap();
        // Four lines fill the queue; the next two are dropped, without blocking.
        for line in ["b\n", "c\n", "d\n", "e\n", "f\n", "g\n"] {
            sink.submit(line.to_owned());
        }
        assert_eq!((sink.written(), sink.dropped()), (0, 2));

        // The writer is stuck and the queue is full: a flush gives up at its timeout.
        let started = Instant::now();
        assert!(!sink.flush_blocking(Duration::from_millis(50)));
        assert!(started.elapsed() >= Duration::from_millis(50));

        release_tx.send(()).unwrap();
        assert!(sink.flush_blocking(WAIT));
        assert_eq!(written.lock().unwrap().as_slice(), b"a\nb\nc\nd\ne\n");
        assert_eq!((sink.written(), sink.dropped()), (5, 2));
    }
}
