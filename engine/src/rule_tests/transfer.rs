//! Steps of the operations spanning partitions (M1 registration, L6 replacement), as the
//! coordinator sends them; each is applied once however often it is sent.

use super::*;

/// The transfer out of `old` and what it moved, as the coordinator reads it back.
fn moved(w: &World, old: CardNo, transfer: &CardReply) -> Moved {
    let txn = *w.engine.txn(transfer.txn_id).unwrap();
    Moved {
        transfer_txn_id: transfer.txn_id,
        cash_minor: -txn.cash_delta_minor,
        bonus_minor: -txn.bonus_delta_minor,
        points: -txn.points_delta,
        spend_minor: -txn.spend_delta_minor,
        old: w.card(old),
    }
}

#[test]
fn m1_a_real_name_card_is_used_only_once_its_holder_is_registered() {
    let mut w = World::retail();
    let card = first_of(Product::Member);
    let sold = w.send(Request::SellCard { card, amount_minor: 100_000, method: PaymentMethod::Cash as u8 });
    assert_eq!(sold.code, C::Approved, "the sale and its opening load come first");
    assert_eq!(w.send(load(card, 10_000)).code, C::MemberNotRegistered);
    assert_eq!(w.cmd(sale(card, 1_000, Category::Retail), Some(PIN), 0).code, C::MemberNotRegistered);
    let r = w.step(card, Step::AttachMember { birthday_mmdd: 1124 });
    assert_eq!(r.code, C::Approved);
    assert_eq!(w.card(card).birthday_mmdd, 1124);
    assert_eq!(w.journal.last().unwrap().kind, TxnKind::MemberRegistered);
    assert_eq!(w.cmd(sale(card, 1_000, Category::Retail), Some(PIN), 0).code, C::Approved);
    // Registered twice: refused. An anonymous gift card has no holder to register (P2).
    assert_eq!(w.step(card, Step::AttachMember { birthday_mmdd: 0 }).code, C::MemberNotAllowed);
    let gift = w.sold(Product::Gift, 10_000);
    assert_eq!(w.step(gift, Step::AttachMember { birthday_mmdd: 0 }).code, C::MemberNotAllowed);
}

#[test]
fn l6_a_replacement_moves_value_points_tier_and_validity_and_closes_the_old_card() {
    let mut w = World::hotel();
    let old = w.sold(Product::VipStored, 2_000_000);
    w.edit(old, |c| c.birthday_mmdd = 307);
    w.cmd(sale(old, 600_000, Category::Dining), Some(PIN), 0);
    let before = w.card(old);
    assert!(before.points > 0 && before.spend_minor > 0);
    // Lost first (L5), then replaced.
    let lost = Request::CardAdmin {
        operator: protocol::OperatorAuth { operator_id: 41, passcode: protocol::Sealed::NONE },
        card: old,
        action: protocol::AdminAction::ReportLoss as u8,
        flags: 0,
        value: 0,
        original_txn_id: 0,
        ticket: 0,
        verification: Verification::NONE,
        new_pin: protocol::Sealed::NONE,
    };
    w.send(lost);
    let new = CardNo(first_of(Product::VipStored).0 + 500);
    let out_key = TraceKey { terminal_id: u32::MAX, stan: 9_001 };
    let out = w.step_as(out_key, old, Step::TransferOut { to: new });
    assert_eq!((out.code, out.state, out.cash_minor, out.points_balance), (C::Approved, CardState::Closed, 0, 0));
    // Sent again (a coordinator recovering from a crash): the same answer, nothing more.
    let journal_len = w.journal.len();
    assert_eq!(w.step_as(out_key, old, Step::TransferOut { to: new }), out);
    assert_eq!(w.journal.len(), journal_len);
    let m = moved(&w, old, &out);
    assert_eq!((m.cash_minor, m.bonus_minor, m.points), (before.cash_minor, before.bonus_minor, before.points));
    let in_key = TraceKey { terminal_id: u32::MAX, stan: 9_002 };
    let step = Step::TransferIn { from: old, moved: m, fee_minor: 1_800, method: PaymentMethod::Cash as u8 };
    let r = w.step_as(in_key, new, step);
    assert_eq!(
        (r.code, r.cash_minor, r.bonus_minor, r.points_balance),
        (C::Approved, before.cash_minor, before.bonus_minor, before.points)
    );
    assert_eq!(w.step_as(in_key, new, step), r, "applied once");
    let c = w.card(new);
    assert_eq!((c.expiry_date, c.spend_minor, c.birthday_mmdd), (before.expiry_date, before.spend_minor, 307), "L6");
    assert!(c.has(CardFlags::MEMBER) && c.has(CardFlags::PIN_MUST_CHANGE));
    let kinds: Vec<TxnKind> = w.journal[journal_len..].iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![TxnKind::TransferIn, TxnKind::Fee]);
    let fee = w.journal.last().unwrap();
    assert_eq!((fee.amount_minor, fee.cash_delta_minor, fee.method), (1_800, 0, PaymentMethod::Cash as u8));
    // Value is neither lost nor doubled: the journal explains both cards.
    for card in [old, new] {
        let c = w.card(card);
        let sum: i64 =
            w.journal.iter().filter(|e| e.card == card).map(|e| e.cash_delta_minor + e.bonus_delta_minor).sum();
        assert_eq!(sum, c.cash_minor + c.bonus_minor);
    }
    assert_eq!(w.cmd(sale(old, 100, Category::Dining), Some(PIN), 0).code, C::CardClosed);
    assert_eq!(w.cmd(sale(new, 100, Category::Dining), Some(PIN), 0).code, C::Approved);
}

#[test]
fn l6_member_and_gift_cards_never_exchange_value_and_a_refused_transfer_is_given_back() {
    let mut w = World::retail();
    let gift = w.sold(Product::Gift, 10_000);
    assert_eq!(w.step(gift, Step::TransferOut { to: first_of(Product::Member) }).code, C::ReplacementRefused);
    let old = w.sold(Product::Member, 100_000);
    let before = w.card(old);
    let out = w.step(old, Step::TransferOut { to: first_of(Product::Gift) });
    assert_eq!(out.code, C::Approved);
    let m = moved(&w, old, &out);
    // The new card is of another product: refused, so the coordinator gives the value back.
    let into_gift = w
        .step(CardNo(first_of(Product::Gift).0 + 7), Step::TransferIn { from: old, moved: m, fee_minor: 0, method: 0 });
    assert_eq!(into_gift.code, C::ReplacementRefused);
    let back = w.step(old, Step::TransferBack { transfer_txn_id: out.txn_id, state: before.state });
    assert_eq!(
        (back.code, back.state, back.cash_minor, back.bonus_minor),
        (C::Approved, before.state, before.cash_minor, before.bonus_minor)
    );
    assert_eq!(w.card(old).spend_minor, before.spend_minor);
    // A sold card cannot receive a replacement either.
    let out = w.step(old, Step::TransferOut { to: gift });
    let m = moved(&w, old, &out);
    let sold_member = w.sold(Product::Member, 0);
    assert_eq!(
        w.step(sold_member, Step::TransferIn { from: old, moved: m, fee_minor: 0, method: 0 }).code,
        C::ReplacementRefused
    );
}
