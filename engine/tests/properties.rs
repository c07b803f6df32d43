//! Property tests: random opening states and command sequences (sales, loads, holds,
//! captures, voids, refunds, reversals, balance inquiries, card sales, range imports,
//! retransmissions, reused trace numbers, day changes) keep the engine's invariants. Rule ids
//! refer to `../shared/domain/RULES.md`. The driver and its checks are
//! `support/engine_check.rs`, shared with the `engine_commands` fuzz target.
//!
//! Each property runs 1,024 cases (about a second in all, in release); `PROPTEST_CASES=N`
//! runs N instead.

#[path = "support/engine_check.rs"]
mod engine_check;

use engine_check::{
    run, Driver, Mode, Op, OpeningCard, StanRef, Step, CARD_SLOTS, HOT_CARDS, OPENING_STATES, PREIMPORTED,
};
use proptest::prelude::*;

/// Mostly the few cards that are sold at the start, so that commands meet on them; sometimes
/// any slot or number (see `engine_check::card_no`).
fn card() -> impl Strategy<Value = u8> {
    prop_oneof![8 => 0..HOT_CARDS as u8, 1 => 0..CARD_SLOTS as u8, 1 => any::<u8>()]
}

/// Mostly whole yuan in the range of the balances; sometimes odd fen, large or out of range.
fn amount() -> impl Strategy<Value = i64> {
    prop_oneof![
        // A few round amounts, so that balances come back to earlier values (a card loaded
        // back to its opening value can have its sale reversed).
        6 => prop::sample::select(vec![100, 500, 1_000, 5_000]),
        6 => (1i64..=300).prop_map(|yuan| yuan * 100),
        2 => 1i64..=30_000,
        1 => prop::sample::select(vec![0, -100, protocol::MAX_AMOUNT_MINOR, protocol::MAX_AMOUNT_MINOR + 100]),
    ]
}

fn term() -> impl Strategy<Value = u8> {
    prop_oneof![4 => Just(0u8), 2 => Just(1u8), 1 => Just(2u8)]
}

/// Transactions: mostly a recent one of the kind the request acts on (see `Driver::pick_txn`).
fn txn() -> impl Strategy<Value = u8> {
    prop_oneof![8 => 0u8..128, 2 => any::<u8>()]
}

fn op() -> impl Strategy<Value = Op> {
    let valid_method = prop_oneof![9 => 1u8..=4, 1 => 0u8..=6];
    let category = prop_oneof![9 => 1u8..=9, 1 => Just(0u8)];
    prop_oneof![
        12 => (term(), card(), amount(), category.clone(), prop_oneof![9 => 0u8..8, 1 => any::<u8>()])
            .prop_map(|(term, card, amount, category, flags)| Op::Sale { term, card, amount, category, flags }),
        5 => (term(), card(), amount(), valid_method.clone())
            .prop_map(|(term, card, amount, method)| Op::Load { term, card, amount, method }),
        3 => (term(), prop_oneof![3 => 0..HOT_CARDS as u8, 1 => 0..CARD_SLOTS as u8], amount(), valid_method)
            .prop_map(|(term, card, amount, method)| Op::Sell { term, card, amount, method }),
        5 => (term(), card(), amount(), category)
            .prop_map(|(term, card, amount, category)| Op::Hold { term, card, amount, category }),
        5 => (term(), card(), txn(), amount())
            .prop_map(|(term, card, txn, amount)| Op::Capture { term, card, txn, amount }),
        4 => (term(), card(), txn()).prop_map(|(term, card, txn)| Op::Void { term, card, txn }),
        5 => (term(), card(), txn(), amount())
            .prop_map(|(term, card, txn, amount)| Op::Refund { term, card, txn, amount }),
        6 => (
            term(),
            card(),
            prop_oneof![
                4 => (0u8..8).prop_map(StanRef::Back),
                4 => (0u8..8).prop_map(StanRef::Posting),
                1 => (0u8..3).prop_map(StanRef::Ahead),
            ],
            prop_oneof![4 => Just(None), 1 => amount().prop_map(Some)],
        )
            .prop_map(|(term, card, original, amount)| Op::Reversal { term, card, original, amount }),
        2 => (term(), card()).prop_map(|(term, card)| Op::Balance { term, card }),
        4 => (0u8..8, any::<bool>()).prop_map(|(back, flag)| Op::Retransmit { back, flag }),
        1 => (0u8..8).prop_map(|back| Op::ReuseNextStan { back }),
        1 => (term(), PREIMPORTED as u8..CARD_SLOTS as u8, 0u8..16, 0u16..=9, 0u8..3)
            .prop_map(|(term, first, len, product, store)| Op::Import { term, first, len, product, store }),
        1 => Just(Op::NextDay),
        1 => (0u32..100_000).prop_map(|ms| Op::Tick { ms }),
        2 => (0u32..10_000, 0u8..8, 0u8..3, 1u8..64)
            .prop_map(|(age_ms, max_cached, lag, budget)| Op::Evict { age_ms, max_cached, lag, budget }),
        1 => any::<bool>().prop_map(|tail| Op::Restart { tail }),
    ]
}

