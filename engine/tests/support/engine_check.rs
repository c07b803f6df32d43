//! Drives an [`Engine`] with a sequence of operations and checks its invariants after every
//! one. Rule ids refer to `../shared/domain/RULES.md`.
//!
//! Shared by the `engine_commands` fuzz target (`fuzz/`) and the engine's tests
//! (`tests/properties.rs`, `tests/fuzz_inputs.rs`): each includes this file with `#[path]`, so
//! the checks are compiled into both and the engine itself carries no code only tests use.
//!
//! What is checked (by [`run`] and [`check_ops`]; a test may call the checks one by one):
//! - after every command: no card bucket negative and held value within cash + bonus (T1,
//!   T4); every card's buckets equal its opening buckets plus the deltas of its journal entries,
//!   and so do the totals over all cards (S5, S9); the effects describe the engine's state
//!   (what the store persists is what the engine holds); a decline posts nothing; a
//!   retransmission gets its original reply and posts nothing, a reused trace number gets
//!   `trace_reused`, an original reversed before it arrived gets `original_reversed` (T7, T8);
//! - replaying the sequence on a fresh engine gives identical replies and effects, and so does
//!   replaying it with records evicted to a "disk" and fetched back through `need`/`provide`,
//!   and with restarts from the persisted state (`Engine::restore`).

#![allow(dead_code)]

use protocol::Verification;
use std::collections::{BTreeMap, HashMap, HashSet};

use engine::{
    check_import, validate, Card, CardMap, CardRange, Command, Context, Effects, Engine, IdSource, JournalEntry, Need,
    Product, Trace, TraceKey, Txn, TxnKind,
};
use protocol::message::FLAG_RETRANSMIT;
use protocol::types::date_from_days;
use protocol::{
    CardNo, CardReply, CardState, Header, ImportRangeReply, LocalTime, MsgType, Request, ResponseCode, MAX_AMOUNT_MINOR,
};

/// First card number of the slots operations pick cards from.
pub const BASE: u64 = 6_200_880_000_000_000;
/// Card slots `BASE..BASE + CARD_SLOTS`; the first `PREIMPORTED` are in a range imported
/// before the first operation, the others only once an `Import` covers them.
pub const CARD_SLOTS: u64 = 64;
pub const PREIMPORTED: u64 = 32;
/// Slots most operations pick (see [`card_no`]); all pre-imported.
pub const HOT_CARDS: u64 = 6;
/// Terminals and the stores they signed on at. The pre-imported range belongs to the first
/// store, so the last terminal's card sales are declined `wrong_store` there (L1).
pub const TERMINALS: [(u32, u32); 3] = [(1001, 21), (1002, 21), (2001, 22)];
const STORES: [u32; 3] = [21, 22, 0];
/// 2026-11-22 as days since 1970-01-01: the first business date.
const FIRST_DAY: i64 = 20_779;
const START_MS: i64 = 1_795_311_005_000;

/// States a card may be restored in.
pub const OPENING_STATES: [CardState; 8] = [
    CardState::Active,
    CardState::Active,
    CardState::Active,
    CardState::Active,
    CardState::PendingFunds,
    CardState::Frozen,
    CardState::Lost,
    CardState::Closed,
];

/// A sold card present before the first operation, as a restart from disk would find it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpeningCard {
    /// Slot below `PREIMPORTED`.
    pub slot: u8,
    pub state: CardState,
    pub cash_minor: i64,
    pub bonus_minor: i64,
}

/// Where a reversal finds its original trace number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StanRef {
    /// The trace number of the terminal's command `n` commands back (modulo its history).
    Back(u8),
    /// A trace number the terminal has not used yet: `n + 1` past its last one (T7: a reversal
    /// before its original).
    Ahead(u8),
    /// The request that made one of the last eight postings that can be reversed, sent from
    /// its terminal whatever `term` says: reversals of what is still in force.
    Posting(u8),
}

