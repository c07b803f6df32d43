//! Durable state in RocksDB. Layout, group commit and recovery are described in
//! `docs/design.md`; the byte encodings are in [`records`].
//!
//! Two RocksDB instances under the data directory: `log/` holds the log, the source of truth,
//! written by the partitions' synced group commits; `state/` holds what the log materializes
//! into (cards, transactions, trace records) plus ranges and marks. RocksDB runs one queue of
//! writers per instance, and a materialization write (a thousand keys into skip lists) held
//! the group commits behind it for milliseconds when both shared one; apart, a group commit
//! waits only for other group commits.

pub mod materializer;
pub mod records;

use std::collections::HashMap;
use std::path::Path;

use rocksdb::{
    ColumnFamilyDescriptor, DBCompressionType, DBRecoveryMode, IteratorMode, MemtableFactory, Options, WriteBatch,
    WriteOptions, DB,
};

use crate::engine::{
    partition_of, BusinessDate, Card, CardRange, JournalEntry, Trace, TraceKey, Txn, TxnKind, TxnStatus,
};
use protocol::CardNo;
use records::{LogRecord, RecordError, MAX_RECORD_BYTES};

/// Column families, declared in one place with their key encodings.
pub mod cf {
    /// In the log instance: group-commit id (u64 BE) → every record of that commit
    /// (`records::encode_batch`): the journal, and the source of truth; append-only, synced
    /// before any reply.
    pub const LOG: &str = "log";
    // The state instance's column families:
    /// card number (u64 BE) → card record, as of the materialization marks
    pub const CARDS: &str = "cards";
    /// txn id (u64 BE) → referenceable transaction (status, refunds), as of the marks
    pub const TXNS: &str = "txns";
    /// terminal id (u32 BE) ‖ stan (u32 BE) → trace record (T7, T8), as of the marks
    pub const TRACES: &str = "traces";
    /// first card number (u64 BE) → range record (L1)
    pub const RANGES: &str = "ranges";
    /// `marks` → how far the log is materialized into cards, txns, traces and day spend;
    /// `terminals` → the largest materialized trace number of each terminal
    pub const META: &str = "meta";
    /// terminal id (u32 BE) → provisioned terminal, its key wrapped under the master key
    /// (`keys::StoredTerminal`); synced when written
    pub const TERMINAL_KEYS: &str = "terminal_keys";
    /// card number (u64 BE) ‖ category (u8) → business date and the card's gross debits that
    /// day in the category (R3), as of the marks. One entry per card and limited category,
    /// overwritten each day; entries of older days are deleted at recovery
    /// (`Store::recover`). Created when missing, so data directories of earlier versions open.
    pub const DAY_SPEND: &str = "day_spend";
    pub const OPERATORS: &str = "operators";
    pub const OPEN_HOLDS: &str = "open_holds";
    /// Operations spanning partitions not yet finished (see `coordinator`).
    pub const INTENTS: &str = "intents";
    /// M1: keyed hash of a member's ID → the card it holds.
    pub const MEMBER_IDS: &str = "member_ids";
    /// A registered card's holder, sealed (see `coordinator`).
    pub const MEMBERS: &str = "members";
    /// The answer to the request that started an operation spanning partitions, by its
    /// terminal and trace number (T8).
    pub const OP_REPLIES: &str = "op_replies";
    /// S9: card ‖ txn id → the group commit whose log record holds the journal entry.
    pub const CARD_JOURNAL: &str = "card_journal";
    /// P3: products administered at run time, by product code.
    pub const PRODUCT_OVERRIDES: &str = "product_overrides";
    /// K5: a card's points by the month earned.
    pub const POINT_LOTS: &str = "point_lots";
    /// S2: terminal ‖ business date ‖ txn id → kind ‖ amount of each posting a terminal's
    /// card request made, so that its batch totals are a range read.
    pub const TERMINAL_JOURNAL: &str = "terminal_journal";
    pub const STATE: [&str; 17] = [
        CARDS,
        TXNS,
        TRACES,
        RANGES,
        META,
        TERMINAL_KEYS,
        DAY_SPEND,
        OPERATORS,
        OPEN_HOLDS,
        INTENTS,
        MEMBER_IDS,
        MEMBERS,
        OP_REPLIES,
        CARD_JOURNAL,
        PRODUCT_OVERRIDES,
        POINT_LOTS,
        TERMINAL_JOURNAL,
    ];
}

/// Subdirectory of the data directory holding the log instance.
pub const LOG_DIR: &str = "log";
/// Subdirectory of the data directory holding the state instance.
pub const STATE_DIR: &str = "state";

const MARKS_KEY: &[u8] = b"marks";
/// Records per write when materializing (see `Store::materialize`).
const MATERIALIZE_CHUNK_RECORDS: usize = 1_024;
/// Memtables a column family may hold: one being written, the others waiting for a flush.
const MEMTABLES_PER_COLUMN_FAMILY: i32 = 6;
/// All memtables of the log instance together.
const LOG_MEMTABLE_BUDGET_BYTES: usize = 96 << 20;
/// All memtables of the state instance together, across its column families.
const STATE_MEMTABLE_BUDGET_BYTES: usize = 160 << 20;
/// Blocks read from SST files, shared by both instances: data blocks of lookups and, counted
/// in the same budget, the index and bloom-filter blocks (see `open_instance`).
const BLOCK_CACHE_BYTES: usize = 64 << 20;
/// `terminals` → for each terminal, the largest trace number in the materialized state.
const TERMINALS_KEY: &[u8] = b"terminals";
/// Present once `open_holds` indexes every open hold (a data directory written before the
/// index existed is indexed once, from `txns`, at recovery).
const OPEN_HOLDS_INDEXED_KEY: &[u8] = b"open_holds_indexed";
/// The last id given to an operation spanning partitions: ids are never reused, because the
/// trace records of their steps outlive them.
const LAST_OPERATION_KEY: &[u8] = b"last_operation";
/// Present once `card_journal` indexes every journal entry of the log (a data directory
/// written before the index existed is indexed once, at recovery).
const CARD_JOURNAL_INDEXED_KEY: &[u8] = b"card_journal_indexed";
/// Present once `terminal_journal` indexes every terminal posting of the log.
const TERMINAL_JOURNAL_INDEXED_KEY: &[u8] = b"terminal_journal_indexed";
/// The business day of every store (S1), written before any partition uses it.
const DAY_BOOK_KEY: &[u8] = b"day_book";
/// The text of the catalog the switch last started with, so that a batch over the stopped
/// data directory applies the same rules (S7) and knows the same companies (S6).
const CATALOG_KEY: &[u8] = b"catalog";
/// Format of the day book record.
const DAY_BOOK_FORMAT: u8 = 1;
/// Most journal entries one history read returns.
pub const MAX_HISTORY_ENTRIES: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("corrupt record in column family {cf}: {problem}")]
    Corrupt { cf: &'static str, problem: RecordError },
    #[error("injected storage fault: {0}")]
    Injected(String),
    #[error("corrupt record in column family terminal_keys: {0}")]
    Terminal(String),
    #[error("corrupt record in column family operators: {0}")]
    Operator(String),
    #[error("corrupt record of a member: {0}")]
    Member(String),
    #[error("corrupt record in column family meta: {0}")]
    Meta(String),
    #[error("{path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error(
        "{0} holds a RocksDB database directly, the layout before the log and the state were \
         split into {LOG_DIR}/ and {STATE_DIR}/; it is not read, so that nothing in it is \
         silently ignored"
    )]
    UnsplitLayout(std::path::PathBuf),
}

/// Where a partition's group commits go: RocksDB in the switch, something faulty in tests.
/// Once a commit fails the caller stops using it (fail-stop).
pub trait CommitLog: Send + Sync + 'static {
    /// Appends one encoded group commit durably; `Ok` means it survives a crash.
    fn commit(&self, batch_id: u64, batch: &[u8]) -> Result<(), StoreError>;

    /// A trace record from the materialized state (one the engine no longer holds).
    fn trace(&self, key: TraceKey) -> Result<Option<Trace>, StoreError>;

    /// A transaction from the materialized state (one the engine no longer holds).
    fn txn(&self, txn_id: u64) -> Result<Option<Txn>, StoreError>;
}

/// How far the log has been materialized: for the partitioning that wrote it (`marks.len()`
/// partitions), the last group commit of each partition whose records are in the state
/// column families, and the largest txn id among them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Marks {
    pub max_txn_id: u64,
    pub marks: Vec<u64>,
}

