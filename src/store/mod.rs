//! Durable state in RocksDB. Layout, group commit and recovery are described in
//! `docs/design.md`; the byte encodings are in [`records`].

pub mod records;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rocksdb::{
    ColumnFamilyDescriptor, DBCompressionType, DBRecoveryMode, IteratorMode, MemtableFactory, Options, WriteBatch, WriteOptions, DB,
};

use crate::engine::{partition_of, Card, CardRange, Effects, Trace, TraceKey, Txn};
use protocol::CardNo;
use records::{RecordError, MAX_RECORD_BYTES};

/// Column families, declared in one place with their key encodings.
pub mod cf {
    /// card number (u64 BE) → card record
    pub const CARDS: &str = "cards";
    /// txn id (u64 BE) → journal entry; append-only
    pub const JOURNAL: &str = "journal";
    /// txn id (u64 BE) → referenceable transaction (status, refunds)
    pub const TXNS: &str = "txns";
    /// terminal id (u32 BE) ‖ stan (u32 BE) → trace record (T7, T8)
    pub const TRACES: &str = "traces";
    /// first card number (u64 BE) → range record (L1)
    pub const RANGES: &str = "ranges";
    pub const ALL: [&str; 5] = [CARDS, JOURNAL, TXNS, TRACES, RANGES];
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("corrupt record in column family {cf}: {problem}")]
    Corrupt { cf: &'static str, problem: RecordError },
    #[error("injected storage fault: {0}")]
    Injected(String),
}

/// Where a partition's group commits go: RocksDB in the switch, something faulty in tests.
/// Once a commit fails the caller stops using it (fail-stop).
pub trait CommitLog: Send + Sync + 'static {
    /// Writes all of `effects` atomically and durably; `Ok` means they survive a crash.
    fn commit(&self, effects: &Effects) -> Result<(), StoreError>;
}

/// Everything recovered at start-up, split by partition.
#[derive(Debug, Default)]
pub struct Recovered {
    pub ranges: Vec<CardRange>,
    pub partitions: Vec<PartitionState>,
    pub max_txn_id: u64,
}

#[derive(Debug, Default)]
pub struct PartitionState {
    pub cards: HashMap<CardNo, Card>,
    pub txns: HashMap<u64, Txn>,
    pub traces: HashMap<TraceKey, Trace>,
}

