//! Day-end housekeeping (S7): the time-driven rules, applied at a business date as journaled
//! postings: uncaptured holds expire (T4), cards past their validity forfeit what they hold
//! (L7), cards without activity are listed for notice and frozen when the notice runs out
//! (L8), the points of cards without spending lapse (K5).
//!
//! Every step changes what made it due (a hold's status, a card's state or flags), so running
//! housekeeping again at the same date does nothing more: a partition may run it in slices
//! and after a restart without counting anything twice.

use protocol::CardState;

use crate::rules::days_from_date;
use crate::{BusinessDate, CardFlags, CardNo, Command, Context, Effects, Engine, Posting, TxnKind, TxnStatus};

/// What one run of housekeeping did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Housekeeping {
    pub holds_expired: u64,
    pub held_released_minor: i64,
    pub cards_expired: u64,
    pub forfeited_cash_minor: i64,
    pub forfeited_bonus_minor: i64,
    pub dormancy_notices: u64,
    pub dormancy_freezes: u64,
    pub points_lapsed_cards: u64,
    pub points_lapsed: i64,
}

impl Housekeeping {
    pub fn add(&mut self, other: &Housekeeping) {
        self.holds_expired += other.holds_expired;
        self.held_released_minor += other.held_released_minor;
        self.cards_expired += other.cards_expired;
        self.forfeited_cash_minor += other.forfeited_cash_minor;
        self.forfeited_bonus_minor += other.forfeited_bonus_minor;
        self.dormancy_notices += other.dormancy_notices;
        self.dormancy_freezes += other.dormancy_freezes;
        self.points_lapsed_cards += other.points_lapsed_cards;
        self.points_lapsed += other.points_lapsed;
    }

    /// Postings this run made.
    pub fn postings(&self) -> u64 {
        self.holds_expired
            + self.cards_expired
            + self.dormancy_notices
            + self.dormancy_freezes
            + self.points_lapsed_cards
    }
}

/// The first day points earned in `month` (YYYYMM) no longer count (K5): the day after the
/// same month a year later has ended.
pub fn lot_lapse_date(month: u32) -> BusinessDate {
    let (year, mon) = (month / 100, month % 100);
    let (year, mon) = if mon == 12 { (year + 2, 1) } else { (year + 1, mon + 1) };
    year * 10_000 + mon * 100 + 1
}

/// Days from `from` to `to` (negative when `to` is earlier).
fn days_between(from: BusinessDate, to: BusinessDate) -> i64 {
    days_from_date(to) - days_from_date(from)
}

impl Engine {
    /// Is the card past its validity at `date` (L7)?
    fn past_validity(&self, card_no: CardNo, date: BusinessDate) -> bool {
        self.cards.get(&card_no).is_some_and(|c| c.expiry_date != 0 && date >= c.expiry_date)
    }