impl Marks {
    /// True when the log record `batch_id` is already in the state column families.
    fn covers(&self, batch_id: u64) -> bool {
        !self.marks.is_empty() && batch_id <= self.marks[(batch_id % self.marks.len() as u64) as usize]
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = vec![1u8];
        out.extend_from_slice(&(self.marks.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.max_txn_id.to_be_bytes());
        self.marks.iter().for_each(|m| out.extend_from_slice(&m.to_be_bytes()));
        out
    }

    fn decode(bytes: &[u8]) -> Result<Marks, RecordError> {
        let short = RecordError::Short(bytes.len());
        let (&version, rest) = bytes.split_first().ok_or(short.clone())?;
        if version != 1 {
            return Err(RecordError::Version(version));
        }
        let n = u16::from_be_bytes(rest.get(..2).ok_or(short.clone())?.try_into().expect("2 bytes")) as usize;
        let body = &rest[2..];
        if body.len() != 8 * (n + 1) {
            return Err(short);
        }
        let word = |i: usize| u64::from_be_bytes(body[8 * i..8 * i + 8].try_into().expect("8 bytes"));
        Ok(Marks { max_txn_id: word(0), marks: (1..=n).map(word).collect() })
    }
}

/// foldhash: several times cheaper than SipHash for these small keys; the materializer
/// inserts every record of the log into one of these maps.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// State not yet written to the state column families: the latest version of each key.
#[derive(Debug, Default)]
pub struct Pending {
    pub cards: FastMap<CardNo, Option<Card>>,
    pub txns: FastMap<u64, Txn>,
    pub traces: FastMap<TraceKey, Trace>,
    pub day_spend: FastMap<(CardNo, u8), (BusinessDate, i64)>,
    /// Per terminal, the largest trace number among `traces`.
    pub terminal_max_stan: FastMap<u32, u32>,
    /// Journal entries to index by card (S9): card, txn id, group commit.
    pub journal: Vec<(CardNo, u64, u64)>,
    /// Terminal postings to index by terminal and date (S2).
    pub terminal_journal: Vec<TerminalPosting>,
    pub point_lots: FastMap<CardNo, crate::engine::PointLots>,
    pub records: usize,
}

impl Pending {
    /// Folds in a record of the group commit `batch_id`.
    pub fn apply(&mut self, record: LogRecord, batch_id: u64, marks: &mut Marks) {
        self.records += 1;
        match record {
            LogRecord::Card(card_no, card) => {
                self.cards.insert(card_no, card);
            }
            LogRecord::Journal(entry) => {
                marks.max_txn_id = marks.max_txn_id.max(entry.txn_id);
                self.journal.push((entry.card, entry.txn_id, batch_id));
                if let Some(posting) = TerminalPosting::of(&entry) {
                    self.terminal_journal.push(posting);
                }
            }
            LogRecord::Txn(txn_id, txn) => {
                self.txns.insert(txn_id, txn);
            }
            LogRecord::Trace(key, trace) => {
                self.traces.insert(key, trace);
                let max = self.terminal_max_stan.entry(key.terminal_id).or_insert(key.stan);
                *max = (*max).max(key.stan);
            }
            LogRecord::DaySpend(key, spend) => {
                self.day_spend.insert(key, spend);
            }
            LogRecord::PointLots(card, lots) => {
                self.point_lots.insert(card, lots);
            }
        }
    }
}

/// Everything recovered at start-up, split by partition.
#[derive(Debug, Default)]
pub struct Recovered {
    pub ranges: Vec<CardRange>,
    pub partitions: Vec<PartitionState>,
    pub max_txn_id: u64,
    pub max_batch_id: u64,
    /// Log records replayed on top of the materialized state.
    pub replayed_records: usize,
    /// How far the log is materialized once recovery is done (all of it).
    pub marks: Marks,
    /// Per terminal, the largest trace number on disk.
    pub disk_max_stan: HashMap<u32, u32>,
}

#[derive(Debug, Default)]
pub struct PartitionState {
    pub cards: crate::engine::CardMap,
    pub txns: HashMap<u64, Txn>,
    pub traces: HashMap<TraceKey, Trace>,
    /// Per card and category with a per-day limit, the business date and the gross debits
    /// that day (R3), for `Engine::restore_day_spend`. Only the entries dated the newest
    /// business date on record or the day before are kept (see `Store::recover`); the engine
    /// ignores any date but today's.
    pub day_spend: Vec<((CardNo, u8), (BusinessDate, i64))>,
    /// Holds still reserving value (T4): id, card, business date, for
    /// `Engine::restore_open_holds`.
    pub open_holds: Vec<(u64, CardNo, BusinessDate)>,
    /// Cards' points by the month earned (K5), for `Engine::restore_point_lots`.
    pub point_lots: Vec<(CardNo, crate::engine::PointLots)>,
}

/// The group commits a reader must take from the log because the state may not hold them
/// yet: per partition, those after the last one materialized up to the last one committed.
/// Taken marks first, then last commits, so that every commit acknowledged before it was
/// taken is either materialized (in the indexes) or named here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogTail {
    /// Per partition, the last group commit materialized.
    pub materialized: Vec<u64>,
    /// Per partition, the last group commit made durable.
    pub committed: Vec<u64>,
}

impl LogTail {
    /// The ids of the group commits after each partition's materialized one, up to its last
    /// committed one: partition `p` of `N` hands out ids `≡ p (mod N)`, rising by `N` (a batch
    /// that wrote nothing leaves its id unused, which a read simply misses).
    pub fn batch_ids(&self) -> impl Iterator<Item = u64> + '_ {
        let n = self.materialized.len() as u64;
        self.materialized.iter().zip(&self.committed).enumerate().flat_map(move |(p, (&done, &last))| {
            let p = p as u64;
            // The first id of partition p above `done`.
            let first = done + 1 + (p + n - (done + 1) % n) % n;
            (first..=last).step_by(n.max(1) as usize)
        })
    }
}

/// A posting of a terminal's card request, as its batch counts it (S2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TerminalPosting {
    pub terminal_id: u32,
    pub business_date: BusinessDate,
    pub txn_id: u64,
    pub kind: crate::engine::TxnKind,
    pub amount_minor: i64,
}

impl TerminalPosting {
    /// The entry as its terminal's batch counts it; None for a posting no batch counts (an
    /// administrative one, the housekeeping's, an operation step's).
    pub fn of(entry: &JournalEntry) -> Option<TerminalPosting> {
        let counted = protocol::message::BATCH_KINDS.contains(&entry.kind);
        let terminal = entry.terminal_id != 0 && entry.terminal_id != u32::MAX;
        (counted && terminal).then_some(TerminalPosting {
            terminal_id: entry.terminal_id,
            business_date: entry.business_date,
            txn_id: entry.txn_id,
            kind: entry.kind,
            amount_minor: entry.amount_minor,
        })
    }

    fn key(&self) -> [u8; 16] {
        let mut key = [0u8; 16];
        key[..4].copy_from_slice(&self.terminal_id.to_be_bytes());
        key[4..8].copy_from_slice(&self.business_date.to_be_bytes());
        key[8..].copy_from_slice(&self.txn_id.to_be_bytes());
        key
    }

    fn value(&self) -> [u8; 9] {
        let mut value = [0u8; 9];
        value[0] = self.kind as u8;
        value[1..].copy_from_slice(&self.amount_minor.to_be_bytes());
        value
    }
}

/// Key of the card-journal index: card ‖ txn id, so a card's entries are adjacent, in order.
fn card_journal_key(card: CardNo, txn_id: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&card.0.to_be_bytes());
    key[8..].copy_from_slice(&txn_id.to_be_bytes());
    key
}

/// Day-spend entries kept at recovery: those of the newest business date on record and of the
/// day before it (the business date may just have changed); older ones are deleted.
const DAY_SPEND_KEPT_DAYS: i64 = 1;