/// One step of a run. `term` picks one of `TERMINALS`, `card` a card by [`card_no`], `txn` a
/// transaction by [`Driver::pick_txn`]; all indices wrap, so every value is meaningful.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// L1: imports `BASE + first ..= BASE + first + len` (`len` ≥ 250: last before first).
    Import {
        term: u8,
        first: u8,
        len: u8,
        product: u16,
        store: u8,
    },
    Sell {
        term: u8,
        card: u8,
        amount: i64,
        method: u8,
    },
    Sale {
        term: u8,
        card: u8,
        amount: i64,
        category: u8,
        flags: u8,
    },
    Load {
        term: u8,
        card: u8,
        amount: i64,
        method: u8,
    },
    Hold {
        term: u8,
        card: u8,
        amount: i64,
        category: u8,
    },
    Capture {
        term: u8,
        card: u8,
        txn: u8,
        amount: i64,
    },
    Void {
        term: u8,
        card: u8,
        txn: u8,
    },
    Refund {
        term: u8,
        card: u8,
        txn: u8,
        amount: i64,
    },
    /// `amount: None` reverses for the original request's own amount.
    Reversal {
        term: u8,
        card: u8,
        original: StanRef,
        amount: Option<i64>,
    },
    Balance {
        term: u8,
        card: u8,
    },
    /// Sends the command `back` commands ago again, same header and request (T8).
    Retransmit {
        back: u8,
        flag: bool,
    },
    /// The next command takes the trace number of the command `back` commands ago (T8).
    ReuseNextStan {
        back: u8,
    },
    /// The business day closes (T6: earlier postings can no longer be voided).
    NextDay,
    Tick {
        ms: u32,
    },
    /// Drops old records from memory (`Engine::evict`); only in [`Mode::Disk`].
    Evict {
        age_ms: u32,
        max_cached: u8,
        lag: u8,
        budget: u8,
    },
    /// Rebuilds the engine from what was persisted (`Engine::restore`); only in [`Mode::Disk`].
    /// `tail`: the restored engine gets every record in memory, otherwise none.
    Restart {
        tail: bool,
    },
}

/// The card number operations mean by `card`: mostly one of a few cards, so that random
/// operations meet on the same cards; then any slot, some unknown numbers and some invalid.
pub fn card_no(card: u8) -> CardNo {
    match card {
        0..=191 => CardNo(BASE + u64::from(card) % HOT_CARDS),
        192..=239 => CardNo(BASE + u64::from(card) % CARD_SLOTS),
        // Valid, in no range.
        240..=247 => CardNo(7_000_000_000_000_000 + u64::from(card)),
        // Within BASE..BASE+64 numerically but 15 digits: a range contains only numbers of
        // its own length (L1).
        248..=251 => CardNo(BASE / 10 + u64::from(card)),
        // Fewer than 8 digits: invalid.
        _ => CardNo(u64::from(card)),
    }
}

/// The one reply a run's step produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    Card(CardReply),
    Import(ImportRangeReply),
    /// Not a command (time, eviction, restart, modifiers).
    None,
}

/// What `Effects` held after one step, comparable between runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FxSnapshot {
    pub cards: Vec<(CardNo, Option<Card>)>,
    pub journal: Vec<JournalEntry>,
    pub txns: Vec<(u64, Txn)>,
    pub traces: Vec<(TraceKey, Trace)>,
}

impl FxSnapshot {
    fn of(fx: &Effects) -> FxSnapshot {
        FxSnapshot {
            cards: fx.cards.clone(),
            journal: fx.journal.clone(),
            txns: fx.txns.clone(),
            traces: fx.traces.clone(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.cards.is_empty() && self.journal.is_empty() && self.txns.is_empty() && self.traces.is_empty()
    }
}

/// How a run keeps its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Everything stays in memory; `Evict` and `Restart` do nothing.
    Memory,
    /// Every write also goes to a "disk" at once; `Evict` drops records from memory and
    /// `Restart` rebuilds the engine from disk; `need` is answered from disk before each
    /// command, as a partition does.
    Disk,
}

/// What the trace rules (T7, T8) say a command's answer must be, decided before it is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Fresh,
    Invalid,
    Retransmission(CardReply),
    Reused,
    Reversed,
}

/// Counts of what a run did, so tests can see that inputs reach the interesting paths.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub commands: usize,
    pub approved: usize,
    pub postings: usize,
    pub retransmissions: usize,
    pub fetched: usize,
    pub restarts: usize,
}

/// A command sent, kept so it can be sent again or named by a reversal.
#[derive(Clone, Copy, Debug)]
struct Sent {
    term: usize,
    header: Header,
    request: Request,
    reply: Reply,
}

/// An engine, the terminals that talk to it, and what the checks know of what it was sent and
/// what its effects persisted.
pub struct Driver {
    pub engine: Engine,
    mode: Mode,
    ctx: Context,
    day: i64,
    /// Next trace number per terminal.
    stans: [u32; 3],
    reuse_next: Option<TraceKey>,
    sent: Vec<Sent>,
    /// Journal entries in order: operations pick the transactions they name from them.
    postings: Vec<JournalEntry>,
    /// Ranges, as the server keeps them (a retransmitted import is answered from here).
    ranges: Vec<CardRange>,
    // Trace rules as the harness understands them, independently of the engine's records.
    answered: HashMap<TraceKey, (Request, CardReply)>,
    reversed_unseen: HashSet<TraceKey>,
    // What the effects say, applied in order: the persisted state.
    persisted_cards: BTreeMap<CardNo, Card>,
    disk_txns: HashMap<u64, Txn>,
    disk_traces: HashMap<TraceKey, Trace>,
    journal_ids: HashSet<u64>,
    max_txn_id: u64,
    /// Per card: opening buckets plus every journal delta (cash, bonus, held).
    expected: BTreeMap<CardNo, (i64, i64, i64)>,
    /// Opening total plus every journal delta, over all cards (cash, bonus, held).
    expected_total: (i64, i64, i64),
    pub stats: Stats,
}