/// Cards sold before the first command, in any state, some with bonus value (V3) to spend
/// first (T1) and refund in proportion (T5).
fn opening() -> impl Strategy<Value = Vec<OpeningCard>> {
    let card = (
        prop_oneof![4 => 0..HOT_CARDS as u8, 1 => 0..PREIMPORTED as u8],
        prop::sample::select(OPENING_STATES.to_vec()),
        prop_oneof![4 => (0i64..=500).prop_map(|yuan| yuan * 100), 1 => 0i64..=50_000],
        prop_oneof![2 => Just(0i64), 1 => 0i64..=20_000],
    )
        .prop_map(|(slot, state, cash_minor, bonus_minor)| OpeningCard { slot, state, cash_minor, bonus_minor });
    // Fewer than the hot cards, so that some of them are sold by the commands.
    prop::collection::vec(card, 0..4)
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..150)
}

/// Applies `ops` in memory, calling `check` after every step.
fn drive(
    opening: &[OpeningCard],
    ops: &[Op],
    check: impl Fn(&Driver) -> Result<(), String>,
) -> Result<Vec<Step>, TestCaseError> {
    let mut driver = Driver::new(opening, Mode::Memory);
    let mut steps = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let step = driver.step(op).map_err(|e| TestCaseError::fail(format!("step {i} {op:?}: {e}")))?;
        check(&driver).map_err(|e| TestCaseError::fail(format!("step {i} {op:?} -> {:?}: {e}", step.reply)))?;
        steps.push(step);
    }
    Ok(steps)
}

/// 1,024 cases unless `PROPTEST_CASES` says otherwise: more than proptest's default 256, since
/// a case costs well under a millisecond and the rarer paths (a capture reversed after the
/// value was spent, a card's sale reversed) need many sequences to come up.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(1_024);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    /// S5, S9: after every command each card's cash, bonus and held value are its opening
    /// value plus the deltas of its journal entries in the effects, and so are the totals
    /// over all cards: no value appears or vanishes without a journal entry.
    #[test]
    fn s5_s9_value_is_conserved(opening in opening(), ops in ops()) {
        drive(&opening, &ops, Driver::check_conservation)?;
    }

    /// T1, T4: no command makes a bucket negative or leaves a card holding more than its
    /// cash + bonus (available value never negative).
    #[test]
    fn t1_t4_no_balance_negative_and_holds_within_value(opening in opening(), ops in ops()) {
        drive(&opening, &ops, Driver::check_buckets)?;
    }

    /// T8, and determinism: the same commands on a fresh engine give identical replies and
    /// identical effects, step by step.
    #[test]
    fn t8_replay_from_scratch_gives_identical_replies_and_effects(opening in opening(), ops in ops()) {
        let first = drive(&opening, &ops, |_| Ok(()))?;
        let again = drive(&opening, &ops, |_| Ok(()))?;
        prop_assert_eq!(first, again);
    }

    /// T7, T8 across eviction and restart: records dropped from memory and fetched back from
    /// "disk", or an engine rebuilt from what was persisted, answer exactly as if everything
    /// had stayed in memory; and the effects always describe the engine's cards.
    #[test]
    fn t7_t8_eviction_and_restart_change_no_answer(opening in opening(), ops in ops()) {
        let (memory, _) = run(&opening, &ops, Mode::Memory).map_err(TestCaseError::fail)?;
        let (disk, _) = run(&opening, &ops, Mode::Disk).map_err(TestCaseError::fail)?;
        prop_assert_eq!(memory, disk);
    }
}
