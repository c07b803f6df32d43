//! The card rules as a pure state machine.
//!
//! No IO and no clock: the partition loop passes the time and business date in with each
//! batch, applies commands one by one, then persists the [`Effects`] they produced as one
//! group commit before any reply leaves. Replaying the same commands on the same state gives
//! the same replies and effects.

mod admin;
pub mod catalog;
pub mod days;
mod housekeeping;
pub mod member;
pub mod model;
pub mod recent;
pub mod roles;
pub mod rules;
mod transfer;

use std::collections::{HashMap, HashSet};

use protocol::{
    CardNo, CardReply, CardState, Category, Header, MsgType, PaymentMethod, Request, ResponseCode, SaleFlags,
    MAX_AMOUNT_MINOR, MAX_RANGE_CARDS,
};

pub use housekeeping::Housekeeping;
pub use model::*;
pub use recent::Recent;
pub use rules::{Pin, PinKey, Rules};
pub use transfer::{Moved, Step};

use catalog::{Catalog, PayFirst, ProductSettings};
use rules::{apply_rate, in_birthday_window};

/// The most value one card may hold, in minor units.
pub const MAX_BALANCE_MINOR: i64 = MAX_AMOUNT_MINOR;
/// Loads are whole yuan (V1).
pub const LOAD_UNIT_MINOR: i64 = 100;
/// Bit of a journal entry's `sale_flags` (never of a request's): a staff member's purchase on
/// their own card, rung up by themselves (T9); settlement lists these.
pub const JOURNAL_SELF_USE: u8 = 1 << 7;

/// Time passed into a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    /// Switch time, ms since the Unix epoch.
    pub now_ms: i64,
    /// The business date postings are stamped with (S1).
    pub business_date: BusinessDate,
    /// The group commit this batch will be written in: what the engine remembers of a
    /// record's last write, so it keeps the record in memory until that commit is on disk.
    pub batch_id: u64,
    /// Version of the product catalog in force, stamped on every journal entry.
    pub catalog_version: u32,
}

/// Something a command needs that is not in memory but may be on disk. The partition fetches
/// it and hands it over (`provide_trace`, `provide_txn`) before applying the command: the
/// engine itself never does IO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Trace(TraceKey),
    Txn(u64),
}

/// One request for the engine, with what the session knows about its sender.
#[derive(Clone, Copy, Debug)]
pub struct Command {
    pub header: Header,
    /// The store the terminal signed on at.
    pub store_id: u32,
    pub request: Request,
    /// The PIN the request carried, opened by the session (T2).
    pub pin: Option<Pin>,
    /// An operator the session verified as allowed to override a restriction (R2) or approve
    /// a card return (L10, O1); 0: no approval.
    pub approver_id: u32,
    /// The operator of an administrative request, verified by the session with its role
    /// (O1); 0 for a terminal's own request.
    pub operator_id: u32,
    /// The new PIN an administrative request carried, opened by the session (L3).
    pub new_pin: Option<Pin>,
}

impl Command {
    /// What a housekeeping posting (S7) is journaled as coming from: no terminal, no
    /// operator, the card's own store.
    fn housekeeping(store_id: u32) -> Command {
        Command::new(Header::default(), store_id, Request::Echo)
    }

    /// A request without PIN, operator or approval.
    pub fn new(header: Header, store_id: u32, request: Request) -> Command {
        Command { header, store_id, request, pin: None, approver_id: 0, operator_id: 0, new_pin: None }
    }
}

/// What applying commands changed and must be persisted before any of their replies is sent.
/// Later entries for the same key supersede earlier ones.
#[derive(Debug, Default)]
pub struct Effects {
    /// New state of a card; `None` deletes it (a sale undone returns the number to stock).
    pub cards: Vec<(CardNo, Option<Card>)>,
    pub journal: Vec<JournalEntry>,
    pub txns: Vec<(u64, Txn)>,
    pub traces: Vec<(TraceKey, Trace)>,
    /// A card's debits today in a category with a per-day limit (R3): (card, category) →
    /// (business date, gross minor units).
    pub day_spend: Vec<((CardNo, u8), (BusinessDate, i64))>,
    /// A card's points by the month they were earned (K5); empty: none left.
    pub point_lots: Vec<(CardNo, PointLots)>,
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.cards.is_empty()
            && self.journal.is_empty()
            && self.txns.is_empty()
            && self.traces.is_empty()
            && self.day_spend.is_empty()
            && self.point_lots.is_empty()
    }

    pub fn clear(&mut self) {
        self.cards.clear();
        self.journal.clear();
        self.txns.clear();
        self.traces.clear();
        self.day_spend.clear();
        self.point_lots.clear();
    }
}

/// Hands out ids (of transactions, of logged group commits) that are unique across partitions
/// and above every id already stored, whatever the partition count was when those were
/// written. Partition `p` of `n` gets `base + p + k·n`, so `id % n == p`.
#[derive(Clone, Copy, Debug)]
pub struct IdSource {
    next: u64,
    step: u64,
}

impl IdSource {
    pub fn new(partition: usize, partitions: usize, max_existing: u64) -> IdSource {
        let step = partitions as u64;
        let base = (max_existing / step + 1) * step;
        IdSource { next: base + partition as u64, step }
    }

    pub fn take(&mut self) -> u64 {
        let id = self.next;
        self.next += self.step;
        id
    }
}

/// Checks every field of a card request for range (code `invalid_field`): the first check
/// and the only one whose decline is not remembered, because nothing about the card was seen.
pub fn validate(request: &Request) -> Result<(), ResponseCode> {
    let positive = |amount: i64| (1..=MAX_AMOUNT_MINOR).contains(&amount);
    let whole_yuan = |amount: i64| amount % LOAD_UNIT_MINOR == 0;
    let category = |c: u8| Category::from_u8(c).is_some();
    let method = |m: u8| PaymentMethod::from_u8(m).is_some();
    let ok = match *request {
        Request::Balance { .. } | Request::Void { .. } => true,
        Request::Sale { amount_minor, category: c, flags, .. } => {
            positive(amount_minor) && category(c) && SaleFlags(flags).is_valid()
        }
        Request::Hold { amount_minor, category: c, .. } => positive(amount_minor) && category(c),
        // V1: loads are whole yuan.
        Request::Load { amount_minor, method: m, .. } => {
            positive(amount_minor) && whole_yuan(amount_minor) && method(m)
        }
        Request::SellCard { amount_minor, method: m, .. } => {
            (0..=MAX_AMOUNT_MINOR).contains(&amount_minor) && whole_yuan(amount_minor) && method(m)
        }
        Request::Capture { amount_minor, .. } | Request::Refund { amount_minor, .. } => positive(amount_minor),
        // A sold card's opening load may be zero, so may the amount of its reversal.
        Request::Reversal { amount_minor, .. } => (0..=MAX_AMOUNT_MINOR).contains(&amount_minor),
        Request::ImportRange { first, last, .. } => {
            first.is_valid()
                && last.is_valid()
                && first.digits() == last.digits()
                && first <= last
                && last.0 - first.0 < MAX_RANGE_CARDS
        }
        Request::SignOn { store_id } => store_id != 0,
        Request::OperatorSignOn { operator } => operator.operator_id != 0,
        // S2: today (0) or a calendar date; amounts are sums of amounts, never negative.
        Request::BatchTotals { business_date, totals } => {
            (business_date == 0 || rules::is_date(business_date)) && totals.amounts_minor.iter().all(|a| *a >= 0)
        }
        Request::Echo => true,
        // The largest id is the coordinator's own (its steps' trace records are kept under it).
        Request::ProvisionTerminal { terminal_id, role, .. } => {
            terminal_id != 0 && terminal_id != u32::MAX && protocol::TerminalRole::from_u8(role).is_some()
        }
        Request::SetTerminalState { terminal_id, enabled } => terminal_id != 0 && enabled <= 1,
        Request::SetOperator { operator, target_id, role, enabled, .. } => {
            operator.operator_id != 0
                && target_id != 0
                && protocol::OperatorRole::from_u8(role).is_some()
                && enabled <= 1
        }
        Request::SetProduct { operator, product, enabled, discount_bp, .. } => {
            operator.operator_id != 0 && Product::from_code(product).is_some() && enabled <= 1 && discount_bp < 10_000
        }
        Request::MemberQuery { operator, card } | Request::CardHistory { operator, card, .. } => {
            operator.operator_id != 0 && card.is_valid()
        }
        Request::ReplaceCard { operator, old_card, new_card, flags, method } => {
            operator.operator_id != 0
                && old_card.is_valid()
                && new_card.is_valid()
                && old_card != new_card
                && flags & !protocol::AdminFlags::KNOWN == 0
                && (method == 0 || PaymentMethod::from_u8(method).is_some())
        }
        Request::CardAdmin { operator, action, flags, value, original_txn_id, ticket, new_pin, .. } => {
            operator.operator_id != 0
                && flags & !protocol::AdminFlags::KNOWN == 0
                && protocol::AdminAction::from_u8(action)
                    .is_some_and(|action| admin::fields_valid(action, value, original_txn_id, ticket, &new_pin))
        }
    };
    let card_ok = request.card().is_none_or(CardNo::is_valid);
    if ok && card_ok {
        Ok(())
    } else {
        Err(ResponseCode::InvalidField)
    }
}