pub struct Store {
    log: DB,
    state: DB,
    sync_write: WriteOptions,
    /// Materialized state skips the WAL (see `open`).
    unlogged_write: WriteOptions,
    /// The persisted per-terminal trace number maxima, merged at each materialization.
    terminals: std::sync::Mutex<HashMap<u32, u32>>,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        if dir.join("CURRENT").exists() {
            return Err(StoreError::UnsplitLayout(dir.to_path_buf()));
        }
        // Compactions run in RocksDB's low-priority pool; on a machine with few cores they
        // yield to the partitions. Flushes (the high-priority pool) keep normal priority: the
        // writes wait for them when memtables are full.
        let mut env = rocksdb::Env::new()?;
        env.lower_thread_pool_cpu_priority();
        let cache = rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let log = open_instance(&dir.join(LOG_DIR), &env, &cache, LOG_MEMTABLE_BUDGET_BYTES, &[cf::LOG])?;
        let state = open_instance(&dir.join(STATE_DIR), &env, &cache, STATE_MEMTABLE_BUDGET_BYTES, &cf::STATE)?;
        let mut sync_write = WriteOptions::default();
        sync_write.set_sync(true);
        let mut unlogged_write = WriteOptions::default();
        unlogged_write.disable_wal(true);
        let store = Store { log, state, sync_write, unlogged_write, terminals: Default::default() };
        let terminals = match store.state.get_cf(store.handle(cf::META), TERMINALS_KEY)? {
            Some(bytes) => decode_terminals(&bytes).map_err(|problem| StoreError::Corrupt { cf: cf::META, problem })?,
            None => HashMap::new(),
        };
        *store.terminals.lock().unwrap_or_else(|e| e.into_inner()) = terminals;
        Ok(store)
    }

    /// A column family of the state instance.
    fn handle(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.state.cf_handle(name).expect("column families are created at open")
    }

    fn log_handle(&self) -> &rocksdb::ColumnFamily {
        self.log.cf_handle(cf::LOG).expect("column families are created at open")
    }

    /// Records an imported range durably.
    pub fn put_range(&self, range: &CardRange) -> Result<(), StoreError> {
        let mut buf = [0u8; MAX_RECORD_BYTES];
        let n = records::encode_range(range, &mut buf);
        let mut batch = WriteBatch::default();
        batch.put_cf(self.handle(cf::RANGES), range.first.0.to_be_bytes(), &buf[..n]);
        self.state.write_opt(batch, &self.sync_write)?;
        Ok(())
    }

    /// Records a provisioned terminal durably (its key wrapped, never in clear).
    pub fn put_terminal(&self, terminal: &crate::keys::StoredTerminal) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.handle(cf::TERMINAL_KEYS), terminal.terminal_id.to_be_bytes(), terminal.encode());
        self.state.write_opt(batch, &self.sync_write)?;
        Ok(())
    }

    /// Every provisioned terminal, as stored.
    pub fn terminals(&self) -> Result<Vec<crate::keys::StoredTerminal>, StoreError> {
        let mut out = Vec::new();
        for item in self.state.iterator_cf(self.handle(cf::TERMINAL_KEYS), IteratorMode::Start) {
            let (key, value) = item?;
            let id: [u8; 4] =
                key.as_ref().try_into().map_err(|_| StoreError::Terminal(format!("key of {} bytes", key.len())))?;
            let stored = crate::keys::StoredTerminal::decode(u32::from_be_bytes(id), &value)
                .map_err(|e| StoreError::Terminal(e.to_string()))?;
            out.push(stored);
        }
        Ok(out)
    }

    /// Records an operator durably (its passcode as a keyed hash only).
    pub fn put_operator(&self, operator: &crate::operators::Operator) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.handle(cf::OPERATORS), operator.operator_id.to_be_bytes(), operator.encode());
        self.state.write_opt(batch, &self.sync_write)?;
        Ok(())
    }

    /// Records a product administered at run time, durably.
    pub fn put_product_override(&self, o: &crate::engine::catalog::ProductOverride) -> Result<(), StoreError> {
        let mut value = vec![1u8];
        value.extend_from_slice(&o.version.to_be_bytes());
        value.push(u8::from(o.enabled));
        value.extend_from_slice(&o.discount_bp.to_be_bytes());
        value.extend_from_slice(&o.approved_quantity.to_be_bytes());
        let mut batch = WriteBatch::default();
        batch.put_cf(self.handle(cf::PRODUCT_OVERRIDES), (o.product as u16).to_be_bytes(), value);
        self.state.write_opt(batch, &self.sync_write)?;
        Ok(())
    }

    /// Every product administered at run time, in the order they were made (version).
    pub fn product_overrides(&self) -> Result<Vec<crate::engine::catalog::ProductOverride>, StoreError> {
        let mut out = Vec::new();
        for item in self.state.iterator_cf(self.handle(cf::PRODUCT_OVERRIDES), IteratorMode::Start) {
            let (key, value) = item?;
            let corrupt = || StoreError::Member(format!("product override of {} bytes", value.len()));
            let code = u16::from_be_bytes(key.as_ref().try_into().map_err(|_| corrupt())?);
            let product = crate::engine::Product::from_code(code).ok_or_else(corrupt)?;
            if value.len() != 12 || value[0] != 1 {
                return Err(corrupt());
            }
            out.push(crate::engine::catalog::ProductOverride {
                product,
                version: u32::from_be_bytes(value[1..5].try_into().expect("4 bytes")),
                enabled: value[5] == 1,
                discount_bp: u16::from_be_bytes(value[6..8].try_into().expect("2 bytes")),
                approved_quantity: u32::from_be_bytes(value[8..12].try_into().expect("4 bytes")),
            });
        }
        out.sort_by_key(|o| o.version);
        Ok(out)
    }

    /// Records the day book durably (S1): a close is on disk before it takes effect.
    pub fn put_day_book(&self, book: &crate::engine::days::DayBook) -> Result<(), StoreError> {
        let mut value = Vec::with_capacity(13 + 8 * book.stores.len());
        value.push(DAY_BOOK_FORMAT);
        value.extend_from_slice(&book.default_open.to_be_bytes());
        value.extend_from_slice(&book.housekept_through.to_be_bytes());
        value.extend_from_slice(&(book.stores.len() as u32).to_be_bytes());
        for (store, open) in &book.stores {
            value.extend_from_slice(&store.to_be_bytes());
            value.extend_from_slice(&open.to_be_bytes());
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(self.handle(cf::META), DAY_BOOK_KEY, value);
        self.state.write_opt(batch, &self.sync_write)?;
        Ok(())
    }

    /// The day book, if one was ever written.
    pub fn day_book(&self) -> Result<Option<crate::engine::days::DayBook>, StoreError> {
        let Some(value) = self.state.get_cf(self.handle(cf::META), DAY_BOOK_KEY)? else { return Ok(None) };
        let corrupt = |problem: &str| StoreError::Meta(problem.to_string());
        let u32_at = |at: usize| value.get(at..at + 4).map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")));
        if value.first() != Some(&DAY_BOOK_FORMAT) {
            return Err(corrupt("day book of an unknown format"));
        }
        let (Some(default_open), Some(housekept_through), Some(count)) = (u32_at(1), u32_at(5), u32_at(9)) else {
            return Err(corrupt("day book cut short"));
        };
        if value.len() != 13 + 8 * count as usize {
            return Err(corrupt("day book of the wrong length"));
        }
        let stores = (0..count as usize)
            .map(|i| (u32_at(13 + 8 * i).expect("length checked"), u32_at(17 + 8 * i).expect("length checked")))
            .collect();
        Ok(Some(crate::engine::days::DayBook { default_open, stores, housekept_through }))
    }

    /// Records the catalog text the switch runs with (None: the core rules).
    pub fn put_catalog_text(&self, text: Option<&str>) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        match text {
            Some(text) => batch.put_cf(self.handle(cf::META), CATALOG_KEY, text.as_bytes()),
            None => batch.delete_cf(self.handle(cf::META), CATALOG_KEY),
        }
        self.state.write_opt(batch, &self.sync_write)?;
        Ok(())
    }

    /// The catalog text the switch last started with; None: the core rules.
    pub fn catalog_text(&self) -> Result<Option<String>, StoreError> {
        match self.state.get_cf(self.handle(cf::META), CATALOG_KEY)? {
            None => Ok(None),
            Some(bytes) => {
                String::from_utf8(bytes).map(Some).map_err(|_| StoreError::Meta("catalog text is not UTF-8".into()))
            }
        }
    }

    /// A consistent copy of the data directory at `dir` (hard links where it can), taken
    /// while the switch runs: the state first, then the log. The log only grows, so the copy
    /// of it holds every group commit the copy of the state covers, and a recovery of the
    /// copy replays the rest, like a restart after a crash at that moment.
    pub fn checkpoint(&self, dir: &Path) -> Result<(), StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io { path: dir.to_path_buf(), source })?;
        rocksdb::checkpoint::Checkpoint::new(&self.state)?.create_checkpoint(dir.join(STATE_DIR))?;
        rocksdb::checkpoint::Checkpoint::new(&self.log)?.create_checkpoint(dir.join(LOG_DIR))?;
        Ok(())
    }

    /// The last operation id handed out (0 none).
    pub fn last_operation(&self) -> Result<u64, StoreError> {
        match self.state.get_cf(self.handle(cf::META), LAST_OPERATION_KEY)? {
            Some(bytes) => {
                records::decode_u64_key(&bytes).map_err(|problem| StoreError::Corrupt { cf: cf::META, problem })
            }
            None => Ok(0),
        }
    }

    /// Records the intent of operation `op_id` (and that its id is taken), durably, before
    /// its first step.
    pub fn put_intent(&self, op_id: u64, intent: &[u8]) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.handle(cf::INTENTS), op_id.to_be_bytes(), intent);
        batch.put_cf(self.handle(cf::META), LAST_OPERATION_KEY, op_id.to_be_bytes());
        self.state.write_opt(batch, &self.sync_write)?;
        Ok(())
    }

    /// Every unfinished operation, in id order.
    pub fn intents(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for item in self.state.iterator_cf(self.handle(cf::INTENTS), IteratorMode::Start) {
            let (key, value) = item?;
            let op_id =
                records::decode_u64_key(&key).map_err(|problem| StoreError::Corrupt { cf: cf::INTENTS, problem })?;
            out.push((op_id, value.to_vec()));
        }
        Ok(out)
    }

    /// Ends operation `op_id`: its intent goes, and in the same synced write the member index
    /// and member records it changes (`Some(card)` maps an ID to it).
    pub fn finish_operation(
        &self,
        op_id: u64,
        answer: (TraceKey, &Trace),
        member_id: Option<([u8; 16], CardNo)>,
        member: Option<(CardNo, &[u8])>,
    ) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.handle(cf::INTENTS), op_id.to_be_bytes());
        let mut buf = [0u8; MAX_RECORD_BYTES];
        let n = records::encode_trace(answer.1, &mut buf);
        batch.put_cf(self.handle(cf::OP_REPLIES), records::trace_key(&answer.0), &buf[..n]);
        if let Some((id_key, card)) = member_id {
            batch.put_cf(self.handle(cf::MEMBER_IDS), id_key, card.0.to_be_bytes());
        }
        if let Some((card, record)) = member {
            batch.put_cf(self.handle(cf::MEMBERS), card.0.to_be_bytes(), record);
        }
        self.state.write_opt(batch, &self.sync_write)?;
        Ok(())
    }

    /// The answer to the request `key` that started an operation, once it is finished.
    pub fn op_reply(&self, key: TraceKey) -> Result<Option<Trace>, StoreError> {
        let raw = records::trace_key(&key);
        match self.state.get_cf(self.handle(cf::OP_REPLIES), raw)? {
            Some(value) => Ok(Some(
                records::decode_trace(&raw, &value)
                    .map_err(|problem| StoreError::Corrupt { cf: cf::OP_REPLIES, problem })?
                    .1,
            )),
            None => Ok(None),
        }
    }

    /// The M1 index: ID key → card.
    pub fn member_ids(&self) -> Result<Vec<([u8; 16], CardNo)>, StoreError> {
        let mut out = Vec::new();
        for item in self.state.iterator_cf(self.handle(cf::MEMBER_IDS), IteratorMode::Start) {
            let (key, value) = item?;
            let corrupt = |what: &str| StoreError::Member(format!("{what} of {} bytes", key.len().max(value.len())));
            let id_key: [u8; 16] = key.as_ref().try_into().map_err(|_| corrupt("an ID key"))?;
            let card: [u8; 8] = value.as_ref().try_into().map_err(|_| corrupt("a card number"))?;
            out.push((id_key, CardNo(u64::from_be_bytes(card))));
        }
        Ok(out)
    }

    /// The sealed member record of `card`, if its holder is registered.
    pub fn member(&self, card: CardNo) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.state.get_cf(self.handle(cf::MEMBERS), card.0.to_be_bytes())?)
    }

    /// Every operator, as stored.
    pub fn operators(&self) -> Result<Vec<crate::operators::Operator>, StoreError> {
        let mut out = Vec::new();
        for item in self.state.iterator_cf(self.handle(cf::OPERATORS), IteratorMode::Start) {
            let (key, value) = item?;
            let id: [u8; 4] =
                key.as_ref().try_into().map_err(|_| StoreError::Operator(format!("key of {} bytes", key.len())))?;
            out.push(crate::operators::Operator::decode(u32::from_be_bytes(id), &value).map_err(StoreError::Operator)?);
        }
        Ok(out)
    }

    fn marks(&self) -> Result<Marks, StoreError> {
        match self.state.get_cf(self.handle(cf::META), MARKS_KEY)? {
            Some(bytes) => Marks::decode(&bytes).map_err(|problem| StoreError::Corrupt { cf: cf::META, problem }),
            None => Ok(Marks::default()),
        }
    }

    /// Writes pending state, then the marks that say it is written. Without the WAL: if lost
    /// in a crash, it is lost together with the marks (atomic flush), and the log it came
    /// from is still there and is replayed. Written in chunks of
    /// `MATERIALIZE_CHUNK_RECORDS`, because RocksDB serialises writers: one huge batch would
    /// hold a range import (the state instance's only synced write) behind it. A crash between chunks is harmless:
    /// the marks come last, and replaying the log over newer state converges on the same state
    /// (every record is a whole value, not a delta).
    pub fn materialize(&self, pending: &Pending, marks: &Marks) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        let mut buf = [0u8; MAX_RECORD_BYTES];
        let (cards, txns, traces) = (self.handle(cf::CARDS), self.handle(cf::TXNS), self.handle(cf::TRACES));
        let flush_if_full = |batch: &mut WriteBatch| -> Result<(), StoreError> {
            if batch.len() >= MATERIALIZE_CHUNK_RECORDS {
                self.state.write_opt(std::mem::take(batch), &self.unlogged_write)?;
            }
            Ok(())
        };
        // In key order: a skip-list memtable insert next to the previous one is cheap, one at
        // a random place in a large memtable is a chain of cache misses (in hash-map order,
        // the skip lists took 58 % of the materializer's time under pipelined load).
        let mut card_list: Vec<_> = pending.cards.iter().collect();
        card_list.sort_unstable_by_key(|(card_no, _)| card_no.0);
        let mut txn_list: Vec<_> = pending.txns.iter().collect();
        txn_list.sort_unstable_by_key(|(txn_id, _)| **txn_id);
        let mut trace_list: Vec<_> = pending.traces.iter().collect();
        trace_list.sort_unstable_by_key(|(key, _)| (key.terminal_id, key.stan));
        let mut day_spend_list: Vec<_> = pending.day_spend.iter().collect();
        day_spend_list.sort_unstable_by_key(|((card_no, category), _)| (card_no.0, *category));
        for (card_no, card) in card_list {
            match card {
                Some(card) => {
                    let n = records::encode_card(card, &mut buf);
                    batch.put_cf(cards, card_no.0.to_be_bytes(), &buf[..n]);
                }
                None => batch.delete_cf(cards, card_no.0.to_be_bytes()),
            }
            flush_if_full(&mut batch)?;
        }
        let open_holds = self.handle(cf::OPEN_HOLDS);
        for (txn_id, txn) in txn_list {
            let n = records::encode_txn(txn, &mut buf);
            batch.put_cf(txns, txn_id.to_be_bytes(), &buf[..n]);
            // The index of holds still reserving value follows their status (T4).
            if txn.kind == TxnKind::Hold {
                if txn.status == TxnStatus::Posted {
                    let n = records::encode_open_hold(txn.card, txn.business_date, &mut buf);
                    batch.put_cf(open_holds, txn_id.to_be_bytes(), &buf[..n]);
                } else {
                    batch.delete_cf(open_holds, txn_id.to_be_bytes());
                }
            }
            flush_if_full(&mut batch)?;
        }
        for (key, trace) in trace_list {
            let n = records::encode_trace(trace, &mut buf);
            batch.put_cf(traces, records::trace_key(key), &buf[..n]);
            flush_if_full(&mut batch)?;
        }
        let day_spend = self.handle(cf::DAY_SPEND);
        for ((card_no, category), (business_date, spent_minor)) in day_spend_list {
            let n = records::encode_day_spend(*business_date, *spent_minor, &mut buf);
            batch.put_cf(day_spend, records::day_spend_key(*card_no, *category), &buf[..n]);
            flush_if_full(&mut batch)?;
        }
        let point_lots = self.handle(cf::POINT_LOTS);
        let mut lots_list: Vec<_> = pending.point_lots.iter().collect();
        lots_list.sort_unstable_by_key(|(card, _)| card.0);
        let mut lots_buf = Vec::with_capacity(records::MAX_POINT_LOTS_BYTES);
        for (card, lots) in lots_list {
            if lots.is_empty() {
                batch.delete_cf(point_lots, card.0.to_be_bytes());
            } else {
                lots_buf.clear();
                records::encode_point_lots(lots, &mut lots_buf);
                batch.put_cf(point_lots, card.0.to_be_bytes(), &lots_buf);
            }
            flush_if_full(&mut batch)?;
        }
        let card_journal = self.handle(cf::CARD_JOURNAL);
        let mut journal_list = pending.journal.clone();
        journal_list.sort_unstable_by_key(|(card, txn_id, _)| (card.0, *txn_id));
        for (card, txn_id, batch_id) in journal_list {
            batch.put_cf(card_journal, card_journal_key(card, txn_id), batch_id.to_be_bytes());
            flush_if_full(&mut batch)?;
        }
        let terminal_journal = self.handle(cf::TERMINAL_JOURNAL);
        let mut postings = pending.terminal_journal.clone();
        postings.sort_unstable_by_key(TerminalPosting::key);
        for posting in postings {
            batch.put_cf(terminal_journal, posting.key(), posting.value());
            flush_if_full(&mut batch)?;
        }
        batch.put_cf(self.handle(cf::META), MARKS_KEY, marks.encode());
        let mut terminals = self.terminals.lock().unwrap_or_else(|e| e.into_inner());
        for (terminal, stan) in &pending.terminal_max_stan {
            let max = terminals.entry(*terminal).or_insert(*stan);
            *max = (*max).max(*stan);
        }
        batch.put_cf(self.handle(cf::META), TERMINALS_KEY, encode_terminals(&terminals));
        self.state.write_opt(batch, &self.unlogged_write)?;
        Ok(())
    }

    /// Makes the materialized state durable: flushes every state column family's memtables
    /// together (atomic flush), marks included, so recovery replays the log from there on.
    pub fn flush_state(&self) -> Result<(), StoreError> {
        let handles: Vec<&rocksdb::ColumnFamily> = cf::STATE.iter().map(|name| self.handle(name)).collect();
        let mut options = rocksdb::FlushOptions::default();
        options.set_wait(true);
        self.state.flush_cfs_opt(&handles, &options)?;
        Ok(())
    }

    /// Reads the state back: the materialized column families, then the log records they do
    /// not cover yet, each routed to the partition that owns its card. The replayed records
    /// are materialized (and the marks set for `partitions`) before this returns, so the
    /// partitions start from a log that is fully covered.
    ///
    /// Day spend is pruned here: only the entries of the newest business date on record and
    /// of the `DAY_SPEND_KEPT_DAYS` before it are returned, the older ones are deleted from
    /// the column family. (It holds one entry per card and limited category in any case, each
    /// overwritten by the next day's; pruning drops those of cards no longer used.)
    pub fn recover(&self, partitions: usize) -> Result<Recovered, StoreError> {
        let mut out = Recovered {
            partitions: (0..partitions).map(|_| PartitionState::default()).collect(),
            ..Recovered::default()
        };
        let corrupt = |cf| move |problem| StoreError::Corrupt { cf, problem };
        for item in self.state.iterator_cf(self.handle(cf::RANGES), IteratorMode::Start) {
            let (key, value) = item?;
            out.ranges.push(records::decode_range(&key, &value).map_err(corrupt(cf::RANGES))?);
        }
        let started = std::time::Instant::now();
        self.load_cards(&out.ranges, &mut out.partitions)?;
        tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "cards loaded");
        let mut day_spend: FastMap<(CardNo, u8), (BusinessDate, i64)> = FastMap::default();
        for item in self.state.iterator_cf(self.handle(cf::DAY_SPEND), IteratorMode::Start) {
            let (key, value) = item?;
            let (key, spend) = records::decode_day_spend(&key, &value).map_err(corrupt(cf::DAY_SPEND))?;
            day_spend.insert(key, spend);
        }
        // Materialized transactions and trace records stay on disk: the engine fetches the
        // ones a request names. Only the log tail's are loaded, below.
        let mut marks = self.marks()?;
        let first_uncovered = marks.marks.iter().min().map_or(0, |m| m + 1);
        let mut pending = Pending::default();
        let from = IteratorMode::From(&first_uncovered.to_be_bytes(), rocksdb::Direction::Forward);
        for item in self.log.iterator_cf(self.log_handle(), from) {
            let (key, value) = item?;
            let batch_id = records::decode_u64_key(&key).map_err(corrupt(cf::LOG))?;
            out.max_batch_id = out.max_batch_id.max(batch_id);
            if marks.covers(batch_id) {
                continue;
            }
            for record in records::decode_batch(&value) {
                let record = record.map_err(corrupt(cf::LOG))?;
                let state = |card: CardNo| partition_of(card, partitions);
                match record {
                    LogRecord::Card(card_no, Some(card)) => {
                        out.partitions[state(card_no)].cards.insert(card_no, card);
                    }
                    LogRecord::Card(card_no, None) => {
                        out.partitions[state(card_no)].cards.remove(&card_no);
                    }
                    LogRecord::Journal(_) => {}
                    LogRecord::Txn(txn_id, txn) => {
                        out.partitions[state(txn.card)].txns.insert(txn_id, txn);
                    }
                    LogRecord::Trace(key, trace) => {
                        out.partitions[state(trace.card())].traces.insert(key, trace);
                    }
                    LogRecord::DaySpend(key, spend) => {
                        day_spend.insert(key, spend);
                    }
                    // Read from the column family once the tail is materialized, below.
                    LogRecord::PointLots(..) => {}
                }
                pending.apply(record, batch_id, &mut marks);
            }
        }
        if let Some(item) = self.log.iterator_cf(self.log_handle(), IteratorMode::End).next() {
            let (key, _) = item?;
            out.max_batch_id = out.max_batch_id.max(records::decode_u64_key(&key).map_err(corrupt(cf::LOG))?);
        }
        out.replayed_records = pending.records;
        out.max_txn_id = marks.max_txn_id;
        let covered = Marks { max_txn_id: marks.max_txn_id, marks: vec![out.max_batch_id; partitions] };
        let replayed = pending.records > 0 || marks.marks.len() != partitions;
        if replayed {
            self.materialize(&pending, &covered)?;
        }
        // After the replayed entries are written, so that a stale one among them is deleted
        // too.
        let pruned = self.prune_day_spend(&mut day_spend)?;
        if replayed || pruned > 0 {
            // Made durable now: materialized state skips the WAL, so without a flush a crash
            // before the next one would replay all of this again, and every crash in a row
            // would add to what the next start replays (restarts grew from 0.06 s to 6 s over
            // 400 SIGKILLs).
            self.flush_state()?;
        }
        for (key, spend) in day_spend {
            out.partitions[partition_of(key.0, partitions)].day_spend.push((key, spend));
        }
        // After the replayed records are materialized: the indexes then cover them too.
        self.index_open_holds()?;
        self.index_card_journal()?;
        for item in self.state.iterator_cf(self.handle(cf::OPEN_HOLDS), IteratorMode::Start) {
            let (key, value) = item?;
            let txn_id = records::decode_u64_key(&key).map_err(corrupt(cf::OPEN_HOLDS))?;
            let (card, date) = records::decode_open_hold(&value).map_err(corrupt(cf::OPEN_HOLDS))?;
            out.partitions[partition_of(card, partitions)].open_holds.push((txn_id, card, date));
        }
        for item in self.state.iterator_cf(self.handle(cf::POINT_LOTS), IteratorMode::Start) {
            let (key, value) = item?;
            let card = CardNo(records::decode_u64_key(&key).map_err(corrupt(cf::POINT_LOTS))?);
            let lots = records::decode_point_lots(&value).map_err(corrupt(cf::POINT_LOTS))?;
            out.partitions[partition_of(card, partitions)].point_lots.push((card, lots));
        }
        for state in &mut out.partitions {
            state.day_spend.sort_unstable_by_key(|((card_no, category), _)| (card_no.0, *category));
        }
        out.marks = covered;
        out.disk_max_stan = self.terminals.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Ok(out)
    }

    /// Builds the card-journal index from the log in a data directory written before it
    /// existed (once: a meta key says it is done).
    fn index_card_journal(&self) -> Result<(), StoreError> {
        let meta = self.handle(cf::META);
        let by_card = self.state.get_cf(meta, CARD_JOURNAL_INDEXED_KEY)?.is_none();
        let by_terminal = self.state.get_cf(meta, TERMINAL_JOURNAL_INDEXED_KEY)?.is_none();
        if !by_card && !by_terminal {
            return Ok(());
        }
        let index = self.handle(cf::CARD_JOURNAL);
        let terminal_index = self.handle(cf::TERMINAL_JOURNAL);
        let mut batch = WriteBatch::default();
        let mut indexed = 0usize;
        for item in self.log.iterator_cf(self.log_handle(), IteratorMode::Start) {
            let (key, value) = item?;
            let batch_id =
                records::decode_u64_key(&key).map_err(|problem| StoreError::Corrupt { cf: cf::LOG, problem })?;
            for record in records::decode_batch(&value) {
                if let LogRecord::Journal(entry) =
                    record.map_err(|problem| StoreError::Corrupt { cf: cf::LOG, problem })?
                {
                    if by_card {
                        batch.put_cf(index, card_journal_key(entry.card, entry.txn_id), batch_id.to_be_bytes());
                    }
                    if let Some(posting) = TerminalPosting::of(&entry).filter(|_| by_terminal) {
                        batch.put_cf(terminal_index, posting.key(), posting.value());
                    }
                    indexed += 1;
                }
            }
            if batch.len() >= MATERIALIZE_CHUNK_RECORDS {
                self.state.write_opt(std::mem::take(&mut batch), &self.unlogged_write)?;
            }
        }
        self.state.write_opt(batch, &self.unlogged_write)?;
        self.flush_state()?;
        let mut done = WriteBatch::default();
        done.put_cf(meta, CARD_JOURNAL_INDEXED_KEY, [1u8]);
        done.put_cf(meta, TERMINAL_JOURNAL_INDEXED_KEY, [1u8]);
        self.state.write_opt(done, &self.sync_write)?;
        if indexed > 0 {
            tracing::info!(indexed, by_card, by_terminal, "journal indexed");
        }
        Ok(())
    }

    /// S2: the batch of `terminal` on `date`, from the index plus the group commits `tail`
    /// names (see `card_history`): every posting whose reply was sent is counted once.
    pub fn terminal_batch(
        &self,
        terminal_id: u32,
        date: BusinessDate,
        tail: &LogTail,
    ) -> Result<protocol::BatchTotals, StoreError> {
        let mut postings: std::collections::BTreeMap<u64, (u8, i64)> = Default::default();
        let mut prefix = [0u8; 8];
        prefix[..4].copy_from_slice(&terminal_id.to_be_bytes());
        prefix[4..].copy_from_slice(&date.to_be_bytes());
        let index = self.handle(cf::TERMINAL_JOURNAL);
        for item in self.state.iterator_cf(index, IteratorMode::From(&prefix, rocksdb::Direction::Forward)) {
            let (key, value) = item?;
            if key.len() != 16 || key[..8] != prefix {
                break;
            }
            if value.len() != 9 {
                return Err(StoreError::Meta(format!("terminal journal entry of {} bytes", value.len())));
            }
            let txn_id = u64::from_be_bytes(key[8..].try_into().expect("16-byte key"));
            postings.insert(txn_id, (value[0], i64::from_be_bytes(value[1..].try_into().expect("9 bytes"))));
        }
        for entry in self.tail_entries(tail)? {
            if let Some(p) = TerminalPosting::of(&entry) {
                if p.terminal_id == terminal_id && p.business_date == date {
                    postings.insert(p.txn_id, (p.kind as u8, p.amount_minor));
                }
            }
        }
        let mut totals = protocol::BatchTotals::default();
        for (kind, amount_minor) in postings.into_values() {
            if let Some(kind) = protocol::PostingKind::from_u8(kind) {
                totals.add(kind, amount_minor);
            }
        }
        Ok(totals)
    }

    /// S9: the journal entries of `card` with txn ids above `after_txn_id`, oldest first, at
    /// most [`MAX_HISTORY_ENTRIES`], and whether more follow. The index holds what was
    /// materialized; the group commits `tail` names are read too, so that the history ends
    /// with the last acknowledged posting.
    pub fn card_history(
        &self,
        card: CardNo,
        after_txn_id: u64,
        tail: &LogTail,
    ) -> Result<(Vec<JournalEntry>, bool), StoreError> {
        let corrupt = |problem| StoreError::Corrupt { cf: cf::LOG, problem };
        let index = self.handle(cf::CARD_JOURNAL);
        let from = card_journal_key(card, after_txn_id.saturating_add(1));
        let mut found: std::collections::BTreeMap<u64, JournalEntry> = Default::default();
        let mut batches: HashMap<u64, Vec<JournalEntry>> = HashMap::new();
        let mut more = false;
        for item in self.state.iterator_cf(index, IteratorMode::From(&from, rocksdb::Direction::Forward)) {
            let (key, value) = item?;
            if key.len() != 16 || key[..8] != card.0.to_be_bytes() {
                break;
            }
            if found.len() == MAX_HISTORY_ENTRIES {
                more = true;
                break;
            }
            let txn_id = u64::from_be_bytes(key[8..].try_into().expect("16-byte key"));
            let batch_id = records::decode_u64_key(&value)
                .map_err(|problem| StoreError::Corrupt { cf: cf::CARD_JOURNAL, problem })?;
            if let std::collections::hash_map::Entry::Vacant(slot) = batches.entry(batch_id) {
                let bytes = self.log.get_cf(self.log_handle(), batch_id.to_be_bytes())?.unwrap_or_default();
                let mut entries = Vec::new();
                for record in records::decode_batch(&bytes) {
                    if let LogRecord::Journal(entry) = record.map_err(corrupt)? {
                        entries.push(entry);
                    }
                }
                slot.insert(entries);
            }
            if let Some(entry) = batches[&batch_id].iter().find(|e| e.txn_id == txn_id) {
                found.insert(txn_id, *entry);
            }
        }
        if !more {
            // The group commits not yet in the index: at most a second's worth.
            for entry in self.tail_entries(tail)? {
                if entry.card == card && entry.txn_id > after_txn_id {
                    found.insert(entry.txn_id, entry);
                }
            }
            if found.len() > MAX_HISTORY_ENTRIES {
                more = true;
            }
        }
        Ok((found.into_values().take(MAX_HISTORY_ENTRIES).collect(), more))
    }

    /// Every journal entry of the group commits `tail` names (those not materialized when it
    /// was taken). One iterator, sought to each id in ascending order: the log's memtable is
    /// a vector (appends are its hot path), which sorts itself for each read, so a point
    /// lookup per id would sort it once per id.
    pub fn tail_entries(&self, tail: &LogTail) -> Result<Vec<JournalEntry>, StoreError> {
        let corrupt = |problem| StoreError::Corrupt { cf: cf::LOG, problem };
        let mut ids: Vec<u64> = tail.batch_ids().collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        ids.sort_unstable();
        let mut entries = Vec::new();
        let mut log = self.log.raw_iterator_cf(self.log_handle());
        for batch_id in ids {
            let key = batch_id.to_be_bytes();
            log.seek(key);
            if !log.valid() || log.key() != Some(&key[..]) {
                log.status()?;
                // No commit under this id (its batch wrote nothing).
                continue;
            }
            for record in records::decode_batch(log.value().expect("valid")) {
                if let LogRecord::Journal(entry) = record.map_err(corrupt)? {
                    entries.push(entry);
                }
            }
        }
        log.status()?;
        Ok(entries)
    }

    /// Builds the open-holds index from `txns` in a data directory written before it existed
    /// (once: a meta key says it is done).
    fn index_open_holds(&self) -> Result<(), StoreError> {
        let meta = self.handle(cf::META);
        if self.state.get_cf(meta, OPEN_HOLDS_INDEXED_KEY)?.is_some() {
            return Ok(());
        }
        let (txns, open_holds) = (self.handle(cf::TXNS), self.handle(cf::OPEN_HOLDS));
        let mut batch = WriteBatch::default();
        let mut buf = [0u8; MAX_RECORD_BYTES];
        let mut indexed = 0usize;
        for item in self.state.iterator_cf(txns, IteratorMode::Start) {
            let (key, value) = item?;
            let (txn_id, txn) =
                records::decode_txn(&key, &value).map_err(|problem| StoreError::Corrupt { cf: cf::TXNS, problem })?;
            if txn.kind == TxnKind::Hold && txn.status == TxnStatus::Posted {
                let n = records::encode_open_hold(txn.card, txn.business_date, &mut buf);
                batch.put_cf(open_holds, txn_id.to_be_bytes(), &buf[..n]);
                indexed += 1;
            }
        }
        batch.put_cf(meta, OPEN_HOLDS_INDEXED_KEY, [1u8]);
        self.state.write_opt(batch, &self.sync_write)?;
        if indexed > 0 {
            tracing::info!(indexed, "open holds indexed");
        }
        Ok(())
    }

    /// Removes the day-spend entries older than the newest business date among them minus
    /// `DAY_SPEND_KEPT_DAYS` from `day_spend` and from the column family (without the WAL,
    /// like all materialized state: a deletion lost in a crash is made again at the next
    /// recovery). Returns how many were removed.
    fn prune_day_spend(&self, day_spend: &mut FastMap<(CardNo, u8), (BusinessDate, i64)>) -> Result<usize, StoreError> {
        let Some(newest) = day_spend.values().map(|(date, _)| *date).max() else {
            return Ok(0);
        };
        let oldest_kept = crate::engine::rules::add_days(newest, -DAY_SPEND_KEPT_DAYS);
        let handle = self.handle(cf::DAY_SPEND);
        let mut stale: Vec<(CardNo, u8)> =
            day_spend.iter().filter(|(_, (date, _))| *date < oldest_kept).map(|(key, _)| *key).collect();
        stale.sort_unstable_by_key(|(card_no, category)| (card_no.0, *category));
        for chunk in stale.chunks(MATERIALIZE_CHUNK_RECORDS) {
            let mut batch = WriteBatch::default();
            for (card_no, category) in chunk {
                batch.delete_cf(handle, records::day_spend_key(*card_no, *category));
                day_spend.remove(&(*card_no, *category));
            }
            self.state.write_opt(batch, &self.unlogged_write)?;
        }
        if !stale.is_empty() {
            tracing::info!(pruned = stale.len(), oldest_kept, "day spend of earlier days deleted");
        }
        Ok(stale.len())
    }

    /// Loads every card into its partition's map. The card-number space of the imported
    /// ranges is cut into one slice per core, each read by its own thread; then each
    /// partition's map is filled by its own thread. Both halves are memory-bound, so this is
    /// what keeps a restart with ten million cards within seconds.
    fn load_cards(&self, ranges: &[CardRange], partitions: &mut [PartitionState]) -> Result<(), StoreError> {
        let count = partitions.len();
        let slices = slice_card_space(ranges, crate::server::default_partitions().max(1));
        let read_slice = |(low, high): (u64, u64)| -> Result<Vec<Vec<(CardNo, Card)>>, StoreError> {
            let mut routed: Vec<Vec<(CardNo, Card)>> = (0..count).map(|_| Vec::new()).collect();
            let mut read = rocksdb::ReadOptions::default();
            read.fill_cache(false);
            read.set_readahead_size(4 << 20);
            if let Some(high) = high.checked_add(1) {
                read.set_iterate_upper_bound(high.to_be_bytes());
            }
            let from = low.to_be_bytes();
            let mode = IteratorMode::From(&from, rocksdb::Direction::Forward);
            for item in self.state.iterator_cf_opt(self.handle(cf::CARDS), read, mode) {
                let (key, value) = item?;
                let (card_no, card) = records::decode_card(&key, &value)
                    .map_err(|problem| StoreError::Corrupt { cf: cf::CARDS, problem })?;
                routed[partition_of(card_no, count)].push((card_no, card));
            }
            Ok(routed)
        };
        let read: Vec<Result<Vec<Vec<(CardNo, Card)>>, StoreError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = slices.iter().map(|slice| scope.spawn(move || read_slice(*slice))).collect();
            handles.into_iter().map(|h| h.join().expect("a card loader does not panic")).collect()
        });
        let mut read = read.into_iter().collect::<Result<Vec<_>, _>>()?;
        std::thread::scope(|scope| {
            for (index, state) in partitions.iter_mut().enumerate() {
                let parts: Vec<Vec<(CardNo, Card)>> = read.iter_mut().map(|r| std::mem::take(&mut r[index])).collect();
                scope.spawn(move || {
                    state.cards.reserve(parts.iter().map(Vec::len).sum());
                    parts.into_iter().flatten().for_each(|(card_no, card)| {
                        state.cards.insert(card_no, card);
                    });
                });
            }
        });
        Ok(())
    }

    /// Every journal entry, in the order of the group commits that wrote them.
    pub fn journal(&self) -> impl Iterator<Item = Result<JournalEntry, StoreError>> + '_ {
        let corrupt = |problem| StoreError::Corrupt { cf: cf::LOG, problem };
        self.log.iterator_cf(self.log_handle(), IteratorMode::Start).flat_map(move |item| {
            let entries: Vec<Result<JournalEntry, StoreError>> = match item {
                Err(error) => vec![Err(error.into())],
                Ok((_, value)) => records::decode_batch(&value)
                    .filter_map(|record| match record {
                        Ok(LogRecord::Journal(entry)) => Some(Ok(entry)),
                        Ok(_) => None,
                        Err(problem) => Some(Err(corrupt(problem))),
                    })
                    .collect(),
            };
            entries
        })
    }
}

