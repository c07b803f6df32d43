//! The card rules under the shipped catalogs (catalogs/retail.toml, catalogs/hotel.toml): each
//! test names the rule ids it pins, and fails when the rule is broken.

use std::sync::Arc;

use protocol::{
    CardNo, CardState, Category, Header, LocalTime, PaymentMethod, Request, ResponseCode as C, Verification,
};

use super::*;

const RETAIL: &str = include_str!("../../catalogs/retail.toml");
const HOTEL: &str = include_str!("../../catalogs/hotel.toml");
const TERMINAL: u32 = 2001;
const DAY: BusinessDate = 20261122;
const PIN: &[u8] = b"000000";

/// First card number of each product's range: product code in the fifth digit.
fn first_of(product: Product) -> CardNo {
    CardNo(6200_8000_0000_0000 + product as u64 * 10_000_000)
}

struct World {
    engine: Engine,
    ctx: Context,
    stan: u32,
    store_id: u32,
    next: [u64; 9],
    /// Every entry posted, in order.
    journal: Vec<JournalEntry>,
}

impl World {
    fn new(catalog_text: &str, store_id: u32) -> World {
        let catalog = catalog::Catalog::from_toml_str("test", catalog_text).unwrap();
        let version = catalog.version;
        let mut engine = Engine::new(IdSource::new(0, 1, 0));
        engine.set_rules(Rules::new(Arc::new(catalog), PinKey::new(&[9; 32])));
        for product in Product::ALL {
            let first = first_of(product);
            engine.add_range(CardRange {
                first,
                last: CardNo(first.0 + 999_999),
                product: product as u16,
                store_id,
                terminal_id: 1,
                stan: 1,
            });
        }
        World {
            engine,
            ctx: Context { now_ms: 1_795_311_005_000, business_date: DAY, batch_id: 1, catalog_version: version },
            stan: 0,
            store_id,
            next: [0; 9],
            journal: Vec::new(),
        }
    }

    fn retail() -> World {
        World::new(RETAIL, 100)
    }

    fn hotel() -> World {
        World::new(HOTEL, 100)
    }

    fn cmd(&mut self, request: Request, pin: Option<&[u8]>, approver_id: u32) -> CardReply {
        let cmd = Command { pin: pin.map(|p| Pin::new(p).unwrap()), approver_id, ..self.command(request) };
        self.apply(cmd)
    }

    /// A command for `request` under the next trace number, without PIN or operator.
    fn command(&mut self, request: Request) -> Command {
        self.stan += 1;
        let header = Header { flags: 0, terminal_id: TERMINAL, stan: self.stan, local_time: LocalTime(20261122093005) };
        Command::new(header, self.store_id, request)
    }

    fn apply(&mut self, cmd: Command) -> CardReply {
        let mut fx = Effects::default();
        let reply = self.engine.apply(self.ctx, &cmd, &mut fx);
        if !reply.code.is_approved() {
            assert!(fx.journal.is_empty(), "a decline posts nothing: {fx:?}");
        }
        for e in &fx.journal {
            assert_eq!(e.catalog_version, self.ctx.catalog_version, "every entry names the catalog in force");
        }
        self.journal.extend(fx.journal);
        reply
    }

    /// An administrative request by operator 31 (its role was checked by the session).
    fn cmd_as(&mut self, request: Request) -> CardReply {
        let cmd = Command { operator_id: 31, ..self.command(request) };
        self.apply(cmd)
    }

    fn send(&mut self, request: Request) -> CardReply {
        self.cmd(request, None, 0)
    }

    /// Sells the next card of `product` with an opening cash load.
    fn sell(&mut self, product: Product, amount_minor: i64) -> (CardNo, CardReply) {
        let card = CardNo(first_of(product).0 + self.next[product as usize]);
        self.next[product as usize] += 1;
        let reply = self.send(Request::SellCard { card, amount_minor, method: PaymentMethod::Cash as u8 });
        let real_name = self.engine.rules().catalog.product(product).is_some_and(|s| s.real_name);
        if reply.code.is_approved() && real_name {
            // M1: the holder registers at the desk right after the sale.
            let registered = self.step(card, Step::AttachMember { birthday_mmdd: 0 });
            assert_eq!(registered.code, C::Approved, "{registered:?}");
        }
        (card, reply)
    }

    /// A step of an operation spanning partitions, as the coordinator sends it.
    fn step(&mut self, card: CardNo, step: Step) -> CardReply {
        self.stan += 1;
        let key = TraceKey { terminal_id: u32::MAX, stan: self.stan };
        self.step_as(key, card, step)
    }