/// The result of one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub reply: Reply,
    pub effects: FxSnapshot,
}

impl Driver {
    pub fn new(opening: &[OpeningCard], mode: Mode) -> Driver {
        let preimported = CardRange {
            first: CardNo(BASE),
            last: CardNo(BASE + PREIMPORTED - 1),
            product: Product::Member as u16,
            store_id: TERMINALS[0].1,
            terminal_id: 1,
            stan: 1,
        };
        let mut cards = CardMap::default();
        let mut expected = BTreeMap::new();
        let mut total = (0, 0, 0);
        for o in opening {
            let card = Card {
                state: o.state,
                product: Product::Member as u16,
                store_id: preimported.store_id,
                cash_minor: o.cash_minor,
                bonus_minor: o.bonus_minor,
                held_minor: 0,
                first_load_date: 20261101,
                last_activity_date: 20261101,
                ..Card::new(Product::Member as u16, preimported.store_id, o.state)
            };
            let no = CardNo(BASE + u64::from(o.slot) % PREIMPORTED);
            // A later opening entry for the same slot replaces the earlier one.
            if let Some(old) = cards.insert(no, card) {
                total.0 -= old.cash_minor;
                total.1 -= old.bonus_minor;
            }
            expected.insert(no, (card.cash_minor, card.bonus_minor, 0));
            total.0 += card.cash_minor;
            total.1 += card.bonus_minor;
        }
        let persisted_cards = cards.iter().map(|(k, v)| (*k, *v)).collect();
        let engine = Engine::restore(
            IdSource::new(0, 1, 0),
            cards,
            vec![preimported],
            HashMap::new(),
            HashMap::new(),
            HashMap::new(),
        );
        Driver {
            engine,
            mode,
            ctx: Context {
                now_ms: START_MS,
                business_date: date_from_days(FIRST_DAY),
                batch_id: 1,
                catalog_version: 0,
            },
            day: FIRST_DAY,
            stans: [1; 3],
            reuse_next: None,
            sent: Vec::new(),
            postings: Vec::new(),
            ranges: vec![preimported],
            answered: HashMap::new(),
            reversed_unseen: HashSet::new(),
            persisted_cards,
            disk_txns: HashMap::new(),
            disk_traces: HashMap::new(),
            journal_ids: HashSet::new(),
            max_txn_id: 0,
            expected,
            expected_total: total,
            stats: Stats::default(),
        }
    }

    /// The transaction operations mean by `txn`, with its card: below 128 one of the last
    /// eight postings of the kinds `wanted`, below 250 any posting (recent ones more often),
    /// otherwise an id that names nothing.
    pub fn pick_txn(&self, txn: u8, wanted: &[TxnKind]) -> (u64, Option<CardNo>) {
        let of_kind: Vec<&JournalEntry> =
            self.postings.iter().rev().filter(|e| wanted.contains(&e.kind)).take(8).collect();
        let pick = match txn {
            0..=127 if !of_kind.is_empty() => Some(*of_kind[usize::from(txn) % of_kind.len()]),
            0..=249 if !self.postings.is_empty() => {
                let len = self.postings.len();
                let back = if txn < 192 { usize::from(txn) % len.min(16) } else { usize::from(txn) % len };
                Some(self.postings[len - 1 - back])
            }
            250 => return (0, None),
            _ => return (1_000_000_000 + u64::from(txn), None),
        };
        pick.map_or((u64::from(txn), None), |e| (e.txn_id, Some(e.card)))
    }

    /// The card an operation naming an original means by `card`: below 160 the original's
    /// own card (most requests name the right card), otherwise [`card_no`].
    fn card_of(card: u8, original: Option<CardNo>) -> CardNo {
        match original {
            Some(no) if card < 160 => no,
            _ => card_no(card),
        }
    }

    /// The terminal and header of the next command: a new trace number of `term`, or the
    /// reused one `ReuseNextStan` asked for, with the terminal that used it.
    fn next_header(&mut self, term: usize) -> (usize, Header) {
        let local_time = LocalTime(20261122093005);
        if let Some(key) = self.reuse_next.take() {
            let term = TERMINALS.iter().position(|(id, _)| *id == key.terminal_id).expect("a harness terminal");
            return (term, Header { flags: 0, terminal_id: key.terminal_id, stan: key.stan, local_time });
        }
        let stan = self.stans[term];
        self.stans[term] += 1;
        (term, Header { flags: 0, terminal_id: TERMINALS[term].0, stan, local_time })
    }

