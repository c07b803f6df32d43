//! Administrative operations on one card (`card_admin`): each test names the rules it pins.

use protocol::{AdminAction as A, AdminFlags, OperatorAuth, Sealed};

use super::*;

const OPERATOR: u32 = 31;
const MANAGER: u32 = 7;
const TICKET: u64 = 2026_1122_0001;

fn admin(card: CardNo, action: A) -> Request {
    admin_with(card, action, 0, 0, 0, 0)
}

fn admin_with(card: CardNo, action: A, flags: u8, value: i64, original_txn_id: u64, ticket: u64) -> Request {
    Request::CardAdmin {
        // The session checked the passcode; the engine sees the operator id only.
        operator: OperatorAuth { operator_id: OPERATOR, passcode: Sealed::NONE },
        card,
        action: action as u8,
        flags,
        value,
        original_txn_id,
        ticket,
        verification: Verification::NONE,
        // A non-empty sealed field stands for "a new PIN was entered"; the session opened it
        // into `Command::new_pin`.
        new_pin: if matches!(action, A::ChangePin) { Sealed([1; 16]) } else { Sealed::NONE },
    }
}

impl World {
    fn admin(&mut self, request: Request) -> CardReply {
        let cmd = Command { operator_id: OPERATOR, ..self.command(request) };
        self.apply(cmd)
    }

    fn admin_full(&mut self, request: Request, pin: Option<&[u8]>, new_pin: Option<&[u8]>, approver: u32) -> CardReply {
        let cmd = Command {
            operator_id: OPERATOR,
            pin: pin.map(|p| Pin::new(p).unwrap()),
            new_pin: new_pin.map(|p| Pin::new(p).unwrap()),
            approver_id: approver,
            ..self.command(request)
        };
        self.apply(cmd)
    }

    /// S9: the card's buckets are the sums of its journal's deltas.
    fn assert_journal_explains(&self, card_no: CardNo) {
        let card = self.card(card_no);
        let sum = |f: fn(&JournalEntry) -> i64| self.journal.iter().filter(|e| e.card == card_no).map(f).sum::<i64>();
        assert_eq!(sum(|e| e.cash_delta_minor), card.cash_minor);
        assert_eq!(sum(|e| e.bonus_delta_minor), card.bonus_minor);
        assert_eq!(sum(|e| e.held_delta_minor), card.held_minor);
        assert_eq!(sum(|e| e.points_delta), card.points);
    }

    fn last_entry(&self) -> JournalEntry {
        *self.journal.last().unwrap()
    }
}

#[test]
fn l5_a_loss_report_stops_debits_holds_loads_and_captures_at_once() {
    let mut w = World::hotel();
    let card = w.sold(Product::VipStored, 2_000_000);
    let h = w.cmd(hold(card, 100_000, Category::Room), Some(PIN), 0);
    let r = w.admin(admin(card, A::ReportLoss));
    assert_eq!((r.code, r.state), (C::Approved, CardState::Lost));
    let entry = w.last_entry();
    assert_eq!((entry.kind, entry.operator_id, entry.cash_delta_minor), (TxnKind::LossReport, OPERATOR, 0));
    assert_eq!(w.cmd(sale(card, 1_000, Category::Room), Some(PIN), 0).code, C::CardLost);
    assert_eq!(w.cmd(hold(card, 1_000, Category::Room), Some(PIN), 0).code, C::CardLost);
    assert_eq!(w.send(load(card, 2_000_000)).code, C::CardLost);
    let capture = Request::Capture { card, hold_txn_id: h.txn_id, amount_minor: 50_000 };
    assert_eq!(w.send(capture).code, C::CardLost);
    // The deposit can still be released.
    let v = w.send(Request::Void { card, original_txn_id: h.txn_id });
    assert_eq!((v.code, v.held_minor), (C::Approved, 0));
    // Reported twice: the card is no longer in a state a loss report applies to.
    assert_eq!(w.admin(admin(card, A::ReportLoss)).code, C::StateNotEligible);
    w.assert_journal_explains(card);
}

