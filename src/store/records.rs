//! Byte encodings of stored records: fixed width, big-endian, a format version first, so a
//! record is read back without any schema and a future format is recognised.

use protocol::{CardNo, CardReply, CardState, MsgType, ResponseCode};

use crate::engine::{Card, CardRange, Effects, JournalEntry, Trace, TraceKey, Txn, TxnKind, TxnStatus};

/// The largest encoded record (a journal entry is 100 bytes).
pub const MAX_RECORD_BYTES: usize = 128;
const FORMAT_V1: u8 = 1;
/// Journal entries with the catalog version (`JournalEntry::catalog_version`); every other
/// record is still written as version 1.
const FORMAT_V2: u8 = 2;
const TRACE_ANSWERED: u8 = 1;
const TRACE_REVERSED_UNSEEN: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record is {0} bytes, shorter than its format needs")]
    Short(usize),
    #[error("record has {0} bytes after its end")]
    Trailing(usize),
    #[error("key has {0} bytes, expected {1}")]
    KeyLength(usize, usize),
    #[error("format version {0} is unknown")]
    Version(u8),
    #[error("field {field} has the invalid value {value}")]
    Field { field: &'static str, value: u64 },
}

struct W<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl<'a> W<'a> {
    fn new(buf: &'a mut [u8]) -> Self {
        W::versioned(buf, FORMAT_V1)
    }
    fn versioned(buf: &'a mut [u8], version: u8) -> Self {
        let mut w = W { buf, at: 0 };
        w.put(&[version]);
        w
    }
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.put(&[v]);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.put(&v.to_be_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.put(&v.to_be_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.put(&v.to_be_bytes());
        self
    }
    fn i64(&mut self, v: i64) -> &mut Self {
        self.put(&v.to_be_bytes());
        self
    }
}

struct R<'a> {
    bytes: &'a [u8],
    len: usize,
    /// The record's format version.
    version: u8,
}

impl<'a> R<'a> {
    fn new(bytes: &'a [u8]) -> Result<Self, RecordError> {
        let mut r = R { bytes, len: bytes.len(), version: FORMAT_V1 };
        match r.u8()? {
            v @ (FORMAT_V1 | FORMAT_V2) => {
                r.version = v;
                Ok(r)
            }
            v => Err(RecordError::Version(v)),
        }
    }
    fn take<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        if self.bytes.len() < N {
            return Err(RecordError::Short(self.len));
        }
        let (head, rest) = self.bytes.split_at(N);
        self.bytes = rest;
        Ok(head.try_into().expect("N bytes"))
    }
    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, RecordError> {
        Ok(u16::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, RecordError> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, RecordError> {
        Ok(u64::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(self.take()?))
    }
    fn card(&mut self) -> Result<CardNo, RecordError> {
        Ok(CardNo(self.u64()?))
    }
    fn state(&mut self) -> Result<CardState, RecordError> {
        let v = self.u8()?;
        CardState::from_u8(v).ok_or(RecordError::Field { field: "state", value: v.into() })
    }
    fn kind(&mut self) -> Result<TxnKind, RecordError> {
        let v = self.u8()?;
        TxnKind::from_u8(v).ok_or(RecordError::Field { field: "kind", value: v.into() })
    }
    fn finish<T>(self, value: T) -> Result<T, RecordError> {
        if self.bytes.is_empty() {
            Ok(value)
        } else {
            Err(RecordError::Trailing(self.bytes.len()))
        }
    }
}

pub fn decode_u64_key(key: &[u8]) -> Result<u64, RecordError> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| RecordError::KeyLength(key.len(), 8))?;
    Ok(u64::from_be_bytes(bytes))
}

pub fn trace_key(key: &TraceKey) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&key.terminal_id.to_be_bytes());
    out[4..].copy_from_slice(&key.stan.to_be_bytes());
    out
}

pub fn encode_card(card: &Card, buf: &mut [u8]) -> usize {
    let mut w = W::new(buf);
    w.u8(card.state as u8)
        .u16(card.product)
        .u32(card.store_id)
        .i64(card.cash_minor)
        .i64(card.bonus_minor)
        .i64(card.held_minor)
        .u32(card.first_load_date)
        .u32(card.last_activity_date);
    w.at
}

