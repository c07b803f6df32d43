//! The product catalog: the example catalogs parse with the values of their sources, and every
//! validation names the file, the key and the problem.

use engine::catalog::{parse_money_minor, Catalog, CatalogError, PayFirst};
use engine::Product;
use protocol::Category;
use rust_decimal::Decimal;

const RETAIL: &str = include_str!("../../catalogs/retail.toml");
const HOTEL: &str = include_str!("../../catalogs/hotel.toml");

/// The smallest valid catalog; each failing case changes one thing in it.
const BASE: &str = r#"
version = 1
categories = ["retail", "room"]

[settings]

[products.gift]
real_name = false
pin_required = false
points = false
member_discount = false
validity_days = 365
load_min = "100.00"
load_max = "1000.00"
balance_max = "1000.00"
reloadable = false
refundable = false
transferable = true
"#;

fn rate(text: &str) -> Decimal {
    text.parse().unwrap()
}

fn parse(text: &str) -> Result<Catalog, CatalogError> {
    Catalog::from_toml_str("bad.toml", text)
}

fn replaced(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "BASE lacks {from:?}");
    BASE.replacen(from, to, 1)
}

fn appended(extra: &str) -> String {
    format!("{BASE}\n{extra}")
}

/// Asserts the text is rejected with a line `bad.toml: <key>: ...<needle>...`.
#[track_caller]
fn assert_rejected(text: &str, key: &str, needle: &str) {
    let error = parse(text).expect_err("catalog should be rejected");
    let message = error.to_string();
    let prefix = format!("bad.toml: {key}: ");
    assert!(
        message.lines().any(|line| line.starts_with(&prefix) && line.contains(needle)),
        "expected a line starting {prefix:?} containing {needle:?}, got:\n{message}"
    );
}

#[test]
fn base_catalog_is_valid_and_gets_rule_defaults() {
    let catalog = parse(BASE).unwrap();
    assert_eq!(catalog.settings.pin_lockout_count, 5); // L4
    assert_eq!(catalog.settings.dormancy_days, 365); // L8
    assert_eq!(catalog.settings.dormancy_notice_days, 30); // L8
    assert_eq!(catalog.settings.hold_expiry_days, 30); // T4
    assert_eq!(catalog.points.redeem_points_per_yuan, 100); // K4
    assert_eq!(catalog.points.expiry_days, 365); // K5
    let gift = catalog.product(Product::Gift).unwrap();
    assert_eq!(gift.categories, vec![Category::Retail, Category::Room]);
    assert_eq!(gift.pay_first, PayFirst::Bonus);
    assert!(gift.enabled);
}

