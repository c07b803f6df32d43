//! Partitions: each owns a shard of the cards and one thread that drains its bounded queue,
//! applies what it drained to its engine, persists the effects as one group commit, and only
//! then sends the replies. The hot path takes no lock: a card's requests meet only its own
//! partition's thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use protocol::{CardNo, Frame, Header, LocalTime, Message, Response, ResponseCode};
use tokio::sync::mpsc;

use crate::engine::days::DayBook;
use crate::engine::{
    partition_of, BusinessDate, Card, CardRange, Command, Context, Effects, Engine, Housekeeping, IdSource, Need,
    Rules, Step, TraceKey, Txn,
};
use crate::store::materializer::{Feed, Logged, MaterializedMarks};
use crate::store::records::encode_batch;
use crate::store::{CommitLog, Recovered};
use protocol::CardReply;

/// Most commands one group commit carries.
pub const MAX_BATCH: usize = 4_096;
/// Commands queued per partition before new ones are refused with `system_busy`.
pub const QUEUE_DEPTH: usize = 65_536;
/// Time zone of the stores' clocks, from which their cutovers are reckoned (China Standard
/// Time).
pub const BUSINESS_UTC_OFFSET_MINUTES: i32 = 8 * 60;

/// Transactions and trace records older than this are dropped from a partition's memory
/// once they are materialized; a request naming one fetches it back from disk.
pub const RECENT_RETENTION_MS: i64 = 60_000;
/// Most transactions (and, separately, trace records) a partition keeps in memory.
pub const MAX_CACHED_RECORDS: usize = 262_144;
/// Most records of each kind dropped from memory after one batch, to keep batches short.
const EVICT_BUDGET: usize = 2 * MAX_BATCH;
/// Disk lookups one command may need (its own trace, a reversal's original, its transaction,
/// the transaction that one refers to).
const MAX_NEEDS_PER_COMMAND: usize = 4;

/// Most postings of day-end housekeeping (S7) in one group commit: a day's expiries are
/// spread over batches, so that the terminals' requests never wait behind all of them.
pub const MAX_HOUSEKEEPING_POSTINGS: usize = MAX_BATCH;
/// How long an idle partition waits for work before it looks again: housekeeping it was
/// asked to run goes on in the meantime, a slice at a time.
const IDLE_WAIT_MS: u64 = 1_000;

/// Typical log bytes of one command (a sale: card, journal entry, transaction, trace).
const LOG_BYTES_PER_COMMAND: usize = 320;

const _: () = assert!(MAX_BATCH <= QUEUE_DEPTH);

/// Where replies for one connection go; the connection's writer drains it.
pub type ReplySender = mpsc::Sender<Frame>;

/// Source of time for batches: the engine never reads a clock itself.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;

    /// The stores' wall-clock time at `now_ms`.
    fn local_time(&self, now_ms: i64) -> LocalTime {
        LocalTime::from_unix_ms(now_ms, BUSINESS_UTC_OFFSET_MINUTES)
    }

    /// The newest business date that has begun at `now_ms` for a day closing at
    /// `cutover_minutes` after midnight (S1: before a 04:00 night audit, yesterday's).
    fn begun_date(&self, now_ms: i64, cutover_minutes: u32) -> BusinessDate {
        let local = self.local_time(now_ms);
        let minutes = (local.0 / 10_000 % 100 * 60 + local.0 / 100 % 100) as u32;
        DayBook::begun_at(local.date(), minutes, cutover_minutes)
    }
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
    }
}