#[test]
fn l8_a_frozen_card_is_unfrozen_only_with_the_holders_id() {
    let mut w = World::retail();
    let card = w.sold(Product::Member, 100_000);
    w.edit(card, |c| c.flags |= CardFlags::DORMANT_NOTICE);
    assert_eq!(w.admin(admin(card, A::Freeze)).state, CardState::Frozen);
    assert_eq!(w.cmd(sale(card, 1_000, Category::Retail), Some(PIN), 0).code, C::CardFrozen);
    assert_eq!(w.admin(admin(card, A::Unfreeze)).code, C::IdNotChecked);
    let r = w.admin(admin_with(card, A::Unfreeze, AdminFlags::ID_CHECKED, 0, 0, 0));
    assert_eq!((r.code, r.state, r.notices & CardReply::NOTICE_DORMANT), (C::Approved, CardState::Active, 0));
    assert_eq!(w.admin(admin_with(card, A::Unfreeze, AdminFlags::ID_CHECKED, 0, 0, 0)).code, C::StateNotEligible);
    assert_eq!(w.cmd(sale(card, 1_000, Category::Retail), Some(PIN), 0).code, C::Approved);
}

#[test]
fn l4_a_locked_card_is_unlocked_at_the_desk_with_the_holders_id_and_may_get_a_new_pin() {
    let mut w = World::retail();
    let card = w.sold(Product::Member, 100_000);
    assert_eq!(w.admin(admin_with(card, A::UnlockPin, AdminFlags::ID_CHECKED, 0, 0, 0)).code, C::StateNotEligible);
    for _ in 0..5 {
        w.cmd(sale(card, 1_000, Category::Retail), Some(b"999999"), 0);
    }
    assert_eq!(w.card(card).state, CardState::PinLocked);
    assert_eq!(w.admin(admin(card, A::UnlockPin)).code, C::IdNotChecked);
    let unlock = admin_with(card, A::UnlockPin, AdminFlags::ID_CHECKED, 0, 0, 0);
    let r = w.admin_full(unlock, None, Some(b"246810"), 0);
    assert_eq!((r.code, r.state, r.notices & CardReply::NOTICE_PIN_MUST_CHANGE), (C::Approved, CardState::Active, 0));
    assert_eq!(w.card(card).pin_failures, 0);
    assert_eq!(w.cmd(sale(card, 1_000, Category::Retail), Some(PIN), 0).code, C::WrongPin, "the old PIN is gone");
    assert_eq!(w.cmd(sale(card, 1_000, Category::Retail), Some(b"246810"), 0).code, C::Approved);
}

#[test]
fn l3_changing_the_pin_proves_the_old_one_and_ends_the_reminder() {
    let mut w = World::retail();
    let card = w.sold(Product::Member, 100_000);
    assert_eq!(w.admin_full(admin(card, A::ChangePin), None, Some(b"13579"), 0).code, C::PinRequired);
    let wrong = w.admin_full(admin(card, A::ChangePin), Some(b"111111"), Some(b"13579"), 0);
    assert_eq!((wrong.code, wrong.pin_attempts_left), (C::WrongPin, 4), "L4: a wrong old PIN counts");
    let r = w.admin_full(admin(card, A::ChangePin), Some(PIN), Some(b"13579"), 0);
    assert_eq!((r.code, r.notices & CardReply::NOTICE_PIN_MUST_CHANGE), (C::Approved, 0));
    assert!(!w.card(card).has(CardFlags::PIN_MUST_CHANGE));
    assert_eq!(w.card(card).pin_failures, 0);
    let s = w.cmd(sale(card, 1_000, Category::Retail), Some(b"13579"), 0);
    assert_eq!((s.code, s.notices & CardReply::NOTICE_PIN_MUST_CHANGE), (C::Approved, 0));
    // A change without a new PIN is a field error (nothing about the card was looked at).
    let mut no_new = admin(card, A::ChangePin);
    if let Request::CardAdmin { new_pin, .. } = &mut no_new {
        *new_pin = Sealed::NONE;
    }
    assert_eq!(w.admin_full(no_new, Some(b"13579"), None, 0).code, C::InvalidField);
}

