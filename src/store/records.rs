//! Byte encodings of stored records: fixed width, big-endian, a format version first, so a
//! record is read back without any schema and a future format is recognised.
//!
//! Each kind of record has its own format versions. A newer version only appends fields, so
//! an older record decodes as a prefix of the newer one, its missing fields taking the values
//! they had before the fields existed (see each decoder). Records are always written in the
//! newest version of their kind:
//!
//! | record | versions | newest adds |
//! |---|---|---|
//! | card | 1–4 | 2: expiry, last spend date, PIN hash and failures, flags, birthday, points, spend; 3: dormancy notice date; 4: staff holder (80 bytes) |
//! | transaction | 1, 2, 3 | 2: points delta, refunded points, spend delta, category; 3: amount invoiced (112 bytes) |
//! | trace record | 1, 2 | the reply's gross, discount, points earned and balance, tier, notices, PIN attempts left, limit (104 bytes) |
//! | journal entry | 1–4 | 2: catalog version; 3: gross amount, points delta; 4: ticket, approver (123 bytes) |
//! | range | 1 | (23 bytes) |
//! | day spend | 1 | (13 bytes) |

use protocol::{CardNo, CardReply, CardState, MsgType, ResponseCode};

use crate::engine::{BusinessDate, Card, CardRange, Effects, JournalEntry, Trace, TraceKey, Txn, TxnKind, TxnStatus};