pub enum Work {
    Command {
        cmd: Command,
        reply: ReplySender,
        /// When it was queued: its latency runs to its reply (metrics).
        queued: std::time::Instant,
    },
    /// A range was imported (already durable); `done` is told once the partition knows it.
    AddRange { range: CardRange, done: std::sync::mpsc::SyncSender<()> },
    /// A step of an operation spanning partitions (`coordinator`), applied once under `key`
    /// and answered after its group commit.
    /// Boxed: steps are rare, and every queue slot is as large as the largest variant.
    Step(Box<StepWork>),
    /// Reads a card and a transaction of this partition (memory, else disk), for the
    /// coordinator; `Err` when the disk read failed.
    Read { card: CardNo, txn_id: u64, reply: tokio::sync::oneshot::Sender<ReadResult> },
    /// The rules change (a product administered, P3): batches after this one use them.
    SetRules { rules: Rules, done: std::sync::mpsc::SyncSender<()> },
    /// A day closed (S1): the batch ends here, and the commands after it are stamped with the
    /// new book's dates. `done` is told once the batch before is durable, so that when every
    /// partition has answered, nothing more can post to the closed day.
    SetDays { book: Arc<DayBook>, done: std::sync::mpsc::SyncSender<()> },
    /// Run the day-end housekeeping of `day` (S7), in slices between the terminals' batches;
    /// `done` is told what it did once all of it is durable.
    Housekeep { day: BusinessDate, done: std::sync::mpsc::SyncSender<Housekeeping> },
    /// Finish what is queued before this, then stop.
    Stop,
}

/// A step of an operation spanning partitions, with where its answer goes.
pub struct StepWork {
    key: TraceKey,
    card: CardNo,
    cmd: Command,
    step: Step,
    reply: tokio::sync::oneshot::Sender<CardReply>,
}

/// What a partition read for the coordinator: the card and the transaction, if they exist;
/// `Err` when reading the disk failed.
pub type ReadResult = Result<(Option<Card>, Option<Txn>), ()>;

pub struct Partitions {
    senders: Vec<Sender<Work>>,
    threads: std::sync::Mutex<Vec<JoinHandle<()>>>,
    failed: Vec<Arc<AtomicBool>>,
    /// Per partition, its last group commit made durable (0: none yet), set before the
    /// commit's replies are sent.
    committed: Vec<Arc<AtomicU64>>,
}

