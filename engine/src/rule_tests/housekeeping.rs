//! Day-end housekeeping (S7) driven by a fake clock: the business date is moved forward and
//! the time-driven rules run at it, as journaled postings.

use super::*;

impl World {
    /// Runs the day-end housekeeping of the day before `date` (as of `date`, stamped with the
    /// day it ends) to the end, in slices of `slice` postings, and returns what it did; the
    /// world's date is `date` afterwards.
    fn housekeep_at(&mut self, date: BusinessDate, slice: usize) -> Housekeeping {
        let day_ended = crate::rules::add_days(date, -1);
        self.ctx.business_date = day_ended;
        let mut total = Housekeeping::default();
        let total = loop {
            let mut fx = Effects::default();
            let (done, more) = self.engine.housekeep(self.ctx, date, slice, &mut fx);
            assert!(done.postings() as usize <= slice, "a slice stays within its budget");
            assert_eq!(fx.journal.len() as u64, done.postings(), "every step is one journal entry");
            for e in &fx.journal {
                assert!(e.kind.is_housekeeping());
                assert_eq!((e.business_date, e.operator_id, e.terminal_id), (day_ended, 0, 0));
            }
            self.journal.extend(fx.journal);
            total.add(&done);
            if !more {
                break total;
            }
        };
        self.ctx.business_date = date;
        total
    }

    fn sum_deltas(&self, card_no: CardNo) -> (i64, i64, i64, i64) {
        self.journal.iter().filter(|e| e.card == card_no).fold((0, 0, 0, 0), |acc, e| {
            (
                acc.0 + e.cash_delta_minor,
                acc.1 + e.bonus_delta_minor,
                acc.2 + e.held_delta_minor,
                acc.3 + e.points_delta,
            )
        })
    }

    fn explained(&self, card_no: CardNo) {
        let c = self.card(card_no);
        assert_eq!(self.sum_deltas(card_no), (c.cash_minor, c.bonus_minor, c.held_minor, c.points), "S9");
    }
}

#[test]
fn t4_an_uncaptured_hold_expires_after_the_configured_days_and_its_value_is_free_again() {
    let mut w = World::hotel();
    let card = w.sold(Product::VipStored, 2_000_000);
    let h = w.cmd(hold(card, 100_000, Category::Room), Some(PIN), 0);
    assert_eq!(h.held_minor, 100_000);
    // 30 days in the hotel catalog: not yet on day 29.
    assert_eq!(w.housekeep_at(20261221, 100).holds_expired, 0);
    let done = w.housekeep_at(20261222, 100);
    assert_eq!((done.holds_expired, done.held_released_minor), (1, 100_000));
    assert_eq!(w.card(card).held_minor, 0);
    assert_eq!(w.engine.txn(h.txn_id).unwrap().status, TxnStatus::Voided);
    let capture = Request::Capture { card, hold_txn_id: h.txn_id, amount_minor: 10_000 };
    assert_eq!(w.send(capture).code, C::OriginalAlreadySettled, "an expired hold cannot be captured");
    // Run again on the same day: nothing more.
    assert_eq!(w.housekeep_at(20261222, 100), Housekeeping::default());
    w.explained(card);
}

#[test]
fn l7_at_expiry_the_balance_is_forfeited_and_journaled() {
    let mut w = World::hotel();
    let card = w.sold(Product::Cash, 300_000); // 3,000.00 + 5% bonus, valid one year
    let expiry = w.card(card).expiry_date;
    let bonus = w.card(card).bonus_minor;
    w.ctx.business_date = 20270301;
    w.send(sale(card, 50_000, Category::Dining));
    let (cash, bonus_left) = (w.card(card).cash_minor, w.card(card).bonus_minor);
    assert!(bonus > 0 && cash > 0);
    assert_eq!(w.housekeep_at(rules::add_days(expiry, -1), 100).cards_expired, 0);
    let done = w.housekeep_at(expiry, 100);
    assert_eq!((done.cards_expired, done.forfeited_cash_minor, done.forfeited_bonus_minor), (1, cash, bonus_left));
    let c = w.card(card);
    assert_eq!((c.state, c.cash_minor, c.bonus_minor), (CardState::Expired, 0, 0));
    assert_eq!(w.journal.last().unwrap().kind, TxnKind::Forfeit);
    assert_eq!(w.send(sale(card, 100, Category::Dining)).code, C::CardExpired);
    w.explained(card);
}

#[test]
fn l7_an_open_hold_on_an_expiring_card_is_released_before_the_forfeit() {
    let mut w = World::hotel();
    let card = w.sold(Product::VipStored, 2_000_000);
    let expiry = w.card(card).expiry_date;
    w.ctx.business_date = rules::add_days(expiry, -2);
    w.cmd(hold(card, 100_000, Category::Room), Some(PIN), 0);
    let done = w.housekeep_at(expiry, 100);
    assert_eq!((done.holds_expired, done.cards_expired, done.forfeited_cash_minor), (1, 1, 2_000_000));
    w.explained(card);
}