/// Room for the largest encoded record: a journal entry, 123 bytes (a transaction or an
/// answered trace record 112 and 104). At most 255: a log record stores a value's length in a byte.
pub const MAX_RECORD_BYTES: usize = 128;
const _: () = assert!(MAX_RECORD_BYTES <= u8::MAX as usize);
const FORMAT_V1: u8 = 1;
const FORMAT_V2: u8 = 2;
const FORMAT_V3: u8 = 3;
const FORMAT_V4: u8 = 4;
/// Cards: 2 adds the fields of PINs, flags, birthdays, points and spend; 3 the date of a
/// dormancy notice; 4 the staff holder.
const CARD_FORMAT: u8 = FORMAT_V4;
/// Transactions: 2 adds points, refunded points, spend delta and category; 3 the amount
/// invoiced.
const TXN_FORMAT: u8 = FORMAT_V3;
/// Trace records: 2 adds the reply's discount, points, tier, notices, PIN and limit fields.
const TRACE_FORMAT: u8 = FORMAT_V2;
/// Journal entries: 2 adds the catalog version, 3 the gross amount and the points delta, 4
/// the ticket and the approving operator.
const JOURNAL_FORMAT: u8 = FORMAT_V4;
const RANGE_FORMAT: u8 = FORMAT_V1;
const DAY_SPEND_FORMAT: u8 = FORMAT_V1;
const OPEN_HOLD_FORMAT: u8 = FORMAT_V1;
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
    /// A reader of a record whose kind has the format versions 1 to `newest`.
    fn new(bytes: &'a [u8], newest: u8) -> Result<Self, RecordError> {
        let mut r = R { bytes, len: bytes.len(), version: FORMAT_V1 };
        match r.u8()? {
            v if (FORMAT_V1..=newest).contains(&v) => {
                r.version = v;
                Ok(r)
            }
            v => Err(RecordError::Version(v)),
        }
    }
    /// The next fields if the record's version has them (`since` or later), else `default`.
    fn since<T>(
        &mut self,
        since: u8,
        default: T,
        read: impl FnOnce(&mut Self) -> Result<T, RecordError>,
    ) -> Result<T, RecordError> {
        if self.version >= since {
            read(self)
        } else {
            Ok(default)
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
    let mut w = W::versioned(buf, CARD_FORMAT);
    w.u8(card.state as u8)
        .u16(card.product)
        .u32(card.store_id)
        .i64(card.cash_minor)
        .i64(card.bonus_minor)
        .i64(card.held_minor)
        .u32(card.first_load_date)
        .u32(card.last_activity_date)
        // Format 2:
        .u32(card.expiry_date)
        .u32(card.last_spend_date)
        .u32(card.pin_hash)
        .u8(card.pin_failures)
        .u8(card.flags)
        .u16(card.birthday_mmdd)
        .i64(card.points)
        .i64(card.spend_minor)
        // Format 3:
        .u32(card.notice_date)
        // Format 4:
        .u32(card.staff_operator_id);
    w.at
}

pub fn decode_card(key: &[u8], value: &[u8]) -> Result<(CardNo, Card), RecordError> {
    let card_no = CardNo(decode_u64_key(key)?);
    let mut r = R::new(value, CARD_FORMAT)?;
    let (state, product, store_id) = (r.state()?, r.u16()?, r.u32()?);
    let card = Card {
        cash_minor: r.i64()?,
        bonus_minor: r.i64()?,
        held_minor: r.i64()?,
        first_load_date: r.u32()?,
        last_activity_date: r.u32()?,
        ..Card::new(product, store_id, state)
    };
    // Cards of format 1 were written before these fields existed: no expiry, no PIN, no
    // flags, no points, no spend, as a card just sold.
    let card = r.since(FORMAT_V2, card, |r| {
        Ok(Card {
            expiry_date: r.u32()?,
            last_spend_date: r.u32()?,
            pin_hash: r.u32()?,
            pin_failures: r.u8()?,
            flags: r.u8()?,
            birthday_mmdd: r.u16()?,
            points: r.i64()?,
            spend_minor: r.i64()?,
            ..card
        })
    })?;
    // Cards before format 3 were written before dormancy notices were dated: none given.
    let notice_date = r.since(FORMAT_V3, 0, R::u32)?;
    // Before format 4, no card named its staff holder.
    let staff_operator_id = r.since(FORMAT_V4, 0, R::u32)?;
    r.finish((card_no, Card { notice_date, staff_operator_id, ..card }))
}

/// An entry of the open-holds index (T4): the hold's card and business date.
pub fn encode_open_hold(card: CardNo, business_date: BusinessDate, buf: &mut [u8]) -> usize {
    let mut w = W::versioned(buf, OPEN_HOLD_FORMAT);
    w.u64(card.0).u32(business_date);
    w.at
}

pub fn decode_open_hold(value: &[u8]) -> Result<(CardNo, BusinessDate), RecordError> {
    let mut r = R::new(value, OPEN_HOLD_FORMAT)?;
    let entry = (r.card()?, r.u32()?);
    r.finish(entry)
}

pub fn encode_journal(e: &JournalEntry, buf: &mut [u8]) -> usize {
    let mut w = W::versioned(buf, JOURNAL_FORMAT);
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
        // Format 2:
        .u32(e.catalog_version)
        // Format 3:
        .i64(e.gross_minor)
        .i64(e.points_delta)
        // Format 4:
        .u64(e.ticket)
        .u32(e.approver_id);
    w.at
}

pub fn decode_journal(key: &[u8], value: &[u8]) -> Result<JournalEntry, RecordError> {
    let txn_id = decode_u64_key(key)?;
    let mut r = R::new(value, JOURNAL_FORMAT)?;
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
        catalog_version: r.since(FORMAT_V2, 0, R::u32)?,
        gross_minor: 0,
        points_delta: 0,
        ticket: 0,
        approver_id: 0,
    };
    // Entries of formats 1 and 2 were written before discounts and points: the gross amount
    // was the amount (as the engine still writes it for an undiscounted posting), and no
    // points moved.
    let (gross_minor, points_delta) = r.since(FORMAT_V3, (entry.amount_minor, 0), |r| Ok((r.i64()?, r.i64()?)))?;
    // Entries before format 4 were written before administrative postings: no ticket, no
    // approver.
    let (ticket, approver_id) = r.since(FORMAT_V4, (0, 0), |r| Ok((r.u64()?, r.u32()?)))?;
    r.finish(JournalEntry { gross_minor, points_delta, ticket, approver_id, ..entry })
}

pub fn encode_txn(t: &Txn, buf: &mut [u8]) -> usize {
    let mut w = W::versioned(buf, TXN_FORMAT);
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
        .i64(t.refunded_bonus_minor)
        // Format 2:
        .i64(t.points_delta)
        .i64(t.refunded_points)
        .i64(t.spend_delta_minor)
        .u8(t.category)
        // Format 3:
        .i64(t.invoiced_minor);
    w.at
}

pub fn decode_txn(key: &[u8], value: &[u8]) -> Result<(u64, Txn), RecordError> {
    let txn_id = decode_u64_key(key)?;
    let mut r = R::new(value, TXN_FORMAT)?;
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
        points_delta: 0,
        refunded_points: 0,
        spend_delta_minor: 0,
        category: 0,
        invoiced_minor: 0,
    };
    // Transactions of format 1 were written before points, spend and categories were kept:
    // none moved, and the category is unknown (0).
    let txn = r.since(FORMAT_V2, txn, |r| {
        Ok(Txn {
            points_delta: r.i64()?,
            refunded_points: r.i64()?,
            spend_delta_minor: r.i64()?,
            category: r.u8()?,
            ..txn
        })
    })?;
    // Before format 3 no invoice was recorded.
    let invoiced_minor = r.since(FORMAT_V3, 0, R::i64)?;
    r.finish((txn_id, Txn { invoiced_minor, ..txn }))
}