#[test]
fn l2_a_card_sold_by_cheque_is_usable_once_finance_confirms_the_funds() {
    let mut w = World::retail();
    let card = first_of(Product::Member);
    let sold = w.send(Request::SellCard { card, amount_minor: 100_000, method: PaymentMethod::Cheque as u8 });
    assert_eq!(sold.state, CardState::PendingFunds);
    w.step(card, Step::AttachMember { birthday_mmdd: 0 });
    assert_eq!(w.cmd(sale(card, 1_000, Category::Retail), Some(PIN), 0).code, C::CardPendingFunds);
    let r = w.admin(admin(card, A::ConfirmFunds));
    assert_eq!((r.code, r.state), (C::Approved, CardState::Active));
    assert_eq!(w.last_entry().kind, TxnKind::FundsConfirmed);
    assert_eq!(w.admin(admin(card, A::ConfirmFunds)).code, C::StateNotEligible);
    assert_eq!(w.cmd(sale(card, 1_000, Category::Retail), Some(PIN), 0).code, C::Approved);
}

#[test]
fn l10_a_return_needs_approval_refunds_cash_less_tax_and_forfeits_bonus_and_points() {
    let mut w = World::retail();
    let card = w.sold(Product::Member, 100_000); // 1,000.00 cash + 50.00 bonus
    let s = w.cmd(sale(card, 20_000, Category::Retail), Some(PIN), 0); // net 190.00: bonus 50, cash 140
    assert!(s.points_balance > 0);
    // Refused by default.
    assert_eq!(w.admin(admin(card, A::ReturnCard)).code, C::ApprovalRequired);
    // Not while frozen.
    w.admin(admin(card, A::Freeze));
    assert_eq!(w.admin_full(admin(card, A::ReturnCard), None, None, MANAGER).code, C::CardFrozen);
    w.admin(admin_with(card, A::Unfreeze, AdminFlags::ID_CHECKED, 0, 0, 0));
    // Without the invoice, 6% tax is withheld from the 860.00 cash value.
    let r = w.admin_full(admin(card, A::ReturnCard), None, None, MANAGER);
    assert_eq!(
        (r.code, r.state, r.gross_minor, r.amount_minor, r.cash_minor, r.bonus_minor, r.points_balance),
        (C::Approved, CardState::Closed, 86_000, 80_840, 0, 0, 0)
    );
    let entry = w.last_entry();
    assert_eq!((entry.kind, entry.operator_id, entry.approver_id), (TxnKind::CardReturn, OPERATOR, MANAGER));
    assert_eq!((entry.cash_delta_minor, entry.bonus_delta_minor), (-86_000, 0), "the bonus was spent first");
    assert_eq!(w.cmd(sale(card, 100, Category::Retail), Some(PIN), 0).code, C::CardClosed);
    assert_eq!(w.admin(admin(card, A::Freeze)).code, C::CardClosed, "closed is final");
    w.assert_journal_explains(card);

    // With the invoice back, nothing is withheld; an open hold refuses the return.
    let mut h = World::hotel();
    let vip = h.sold(Product::VipStored, 2_000_000);
    let hold_reply = h.cmd(hold(vip, 100_000, Category::Room), Some(PIN), 0);
    let with_invoice = admin_with(vip, A::ReturnCard, AdminFlags::INVOICE_RETURNED, 0, 0, 0);
    assert_eq!(h.admin_full(with_invoice, None, None, MANAGER).code, C::OpenHold);
    h.send(Request::Void { card: vip, original_txn_id: hold_reply.txn_id });
    let r = h.admin_full(with_invoice, None, None, MANAGER);
    assert_eq!((r.code, r.amount_minor, r.gross_minor), (C::Approved, 2_000_000, 2_000_000));

    // Unspent bonus value is forfeited: only the cash value is paid back.
    let card = w.sold(Product::Member, 100_000); // 1,000.00 cash + 50.00 bonus
    let r = w.admin_full(admin_with(card, A::ReturnCard, AdminFlags::INVOICE_RETURNED, 0, 0, 0), None, None, MANAGER);
    assert_eq!((r.code, r.amount_minor), (C::Approved, 100_000));
    let entry = w.last_entry();
    assert_eq!((entry.cash_delta_minor, entry.bonus_delta_minor), (-100_000, -5_000));
    w.assert_journal_explains(card);
}