pub fn decode_card(key: &[u8], value: &[u8]) -> Result<(CardNo, Card), RecordError> {
    let card_no = CardNo(decode_u64_key(key)?);
    let mut r = R::new(value)?;
    let card = Card {
        state: r.state()?,
        product: r.u16()?,
        store_id: r.u32()?,
        cash_minor: r.i64()?,
        bonus_minor: r.i64()?,
        held_minor: r.i64()?,
        first_load_date: r.u32()?,
        last_activity_date: r.u32()?,
    };
    r.finish((card_no, card))
}

pub fn encode_journal(e: &JournalEntry, buf: &mut [u8]) -> usize {
    let mut w = W::versioned(buf, FORMAT_V2);
    w.u8(e.kind as u8)
        .u64(e.card.0)
        .u16(e.product)
        .u32(e.business_date)
        .i64(e.time_ms)
        .u64(e.local_time)
        .u32(e.terminal_id)
        .u32(e.store_id)
        .u32(e.stan)
        .u32(e.operator_id)
        .i64(e.amount_minor)
        .i64(e.cash_delta_minor)
        .i64(e.bonus_delta_minor)
        .i64(e.held_delta_minor)
        .u64(e.ref_txn_id)
        .u8(e.method)
        .u8(e.category)
        .u8(e.sale_flags)
        .u32(e.catalog_version);
    w.at
}

pub fn decode_journal(key: &[u8], value: &[u8]) -> Result<JournalEntry, RecordError> {
    let txn_id = decode_u64_key(key)?;
    let mut r = R::new(value)?;
    let entry = JournalEntry {
        txn_id,
        kind: r.kind()?,
        card: r.card()?,
        product: r.u16()?,
        business_date: r.u32()?,
        time_ms: r.i64()?,
        local_time: r.u64()?,
        terminal_id: r.u32()?,
        store_id: r.u32()?,
        stan: r.u32()?,
        operator_id: r.u32()?,
        amount_minor: r.i64()?,
        cash_delta_minor: r.i64()?,
        bonus_delta_minor: r.i64()?,
        held_delta_minor: r.i64()?,
        ref_txn_id: r.u64()?,
        method: r.u8()?,
        category: r.u8()?,
        sale_flags: r.u8()?,
        // Entries written before catalogs existed carry none.
        catalog_version: if r.version >= FORMAT_V2 { r.u32()? } else { 0 },
    };
    r.finish(entry)
}

pub fn encode_txn(t: &Txn, buf: &mut [u8]) -> usize {
    let mut w = W::new(buf);
    w.u8(t.kind as u8)
        .u8(t.status as u8)
        .u64(t.card.0)
        .u32(t.business_date)
        .u32(t.terminal_id)
        .u32(t.stan)
        .i64(t.amount_minor)
        .i64(t.cash_delta_minor)
        .i64(t.bonus_delta_minor)
        .i64(t.held_delta_minor)
        .u64(t.ref_txn_id)
        .i64(t.refunded_minor)
        .i64(t.refunded_bonus_minor);
    w.at
}

pub fn decode_txn(key: &[u8], value: &[u8]) -> Result<(u64, Txn), RecordError> {
    let txn_id = decode_u64_key(key)?;
    let mut r = R::new(value)?;
    let kind = r.kind()?;
    let raw_status = r.u8()?;
    let status =
        TxnStatus::from_u8(raw_status).ok_or(RecordError::Field { field: "status", value: raw_status.into() })?;
    let txn = Txn {
        kind,
        status,
        card: r.card()?,
        business_date: r.u32()?,
        terminal_id: r.u32()?,
        stan: r.u32()?,
        amount_minor: r.i64()?,
        cash_delta_minor: r.i64()?,
        bonus_delta_minor: r.i64()?,
        held_delta_minor: r.i64()?,
        ref_txn_id: r.u64()?,
        refunded_minor: r.i64()?,
        refunded_bonus_minor: r.i64()?,
    };
    r.finish((txn_id, txn))
}

pub fn encode_trace(trace: &Trace, buf: &mut [u8]) -> usize {
    let mut w = W::new(buf);
    match trace {
        Trace::Answered { digest, msg_type, card, reply } => {
            w.u8(TRACE_ANSWERED)
                .u64(*digest)
                .u8(*msg_type as u8)
                .u64(card.0)
                .u8(reply.code as u8)
                .u8(reply.state as u8)
                .u64(reply.txn_id)
                .i64(reply.amount_minor)
                .i64(reply.cash_minor)
                .i64(reply.bonus_minor)
                .i64(reply.held_minor);
        }
        Trace::ReversedUnseen { card, amount_minor } => {
            w.u8(TRACE_REVERSED_UNSEEN).u64(card.0).i64(*amount_minor);
        }
    }
    w.at
}