    /// The terminal a reversal asked of terminal `term` is sent from, and the original trace
    /// number, amount and card it names.
    fn reversal_target(&self, term: usize, original: StanRef) -> (usize, u32, i64, Option<CardNo>) {
        let terminal_id = TERMINALS[term].0;
        match original {
            StanRef::Ahead(n) => (term, self.stans[term] + u32::from(n), 100, None),
            StanRef::Posting(n) => {
                let reversible =
                    [TxnKind::SellCard, TxnKind::Load, TxnKind::Sale, TxnKind::Hold, TxnKind::Capture, TxnKind::Refund];
                let recent: Vec<&JournalEntry> =
                    self.postings.iter().rev().filter(|e| reversible.contains(&e.kind)).take(8).collect();
                let Some(e) = recent.get(usize::from(n) % recent.len().max(1)) else {
                    return (term, 0, 100, None);
                };
                let from = TERMINALS.iter().position(|(id, _)| *id == e.terminal_id).unwrap_or(term);
                (from, e.stan, e.amount_minor, Some(e.card))
            }
            StanRef::Back(n) => {
                let own: Vec<&Sent> = self.sent.iter().filter(|s| s.header.terminal_id == terminal_id).collect();
                if own.is_empty() {
                    return (term, 0, 100, None);
                }
                let s = own[own.len() - 1 - usize::from(n) % own.len()];
                let amount = s.request.amount_minor().unwrap_or(0);
                (term, s.header.stan, amount, s.request.card())
            }
        }
    }

    /// Applies one operation and checks what concerns the command alone: the trace rules (T7,
    /// T8), that a decline posts nothing and that the reply and effects report the posting.
    /// The state-wide invariants are [`Driver::check_state`]'s; `Err` names the broken rule.
    pub fn step(&mut self, op: &Op) -> Result<Step, String> {
        let t = |term: u8| usize::from(term) % TERMINALS.len();
        let (term, request) = match *op {
            Op::Import { term, first, len, product, store } => {
                let first = BASE + u64::from(first) % CARD_SLOTS;
                let last = if len >= 250 { first.saturating_sub(1) } else { first + u64::from(len % 24) };
                let store_id = STORES[usize::from(store) % STORES.len()];
                let request = Request::ImportRange { first: CardNo(first), last: CardNo(last), product, store_id };
                (t(term), request)
            }
            Op::Sell { term, card, amount, method } => {
                (t(term), Request::SellCard { card: card_no(card), amount_minor: amount, method })
            }
            Op::Sale { term, card, amount, category, flags } => (
                t(term),
                Request::Sale {
                    card: card_no(card),
                    amount_minor: amount,
                    category,
                    flags,
                    verification: Verification::NONE,
                },
            ),
            Op::Load { term, card, amount, method } => {
                (t(term), Request::Load { card: card_no(card), amount_minor: amount, method })
            }
            Op::Hold { term, card, amount, category } => (
                t(term),
                Request::Hold { card: card_no(card), amount_minor: amount, category, verification: Verification::NONE },
            ),
            Op::Capture { term, card, txn, amount } => {
                let (hold_txn_id, orig_card) = self.pick_txn(txn, &[TxnKind::Hold]);
                let card = Self::card_of(card, orig_card);
                (t(term), Request::Capture { card, hold_txn_id, amount_minor: amount })
            }
            Op::Void { term, card, txn } => {
                let (original_txn_id, orig_card) = self.pick_txn(txn, &[TxnKind::Sale, TxnKind::Load, TxnKind::Hold]);
                (t(term), Request::Void { card: Self::card_of(card, orig_card), original_txn_id })
            }
            Op::Refund { term, card, txn, amount } => {
                let (original_txn_id, orig_card) = self.pick_txn(txn, &[TxnKind::Sale, TxnKind::Capture]);
                let card = Self::card_of(card, orig_card);
                (t(term), Request::Refund { card, original_txn_id, amount_minor: amount })
            }
            Op::Reversal { term, card, original, amount } => {
                let (from, original_stan, orig_amount, orig_card) = self.reversal_target(t(term), original);
                let amount_minor = amount.unwrap_or(orig_amount);
                (from, Request::Reversal { card: Self::card_of(card, orig_card), original_stan, amount_minor })
            }
            Op::Balance { term, card } => (t(term), Request::Balance { card: card_no(card) }),
            Op::Retransmit { back, flag } => {
                let Some(s) =
                    self.sent.len().checked_sub(1).map(|last| self.sent[last - usize::from(back) % (last + 1)])
                else {
                    return Ok(Step { reply: Reply::None, effects: FxSnapshot::default() });
                };
                let mut header = s.header;
                if flag {
                    header.flags |= FLAG_RETRANSMIT;
                }
                self.stats.retransmissions += 1;
                return self.send(s.term, header, s.request);
            }
            Op::ReuseNextStan { back } => {
                if let Some(last) = self.sent.len().checked_sub(1) {
                    let h = self.sent[last - usize::from(back) % (last + 1)].header;
                    self.reuse_next = Some(TraceKey { terminal_id: h.terminal_id, stan: h.stan });
                }
                return Ok(Step { reply: Reply::None, effects: FxSnapshot::default() });
            }
            Op::NextDay => {
                self.day += 1;
                self.ctx.business_date = date_from_days(self.day);
                self.ctx.now_ms += 86_400_000;
                return Ok(Step { reply: Reply::None, effects: FxSnapshot::default() });
            }
            Op::Tick { ms } => {
                self.ctx.now_ms += i64::from(ms);
                return Ok(Step { reply: Reply::None, effects: FxSnapshot::default() });
            }
            Op::Evict { age_ms, max_cached, lag, budget } => {
                if self.mode == Mode::Disk {
                    let materialized = self.ctx.batch_id.saturating_sub(u64::from(lag % 4));
                    self.engine.evict(
                        self.ctx.now_ms - i64::from(age_ms),
                        usize::from(max_cached),
                        materialized,
                        usize::from(budget),
                    );
                }
                return Ok(Step { reply: Reply::None, effects: FxSnapshot::default() });
            }
            Op::Restart { tail } => {
                if self.mode == Mode::Disk {
                    self.restart(tail);
                }
                return Ok(Step { reply: Reply::None, effects: FxSnapshot::default() });
            }
        };
        let (term, header) = self.next_header(term);
        self.send(term, header, request)
    }