#[test]
fn l9_a_gift_card_is_recycled_only_when_spent_to_zero() {
    let mut w = World::retail();
    let card = w.sold(Product::Gift, 20_000);
    assert_eq!(w.admin(admin(card, A::RecycleGift)).code, C::NotRecyclable);
    w.send(sale(card, 20_000, Category::Retail));
    let r = w.admin(admin(card, A::RecycleGift));
    assert_eq!((r.code, r.state), (C::Approved, CardState::Closed));
    assert_eq!(w.admin(admin(card, A::RecycleGift)).code, C::CardClosed);
    // A member card at zero is not a gift card.
    let member = w.sold(Product::Member, 0);
    assert_eq!(w.admin(admin(member, A::RecycleGift)).code, C::NotRecyclable);
}

#[test]
fn s9_an_adjustment_corrects_one_bucket_against_a_ticket_and_never_goes_negative() {
    let mut w = World::retail();
    let card = w.sold(Product::Member, 100_000);
    let r = w.admin(admin_with(card, A::Adjust, 0, -2_500, 0, TICKET));
    assert_eq!((r.code, r.cash_minor, r.amount_minor), (C::Approved, 97_500, 2_500));
    assert_eq!((w.last_entry().ticket, w.last_entry().kind), (TICKET, TxnKind::Adjustment));
    let r = w.admin(admin_with(card, A::Adjust, AdminFlags::BONUS_BUCKET, 1_000, 0, TICKET));
    assert_eq!((r.code, r.bonus_minor), (C::Approved, 6_000));
    let r = w.admin(admin_with(card, A::Adjust, AdminFlags::BONUS_BUCKET, -6_001, 0, TICKET));
    assert_eq!(r.code, C::InsufficientValue);
    // Without a ticket, or of zero: field errors.
    assert_eq!(w.admin(admin_with(card, A::Adjust, 0, 100, 0, 0)).code, C::InvalidField);
    assert_eq!(w.admin(admin_with(card, A::Adjust, 0, 0, 0, TICKET)).code, C::InvalidField);
    w.assert_journal_explains(card);
}

#[test]
fn v5_a_load_reversal_takes_the_bonus_back_in_proportion_and_needs_the_value_on_the_card() {
    let mut w = World::retail();
    let card = w.sold(Product::Member, 0);
    let l = w.send(load(card, 300_000)); // 3,000.00 + 5% = 150.00 bonus
    assert_eq!(l.bonus_minor, 15_000);
    // A fault ticket is required.
    assert_eq!(w.admin(admin_with(card, A::LoadReversal, 0, 100_000, l.txn_id, 0)).code, C::InvalidField);
    let r = w.admin(admin_with(card, A::LoadReversal, 0, 100_000, l.txn_id, TICKET));
    assert_eq!((r.code, r.cash_minor, r.bonus_minor), (C::Approved, 200_000, 10_000));
    let entry = w.last_entry();
    assert_eq!((entry.kind, entry.ref_txn_id, entry.ticket), (TxnKind::LoadReversal, l.txn_id, TICKET));
    // More than what is left of the load is refused, naming what is left.
    let over = w.admin(admin_with(card, A::LoadReversal, 0, 200_001, l.txn_id, TICKET));
    assert_eq!((over.code, over.limit_minor), (C::RefundExceedsOriginal, 200_000));
    // Spent value cannot be reversed.
    w.cmd(sale(card, 150_000, Category::Other), Some(PIN), 0);
    let r = w.admin(admin_with(card, A::LoadReversal, 0, 200_000, l.txn_id, TICKET));
    assert_eq!(r.code, C::InsufficientValue);
    // The partly reversed load can no longer be voided (T6).
    assert_eq!(w.send(Request::Void { card, original_txn_id: l.txn_id }).code, C::OriginalAlreadySettled);
    // A sale is not a load.
    let s = w.cmd(sale(card, 1_000, Category::Retail), Some(PIN), 0);
    let r = w.admin(admin_with(card, A::LoadReversal, 0, 500, s.txn_id, TICKET));
    assert_eq!(r.code, C::OriginalNotEligible);
    w.assert_journal_explains(card);
}

#[test]
fn v5_reversing_a_whole_load_removes_exactly_its_bonus() {
    let mut w = World::retail();
    let card = w.sold(Product::Member, 0);
    let l = w.send(load(card, 300_300)); // 3,003.00 + 10% = 300.30 bonus
    assert_eq!(l.bonus_minor, 30_030);
    for part in [100_001, 100_001, 100_298] {
        assert_eq!(w.admin(admin_with(card, A::LoadReversal, 0, part, l.txn_id, TICKET)).code, C::Approved);
    }
    let c = w.card(card);
    assert_eq!((c.cash_minor, c.bonus_minor), (0, 0));
}