pub fn decode_trace(key: &[u8], value: &[u8]) -> Result<(TraceKey, Trace), RecordError> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| RecordError::KeyLength(key.len(), 8))?;
    let trace_key = TraceKey {
        terminal_id: u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes")),
        stan: u32::from_be_bytes(bytes[4..].try_into().expect("4 bytes")),
    };
    let mut r = R::new(value)?;
    let trace = match r.u8()? {
        TRACE_ANSWERED => {
            let digest = r.u64()?;
            let raw_type = r.u8()?;
            let msg_type =
                MsgType::from_u8(raw_type).ok_or(RecordError::Field { field: "msg_type", value: raw_type.into() })?;
            let card = r.card()?;
            let raw_code = r.u8()?;
            let code =
                ResponseCode::from_u8(raw_code).ok_or(RecordError::Field { field: "code", value: raw_code.into() })?;
            let reply = CardReply {
                code,
                state: r.state()?,
                txn_id: r.u64()?,
                amount_minor: r.i64()?,
                cash_minor: r.i64()?,
                bonus_minor: r.i64()?,
                held_minor: r.i64()?,
            };
            Trace::Answered { digest, msg_type, card, reply }
        }
        TRACE_REVERSED_UNSEEN => Trace::ReversedUnseen { card: r.card()?, amount_minor: r.i64()? },
        tag => return Err(RecordError::Field { field: "trace tag", value: tag.into() }),
    };
    r.finish((trace_key, trace))
}

pub fn encode_range(range: &CardRange, buf: &mut [u8]) -> usize {
    let mut w = W::new(buf);
    w.u64(range.last.0).u16(range.product).u32(range.store_id).u32(range.terminal_id).u32(range.stan);
    w.at
}

pub fn decode_range(key: &[u8], value: &[u8]) -> Result<CardRange, RecordError> {
    let first = CardNo(decode_u64_key(key)?);
    let mut r = R::new(value)?;
    let range = CardRange {
        first,
        last: r.card()?,
        product: r.u16()?,
        store_id: r.u32()?,
        terminal_id: r.u32()?,
        stan: r.u32()?,
    };
    r.finish(range)
}

/// One record of a logged group commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogRecord {
    /// The new state of a card; `None` when the card went back to stock.
    Card(CardNo, Option<Card>),
    Journal(JournalEntry),
    Txn(u64, Txn),
    Trace(TraceKey, Trace),
}

const TAG_CARD: u8 = 1;
const TAG_JOURNAL: u8 = 2;
const TAG_TXN: u8 = 3;
const TAG_TRACE: u8 = 4;

/// Encodes all of a group commit's effects as one log value:
/// `version, { tag u8, key [8], length u8, value [length] }*`, each value in its column
/// family's encoding (length 0: a deleted card).
pub fn encode_batch(fx: &Effects, out: &mut Vec<u8>) {
    let mut buf = [0u8; MAX_RECORD_BYTES];
    let put = |out: &mut Vec<u8>, tag: u8, key: [u8; 8], value: &[u8]| {
        out.push(tag);
        out.extend_from_slice(&key);
        out.push(value.len() as u8);
        out.extend_from_slice(value);
    };
    out.push(FORMAT_V1);
    for (card_no, card) in &fx.cards {
        let n = card.as_ref().map_or(0, |card| encode_card(card, &mut buf));
        put(out, TAG_CARD, card_no.0.to_be_bytes(), &buf[..n]);
    }
    for entry in &fx.journal {
        let n = encode_journal(entry, &mut buf);
        put(out, TAG_JOURNAL, entry.txn_id.to_be_bytes(), &buf[..n]);
    }
    for (txn_id, txn) in &fx.txns {
        let n = encode_txn(txn, &mut buf);
        put(out, TAG_TXN, txn_id.to_be_bytes(), &buf[..n]);
    }
    for (key, trace) in &fx.traces {
        let n = encode_trace(trace, &mut buf);
        put(out, TAG_TRACE, trace_key(key), &buf[..n]);
    }
}