    /// Rebuilds the engine from the persisted cards, ranges and records, as recovery does.
    fn restart(&mut self, tail: bool) {
        self.stats.restarts += 1;
        let cards: CardMap = self.persisted_cards.iter().map(|(k, v)| (*k, *v)).collect();
        let mut disk_max_stan: HashMap<u32, u32> = HashMap::new();
        for key in self.disk_traces.keys() {
            let max = disk_max_stan.entry(key.terminal_id).or_insert(key.stan);
            *max = (*max).max(key.stan);
        }
        let (txns, traces) =
            if tail { (self.disk_txns.clone(), self.disk_traces.clone()) } else { (HashMap::new(), HashMap::new()) };
        self.engine = Engine::restore(
            IdSource::new(0, 1, self.max_txn_id),
            cards,
            self.ranges.clone(),
            txns,
            traces,
            disk_max_stan,
        );
    }

    fn send(&mut self, term: usize, header: Header, request: Request) -> Result<Step, String> {
        self.stats.commands += 1;
        let reply = match request {
            Request::ImportRange { first, last, product, store_id } => {
                Reply::Import(self.import(header, first, last, product, store_id))
            }
            _ => return self.apply(term, header, request),
        };
        self.ctx.batch_id += 1;
        self.ctx.now_ms += 1;
        self.sent.push(Sent { term, header, request, reply });
        Ok(Step { reply, effects: FxSnapshot::default() })
    }

    /// L1: a range import as the server does it (ranges are not the engine's records).
    fn import(&mut self, header: Header, first: CardNo, last: CardNo, product: u16, store_id: u32) -> ImportRangeReply {
        let range = CardRange { first, last, product, store_id, terminal_id: header.terminal_id, stan: header.stan };
        let decline = |code| ImportRangeReply { code, card_count: 0 };
        if let Some(seen) = self.ranges.iter().find(|r| r.terminal_id == header.terminal_id && r.stan == header.stan) {
            return if *seen == range {
                ImportRangeReply { code: ResponseCode::Approved, card_count: seen.card_count() }
            } else {
                decline(ResponseCode::TraceReused)
            };
        }
        match check_import(&self.ranges, &range) {
            Ok(card_count) => {
                self.ranges.push(range);
                self.engine.add_range(range);
                ImportRangeReply { code: ResponseCode::Approved, card_count }
            }
            Err(code) => decline(code),
        }
    }

    fn apply(&mut self, term: usize, header: Header, request: Request) -> Result<Step, String> {
        let key = TraceKey { terminal_id: header.terminal_id, stan: header.stan };
        let expect = if validate(&request).is_err() {
            Expect::Invalid
        } else if let Some((seen, reply)) = self.answered.get(&key) {
            if *seen == request {
                Expect::Retransmission(*reply)
            } else {
                Expect::Reused
            }
        } else if self.reversed_unseen.contains(&key) {
            Expect::Reversed
        } else {
            Expect::Fresh
        };
        let cmd = Command::new(header, TERMINALS[term].1, request);
        if self.mode == Mode::Disk {
            self.provide_needs(&cmd)?;
        }
        let mut fx = Effects::default();
        let reply = self.engine.apply(self.ctx, &cmd, &mut fx);
        let effects = FxSnapshot::of(&fx);
        let step = Step { reply: Reply::Card(reply), effects };
        let context = || format!("{request:?} from {}/{} answered {reply:?} with {:?}", key.terminal_id, key.stan, fx);

        self.check_trace_rules(expect, &reply, &step.effects).map_err(|e| format!("{e}: {}", context()))?;
        self.check_reply_and_effects(&cmd, &reply, &step.effects).map_err(|e| format!("{e}: {}", context()))?;
        self.persist(&step.effects);

        // The harness's own account of the trace rules, updated as the engine should have.
        if expect != Expect::Invalid && request.msg_type() != MsgType::Balance {
            self.answered.entry(key).or_insert((request, reply));
        }
        if let Request::Reversal { original_stan, .. } = request {
            let orig = TraceKey { terminal_id: key.terminal_id, stan: original_stan };
            if expect == Expect::Fresh
                && reply.code.is_approved()
                && step.effects.journal.is_empty()
                && !self.answered.contains_key(&orig)
            {
                self.reversed_unseen.insert(orig);
            }
        }
        self.postings.extend(step.effects.journal.iter().copied());
        self.stats.approved += usize::from(reply.code.is_approved());
        self.stats.postings += step.effects.journal.len();
        self.sent.push(Sent { term, header, request, reply: step.reply });
        self.ctx.batch_id += 1;
        self.ctx.now_ms += 1;
        Ok(step)
    }