    fn step_as(&mut self, key: TraceKey, card: CardNo, step: Step) -> CardReply {
        let header = Header { flags: 0, terminal_id: key.terminal_id, stan: key.stan, local_time: LocalTime(0) };
        let cmd = Command { operator_id: 41, ..Command::new(header, self.store_id, Request::Echo) };
        let mut fx = Effects::default();
        let reply = self.engine.apply_step(self.ctx, key, card, &cmd, step, &mut fx);
        self.journal.extend(fx.journal);
        reply
    }

    fn sold(&mut self, product: Product, amount_minor: i64) -> CardNo {
        let (card, reply) = self.sell(product, amount_minor);
        assert_eq!(reply.code, C::Approved, "{reply:?}");
        card
    }

    fn card(&self, card: CardNo) -> Card {
        *self.engine.card(card).unwrap()
    }

    fn edit(&mut self, card: CardNo, f: impl FnOnce(&mut Card)) {
        let mut c = self.card(card);
        f(&mut c);
        self.engine.cards.insert(card, c);
    }
}

fn sale(card: CardNo, amount_minor: i64, category: Category) -> Request {
    Request::Sale { card, amount_minor, category: category as u8, flags: 0, verification: Verification::NONE }
}

fn load(card: CardNo, amount_minor: i64) -> Request {
    Request::Load { card, amount_minor, method: PaymentMethod::Cash as u8 }
}

fn hold(card: CardNo, amount_minor: i64, category: Category) -> Request {
    Request::Hold { card, amount_minor, category: category as u8, verification: Verification::NONE }
}

mod admin;
mod housekeeping;
mod products;
mod transfer;

#[test]
fn l3_a_sold_card_has_the_initial_pin_and_says_it_must_change() {
    let mut w = World::retail();
    let (card, reply) = w.sell(Product::Member, 100_000);
    assert_eq!(reply.notices & CardReply::NOTICE_PIN_MUST_CHANGE, CardReply::NOTICE_PIN_MUST_CHANGE);
    let stored = w.card(card);
    assert!(stored.has(CardFlags::PIN_MUST_CHANGE));
    assert_ne!(stored.pin_hash, 0);
    // The hash is of the initial PIN, keyed: not the PIN's digits.
    assert_eq!(stored.pin_hash, w.engine.pin_hash(card, &Pin::new(PIN).unwrap()));
    let reply = w.cmd(sale(card, 1_000, Category::Retail), Some(PIN), 0);
    assert_eq!(reply.code, C::Approved);
    assert_ne!(reply.notices & CardReply::NOTICE_PIN_MUST_CHANGE, 0, "the debit reply says so (L3)");
    // A gift product has no PIN: no notice.
    let (_, gift) = w.sell(Product::Gift, 10_000);
    assert_eq!(gift.notices & CardReply::NOTICE_PIN_MUST_CHANGE, 0);
}

#[test]
fn t2_l4_pin_is_checked_and_five_wrong_lock_the_card() {
    let mut w = World::retail();
    let card = w.sold(Product::Member, 100_000);
    assert_eq!(w.send(sale(card, 1_000, Category::Retail)).code, C::PinRequired);
    for left in (1..=4).rev() {
        let reply = w.cmd(sale(card, 1_000, Category::Retail), Some(b"111111"), 0);
        assert_eq!((reply.code, reply.pin_attempts_left), (C::WrongPin, left));
    }
    // A right PIN clears the count.
    assert_eq!(w.cmd(sale(card, 1_000, Category::Retail), Some(PIN), 0).code, C::Approved);
    assert_eq!(w.card(card).pin_failures, 0);
    for _ in 0..4 {
        w.cmd(sale(card, 1_000, Category::Retail), Some(b"222222"), 0);
    }
    let fifth = w.cmd(sale(card, 1_000, Category::Retail), Some(b"222222"), 0);
    assert_eq!((fifth.code, fifth.pin_attempts_left, fifth.state), (C::WrongPin, 0, CardState::PinLocked));
    // Locked: even the right PIN is refused until customer service unlocks it (L4).
    assert_eq!(w.cmd(sale(card, 1_000, Category::Retail), Some(PIN), 0).code, C::CardPinLocked);
}