impl CommitLog for Store {
    fn commit(&self, batch_id: u64, batch: &[u8]) -> Result<(), StoreError> {
        let mut write = WriteBatch::default();
        write.put_cf(self.log_handle(), batch_id.to_be_bytes(), batch);
        // One key, synced to the WAL before this returns: the group commit.
        self.log.write_opt(write, &self.sync_write)?;
        Ok(())
    }

    fn trace(&self, key: TraceKey) -> Result<Option<Trace>, StoreError> {
        let corrupt = |problem| StoreError::Corrupt { cf: cf::TRACES, problem };
        let raw_key = records::trace_key(&key);
        match self.state.get_pinned_cf(self.handle(cf::TRACES), raw_key)? {
            Some(value) => Ok(Some(records::decode_trace(&raw_key, &value).map_err(corrupt)?.1)),
            None => Ok(None),
        }
    }

    fn txn(&self, txn_id: u64) -> Result<Option<Txn>, StoreError> {
        let corrupt = |problem| StoreError::Corrupt { cf: cf::TXNS, problem };
        let raw_key = txn_id.to_be_bytes();
        match self.state.get_pinned_cf(self.handle(cf::TXNS), raw_key)? {
            Some(value) => Ok(Some(records::decode_txn(&raw_key, &value).map_err(corrupt)?.1)),
            None => Ok(None),
        }
    }
}