/// A decline carrying the card's state and balances when the card is known.
type Outcome = Result<CardReply, CardReply>;

/// One partition's cards and everything needed to answer for them.
#[derive(Debug, Default)]
pub struct Engine {
    cards: CardMap,
    /// Imported ranges, sorted by first number; the same list in every partition.
    ranges: Vec<CardRange>,
    txns: Recent<u64, Txn>,
    traces: Recent<TraceKey, Trace>,
    /// Per terminal, the largest trace number whose record may be on disk only. A trace
    /// number above it was never seen, so a new request costs no disk lookup.
    disk_max_stan: HashMap<u32, u32>,
    /// Looked up on disk for the command being applied and not found there.
    absent_traces: HashSet<TraceKey>,
    absent_txns: HashSet<u64>,
    ids: Option<IdSource>,
    rules: Rules,
    /// See [`Effects::day_spend`].
    day_spend: HashMap<(CardNo, u8), (BusinessDate, i64), foldhash::fast::RandomState>,
    /// Every hold still reserving value: its card and business date, so that housekeeping
    /// finds the ones to expire (T4) without reading every transaction.
    open_holds: std::collections::BTreeMap<u64, (CardNo, BusinessDate)>,
    /// The points of each card that has some, by the month they were earned (K5).
    point_lots: HashMap<CardNo, PointLots, foldhash::fast::RandomState>,
}

/// Most monthly lots of points a card keeps (a year's worth and some; K5). Beyond it the two
/// oldest merge into the newer one, which only ever lets points live longer.
pub const MAX_POINT_LOTS: usize = 15;

/// A card's points by the month they were earned (YYYYMM), oldest first; their sum is the
/// card's points. Points earned in a month lapse when the same month a year later has ended
/// (K5: a year after they were earned, counted in whole months).
pub type PointLots = Vec<(u32, i64)>;

impl Engine {
    pub fn new(ids: IdSource) -> Engine {
        Engine { ids: Some(ids), ..Engine::default() }
    }

    /// Sets the catalog and PIN key the engine applies (the core rules until then).
    pub fn set_rules(&mut self, rules: Rules) {
        self.rules = rules;
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Reserves memory for `records` transactions and as many trace records.
    pub fn reserve_cache(&mut self, records: usize) {
        self.txns.reserve_total(records);
        self.traces.reserve_total(records);
    }

    /// Rebuilds an engine from persisted state (recovery): every card, the transactions and
    /// trace records of the log tail (all on disk too), and for each terminal the largest
    /// trace number on disk.
    pub fn restore(
        ids: IdSource,
        cards: CardMap,
        ranges: Vec<CardRange>,
        txns: HashMap<u64, Txn>,
        traces: HashMap<TraceKey, Trace>,
        disk_max_stan: HashMap<u32, u32>,
    ) -> Engine {
        let mut engine = Engine { cards, disk_max_stan, ids: Some(ids), ..Engine::default() };
        ranges.into_iter().for_each(|r| engine.add_range(r));
        txns.into_iter().for_each(|(id, txn)| engine.txns.insert(id, txn, 0, 0));
        traces.into_iter().for_each(|(key, trace)| engine.traces.insert(key, trace, 0, 0));
        engine
    }

    /// Transactions and trace records held in memory.
    pub fn cached(&self) -> (usize, usize) {
        (self.txns.len(), self.traces.len())
    }

    /// What `cmd` needs from disk before it can be applied, one thing at a time (an answer
    /// may reveal the next need: a reversal's trace names its transaction).
    pub fn need(&self, cmd: &Command) -> Option<Need> {
        let trace_need = |key| self.trace_need(key);
        let txn_need = |txn_id| self.txn_need(txn_id);
        let own = TraceKey { terminal_id: cmd.header.terminal_id, stan: cmd.header.stan };
        if let Some(need) = trace_need(own) {
            return Some(need);
        }
        match cmd.request {
            Request::Capture { hold_txn_id: id, .. }
            | Request::Void { original_txn_id: id, .. }
            | Request::Refund { original_txn_id: id, .. } => txn_need(id),
            Request::CardAdmin { original_txn_id, .. } => txn_need(original_txn_id),
            Request::Reversal { original_stan, .. } => {
                let key = TraceKey { terminal_id: cmd.header.terminal_id, stan: original_stan };
                trace_need(key).or_else(|| match self.traces.get(&key) {
                    Some(Trace::Answered { reply, .. }) => txn_need(reply.txn_id),
                    _ => None,
                })
            }
            _ => None,
        }
    }

    fn track_hold(&mut self, txn_id: u64, txn: &Txn) {
        if txn.kind == TxnKind::Hold {
            if txn.status == TxnStatus::Posted {
                self.open_holds.insert(txn_id, (txn.card, txn.business_date));
            } else {
                self.open_holds.remove(&txn_id);
            }
        }
    }

    /// Restores the open holds (recovery): hold id, card, business date.
    pub fn restore_open_holds(&mut self, holds: impl IntoIterator<Item = (u64, CardNo, BusinessDate)>) {
        self.open_holds.extend(holds.into_iter().map(|(id, card, date)| (id, (card, date))));
    }

    /// Holds reserving value, by id: card and business date.
    pub fn open_holds(&self) -> impl Iterator<Item = (u64, CardNo, BusinessDate)> + '_ {
        self.open_holds.iter().map(|(id, (card, date))| (*id, *card, *date))
    }

    /// The trace record of `key` if it may be on disk only.
    fn trace_need(&self, key: TraceKey) -> Option<Need> {
        let on_disk = self.disk_max_stan.get(&key.terminal_id).is_some_and(|max| key.stan <= *max);
        (on_disk && !self.traces.contains(&key) && !self.absent_traces.contains(&key)).then_some(Need::Trace(key))
    }