pub struct Store {
    db: Arc<DB>,
    sync_write: WriteOptions,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // Every acknowledged batch was synced to the WAL, so a crash can only leave a torn
        // record at its very end: replay up to the last intact record, nothing after a gap.
        opts.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
        // Partitions commit concurrently; pipelining lets one's memtable insert overlap
        // another's WAL write.
        opts.set_enable_pipelined_write(true);
        opts.set_max_background_jobs(2);
        opts.set_compression_type(DBCompressionType::Lz4);
        // The switch never reads RocksDB while serving (all state is in the partitions'
        // memory), so memtables only take appends: a vector memtable makes an insert O(1)
        // where the default skip list costs O(log n) cache misses per key; it is sorted once,
        // when flushed. The vector memtable does not support concurrent inserts.
        opts.set_allow_concurrent_memtable_write(false);
        let cfs = cf::ALL.iter().map(|name| {
            let mut cf_opts = Options::default();
            cf_opts.set_compression_type(DBCompressionType::Lz4);
            cf_opts.set_memtable_factory(MemtableFactory::Vector);
            ColumnFamilyDescriptor::new(*name, cf_opts)
        });
        let db = DB::open_cf_descriptors(&opts, dir, cfs)?;
        let mut sync_write = WriteOptions::default();
        sync_write.set_sync(true);
        Ok(Store { db: Arc::new(db), sync_write })
    }

    fn handle(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("column families are created at open")
    }

    /// Records an imported range durably.
    pub fn put_range(&self, range: &CardRange) -> Result<(), StoreError> {
        let mut buf = [0u8; MAX_RECORD_BYTES];
        let n = records::encode_range(range, &mut buf);
        let mut batch = WriteBatch::default();
        batch.put_cf(self.handle(cf::RANGES), range.first.0.to_be_bytes(), &buf[..n]);
        self.db.write_opt(batch, &self.sync_write)?;
        Ok(())
    }

    /// Reads everything back, routing each card's records to the partition that owns it.
    pub fn recover(&self, partitions: usize) -> Result<Recovered, StoreError> {
        let mut out = Recovered {
            partitions: (0..partitions).map(|_| PartitionState::default()).collect(),
            ..Recovered::default()
        };
        let corrupt = |cf| move |problem| StoreError::Corrupt { cf, problem };
        for item in self.db.iterator_cf(self.handle(cf::RANGES), IteratorMode::Start) {
            let (key, value) = item?;
            out.ranges.push(records::decode_range(&key, &value).map_err(corrupt(cf::RANGES))?);
        }
        for item in self.db.iterator_cf(self.handle(cf::CARDS), IteratorMode::Start) {
            let (key, value) = item?;
            let (card_no, card) = records::decode_card(&key, &value).map_err(corrupt(cf::CARDS))?;
            out.partitions[partition_of(card_no, partitions)].cards.insert(card_no, card);
        }
        for item in self.db.iterator_cf(self.handle(cf::TXNS), IteratorMode::Start) {
            let (key, value) = item?;
            let (txn_id, txn) = records::decode_txn(&key, &value).map_err(corrupt(cf::TXNS))?;
            out.partitions[partition_of(txn.card, partitions)].txns.insert(txn_id, txn);
        }
        for item in self.db.iterator_cf(self.handle(cf::TRACES), IteratorMode::Start) {
            let (key, value) = item?;
            let (trace_key, trace) = records::decode_trace(&key, &value).map_err(corrupt(cf::TRACES))?;
            out.partitions[partition_of(trace.card(), partitions)].traces.insert(trace_key, trace);
        }
        if let Some(item) = self.db.iterator_cf(self.handle(cf::JOURNAL), IteratorMode::End).next() {
            let (key, _) = item?;
            out.max_txn_id = records::decode_u64_key(&key).map_err(corrupt(cf::JOURNAL))?;
        }
        Ok(out)
    }

    /// Every journal entry in txn-id order (for verification tools and tests).
    pub fn journal(&self) -> impl Iterator<Item = Result<crate::engine::JournalEntry, StoreError>> + '_ {
        self.db.iterator_cf(self.handle(cf::JOURNAL), IteratorMode::Start).map(|item| {
            let (key, value) = item?;
            records::decode_journal(&key, &value).map_err(|problem| StoreError::Corrupt { cf: cf::JOURNAL, problem })
        })
    }
}

impl CommitLog for Store {
    fn commit(&self, fx: &Effects) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        let mut buf = [0u8; MAX_RECORD_BYTES];
        let cards = self.handle(cf::CARDS);
        for (card_no, card) in &fx.cards {
            match card {
                Some(card) => {
                    let n = records::encode_card(card, &mut buf);
                    batch.put_cf(cards, card_no.0.to_be_bytes(), &buf[..n]);
                }
                None => batch.delete_cf(cards, card_no.0.to_be_bytes()),
            }
        }
        let journal = self.handle(cf::JOURNAL);
        for entry in &fx.journal {
            let n = records::encode_journal(entry, &mut buf);
            batch.put_cf(journal, entry.txn_id.to_be_bytes(), &buf[..n]);
        }
        let txns = self.handle(cf::TXNS);
        for (txn_id, txn) in &fx.txns {
            let n = records::encode_txn(txn, &mut buf);
            batch.put_cf(txns, txn_id.to_be_bytes(), &buf[..n]);
        }
        let traces = self.handle(cf::TRACES);
        for (key, trace) in &fx.traces {
            let n = records::encode_trace(trace, &mut buf);
            batch.put_cf(traces, records::trace_key(key), &buf[..n]);
        }
        // One atomic batch, synced to the WAL before this returns: the group commit.
        self.db.write_opt(batch, &self.sync_write)?;
        Ok(())
    }
}