#[test]
fn v1_v2_loads_are_whole_yuan_within_the_product_bounds() {
    let mut w = World::retail();
    let card = w.sold(Product::Member, 10_000);
    assert_eq!(w.send(load(card, 10_050)).code, C::InvalidField, "V1: whole yuan");
    let low = w.send(load(card, 5_000));
    assert_eq!((low.code, low.limit_minor), (C::LoadBelowMinimum, 10_000));
    let high = w.send(load(card, 5_000_100));
    assert_eq!((high.code, high.limit_minor), (C::LoadAboveMaximum, 5_000_000));
    for _ in 0..1 {
        assert_eq!(w.send(load(card, 5_000_000)).code, C::Approved);
    }
    // 100.00 + 50,000.00 + 16% bonus = 58,100.00; another 50,000.00 passes the maximum balance.
    let over = w.send(load(card, 5_000_000));
    assert_eq!((over.code, over.limit_minor), (C::BalanceLimitExceeded, 10_000_000));
    // P8: vip_stored top-ups are at least 20,000.00.
    let mut h = World::hotel();
    let (_, vip) = h.sell(Product::VipStored, 1_000_000);
    assert_eq!((vip.code, vip.limit_minor), (C::LoadBelowMinimum, 2_000_000));
}

#[test]
fn v3_bonus_follows_the_tier_and_the_rule_in_force_on_the_day() {
    let mut w = World::retail();
    let card = w.sold(Product::Member, 0);
    // 2026-11-22: the summer rule (from 2026-07-01): 5%, 10%, 16%.
    let r = w.send(load(card, 100_000));
    assert_eq!((r.cash_minor, r.bonus_minor), (100_000, 5_000), "1,000.00 → 5%");
    let r = w.send(load(card, 300_100));
    assert_eq!(r.bonus_minor - 5_000, 30_010, "3,001.00 → 10%");
    let r = w.send(load(card, 600_000));
    assert_eq!(r.bonus_minor - 35_010, 96_000, "6,000.00 → 16% under the rule in force");
    let r = w.send(load(card, 50_000));
    assert_eq!(r.bonus_minor, 131_010, "below the first tier: no bonus");
    // 2026-03-01: the first rule, whose top tier is 15%.
    w.ctx.business_date = 20260301;
    let r = w.send(load(card, 600_000));
    assert_eq!(r.bonus_minor - 131_010, 90_000);
    // Gift cards have no bonus rule.
    let (_, gift) = w.sell(Product::Gift, 200_000);
    assert_eq!(gift.bonus_minor, 0);
}

#[test]
fn v4_staff_cards_get_no_bonus() {
    let mut w = World::retail();
    let card = w.sold(Product::Member, 0);
    w.edit(card, |c| c.flags |= CardFlags::STAFF);
    let r = w.send(load(card, 600_000));
    assert_eq!((r.code, r.bonus_minor), (C::Approved, 0));
}

#[test]
fn t3_k1_k2_discount_by_tier_and_points_by_category() {
    let mut w = World::retail();
    let card = w.sold(Product::Member, 5_000_000);
    // Bronze: 5% off 100.00; retail earns 1 point per 1.00 of net.
    let r = w.cmd(sale(card, 10_000, Category::Retail), Some(PIN), 0);
    assert_eq!((r.gross_minor, r.discount_minor, r.amount_minor), (10_000, 500, 9_500));
    assert_eq!((r.points_earned, r.points_balance, r.tier), (95, 95, 1));
    // Small appliances: 1 point per 5.00.
    let r = w.cmd(sale(card, 10_000, Category::SmallAppliance), Some(PIN), 0);
    assert_eq!(r.points_earned, 9_500 / 500);
    // Large appliances: 1 point per 10.00, rounded down.
    let r = w.cmd(sale(card, 10_999, Category::LargeAppliance), Some(PIN), 0);
    assert_eq!((r.amount_minor, r.points_earned), (10_449, 10));
    // A promoted sale: no member discount and no points (T3, K2).
    let promoted = Request::Sale {
        card,
        amount_minor: 10_000,
        category: Category::Retail as u8,
        flags: protocol::SaleFlags::PROMOTION,
        verification: Verification::NONE,
    };
    let r = w.cmd(promoted, Some(PIN), 0);
    assert_eq!((r.discount_minor, r.amount_minor, r.points_earned), (0, 10_000, 0));
    // Cumulative net spend reaches silver (5,000.00): 10% from the next sale (K1).
    let r = w.cmd(sale(card, 500_000, Category::Other), Some(PIN), 0);
    assert_eq!((r.discount_minor, r.tier, r.points_earned), (25_000, 2, 0), "`other` earns no points");
    let r = w.cmd(sale(card, 10_000, Category::Retail), Some(PIN), 0);
    assert_eq!((r.discount_minor, r.tier), (1_000, 2));
}

