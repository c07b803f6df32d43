//! Scenario tables for the engine: each row is a request and the reply it must get.

use protocol::Verification;
use std::collections::HashMap;

use protocol::{CardNo, CardState, Category, Header, LocalTime, PaymentMethod, Request, ResponseCode as C};

use super::*;

const STORE: u32 = 21;
const TERMINAL: u32 = 1001;
const FIRST: CardNo = CardNo(6200880000000000);
const DAY: BusinessDate = 20261122;

struct World {
    engine: Engine,
    ctx: Context,
    journal: Vec<JournalEntry>,
    stan: u32,
}

impl World {
    fn new() -> World {
        let mut engine = Engine::new(IdSource::new(0, 1, 0));
        engine.add_range(range(FIRST, CardNo(FIRST.0 + 999), STORE));
        World {
            engine,
            ctx: Context { now_ms: 1_795_311_005_000, business_date: DAY, batch_id: 1, catalog_version: 0 },
            journal: Vec::new(),
            stan: 0,
        }
    }

    fn send_as(&mut self, terminal_id: u32, stan: u32, store_id: u32, request: Request) -> CardReply {
        let header = Header { flags: 0, terminal_id, stan, local_time: LocalTime(20261122093005) };
        let mut fx = Effects::default();
        let reply = self.engine.apply(self.ctx, &Command::new(header, store_id, request), &mut fx);
        self.journal.extend(fx.journal.iter().copied());
        if !reply.code.is_approved() {
            assert!(fx.journal.is_empty() && fx.cards.is_empty(), "a decline posts nothing: {fx:?}");
        }
        reply
    }

    fn send(&mut self, request: Request) -> CardReply {
        self.stan += 1;
        self.send_as(TERMINAL, self.stan, STORE, request)
    }

    /// Sells `card` with an opening load of `amount_minor` in cash.
    fn sold(&mut self, card: CardNo, amount_minor: i64) -> CardNo {
        let reply = self.send(Request::SellCard { card, amount_minor, method: PaymentMethod::Cash as u8 });
        assert_eq!(reply.code, C::Approved);
        card
    }

    /// Every card's buckets equal the sum of its journal entries: nothing moved unexplained.
    fn assert_journal_explains_balances(&self) {
        let mut sums: HashMap<CardNo, (i64, i64, i64)> = HashMap::new();
        for e in &self.journal {
            let s = sums.entry(e.card).or_default();
            s.0 += e.cash_delta_minor;
            s.1 += e.bonus_delta_minor;
            s.2 += e.held_delta_minor;
        }
        for (card_no, (cash, bonus, held)) in &sums {
            let (c, b, h) =
                self.engine.card(*card_no).map_or((0, 0, 0), |c| (c.cash_minor, c.bonus_minor, c.held_minor));
            assert_eq!((c, b, h), (*cash, *bonus, *held), "card {card_no}");
        }
        for (card_no, card) in self.engine.cards() {
            let sum = sums.get(card_no).copied().unwrap_or_default();
            assert_eq!((card.cash_minor, card.bonus_minor, card.held_minor), sum, "card {card_no}");
        }
    }
}

fn range(first: CardNo, last: CardNo, store_id: u32) -> CardRange {
    CardRange { first, last, product: Product::Member as u16, store_id, terminal_id: 1, stan: 1 }
}

fn card(n: u64) -> CardNo {
    CardNo(FIRST.0 + n)
}

fn sale(card: CardNo, amount_minor: i64) -> Request {
    Request::Sale { card, amount_minor, category: Category::Retail as u8, flags: 0, verification: Verification::NONE }
}

fn load(card: CardNo, amount_minor: i64) -> Request {
    Request::Load { card, amount_minor, method: PaymentMethod::Wechat as u8 }
}