    /// Answers what the command needs from disk, as a partition does before applying it.
    fn provide_needs(&mut self, cmd: &Command) -> Result<(), String> {
        // Each answer either satisfies a need or marks it absent, and a command names at most
        // its own trace, one original trace, a transaction and that transaction's reference.
        for _ in 0..8 {
            match self.engine.need(cmd) {
                None => return Ok(()),
                Some(Need::Trace(key)) => {
                    self.stats.fetched += 1;
                    self.engine.provide_trace(key, self.disk_traces.get(&key).copied(), self.ctx.now_ms);
                }
                Some(Need::Txn(id)) => {
                    self.stats.fetched += 1;
                    self.engine.provide_txn(id, self.disk_txns.get(&id).copied(), self.ctx.now_ms);
                }
            }
        }
        Err(format!("`need` keeps asking for more after 8 answers for {cmd:?}"))
    }

    /// T7, T8: the answer the trace rules call for.
    fn check_trace_rules(&self, expect: Expect, reply: &CardReply, fx: &FxSnapshot) -> Result<(), String> {
        let code = |want: ResponseCode| {
            if reply.code == want {
                Ok(())
            } else {
                Err(format!("expected {want} ({expect:?})"))
            }
        };
        match expect {
            Expect::Fresh => Ok(()),
            Expect::Invalid => {
                code(ResponseCode::InvalidField)?;
                // Nothing about the card was seen, so nothing is remembered.
                if !fx.is_empty() {
                    return Err("an invalid request left effects".into());
                }
                Ok(())
            }
            Expect::Retransmission(original) => {
                if *reply != original {
                    return Err(format!("T8: retransmission answered differently from {original:?}"));
                }
                if !fx.is_empty() {
                    return Err("T8: a retransmission left effects".into());
                }
                Ok(())
            }
            Expect::Reused => {
                code(ResponseCode::TraceReused)?;
                if !fx.is_empty() {
                    return Err("T8: a reused trace number left effects".into());
                }
                Ok(())
            }
            Expect::Reversed => {
                code(ResponseCode::OriginalReversed)?;
                if !fx.journal.is_empty() || !fx.cards.is_empty() {
                    return Err("T7: an original reversed before it arrived posted".into());
                }
                Ok(())
            }
        }
    }

    /// A decline posts nothing; a posting is one journal entry for the command's card, with a
    /// new id, and the reply reports it and the card's new buckets.
    fn check_reply_and_effects(&self, cmd: &Command, reply: &CardReply, fx: &FxSnapshot) -> Result<(), String> {
        let card_no = cmd.request.card().expect("card requests only");
        if !reply.code.is_approved() && (!fx.journal.is_empty() || !fx.cards.is_empty() || !fx.txns.is_empty()) {
            return Err("a decline posted".into());
        }
        if fx.journal.len() > 1 {
            return Err("one command made several journal entries".into());
        }
        if let Some(entry) = fx.journal.first() {
            if entry.card != card_no || entry.terminal_id != cmd.header.terminal_id || entry.stan != cmd.header.stan {
                return Err("the journal entry names another card or request".into());
            }
            if entry.txn_id == 0 || self.journal_ids.contains(&entry.txn_id) {
                return Err(format!("journal id {} is not new", entry.txn_id));
            }
            if reply.txn_id != entry.txn_id || reply.amount_minor != entry.amount_minor {
                return Err("the reply does not report the posting".into());
            }
            let after = fx.cards.iter().rev().find(|(c, _)| *c == card_no).map(|(_, card)| *card);
            let buckets = match after {
                Some(Some(c)) => (c.cash_minor, c.bonus_minor, c.held_minor),
                Some(None) if reply.state == CardState::Stock => (0, 0, 0),
                _ => return Err("a posting without the card's new state in the effects".into()),
            };
            if (reply.cash_minor, reply.bonus_minor, reply.held_minor) != buckets {
                return Err("the reply's buckets are not the card's".into());
            }
        } else if fx.cards.iter().any(|(c, _)| *c == card_no) {
            return Err("the card changed without a journal entry".into());
        }
        // Later writes of a record supersede earlier ones: the last one is what the engine has.
        let mut last_writes: HashMap<u64, Txn> = HashMap::new();
        last_writes.extend(fx.txns.iter().copied());
        for (id, txn) in &last_writes {
            if self.engine.txn(*id) != Some(txn) {
                return Err(format!("transaction {id} in the effects is not the engine's"));
            }
        }
        Ok(())
    }

