//! Folds logged group commits into the state column families in the background, so that
//! recovery replays only a short tail of the log.
//!
//! A partition's group commit is one synced log record. After it is durable, the partition
//! hands the same bytes here; this thread keeps the latest version of every card, transaction
//! and trace record it has seen, and every `MATERIALIZE_EVERY_RECORDS` records writes them with
//! the marks that say how far the log is covered. A hot card touched a thousand times between
//! two materializations is written once.

use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};

use super::records::decode_batch;
use super::{Marks, Pending, Store};

/// Log records folded in memory before they are written out.
pub const MATERIALIZE_EVERY_RECORDS: usize = 1 << 20;
/// Group commits waiting for the materializer; when it falls this far behind, partitions wait.
pub const MATERIALIZER_QUEUE_DEPTH: usize = 4_096;

/// One durable group commit of partition `partition`.
pub struct Logged {
    pub partition: usize,
    pub batch_id: u64,
    pub bytes: Bytes,
}

pub struct Materializer {
    sender: Option<Sender<Logged>>,
    thread: Option<JoinHandle<()>>,
}

impl Materializer {
    /// Starts folding for `partitions` partitions whose log is covered up to `start`.
    pub fn start(store: Arc<Store>, partitions: usize, start: Marks) -> Materializer {
        let (sender, receiver) = crossbeam_channel::bounded(MATERIALIZER_QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("materializer".into())
            .spawn(move || run(&store, partitions, start, receiver))
            .expect("spawning the materializer thread");
        Materializer { sender: Some(sender), thread: Some(thread) }
    }

    pub fn sender(&self) -> Sender<Logged> {
        self.sender.clone().expect("the materializer runs until stopped")
    }

    /// Writes out what is folded and stops, once every sender is gone.
    pub fn stop(&mut self) {
        self.sender.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(store: &Store, partitions: usize, mut marks: Marks, receiver: Receiver<Logged>) {
    debug_assert_eq!(marks.marks.len(), partitions);
    let mut pending = Pending::default();
    let mut failed = false;
    let flush = |pending: &mut Pending, marks: &Marks, failed: &mut bool| {
        if pending.records == 0 || *failed {
            return;
        }
        if let Err(error) = store.materialize(pending, marks) {
            // The log still holds everything; recovery will replay more of it.
            tracing::error!(%error, "materializing the log failed; recovery will replay it instead");
            *failed = true;
        }
        *pending = Pending::default();
    };
    for logged in receiver {
        for record in decode_batch(&logged.bytes) {
            match record {
                Ok(record) => pending.apply(record, &mut marks),
                Err(error) => {
                    tracing::error!(%error, batch_id = logged.batch_id, "undecodable group commit");
                    failed = true;
                }
            }
        }
        marks.marks[logged.partition] = logged.batch_id;
        if pending.records >= MATERIALIZE_EVERY_RECORDS {
            flush(&mut pending, &marks, &mut failed);
        }
    }
    flush(&mut pending, &marks, &mut failed);
}