/// Gives a sold card bonus value directly, as a promotion will (V3) once configured.
fn with_bonus(world: &mut World, card_no: CardNo, bonus_minor: i64) {
    let mut card = *world.engine.card(card_no).unwrap();
    card.bonus_minor += bonus_minor;
    world.engine.cards.insert(card_no, card);
    world.journal.push(JournalEntry {
        txn_id: 0,
        kind: TxnKind::Load,
        card: card_no,
        product: card.product,
        business_date: DAY,
        time_ms: 0,
        local_time: 0,
        terminal_id: 0,
        store_id: 0,
        stan: 0,
        operator_id: 0,
        amount_minor: 0,
        cash_delta_minor: 0,
        bonus_delta_minor: bonus_minor,
        held_delta_minor: 0,
        ref_txn_id: 0,
        method: 0,
        category: 0,
        sale_flags: 0,
        gross_minor: 0,
        points_delta: 0,
        catalog_version: 0,
        ticket: 0,
        approver_id: 0,
    });
}

fn set_state(world: &mut World, card_no: CardNo, state: CardState) {
    let mut card = *world.engine.card(card_no).unwrap();
    card.state = state;
    world.engine.cards.insert(card_no, card);
}

#[test]
fn field_validation_comes_first_and_is_not_remembered() {
    let mut w = World::new();
    let c = w.sold(card(1), 10_000);
    let rows: &[(Request, C)] = &[
        (sale(c, 0), C::InvalidField),
        (sale(c, -5), C::InvalidField),
        (sale(c, protocol::MAX_AMOUNT_MINOR + 1), C::InvalidField),
        (
            Request::Sale { card: c, amount_minor: 100, category: 0, flags: 0, verification: Verification::NONE },
            C::InvalidField,
        ),
        (
            Request::Sale { card: c, amount_minor: 100, category: 1, flags: 0x80, verification: Verification::NONE },
            C::InvalidField,
        ),
        // V1: loads are whole yuan.
        (load(c, 1_050), C::InvalidField),
        (Request::Load { card: c, amount_minor: 1_000, method: 9 }, C::InvalidField),
        (Request::Balance { card: CardNo(1234) }, C::InvalidField),
    ];
    for (request, code) in rows {
        assert_eq!(w.send_as(TERMINAL, 500, STORE, *request).code, *code, "{request:?}");
    }
    // The trace number 500 was never taken: a valid request with it is served.
    assert_eq!(w.send_as(TERMINAL, 500, STORE, sale(c, 100)).code, C::Approved);
}

#[test]
fn card_checks_l1_l2_t1() {
    let mut w = World::new();
    let active = w.sold(card(1), 10_000);
    let rows: &[(Request, C)] = &[
        (Request::Balance { card: CardNo(7_000_000_000_000_001) }, C::UnknownCard),
        (sale(card(2), 100), C::CardNotSold),
        (Request::Balance { card: card(2) }, C::CardNotSold),
        (Request::SellCard { card: active, amount_minor: 0, method: 1 }, C::CardAlreadySold),
        (Request::SellCard { card: CardNo(7_000_000_000_000_001), amount_minor: 0, method: 1 }, C::UnknownCard),
        (sale(active, 10_001), C::InsufficientValue),
        (sale(active, 10_000), C::Approved),
        (sale(active, 1), C::InsufficientValue),
        (load(active, 10_000), C::Approved),
        (load(active, protocol::MAX_AMOUNT_MINOR), C::BalanceLimitExceeded),
    ];
    for (request, code) in rows {
        assert_eq!(w.send(*request).code, *code, "{request:?}");
    }
    // L1: another store may not sell this range.
    let reply = w.send_as(TERMINAL, 900, STORE + 1, Request::SellCard { card: card(3), amount_minor: 0, method: 1 });
    assert_eq!((reply.code, reply.state), (C::WrongStore, CardState::Stock));
    w.assert_journal_explains_balances();
}

#[test]
fn l2_cheque_sale_waits_for_funds() {
    let mut w = World::new();
    let reply = w.send(Request::SellCard { card: card(5), amount_minor: 50_000, method: PaymentMethod::Cheque as u8 });
    assert_eq!((reply.code, reply.state, reply.cash_minor), (C::Approved, CardState::PendingFunds, 50_000));
    assert_eq!(w.send(sale(card(5), 100)).code, C::CardPendingFunds);
}