#[test]
fn k4_points_are_redeemed_as_bonus_value_or_for_a_gift() {
    let mut w = World::retail();
    let card = w.sold(Product::Member, 100_000);
    w.edit(card, |c| c.points = 1_250);
    let credit = JournalEntry { points_delta: 1_250, cash_delta_minor: 0, bonus_delta_minor: 0, ..w.journal[0] };
    w.journal.push(credit);
    let bonus_before = w.card(card).bonus_minor;
    let r = w.admin(admin_with(card, A::RedeemPoints, 0, 1_000, 0, 0));
    // 100 points = 1.00: 1,000 points are 10.00 of bonus value.
    assert_eq!((r.code, r.bonus_minor - bonus_before, r.points_balance), (C::Approved, 1_000, 250));
    assert_eq!(w.admin(admin_with(card, A::RedeemPoints, 0, 251, 0, 0)).code, C::InsufficientPoints);
    let r = w.admin(admin_with(card, A::RedeemPoints, AdminFlags::FOR_GIFT, 250, 0, 0));
    assert_eq!((r.code, r.amount_minor, r.points_balance), (C::Approved, 0, 0));
    assert_eq!(w.last_entry().kind, TxnKind::Redemption);
    // P2: gift cards earn no points, so they redeem none.
    let gift = w.sold(Product::Gift, 10_000);
    assert_eq!(w.admin(admin_with(gift, A::RedeemPoints, 0, 1, 0, 0)).code, C::PointsNotAllowed);
    w.assert_journal_explains(card);
}

#[test]
fn t8_an_administrative_request_sent_again_gets_its_first_answer_and_posts_once() {
    let mut w = World::retail();
    let card = w.sold(Product::Member, 100_000);
    let request = admin_with(card, A::Adjust, 0, 1_000, 0, TICKET);
    let first = w.admin(request);
    let posted = w.journal.len();
    w.stan -= 1;
    assert_eq!(w.admin(request), first);
    assert_eq!(w.journal.len(), posted, "the retransmission posted nothing");
}

#[test]
fn t9_v4_a_staff_members_purchase_on_their_own_card_rung_up_by_themselves_is_flagged() {
    let mut w = World::retail();
    let card = w.sold(Product::Member, 100_000);
    const STAFF: u32 = 2011;
    // Only an operator id fits the value; 0 makes it an ordinary card again.
    let set = admin_with(card, A::SetStaff, 0, i64::from(STAFF), 0, 0);
    assert_eq!(w.admin(set).code, C::Approved);
    assert_eq!(w.card(card).staff_operator_id, STAFF);
    assert!(w.card(card).has(CardFlags::STAFF));
    // V4: no bonus on a staff card's load.
    assert_eq!(w.send(load(card, 300_000)).bonus_minor, w.card(card).bonus_minor);
    let by = |w: &mut World, cashier: u32| {
        let cmd = Command {
            operator_id: cashier,
            pin: Some(Pin::new(PIN).unwrap()),
            ..w.command(sale(card, 1_000, Category::Retail))
        };
        assert_eq!(w.apply(cmd).code, C::Approved);
        w.last_entry()
    };
    let own = by(&mut w, STAFF);
    assert_eq!((own.sale_flags & JOURNAL_SELF_USE, own.operator_id), (JOURNAL_SELF_USE, STAFF), "T9: flagged");
    let other = by(&mut w, 2012);
    assert_eq!(other.sale_flags & JOURNAL_SELF_USE, 0, "rung up by someone else: not self-use");
    assert_eq!(w.admin(admin_with(card, A::SetStaff, 0, 0, 0, 0)).code, C::Approved);
    assert!(!w.card(card).has(CardFlags::STAFF));
    assert_eq!(by(&mut w, STAFF).sale_flags & JOURNAL_SELF_USE, 0, "no longer a staff card");
    assert_eq!(w.admin(admin_with(card, A::SetStaff, 0, -1, 0, 0)).code, C::InvalidField);
}