    /// The transaction `txn_id` if it is not in memory, or the one it refers to (undoing a
    /// capture or refund touches its hold or sale too).
    fn txn_need(&self, txn_id: u64) -> Option<Need> {
        if txn_id == 0 || self.absent_txns.contains(&txn_id) {
            return None;
        }
        match self.txns.get(&txn_id) {
            None => Some(Need::Txn(txn_id)),
            Some(txn)
                if txn.ref_txn_id != 0
                    && !self.txns.contains(&txn.ref_txn_id)
                    && !self.absent_txns.contains(&txn.ref_txn_id) =>
            {
                Some(Need::Txn(txn.ref_txn_id))
            }
            Some(_) => None,
        }
    }

    /// What a step (see [`Step`]) needs from disk first: its own trace record, and for a
    /// transfer back the transfer it gives back.
    pub fn step_need(&self, key: TraceKey, step: &Step) -> Option<Need> {
        self.trace_need(key).or_else(|| match step {
            Step::TransferBack { transfer_txn_id, .. } => self.txn_need(*transfer_txn_id),
            _ => None,
        })
    }

    /// Hands over a trace record fetched from disk (`None`: not there).
    pub fn provide_trace(&mut self, key: TraceKey, trace: Option<Trace>, now_ms: i64) {
        match trace {
            Some(trace) => self.traces.insert(key, trace, now_ms, 0),
            None => {
                self.absent_traces.insert(key);
            }
        }
    }

    /// Hands over a transaction fetched from disk (`None`: not there).
    pub fn provide_txn(&mut self, txn_id: u64, txn: Option<Txn>, now_ms: i64) {
        match txn {
            Some(txn) => self.txns.insert(txn_id, txn, now_ms, 0),
            None => {
                self.absent_txns.insert(txn_id);
            }
        }
    }

    /// Drops from memory, at most `budget` of each, transactions and trace records written
    /// before `before_ms` (or beyond `max_cached` of each) once their last write is in the
    /// materialized state on disk (group commit ≤ `materialized`), where `need` finds them.
    pub fn evict(&mut self, before_ms: i64, max_cached: usize, materialized: u64, budget: usize) {
        self.txns.evict(before_ms, max_cached, materialized, budget, |_| {});
        let disk_max_stan = &mut self.disk_max_stan;
        self.traces.evict(before_ms, max_cached, materialized, budget, |key| {
            let max = disk_max_stan.entry(key.terminal_id).or_insert(key.stan);
            *max = (*max).max(key.stan);
        });
    }

    pub fn card(&self, card: CardNo) -> Option<&Card> {
        self.cards.get(&card)
    }

    pub fn cards(&self) -> impl Iterator<Item = (&CardNo, &Card)> {
        self.cards.iter()
    }

    pub fn txn(&self, txn_id: u64) -> Option<&Txn> {
        self.txns.get(&txn_id)
    }

    fn put_txn(&mut self, ctx: Context, txn_id: u64, txn: Txn, fx: &mut Effects) {
        self.track_hold(txn_id, &txn);
        self.txns.insert(txn_id, txn, ctx.now_ms, ctx.batch_id);
        fx.txns.push((txn_id, txn));
    }

    fn put_trace(&mut self, ctx: Context, key: TraceKey, trace: Trace, fx: &mut Effects) {
        self.traces.insert(key, trace, ctx.now_ms, ctx.batch_id);
        fx.traces.push((key, trace));
    }

    pub fn ranges(&self) -> &[CardRange] {
        &self.ranges
    }

    /// Adds an imported range (the import itself is checked by [`check_import`]).
    pub fn add_range(&mut self, range: CardRange) {
        if !self.ranges.contains(&range) {
            let at = self.ranges.partition_point(|r| r.first < range.first);
            self.ranges.insert(at, range);
        }
    }

    pub fn range_of(&self, card: CardNo) -> Option<&CardRange> {
        let at = self.ranges.partition_point(|r| r.first <= card);
        at.checked_sub(1).map(|i| &self.ranges[i]).filter(|r| r.contains(card))
    }

    /// Applies one card request (not sign-on, echo or range import) and returns its reply.
    /// What `need` asked for must have been provided first; anything not provided is taken
    /// as absent.
    pub fn apply(&mut self, ctx: Context, cmd: &Command, effects: &mut Effects) -> CardReply {
        let reply = self.apply_checked(ctx, cmd, effects);
        self.forget_absent();
        reply
    }

    /// Forgets what was found absent for the current command (done by `apply`; call it when
    /// a command is dropped without being applied).
    pub fn forget_absent(&mut self) {
        self.absent_traces.clear();
        self.absent_txns.clear();
    }

    fn apply_checked(&mut self, ctx: Context, cmd: &Command, effects: &mut Effects) -> CardReply {
        let request = &cmd.request;
        let Some(card_no) = request.card() else {
            return CardReply::code_only(ResponseCode::UnknownMessageType);
        };
        if let Err(code) = validate(request) {
            return CardReply::code_only(code);
        }
        let key = TraceKey { terminal_id: cmd.header.terminal_id, stan: cmd.header.stan };
        let digest = request_digest(request);
        let msg_type = request.msg_type();
        let outcome = match self.traces.get(&key) {
            // T8: the same request again gets its original answer and posts nothing.
            Some(Trace::Answered { digest: seen, reply, .. }) if *seen == digest => return *reply,
            Some(Trace::Answered { .. }) => return self.decline(card_no, ResponseCode::TraceReused),
            // T7: this trace number was reversed before it arrived.
            Some(Trace::ReversedUnseen { .. }) => Err(self.decline(card_no, ResponseCode::OriginalReversed)),
            None => self.execute(ctx, cmd, card_no, effects),
        };
        let reply = outcome.unwrap_or_else(|declined| declined);
        // Balance inquiries post nothing, so there is nothing a retransmission could double.
        if msg_type != MsgType::Balance {
            self.put_trace(ctx, key, Trace::Answered { digest, msg_type, card: card_no, reply }, effects);
        }
        reply
    }