#[test]
fn state_declines_l5_and_friends() {
    let mut w = World::new();
    let c = w.sold(card(1), 10_000);
    for (state, code) in [
        (CardState::Lost, C::CardLost),
        (CardState::Frozen, C::CardFrozen),
        (CardState::PinLocked, C::CardPinLocked),
        (CardState::Expired, C::CardExpired),
        (CardState::Closed, C::CardClosed),
    ] {
        set_state(&mut w, c, state);
        assert_eq!(w.send(sale(c, 100)).code, code, "sale {state}");
        assert_eq!(w.send(load(c, 100)).code, code, "load {state}");
        let hold = Request::Hold { card: c, amount_minor: 100, category: 3, verification: Verification::NONE };
        assert_eq!(w.send(hold).code, code, "hold {state}");
        // Balance inquiries still answer, reporting the state.
        let balance = w.send(Request::Balance { card: c });
        assert_eq!((balance.code, balance.state, balance.cash_minor), (C::Approved, state, 10_000));
    }
}

#[test]
fn t1_bonus_is_spent_first() {
    let mut w = World::new();
    let c = w.sold(card(1), 10_000);
    with_bonus(&mut w, c, 500);
    let reply = w.send(sale(c, 700));
    assert_eq!((reply.cash_minor, reply.bonus_minor), (9_800, 0));
    w.assert_journal_explains_balances();
}

#[test]
fn t4_hold_capture_and_void() {
    let mut w = World::new();
    let c = w.sold(card(1), 100_000);
    let hold = w.send(Request::Hold {
        card: c,
        amount_minor: 60_000,
        category: Category::Room as u8,
        verification: Verification::NONE,
    });
    assert_eq!((hold.code, hold.held_minor), (C::Approved, 60_000));
    // The hold reserves value: only 40,000 is left to spend.
    assert_eq!(w.send(sale(c, 40_001)).code, C::InsufficientValue);
    // Capture for less releases the rest.
    let cap = w.send(Request::Capture { card: c, hold_txn_id: hold.txn_id, amount_minor: 45_000 });
    assert_eq!((cap.code, cap.amount_minor, cap.cash_minor, cap.held_minor), (C::Approved, 45_000, 55_000, 0));
    assert_eq!(
        w.send(Request::Capture { card: c, hold_txn_id: hold.txn_id, amount_minor: 1 }).code,
        C::OriginalAlreadySettled
    );

    // Capture for more needs available value for the excess.
    let hold2 = w.send(Request::Hold {
        card: c,
        amount_minor: 10_000,
        category: Category::Room as u8,
        verification: Verification::NONE,
    });
    assert_eq!(
        w.send(Request::Capture { card: c, hold_txn_id: hold2.txn_id, amount_minor: 55_001 }).code,
        C::InsufficientValue
    );
    let cap2 = w.send(Request::Capture { card: c, hold_txn_id: hold2.txn_id, amount_minor: 12_000 });
    assert_eq!((cap2.cash_minor, cap2.held_minor), (43_000, 0));

    // Void releases a hold.
    let hold3 = w.send(Request::Hold {
        card: c,
        amount_minor: 3_000,
        category: Category::Room as u8,
        verification: Verification::NONE,
    });
    let void = w.send(Request::Void { card: c, original_txn_id: hold3.txn_id });
    assert_eq!((void.code, void.held_minor, void.cash_minor), (C::Approved, 0, 43_000));
    assert_eq!(
        w.send(Request::Capture { card: c, hold_txn_id: hold3.txn_id, amount_minor: 1 }).code,
        C::OriginalAlreadySettled
    );
    // Capture of something that is not a hold.
    assert_eq!(
        w.send(Request::Capture { card: c, hold_txn_id: cap2.txn_id, amount_minor: 1 }).code,
        C::OriginalNotEligible
    );
    assert_eq!(w.send(Request::Capture { card: c, hold_txn_id: 999_999, amount_minor: 1 }).code, C::OriginalNotFound);
    w.assert_journal_explains_balances();
}