#[test]
fn p2_gift_cards_earn_nothing_are_not_reloaded_and_are_recycled_at_zero_l9() {
    let mut w = World::retail();
    let card = w.sold(Product::Gift, 20_000);
    let r = w.send(sale(card, 5_000, Category::Retail));
    assert_eq!((r.discount_minor, r.points_earned, r.tier), (0, 0, 0));
    assert_eq!(w.send(load(card, 10_000)).code, C::NotReloadable);
    let r = w.send(sale(card, 15_000, Category::Retail));
    assert_eq!((r.code, r.cash_minor), (C::Approved, 0));
    assert_ne!(r.notices & CardReply::NOTICE_RECYCLE, 0);
    assert!(w.card(card).has(CardFlags::RECYCLE));
}

#[test]
fn p3_special_cards_are_refused_until_enabled() {
    let mut w = World::retail();
    let (_, r) = w.sell(Product::Special, 10_000);
    assert_eq!((r.code, r.state), (C::ProductDisabled, CardState::Stock));
    // Enabled in a later catalog version, with its fixed discount (T3).
    let text = RETAIL.replace(
        "[products.special]\nenabled = false",
        "[products.special]\nenabled = true\nfixed_discount_percent = \"30\"\napproved_quantity = 2",
    );
    let mut w = World::new(&text, 100);
    let card = w.sold(Product::Special, 10_000);
    let r = w.cmd(sale(card, 1_000, Category::Retail), Some(PIN), 0);
    assert_eq!((r.code, r.discount_minor, r.amount_minor), (C::Approved, 300, 700));
    // The approved quantity: two cards, then no more; a sale undone frees its place.
    let (second, _) = w.sell(Product::Special, 0);
    let (_, third) = w.sell(Product::Special, 0);
    assert_eq!((third.code, third.state), (C::QuantityExhausted, CardState::Stock));
    let stan_of_second = w.stan - 2;
    let undo = Request::Reversal { card: second, original_stan: stan_of_second, amount_minor: 0 };
    assert_eq!(w.send(undo).code, C::Approved);
    assert_eq!(w.sell(Product::Special, 0).1.code, C::Approved);
}

#[test]
fn l7_validity_counts_from_the_first_load_and_is_not_extended() {
    let mut w = World::hotel();
    let card = w.sold(Product::Cash, 100_000);
    assert_eq!(w.card(card).expiry_date, 20271122);
    w.ctx.business_date = 20270601;
    assert_eq!(w.send(load(card, 100_000)).code, C::Approved);
    assert_eq!(w.card(card).expiry_date, 20271122, "a later load does not extend it");
    w.ctx.business_date = 20271121;
    assert_eq!(w.send(sale(card, 1_000, Category::Dining)).code, C::Approved);
    w.ctx.business_date = 20271122;
    assert_eq!(w.send(sale(card, 1_000, Category::Dining)).code, C::CardExpired);
    assert_eq!(w.send(load(card, 100_000)).code, C::CardExpired);
}

#[test]
fn r1_room_cards_spend_only_on_rooms() {
    let mut w = World::hotel();
    let card = w.sold(Product::Room, 100_000);
    assert_eq!(w.send(sale(card, 1_000, Category::Dining)).code, C::CategoryNotAllowed);
    assert_eq!(w.send(sale(card, 1_000, Category::Room)).code, C::Approved);
}

#[test]
fn r2_r3_comp_limits_name_the_limit_and_yield_to_an_override() {
    let mut w = World::hotel();
    let card = w.sold(Product::Comp, 1_000_000);
    let r = w.send(sale(card, 15_000, Category::Spa));
    assert_eq!((r.code, r.limit_minor), (C::LimitExceeded, 10_000));
    assert_eq!(w.cmd(sale(card, 15_000, Category::Spa), None, 77).code, C::Approved, "manager override");
    // Per day: luxury 500.00 a sale, 1,000.00 a day.
    assert_eq!(w.send(sale(card, 50_000, Category::Luxury)).code, C::Approved);
    assert_eq!(w.send(sale(card, 50_000, Category::Luxury)).code, C::Approved);
    let r = w.send(sale(card, 100, Category::Luxury));
    assert_eq!((r.code, r.limit_minor), (C::LimitExceeded, 100_000));
    // The next business day starts again.
    w.ctx.business_date += 1;
    assert_eq!(w.send(sale(card, 100, Category::Luxury)).code, C::Approved);
    // Unlimited categories are not affected.
    assert_eq!(w.send(sale(card, 90_000, Category::Dining)).code, C::Approved);
}