/// Opens one RocksDB instance with the column families `names`.
fn open_instance(
    dir: &Path,
    env: &rocksdb::Env,
    cache: &rocksdb::Cache,
    memtable_budget_bytes: usize,
    names: &[&str],
) -> Result<DB, StoreError> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    // Every acknowledged write was synced to the WAL, so a crash can only leave a torn record
    // at its very end: replay up to the last intact record, nothing after a gap.
    opts.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
    // Partitions commit concurrently and RocksDB's write group merges their WAL writes.
    // (Pipelined writes would overlap one's memtable insert with the next's WAL write, but
    // RocksDB does not allow them with atomic flush, below, and a group commit's memtable
    // insert is a single key.)
    opts.set_max_background_jobs(2);
    opts.set_db_write_buffer_size(memtable_budget_bytes);
    // Materialized state is written without the WAL: it is derived from the log, which is.
    // Atomic flush persists all column families together, so the marks on disk always
    // describe exactly the state on disk, and recovery replays the log from them.
    opts.set_atomic_flush(true);
    opts.set_env(env);
    opts.set_compression_type(DBCompressionType::Lz4);
    // The log, the cards and day spend are never read while serving (the partitions hold
    // every card and the day's spend), so their memtables only take appends: a vector memtable makes an insert O(1) where the
    // default skip list costs O(log n) cache misses per key; it is sorted once, when flushed.
    // Transactions and trace records are read back when a request names an old one, so they
    // keep the skip list and get bloom filters for cheap misses. The vector memtable does not
    // support concurrent inserts.
    opts.set_allow_concurrent_memtable_write(false);
    let cfs = names.iter().map(|name| {
        let mut cf_opts = Options::default();
        cf_opts.set_compression_type(DBCompressionType::Lz4);
        // Room for memtables waiting to be flushed, so a flush in progress (a vector memtable
        // is sorted then) does not stop the writes.
        cf_opts.set_max_write_buffer_number(MEMTABLES_PER_COLUMN_FAMILY);
        // Index and filter blocks live in the block cache, within its budget, not beside it:
        // held outside, one per SST file, they grow with the data (the bloom filters of 60
        // million transactions and trace records alone take 150 MB). The level-0 ones, the
        // most used, stay pinned.
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_block_cache(cache);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        if [cf::LOG, cf::CARDS, cf::DAY_SPEND].contains(name) {
            cf_opts.set_memtable_factory(MemtableFactory::Vector);
        } else {
            table.set_bloom_filter(10.0, false);
        }
        cf_opts.set_block_based_table_factory(&table);
        ColumnFamilyDescriptor::new(*name, cf_opts)
    });
    Ok(DB::open_cf_descriptors(&opts, dir, cfs)?)
}