impl Partitions {
    /// Starts one thread per recovered partition. Each durable group commit is also handed to
    /// the materializer, when there is one, whose marks say what may leave memory.
    pub fn start(
        recovered: Recovered,
        log: Arc<dyn CommitLog>,
        clock: Arc<dyn Clock>,
        materializer: Option<(Feed, MaterializedMarks)>,
        rules: Rules,
        days: Arc<DayBook>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Partitions {
        let catalog_version = rules.catalog.version;
        let count = recovered.partitions.len();
        let mut partitions =
            Partitions { senders: Vec::new(), threads: Default::default(), failed: Vec::new(), committed: Vec::new() };
        for (index, state) in recovered.partitions.into_iter().enumerate() {
            let ids = IdSource::new(index, count, recovered.max_txn_id);
            let mut engine = Engine::restore(
                ids,
                state.cards,
                recovered.ranges.clone(),
                state.txns,
                state.traces,
                recovered.disk_max_stan.clone(),
            );
            engine.set_rules(rules.clone());
            engine.restore_day_spend(state.day_spend);
            engine.restore_open_holds(state.open_holds);
            engine.restore_point_lots(state.point_lots);
            if materializer.is_some() {
                // What eviction will keep it at, plus one batch of slack.
                engine.reserve_cache(MAX_CACHED_RECORDS + MAX_BATCH);
            }
            let (tx, rx) = crossbeam_channel::bounded(QUEUE_DEPTH);
            let failed = Arc::new(AtomicBool::new(false));
            let committed = Arc::new(AtomicU64::new(0));
            let worker = Worker {
                committed: committed.clone(),
                index,
                engine,
                batch_ids: IdSource::new(index, count, recovered.max_batch_id),
                log: log.clone(),
                clock: clock.clone(),
                materializer: materializer.clone(),
                failed: failed.clone(),
                catalog_version,
                days: days.clone(),
                housekeeping: None,
                metrics: metrics.clone(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("partition-{index}"))
                .spawn(move || worker.run(rx))
                .expect("spawning a partition thread");
            partitions.senders.push(tx);
            partitions.threads.get_mut().expect("not shared yet").push(thread);
            partitions.failed.push(failed);
            partitions.committed.push(committed);
        }
        partitions
    }

    /// Per partition, the last group commit made durable: with the materializer's marks
    /// (read first), which group commits a reader must take from the log (`store::LogTail`).
    pub fn committed(&self) -> Vec<u64> {
        self.committed.iter().map(|c| c.load(Ordering::Acquire)).collect()
    }

    pub fn count(&self) -> usize {
        self.senders.len()
    }

    /// Commands waiting in each partition's queue.
    pub fn queue_depths(&self) -> Vec<usize> {
        self.senders.iter().map(Sender::len).collect()
    }

    /// Partitions stopped after a storage failure.
    pub fn failed_count(&self) -> usize {
        self.failed.iter().filter(|f| f.load(Ordering::Relaxed)).count()
    }

    /// True when some partition stopped after a storage failure.
    pub fn any_failed(&self) -> bool {
        self.failed.iter().any(|f| f.load(Ordering::Relaxed))
    }

    /// Queues a card command on its partition, or says why it cannot be taken.
    pub fn submit(&self, card: CardNo, cmd: Command, reply: ReplySender) -> Result<(), ResponseCode> {
        let sender = &self.senders[partition_of(card, self.senders.len())];
        match sender.try_send(Work::Command { cmd, reply, queued: std::time::Instant::now() }) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(ResponseCode::SystemBusy),
            Err(TrySendError::Disconnected(_)) => Err(ResponseCode::SystemError),
        }
    }

    /// Sends a step to the partition of `card` (waiting for room in its queue: steps are rare
    /// and must not be refused) and waits for its durable answer. `None`: the partition is gone.
    pub async fn step(&self, key: TraceKey, card: CardNo, cmd: Command, step: Step) -> Option<CardReply> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let sender = self.senders[partition_of(card, self.senders.len())].clone();
        let work = Work::Step(Box::new(StepWork { key, card, cmd, step, reply }));
        tokio::task::spawn_blocking(move || sender.send(work).is_ok()).await.ok()?.then_some(())?;
        answer.await.ok()
    }