/// The records of a log value, in the order they were encoded.
pub fn decode_batch(bytes: &[u8]) -> impl Iterator<Item = Result<LogRecord, RecordError>> + '_ {
    let mut rest: &[u8] = &[];
    let mut failed = false;
    let start = match bytes.split_first() {
        Some((&FORMAT_V1, tail)) => {
            rest = tail;
            None
        }
        Some((&v, _)) => Some(RecordError::Version(v)),
        None => Some(RecordError::Short(0)),
    };
    let mut first_error = start;
    std::iter::from_fn(move || {
        if failed {
            return None;
        }
        if let Some(error) = first_error.take() {
            failed = true;
            return Some(Err(error));
        }
        if rest.is_empty() {
            return None;
        }
        let record = (|| {
            if rest.len() < 10 {
                return Err(RecordError::Short(rest.len()));
            }
            let (tag, key, len) = (rest[0], &rest[1..9], rest[9] as usize);
            let value = rest.get(10..10 + len).ok_or(RecordError::Short(rest.len()))?;
            rest = &rest[10 + len..];
            Ok(match tag {
                TAG_CARD if len == 0 => LogRecord::Card(CardNo(decode_u64_key(key)?), None),
                TAG_CARD => {
                    let (card_no, card) = decode_card(key, value)?;
                    LogRecord::Card(card_no, Some(card))
                }
                TAG_JOURNAL => LogRecord::Journal(decode_journal(key, value)?),
                TAG_TXN => {
                    let (txn_id, txn) = decode_txn(key, value)?;
                    LogRecord::Txn(txn_id, txn)
                }
                TAG_TRACE => {
                    let (trace_key, trace) = decode_trace(key, value)?;
                    LogRecord::Trace(trace_key, trace)
                }
                other => return Err(RecordError::Field { field: "log tag", value: other.into() }),
            })
        })();
        failed = record.is_err();
        Some(record)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_refuse_damage() {
        let card = Card {
            state: CardState::Active,
            product: 1,
            store_id: 21,
            cash_minor: 12_345,
            bonus_minor: 678,
            held_minor: 90,
            first_load_date: 20261122,
            last_activity_date: 20261123,
        };
        let mut buf = [0u8; MAX_RECORD_BYTES];
        let n = encode_card(&card, &mut buf);
        let key = 6200880000000017u64.to_be_bytes();
        assert_eq!(decode_card(&key, &buf[..n]), Ok((CardNo(6200880000000017), card)));
        assert_eq!(decode_card(&key, &buf[..n - 1]), Err(RecordError::Short(n - 1)));
        let mut longer = buf[..n + 1].to_vec();
        longer[n] = 0;
        assert_eq!(decode_card(&key, &longer), Err(RecordError::Trailing(1)));
        buf[0] = 9;
        assert_eq!(decode_card(&key, &buf[..n]), Err(RecordError::Version(9)));

        let trace = Trace::Answered {
            digest: 0xdead_beef,
            msg_type: MsgType::Sale,
            card: CardNo(6200880000000017),
            reply: card.reply(ResponseCode::Approved, 77, 500),
        };
        let n = encode_trace(&trace, &mut buf);
        let k = TraceKey { terminal_id: 1001, stan: 42 };
        assert_eq!(decode_trace(&trace_key(&k), &buf[..n]), Ok((k, trace)));
        let unseen = Trace::ReversedUnseen { card: CardNo(6200880000000017), amount_minor: 5 };
        let n = encode_trace(&unseen, &mut buf);
        assert_eq!(decode_trace(&trace_key(&k), &buf[..n]), Ok((k, unseen)));
    }

    /// Journal entries carry the catalog version (format 2); entries written before catalogs
    /// existed (format 1) still decode, with catalog version 0.
    #[test]
    fn journal_entries_carry_the_catalog_version_and_old_ones_still_decode() {
        let entry = crate::journal_cmd::tests::capture();
        let mut buf = [0u8; MAX_RECORD_BYTES];
        let n = encode_journal(&entry, &mut buf);
        let key = entry.txn_id.to_be_bytes();
        assert_eq!(decode_journal(&key, &buf[..n]).unwrap(), entry);
        // The same entry as format 1 wrote it: no catalog version at the end.
        let mut old = buf[..n - 4].to_vec();
        old[0] = FORMAT_V1;
        assert_eq!(decode_journal(&key, &old).unwrap(), JournalEntry { catalog_version: 0, ..entry });
        // A format-2 entry cut before its catalog version is damaged, not old.
        assert!(decode_journal(&key, &buf[..n - 4]).is_err());
    }
}