#[test]
fn t4_holds_need_a_product_that_takes_them_and_capture_is_priced() {
    let mut w = World::hotel();
    let comp = w.sold(Product::Comp, 100_000);
    assert_eq!(w.send(hold(comp, 10_000, Category::Dining)).code, C::HoldsNotAllowed);
    let vip = w.sold(Product::VipStored, 2_000_000);
    // Check-in deposit: PIN required (T2).
    assert_eq!(w.send(hold(vip, 100_000, Category::Room)).code, C::PinRequired);
    let h = w.cmd(hold(vip, 100_000, Category::Room), Some(PIN), 0);
    assert_eq!((h.code, h.held_minor), (C::Approved, 100_000));
    // Checkout: the final 800.00 is a room sale, bronze 5% off, points on the net.
    let capture = Request::Capture { card: vip, hold_txn_id: h.txn_id, amount_minor: 80_000 };
    let c = w.send(capture);
    assert_eq!(
        (c.code, c.gross_minor, c.discount_minor, c.amount_minor, c.held_minor),
        (C::Approved, 80_000, 4_000, 76_000, 0)
    );
    assert!(c.points_earned > 0);
}

#[test]
fn k3_birthday_discount_applies_from_three_days_before() {
    let mut w = World::hotel();
    let card = w.sold(Product::VipStored, 2_000_000);
    w.edit(card, |c| c.birthday_mmdd = 1124);
    let r = w.cmd(sale(card, 10_000, Category::Dining), Some(PIN), 0);
    assert_eq!(r.discount_minor, 1_200, "12% beats bronze 5%");
    w.ctx.business_date = 20261125;
    let r = w.cmd(sale(card, 10_000, Category::Dining), Some(PIN), 0);
    assert_eq!(r.discount_minor, 500, "the day after: the tier discount");
}

#[test]
fn t5_refunds_of_discounted_bonus_funded_points_earning_sales() {
    let mut w = World::retail();
    let card = w.sold(Product::Member, 100_000); // 1,000.00 + 50.00 bonus
    let s = w.cmd(sale(card, 20_000, Category::Retail), Some(PIN), 0);
    // 5% off: net 190.00, taking the 50.00 bonus first (T1) and 140.00 cash; 190 points.
    assert_eq!((s.amount_minor, s.bonus_minor, s.cash_minor, s.points_balance), (19_000, 0, 86_000, 190));
    let spend_before = w.card(card).spend_minor;
    // A refund beyond the net paid is refused.
    let too_much = Request::Refund { card, original_txn_id: s.txn_id, amount_minor: 19_001 };
    assert_eq!(w.send(too_much).code, C::RefundExceedsOriginal);
    // Half back: bonus and cash in proportion, half the points.
    let r = w.send(Request::Refund { card, original_txn_id: s.txn_id, amount_minor: 9_500 });
    assert_eq!((r.bonus_minor, r.cash_minor, r.points_earned, r.points_balance), (2_500, 93_000, -95, 95));
    // The rest: everything the sale moved is back.
    let r = w.send(Request::Refund { card, original_txn_id: s.txn_id, amount_minor: 9_500 });
    assert_eq!((r.bonus_minor, r.cash_minor, r.points_balance), (5_000, 100_000, 0));
    assert_eq!(w.card(card).spend_minor, spend_before - 19_000, "K1 spend follows refunds");
}

#[test]
fn t6_void_of_a_points_earning_sale_restores_points_and_spend() {
    let mut w = World::retail();
    let card = w.sold(Product::Member, 100_000);
    let s = w.cmd(sale(card, 20_000, Category::Retail), Some(PIN), 0);
    assert_eq!(s.points_balance, 190);
    let v = w.send(Request::Void { card, original_txn_id: s.txn_id });
    assert_eq!((v.code, v.points_balance, v.cash_minor, v.bonus_minor), (C::Approved, 0, 100_000, 5_000));
    assert_eq!(w.card(card).spend_minor, 0);
}

#[test]
fn t1_pay_first_is_a_product_setting() {
    let text = RETAIL.replace("pay_first = \"bonus\"         # T1", "pay_first = \"cash\"");
    let mut w = World::new(&text, 100);
    let card = w.sold(Product::Member, 100_000); // 1,000.00 cash + 50.00 bonus
    let r = w.cmd(sale(card, 10_000, Category::Other), Some(PIN), 0);
    assert_eq!((r.cash_minor, r.bonus_minor), (100_000 - r.amount_minor, 5_000));
}