/// Cuts the card numbers of `ranges` into at most `slices` inclusive intervals holding about
/// as many numbers each (cards exist only inside imported ranges).
fn slice_card_space(ranges: &[CardRange], slices: usize) -> Vec<(u64, u64)> {
    let mut sorted: Vec<(u64, u64)> = ranges.iter().map(|r| (r.first.0, r.last.0)).collect();
    sorted.sort_unstable();
    let total: u64 = sorted.iter().map(|(first, last)| last - first + 1).sum();
    if total == 0 {
        return Vec::new();
    }
    let per_slice = total.div_ceil(slices as u64);
    let mut out = Vec::new();
    let mut start: Option<u64> = None;
    let mut filled = 0u64;
    for (first, last) in sorted {
        let mut at = first;
        loop {
            let low = *start.get_or_insert(at);
            let room = per_slice - filled;
            let available = last - at + 1;
            if available < room {
                filled += available;
                break;
            }
            let end = at + room - 1;
            out.push((low, end));
            start = None;
            filled = 0;
            if end == last {
                break;
            }
            at = end + 1;
        }
    }
    if let Some(low) = start {
        out.push((low, ranges.iter().map(|r| r.last.0).max().unwrap_or(low)));
    }
    out
}

fn encode_terminals(terminals: &HashMap<u32, u32>) -> Vec<u8> {
    let mut sorted: Vec<_> = terminals.iter().collect();
    sorted.sort_unstable();
    let mut out = Vec::with_capacity(1 + 8 * sorted.len());
    out.push(1u8);
    for (terminal, stan) in sorted {
        out.extend_from_slice(&terminal.to_be_bytes());
        out.extend_from_slice(&stan.to_be_bytes());
    }
    out
}