    /// Folds the effects into the persisted state and the journal sums.
    fn persist(&mut self, fx: &FxSnapshot) {
        for (card_no, card) in &fx.cards {
            match card {
                Some(card) => self.persisted_cards.insert(*card_no, *card),
                None => self.persisted_cards.remove(card_no),
            };
        }
        for e in &fx.journal {
            self.journal_ids.insert(e.txn_id);
            self.max_txn_id = self.max_txn_id.max(e.txn_id);
            let sum = self.expected.entry(e.card).or_default();
            sum.0 += e.cash_delta_minor;
            sum.1 += e.bonus_delta_minor;
            sum.2 += e.held_delta_minor;
            self.expected_total.0 += e.cash_delta_minor;
            self.expected_total.1 += e.bonus_delta_minor;
            self.expected_total.2 += e.held_delta_minor;
        }
        self.disk_txns.extend(fx.txns.iter().copied());
        self.disk_traces.extend(fx.traces.iter().copied());
    }

    /// The state-wide invariants: buckets (T1, T4), conservation (S5, S9) and the effects
    /// describing the engine's cards.
    pub fn check_state(&self) -> Result<(), String> {
        self.check_buckets()?;
        self.check_conservation()?;
        self.check_persisted()
    }

    /// T1, T4: no bucket negative; holds reserve value the card has.
    pub fn check_buckets(&self) -> Result<(), String> {
        for (card_no, c) in self.engine.cards() {
            if c.cash_minor < 0 || c.bonus_minor < 0 || c.held_minor < 0 {
                return Err(format!("card {card_no} has a negative bucket: {c:?}"));
            }
            if c.held_minor > c.cash_minor + c.bonus_minor {
                return Err(format!("T4: card {card_no} holds more than its value: {c:?}"));
            }
        }
        Ok(())
    }

    /// S5, S9: every card's buckets are its opening buckets plus its journal deltas, and the
    /// same holds for the totals over all cards.
    pub fn check_conservation(&self) -> Result<(), String> {
        let mut total = (0, 0, 0);
        for (card_no, c) in self.engine.cards() {
            let buckets = (c.cash_minor, c.bonus_minor, c.held_minor);
            let expected = self.expected.get(card_no).copied().unwrap_or_default();
            if buckets != expected {
                return Err(format!("S9: card {card_no} has {buckets:?}, opening + journal says {expected:?}"));
            }
            total.0 += c.cash_minor;
            total.1 += c.bonus_minor;
            total.2 += c.held_minor;
        }
        // A card without a record (never sold, or its sale undone) holds nothing.
        for (card_no, sum) in &self.expected {
            if self.engine.card(*card_no).is_none() && *sum != (0, 0, 0) {
                return Err(format!("S9: card {card_no} has no record but its journal sums to {sum:?}"));
            }
        }
        if total != self.expected_total {
            return Err(format!("S5: cards hold {total:?} in all, opening + journal says {:?}", self.expected_total));
        }
        Ok(())
    }

    /// The cards the effects describe are the engine's cards: what the store persists is what
    /// the engine holds.
    pub fn check_persisted(&self) -> Result<(), String> {
        let engine_cards: BTreeMap<CardNo, Card> = self.engine.cards().map(|(k, v)| (*k, *v)).collect();
        if engine_cards != self.persisted_cards {
            return Err("the cards persisted from the effects differ from the engine's".into());
        }
        Ok(())
    }
}

/// Runs `ops` from `opening` in `mode`, checking every invariant after every step.
pub fn run(opening: &[OpeningCard], ops: &[Op], mode: Mode) -> Result<(Vec<Step>, Stats), String> {
    let mut driver = Driver::new(opening, mode);
    let mut steps = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let step = driver.step(op).map_err(|e| format!("step {i} {op:?}: {e}"))?;
        driver.check_state().map_err(|e| format!("step {i} {op:?} answered {:?}: {e}", step.reply))?;
        steps.push(step);
    }
    Ok((steps, driver.stats))
}

/// Everything: `ops` run twice in memory and once with eviction and restarts; each run keeps
/// every invariant, and all three give identical replies and effects.
pub fn check_ops(opening: &[OpeningCard], ops: &[Op]) -> Result<Stats, String> {
    let (first, stats) = run(opening, ops, Mode::Memory)?;
    let (again, _) = run(opening, ops, Mode::Memory)?;
    compare(&first, &again, "replay from scratch")?;
    let (disk, disk_stats) = run(opening, ops, Mode::Disk)?;
    compare(&first, &disk, "replay with eviction and restarts")?;
    Ok(Stats { fetched: disk_stats.fetched, restarts: disk_stats.restarts, ..stats })
}