#[test]
fn retail_catalog_parses_with_expected_values() {
    let catalog = Catalog::from_toml_str("retail.toml", RETAIL).unwrap();
    assert_eq!(catalog.version, 1);
    let products: Vec<Product> = catalog.products.iter().map(|p| p.product).collect();
    assert_eq!(products, vec![Product::Member, Product::Gift, Product::Special]);

    let member = catalog.product(Product::Member).unwrap();
    assert!(member.real_name && member.pin_required && member.points && member.member_discount);
    assert_eq!(member.card_fee_minor, 1_800);
    assert_eq!(member.replacement_fee_minor, 1_800);
    assert_eq!(member.load_max_minor, 5_000_000);
    assert_eq!(member.validity_days, None);

    let gift = catalog.product(Product::Gift).unwrap();
    assert!(!gift.real_name && !gift.points && !gift.member_discount);
    assert!(gift.validity_days.is_some());

    let special = catalog.product(Product::Special).unwrap();
    assert!(!special.enabled);

    // V3: two versions by date.
    let first = catalog.bonus_rule(Product::Member, 20260315).unwrap();
    assert_eq!(first.tiers.len(), 3);
    assert_eq!(first.tiers[0].load_min_minor, 100_000);
    assert_eq!(first.tiers[0].bonus_rate, rate("0.05"));
    assert_eq!(first.tiers[2].bonus_rate, rate("0.15"));
    let second = catalog.bonus_rule(Product::Member, 20260701).unwrap();
    assert_eq!(second.tiers[2].bonus_rate, rate("0.16"));
    assert!(catalog.bonus_rule(Product::Member, 20251231).is_none());
    assert!(catalog.bonus_rule(Product::Gift, 20260315).is_none());

    // K1
    assert_eq!(catalog.member_tier(0).unwrap().name, "bronze");
    assert_eq!(catalog.member_tier(1_999_999).unwrap().name, "silver");
    assert_eq!(catalog.member_tier(2_000_000).unwrap().discount_rate, rate("0.15"));
    assert_eq!(catalog.member_tier(i64::MAX).unwrap().name, "platinum");

    // K2: 1 per 1.00, 5.00, 10.00.
    assert_eq!(catalog.points.rate(Category::Retail).unwrap().spend_per_point_minor, 100);
    assert_eq!(catalog.points.rate(Category::SmallAppliance).unwrap().spend_per_point_minor, 500);
    assert_eq!(catalog.points.rate(Category::LargeAppliance).unwrap().spend_per_point_minor, 1_000);
    assert!(catalog.points.rate(Category::Other).is_none());
    assert_eq!(catalog.points.expiry_days, 365);

    assert_eq!(catalog.settings.pin_lockout_count, 5);
    assert_eq!(catalog.settings.dormancy_days, 365);
    assert!(catalog.birthday.is_none());

    assert_eq!(catalog.companies.len(), 3);
    assert_eq!(catalog.companies.iter().filter(|c| c.head_office).count(), 1);
    assert_eq!(catalog.companies.iter().map(|c| c.stores.len()).sum::<usize>(), 4);
}

#[test]
fn hotel_catalog_parses_with_expected_values() {
    let catalog = Catalog::from_toml_str("hotel.toml", HOTEL).unwrap();
    let products: Vec<Product> = catalog.products.iter().map(|p| p.product).collect();
    assert_eq!(products, vec![Product::Cash, Product::Comp, Product::Offset, Product::Room, Product::VipStored]);

    // P8, V2, L7, T4
    let vip = catalog.product(Product::VipStored).unwrap();
    assert!(vip.real_name && vip.pin_required && vip.holds);
    assert_eq!(vip.load_min_minor, 2_000_000);
    assert_eq!(vip.validity_days, Some(365));

    // R1
    let room = catalog.product(Product::Room).unwrap();
    assert_eq!(room.categories, vec![Category::Room]);
    assert!(!room.allows(Category::Dining));

    // R2: spa over 100.00 needs an override, on comp and offset alike.
    for product in [Product::Comp, Product::Offset] {
        let settings = catalog.product(product).unwrap();
        let spa = settings.limit(Category::Spa).unwrap();
        assert_eq!(spa.per_txn_max_minor, Some(10_000));
        assert!(spa.override_allowed);
        assert!(settings.limit(Category::Tobacco).is_some());
        assert!(settings.limit(Category::Luxury).is_some());
    }
    assert!(catalog.product(Product::Cash).unwrap().limits.is_empty());

    // V3 defaults.
    let bonus = catalog.bonus_rule(Product::Cash, 20260101).unwrap();
    let tiers: Vec<(i64, i64, Decimal)> =
        bonus.tiers.iter().map(|t| (t.load_min_minor, t.load_max_minor, t.bonus_rate)).collect();
    assert_eq!(
        tiers,
        vec![(100_000, 300_000, rate("0.05")), (300_100, 500_000, rate("0.10")), (500_100, 1_000_000, rate("0.15")),]
    );

    // K1, K3, K4, K5, S1, T4
    let thresholds: Vec<i64> = catalog.member_tiers.iter().map(|t| t.threshold_minor).collect();
    assert_eq!(thresholds, vec![0, 500_000, 2_000_000, 5_000_000]);
    assert_eq!(catalog.member_tiers[3].discount_rate, rate("0.2"));
    let birthday = catalog.birthday.as_ref().unwrap();
    assert_eq!(birthday.discount_rate, rate("0.12"));
    assert_eq!(birthday.days_before, 3);
    assert_eq!(catalog.points.redeem_points_per_yuan, 100);
    assert_eq!(catalog.points.rate(Category::Room).unwrap().spend_per_point_minor, 100);
    assert_eq!(catalog.settings.day_cutover_minutes, 4 * 60);
    assert_eq!(catalog.settings.hold_expiry_days, 30);
}