fn decode_terminals(bytes: &[u8]) -> Result<HashMap<u32, u32>, RecordError> {
    match bytes.split_first() {
        Some((1, body)) if body.len() % 8 == 0 => Ok(body
            .chunks_exact(8)
            .map(|c| {
                (u32::from_be_bytes(c[..4].try_into().expect("4")), u32::from_be_bytes(c[4..].try_into().expect("4")))
            })
            .collect()),
        Some((1, body)) => Err(RecordError::Trailing(body.len() % 8)),
        Some((v, _)) => Err(RecordError::Version(*v)),
        None => Err(RecordError::Short(0)),
    }
}

#[cfg(test)]
mod tests {
    use protocol::{Header, LocalTime, PaymentMethod, Request};

    use super::records::{decode_batch, encode_batch};
    use super::*;

    /// The group commits a reader takes from the log: per partition, its own ids (≡ p mod N,
    /// rising by N) after the last one materialized, up to the last one committed. A busy
    /// partition's ids run far ahead of an idle one's; neither hides the other's.
    #[test]
    fn a_log_tail_names_each_partitions_unmaterialized_commits() {
        let tail = LogTail { materialized: vec![40, 9, 1_002], committed: vec![46, 9, 1_011] };
        let ids: Vec<u64> = tail.batch_ids().collect();
        assert_eq!(ids, vec![42, 45, 1_004, 1_007, 1_010]);
        assert!(ids.iter().all(|id| ids.iter().filter(|i| *i == id).count() == 1));
        let nothing = LogTail { materialized: vec![7, 8], committed: vec![0, 8] };
        assert_eq!(nothing.batch_ids().count(), 0);
    }
    use crate::engine::{Command, Context, Effects, Engine, IdSource};
    use protocol::Verification;

    const FIRST: u64 = 6200880000000000;

    fn apply(engine: &mut Engine, stan: u32, request: Request) -> Vec<u8> {
        let ctx = Context { now_ms: 0, business_date: 20261122, batch_id: 1, catalog_version: 0 };
        let header = Header { flags: 0, terminal_id: 5, stan, local_time: LocalTime(20261122093005) };
        let mut fx = Effects::default();
        engine.apply(ctx, &Command::new(header, 21, request), &mut fx);
        let mut encoded = Vec::new();
        encode_batch(&fx, &mut encoded);
        encoded
    }

    #[test]
    fn card_space_slices_cover_every_range_once() {
        let range = |first: u64, last: u64| CardRange {
            first: CardNo(first),
            last: CardNo(last),
            product: 1,
            store_id: 1,
            terminal_id: 0,
            stan: 0,
        };
        let ranges = [range(100_000_000, 100_000_009), range(200_000_000, 200_000_029)];
        let slices = slice_card_space(&ranges, 2);
        assert_eq!(slices, vec![(100_000_000, 200_000_009), (200_000_010, 200_000_029)]);
        assert_eq!(slice_card_space(&ranges, 1), vec![(100_000_000, 200_000_029)]);
        assert_eq!(slice_card_space(&[], 2), vec![]);
        let many = slice_card_space(&ranges, 7);
        assert_eq!(many.first().unwrap().0, 100_000_000);
        assert_eq!(many.last().unwrap().1, 200_000_029);
        assert!(many.windows(2).all(|w| w[0].1 < w[1].0));
    }