    /// Reads `card` and the transaction `txn_id` (0: none) from the partition of `card`.
    pub async fn read(&self, card: CardNo, txn_id: u64) -> Option<ReadResult> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let sender = self.senders[partition_of(card, self.senders.len())].clone();
        let work = Work::Read { card, txn_id, reply };
        tokio::task::spawn_blocking(move || sender.send(work).is_ok()).await.ok()?.then_some(())?;
        answer.await.ok()
    }

    /// Sends every partition the work `make` builds around an answer channel, and collects
    /// the answers. Blocking, and so are the sends: this work is rare and must not be refused
    /// for a full queue. Fewer answers than partitions: one is gone, or stopped after a
    /// storage failure.
    fn broadcast<T>(&self, make: impl Fn(std::sync::mpsc::SyncSender<T>) -> Work) -> Vec<T> {
        let (done, answers) = std::sync::mpsc::sync_channel(self.senders.len());
        for sender in &self.senders {
            let _ = sender.send(make(done.clone()));
        }
        drop(done);
        answers.iter().collect()
    }

    /// Gives every partition new rules and waits until all use them. Blocking.
    pub fn set_rules_blocking(&self, rules: Rules) {
        self.broadcast(|done| Work::SetRules { rules: rules.clone(), done });
    }

    /// Gives every partition a new day book (S1) and waits until each has made durable what
    /// it accepted under the old one. False when a partition is gone or failed. Blocking.
    pub fn set_days_blocking(&self, book: Arc<DayBook>) -> bool {
        self.broadcast(|done| Work::SetDays { book: book.clone(), done }).len() == self.senders.len()
    }

    /// Runs the day-end housekeeping of `day` (S7) in every partition and waits until all of
    /// it is durable; None when a partition is gone or failed. Blocking.
    pub fn housekeep_blocking(&self, day: BusinessDate) -> Option<Housekeeping> {
        let answers = self.broadcast(|done| Work::Housekeep { day, done });
        (answers.len() == self.senders.len()).then(|| {
            let mut total = Housekeeping::default();
            answers.iter().for_each(|h| total.add(h));
            total
        })
    }

    /// Tells every partition about a new range and waits until all know it. Blocking.
    pub fn add_range_blocking(&self, range: CardRange) {
        self.broadcast(|done| Work::AddRange { range, done });
    }

    /// Stops every partition after it has finished what was queued, and waits for them.
    pub fn stop(&self) {
        for sender in &self.senders {
            let _ = sender.send(Work::Stop);
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

struct Worker {
    index: usize,
    engine: Engine,
    batch_ids: IdSource,
    log: Arc<dyn CommitLog>,
    clock: Arc<dyn Clock>,
    materializer: Option<(Feed, MaterializedMarks)>,
    failed: Arc<AtomicBool>,
    /// This partition's entry of `Partitions::committed`.
    committed: Arc<AtomicU64>,
    /// Stamped on every journal entry (see `Context::catalog_version`).
    catalog_version: u32,
    /// The business date of every store (S1).
    days: Arc<DayBook>,
    /// Housekeeping under way (S7): the day, what it did so far, who waits for it.
    housekeeping: Option<HousekeepingRun>,
    metrics: Arc<crate::metrics::Metrics>,
}

struct HousekeepingRun {
    day: BusinessDate,
    done: Housekeeping,
    /// All of it is in the current batch or before.
    finished: bool,
    waiting: Vec<std::sync::mpsc::SyncSender<Housekeeping>>,
}

impl Worker {
    fn run(mut self, rx: Receiver<Work>) {
        let mut effects = Effects::default();
        let mut pending: Vec<(ReplySender, Frame, std::time::Instant)> = Vec::with_capacity(MAX_BATCH);
        let mut steps: Vec<(tokio::sync::oneshot::Sender<CardReply>, CardReply)> = Vec::new();
        // Told once this batch is durable (a day closed, S1).
        let mut days_acks: Vec<std::sync::mpsc::SyncSender<()>> = Vec::new();
        let mut stop = false;
        while !stop {
            let housekeeping_due = self.housekeeping.is_some();
            let first = if housekeeping_due {
                // Housekeeping goes on between batches; requests that came meanwhile join it.
                rx.try_recv().ok()
            } else {
                match rx.recv_timeout(std::time::Duration::from_millis(IDLE_WAIT_MS)) {
                    Ok(work) => Some(work),
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            };
            let now_ms = self.clock.now_ms();
            let batch_id = self.batch_ids.take();
            // The date is each command's store's (S1); housekeeping stamps its own day.
            let ctx = Context { now_ms, business_date: 0, batch_id, catalog_version: self.catalog_version };
            let mut next = first;
            let mut taken = 0;
            let mut batch_ends = false;
            while let Some(work) = next.take() {
                taken += 1;
                match work {
                    Work::Command { cmd, reply, queued } => {
                        let code_reply = if self.failed.load(Ordering::Relaxed) || !self.fetch_needs(&cmd, now_ms) {
                            protocol::CardReply::code_only(ResponseCode::SystemError)
                        } else {
                            let ctx = Context { business_date: self.days.open_date(cmd.store_id), ..ctx };
                            self.engine.apply(ctx, &cmd, &mut effects)
                        };
                        let response = Response::Card { request: cmd.request.msg_type(), reply: code_reply };
                        pending.push((reply, reply_frame(&cmd.header, response), queued));
                    }
                    Work::AddRange { range, done } => {
                        self.engine.add_range(range);
                        let _ = done.send(());
                    }
                    Work::Step(work) => {
                        let StepWork { key, card, cmd, step, reply } = *work;
                        let answer =
                            if self.failed.load(Ordering::Relaxed) || !self.fetch_step_needs(key, &step, now_ms) {
                                CardReply::code_only(ResponseCode::SystemError)
                            } else {
                                let ctx = Context { business_date: self.days.open_date(cmd.store_id), ..ctx };
                                let answer = self.engine.apply_step(ctx, key, card, &cmd, step, &mut effects);
                                self.engine.forget_absent();
                                answer
                            };
                        steps.push((reply, answer));
                    }
                    Work::SetRules { rules, done } => {
                        // The batch ends here: every command in it was applied under the
                        // version its journal entries are stamped with.
                        self.catalog_version = rules.catalog.version;
                        self.engine.set_rules(rules);
                        let _ = done.send(());
                        batch_ends = true;
                    }
                    Work::SetDays { book, done } => {
                        // The batch ends here: every command in it was stamped under the old
                        // book, and the answer waits for its commit.
                        self.days = book;
                        days_acks.push(done);
                        batch_ends = true;
                    }
                    Work::Housekeep { day, done } => match &mut self.housekeeping {
                        Some(run) if run.day == day => run.waiting.push(done),
                        // One day at a time: the switch asks for the next once this one is done.
                        Some(_) => {
                            tracing::error!(partition = self.index, day, "housekeeping asked while another runs")
                        }
                        None => {
                            let run = HousekeepingRun {
                                day,
                                done: Housekeeping::default(),
                                finished: false,
                                waiting: vec![done],
                            };
                            self.housekeeping = Some(run);
                        }
                    },
                    Work::Read { card, txn_id, reply } => {
                        let txn = match self.engine.txn(txn_id) {
                            _ if txn_id == 0 => Ok(None),
                            Some(txn) => Ok(Some(*txn)),
                            None => self.log.txn(txn_id).map_err(|error| {
                                tracing::error!(partition = self.index, %error, txn_id, "reading a transaction failed");
                            }),
                        };
                        let _ = reply.send(txn.map(|txn| (self.engine.card(card).copied(), txn)));
                    }
                    Work::Stop => stop = true,
                }
                if taken < MAX_BATCH && !stop && !batch_ends {
                    next = rx.try_recv().ok();
                }
            }
            if housekeeping_due {
                if self.failed.load(Ordering::Relaxed) {
                    // Nothing commits any more: whoever waits learns it from the missing answer.
                    self.housekeeping = None;
                } else {
                    self.housekeep(ctx, &mut effects);
                }
            }
            if !effects.is_empty() {
                let mut encoded = Vec::with_capacity(LOG_BYTES_PER_COMMAND * taken);
                encode_batch(&effects, &mut encoded);
                let committing = std::time::Instant::now();
                let committed = self.log.commit(batch_id, &encoded);
                self.metrics.commit_us.observe(committing.elapsed().as_micros() as u64);
                self.metrics.batch_commands.observe(taken as u64);
                if let Err(error) = committed {
                    self.metrics.storage_failures.fetch_add(1, Ordering::Relaxed);
                    // Fail-stop: memory now holds changes the disk does not; refuse
                    // everything from here on rather than answer from it.
                    tracing::error!(partition = self.index, %error, "storage failure; partition stopped");
                    self.failed.store(true, Ordering::Relaxed);
                    for (_, frame, _) in pending.iter_mut() {
                        if let Message::Response(Response::Card { reply, .. }) = &mut frame.message {
                            *reply = protocol::CardReply::code_only(ResponseCode::SystemError);
                        }
                    }
                    for (_, answer) in steps.iter_mut() {
                        *answer = CardReply::code_only(ResponseCode::SystemError);
                    }
                    // Whoever waits for a close or housekeeping learns of the failure from
                    // the missing answer.
                    days_acks.clear();
                    self.housekeeping = None;
                } else {
                    self.committed.store(batch_id, Ordering::Release);
                    if let Some((materializer, _)) = &self.materializer {
                        let logged = Logged { partition: self.index, batch_id, bytes: encoded.into() };
                        // Blocks only when the materializer is far behind: backpressure, not loss.
                        materializer.send(logged);
                    }
                }
                effects.clear();
            }
            // Tallied for the whole batch: one update of the shared counters, not one a reply.
            let replied = std::time::Instant::now();
            self.metrics
                .request_latency_us
                .observe_all(pending.iter().map(|(_, _, queued)| replied.duration_since(*queued).as_micros() as u64));
            for (reply, frame, _) in pending.drain(..) {
                // A full or closed channel means the connection is gone; the terminal will
                // retransmit and get this same answer (T8).
                let _ = reply.try_send(frame);
            }
            for (reply, answer) in steps.drain(..) {
                let _ = reply.send(answer);
            }
            for done in days_acks.drain(..) {
                let _ = done.send(());
            }
            if self.housekeeping.as_ref().is_some_and(|run| run.finished) {
                // Finished in this batch, which is now durable.
                let run = self.housekeeping.take().expect("checked");
                for waiting in run.waiting {
                    let _ = waiting.send(run.done);
                }
            }
            // After the replies: the terminals need not wait for the housekeeping.
            if let Some((_, marks)) = &self.materializer {
                let materialized = marks[self.index].load(Ordering::Acquire);
                self.engine.evict(now_ms - RECENT_RETENTION_MS, MAX_CACHED_RECORDS, materialized, EVICT_BUDGET);
            }
        }
    }
}

impl Worker {
    /// A slice of the day-end housekeeping under way (S7), in this batch's group commit,
    /// after its commands: the rules as of the next day's start, the postings stamped with
    /// the day they end.
    fn housekeep(&mut self, ctx: Context, effects: &mut Effects) {
        let Some(run) = &self.housekeeping else { return };
        let day = run.day;
        let as_of = crate::engine::rules::add_days(day, 1);
        for hold_id in self.engine.housekeeping_needs(as_of) {
            match self.log.txn(hold_id) {
                Ok(txn) => self.engine.provide_txn(hold_id, txn, ctx.now_ms),
                // The hold waits for the next run; the rest goes on.
                Err(error) => tracing::error!(partition = self.index, %error, hold_id, "reading a hold failed"),
            }
        }
        let ctx = Context { business_date: day, ..ctx };
        let (done, more) = self.engine.housekeep(ctx, as_of, MAX_HOUSEKEEPING_POSTINGS, effects);
        self.engine.forget_absent();
        let run = self.housekeeping.as_mut().expect("checked above");
        run.done.add(&done);
        if !more {
            run.finished = true;
            let h = run.done;
            if h.postings() > 0 {
                tracing::info!(
                    partition = self.index,
                    business_date = day,
                    holds_expired = h.holds_expired,
                    cards_expired = h.cards_expired,
                    forfeited_cash_minor = h.forfeited_cash_minor,
                    forfeited_bonus_minor = h.forfeited_bonus_minor,
                    dormancy_notices = h.dormancy_notices,
                    dormancy_freezes = h.dormancy_freezes,
                    points_lapsed = h.points_lapsed,
                    "housekeeping done"
                );
            }
        }
    }

    /// Fetches from disk what a step needs (see `fetch_needs`).
    fn fetch_step_needs(&mut self, key: TraceKey, step: &Step, now_ms: i64) -> bool {
        self.fetch(now_ms, "step refused", |engine| engine.step_need(key, step))
    }

    /// Fetches from disk what the command needs and the engine no longer holds. False when a
    /// read failed: the command is then refused (nothing is posted), the partition goes on.
    fn fetch_needs(&mut self, cmd: &Command, now_ms: i64) -> bool {
        self.fetch(now_ms, "request refused", |engine| engine.need(cmd))
    }

    /// Hands the engine, one at a time, the records `next_need` says it lacks.
    fn fetch(&mut self, now_ms: i64, refused: &str, next_need: impl Fn(&Engine) -> Option<Need>) -> bool {
        for _ in 0..MAX_NEEDS_PER_COMMAND {
            let fetched = match next_need(&self.engine) {
                None => return true,
                Some(Need::Trace(key)) => self.log.trace(key).map(|t| self.engine.provide_trace(key, t, now_ms)),
                Some(Need::Txn(txn_id)) => self.log.txn(txn_id).map(|t| self.engine.provide_txn(txn_id, t, now_ms)),
            };
            if let Err(error) = fetched {
                tracing::error!(partition = self.index, %error, "reading an old record failed; {refused}");
                self.engine.forget_absent();
                return false;
            }
        }
        true
    }
}

/// The response frame for a request: same terminal, trace number and local time.
pub fn reply_frame(request: &Header, response: Response) -> Frame {
    Frame { header: Header { flags: 0, ..*request }, message: Message::Response(response) }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use protocol::{CardReply, Category, PaymentMethod, Request};

    use super::*;
    use crate::engine::CardRange;
    use crate::store::{PartitionState, StoreError};
    use protocol::Verification;

    const FIRST: u64 = 6200880000000000;

    /// Accepts `ok_commits` group commits, then fails every one (a disk that died).
    struct FailingLog {
        ok_commits: usize,
        commits: AtomicUsize,
    }

    impl CommitLog for FailingLog {
        fn commit(&self, _: u64, _: &[u8]) -> Result<(), StoreError> {
            if self.commits.fetch_add(1, Ordering::SeqCst) < self.ok_commits {
                Ok(())
            } else {
                Err(StoreError::Injected("disk gone".into()))
            }
        }

        fn trace(&self, _: crate::engine::TraceKey) -> Result<Option<crate::engine::Trace>, StoreError> {
            Ok(None)
        }

        fn txn(&self, _: u64) -> Result<Option<crate::engine::Txn>, StoreError> {
            Ok(None)
        }
    }

    struct FixedClock;
    impl Clock for FixedClock {
        fn now_ms(&self) -> i64 {
            1_795_311_005_000
        }
    }

    fn recovered(partitions: usize) -> Recovered {
        Recovered {
            ranges: vec![CardRange {
                first: CardNo(FIRST),
                last: CardNo(FIRST + 99),
                product: 1,
                store_id: 21,
                terminal_id: 1,
                stan: 1,
            }],
            partitions: (0..partitions).map(|_| PartitionState::default()).collect(),
            ..Recovered::default()
        }
    }

    fn call(partitions: &Partitions, stan: u32, request: Request) -> CardReply {
        let (tx, mut rx) = mpsc::channel(4);
        let header = Header { flags: 0, terminal_id: 7, stan, local_time: LocalTime(20261122093005) };
        let card = request.card().unwrap();
        partitions.submit(card, Command::new(header, 21, request), tx).unwrap();
        match rx.blocking_recv().unwrap().message {
            Message::Response(Response::Card { reply, .. }) => reply,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_failed_commit_is_never_acknowledged_and_stops_the_partition() {
        let log = Arc::new(FailingLog { ok_commits: 1, commits: AtomicUsize::new(0) });
        let partitions = Partitions::start(
            recovered(1),
            log,
            Arc::new(FixedClock),
            None,
            Rules::core(),
            Arc::new(DayBook::starting(today())),
            Default::default(),
        );
        let card = CardNo(FIRST + 1);
        let sell = Request::SellCard { card, amount_minor: 10_000, method: PaymentMethod::Cash as u8 };
        assert_eq!(call(&partitions, 1, sell).code, ResponseCode::Approved);
        // The second commit fails: the sale is refused, not approved.
        let sale = Request::Sale {
            card,
            amount_minor: 100,
            category: Category::Retail as u8,
            flags: 0,
            verification: Verification::NONE,
        };
        assert_eq!(call(&partitions, 2, sale), CardReply::code_only(ResponseCode::SystemError));
        assert!(partitions.any_failed());
        // Fail-stop: even reads are refused from now on.
        assert_eq!(call(&partitions, 3, Request::Balance { card }).code, ResponseCode::SystemError);
        partitions.stop();
    }

    fn today() -> BusinessDate {
        FixedClock.begun_date(FixedClock.now_ms(), 0)
    }

    /// S1, S7, T4: a new day book ends the batch, and the postings after it carry the next
    /// date; the day-end housekeeping the partition is asked to run is journaled, stamped
    /// with the day it ends, and a restart finds it.
    #[test]
    fn s1_s7_a_closed_day_stamps_the_next_and_housekeeping_is_journaled_and_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::store::Store::open(dir.path()).unwrap());
        let range = recovered(1).ranges[0];
        store.put_range(&range).unwrap();
        let day = today();
        let book = Arc::new(DayBook::starting(day));
        let partitions = Partitions::start(
            store.recover(1).unwrap(),
            store.clone(),
            Arc::new(FixedClock),
            None,
            Rules::core(),
            book,
            Default::default(),
        );
        let card = CardNo(FIRST + 1);
        let sell = Request::SellCard { card, amount_minor: 10_000, method: PaymentMethod::Cash as u8 };
        assert_eq!(call(&partitions, 1, sell).code, ResponseCode::Approved);
        let hold = Request::Hold {
            card,
            amount_minor: 4_000,
            category: Category::Room as u8,
            verification: Verification::NONE,
        };
        assert_eq!(call(&partitions, 2, hold).held_minor, 4_000);
        // The day closes 29 days on; its housekeeping runs as of the 30th (the hold expiry).
        let closed = crate::engine::rules::add_days(day, 29);
        let mut later = DayBook::starting(day);
        later.close(crate::engine::days::Scope::All, closed, closed, &Default::default()).unwrap();
        assert!(partitions.set_days_blocking(Arc::new(later)));
        let done = partitions.housekeep_blocking(closed).expect("every partition answers");
        assert_eq!((done.holds_expired, done.held_released_minor), (1, 4_000));
        assert_eq!(call(&partitions, 3, Request::Balance { card }).held_minor, 0);
        // Again: nothing more is due.
        assert_eq!(partitions.housekeep_blocking(closed), Some(Housekeeping::default()));
        let sale = Request::Sale {
            card,
            amount_minor: 100,
            category: Category::Retail as u8,
            flags: 0,
            verification: Verification::NONE,
        };
        assert_eq!(call(&partitions, 4, sale).code, ResponseCode::Approved);
        partitions.stop();
        drop(partitions);
        let recovered = store.recover(1).unwrap();
        assert_eq!(recovered.partitions[0].cards[&card].held_minor, 0);
        assert!(recovered.partitions[0].open_holds.is_empty(), "the index follows the hold's status");
        let entries: Vec<_> = store.journal().map(|e| (e.as_ref().unwrap().kind, e.unwrap().business_date)).collect();
        assert_eq!(
            entries,
            vec![
                (crate::engine::TxnKind::SellCard, day),
                (crate::engine::TxnKind::Hold, day),
                (crate::engine::TxnKind::HoldExpired, closed),
                (crate::engine::TxnKind::Sale, crate::engine::rules::add_days(closed, 1)),
            ]
        );
    }

    #[test]
    fn replies_wait_for_the_group_commit() {
        let log = Arc::new(FailingLog { ok_commits: usize::MAX, commits: AtomicUsize::new(0) });
        let partitions = Partitions::start(
            recovered(2),
            log.clone(),
            Arc::new(FixedClock),
            None,
            Rules::core(),
            Arc::new(DayBook::starting(today())),
            Default::default(),
        );
        for n in 0..20u32 {
            let sell = Request::SellCard { card: CardNo(FIRST + u64::from(n)), amount_minor: 0, method: 1 };
            assert_eq!(call(&partitions, 10 + n, sell).code, ResponseCode::Approved);
        }
        // One call at a time: each approval had its own commit before it was answered.
        assert_eq!(log.commits.load(Ordering::SeqCst), 20);
        partitions.stop();
    }
}