pub fn encode_trace(trace: &Trace, buf: &mut [u8]) -> usize {
    let mut w = W::versioned(buf, TRACE_FORMAT);
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
                .i64(reply.held_minor)
                // Format 2:
                .i64(reply.gross_minor)
                .i64(reply.discount_minor)
                .i64(reply.points_earned)
                .i64(reply.points_balance)
                .u8(reply.tier)
                .u8(reply.notices)
                .u8(reply.pin_attempts_left)
                .i64(reply.limit_minor);
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
    let mut r = R::new(value, TRACE_FORMAT)?;
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
                ..CardReply::default()
            };
            // Replies of format 1 were given before discounts, points, tiers, notices, PINs
            // and limits: the gross amount was the amount (as `Card::reply` still sets it),
            // the rest zero.
            let reply = r.since(FORMAT_V2, CardReply { gross_minor: reply.amount_minor, ..reply }, |r| {
                Ok(CardReply {
                    gross_minor: r.i64()?,
                    discount_minor: r.i64()?,
                    points_earned: r.i64()?,
                    points_balance: r.i64()?,
                    tier: r.u8()?,
                    notices: r.u8()?,
                    pin_attempts_left: r.u8()?,
                    limit_minor: r.i64()?,
                    ..reply
                })
            })?;
            Trace::Answered { digest, msg_type, card, reply }
        }
        TRACE_REVERSED_UNSEEN => Trace::ReversedUnseen { card: r.card()?, amount_minor: r.i64()? },
        tag => return Err(RecordError::Field { field: "trace tag", value: tag.into() }),
    };
    r.finish((trace_key, trace))
}

pub fn encode_range(range: &CardRange, buf: &mut [u8]) -> usize {
    let mut w = W::versioned(buf, RANGE_FORMAT);
    w.u64(range.last.0).u16(range.product).u32(range.store_id).u32(range.terminal_id).u32(range.stan);
    w.at
}