#[test]
fn l8_a_year_without_activity_gives_notice_then_freezes_unless_the_card_is_used() {
    let mut w = World::retail();
    let idle = w.sold(Product::Member, 100_000);
    let used = w.sold(Product::Member, 100_000);
    let empty = w.sold(Product::Member, 0);
    // 364 days later: nothing.
    assert_eq!(w.housekeep_at(20271121, 100).dormancy_notices, 0);
    let done = w.housekeep_at(20271122, 100);
    assert_eq!(done.dormancy_notices, 2, "the empty card is not listed");
    assert!(!w.card(empty).has(CardFlags::DORMANT_NOTICE));
    let r = w.cmd(Request::Balance { card: idle }, None, 0);
    assert_ne!(r.notices & CardReply::NOTICE_DORMANT, 0, "the terminal is told");
    // Notice does not count as activity; the housekeeping the next day gives no second one.
    assert_eq!(w.housekeep_at(20271123, 100).dormancy_notices, 0);
    // The holder of `used` shows up within the notice period: the notice ends.
    w.ctx.business_date = 20271201;
    assert_eq!(w.cmd(sale(used, 1_000, Category::Retail), Some(PIN), 0).code, C::Approved);
    assert!(!w.card(used).has(CardFlags::DORMANT_NOTICE));
    assert_eq!(w.housekeep_at(20271221, 100).dormancy_freezes, 0, "29 days of notice");
    let done = w.housekeep_at(20271222, 100);
    assert_eq!(done.dormancy_freezes, 1);
    assert_eq!((w.card(idle).state, w.card(used).state), (CardState::Frozen, CardState::Active));
    assert_eq!(w.cmd(sale(idle, 1_000, Category::Retail), Some(PIN), 0).code, C::CardFrozen);
}

#[test]
fn k5_points_lapse_after_a_year_without_spending() {
    let mut w = World::retail();
    let card = w.sold(Product::Member, 100_000);
    let s = w.cmd(sale(card, 20_000, Category::Retail), Some(PIN), 0);
    assert_eq!(s.points_balance, 190);
    w.ctx.business_date = 20270601;
    w.send(load(card, 10_000)); // a load is activity, not spending
    assert_eq!(w.housekeep_at(20271121, 100).points_lapsed, 0);
    let done = w.housekeep_at(20271122, 100);
    assert_eq!((done.points_lapsed_cards, done.points_lapsed), (1, 190));
    assert_eq!(w.card(card).points, 0);
    assert_eq!(w.journal.last().unwrap().kind, TxnKind::PointsLapse);
    w.explained(card);
}

#[test]
fn s7_housekeeping_in_slices_does_what_one_run_does() {
    let run = |slice: usize| {
        let mut w = World::hotel();
        let cards: Vec<CardNo> = (0..7).map(|_| w.sold(Product::Cash, 100_000)).collect();
        let vip: Vec<CardNo> = (0..3).map(|_| w.sold(Product::VipStored, 2_000_000)).collect();
        for card in &vip {
            w.cmd(hold(*card, 50_000, Category::Room), Some(PIN), 0);
        }
        let done = w.housekeep_at(20271122, slice);
        for card in cards.iter().chain(&vip) {
            w.explained(*card);
        }
        let kinds: Vec<(TxnKind, CardNo, i64)> =
            w.journal.iter().map(|e| (e.kind, e.card, e.cash_delta_minor + e.bonus_delta_minor)).collect();
        (done, kinds)
    };
    let whole = run(1_000);
    assert_eq!((whole.0.holds_expired, whole.0.cards_expired), (3, 10));
    assert_eq!(run(1), whole, "one posting at a time gives the same postings in the same order");
    assert_eq!(run(4), whole);
}

#[test]
fn k5_points_lapse_a_year_after_the_month_they_were_earned_oldest_first() {
    let mut w = World::retail();
    let card = w.sold(Product::Member, 1_000_000);
    w.ctx.business_date = 20261115;
    let march = w.cmd(sale(card, 20_000, Category::Retail), Some(PIN), 0); // 190 points, November 2026
    assert_eq!(march.points_balance, 190);
    w.ctx.business_date = 20270210;
    let later = w.cmd(sale(card, 10_000, Category::Retail), Some(PIN), 0); // 95 more, February 2027
    assert_eq!(later.points_balance, 285);
    assert_eq!(w.engine.point_lots(card), &[(202611, 190), (202702, 95)]);
    // Redemption takes the oldest first.
    let redeem = Request::CardAdmin {
        operator: protocol::OperatorAuth { operator_id: 31, passcode: protocol::Sealed::NONE },
        card,
        action: protocol::AdminAction::RedeemPoints as u8,
        flags: 0,
        value: 100,
        original_txn_id: 0,
        ticket: 0,
        verification: Verification::NONE,
        new_pin: protocol::Sealed::NONE,
    };
    assert_eq!(w.cmd_as(redeem).code, C::Approved);
    assert_eq!(w.engine.point_lots(card), &[(202611, 90), (202702, 95)]);
    // Spending keeps the card active (no inactivity lapse); November's points lapse when
    // November 2027 has ended.
    w.ctx.business_date = 20271120;
    w.cmd(sale(card, 100, Category::Other), Some(PIN), 0);
    assert_eq!(w.housekeep_at(20271130, 100).points_lapsed, 0);
    let done = w.housekeep_at(20271201, 100);
    assert_eq!((done.points_lapsed_cards, done.points_lapsed), (1, 90));
    assert_eq!((w.card(card).points, w.engine.point_lots(card)), (95, &[(202702, 95)][..]));
    w.explained(card);
    assert_eq!(w.housekeep_at(20271201, 100), Housekeeping::default(), "once");
}