fn compare(a: &[Step], b: &[Step], what: &str) -> Result<(), String> {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if x != y {
            return Err(format!("{what}: step {i} differs:\n  {x:?}\n  {y:?}"));
        }
    }
    Ok(())
}

/// Reads bytes as an opening state and operations; every byte string means something, and a
/// byte string cut short means the same operations up to the cut.
pub fn input_from_bytes(data: &[u8]) -> (Vec<OpeningCard>, Vec<Op>) {
    let mut r = ByteReader { data, at: 0 };
    let opening = (0..r.u8() % 8)
        .map(|_| OpeningCard {
            slot: match r.u8() {
                b @ 0..=191 => b % HOT_CARDS as u8,
                b => b % PREIMPORTED as u8,
            },
            state: OPENING_STATES[usize::from(r.u8()) % OPENING_STATES.len()],
            cash_minor: opening_amount(r.u8(), r.u8()),
            bonus_minor: opening_amount(r.u8(), r.u8()),
        })
        .collect();
    let mut ops = Vec::new();
    while !r.is_empty() {
        let tag = r.u8();
        let term = tag >> 4;
        let op = match tag % 16 {
            0 | 1 => Op::Sale { term, card: r.u8(), amount: r.amount(), category: r.u8() % 10, flags: r.flags() },
            2 => Op::Load { term, card: r.u8(), amount: r.amount(), method: r.u8() % 7 },
            3 => Op::Sell { term, card: r.u8(), amount: r.amount(), method: r.u8() % 7 },
            4 => Op::Hold { term, card: r.u8(), amount: r.amount(), category: r.u8() % 10 },
            5 => Op::Capture { term, card: r.u8(), txn: r.u8(), amount: r.amount() },
            6 => Op::Void { term, card: r.u8(), txn: r.u8() },
            7 => Op::Refund { term, card: r.u8(), txn: r.u8(), amount: r.amount() },
            8 | 9 => {
                let card = r.u8();
                let which = r.u8();
                let original = match which {
                    0..=99 => StanRef::Back(which % 16),
                    100..=199 => StanRef::Posting(which),
                    _ => StanRef::Ahead(which % 4),
                };
                let amount = if r.u8() < 192 { None } else { Some(r.amount()) };
                Op::Reversal { term, card, original, amount }
            }
            10 => Op::Balance { term, card: r.u8() },
            11 => Op::Retransmit { back: r.u8(), flag: term & 1 == 1 },
            12 => Op::Import { term, first: r.u8(), len: r.u8(), product: u16::from(r.u8() % 10), store: r.u8() },
            13 => Op::ReuseNextStan { back: r.u8() },
            14 => match r.u8() % 4 {
                0 => Op::NextDay,
                _ => Op::Tick { ms: u32::from(r.u8()) * 1_000 },
            },
            _ => match r.u8() % 4 {
                0 => Op::Restart { tail: term & 1 == 1 },
                _ => Op::Evict { age_ms: u32::from(r.u8()) * 100, max_cached: r.u8(), lag: r.u8(), budget: r.u8() },
            },
        };
        ops.push(op);
    }
    (opening, ops)
}

/// An opening bucket: mostly small, some near the largest balance.
fn opening_amount(tag: u8, value: u8) -> i64 {
    match tag % 8 {
        0 => 0,
        1..=4 => i64::from(value) * 100,
        5 => i64::from(value) * 10_000 + i64::from(tag),
        6 => i64::from(value) + 1,
        _ => MAX_AMOUNT_MINOR - i64::from(value) * 100,
    }
}

struct ByteReader<'a> {
    data: &'a [u8],
    at: usize,
}

impl ByteReader<'_> {
    fn is_empty(&self) -> bool {
        self.at >= self.data.len()
    }

    /// The next byte, 0 past the end.
    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    /// Sale flags: mostly valid bit sets (T10), sometimes reserved bits.
    fn flags(&mut self) -> u8 {
        let b = self.u8();
        if b >= 248 {
            b
        } else {
            b % 8
        }
    }

    /// An amount: mostly whole yuan in the range of the balances, some odd fen, some edges.
    fn amount(&mut self) -> i64 {
        let tag = self.u8();
        match tag {
            0..=179 => (i64::from(tag) + 1) * 100,
            180..=209 => i64::from(self.u16()) * 100,
            210..=229 => i64::from(self.u16()),
            230..=249 => i64::from(self.u8()),
            250 => 0,
            251 => -100,
            252 => MAX_AMOUNT_MINOR,
            253 => MAX_AMOUNT_MINOR + 100,
            254 => i64::MIN,
            _ => i64::MAX,
        }
    }
}
