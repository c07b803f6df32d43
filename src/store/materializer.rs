//! Folds logged group commits into the state column families in the background, so that
//! recovery replays only a short tail of the log.
//!
//! A partition's group commit is one synced log record. After it is durable, the partition
//! hands the same bytes here; this thread keeps the latest version of every card, transaction
//! and trace record it has seen, and every `MATERIALIZE_EVERY_RECORDS` records writes them with
//! the marks that say how far the log is covered. A hot card touched a thousand times between
//! two materializations is written once.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};

use super::records::decode_batch;
use super::{Marks, Pending, Store};

/// Log records folded in memory before they are written out.
pub const MATERIALIZE_EVERY_RECORDS: usize = 1 << 20;
/// Group commits waiting for the materializer; when it falls this far behind, partitions wait.
pub const MATERIALIZER_QUEUE_DEPTH: usize = 4_096;
/// Bytes of group commits waiting for the materializer; when it falls this far behind,
/// partitions wait. The count above alone let 4,096 full batches (about 5 GiB) pile up when
/// the materializer was slower than the partitions, at ten million cards.
pub const MATERIALIZER_QUEUE_BYTES: usize = 64 << 20;
/// How long a waiting partition sleeps before it looks at the queue again, should a wake-up
/// be missed.
const QUEUE_RECHECK_MS: u64 = 10;
/// Folded records are written at least this often, so that partitions may drop old records
/// from memory soon even under light traffic.
pub const MATERIALIZE_INTERVAL_MS: u64 = 1_000;
/// The materialized state is made durable (flushed) at least this often. It is written
/// without the WAL, so until a flush a crash loses it and recovery replays the log instead:
/// this bounds that replay to about this much traffic, whatever happens to the memtables.
pub const STATE_FLUSH_INTERVAL_MS: u64 = 60_000;

/// Per partition, the last group commit whose records are in the materialized state: a
/// partition may drop a record from memory once its last write is at or below its mark.
pub type MaterializedMarks = Arc<[AtomicU64]>;

/// One durable group commit of partition `partition`.
pub struct Logged {
    pub partition: usize,
    pub batch_id: u64,
    pub bytes: Bytes,
}

pub struct Materializer {
    feed: Option<Feed>,
    thread: Option<JoinHandle<()>>,
    marks: MaterializedMarks,
}

/// Bytes queued for the materializer, and where partitions wait for room.
#[derive(Default)]
struct QueuedBytes {
    bytes: AtomicUsize,
    lock: Mutex<()>,
    room: Condvar,
}

impl QueuedBytes {
    /// Takes `n` bytes off the queue; wakes the waiting partitions when that makes room.
    fn taken(&self, n: usize) {
        let before = self.bytes.fetch_sub(n, Ordering::AcqRel);
        if before > MATERIALIZER_QUEUE_BYTES && before - n <= MATERIALIZER_QUEUE_BYTES {
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.room.notify_all();
        }
    }
}

/// Where partitions hand their durable group commits to the materializer. Bounded both in
/// group commits and in bytes: a partition whose commit finds the queue full waits for room
/// (backpressure, never loss).
#[derive(Clone)]
pub struct Feed {
    sender: Sender<Logged>,
    queued: Arc<QueuedBytes>,
}

impl Feed {
    /// Queues `logged`, first waiting while the queue holds `MATERIALIZER_QUEUE_BYTES` or
    /// more. False when the materializer is gone.
    pub fn send(&self, logged: Logged) -> bool {
        let queued = &*self.queued;
        if queued.bytes.load(Ordering::Acquire) >= MATERIALIZER_QUEUE_BYTES {
            let mut guard = queued.lock.lock().unwrap_or_else(|e| e.into_inner());
            while queued.bytes.load(Ordering::Acquire) >= MATERIALIZER_QUEUE_BYTES {
                guard = match queued.room.wait_timeout(guard, Duration::from_millis(QUEUE_RECHECK_MS)) {
                    Ok((guard, _)) => guard,
                    Err(poisoned) => poisoned.into_inner().0,
                };
            }
        }
        queued.bytes.fetch_add(logged.bytes.len(), Ordering::AcqRel);
        let n = logged.bytes.len();
        match self.sender.send(logged) {
            Ok(()) => true,
            Err(_) => {
                queued.bytes.fetch_sub(n, Ordering::AcqRel);
                false
            }
        }
    }
}