#[test]
fn t5_refunds_return_value_to_its_buckets_in_proportion() {
    let mut w = World::new();
    let c = w.sold(card(1), 10_000);
    with_bonus(&mut w, c, 3_333);
    let s = w.send(sale(c, 10_000)); // 3,333 bonus + 6,667 cash
    assert_eq!((s.cash_minor, s.bonus_minor), (3_333, 0));
    let r1 = w.send(Request::Refund { card: c, original_txn_id: s.txn_id, amount_minor: 5_000 });
    // Half the sale: 1,666.5 bonus rounds half up to 1,667.
    assert_eq!((r1.code, r1.bonus_minor, r1.cash_minor), (C::Approved, 1_667, 3_333 + 3_333));
    assert_eq!(
        w.send(Request::Refund { card: c, original_txn_id: s.txn_id, amount_minor: 5_001 }).code,
        C::RefundExceedsOriginal
    );
    let r2 = w.send(Request::Refund { card: c, original_txn_id: s.txn_id, amount_minor: 5_000 });
    // Everything refunded: exactly the original split is back.
    assert_eq!((r2.bonus_minor, r2.cash_minor), (3_333, 10_000));
    // A refunded sale can no longer be voided.
    assert_eq!(w.send(Request::Void { card: c, original_txn_id: s.txn_id }).code, C::OriginalAlreadySettled);
    // Refund of a load is not a thing.
    let l = w.send(load(c, 1_000));
    assert_eq!(
        w.send(Request::Refund { card: c, original_txn_id: l.txn_id, amount_minor: 100 }).code,
        C::OriginalNotEligible
    );
    w.assert_journal_explains_balances();
}

#[test]
fn t6_void_restores_same_day_only() {
    let mut w = World::new();
    let c = w.sold(card(1), 10_000);
    let s = w.send(sale(c, 2_500));
    let v = w.send(Request::Void { card: c, original_txn_id: s.txn_id });
    assert_eq!((v.code, v.cash_minor), (C::Approved, 10_000));
    assert_eq!(w.send(Request::Void { card: c, original_txn_id: s.txn_id }).code, C::OriginalAlreadySettled);
    let l = w.send(load(c, 5_000));
    w.ctx.business_date = DAY + 1;
    assert_eq!(w.send(Request::Void { card: c, original_txn_id: l.txn_id }).code, C::OriginalNotEligible);
    // A void of a load needs the value still there.
    let l2 = w.send(load(c, 5_000));
    w.send(sale(c, 19_000));
    assert_eq!(w.send(Request::Void { card: c, original_txn_id: l2.txn_id }).code, C::InsufficientValue);
    w.assert_journal_explains_balances();
}