#[test]
fn money_parses_exactly_without_floats() {
    assert_eq!(parse_money_minor("18.00"), Ok(1_800));
    assert_eq!(parse_money_minor("18"), Ok(1_800));
    assert_eq!(parse_money_minor("0.1"), Ok(10));
    assert_eq!(parse_money_minor("20000.10"), Ok(2_000_010));
    assert_eq!(parse_money_minor("1.500"), Ok(150));
    assert!(parse_money_minor("1.005").is_err());
    assert!(parse_money_minor("-1").is_err());
    assert!(parse_money_minor("1e3").is_err());
    assert!(parse_money_minor("").is_err());
    assert!(parse_money_minor("99999999999999999999").is_err());
}

#[test]
fn toml_syntax_error_names_file_and_line() {
    assert_rejected(&appended("[products.member\n"), "(top level)", "invalid table header: expected");
}

#[test]
fn unknown_key_is_rejected() {
    let text = replaced("transferable = true", "transferable = true\ncolour = \"red\"");
    assert_rejected(&text, "products.gift.colour", "unknown field `colour`");
    assert_rejected(
        &replaced("[settings]", "[settings]\npin_lock = 5"),
        "settings.pin_lock",
        "unknown field `pin_lock`",
    );
}

#[test]
fn missing_required_key_is_rejected() {
    assert_rejected(&replaced("load_max = \"1000.00\"\n", ""), "products.gift", "missing field `load_max`");
    assert_rejected(&replaced("version = 1\n", ""), "(top level)", "missing field `version`");
}

#[test]
fn amount_as_toml_number_is_rejected() {
    assert_rejected(&replaced("load_max = \"1000.00\"", "load_max = 1000.5"), "products.gift.load_max", "string");
}

#[test]
fn negative_amount_is_rejected() {
    assert_rejected(
        &replaced("balance_max = \"1000.00\"", "balance_max = \"-5.00\""),
        "products.gift.balance_max",
        "negative",
    );
}

#[test]
fn fractions_of_a_fen_are_rejected() {
    let text = appended("[[member_tiers]]\nname = \"bronze\"\nthreshold = \"0.001\"\ndiscount_percent = \"5\"");
    assert_rejected(&text, "member_tiers[0].threshold", "fractions of a fen");
}

#[test]
fn load_not_in_whole_yuan_is_rejected() {
    assert_rejected(&replaced("load_min = \"100.00\"", "load_min = \"100.50\""), "products.gift.load_min", "V1");
}

#[test]
fn load_min_above_load_max_is_rejected() {
    assert_rejected(
        &replaced("load_min = \"100.00\"", "load_min = \"2000.00\""),
        "products.gift.load_max",
        "below load_min",
    );
}

#[test]
fn balance_max_below_load_max_is_rejected() {
    let text = replaced("balance_max = \"1000.00\"", "balance_max = \"500.00\"");
    assert_rejected(&text, "products.gift.balance_max", "below load_max");
}

#[test]
fn unknown_product_name_is_rejected() {
    let text = BASE.replace("[products.gift]", "[products.giftcard]");
    assert_rejected(&text, "products.giftcard", "unknown product `giftcard`");
}