    fn execute(&mut self, ctx: Context, cmd: &Command, card_no: CardNo, fx: &mut Effects) -> Outcome {
        let catalog = self.rules.catalog.clone();
        match cmd.request {
            Request::Balance { .. } => {
                let card = self.sold_card(card_no)?;
                Ok(self.with_tier(&card, card.reply(ResponseCode::Approved, 0, 0)))
            }
            Request::SellCard { amount_minor, method, .. } => {
                self.sell_card(ctx, cmd, card_no, amount_minor, method, fx)
            }
            Request::Load { amount_minor, method, .. } => {
                let card = self.active_card(ctx, card_no)?;
                let settings = self.settings(card_no, &card, &catalog)?;
                self.check_registered(card_no, &card, settings)?;
                if !settings.reloadable && card.first_load_date != 0 {
                    return Err(self.decline(card_no, ResponseCode::NotReloadable));
                }
                let posting = self.load_posting(ctx, card_no, &card, settings, amount_minor, method)?;
                Ok(self.post_new(ctx, cmd, card_no, posting, fx))
            }
            Request::Sale { amount_minor, category, flags, .. } => {
                let card = self.active_card(ctx, card_no)?;
                let settings = self.settings(card_no, &card, &catalog)?;
                self.check_registered(card_no, &card, settings)?;
                self.check_pin(cmd, card_no, settings, fx)?;
                let card = self.cards[&card_no];
                let category = Category::from_u8(category).expect("validated");
                self.check_category(ctx, cmd, card_no, settings, category, amount_minor)?;
                let debit = self.price(ctx, &card, settings, category, flags, amount_minor);
                if card.available_minor() < debit.net_minor {
                    return Err(self.decline(card_no, ResponseCode::InsufficientValue));
                }
                let (cash, bonus) = debit_split(&card, settings.pay_first, debit.net_minor);
                // T9: a staff member's own card, rung up by that staff member (the session's
                // cashier, who works at their own store only).
                let self_use = card.has(CardFlags::STAFF)
                    && card.staff_operator_id != 0
                    && card.staff_operator_id == cmd.operator_id;
                let posting = Posting {
                    kind: TxnKind::Sale,
                    amount_minor: debit.net_minor,
                    gross_minor: amount_minor,
                    cash: -cash,
                    bonus: -bonus,
                    points: debit.points,
                    spend: debit.net_minor,
                    category: category as u8,
                    sale_flags: if self_use { flags | JOURNAL_SELF_USE } else { flags },
                    operator_id: cmd.operator_id,
                    approver_id: cmd.approver_id,
                    ..Posting::default()
                };
                self.count_day_spend(ctx, card_no, settings, category, amount_minor, fx);
                let reply = self.post_new(ctx, cmd, card_no, posting, fx);
                Ok(self.after_debit(ctx, card_no, settings, reply, fx))
            }
            Request::Hold { amount_minor, category, .. } => {
                let card = self.active_card(ctx, card_no)?;
                let settings = self.settings(card_no, &card, &catalog)?;
                if !settings.holds {
                    return Err(self.decline(card_no, ResponseCode::HoldsNotAllowed));
                }
                self.check_registered(card_no, &card, settings)?;
                self.check_pin(cmd, card_no, settings, fx)?;
                let card = self.cards[&card_no];
                let category = Category::from_u8(category).expect("validated");
                self.check_category(ctx, cmd, card_no, settings, category, amount_minor)?;
                if card.available_minor() < amount_minor {
                    return Err(self.decline(card_no, ResponseCode::InsufficientValue));
                }
                let posting = Posting {
                    kind: TxnKind::Hold,
                    amount_minor,
                    gross_minor: amount_minor,
                    held: amount_minor,
                    category: category as u8,
                    approver_id: cmd.approver_id,
                    ..Posting::default()
                };
                Ok(self.post_new(ctx, cmd, card_no, posting, fx))
            }
            Request::Capture { hold_txn_id, amount_minor, .. } => {
                self.capture(ctx, cmd, card_no, hold_txn_id, amount_minor, fx)
            }
            Request::Refund { original_txn_id, amount_minor, .. } => {
                self.refund(ctx, cmd, card_no, original_txn_id, amount_minor, fx)
            }
            Request::Void { original_txn_id, .. } => {
                self.live_card(card_no)?;
                let orig = self.original(card_no, original_txn_id)?;
                // T6: same-day sales, loads and holds only.
                if !matches!(orig.kind, TxnKind::Sale | TxnKind::Load | TxnKind::Hold)
                    || orig.business_date != ctx.business_date
                {
                    return Err(self.decline(card_no, ResponseCode::OriginalNotEligible));
                }
                if orig.status != TxnStatus::Posted || orig.refunded_minor != 0 {
                    return Err(self.decline(card_no, ResponseCode::OriginalAlreadySettled));
                }
                self.undo(ctx, cmd, card_no, original_txn_id, TxnKind::Void, fx)
            }
            Request::Reversal { original_stan, amount_minor, .. } => {
                self.reversal(ctx, cmd, card_no, original_stan, amount_minor, fx)
            }
            Request::CardAdmin { .. } => self.administer(ctx, cmd, card_no, fx),
            Request::SignOn { .. }
            | Request::Echo
            | Request::OperatorSignOn { .. }
            | Request::BatchTotals { .. }
            | Request::ImportRange { .. }
            | Request::ProvisionTerminal { .. }
            | Request::SetTerminalState { .. }
            | Request::SetOperator { .. }
            | Request::SetProduct { .. }
            | Request::MemberQuery { .. }
            | Request::ReplaceCard { .. }
            | Request::CardHistory { .. } => Err(CardReply::code_only(ResponseCode::UnknownMessageType)),
        }
    }