pub fn decode_range(key: &[u8], value: &[u8]) -> Result<CardRange, RecordError> {
    let first = CardNo(decode_u64_key(key)?);
    let mut r = R::new(value, RANGE_FORMAT)?;
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

/// What a card debited today in a category with a per-day limit (R3): (card, category) →
/// (business date, gross minor units), as in `Effects::day_spend`.
pub type DaySpend = ((CardNo, u8), (BusinessDate, i64));

/// Length of a day-spend key: card number (u64 BE) ‖ category (u8).
pub const DAY_SPEND_KEY_BYTES: usize = 9;

pub fn day_spend_key(card: CardNo, category: u8) -> [u8; DAY_SPEND_KEY_BYTES] {
    let mut out = [0u8; DAY_SPEND_KEY_BYTES];
    out[..8].copy_from_slice(&card.0.to_be_bytes());
    out[8] = category;
    out
}

/// `version, business date u32, gross minor units i64`.
pub fn encode_day_spend(business_date: BusinessDate, spent_minor: i64, buf: &mut [u8]) -> usize {
    let mut w = W::versioned(buf, DAY_SPEND_FORMAT);
    w.u32(business_date).i64(spent_minor);
    w.at
}

pub fn decode_day_spend(key: &[u8], value: &[u8]) -> Result<DaySpend, RecordError> {
    let bytes: [u8; DAY_SPEND_KEY_BYTES] =
        key.try_into().map_err(|_| RecordError::KeyLength(key.len(), DAY_SPEND_KEY_BYTES))?;
    let card = CardNo(u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")));
    let mut r = R::new(value, DAY_SPEND_FORMAT)?;
    let spend = (r.u32()?, r.i64()?);
    r.finish(((card, bytes[8]), spend))
}

/// One record of a logged group commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogRecord {
    /// The new state of a card; `None` when the card went back to stock.
    Card(CardNo, Option<Card>),
    Journal(JournalEntry),
    Txn(u64, Txn),
    Trace(TraceKey, Trace),
    /// A card's new total for the day in a category with a per-day limit (R3).
    DaySpend((CardNo, u8), (BusinessDate, i64)),
    /// A card's points by the month earned (K5); empty when it has none left.
    PointLots(CardNo, crate::engine::PointLots),
}

const TAG_CARD: u8 = 1;
const TAG_JOURNAL: u8 = 2;
const TAG_TXN: u8 = 3;
const TAG_TRACE: u8 = 4;
/// Batch format 2 only; its key is [`DAY_SPEND_KEY_BYTES`] long, every other tag's 8.
const TAG_DAY_SPEND: u8 = 5;
const TAG_POINT_LOTS: u8 = 6;
/// Log records: format 1 has the tags 1–4, each with an 8-byte key; format 2 adds the tag 5
/// (day spend) with a 9-byte key; format 3 the tag 6 (point lots). Written as 3; all are read.
const BATCH_FORMAT: u8 = FORMAT_V3;
const POINT_LOTS_FORMAT: u8 = FORMAT_V1;
/// Room for the largest point lots record: a version, a count and the lots.
pub const MAX_POINT_LOTS_BYTES: usize = 2 + crate::engine::MAX_POINT_LOTS * 12;
const _: () = assert!(MAX_POINT_LOTS_BYTES <= u8::MAX as usize);

/// A card's point lots: version, count, then (month u32, points i64) each.
pub fn encode_point_lots(lots: &[(u32, i64)], out: &mut Vec<u8>) {
    out.push(POINT_LOTS_FORMAT);
    out.push(lots.len() as u8);
    for (month, points) in lots {
        out.extend_from_slice(&month.to_be_bytes());
        out.extend_from_slice(&points.to_be_bytes());
    }
}

pub fn decode_point_lots(value: &[u8]) -> Result<crate::engine::PointLots, RecordError> {
    match value {
        [] => Ok(Vec::new()),
        [version, count, rest @ ..] if *version == POINT_LOTS_FORMAT => {
            if rest.len() != usize::from(*count) * 12 {
                return Err(RecordError::Short(value.len()));
            }
            Ok(rest
                .chunks(12)
                .map(|c| {
                    let month = u32::from_be_bytes(c[..4].try_into().expect("4 bytes"));
                    (month, i64::from_be_bytes(c[4..].try_into().expect("8 bytes")))
                })
                .collect())
        }
        [version, ..] => Err(RecordError::Version(*version)),
    }
}

/// Length of the key of a log record with `tag` (an unknown tag is refused after this).
fn log_key_bytes(tag: u8) -> usize {
    if tag == TAG_DAY_SPEND {
        DAY_SPEND_KEY_BYTES
    } else {
        8
    }
}

/// Encodes all of a group commit's effects as one log value:
/// `version, { tag u8, key [8 or 9], length u8, value [length] }*`, each value in its column
/// family's encoding (length 0: a deleted card). The key is 9 bytes for the tag day spend
/// (card ‖ category), 8 for every other tag; format 1, written before day spend existed, has
/// only 8-byte keys.
pub fn encode_batch(fx: &Effects, out: &mut Vec<u8>) {
    let mut buf = [0u8; MAX_RECORD_BYTES];
    let put = |out: &mut Vec<u8>, tag: u8, key: &[u8], value: &[u8]| {
        debug_assert_eq!(key.len(), log_key_bytes(tag));
        out.push(tag);
        out.extend_from_slice(key);
        out.push(value.len() as u8);
        out.extend_from_slice(value);
    };
    out.push(BATCH_FORMAT);
    for (card_no, card) in &fx.cards {
        let n = card.as_ref().map_or(0, |card| encode_card(card, &mut buf));
        put(out, TAG_CARD, &card_no.0.to_be_bytes(), &buf[..n]);
    }
    for entry in &fx.journal {
        let n = encode_journal(entry, &mut buf);
        put(out, TAG_JOURNAL, &entry.txn_id.to_be_bytes(), &buf[..n]);
    }
    for (txn_id, txn) in &fx.txns {
        let n = encode_txn(txn, &mut buf);
        put(out, TAG_TXN, &txn_id.to_be_bytes(), &buf[..n]);
    }
    for (key, trace) in &fx.traces {
        let n = encode_trace(trace, &mut buf);
        put(out, TAG_TRACE, &trace_key(key), &buf[..n]);
    }
    for ((card_no, category), (business_date, spent_minor)) in &fx.day_spend {
        let n = encode_day_spend(*business_date, *spent_minor, &mut buf);
        put(out, TAG_DAY_SPEND, &day_spend_key(*card_no, *category), &buf[..n]);
    }
    let mut lots_buf = Vec::with_capacity(MAX_POINT_LOTS_BYTES);
    for (card_no, lots) in &fx.point_lots {
        lots_buf.clear();
        if !lots.is_empty() {
            encode_point_lots(lots, &mut lots_buf);
        }
        put(out, TAG_POINT_LOTS, &card_no.0.to_be_bytes(), &lots_buf);
    }
}

/// The records of a log value, in the order they were encoded.
pub fn decode_batch(bytes: &[u8]) -> impl Iterator<Item = Result<LogRecord, RecordError>> + '_ {
    let mut rest: &[u8] = &[];
    let mut failed = false;
    let mut version = FORMAT_V1;
    let start = match bytes.split_first() {
        Some((&v, tail)) if (FORMAT_V1..=BATCH_FORMAT).contains(&v) => {
            rest = tail;
            version = v;
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
            let tag = rest[0];
            let key_len = log_key_bytes(tag);
            // tag, key, length
            let head = 1 + key_len + 1;
            if rest.len() < head {
                return Err(RecordError::Short(rest.len()));
            }
            let (key, len) = (&rest[1..1 + key_len], rest[head - 1] as usize);
            let value = rest.get(head..head + len).ok_or(RecordError::Short(rest.len()))?;
            rest = &rest[head + len..];
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
                TAG_DAY_SPEND if version >= FORMAT_V2 => {
                    let (key, spend) = decode_day_spend(key, value)?;
                    LogRecord::DaySpend(key, spend)
                }
                TAG_POINT_LOTS if version >= FORMAT_V3 => {
                    LogRecord::PointLots(CardNo(decode_u64_key(key)?), decode_point_lots(value)?)
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

    /// A card with every field set, none to its default.
    fn card() -> Card {
        Card {
            state: CardState::Active,
            product: 1,
            store_id: 21,
            cash_minor: 12_345,
            bonus_minor: 678,
            held_minor: 90,
            first_load_date: 20261122,
            last_activity_date: 20261123,
            expiry_date: 20271122,
            last_spend_date: 20261123,
            pin_hash: 0x1234_5678,
            pin_failures: 2,
            flags: crate::engine::CardFlags::PIN_MUST_CHANGE | crate::engine::CardFlags::STAFF,
            birthday_mmdd: 1224,
            points: 4_321,
            spend_minor: 98_765,
            notice_date: 20271123,
            staff_operator_id: 2011,
        }
    }

    /// A refunded sale with every field set.
    fn txn() -> Txn {
        Txn {
            kind: TxnKind::Sale,
            status: TxnStatus::Posted,
            card: CardNo(6200880000000017),
            business_date: 20261122,
            terminal_id: 1001,
            stan: 42,
            amount_minor: 8_500,
            cash_delta_minor: -6_000,
            bonus_delta_minor: -2_500,
            held_delta_minor: 0,
            ref_txn_id: 0,
            refunded_minor: 1_000,
            refunded_bonus_minor: 300,
            points_delta: 85,
            refunded_points: 10,
            spend_delta_minor: 8_500,
            category: 3,
            // Not what a sale carries: set so that the encodings are seen to keep it.
            invoiced_minor: 700,
        }
    }

    /// An answered sale whose reply has every field set.
    fn answered() -> Trace {
        Trace::Answered {
            digest: 0xdead_beef,
            msg_type: MsgType::Sale,
            card: CardNo(6200880000000017),
            reply: CardReply {
                code: ResponseCode::Approved,
                state: CardState::Active,
                txn_id: 77,
                amount_minor: 8_500,
                cash_minor: 6_345,
                bonus_minor: 178,
                held_minor: 90,
                gross_minor: 10_000,
                discount_minor: 1_500,
                points_earned: 85,
                points_balance: 4_321,
                tier: 2,
                notices: CardReply::NOTICE_PIN_MUST_CHANGE,
                pin_attempts_left: 3,
                limit_minor: 50_000,
            },
        }
    }

    /// `buf[..n]` as the previous format `version` wrote it: without the last `dropped`
    /// bytes (each format only appends fields).
    fn older(buf: &[u8], n: usize, dropped: usize, version: u8) -> Vec<u8> {
        let mut old = buf[..n - dropped].to_vec();
        old[0] = version;
        old
    }

    #[test]
    fn records_round_trip_and_refuse_damage() {
        let card = card();
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

        let trace = answered();
        let n = encode_trace(&trace, &mut buf);
        let k = TraceKey { terminal_id: 1001, stan: 42 };
        assert_eq!(decode_trace(&trace_key(&k), &buf[..n]), Ok((k, trace)));
        let unseen = Trace::ReversedUnseen { card: CardNo(6200880000000017), amount_minor: 5 };
        let n = encode_trace(&unseen, &mut buf);
        assert_eq!(decode_trace(&trace_key(&k), &buf[..n]), Ok((k, unseen)));

        let txn = txn();
        let n = encode_txn(&txn, &mut buf);
        assert_eq!(decode_txn(&418_301u64.to_be_bytes(), &buf[..n]), Ok((418_301, txn)));
        assert_eq!(decode_txn(&418_301u64.to_be_bytes(), &buf[..n - 1]), Err(RecordError::Short(n - 1)));

        let n = encode_day_spend(20261122, 31_000, &mut buf);
        let key = day_spend_key(CardNo(6200880000000017), 4);
        assert_eq!(decode_day_spend(&key, &buf[..n]), Ok(((CardNo(6200880000000017), 4), (20261122, 31_000))));
        assert_eq!(decode_day_spend(&key[..8], &buf[..n]), Err(RecordError::KeyLength(8, 9)));
        assert_eq!(decode_day_spend(&key, &buf[..n - 1]), Err(RecordError::Short(n - 1)));
    }

    /// Every record fits `MAX_RECORD_BYTES` (and so a log record's length byte); the sizes are
    /// the ones the module documentation states.
    #[test]
    fn every_record_fits_the_largest_record() {
        let mut buf = [0u8; 256];
        let range = CardRange {
            first: CardNo(6200880000000000),
            last: CardNo(6200880000000999),
            product: 1,
            store_id: 21,
            terminal_id: 5,
            stan: 1,
        };
        let sizes = [
            ("card", encode_card(&card(), &mut buf), 80),
            ("txn", encode_txn(&txn(), &mut buf), 112),
            ("trace", encode_trace(&answered(), &mut buf), 104),
            ("journal", encode_journal(&crate::journal_cmd::tests::capture(), &mut buf), 123),
            ("range", encode_range(&range, &mut buf), 23),
            ("day spend", encode_day_spend(20261122, 1, &mut buf), 13),
        ];
        for (name, n, expected) in sizes {
            assert_eq!(n, expected, "{name}");
            assert!(n <= MAX_RECORD_BYTES, "{name}: {n} bytes");
        }
    }

    /// Journal entries carry the catalog version (format 2) and the gross amount and points
    /// (format 3); entries written before catalogs existed (format 1) still decode, with
    /// catalog version 0, and entries of formats 1 and 2 with the amount as gross and no
    /// points.
    #[test]
    fn journal_entries_carry_the_catalog_version_and_old_ones_still_decode() {
        let entry = crate::journal_cmd::tests::capture();
        assert_ne!(entry.gross_minor, entry.amount_minor);
        let mut buf = [0u8; MAX_RECORD_BYTES];
        let n = encode_journal(&entry, &mut buf);
        let key = entry.txn_id.to_be_bytes();
        assert_eq!(decode_journal(&key, &buf[..n]).unwrap(), entry);
        let before_tickets = JournalEntry { ticket: 0, approver_id: 0, ..entry };
        // As format 3 wrote it: no ticket and approver at the end.
        assert_eq!(decode_journal(&key, &older(&buf, n, 12, FORMAT_V3)).unwrap(), before_tickets);
        let before_points = JournalEntry { gross_minor: entry.amount_minor, points_delta: 0, ..before_tickets };
        // The same entry as format 2 wrote it: no gross amount and points either.
        assert_eq!(decode_journal(&key, &older(&buf, n, 28, FORMAT_V2)).unwrap(), before_points);
        // As format 1 wrote it: no catalog version either.
        let old = older(&buf, n, 32, FORMAT_V1);
        assert_eq!(decode_journal(&key, &old).unwrap(), JournalEntry { catalog_version: 0, ..before_points });
        // A format-4 entry cut before its new fields is damaged, not old; so is a format-2
        // entry cut before its catalog version.
        assert!(decode_journal(&key, &buf[..n - 12]).is_err());
        assert!(decode_journal(&key, &older(&buf, n, 32, FORMAT_V2)).is_err());
        assert_eq!(decode_journal(&key, &older(&buf, n, 0, 5)), Err(RecordError::Version(5)));
    }

    /// Cards, transactions and trace records of format 1, written before PINs, points, tiers
    /// and discounts, still decode: the new fields as a card just sold has them, or zero.
    #[test]
    fn old_cards_transactions_and_trace_records_still_decode() {
        let mut buf = [0u8; MAX_RECORD_BYTES];

        let card = card();
        let n = encode_card(&card, &mut buf);
        let key = 6200880000000017u64.to_be_bytes();
        let old_card = Card {
            cash_minor: card.cash_minor,
            bonus_minor: card.bonus_minor,
            held_minor: card.held_minor,
            first_load_date: card.first_load_date,
            last_activity_date: card.last_activity_date,
            ..Card::new(card.product, card.store_id, card.state)
        };
        assert_eq!(decode_card(&key, &older(&buf, n, 40, FORMAT_V1)), Ok((CardNo(6200880000000017), old_card)));
        let format_3 = Card { staff_operator_id: 0, ..card };
        assert_eq!(decode_card(&key, &older(&buf, n, 4, FORMAT_V3)), Ok((CardNo(6200880000000017), format_3)));
        let format_2 = Card { notice_date: 0, ..format_3 };
        assert_eq!(decode_card(&key, &older(&buf, n, 8, FORMAT_V2)), Ok((CardNo(6200880000000017), format_2)));
        assert!(decode_card(&key, &buf[..n - 4]).is_err(), "a format-4 card cut short is damaged");
        assert_eq!(decode_card(&key, &older(&buf, n, 0, 5)), Err(RecordError::Version(5)));

        let txn = txn();
        let n = encode_txn(&txn, &mut buf);
        let key = 418_301u64.to_be_bytes();
        let old_txn = Txn { points_delta: 0, refunded_points: 0, spend_delta_minor: 0, category: 0, ..txn };
        let format_2 = Txn { invoiced_minor: 0, ..txn };
        assert_eq!(decode_txn(&key, &older(&buf, n, 8, FORMAT_V2)), Ok((418_301, format_2)));
        let old_txn = Txn { invoiced_minor: 0, ..old_txn };
        assert_eq!(decode_txn(&key, &older(&buf, n, 33, FORMAT_V1)), Ok((418_301, old_txn)));
        assert!(decode_txn(&key, &buf[..n - 25]).is_err());

        let trace = answered();
        let n = encode_trace(&trace, &mut buf);
        let k = TraceKey { terminal_id: 1001, stan: 42 };
        let Trace::Answered { digest, msg_type, card, reply } = trace else { unreachable!() };
        let old_reply = CardReply {
            code: reply.code,
            state: reply.state,
            txn_id: reply.txn_id,
            amount_minor: reply.amount_minor,
            cash_minor: reply.cash_minor,
            bonus_minor: reply.bonus_minor,
            held_minor: reply.held_minor,
            gross_minor: reply.amount_minor,
            ..CardReply::default()
        };
        let old_trace = Trace::Answered { digest, msg_type, card, reply: old_reply };
        assert_eq!(decode_trace(&trace_key(&k), &older(&buf, n, 43, FORMAT_V1)), Ok((k, old_trace)));
        assert!(decode_trace(&trace_key(&k), &buf[..n - 43]).is_err());
        let unseen = Trace::ReversedUnseen { card, amount_minor: 5 };
        let n = encode_trace(&unseen, &mut buf);
        assert_eq!(decode_trace(&trace_key(&k), &older(&buf, n, 0, FORMAT_V1)), Ok((k, unseen)));
    }

    /// A batch carries every kind of record, day spend with its 9-byte key among them.
    #[test]
    fn a_batch_round_trips_every_record_kind() {
        let card_no = CardNo(6200880000000017);
        let fx = Effects {
            cards: vec![(card_no, Some(card())), (CardNo(6200880000000018), None)],
            journal: vec![crate::journal_cmd::tests::capture()],
            txns: vec![(418_301, txn())],
            traces: vec![(TraceKey { terminal_id: 1001, stan: 42 }, answered())],
            day_spend: vec![((card_no, 4), (20261122, 31_000)), ((card_no, 1), (20261121, 7))],
            point_lots: vec![(card_no, vec![(202611, 190), (202702, 95)]), (CardNo(6200880000000018), vec![])],
        };
        let mut encoded = Vec::new();
        encode_batch(&fx, &mut encoded);
        assert_eq!(encoded[0], BATCH_FORMAT);
        let decoded: Vec<LogRecord> = decode_batch(&encoded).map(Result::unwrap).collect();
        let expected = vec![
            LogRecord::Card(card_no, Some(card())),
            LogRecord::Card(CardNo(6200880000000018), None),
            LogRecord::Journal(crate::journal_cmd::tests::capture()),
            LogRecord::Txn(418_301, txn()),
            LogRecord::Trace(TraceKey { terminal_id: 1001, stan: 42 }, answered()),
            LogRecord::DaySpend((card_no, 4), (20261122, 31_000)),
            LogRecord::DaySpend((card_no, 1), (20261121, 7)),
            LogRecord::PointLots(card_no, vec![(202611, 190), (202702, 95)]),
            LogRecord::PointLots(CardNo(6200880000000018), vec![]),
        ];
        assert_eq!(decoded, expected);
        // Cut anywhere, it reads as the records before the cut, then at most one error: never
        // a misread record.
        for cut in 1..encoded.len() {
            let results: Vec<_> = decode_batch(&encoded[..cut]).collect();
            let good = results.iter().take_while(|r| r.is_ok()).count();
            assert!(good < expected.len() && results.len() <= good + 1, "cut at {cut}");
            assert_eq!(results[..good].iter().map(|r| r.clone().unwrap()).collect::<Vec<_>>(), expected[..good]);
        }
    }

    /// A log record of format 1 (8-byte keys only, records of format 1), as written before
    /// day spend, still replays; in format 1 the day-spend tag does not exist.
    #[test]
    fn batches_of_format_1_still_decode() {
        let card_no = CardNo(6200880000000017);
        let mut buf = [0u8; MAX_RECORD_BYTES];
        let mut old = vec![FORMAT_V1];
        let n = encode_card(&card(), &mut buf);
        old.push(TAG_CARD);
        old.extend_from_slice(&card_no.0.to_be_bytes());
        old.push((n - 40) as u8);
        old.extend_from_slice(&older(&buf, n, 40, FORMAT_V1));
        old.push(TAG_CARD);
        old.extend_from_slice(&(card_no.0 + 1).to_be_bytes());
        old.push(0);
        let entry = crate::journal_cmd::tests::capture();
        let n = encode_journal(&entry, &mut buf);
        old.push(TAG_JOURNAL);
        old.extend_from_slice(&entry.txn_id.to_be_bytes());
        old.push((n - 28) as u8);
        old.extend_from_slice(&older(&buf, n, 28, FORMAT_V2));
        let decoded: Vec<LogRecord> = decode_batch(&old).map(Result::unwrap).collect();
        let card = card();
        let old_card = Card {
            cash_minor: card.cash_minor,
            bonus_minor: card.bonus_minor,
            held_minor: card.held_minor,
            first_load_date: card.first_load_date,
            last_activity_date: card.last_activity_date,
            ..Card::new(card.product, card.store_id, card.state)
        };
        assert_eq!(
            decoded,
            vec![
                LogRecord::Card(card_no, Some(old_card)),
                LogRecord::Card(CardNo(card_no.0 + 1), None),
                LogRecord::Journal(JournalEntry {
                    gross_minor: entry.amount_minor,
                    points_delta: 0,
                    ticket: 0,
                    approver_id: 0,
                    ..entry
                }),
            ]
        );

        let n = encode_day_spend(20261122, 1, &mut buf);
        let mut with_day_spend = vec![FORMAT_V1, TAG_DAY_SPEND];
        with_day_spend.extend_from_slice(&day_spend_key(card_no, 4));
        with_day_spend.push(n as u8);
        with_day_spend.extend_from_slice(&buf[..n]);
        let results: Vec<_> = decode_batch(&with_day_spend).collect();
        assert_eq!(results, vec![Err(RecordError::Field { field: "log tag", value: TAG_DAY_SPEND.into() })]);
        with_day_spend[0] = FORMAT_V2;
        assert!(decode_batch(&with_day_spend).all(|r| r.is_ok()));
        with_day_spend[0] = 4;
        assert_eq!(decode_batch(&with_day_spend).collect::<Vec<_>>(), vec![Err(RecordError::Version(4))]);
        // Point lots exist from format 3 on; in format 2 their tag is unknown.
        let mut with_lots = vec![FORMAT_V2, TAG_POINT_LOTS];
        with_lots.extend_from_slice(&card_no.0.to_be_bytes());
        with_lots.push(0);
        let results: Vec<_> = decode_batch(&with_lots).collect();
        assert_eq!(results, vec![Err(RecordError::Field { field: "log tag", value: TAG_POINT_LOTS.into() })]);
        with_lots[0] = FORMAT_V3;
        assert_eq!(decode_batch(&with_lots).collect::<Vec<_>>(), vec![Ok(LogRecord::PointLots(card_no, vec![]))]);
    }
}
