//! The `engine_commands` fuzz target's checks (`support/engine_check.rs`) over fixed inputs,
//! so every test run exercises them without cargo-fuzz: byte strings from a seeded generator,
//! read the way the fuzz target reads its input, and hand-written sequences for the paths a
//! random input reaches rarely. Rule ids refer to `../shared/domain/RULES.md`.

#[path = "support/engine_check.rs"]
mod engine_check;

use engine_check::{check_ops, input_from_bytes, run, Mode, Op, OpeningCard, Reply, StanRef};
use protocol::{CardState, ResponseCode};

/// xorshift64*: the same bytes on every machine and every run.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

#[test]
fn seeded_byte_inputs_keep_every_invariant() {
    let mut total = engine_check::Stats::default();
    for seed in 0..64 {
        let data = bytes(seed, 1_500);
        let (opening, ops) = input_from_bytes(&data);
        let stats = check_ops(&opening, &ops).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        total.commands += stats.commands;
        total.approved += stats.approved;
        total.postings += stats.postings;
        total.fetched += stats.fetched;
        total.retransmissions += stats.retransmissions;
        total.restarts += stats.restarts;
    }
    // The inputs reach postings, disk fetches and restarts, not only declines.
    assert!(total.postings > 1_000 && total.fetched > 100 && total.restarts > 10, "{total:?}");
}

#[test]
fn empty_and_tiny_inputs() {
    for data in [&[][..], &[0], &[7, 1, 1, 1, 1, 1], &[0, 3, 1, 0, 200, 1], &[0xff; 40]] {
        let (opening, ops) = input_from_bytes(data);
        check_ops(&opening, &ops).unwrap_or_else(|e| panic!("{data:?}: {e}"));
    }
}

const CASH: u8 = 1; // payment method cash (V6)
const ROOM: u8 = 3; // category room (T10)

fn opening(cash_minor: i64, bonus_minor: i64) -> Vec<OpeningCard> {
    vec![OpeningCard { slot: 1, state: CardState::Active, cash_minor, bonus_minor }]
}

/// T4, T7: a capture for less than its hold, the value spent, then the capture reversed: the
/// reopened hold would reserve more than the card holds, so the reversal is declined. (Found
/// by the `engine_commands` fuzz target: the reversal was approved, leaving 1,000 of value
/// under a 6,000 hold.)
#[test]
fn t4_t7_reversing_a_capture_never_holds_more_than_the_value() {
    let ops = [
        Op::Hold { term: 0, card: 1, amount: 6_000, category: ROOM },
        Op::Capture { term: 0, card: 1, txn: 0, amount: 1_000 },
        Op::Sale { term: 0, card: 1, amount: 9_000, category: 1, flags: 0 },
        Op::Reversal { term: 0, card: 1, original: StanRef::Back(1), amount: None },
        Op::Balance { term: 0, card: 1 },
    ];
    check_ops(&opening(10_000, 0), &ops).unwrap();
    let (steps, _) = run(&opening(10_000, 0), &ops, Mode::Memory).unwrap();
    let Reply::Card(reversal) = steps[3].reply else { panic!("{:?}", steps[3]) };
    assert_eq!((reversal.code, reversal.cash_minor, reversal.held_minor), (ResponseCode::InsufficientValue, 0, 0));
}

/// T7, L2: a card sold, spent and loaded back to its opening value, its sale reversed (the
/// number returns to stock), then the spending reversed: the card has no record, so the
/// reversal is declined `card_not_sold`. (Found by the `engine_commands` fuzz target: the
/// engine panicked looking the card up, which would stop the card's partition.)
#[test]
fn t7_reversal_after_the_cards_sale_was_reversed_is_declined() {
    let ops = [
        Op::Sell { term: 0, card: 2, amount: 1_000, method: CASH },
        Op::Sale { term: 0, card: 2, amount: 500, category: 1, flags: 0 },
        Op::Load { term: 0, card: 2, amount: 500, method: CASH },
        Op::Reversal { term: 0, card: 2, original: StanRef::Back(2), amount: None },
        Op::Reversal { term: 0, card: 2, original: StanRef::Back(2), amount: None },
        Op::Balance { term: 0, card: 2 },
    ];
    check_ops(&[], &ops).unwrap();
    let (steps, _) = run(&[], &ops, Mode::Memory).unwrap();
    let codes: Vec<_> = steps
        .iter()
        .map(|s| match s.reply {
            Reply::Card(r) => (r.code, r.state),
            other => panic!("{other:?}"),
        })
        .collect();
    let approved = (ResponseCode::Approved, CardState::Active);
    assert_eq!(
        codes,
        [
            approved,
            approved,
            approved,
            (ResponseCode::Approved, CardState::Stock),
            (ResponseCode::CardNotSold, CardState::Stock),
            (ResponseCode::CardNotSold, CardState::Stock),
        ]
    );
}

/// T1, T5: bonus pays first and comes back in proportion on refunds; T6: a refunded sale is
/// not voided; T8: every step retransmitted changes nothing.
#[test]
fn t1_t5_t6_t8_bonus_refunds_voids_and_retransmissions() {
    let mut ops = vec![
        Op::Sale { term: 0, card: 1, amount: 10_000, category: 1, flags: 0 },
        Op::Refund { term: 0, card: 1, txn: 0, amount: 3_333 },
        Op::Refund { term: 1, card: 1, txn: 1, amount: 6_667 },
        Op::Void { term: 0, card: 1, txn: 2 },
        Op::Reversal { term: 1, card: 1, original: StanRef::Back(0), amount: None },
        Op::Void { term: 0, card: 1, txn: 2 },
    ];
    let retransmitted: Vec<Op> = ops.iter().flat_map(|op| [*op, Op::Retransmit { back: 0, flag: true }]).collect();
    ops.extend(retransmitted);
    check_ops(&opening(6_667, 3_333), &ops).unwrap();
}

/// T7: a reversal before its original, the original declined when it comes; L1: a card sold
/// from a range imported later, and its sale reversed (the number goes back to stock); T8: a
/// reused trace number; eviction and restarts in between.
#[test]
fn t7_t8_l1_reversal_ahead_imports_eviction_and_restarts() {
    let ops = [
        Op::Reversal { term: 2, card: 40, original: StanRef::Ahead(0), amount: Some(0) },
        Op::Import { term: 2, first: 40, len: 3, product: 1, store: 1 },
        Op::Sell { term: 2, card: 40, amount: 0, method: CASH },
        Op::Sell { term: 2, card: 41, amount: 5_000, method: CASH },
        Op::Evict { age_ms: 0, max_cached: 0, lag: 0, budget: 255 },
        Op::Restart { tail: false },
        Op::Sale { term: 2, card: 41, amount: 1_000, category: 1, flags: 0 },
        Op::ReuseNextStan { back: 0 },
        Op::Sale { term: 2, card: 41, amount: 1_001, category: 1, flags: 0 },
        Op::Retransmit { back: 1, flag: false },
        Op::Void { term: 2, card: 41, txn: 0 },
        Op::Reversal { term: 2, card: 41, original: StanRef::Back(5), amount: None },
        Op::Evict { age_ms: 0, max_cached: 0, lag: 0, budget: 255 },
        Op::Restart { tail: true },
        Op::Retransmit { back: 3, flag: true },
        Op::NextDay,
        Op::Load { term: 0, card: 1, amount: 5_000, method: CASH },
        Op::Balance { term: 2, card: 41 },
    ];
    check_ops(&opening(1_000, 0), &ops).unwrap();
}