#[test]
fn t7_reversal_undoes_or_blocks_the_late_original() {
    let mut w = World::new();
    let c = w.sold(card(1), 10_000);
    let s = w.send_as(TERMINAL, 7_001, STORE, sale(c, 3_000));
    assert_eq!(s.cash_minor, 7_000);
    let mismatch =
        w.send_as(TERMINAL, 7_002, STORE, Request::Reversal { card: c, original_stan: 7_001, amount_minor: 2_999 });
    assert_eq!(mismatch.code, C::OriginalMismatch);
    let rev =
        w.send_as(TERMINAL, 7_003, STORE, Request::Reversal { card: c, original_stan: 7_001, amount_minor: 3_000 });
    assert_eq!((rev.code, rev.cash_minor), (C::Approved, 10_000));
    // Reversing again (new trace number) changes nothing.
    let again =
        w.send_as(TERMINAL, 7_004, STORE, Request::Reversal { card: c, original_stan: 7_001, amount_minor: 3_000 });
    assert_eq!((again.code, again.cash_minor, again.txn_id), (C::Approved, 10_000, 0));

    // Reversal before its original: remembered; the late original is declined.
    let early =
        w.send_as(TERMINAL, 7_010, STORE, Request::Reversal { card: c, original_stan: 7_009, amount_minor: 500 });
    assert_eq!((early.code, early.cash_minor), (C::Approved, 10_000));
    let late = w.send_as(TERMINAL, 7_009, STORE, sale(c, 500));
    assert_eq!((late.code, late.cash_minor), (C::OriginalReversed, 10_000));
    // The late original's retransmission gets the same decline.
    assert_eq!(w.send_as(TERMINAL, 7_009, STORE, sale(c, 500)), late);

    // Reversal of a declined original approves and changes nothing.
    let declined = w.send_as(TERMINAL, 7_020, STORE, sale(c, 1_000_000));
    assert_eq!(declined.code, C::InsufficientValue);
    let rev2 =
        w.send_as(TERMINAL, 7_021, STORE, Request::Reversal { card: c, original_stan: 7_020, amount_minor: 1_000_000 });
    assert_eq!((rev2.code, rev2.cash_minor), (C::Approved, 10_000));

    // Reversal of a reversal is not allowed.
    let rr =
        w.send_as(TERMINAL, 7_022, STORE, Request::Reversal { card: c, original_stan: 7_003, amount_minor: 3_000 });
    assert_eq!(rr.code, C::OriginalNotEligible);

    // Reversal of a load needs the value still there.
    let l = w.send_as(TERMINAL, 7_030, STORE, load(c, 5_000));
    w.send(sale(c, 14_000));
    let rl =
        w.send_as(TERMINAL, 7_031, STORE, Request::Reversal { card: c, original_stan: 7_030, amount_minor: 5_000 });
    assert_eq!((l.code, rl.code), (C::Approved, C::InsufficientValue));
    w.assert_journal_explains_balances();
}

#[test]
fn t7_reversal_of_capture_reopens_the_hold_and_of_card_sale_restocks() {
    let mut w = World::new();
    let c = w.sold(card(1), 10_000);
    let hold = w.send_as(
        TERMINAL,
        8_001,
        STORE,
        Request::Hold { card: c, amount_minor: 4_000, category: 3, verification: Verification::NONE },
    );
    let cap =
        w.send_as(TERMINAL, 8_002, STORE, Request::Capture { card: c, hold_txn_id: hold.txn_id, amount_minor: 3_000 });
    assert_eq!((cap.cash_minor, cap.held_minor), (7_000, 0));
    let rev =
        w.send_as(TERMINAL, 8_003, STORE, Request::Reversal { card: c, original_stan: 8_002, amount_minor: 3_000 });
    assert_eq!((rev.code, rev.cash_minor, rev.held_minor), (C::Approved, 10_000, 4_000));
    // The hold is open again and can be captured.
    let cap2 = w.send(Request::Capture { card: c, hold_txn_id: hold.txn_id, amount_minor: 4_000 });
    assert_eq!((cap2.code, cap2.cash_minor), (C::Approved, 6_000));

    let sell = w.send_as(TERMINAL, 8_010, STORE, Request::SellCard { card: card(9), amount_minor: 2_000, method: 1 });
    assert_eq!(sell.code, C::Approved);
    let unsell = w.send_as(
        TERMINAL,
        8_011,
        STORE,
        Request::Reversal { card: card(9), original_stan: 8_010, amount_minor: 2_000 },
    );
    assert_eq!((unsell.code, unsell.state), (C::Approved, CardState::Stock));
    assert!(w.engine.card(card(9)).is_none());
    // The number can be sold again.
    assert_eq!(w.send(Request::SellCard { card: card(9), amount_minor: 0, method: 1 }).code, C::Approved);
    w.assert_journal_explains_balances();
}