    /// The product settings of `card` in the catalog in force; a product the catalog does not
    /// sell, or a `special` product not enabled (P3), is declined.
    fn settings<'c>(
        &self,
        card_no: CardNo,
        card: &Card,
        catalog: &'c Catalog,
    ) -> Result<&'c ProductSettings, CardReply> {
        Product::from_code(card.product)
            .and_then(|product| catalog.product(product))
            .filter(|settings| settings.enabled)
            .ok_or_else(|| self.decline(card_no, ResponseCode::ProductDisabled))
    }

    /// M1: a real-name card is used only once its holder is registered (the opening load of
    /// its sale aside: registration follows the sale at the desk).
    fn check_registered(&self, card_no: CardNo, card: &Card, settings: &ProductSettings) -> Result<(), CardReply> {
        if settings.real_name && !card.has(CardFlags::MEMBER) {
            return Err(self.decline(card_no, ResponseCode::MemberNotRegistered));
        }
        Ok(())
    }

    /// T2, L4: the PIN of a product that requires one. A wrong PIN counts towards the lockout
    /// (persisted with the decline); a right one clears the count.
    fn check_pin(
        &mut self,
        cmd: &Command,
        card_no: CardNo,
        settings: &ProductSettings,
        fx: &mut Effects,
    ) -> Result<(), CardReply> {
        if !settings.pin_required {
            return Ok(());
        }
        self.verify_pin(cmd, card_no, settings, fx)
    }

    /// T2, L4: the PIN the command carries against the card's, whether or not the product
    /// requires one for debits (a PIN change proves the old PIN).
    fn verify_pin(
        &mut self,
        cmd: &Command,
        card_no: CardNo,
        settings: &ProductSettings,
        fx: &mut Effects,
    ) -> Result<(), CardReply> {
        let Some(pin) = cmd.pin else {
            return Err(self.decline(card_no, ResponseCode::PinRequired));
        };
        let lockout = self.rules.catalog.settings.pin_lockout_count.clamp(1, 255) as u8;
        let expected = match self.cards[&card_no].pin_hash {
            // A card sold before its product required a PIN still has the initial one (L3).
            0 => {
                settings.initial_pin.as_deref().and_then(|p| Pin::new(p.as_bytes())).map(|p| self.pin_hash(card_no, &p))
            }
            hash => Some(hash),
        };
        let right = expected == Some(self.pin_hash(card_no, &pin));
        let card = self.cards.get_mut(&card_no).expect("checked by the caller");
        if right {
            if card.pin_failures != 0 {
                card.pin_failures = 0;
                fx.cards.push((card_no, Some(*card)));
            }
            return Ok(());
        }
        card.pin_failures = card.pin_failures.saturating_add(1);
        if card.pin_failures >= lockout {
            card.state = CardState::PinLocked;
        }
        let card = *card;
        fx.cards.push((card_no, Some(card)));
        let mut reply = self.with_tier(&card, card.reply(ResponseCode::WrongPin, 0, 0));
        reply.pin_attempts_left = lockout.saturating_sub(card.pin_failures);
        Err(reply)
    }

    pub fn pin_hash(&self, card_no: CardNo, pin: &Pin) -> u32 {
        self.rules.pin_key.hash(card_no, pin)
    }

    /// R1–R3: the product may pay for the category, and the per-transaction and per-day limits
    /// of the category hold, unless an approved override lifts a limit that allows it.
    fn check_category(
        &self,
        ctx: Context,
        cmd: &Command,
        card_no: CardNo,
        settings: &ProductSettings,
        category: Category,
        gross_minor: i64,
    ) -> Result<(), CardReply> {
        if !settings.allows(category) {
            return Err(self.decline(card_no, ResponseCode::CategoryNotAllowed));
        }
        let Some(limit) = settings.limit(category) else { return Ok(()) };
        if limit.override_allowed && cmd.approver_id != 0 {
            return Ok(());
        }
        let exceeded = |limit_minor: i64| {
            let mut reply = self.decline(card_no, ResponseCode::LimitExceeded);
            reply.limit_minor = limit_minor;
            Err(reply)
        };
        if let Some(max) = limit.per_txn_max_minor.filter(|max| gross_minor > *max) {
            return exceeded(max);
        }
        if let Some(max) = limit.per_day_max_minor {
            if self.day_spend_minor(ctx, card_no, category) + gross_minor > max {
                return exceeded(max);
            }
        }
        Ok(())
    }

    /// Today's debits of the card in a category with a per-day limit (R3).
    fn day_spend_minor(&self, ctx: Context, card_no: CardNo, category: Category) -> i64 {
        match self.day_spend.get(&(card_no, category as u8)) {
            Some((date, spent)) if *date == ctx.business_date => *spent,
            _ => 0,
        }
    }

    fn count_day_spend(
        &mut self,
        ctx: Context,
        card_no: CardNo,
        settings: &ProductSettings,
        category: Category,
        gross_minor: i64,
        fx: &mut Effects,
    ) {
        if settings.limit(category).is_some_and(|l| l.per_day_max_minor.is_some()) {
            let spent = self.day_spend_minor(ctx, card_no, category) + gross_minor;
            let key = (card_no, category as u8);
            self.day_spend.insert(key, (ctx.business_date, spent));
            fx.day_spend.push((key, (ctx.business_date, spent)));
        }
    }

    /// Restores the cards' point lots (recovery).
    pub fn restore_point_lots(&mut self, lots: impl IntoIterator<Item = (CardNo, PointLots)>) {
        self.point_lots.extend(lots);
    }

    /// The point lots of `card`, oldest first.
    pub fn point_lots(&self, card: CardNo) -> &[(u32, i64)] {
        self.point_lots.get(&card).map_or(&[], Vec::as_slice)
    }

    /// K5: keeps the card's lots in step with a change of `points` (its points before it
    /// `before`): earnings go to the month's lot, removals take the oldest first. Points a
    /// card had before lots were kept are dated the month of its last spending.
    fn move_points(&mut self, ctx: Context, card_no: CardNo, card: &Card, before: i64, points: i64, fx: &mut Effects) {
        if points == 0 {
            return;
        }
        let lots = self.point_lots.entry(card_no).or_default();
        let lotted: i64 = lots.iter().map(|(_, p)| *p).sum();
        if lotted < before {
            let month = if card.last_spend_date != 0 { card.last_spend_date / 100 } else { ctx.business_date / 100 };
            lots.insert(0, (month, before - lotted));
        }
        if points > 0 {
            let month = ctx.business_date / 100;
            match lots.last_mut() {
                Some((m, p)) if *m == month => *p += points,
                _ => lots.push((month, points)),
            }
            if lots.len() > MAX_POINT_LOTS {
                let (_, oldest) = lots.remove(0);
                lots[0].1 += oldest;
            }
        } else {
            let mut left = -points;
            while left > 0 && !lots.is_empty() {
                let take = left.min(lots[0].1);
                lots[0].1 -= take;
                left -= take;
                if lots[0].1 == 0 {
                    lots.remove(0);
                }
            }
        }
        let lots = if lots.is_empty() {
            self.point_lots.remove(&card_no);
            Vec::new()
        } else {
            lots.clone()
        };
        fx.point_lots.push((card_no, lots));
    }

    /// Restores what [`Effects::day_spend`] persisted (entries of other days are ignored
    /// when read).
    pub fn restore_day_spend(&mut self, entries: impl IntoIterator<Item = ((CardNo, u8), (BusinessDate, i64))>) {
        self.day_spend.extend(entries);
    }

    /// T3, K1–K3: the discount on a gross amount and the points the net earns.
    fn price(
        &self,
        ctx: Context,
        card: &Card,
        settings: &ProductSettings,
        category: Category,
        flags: u8,
        gross_minor: i64,
    ) -> Debit {
        let catalog = &self.rules.catalog;
        let promoted = flags & SaleFlags::KNOWN != 0;
        let mut rate = settings.fixed_discount_rate.unwrap_or_default();
        // Member discounts: not on a sale already promoted (T3); the best one applies, they
        // do not add up.
        if settings.member_discount && !promoted {
            if let Some(tier) = catalog.member_tier(card.spend_minor) {
                rate = rate.max(tier.discount_rate);
            }
            if let Some(birthday) = &catalog.birthday {
                if in_birthday_window(ctx.business_date, card.birthday_mmdd, birthday.days_before) {
                    rate = rate.max(birthday.discount_rate);
                }
            }
        }
        let discount_minor = apply_rate(gross_minor, rate);
        let net_minor = gross_minor - discount_minor;
        // K2: points on the net, rounded down; none for promoted, group-purchase or
        // special-price sales, nor for products without points (P2).
        let points = match catalog.points.rate(category) {
            Some(rate) if settings.points && !promoted => net_minor / rate.spend_per_point_minor,
            _ => 0,
        };
        Debit { net_minor, points }
    }

    /// The card's tier (K1) in a reply, for products with member discounts.
    fn with_tier(&self, card: &Card, mut reply: CardReply) -> CardReply {
        let catalog = &self.rules.catalog;
        let member =
            Product::from_code(card.product).and_then(|p| catalog.product(p)).is_some_and(|s| s.member_discount);
        if member {
            reply.tier = catalog
                .member_tiers
                .iter()
                .rposition(|t| t.threshold_minor <= card.spend_minor)
                .map_or(0, |i| i as u8 + 1);
        }
        reply
    }

    /// L9: a gift card spent to zero is marked for recycling.
    fn after_debit(
        &mut self,
        _ctx: Context,
        card_no: CardNo,
        settings: &ProductSettings,
        reply: CardReply,
        fx: &mut Effects,
    ) -> CardReply {
        let card = self.cards.get_mut(&card_no).expect("just posted");
        if settings.product == Product::Gift && card.cash_minor + card.bonus_minor == 0 {
            card.flags |= CardFlags::RECYCLE;
            let card = *card;
            fx.cards.push((card_no, Some(card)));
            return CardReply { notices: reply.notices | CardReply::NOTICE_RECYCLE, ..reply };
        }
        reply
    }

    /// V1–V4: a load of `amount_minor` within the product's bounds, with the bonus the rule in
    /// force gives (none on staff cards).
    fn load_posting(
        &self,
        ctx: Context,
        card_no: CardNo,
        card: &Card,
        settings: &ProductSettings,
        amount_minor: i64,
        method: u8,
    ) -> Result<Posting, CardReply> {
        let limit = |code, limit_minor| {
            let mut reply = self.decline(card_no, code);
            reply.limit_minor = limit_minor;
            reply
        };
        if amount_minor < settings.load_min_minor {
            return Err(limit(ResponseCode::LoadBelowMinimum, settings.load_min_minor));
        }
        if amount_minor > settings.load_max_minor {
            return Err(limit(ResponseCode::LoadAboveMaximum, settings.load_max_minor));
        }
        let bonus =
            match Product::from_code(card.product).and_then(|p| self.rules.catalog.bonus_rule(p, ctx.business_date)) {
                Some(rule) if !card.has(CardFlags::STAFF) => rule
                    .tiers
                    .iter()
                    .find(|t| (t.load_min_minor..=t.load_max_minor).contains(&amount_minor))
                    .map_or(0, |t| apply_rate(amount_minor, t.bonus_rate)),
                _ => 0,
            };
        let max = settings.balance_max_minor.min(MAX_BALANCE_MINOR);
        if card.cash_minor + card.bonus_minor + amount_minor + bonus > max {
            return Err(limit(ResponseCode::BalanceLimitExceeded, max));
        }
        Ok(Posting {
            kind: TxnKind::Load,
            amount_minor,
            gross_minor: amount_minor,
            cash: amount_minor,
            bonus,
            method,
            ..Posting::default()
        })
    }

    fn sell_card(
        &mut self,
        ctx: Context,
        cmd: &Command,
        card_no: CardNo,
        amount_minor: i64,
        method: u8,
        fx: &mut Effects,
    ) -> Outcome {
        let range = *self.range_of(card_no).ok_or(CardReply::code_only(ResponseCode::UnknownCard))?;
        // L1: a range is sold only by the store it was assigned to.
        if range.store_id != cmd.store_id {
            return Err(self.decline(card_no, ResponseCode::WrongStore));
        }
        if self.cards.contains_key(&card_no) {
            return Err(self.decline(card_no, ResponseCode::CardAlreadySold));
        }
        // L2: paid by cheque or transfer, the card waits for finance to confirm the funds.
        let pending = PaymentMethod::from_u8(method).is_some_and(PaymentMethod::needs_confirmation);
        let state = if pending { CardState::PendingFunds } else { CardState::Active };
        let mut card = Card::new(range.product, range.store_id, state);
        let catalog = self.rules.catalog.clone();
        let settings = match self.settings(card_no, &card, &catalog) {
            Ok(settings) => settings,
            // Not yet a card: the decline names the number's stock state.
            Err(reply) => return Err(reply),
        };
        let mut posting = Posting { kind: TxnKind::SellCard, method, ..Posting::default() };
        if amount_minor > 0 {
            posting = Posting {
                kind: TxnKind::SellCard,
                ..self.load_posting(ctx, card_no, &card, settings, amount_minor, method)?
            };
        }
        // P3: no more cards than the approved quantity, across all partitions; taken last,
        // when nothing else can refuse the sale. Every product is counted, so that a quantity
        // approved later starts from the cards already sold.
        let quantity = settings.approved_quantity.unwrap_or(u64::MAX);
        if !self.rules.issued.take(range.product, quantity) {
            return Err(self.decline(card_no, ResponseCode::QuantityExhausted));
        }
        // L3: the product's initial PIN, to be changed.
        if let Some(pin) = settings.initial_pin.as_deref().and_then(|p| Pin::new(p.as_bytes())) {
            card.pin_hash = self.pin_hash(card_no, &pin);
            card.flags |= CardFlags::PIN_MUST_CHANGE;
        }
        self.cards.insert(card_no, card);
        Ok(self.post_new(ctx, cmd, card_no, posting, fx))
    }

    fn capture(
        &mut self,
        ctx: Context,
        cmd: &Command,
        card_no: CardNo,
        hold_id: u64,
        amount_minor: i64,
        fx: &mut Effects,
    ) -> Outcome {
        let card = self.live_card(card_no)?;
        // L5: after a loss report no debit is approved; the hold can still be voided.
        if card.state == CardState::Lost {
            return Err(self.decline(card_no, ResponseCode::CardLost));
        }
        let hold = self.original(card_no, hold_id)?;
        if hold.kind != TxnKind::Hold {
            return Err(self.decline(card_no, ResponseCode::OriginalNotEligible));
        }
        if hold.status != TxnStatus::Posted {
            return Err(self.decline(card_no, ResponseCode::OriginalAlreadySettled));
        }
        let catalog = self.rules.catalog.clone();
        let settings = self.settings(card_no, &card, &catalog)?;
        // T3: the final amount is a sale of the hold's category, discounted and earning points.
        let category = Category::from_u8(hold.category).unwrap_or(Category::Other);
        let debit = self.price(ctx, &card, settings, category, 0, amount_minor);
        // T4: the hold is released and the final amount debited; more than the hold needs
        // available value for the excess.
        if card.available_minor() + hold.held_delta_minor < debit.net_minor {
            return Err(self.decline(card_no, ResponseCode::InsufficientValue));
        }
        let (cash, bonus) = debit_split(&card, settings.pay_first, debit.net_minor);
        let posting = Posting {
            kind: TxnKind::Capture,
            amount_minor: debit.net_minor,
            gross_minor: amount_minor,
            cash: -cash,
            bonus: -bonus,
            held: -hold.held_delta_minor,
            points: debit.points,
            spend: debit.net_minor,
            ref_txn_id: hold_id,
            category: hold.category,
            ..Posting::default()
        };
        self.set_status(ctx, hold_id, TxnStatus::Captured, fx);
        let reply = self.post_new(ctx, cmd, card_no, posting, fx);
        Ok(self.after_debit(ctx, card_no, settings, reply, fx))
    }

    fn refund(
        &mut self,
        ctx: Context,
        cmd: &Command,
        card_no: CardNo,
        orig_id: u64,
        amount_minor: i64,
        fx: &mut Effects,
    ) -> Outcome {
        let card = self.live_card(card_no)?;
        let orig = self.original(card_no, orig_id)?;
        if !matches!(orig.kind, TxnKind::Sale | TxnKind::Capture) {
            return Err(self.decline(card_no, ResponseCode::OriginalNotEligible));
        }
        if orig.status != TxnStatus::Posted {
            return Err(self.decline(card_no, ResponseCode::OriginalAlreadySettled));
        }
        // T5: against the net the card paid: a discounted sale refunds at most its net.
        if orig.refunded_minor + amount_minor > orig.amount_minor {
            return Err(self.decline(card_no, ResponseCode::RefundExceedsOriginal));
        }
        // T5: value returns to the buckets it came from, in proportion; computed on the
        // cumulative refund so that refunding everything returns exactly the original split.
        let refunded_minor = orig.refunded_minor + amount_minor;
        let bonus_total = -orig.bonus_delta_minor;
        let bonus_cumulative =
            div_round_half_up(i128::from(refunded_minor) * i128::from(bonus_total), i128::from(orig.amount_minor));
        let bonus = bonus_cumulative - orig.refunded_bonus_minor;
        // T5: points earned by the original are taken back in proportion, rounded down, so
        // refunding everything takes back exactly what was earned; never more than the card
        // still has (the rest was redeemed or lapsed).
        let points_cumulative =
            (i128::from(refunded_minor) * i128::from(orig.points_delta) / i128::from(orig.amount_minor)) as i64;
        let points_due = points_cumulative - orig.refunded_points;
        let points_back = points_due.min(card.points.max(0));
        let posting = Posting {
            kind: TxnKind::Refund,
            amount_minor,
            gross_minor: amount_minor,
            cash: amount_minor - bonus,
            bonus,
            points: -points_back,
            spend: -amount_minor.min(card.spend_minor),
            ref_txn_id: orig_id,
            category: orig.category,
            ..Posting::default()
        };
        let updated =
            Txn { refunded_minor, refunded_bonus_minor: bonus_cumulative, refunded_points: points_cumulative, ..orig };
        self.put_txn(ctx, orig_id, updated, fx);
        Ok(self.post_new(ctx, cmd, card_no, posting, fx))
    }

    /// T7: undoes this terminal's request `original_stan`, or remembers the reversal when
    /// the original has not arrived, so that it is declined when it does.
    fn reversal(
        &mut self,
        ctx: Context,
        cmd: &Command,
        card_no: CardNo,
        original_stan: u32,
        amount_minor: i64,
        fx: &mut Effects,
    ) -> Outcome {
        if self.range_of(card_no).is_none() && !self.cards.contains_key(&card_no) {
            return Err(CardReply::code_only(ResponseCode::UnknownCard));
        }
        if self.cards.get(&card_no).is_some_and(|c| c.state == CardState::Closed) {
            return Err(self.decline(card_no, ResponseCode::CardClosed));
        }
        let key = TraceKey { terminal_id: cmd.header.terminal_id, stan: original_stan };
        let approved_unchanged = |engine: &Engine| Ok(engine.decline(card_no, ResponseCode::Approved));
        let (orig_card, orig_type, orig_reply) = match self.traces.get(&key) {
            None => {
                self.put_trace(ctx, key, Trace::ReversedUnseen { card: card_no, amount_minor }, fx);
                return approved_unchanged(self);
            }
            Some(Trace::ReversedUnseen { .. }) => return approved_unchanged(self),
            Some(Trace::Answered { card, msg_type, reply, .. }) => (*card, *msg_type, *reply),
        };
        // Administrative postings are corrected by another administrative posting (an
        // adjustment), never reversed by a terminal.
        if matches!(orig_type, MsgType::Void | MsgType::Reversal | MsgType::CardAdmin) {
            return Err(self.decline(card_no, ResponseCode::OriginalNotEligible));
        }
        // A declined original moved nothing, so only its card can be compared. A reversal
        // repeats the original request's amount: a debit's gross, not the net it moved (T3);
        // records from before gross amounts were kept have none.
        let orig_amount = if orig_reply.gross_minor != 0 { orig_reply.gross_minor } else { orig_reply.amount_minor };
        if orig_card != card_no || (orig_reply.code.is_approved() && orig_amount != amount_minor) {
            return Err(self.decline(card_no, ResponseCode::OriginalMismatch));
        }
        if !orig_reply.code.is_approved() {
            return approved_unchanged(self);
        }
        let orig_id = orig_reply.txn_id;
        let Some(orig) = self.txns.get(&orig_id).copied() else {
            return Err(self.decline(card_no, ResponseCode::OriginalNotEligible));
        };
        match orig.status {
            TxnStatus::Voided | TxnStatus::Reversed => approved_unchanged(self),
            TxnStatus::Captured => Err(self.decline(card_no, ResponseCode::OriginalAlreadySettled)),
            TxnStatus::Posted if orig.refunded_minor != 0 => {
                Err(self.decline(card_no, ResponseCode::OriginalAlreadySettled))
            }
            TxnStatus::Posted => self.undo(ctx, cmd, card_no, orig_id, TxnKind::Reversal, fx),
        }
    }

    /// Posts the exact opposite of `orig_id` (a void or a reversal) and marks it undone.
    fn undo(
        &mut self,
        ctx: Context,
        cmd: &Command,
        card_no: CardNo,
        orig_id: u64,
        kind: TxnKind,
        fx: &mut Effects,
    ) -> Outcome {
        let orig = *self.txns.get(&orig_id).expect("the caller checked the original");
        // A reversal reaches here without a sold-card check (it must also answer for stock
        // cards): an original made before the card's sale was itself undone finds no card.
        let Some(card) = self.cards.get(&card_no).copied() else {
            return Err(self.decline(card_no, ResponseCode::CardNotSold));
        };
        let (cash, bonus, held) = (-orig.cash_delta_minor, -orig.bonus_delta_minor, -orig.held_delta_minor);
        // Points and spend go back too (T6), as far as the card still has them.
        let points = (-orig.points_delta).max(-card.points.max(0));
        let spend = (-orig.spend_delta_minor).max(-card.spend_minor);
        // Taking value back (a load or refund undone) needs it still on the card, unreserved;
        // reopening a hold (a capture undone) needs the value it reserves still there (T4).
        let available_after = card.available_minor() + cash + bonus - held;
        if card.cash_minor + cash < 0 || card.bonus_minor + bonus < 0 || available_after < 0 {
            return Err(self.decline(card_no, ResponseCode::InsufficientValue));
        }
        // A sale of a card is undone only while nothing else happened on it; the number then
        // returns to stock.
        let unsell = orig.kind == TxnKind::SellCard;
        if unsell && (card.cash_minor + cash != 0 || card.bonus_minor + bonus != 0 || card.held_minor != 0) {
            return Err(self.decline(card_no, ResponseCode::OriginalAlreadySettled));
        }
        match orig.kind {
            // A capture undone reopens its hold.
            TxnKind::Capture => self.set_status(ctx, orig.ref_txn_id, TxnStatus::Posted, fx),
            // A refund undone gives the original back its refundable amount.
            TxnKind::Refund => {
                if let Some(sale) = self.txns.get(&orig.ref_txn_id).copied() {
                    let updated = Txn {
                        refunded_minor: sale.refunded_minor - orig.amount_minor,
                        refunded_bonus_minor: sale.refunded_bonus_minor - orig.bonus_delta_minor,
                        refunded_points: sale.refunded_points + orig.points_delta,
                        ..sale
                    };
                    self.put_txn(ctx, orig.ref_txn_id, updated, fx);
                }
            }
            _ => {}
        }
        let status = if kind == TxnKind::Reversal { TxnStatus::Reversed } else { TxnStatus::Voided };
        self.set_status(ctx, orig_id, status, fx);
        let posting = Posting {
            kind,
            amount_minor: orig.amount_minor,
            gross_minor: orig.amount_minor,
            cash,
            bonus,
            held,
            points,
            spend,
            ref_txn_id: orig_id,
            category: orig.category,
            ..Posting::default()
        };
        let reply = self.post(ctx, cmd, card_no, posting, fx);
        if unsell {
            // P3: the number is back in stock, so is its place in the approved quantity.
            self.rules.issued.give_back(card.product);
            self.cards.remove(&card_no);
            fx.cards.push((card_no, None));
            return Ok(CardReply { state: CardState::Stock, ..reply });
        }
        Ok(reply)
    }

    /// Posts and records the posting as a transaction later requests can name.
    fn post_new(&mut self, ctx: Context, cmd: &Command, card_no: CardNo, p: Posting, fx: &mut Effects) -> CardReply {
        let reply = self.post(ctx, cmd, card_no, p, fx);
        let txn = Txn {
            kind: p.kind,
            status: TxnStatus::Posted,
            card: card_no,
            business_date: ctx.business_date,
            terminal_id: cmd.header.terminal_id,
            stan: cmd.header.stan,
            amount_minor: p.amount_minor,
            cash_delta_minor: p.cash,
            bonus_delta_minor: p.bonus,
            held_delta_minor: p.held,
            ref_txn_id: p.ref_txn_id,
            refunded_minor: 0,
            refunded_bonus_minor: 0,
            points_delta: p.points,
            refunded_points: 0,
            spend_delta_minor: p.spend,
            category: p.category,
            invoiced_minor: 0,
        };
        self.put_txn(ctx, reply.txn_id, txn, fx);
        reply
    }

    /// Changes the card's buckets and journals the change: the one place balances move.
    fn post(&mut self, ctx: Context, cmd: &Command, card_no: CardNo, p: Posting, fx: &mut Effects) -> CardReply {
        let txn_id = self.ids.as_mut().expect("an engine that posts has an id source").take();
        let catalog = &self.rules.catalog;
        let card = self.cards.get_mut(&card_no).expect("postings are made on sold cards");
        let points_before = card.points;
        card.cash_minor += p.cash;
        card.bonus_minor += p.bonus;
        card.held_minor += p.held;
        card.points += p.points;
        card.spend_minor += p.spend;
        if p.spend > 0 {
            card.last_spend_date = ctx.business_date;
        }
        // L8: any posting but housekeeping's ends a dormancy notice and counts as activity.
        let activity = !p.kind.is_housekeeping();
        if activity {
            card.flags &= !CardFlags::DORMANT_NOTICE;
            card.notice_date = 0;
        }
        assert!(
            card.cash_minor >= 0 && card.bonus_minor >= 0 && card.held_minor >= 0,
            "a posting never makes a bucket negative: {card:?}"
        );
        if p.cash > 0 && card.first_load_date == 0 && matches!(p.kind, TxnKind::Load | TxnKind::SellCard) {
            card.first_load_date = ctx.business_date;
            // L7: valid N days from the first load; later loads do not extend it. Looked up
            // here, once per card, not for every posting.
            let validity_days = Product::from_code(card.product)
                .and_then(|product| catalog.product(product))
                .and_then(|settings| settings.validity_days);
            if let Some(days) = validity_days {
                card.expiry_date = rules::add_days(ctx.business_date, i64::from(days));
            }
        }
        if activity {
            card.last_activity_date = ctx.business_date;
        }
        let card = *card;
        self.move_points(ctx, card_no, &card, points_before, p.points, fx);
        fx.cards.push((card_no, Some(card)));
        fx.journal.push(JournalEntry {
            txn_id,
            kind: p.kind,
            card: card_no,
            product: card.product,
            business_date: ctx.business_date,
            time_ms: ctx.now_ms,
            local_time: cmd.header.local_time.0,
            terminal_id: cmd.header.terminal_id,
            store_id: cmd.store_id,
            stan: cmd.header.stan,
            // The posting's own operator, else the command's: the session's cashier (T9).
            operator_id: if p.operator_id != 0 { p.operator_id } else { cmd.operator_id },
            amount_minor: p.amount_minor,
            cash_delta_minor: p.cash,
            bonus_delta_minor: p.bonus,
            held_delta_minor: p.held,
            ref_txn_id: p.ref_txn_id,
            method: p.method,
            category: p.category,
            sale_flags: p.sale_flags,
            gross_minor: p.gross_minor,
            points_delta: p.points,
            catalog_version: ctx.catalog_version,
            ticket: p.ticket,
            approver_id: p.approver_id,
        });
        let reply = CardReply {
            gross_minor: p.gross_minor,
            discount_minor: p.gross_minor - p.amount_minor,
            points_earned: p.points,
            ..card.reply(ResponseCode::Approved, txn_id, p.amount_minor)
        };
        self.with_tier(&card, reply)
    }

    fn set_status(&mut self, ctx: Context, txn_id: u64, status: TxnStatus, fx: &mut Effects) {
        if let Some(txn) = self.txns.get(&txn_id).copied() {
            self.put_txn(ctx, txn_id, Txn { status, ..txn }, fx);
        }
    }

    /// A reply with `code` and the card's current state and balances (zeros if unknown).
    fn decline(&self, card_no: CardNo, code: ResponseCode) -> CardReply {
        match self.cards.get(&card_no) {
            Some(card) => self.with_tier(card, card.reply(code, 0, 0)),
            None if self.range_of(card_no).is_some() => {
                CardReply { state: CardState::Stock, ..CardReply::code_only(code) }
            }
            None => CardReply::code_only(code),
        }
    }

    /// The card if it was sold (any state).
    fn sold_card(&self, card_no: CardNo) -> Result<Card, CardReply> {
        match self.cards.get(&card_no) {
            Some(card) => Ok(*card),
            None if self.range_of(card_no).is_some() => Err(self.decline(card_no, ResponseCode::CardNotSold)),
            None => Err(self.decline(card_no, ResponseCode::UnknownCard)),
        }
    }

    /// The card if it may still be acted on by a capture, void, refund (any sold state but
    /// closed).
    fn live_card(&self, card_no: CardNo) -> Result<Card, CardReply> {
        let card = self.sold_card(card_no)?;
        if card.state == CardState::Closed {
            return Err(self.decline(card_no, ResponseCode::CardClosed));
        }
        Ok(card)
    }

    /// The card if it may spend, hold and load: active (T1, L5) and not past its validity
    /// (L7; the day-end expiry may not have run yet).
    fn active_card(&self, ctx: Context, card_no: CardNo) -> Result<Card, CardReply> {
        let card = self.sold_card(card_no)?;
        let code = match card.state {
            CardState::Active if card.expiry_date != 0 && ctx.business_date >= card.expiry_date => {
                ResponseCode::CardExpired
            }
            CardState::Active => return Ok(card),
            CardState::Unknown => ResponseCode::UnknownCard,
            CardState::Stock => ResponseCode::CardNotSold,
            CardState::PendingFunds => ResponseCode::CardPendingFunds,
            CardState::Lost => ResponseCode::CardLost,
            CardState::Frozen => ResponseCode::CardFrozen,
            CardState::PinLocked => ResponseCode::CardPinLocked,
            CardState::Expired => ResponseCode::CardExpired,
            CardState::Closed => ResponseCode::CardClosed,
        };
        Err(self.decline(card_no, code))
    }

    /// The transaction `txn_id` if it was made on this card.
    fn original(&self, card_no: CardNo, txn_id: u64) -> Result<Txn, CardReply> {
        match self.txns.get(&txn_id) {
            Some(txn) if txn.card == card_no => Ok(*txn),
            Some(_) => Err(self.decline(card_no, ResponseCode::OriginalMismatch)),
            None => Err(self.decline(card_no, ResponseCode::OriginalNotFound)),
        }
    }
}

