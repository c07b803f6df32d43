//! `cardswitch journal --data DIR`: every journal entry of a stopped switch's data directory,
//! one JSON object per line, in the order of the group commits that wrote them.
//!
//! Tools that check the switch from outside (they speak the protocol and never link RocksDB)
//! read the journal through this. Card numbers are JSON strings, because they can exceed the
//! 2^53 that a JSON reader holding numbers as doubles keeps exact; every other field is an
//! integer, and `kind` is the transaction kind's name. Readers skip fields they do not know, so
//! fields are added, never renamed or removed (`gross_minor` and `points_delta` came with
//! discounts and points; entries written before them read as the amount and 0).

use std::io::{BufWriter, Write};
use std::path::Path;

use crate::engine::JournalEntry;
use crate::store::{Store, LOG_DIR};

/// Prints the journal of the data directory `data` to stdout. The switch must be stopped:
/// RocksDB locks a data directory while it is open.
pub fn print_journal(data: &Path) -> Result<(), String> {
    let stdout = std::io::stdout();
    write_journal(data, BufWriter::with_capacity(1 << 16, stdout.lock())).map(|_| ())
}

/// Writes the journal of `data` to `out`, one line per entry; returns how many were written.
pub fn write_journal(data: &Path, mut out: impl Write) -> Result<u64, String> {
    // Opening creates a missing store; a mistyped path must not print an empty journal.
    if !data.join(LOG_DIR).is_dir() {
        return Err(format!("{} is not a data directory of the switch (it has no {LOG_DIR}/)", data.display()));
    }
    let store = Store::open(data)
        .map_err(|e| format!("cannot open the store in {}: {e} (the switch must be stopped first)", data.display()))?;
    let write_failed = |e: std::io::Error| format!("cannot write the journal: {e}");
    let mut written = 0u64;
    for entry in store.journal() {
        let entry = entry.map_err(|e| format!("journal entry {written}: {e}"))?;
        writeln!(out, "{}", entry_json(&entry)).map_err(write_failed)?;
        written += 1;
    }
    out.flush().map_err(write_failed)?;
    Ok(written)
}

/// One journal entry as a JSON object on one line.
pub fn entry_json(entry: &JournalEntry) -> String {
    format!(
        "{{\"txn_id\":{},\"kind\":\"{}\",\"card\":\"{}\",\"product\":{},\"business_date\":{},\"time_ms\":{},\
         \"local_time\":{},\"terminal_id\":{},\"store_id\":{},\"stan\":{},\"operator_id\":{},\"amount_minor\":{},\
         \"cash_delta_minor\":{},\"bonus_delta_minor\":{},\"held_delta_minor\":{},\"ref_txn_id\":{},\"method\":{},\
         \"category\":{},\"sale_flags\":{},\"gross_minor\":{},\"points_delta\":{},\"catalog_version\":{},\
         \"ticket\":{},\"approver_id\":{}}}",
        entry.txn_id,
        entry.kind.name(),
        entry.card.0,
        entry.product,
        entry.business_date,
        entry.time_ms,
        entry.local_time,
        entry.terminal_id,
        entry.store_id,
        entry.stan,
        entry.operator_id,
        entry.amount_minor,
        entry.cash_delta_minor,
        entry.bonus_delta_minor,
        entry.held_delta_minor,
        entry.ref_txn_id,
        entry.method,
        entry.category,
        entry.sale_flags,
        entry.gross_minor,
        entry.points_delta,
        entry.catalog_version,
        entry.ticket,
        entry.approver_id,
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::engine::TxnKind;
    use protocol::CardNo;

    /// A capture journal entry with every field set: shared by the tests of its encodings.
    pub(crate) fn capture() -> JournalEntry {
        JournalEntry {
            txn_id: 418_301,
            kind: TxnKind::Capture,
            card: CardNo(6_200_880_000_000_017),
            product: 1,
            business_date: 20261122,
            time_ms: 1_795_311_005_123,
            local_time: 20261122093005,
            terminal_id: 1001,
            store_id: 21,
            stan: 123,
            operator_id: 0,
            amount_minor: 12_345,
            cash_delta_minor: -9_345,
            bonus_delta_minor: -3_000,
            held_delta_minor: -13_000,
            ref_txn_id: 418_200,
            method: 0,
            category: 3,
            sale_flags: 0,
            gross_minor: 15_000,
            points_delta: 123,
            catalog_version: 2,
            // Not what a capture carries: set so that the encodings are seen to keep them.
            ticket: 20_261_122_001,
            approver_id: 7,
        }
    }

    #[test]
    fn an_entry_is_one_json_object_with_the_card_as_a_string() {
        assert_eq!(
            entry_json(&capture()),
            "{\"txn_id\":418301,\"kind\":\"capture\",\"card\":\"6200880000000017\",\"product\":1,\
             \"business_date\":20261122,\"time_ms\":1795311005123,\"local_time\":20261122093005,\
             \"terminal_id\":1001,\"store_id\":21,\"stan\":123,\"operator_id\":0,\"amount_minor\":12345,\
             \"cash_delta_minor\":-9345,\"bonus_delta_minor\":-3000,\"held_delta_minor\":-13000,\
             \"ref_txn_id\":418200,\"method\":0,\"category\":3,\"sale_flags\":0,\"gross_minor\":15000,\
             \"points_delta\":123,\"catalog_version\":2,\"ticket\":20261122001,\"approver_id\":7}"
        );
    }

    #[test]
    fn every_committed_entry_is_written_in_commit_order() {
        use crate::engine::Effects;
        use crate::store::records::encode_batch;
        use crate::store::CommitLog;

        let dir = tempfile::tempdir().unwrap();
        let first = capture();
        let second = JournalEntry { txn_id: 418_302, kind: TxnKind::Sale, ref_txn_id: 0, ..capture() };
        {
            let store = Store::open(dir.path()).unwrap();
            for (batch_id, entry) in [(7u64, first), (9, second)] {
                let effects = Effects { journal: vec![entry], ..Effects::default() };
                let mut encoded = Vec::new();
                encode_batch(&effects, &mut encoded);
                store.commit(batch_id, &encoded).unwrap();
            }
            // While the store is open (a running switch), the journal cannot be read.
            let error = write_journal(dir.path(), Vec::new()).unwrap_err();
            assert!(error.contains("must be stopped"), "{error}");
        }
        let mut out = Vec::new();
        assert_eq!(write_journal(dir.path(), &mut out), Ok(2));
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines, [entry_json(&first), entry_json(&second)]);
    }

    #[test]
    fn a_directory_without_a_log_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nothing-here");
        let error = print_journal(&missing).unwrap_err();
        assert!(error.contains("not a data directory"), "{error}");
        assert!(!missing.exists(), "nothing was created");
    }
}
