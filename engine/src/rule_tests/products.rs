//! The products of the two shipped catalogs (P1, P4–P7), loads' payment methods and
//! invoices (V6), and what a sale carries (T10).

use protocol::{AdminAction as A, OperatorAuth, SaleFlags, Sealed};

use super::*;

fn invoice(card: CardNo, load_txn_id: u64, value: i64) -> Request {
    Request::CardAdmin {
        operator: OperatorAuth { operator_id: 31, passcode: Sealed::NONE },
        card,
        action: A::RecordInvoice as u8,
        flags: 0,
        value,
        original_txn_id: load_txn_id,
        ticket: 0,
        verification: Verification::NONE,
        new_pin: Sealed::NONE,
    }
}

#[test]
fn p1_a_member_card_is_real_name_recharged_with_bonus_and_earns_discounts_points_and_tiers() {
    let mut w = World::retail();
    let settings = w.engine.rules().catalog.product(Product::Member).unwrap().clone();
    assert!(settings.real_name && settings.points && settings.member_discount && settings.reloadable);
    let card = w.sold(Product::Member, 0); // registered by `sold` (M1)
    assert!(w.card(card).has(CardFlags::MEMBER));
    let r = w.send(load(card, 1_000_000));
    assert_eq!(r.bonus_minor, 160_000, "recharge: 16% bonus on 10,000.00 under the rule in force (V3)");
    let r = w.cmd(sale(card, 600_000, Category::Retail), Some(PIN), 0);
    assert_eq!((r.discount_minor, r.points_earned, r.tier), (30_000, 5_700, 2), "bronze 5%, then silver (K1)");
    let r = w.cmd(sale(card, 10_000, Category::Retail), Some(PIN), 0);
    assert_eq!(r.discount_minor, 1_000, "silver: 10%");
}

#[test]
fn p4_a_cash_card_spends_in_any_category_without_limits() {
    let mut w = World::hotel();
    let card = w.sold(Product::Cash, 3_000_000);
    for category in [Category::Spa, Category::Tobacco, Category::Luxury, Category::Room, Category::Dining] {
        let r = w.send(sale(card, 200_000, category));
        assert_eq!(r.code, C::Approved, "{category:?}");
    }
}

#[test]
fn p5_p6_comp_and_offset_cards_are_restricted_unless_a_manager_overrides() {
    for product in [Product::Comp, Product::Offset] {
        let mut w = World::hotel();
        let card = w.sold(product, 500_000);
        assert_eq!(w.send(sale(card, 10_000, Category::Spa)).code, C::Approved, "{product:?}: 100.00 is allowed");
        let over = w.send(sale(card, 10_001, Category::Spa));
        assert_eq!((over.code, over.limit_minor), (C::LimitExceeded, 10_000), "{product:?}");
        assert_eq!(w.send(sale(card, 20_000, Category::Tobacco)).code, C::LimitExceeded, "{product:?}: a carton");
        assert_eq!(w.send(sale(card, 50_001, Category::Luxury)).code, C::LimitExceeded, "{product:?}");
        assert_eq!(w.cmd(sale(card, 10_001, Category::Spa), None, 7).code, C::Approved, "{product:?}: override");
        assert_eq!(w.send(sale(card, 30_000, Category::Dining)).code, C::Approved, "{product:?}: dining is fine");
    }
}

#[test]
fn p7_a_room_card_pays_rooms_only_and_takes_deposits() {
    let mut w = World::hotel();
    let card = w.sold(Product::Room, 100_000);
    assert_eq!(w.send(sale(card, 1_000, Category::Spa)).code, C::CategoryNotAllowed);
    let h = w.send(hold(card, 50_000, Category::Room));
    assert_eq!((h.code, h.held_minor), (C::Approved, 50_000));
    assert_eq!(w.send(hold(card, 10_000, Category::Dining)).code, C::CategoryNotAllowed);
}

#[test]
fn v6_every_load_records_its_payment_method_and_invoices_follow_loads_only() {
    let mut w = World::retail();
    let (card, sold) = w.sell(Product::Member, 100_000);
    assert_eq!(w.journal.first().unwrap().method, PaymentMethod::Cash as u8);
    let wechat = w.send(Request::Load { card, amount_minor: 200_000, method: PaymentMethod::Wechat as u8 });
    assert_eq!(w.journal.last().unwrap().method, PaymentMethod::Wechat as u8);
    // Invoices: against a load, up to its amount, in parts.
    let first = w.cmd_as(invoice(card, wechat.txn_id, 150_000));
    assert_eq!(first.code, C::Approved);
    let entry = w.journal.last().unwrap();
    assert_eq!(
        (entry.kind, entry.amount_minor, entry.ref_txn_id, entry.cash_delta_minor),
        (TxnKind::InvoiceIssued, 150_000, wechat.txn_id, 0)
    );
    let over = w.cmd_as(invoice(card, wechat.txn_id, 50_001));
    assert_eq!((over.code, over.limit_minor), (C::InvoiceExceedsLoad, 50_000));
    assert_eq!(w.cmd_as(invoice(card, sold.txn_id, 100_000)).code, C::Approved, "the opening load too");
    // A load voided brought no money in: nothing to invoice.
    let voided = w.send(Request::Load { card, amount_minor: 100_000, method: PaymentMethod::Cash as u8 });
    assert_eq!(w.send(Request::Void { card, original_txn_id: voided.txn_id }).code, C::Approved);
    assert_eq!(w.cmd_as(invoice(card, voided.txn_id, 100)).code, C::OriginalAlreadySettled);
    // Never at spending.
    let s = w.cmd(sale(card, 1_000, Category::Retail), Some(PIN), 0);
    assert_eq!(w.cmd_as(invoice(card, s.txn_id, 500)).code, C::InvoiceExceedsLoad);
}

#[test]
fn t10_a_sale_carries_its_category_and_flags_into_the_journal() {
    let mut w = World::retail();
    let card = w.sold(Product::Member, 100_000);
    let flags = SaleFlags::GROUP_PURCHASE | SaleFlags::SPECIAL_PRICE;
    let request = Request::Sale {
        card,
        amount_minor: 5_000,
        category: Category::SmallAppliance as u8,
        flags,
        verification: Verification::NONE,
    };
    let r = w.cmd(request, Some(PIN), 0);
    assert_eq!((r.code, r.points_earned, r.discount_minor), (C::Approved, 0, 0), "K2, T3: flagged sales earn nothing");
    let entry = w.journal.last().unwrap();
    assert_eq!((entry.category, entry.sale_flags), (Category::SmallAppliance as u8, flags));
    let unknown =
        Request::Sale { card, amount_minor: 5_000, category: 200, flags: 0, verification: Verification::NONE };
    assert_eq!(w.cmd(unknown, Some(PIN), 0).code, C::InvalidField);
}