/// Checks a range import (L1) against the ranges already imported; `Ok` carries the card count.
pub fn check_import(ranges: &[CardRange], range: &CardRange) -> Result<u64, ResponseCode> {
    let request =
        Request::ImportRange { first: range.first, last: range.last, product: range.product, store_id: range.store_id };
    validate(&request)?;
    if range.store_id == 0 {
        return Err(ResponseCode::InvalidField);
    }
    if ranges.iter().any(|r| r.overlaps(range)) {
        return Err(ResponseCode::RangeOverlaps);
    }
    if Product::from_code(range.product).is_none() {
        return Err(ResponseCode::UnknownProduct);
    }
    Ok(range.card_count())
}

/// A balance change about to be posted; positive deltas credit the card.
#[derive(Clone, Copy, Debug)]
struct Posting {
    kind: TxnKind,
    /// What the card paid or received; a debit's net.
    amount_minor: i64,
    /// A debit before discounts (T3).
    gross_minor: i64,
    cash: i64,
    bonus: i64,
    held: i64,
    points: i64,
    /// Change of cumulative net spend (K1).
    spend: i64,
    operator_id: u32,
    /// The manager who approved it (R2, L10).
    approver_id: u32,
    ref_txn_id: u64,
    /// The document an administrative posting was made against.
    ticket: u64,
    method: u8,
    category: u8,
    sale_flags: u8,
}