    /// Recovery = materialized state + the log records the marks do not cover, whatever the
    /// partition count was.
    #[test]
    fn recovery_replays_exactly_what_the_marks_do_not_cover() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let range = CardRange {
            first: CardNo(FIRST),
            last: CardNo(FIRST + 9),
            product: 1,
            store_id: 21,
            terminal_id: 5,
            stan: 1,
        };
        store.put_range(&range).unwrap();
        let mut engine = Engine::new(IdSource::new(0, 2, 0));
        engine.add_range(range);
        let card = CardNo(FIRST + 3);
        let sell =
            apply(&mut engine, 2, Request::SellCard { card, amount_minor: 10_000, method: PaymentMethod::Cash as u8 });
        let sale = |amount_minor| Request::Sale {
            card,
            amount_minor,
            category: 1,
            flags: 0,
            verification: Verification::NONE,
        };
        let sale1 = apply(&mut engine, 3, sale(1_000));
        let sale2 = apply(&mut engine, 4, sale(2_000));
        // Partition 0 of 2 logs ids 2, 4, 6.
        for (id, batch) in [(2, &sell), (4, &sale1), (6, &sale2)] {
            store.commit(id, batch).unwrap();
        }
        // Materialized through id 4 only; the sale in id 6 must come from the log.
        let mut pending = Pending::default();
        let mut marks = Marks { max_txn_id: 0, marks: vec![4, 1] };
        for (id, batch) in [(2, &sell), (4, &sale1)] {
            decode_batch(batch).for_each(|r| pending.apply(r.unwrap(), id, &mut marks));
        }
        store.materialize(&pending, &marks).unwrap();
        drop(store);

        let store = Store::open(dir.path()).unwrap();
        let recovered = store.recover(3).unwrap();
        let owner = partition_of(card, 3);
        assert_eq!(recovered.partitions[owner].cards[&card].cash_minor, 7_000);
        assert_eq!(recovered.replayed_records, decode_batch(&sale2).count());
        assert_eq!(recovered.max_batch_id, 6);
        // Txn ids of partition 0 of 2: 2 (card sale), 4, 6 (the sales).
        assert_eq!(recovered.max_txn_id, 6);
        assert_eq!(recovered.marks.marks, vec![6, 6, 6]);
        let sales = store.journal().map(Result::unwrap).filter(|e| e.kind == crate::engine::TxnKind::Sale).count();
        assert_eq!(sales, 2);
        drop(store);

        // Nothing left to replay the second time.
        let store = Store::open(dir.path()).unwrap();
        let again = store.recover(3).unwrap();
        assert_eq!(again.replayed_records, 0);
        assert_eq!(again.partitions[owner].cards[&card].cash_minor, 7_000);
    }

    /// The day spend of the log survives a reopen, whether materialized or replayed from the
    /// log tail (the latest wins), routed to its card's partition; entries older than the day
    /// before the newest date are deleted at recovery.
    #[test]
    fn day_spend_survives_a_reopen_and_old_days_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (a, b, c) = (CardNo(FIRST + 1), CardNo(FIRST + 2), CardNo(FIRST + 3));
        let commit = |id: u64, day_spend: Vec<((CardNo, u8), (BusinessDate, i64))>| {
            let mut encoded = Vec::new();
            encode_batch(&Effects { day_spend, ..Effects::default() }, &mut encoded);
            store.commit(id, &encoded).unwrap();
            encoded
        };
        let first = commit(
            2,
            vec![
                ((a, 4), (20261122, 500)),
                ((b, 4), (20261115, 900)), // a week old: pruned
                ((c, 1), (20261121, 70)),  // the day before the newest: kept
            ],
        );
        commit(4, vec![((a, 4), (20261122, 800)), ((c, 4), (20261122, 50)), ((a, 4), (20261122, 850))]);
        // Only the first is materialized; the second is in the log tail.
        let mut pending = Pending::default();
        let mut marks = Marks { max_txn_id: 0, marks: vec![2, 1] };
        decode_batch(&first).for_each(|r| pending.apply(r.unwrap(), 2, &mut marks));
        store.materialize(&pending, &marks).unwrap();
        drop(store);

        let expected = |partitions: usize| -> Vec<Vec<((CardNo, u8), (BusinessDate, i64))>> {
            let mut out = vec![Vec::new(); partitions];
            for entry in [((a, 4), (20261122, 850)), ((c, 1), (20261121, 70)), ((c, 4), (20261122, 50))] {
                out[partition_of(entry.0 .0, partitions)].push(entry);
            }
            out
        };
        let day_spend = |recovered: &Recovered| -> Vec<Vec<_>> {
            recovered.partitions.iter().map(|p| p.day_spend.clone()).collect()
        };
        let store = Store::open(dir.path()).unwrap();
        let recovered = store.recover(3).unwrap();
        assert_eq!(recovered.replayed_records, 3);
        assert_eq!(day_spend(&recovered), expected(3));
        let on_disk = |store: &Store| -> Vec<((CardNo, u8), (BusinessDate, i64))> {
            let cf = store.handle(cf::DAY_SPEND);
            let items = store.state.iterator_cf(cf, IteratorMode::Start).map(Result::unwrap);
            items.map(|(k, v)| records::decode_day_spend(&k, &v).unwrap()).collect()
        };
        assert_eq!(
            on_disk(&store),
            vec![((a, 4), (20261122, 850)), ((c, 1), (20261121, 70)), ((c, 4), (20261122, 50))]
        );
        drop(store);

        // From the column family alone now, with another partition count.
        let store = Store::open(dir.path()).unwrap();
        let again = store.recover(2).unwrap();
        assert_eq!(again.replayed_records, 0);
        assert_eq!(day_spend(&again), expected(2));
    }

    /// K5: point lots reach the state through the log: those in the tail are materialized at
    /// recovery, those materialized before are read back, and emptied ones are deleted.
    #[test]
    fn point_lots_are_recovered_from_the_state_and_the_log_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (CardNo(FIRST + 1), CardNo(FIRST + 2));
        let batch = |lots: Vec<(CardNo, crate::engine::PointLots)>| {
            let fx = crate::engine::Effects { point_lots: lots, ..Default::default() };
            let mut out = Vec::new();
            records::encode_batch(&fx, &mut out);
            out
        };
        let store = Store::open(dir.path()).unwrap();
        let first = batch(vec![(a, vec![(202611, 190)]), (b, vec![(202612, 7)])]);
        store.commit(2, &first).unwrap();
        let mut pending = Pending::default();
        let mut marks = Marks { max_txn_id: 0, marks: vec![2, 1] };
        decode_batch(&first).for_each(|r| pending.apply(r.unwrap(), 2, &mut marks));
        store.materialize(&pending, &marks).unwrap();
        // In the tail only: a's lots grow, b's are spent.
        store.commit(4, &batch(vec![(a, vec![(202611, 190), (202702, 95)]), (b, vec![])])).unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let recovered = store.recover(2).unwrap();
        let mut lots: Vec<_> = recovered.partitions.iter().flat_map(|p| p.point_lots.clone()).collect();
        lots.sort_by_key(|(card, _)| card.0);
        assert_eq!(lots, vec![(a, vec![(202611, 190), (202702, 95)])]);
    }

    /// A state instance written before the `day_spend` column family existed opens: the
    /// missing column family is created, and the rest is read as before.
    #[test]
    fn a_state_without_day_spend_opens() {
        let dir = tempfile::tempdir().unwrap();
        let env = rocksdb::Env::new().unwrap();
        let cache = rocksdb::Cache::new_lru_cache(1 << 20);
        let before: Vec<&str> = cf::STATE.iter().copied().filter(|name| *name != cf::DAY_SPEND).collect();
        let range = CardRange {
            first: CardNo(FIRST),
            last: CardNo(FIRST + 9),
            product: 1,
            store_id: 21,
            terminal_id: 5,
            stan: 1,
        };
        {
            let state = open_instance(&dir.path().join(STATE_DIR), &env, &cache, 1 << 20, &before).unwrap();
            let mut buf = [0u8; MAX_RECORD_BYTES];
            let n = records::encode_range(&range, &mut buf);
            state.put_cf(state.cf_handle(cf::RANGES).unwrap(), range.first.0.to_be_bytes(), &buf[..n]).unwrap();
            let _log = open_instance(&dir.path().join(LOG_DIR), &env, &cache, 1 << 20, &[cf::LOG]).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let recovered = store.recover(2).unwrap();
        assert_eq!(recovered.ranges, vec![range]);
        assert!(recovered.partitions.iter().all(|p| p.day_spend.is_empty()));
        let families = DB::list_cf(&Options::default(), dir.path().join(STATE_DIR)).unwrap();
        assert!(families.iter().any(|name| name == cf::DAY_SPEND), "{families:?}");
    }

    /// A directory that holds one RocksDB database directly (the layout before the split) is
    /// refused with its own error, and nothing is created in it.
    #[test]
    fn the_unsplit_layout_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("CURRENT"), "MANIFEST-000005\n").unwrap();
        let error = Store::open(dir.path()).err().expect("refused");
        assert!(matches!(error, StoreError::UnsplitLayout(_)), "{error}");
        assert!(error.to_string().contains("log/ and state/"), "{error}");
        assert!(!dir.path().join(LOG_DIR).exists() && !dir.path().join(STATE_DIR).exists());
    }
}