    /// Holds due to be released at `date`: older than the catalog's hold expiry (T4), or on
    /// a card whose validity ended (L7), in id order.
    fn due_holds(&self, date: BusinessDate) -> Vec<u64> {
        let expiry_days = i64::from(self.rules.catalog.settings.hold_expiry_days);
        self.open_holds
            .iter()
            .filter(|(_, (card, held_on))| {
                days_between(*held_on, date) >= expiry_days || self.past_validity(*card, date)
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// The due holds (see [`Engine::housekeep`]) whose transactions are not in memory: the
    /// caller fetches each and hands it over with `provide_txn` first.
    pub fn housekeeping_needs(&self, date: BusinessDate) -> Vec<u64> {
        self.due_holds(date).into_iter().filter(|id| self.txns.get(id).is_none()).collect()
    }

    /// Applies the time-driven rules as they stand at the start of `as_of`, stamping the
    /// postings with `ctx.business_date` (the day-end housekeeping of a day runs as of the
    /// next one and belongs to the day it ends, S7), making at most `max_postings` postings;
    /// the second value is true when work is left for another call. Deterministic: holds in
    /// id order, then cards in number order.
    pub fn housekeep(
        &mut self,
        ctx: Context,
        as_of: BusinessDate,
        max_postings: usize,
        fx: &mut Effects,
    ) -> (Housekeeping, bool) {
        let date = as_of;
        let mut done = Housekeeping::default();
        let budget_left = |done: &Housekeeping| (done.postings() as usize) < max_postings;
        // T4: release holds first, so that an expiring card's value is no longer reserved.
        for hold_id in self.due_holds(date) {
            if !budget_left(&done) {
                return (done, true);
            }
            // Not provided (the read failed): left for the next run.
            let Some(hold) = self.txns.get(&hold_id).copied() else { continue };
            let card = self.cards[&hold.card];
            let posting = Posting {
                kind: TxnKind::HoldExpired,
                amount_minor: hold.amount_minor,
                gross_minor: hold.amount_minor,
                held: -hold.held_delta_minor,
                ref_txn_id: hold_id,
                category: hold.category,
                ..Posting::default()
            };
            self.set_status(ctx, hold_id, TxnStatus::Voided, fx);
            self.post(ctx, &Command::housekeeping(card.store_id), hold.card, posting, fx);
            done.holds_expired += 1;
            done.held_released_minor += hold.held_delta_minor;
        }
        let settings = self.rules.catalog.settings.clone();
        let lapse_days = i64::from(self.rules.catalog.points.inactivity_lapse_days);
        // In number order (a set: a card may be due for several reasons).
        let due: std::collections::BTreeSet<CardNo> = self
            .cards
            .iter()
            .filter(|(_, c)| {
                let live = !matches!(c.state, CardState::Closed | CardState::Expired | CardState::Stock);
                let expiring = live && c.expiry_date != 0 && date >= c.expiry_date;
                let has_value = c.cash_minor + c.bonus_minor > 0;
                let dormant = c.state == CardState::Active
                    && has_value
                    && c.last_activity_date != 0
                    && days_between(c.last_activity_date, date) >= i64::from(settings.dormancy_days);
                let lapsing = live
                    && c.points > 0
                    && c.last_spend_date != 0
                    && lapse_days > 0
                    && days_between(c.last_spend_date, date) >= lapse_days;
                expiring || dormant || lapsing
            })
            .map(|(card_no, _)| *card_no)
            .chain(
                // K5: cards holding points earned more than a year ago.
                self.point_lots
                    .iter()
                    .filter(|(_, lots)| lots.first().is_some_and(|(month, _)| lot_lapse_date(*month) <= date))
                    .map(|(card_no, _)| *card_no),
            )
            .collect();
        for card_no in due {
            if !budget_left(&done) {
                return (done, true);
            }
            let card = self.cards[&card_no];
            let cmd = Command::housekeeping(card.store_id);
            let live = !matches!(card.state, CardState::Closed | CardState::Expired | CardState::Stock);
            // L7: the validity ended: what the card holds is forfeited (and its points with
            // it); a hold not yet released (its record could not be read) waits.
            if live && card.expiry_date != 0 && date >= card.expiry_date {
                if card.held_minor == 0 {
                    self.cards.get_mut(&card_no).expect("listed").state = CardState::Expired;
                    let posting = Posting {
                        kind: TxnKind::Forfeit,
                        amount_minor: card.cash_minor + card.bonus_minor,
                        gross_minor: card.cash_minor + card.bonus_minor,
                        cash: -card.cash_minor,
                        bonus: -card.bonus_minor,
                        points: -card.points.max(0),
                        ..Posting::default()
                    };
                    self.post(ctx, &cmd, card_no, posting, fx);
                    done.cards_expired += 1;
                    done.forfeited_cash_minor += card.cash_minor;
                    done.forfeited_bonus_minor += card.bonus_minor;
                }
                continue;
            }
            // K5: a year without spending loses the points.
            let lapsing = live && card.points > 0 && card.last_spend_date != 0 && lapse_days > 0;
            if lapsing && days_between(card.last_spend_date, date) >= lapse_days {
                let posting = Posting { kind: TxnKind::PointsLapse, points: -card.points, ..Posting::default() };
                self.post(ctx, &cmd, card_no, posting, fx);
                done.points_lapsed_cards += 1;
                done.points_lapsed += card.points;
                if !budget_left(&done) {
                    return (done, true);
                }
            }
            // K5: the points earned more than a year ago lapse (the oldest lots).
            let card = self.cards[&card_no];
            let aged: i64 = self
                .point_lots(card_no)
                .iter()
                .take_while(|(month, _)| lot_lapse_date(*month) <= date)
                .map(|(_, points)| *points)
                .sum();
            let aged = aged.min(card.points);
            if live && aged > 0 {
                let posting = Posting { kind: TxnKind::PointsLapse, points: -aged, ..Posting::default() };
                self.post(ctx, &cmd, card_no, posting, fx);
                done.points_lapsed_cards += 1;
                done.points_lapsed += aged;
                if !budget_left(&done) {
                    return (done, true);
                }
            }
            // L8: listed for notice after a year without a transaction; frozen when the
            // notice period has passed without one.
            let card = self.cards[&card_no];
            let idle = card.state == CardState::Active
                && card.cash_minor + card.bonus_minor > 0
                && card.last_activity_date != 0
                && days_between(card.last_activity_date, date) >= i64::from(settings.dormancy_days);
            if !idle {
                continue;
            }
            if !card.has(CardFlags::DORMANT_NOTICE) {
                let stored = self.cards.get_mut(&card_no).expect("listed");
                stored.flags |= CardFlags::DORMANT_NOTICE;
                stored.notice_date = date;
                self.post(ctx, &cmd, card_no, Posting { kind: TxnKind::DormancyNotice, ..Posting::default() }, fx);
                done.dormancy_notices += 1;
            } else if days_between(card.notice_date, date) >= i64::from(settings.dormancy_notice_days) {
                self.cards.get_mut(&card_no).expect("listed").state = CardState::Frozen;
                self.post(ctx, &cmd, card_no, Posting { kind: TxnKind::DormancyFreeze, ..Posting::default() }, fx);
                done.dormancy_freezes += 1;
            }
        }
        (done, false)
    }
}