#[test]
fn t8_retransmission_gets_the_original_reply_and_posts_once() {
    let mut w = World::new();
    let c = w.sold(card(1), 10_000);
    let first = w.send_as(TERMINAL, 9_001, STORE, sale(c, 1_000));
    let entries = w.journal.len();
    let again = w.send_as(TERMINAL, 9_001, STORE, sale(c, 1_000));
    assert_eq!(first, again);
    assert_eq!(w.journal.len(), entries);
    assert_eq!(w.engine.card(c).unwrap().cash_minor, 9_000);
    // Same trace number, different content.
    assert_eq!(w.send_as(TERMINAL, 9_001, STORE, sale(c, 1_001)).code, C::TraceReused);
    // Another terminal's same trace number is another request.
    assert_eq!(w.send_as(TERMINAL + 1, 9_001, STORE, sale(c, 1_000)).code, C::Approved);
    // A remembered decline is answered the same even after the card could pay.
    let declined = w.send_as(TERMINAL, 9_002, STORE, sale(c, 9_000));
    assert_eq!(declined.code, C::InsufficientValue);
    w.send(load(c, 10_000));
    assert_eq!(w.send_as(TERMINAL, 9_002, STORE, sale(c, 9_000)), declined);
}

#[test]
fn import_checks_l1() {
    let ranges = [range(FIRST, CardNo(FIRST.0 + 999), STORE)];
    let mut r = range(CardNo(FIRST.0 + 1_000), CardNo(FIRST.0 + 1_999), STORE);
    assert_eq!(check_import(&ranges, &r), Ok(1_000));
    r.first = CardNo(FIRST.0 + 999);
    assert_eq!(check_import(&ranges, &r), Err(C::RangeOverlaps));
    r.first = CardNo(FIRST.0 + 5_000);
    assert_eq!(check_import(&ranges, &r), Err(C::InvalidField), "first after last");
    let mut bad = range(CardNo(62_000_000), CardNo(620_000_000), STORE);
    assert_eq!(check_import(&[], &bad), Err(C::InvalidField), "lengths differ");
    bad = range(CardNo(62_000_000), CardNo(62_000_010), STORE);
    bad.product = 99;
    assert_eq!(check_import(&[], &bad), Err(C::UnknownProduct));
}

#[test]
fn txn_ids_are_unique_across_partitions_and_above_stored_ones() {
    let mut ids: Vec<u64> = Vec::new();
    for p in 0..3 {
        let mut source = IdSource::new(p, 3, 1_000);
        ids.extend((0..100).map(|_| source.take()));
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 300);
    assert!(ids[0] > 1_000);
}

/// A deterministic mixed workload: replaying it gives identical replies, and the journal
/// explains every balance throughout.
#[test]
fn replay_is_deterministic_and_value_is_conserved() {
    fn run() -> (Vec<CardReply>, World) {
        let mut w = World::new();
        let mut replies = Vec::new();
        let mut rng: u64 = 42;
        let mut next = |n: u64| {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (rng >> 33) % n
        };
        let mut txn_ids = vec![0u64];
        for i in 0..3_000u32 {
            let c = card(next(20));
            let amount = (next(50) as i64 + 1) * 100;
            let txn = txn_ids[next(txn_ids.len() as u64) as usize];
            let request = match next(9) {
                0 => Request::SellCard { card: c, amount_minor: amount * 10, method: 1 },
                1 => load(c, amount),
                2 | 3 => sale(c, amount),
                4 => Request::Hold { card: c, amount_minor: amount, category: 3, verification: Verification::NONE },
                5 => Request::Capture { card: c, hold_txn_id: txn, amount_minor: amount },
                6 => Request::Refund { card: c, original_txn_id: txn, amount_minor: amount / 2 },
                7 => Request::Void { card: c, original_txn_id: txn },
                _ => {
                    Request::Reversal { card: c, original_stan: i.saturating_sub(next(5) as u32), amount_minor: amount }
                }
            };
            let reply = w.send_as(TERMINAL, i + 1, STORE, request);
            if reply.txn_id != 0 {
                txn_ids.push(reply.txn_id);
            }
            replies.push(reply);
        }
        (replies, w)
    }
    let (a, world) = run();
    let (b, _) = run();
    assert_eq!(a, b);
    assert!(a.iter().filter(|r| r.code.is_approved()).count() > 500);
    world.assert_journal_explains_balances();
}