#[test]
fn unknown_category_names_are_rejected() {
    let text = replaced(r#"categories = ["retail", "room"]"#, r#"categories = ["retail", "karaoke"]"#);
    assert_rejected(&text, "categories[1]", "unknown category `karaoke`");
    let text = replaced("transferable = true", "transferable = true\ncategories = [\"rooms\"]");
    assert_rejected(&text, "products.gift.categories[0]", "unknown category `rooms`");
    let text = appended("[points.spend_per_point]\nmassage = \"1.00\"");
    assert_rejected(&text, "points.spend_per_point.massage", "unknown category");
    let text = appended("[products.gift.limits.casino]\nper_txn_max = \"1.00\"");
    assert_rejected(&text, "products.gift.limits.casino", "unknown category");
}

#[test]
fn category_outside_the_catalog_is_rejected() {
    let text = replaced("transferable = true", "transferable = true\ncategories = [\"spa\"]");
    assert_rejected(&text, "products.gift.categories[0]", "not in the catalog's `categories`");
    assert_rejected(&appended("[points.spend_per_point]\nspa = \"1.00\""), "points.spend_per_point.spa", "not in");
}

#[test]
fn duplicate_category_is_rejected() {
    let text = replaced(r#"categories = ["retail", "room"]"#, r#"categories = ["retail", "retail"]"#);
    assert_rejected(&text, "categories[1]", "listed twice");
}

#[test]
fn member_tier_thresholds_must_increase() {
    let tiers = r#"
[[member_tiers]]
name = "bronze"
threshold = "0.00"
discount_percent = "5"

[[member_tiers]]
name = "silver"
threshold = "5000.00"
discount_percent = "10"

[[member_tiers]]
name = "gold"
threshold = "5000.00"
discount_percent = "15"
"#;
    assert_rejected(&appended(tiers), "member_tiers[2].threshold", "thresholds must increase");
    let first = "[[member_tiers]]\nname = \"bronze\"\nthreshold = \"10.00\"\ndiscount_percent = \"5\"";
    assert_rejected(&appended(first), "member_tiers[0].threshold", "must start at 0");
}

#[test]
fn discounts_must_be_below_one_hundred_percent() {
    for bad in ["100", "120", "-1", "ten"] {
        let tier = format!("[[member_tiers]]\nname = \"bronze\"\nthreshold = \"0\"\ndiscount_percent = \"{bad}\"");
        assert_rejected(&appended(&tier), "member_tiers[0].discount_percent", bad);
    }
    assert_rejected(
        &appended("[birthday]\ndiscount_percent = \"100\"\ndays_before = 3"),
        "birthday.discount_percent",
        "below 100",
    );
}

const BONUS_GIFT_2026: &str = r#"
[[bonus_rules]]
product = "gift"
effective_from = 2026-01-01
effective_until = 2026-06-30
tiers = [{ load_min = "100", load_max = "500", bonus_percent = "5" }]
"#;

#[test]
fn bonus_percent_out_of_range_is_rejected() {
    let text = appended(&BONUS_GIFT_2026.replace("bonus_percent = \"5\"", "bonus_percent = \"101\""));
    assert_rejected(&text, "bonus_rules[0].tiers[0].bonus_percent", "out of range");
}

#[test]
fn bonus_tiers_must_increase_without_overlap() {
    let rule = BONUS_GIFT_2026.replace(
        r#"tiers = [{ load_min = "100", load_max = "500", bonus_percent = "5" }]"#,
        r#"tiers = [{ load_min = "100", load_max = "500", bonus_percent = "5" }, { load_min = "500", load_max = "900", bonus_percent = "10" }]"#,
    );
    assert_rejected(&appended(&rule), "bonus_rules[0].tiers[1].load_min", "without overlap");
    let reversed =
        BONUS_GIFT_2026.replace(r#"load_min = "100", load_max = "500""#, r#"load_min = "600", load_max = "500""#);
    assert_rejected(&appended(&reversed), "bonus_rules[0].tiers[0].load_max", "below load_min");
}

#[test]
fn bonus_rule_dates_must_be_ordered() {
    let rule = BONUS_GIFT_2026.replace("effective_until = 2026-06-30", "effective_until = 2025-12-31");
    assert_rejected(&appended(&rule), "bonus_rules[0].effective_until", "before effective_from");
    let later_first = BONUS_GIFT_2026.replace("2026-01-01", "2026-03-01");
    let text = appended(&format!(
        "{later_first}\n{}",
        BONUS_GIFT_2026.replace("effective_until = 2026-06-30\n", "effective_until = 2026-01-31\n")
    ));
    assert_rejected(&text, "bonus_rules[1].effective_from", "date order");
    let with_time = BONUS_GIFT_2026.replace("effective_from = 2026-01-01", "effective_from = 2026-01-01T10:00:00");
    assert_rejected(&appended(&with_time), "bonus_rules[0].effective_from", "plain date");
}

#[test]
fn bonus_rules_of_one_product_must_not_overlap() {
    let second = BONUS_GIFT_2026.replace("2026-01-01", "2026-06-30").replace("effective_until = 2026-06-30\n", "");
    let text = appended(&format!("{BONUS_GIFT_2026}\n{second}"));
    assert_rejected(&text, "bonus_rules[1].effective_from", "overlaps bonus_rules[0]");
    // An open-ended rule overlaps everything after it.
    let open = BONUS_GIFT_2026.replace("effective_until = 2026-06-30\n", "");
    let later = BONUS_GIFT_2026.replace("2026-01-01", "2027-01-01").replace("2026-06-30", "2027-06-30");
    assert_rejected(&appended(&format!("{open}\n{later}")), "bonus_rules[1].effective_from", "open end");
    // The next day is fine.
    let next = BONUS_GIFT_2026.replace("2026-01-01", "2026-07-01").replace("effective_until = 2026-06-30\n", "");
    let catalog = parse(&appended(&format!("{BONUS_GIFT_2026}\n{next}"))).unwrap();
    assert_eq!(catalog.bonus_rules.len(), 2);
    assert_eq!(catalog.bonus_rule(Product::Gift, 20260630).unwrap().effective_from, 20260101);
    assert_eq!(catalog.bonus_rule(Product::Gift, 20260701).unwrap().effective_from, 20260701);
}

#[test]
fn bonus_rule_for_unknown_or_missing_product_is_rejected() {
    let text = appended(&BONUS_GIFT_2026.replace("product = \"gift\"", "product = \"platinum\""));
    assert_rejected(&text, "bonus_rules[0].product", "unknown product `platinum`");
    let text = appended(&BONUS_GIFT_2026.replace("product = \"gift\"", "product = \"member\""));
    assert_rejected(&text, "bonus_rules[0].product", "not in `products`");
}

#[test]
fn gift_card_rules_are_enforced() {
    // P2
    assert_rejected(&replaced("validity_days = 365\n", ""), "products.gift.validity_days", "validity period");
    assert_rejected(&replaced("points = false", "points = true"), "products.gift", "no points");
    assert_rejected(&replaced("real_name = false", "real_name = true"), "products.gift.real_name", "anonymous");
}

#[test]
fn room_card_outside_room_category_is_rejected() {
    // R1
    let room = BASE.replace("[products.gift]", "[products.room]").replace("validity_days = 365\n", "");
    let text = room.replace("transferable = true", "transferable = true\ncategories = [\"room\", \"retail\"]");
    assert_rejected(&text, "products.room.categories", "R1");
    // Allowed categories default to all catalog categories, so a room product must say so.
    assert_rejected(&room, "products.room.categories", "R1");
}

#[test]
fn enabled_special_product_needs_its_discount_and_quantity() {
    // P3
    let special = BASE.replace("[products.gift]", "[products.special]");
    assert_rejected(&special, "products.special.fixed_discount_percent", "P3");
    let disabled = special.replace("[products.special]", "[products.special]\nenabled = false");
    assert!(parse(&disabled).is_ok());
    let discounted = special.replace("[products.special]", "[products.special]\nfixed_discount_percent = \"12.5\"");
    assert_rejected(&discounted, "products.special.approved_quantity", "P3");
    let enabled = discounted.replace("[products.special]", "[products.special]\napproved_quantity = 500");
    let catalog = parse(&enabled).unwrap();
    let settings = catalog.product(Product::Special).unwrap();
    assert_eq!((settings.fixed_discount_rate, settings.approved_quantity), (Some(rate("0.125")), Some(500)));
    let none = enabled.replace("approved_quantity = 500", "approved_quantity = 0");
    assert_rejected(&none, "products.special.approved_quantity", "never be sold");
}

#[test]
fn limit_rules_are_enforced() {
    // R3
    let empty = appended("[products.gift.limits.retail]\noverride_allowed = true");
    assert_rejected(&empty, "products.gift.limits.retail", "sets no limit");
    let inverted = appended("[products.gift.limits.retail]\nper_txn_max = \"100\"\nper_day_max = \"50\"");
    assert_rejected(&inverted, "products.gift.limits.retail.per_day_max", "below per_txn_max");
    let not_allowed = replaced("transferable = true", "transferable = true\ncategories = [\"retail\"]");
    let not_allowed = format!("{not_allowed}\n[products.gift.limits.room]\nper_txn_max = \"100\"");
    assert_rejected(&not_allowed, "products.gift.limits.room", "not allowed for this product");
}

#[test]
fn settings_are_range_checked() {
    assert_rejected(
        &replaced("[settings]", "[settings]\npin_lockout_count = 0"),
        "settings.pin_lockout_count",
        "at least 1",
    );
    assert_rejected(
        &replaced("[settings]", "[settings]\nhold_expiry_days = 0"),
        "settings.hold_expiry_days",
        "at least 1",
    );
    assert_rejected(&replaced("[settings]", "[settings]\nday_cutover = \"24:00\""), "settings.day_cutover", "HH:MM");
    assert_rejected(
        &replaced("[settings]", "[settings]\ndormancy_days = -1"),
        "settings.dormancy_days",
        "invalid value",
    );
    assert_rejected(&replaced("version = 1", "version = 0"), "version", "at least 1");
    let catalog = parse(&replaced("[settings]", "[settings]\npin_lockout_count = 3")).unwrap();
    assert_eq!(catalog.settings.pin_lockout_count, 3);
}

#[test]
fn companies_are_checked() {
    let two_heads = "[[companies]]\nid = 1\nname = \"a\"\nhead_office = true\n\n[[companies]]\nid = 2\nname = \"b\"\nhead_office = true";
    assert_rejected(&appended(two_heads), "companies", "exactly one");
    let same_store = "[[companies]]\nid = 1\nname = \"a\"\nhead_office = true\nstores = [{ id = 7, name = \"x\" }, { id = 7, name = \"y\" }]";
    assert_rejected(&appended(same_store), "companies[0].stores[1].id", "used twice");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = replaced("load_min = \"100.00\"", "load_min = \"-1\"").replace("validity_days = 365\n", "");
    let error = parse(&text).unwrap_err();
    assert_eq!(error.problems.len(), 2, "{error}");
    assert_eq!(error.source_name, "bad.toml");
    assert!(error.to_string().lines().all(|line| line.starts_with("bad.toml: products.gift.")));
}

/// S1: a store may close its day at a time of its own (a hotel's night audit among shops);
/// the deployment's cutover applies to the others; a time that is none is named.
#[test]
fn s1_a_store_may_have_a_cutover_of_its_own() {
    let chain = format!(
        "{}\n[[companies]]\nid = 1\nname = \"集团\"\nhead_office = true\nstores = [{{ id = 10, name = \"酒店\", day_cutover = \"04:00\" }}, {{ id = 11, name = \"商店\" }}]\n",
        BASE.replace("[settings]", "[settings]\nday_cutover = \"00:30\"")
    );
    let catalog = parse(&chain).unwrap();
    assert_eq!(catalog.settings.day_cutover_minutes, 30);
    assert_eq!(catalog.own_cutovers(), std::collections::BTreeMap::from([(10, 240)]));
    assert_eq!(catalog.company_of(11), 1);
    assert_rejected(&chain.replace("04:00", "24:10"), "companies[0].stores[0].day_cutover", "not a time of day");
}