impl Default for Posting {
    fn default() -> Self {
        Posting {
            kind: TxnKind::Sale,
            amount_minor: 0,
            gross_minor: 0,
            cash: 0,
            bonus: 0,
            held: 0,
            points: 0,
            spend: 0,
            operator_id: 0,
            approver_id: 0,
            ref_txn_id: 0,
            ticket: 0,
            method: 0,
            category: 0,
            sale_flags: 0,
        }
    }
}

/// A debit priced by the rules (T3, K2).
struct Debit {
    net_minor: i64,
    points: i64,
}

/// Splits a debit over the buckets in the product's order (T1; bonus first by default):
/// (from cash, from bonus).
fn debit_split(card: &Card, pay_first: PayFirst, amount_minor: i64) -> (i64, i64) {
    match pay_first {
        PayFirst::Bonus => {
            let from_bonus = amount_minor.min(card.bonus_minor);
            (amount_minor - from_bonus, from_bonus)
        }
        PayFirst::Cash => {
            let from_cash = amount_minor.min(card.cash_minor);
            (from_cash, amount_minor - from_cash)
        }
    }
}

/// `numerator / denominator` rounded half up, for non-negative operands (money rounds half up).
fn div_round_half_up(numerator: i128, denominator: i128) -> i64 {
    ((2 * numerator + denominator) / (2 * denominator)) as i64
}

#[cfg(test)]
mod rule_tests;
#[cfg(test)]
mod tests;