/// Records dropped from memory are fetched back through `need`/`provide`, and every answer
/// is the same as if they had stayed (T5, T7, T8 across eviction).
#[test]
fn evicted_records_are_fetched_back_and_answers_do_not_change() {
    let mut w = World::new();
    let mut disk_traces: HashMap<TraceKey, Trace> = HashMap::new();
    let mut disk_txns: HashMap<u64, Txn> = HashMap::new();
    let mut send = |w: &mut World, stan: u32, request: Request| {
        let header = Header { flags: 0, terminal_id: TERMINAL, stan, local_time: LocalTime(20261122093005) };
        let cmd = Command::new(header, STORE, request);
        let mut fetched = 0;
        while let Some(need) = w.engine.need(&cmd) {
            fetched += 1;
            match need {
                Need::Trace(key) => w.engine.provide_trace(key, disk_traces.get(&key).copied(), w.ctx.now_ms),
                Need::Txn(id) => w.engine.provide_txn(id, disk_txns.get(&id).copied(), w.ctx.now_ms),
            }
        }
        let mut fx = Effects::default();
        let reply = w.engine.apply(w.ctx, &cmd, &mut fx);
        // Everything written is "materialized" at once.
        disk_traces.extend(fx.traces.iter().copied());
        disk_txns.extend(fx.txns.iter().copied());
        w.journal.extend(fx.journal.iter().copied());
        (reply, fetched)
    };
    let c = card(1);
    let (sold, _) = send(&mut w, 1, Request::SellCard { card: c, amount_minor: 10_000, method: 1 });
    let (s, _) = send(&mut w, 2, sale(c, 4_000));
    let (hold, _) =
        send(&mut w, 3, Request::Hold { card: c, amount_minor: 1_000, category: 3, verification: Verification::NONE });
    assert!(sold.code.is_approved() && s.code.is_approved() && hold.code.is_approved());

    // Everything old and on disk leaves memory.
    w.engine.evict(i64::MAX, 0, u64::MAX, usize::MAX);
    assert_eq!(w.engine.cached(), (0, 0));

    // T8: the retransmission finds its trace on disk.
    let (again, fetched) = send(&mut w, 2, sale(c, 4_000));
    assert_eq!((again, fetched), (s, 1));
    // A new trace number above every evicted one costs no lookup.
    let (_, fetched) = send(&mut w, 100, Request::Balance { card: c });
    assert_eq!(fetched, 0);
    // T5 on an evicted sale, T4 on an evicted hold.
    let (refund, _) = send(&mut w, 101, Request::Refund { card: c, original_txn_id: s.txn_id, amount_minor: 1_000 });
    assert_eq!((refund.code, refund.cash_minor), (C::Approved, 7_000));
    w.engine.evict(i64::MAX, 0, u64::MAX, usize::MAX);
    let (cap, _) = send(&mut w, 102, Request::Capture { card: c, hold_txn_id: hold.txn_id, amount_minor: 500 });
    assert_eq!((cap.code, cap.cash_minor, cap.held_minor), (C::Approved, 6_500, 0));
    w.engine.evict(i64::MAX, 0, u64::MAX, usize::MAX);
    // T7: reversing the evicted capture reopens the (evicted) hold.
    let (rev, _) = send(&mut w, 103, Request::Reversal { card: c, original_stan: 102, amount_minor: 500 });
    assert_eq!((rev.code, rev.cash_minor, rev.held_minor), (C::Approved, 7_000, 1_000));
    // A reversal of a trace number never seen anywhere is remembered as before.
    let (early, _) = send(&mut w, 104, Request::Reversal { card: c, original_stan: 99, amount_minor: 1 });
    assert_eq!(early.code, C::Approved);
    w.engine.evict(i64::MAX, 0, u64::MAX, usize::MAX);
    let (late, _) = send(&mut w, 99, sale(c, 1));
    assert_eq!(late.code, C::OriginalReversed);
    w.assert_journal_explains_balances();
}

#[test]
fn records_not_yet_on_disk_stay_in_memory() {
    let mut w = World::new();
    let c = w.sold(card(1), 10_000);
    w.send(sale(c, 100));
    // The batch that wrote them (id 1) is not materialized (mark 0).
    w.engine.evict(i64::MAX, 0, 0, usize::MAX);
    assert_ne!(w.engine.cached(), (0, 0));
}