impl Materializer {
    /// Starts folding for `partitions` partitions whose log is covered up to `start`.
    pub fn start(store: Arc<Store>, partitions: usize, start: Marks) -> Materializer {
        let (sender, receiver) = crossbeam_channel::bounded(MATERIALIZER_QUEUE_DEPTH);
        let queued = Arc::new(QueuedBytes::default());
        let feed = Feed { sender, queued: queued.clone() };
        let marks: MaterializedMarks = start.marks.iter().map(|m| AtomicU64::new(*m)).collect();
        let published = marks.clone();
        let thread = std::thread::Builder::new()
            .name("materializer".into())
            // Normal priority: a lowered one (nice 10) let it fall behind under pipelined load
            // until its full queue stopped the partitions (p99.9 of 0.5–1.0 s against 0.2–0.5 s).
            .spawn(move || run(&store, partitions, start, receiver, &queued, &published))
            .expect("spawning the materializer thread");
        Materializer { feed: Some(feed), thread: Some(thread), marks }
    }

    /// How far each partition's group commits are materialized.
    pub fn marks(&self) -> MaterializedMarks {
        self.marks.clone()
    }

    pub fn feed(&self) -> Feed {
        self.feed.clone().expect("the materializer runs until stopped")
    }

    /// Writes out what is folded and stops, once every feed is gone.
    pub fn stop(&mut self) {
        self.feed.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Folder<'a> {
    store: &'a Store,
    published: &'a [AtomicU64],
    pending: Pending,
    marks: Marks,
    failed: bool,
    last_flush: Instant,
    /// When the state was last made durable.
    last_durable: Instant,
}

impl Folder<'_> {
    fn flush(&mut self) {
        self.last_flush = Instant::now();
        if self.pending.records == 0 || self.failed {
            return;
        }
        let mut written = self.store.materialize(&self.pending, &self.marks);
        if written.is_ok() && self.last_durable.elapsed() >= Duration::from_millis(STATE_FLUSH_INTERVAL_MS) {
            self.last_durable = Instant::now();
            written = self.store.flush_state();
        }
        match written {
            Ok(()) => {
                for (mark, value) in self.published.iter().zip(&self.marks.marks) {
                    mark.store(*value, Ordering::Release);
                }
            }
            Err(error) => {
                // The log still holds everything; recovery will replay more of it, and the
                // partitions keep what they hold in memory.
                tracing::error!(%error, "materializing the log failed; recovery will replay it instead");
                self.failed = true;
            }
        }
        self.pending = Pending::default();
    }

    fn fold(&mut self, logged: &Logged) {
        for record in decode_batch(&logged.bytes) {
            match record {
                Ok(record) => self.pending.apply(record, logged.batch_id, &mut self.marks),
                Err(error) => {
                    tracing::error!(%error, batch_id = logged.batch_id, "undecodable group commit");
                    self.failed = true;
                }
            }
        }
        self.marks.marks[logged.partition] = logged.batch_id;
    }
}

fn run(
    store: &Store,
    partitions: usize,
    marks: Marks,
    receiver: Receiver<Logged>,
    queued: &QueuedBytes,
    published: &[AtomicU64],
) {
    debug_assert_eq!(marks.marks.len(), partitions);
    let interval = Duration::from_millis(MATERIALIZE_INTERVAL_MS);
    let mut folder = Folder {
        store,
        published,
        pending: Pending::default(),
        marks,
        failed: false,
        last_flush: Instant::now(),
        last_durable: Instant::now(),
    };
    loop {
        match receiver.recv_timeout(interval) {
            Ok(logged) => {
                folder.fold(&logged);
                queued.taken(logged.bytes.len());
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
        if folder.pending.records >= MATERIALIZE_EVERY_RECORDS || folder.last_flush.elapsed() >= interval {
            folder.flush();
        }
    }
    folder.flush();
}
