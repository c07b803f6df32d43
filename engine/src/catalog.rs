//! The product catalog: the deployment's numbers for the card rules (docs: `RULES.md`).
//!
//! The rules themselves are fixed; the catalog gives their parameters (products P1–P8, bonus
//! tiers V3, member tiers K1, points K2–K5, limits R3, lockout L4, dormancy L8, hold expiry T4,
//! …). It is read from TOML text by [`Catalog::from_toml_str`]; reading the file is the caller's
//! business, so the engine stays free of IO.
//!
//! # Units in the TOML
//!
//! - Money is a **string of yuan with at most two decimals** (`"20000.00"`, `"18"`), parsed
//!   exactly into minor units (fen). A string, not a TOML number, so no value passes through a
//!   float and a typo like `18.005` is an error instead of a silent rounding.
//! - Rates are **percent strings** (`"12"`, `"2.5"`), parsed with `rust_decimal` and stored as
//!   fractions (`0.12`).
//! - Dates are TOML local dates (`2026-01-01`), stored as [`BusinessDate`] (YYYYMMDD).
//! - Periods are integer days.
//!
//! Every problem found is reported, each with the source name, the TOML key path and what is
//! wrong, so one run of a bad file lists everything to fix.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;

use protocol::{Category, MAX_AMOUNT_MINOR};
use rust_decimal::Decimal;

use crate::model::{BusinessDate, Product};

/// One thing wrong in a catalog: where (TOML key path) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `products.gift.load_max`; array elements as `bonus_rules[1]`.
    pub key: String,
    pub message: String,
}

/// A catalog that cannot be used, with every problem found in it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct CatalogError {
    /// The name the text was read from (a file name), so an operator knows which file to fix.
    pub source_name: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {}: {}", self.source_name, problem.key, problem.message)?;
        }
        Ok(())
    }
}

/// Which bucket a debit takes first (T1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayFirst {
    Bonus,
    Cash,
}

/// Per-category spending limits of a product (R2, R3). `None`: no limit of that kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CategoryLimit {
    pub category: Category,
    /// Largest single debit, minor units.
    pub per_txn_max_minor: Option<i64>,
    /// Largest total of debits in one business day, minor units.
    pub per_day_max_minor: Option<i64>,
    /// Whether a manager override code lifts the limit (R2).
    pub override_allowed: bool,
}

/// The settings one product's cards share (P1–P8, "common product settings").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProductSettings {
    pub product: Product,
    /// `special` cards stay disabled until an admin enables them (P3).
    pub enabled: bool,
    /// Issued only to a registered holder with ID (M1); otherwise anonymous (P2).
    pub real_name: bool,
    /// PIN checked on every debit and hold (T2).
    pub pin_required: bool,
    /// The PIN every card of the product starts with, to be changed by the holder (L3).
    /// Required when `pin_required`; a product-wide default printed on the card's mailer, so
    /// not a secret, and never stored with a card (cards keep a keyed hash).
    pub initial_pin: Option<String>,
    /// Earns points (K2); gift cards never do (P2).
    pub points: bool,
    /// Gets member tier and birthday discounts (K1, K3; not gift cards, P2).
    pub member_discount: bool,
    /// Fixed discount ratio of an enabled `special` product (P3, T3).
    pub fixed_discount_rate: Option<Decimal>,
    /// Most cards of the product that may be sold (P3: the approved quantity); None: no cap.
    pub approved_quantity: Option<u64>,
    /// Days from the first load until the card expires (L7); `None`: no expiry.
    pub validity_days: Option<u32>,
    /// Smallest and largest single load, minor units, whole yuan (V1, V2).
    pub load_min_minor: i64,
    pub load_max_minor: i64,
    /// Largest balance (cash + bonus), minor units (V2).
    pub balance_max_minor: i64,
    /// Whether a card may be loaded again after its first load.
    pub reloadable: bool,
    /// Whether card return (退卡) may be approved at all (L10).
    pub refundable: bool,
    /// Usable by anyone holding it, or by the named holder only (000 篇八 §2.5 vs 篇二 §2.3).
    pub transferable: bool,
    /// Deposit holds allowed (T4).
    pub holds: bool,
    /// Bucket taken first by a debit (T1).
    pub pay_first: PayFirst,
    /// Fee charged when a card is sold, minor units.
    pub card_fee_minor: i64,
    /// Fee charged for a replacement (L6), minor units.
    pub replacement_fee_minor: i64,
    /// Categories the card may pay for (R1); every catalog category when not given.
    pub categories: Vec<Category>,
    pub limits: Vec<CategoryLimit>,
}

impl ProductSettings {
    pub fn allows(&self, category: Category) -> bool {
        self.categories.contains(&category)
    }

    pub fn limit(&self, category: Category) -> Option<&CategoryLimit> {
        self.limits.iter().find(|l| l.category == category)
    }
}

/// One bonus tier (V3): a load of `load_min_minor..=load_max_minor` adds `bonus_rate` of it as
/// bonus value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BonusTier {
    pub load_min_minor: i64,
    pub load_max_minor: i64,
    pub bonus_rate: Decimal,
}

/// A version of a product's bonus tiers, in force from `effective_from` to `effective_until`
/// inclusive (V3: promotions are configured first and switched on by date).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BonusRule {
    pub product: Product,
    pub effective_from: BusinessDate,
    /// `None`: open-ended.
    pub effective_until: Option<BusinessDate>,
    pub tiers: Vec<BonusTier>,
}

impl BonusRule {
    pub fn in_force(&self, date: BusinessDate) -> bool {
        self.effective_from <= date && self.effective_until.is_none_or(|until| date <= until)
    }
}

/// A member tier (K1): reached at a cumulative net spend, gives a discount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberTier {
    pub name: String,
    pub threshold_minor: i64,
    pub discount_rate: Decimal,
}

/// Points earned per category (K2): one point per `spend_per_point_minor` of net spend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PointsRate {
    pub category: Category,
    pub spend_per_point_minor: i64,
}

/// Points settings (K2, K4, K5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PointsSettings {
    /// Categories without a rate earn no points.
    pub rates: Vec<PointsRate>,
    /// Points redeemed for 1.00 of bonus value (K4).
    pub redeem_points_per_yuan: u32,
    /// Points lapse this many days after they were earned (K5).
    pub expiry_days: u32,
    /// A card with no spending for this many days loses its points (K5).
    pub inactivity_lapse_days: u32,
}

impl PointsSettings {
    pub fn rate(&self, category: Category) -> Option<&PointsRate> {
        self.rates.iter().find(|r| r.category == category)
    }
}

/// Birthday discount (K3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BirthdayDiscount {
    pub discount_rate: Decimal,
    /// The discount applies from this many days before the birthday to the day itself.
    pub days_before: u32,
}

/// A product administered at run time (`set_product`, P3), on top of the catalog file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProductOverride {
    pub product: Product,
    /// The catalog version it makes: one above the version it was made under.
    pub version: u32,
    pub enabled: bool,
    /// Fixed discount of a `special` product, basis points; 0 none.
    pub discount_bp: u16,
    /// Approved quantity of cards; 0 no cap.
    pub approved_quantity: u32,
}

/// Why an override cannot apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OverrideProblem {
    #[error("the product is not in the catalog")]
    NotInCatalog,
    #[error("only a `special` product has a fixed discount")]
    DiscountNotSpecial,
    #[error("an enabled `special` product needs its discount ratio and approved quantity (P3)")]
    SpecialNeedsDiscountAndQuantity,
}

/// Deployment-wide periods and counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Wrong PINs in a row that lock a card (L4).
    pub pin_lockout_count: u32,
    /// Days without a transaction before a card with a balance is listed for notice (L8).
    pub dormancy_days: u32,
    /// Days of notice before a dormant card is frozen (L8).
    pub dormancy_notice_days: u32,
    /// Days before an uncaptured hold expires (T4).
    pub hold_expiry_days: u32,
    /// Local time the business day closes, minutes after midnight (S1; hotels: night audit).
    pub day_cutover_minutes: u32,
    /// Withheld from a card return's refund when the load's invoice is not returned (L10).
    pub return_tax_rate: Decimal,
}

/// A store of a company (terminals sign on at a store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Store {
    pub id: u32,
    pub name: String,
    /// Local time this store's business day closes, minutes after midnight, when it differs
    /// from the deployment's (S1: a hotel's night audit among shops that close at midnight).
    pub day_cutover_minutes: Option<u32>,
}

/// The head office (总部) or a branch company (分公司), with its stores (S3, S6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Company {
    pub id: u32,
    pub name: String,
    pub head_office: bool,
    pub stores: Vec<Store>,
}

/// A validated catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalog {
    /// Raised with every change; each journal entry records the version in force.
    pub version: u32,
    /// The categories this deployment sells in (T10).
    pub categories: Vec<Category>,
    pub settings: Settings,
    /// Products in code order; a product not listed cannot be sold.
    pub products: Vec<ProductSettings>,
    /// Ordered by product, then effective date.
    pub bonus_rules: Vec<BonusRule>,
    /// Ordered by threshold; the first has threshold 0.
    pub member_tiers: Vec<MemberTier>,
    pub points: PointsSettings,
    pub birthday: Option<BirthdayDiscount>,
    pub companies: Vec<Company>,
    /// The TOML it was read from (None: the core rules), kept with the data so that a batch
    /// over a stopped switch applies the same rules.
    pub source_text: Option<String>,
}

impl Catalog {
    pub fn product(&self, product: Product) -> Option<&ProductSettings> {
        self.products.iter().find(|p| p.product == product)
    }

    /// The bonus rule of `product` in force on `date` (V3).
    pub fn bonus_rule(&self, product: Product, date: BusinessDate) -> Option<&BonusRule> {
        self.bonus_rules.iter().find(|r| r.product == product && r.in_force(date))
    }

    /// The tier reached by a cumulative net spend (K1).
    pub fn member_tier(&self, cumulative_spend_minor: i64) -> Option<&MemberTier> {
        self.member_tiers.iter().rev().find(|t| t.threshold_minor <= cumulative_spend_minor)
    }

    /// The rules in force without a catalog (version 0): every product sellable and
    /// unrestricted, no PIN, points, discounts, bonus or expiry; loads of whole yuan up to the
    /// protocol's largest amount. What the switch enforced before catalogs existed.
    /// This catalog with a product administered at run time (P3): the override replaces the
    /// product's enabled flag, fixed discount and approved quantity, and the catalog takes the
    /// override's version, so journal entries name the rules they were posted under.
    /// The stores whose business day closes at a time of their own (S1), with that time.
    pub fn own_cutovers(&self) -> std::collections::BTreeMap<u32, u32> {
        self.companies
            .iter()
            .flat_map(|c| &c.stores)
            .filter_map(|s| s.day_cutover_minutes.map(|minutes| (s.id, minutes)))
            .collect()
    }

    /// The company a store belongs to (S3, S6); 0 for a store no company lists.
    pub fn company_of(&self, store: u32) -> u32 {
        self.companies.iter().find(|c| c.stores.iter().any(|s| s.id == store)).map_or(0, |c| c.id)
    }

    pub fn with_override(&self, o: &ProductOverride) -> Result<Catalog, OverrideProblem> {
        let mut catalog = self.clone();
        let settings =
            catalog.products.iter_mut().find(|s| s.product == o.product).ok_or(OverrideProblem::NotInCatalog)?;
        let special = o.product == Product::Special;
        if o.discount_bp != 0 && !special {
            return Err(OverrideProblem::DiscountNotSpecial);
        }
        if special && o.enabled && (o.discount_bp == 0 || o.approved_quantity == 0) {
            return Err(OverrideProblem::SpecialNeedsDiscountAndQuantity);
        }
        settings.enabled = o.enabled;
        if special {
            settings.fixed_discount_rate = (o.discount_bp != 0).then(|| Decimal::new(i64::from(o.discount_bp), 4));
        }
        settings.approved_quantity = (o.approved_quantity != 0).then_some(u64::from(o.approved_quantity));
        catalog.version = o.version;
        Ok(catalog)
    }

    pub fn core() -> Catalog {
        let categories: Vec<Category> = Category::ALL.to_vec();
        let products = Product::ALL
            .iter()
            .map(|&product| ProductSettings {
                product,
                enabled: true,
                real_name: false,
                pin_required: false,
                initial_pin: None,
                points: false,
                member_discount: false,
                fixed_discount_rate: None,
                approved_quantity: None,
                validity_days: None,
                load_min_minor: 100,
                load_max_minor: MAX_AMOUNT_MINOR,
                balance_max_minor: MAX_AMOUNT_MINOR,
                reloadable: true,
                refundable: false,
                transferable: true,
                holds: true,
                pay_first: PayFirst::Bonus,
                card_fee_minor: 0,
                replacement_fee_minor: 0,
                categories: categories.clone(),
                limits: Vec::new(),
            })
            .collect();
        Catalog {
            version: 0,
            categories,
            settings: Settings {
                pin_lockout_count: DEFAULT_PIN_LOCKOUT_COUNT,
                dormancy_days: DEFAULT_DORMANCY_DAYS,
                dormancy_notice_days: DEFAULT_DORMANCY_NOTICE_DAYS,
                hold_expiry_days: DEFAULT_HOLD_EXPIRY_DAYS,
                return_tax_rate: Decimal::ZERO,
                day_cutover_minutes: 0,
            },
            products,
            bonus_rules: Vec::new(),
            member_tiers: Vec::new(),
            points: PointsSettings {
                rates: Vec::new(),
                redeem_points_per_yuan: DEFAULT_REDEEM_POINTS_PER_YUAN,
                expiry_days: DEFAULT_POINTS_EXPIRY_DAYS,
                inactivity_lapse_days: DEFAULT_POINTS_INACTIVITY_LAPSE_DAYS,
            },
            birthday: None,
            companies: Vec::new(),
            source_text: None,
        }
    }

    /// Parses and validates catalog text. `source_name` (a file name) only labels errors.
    pub fn from_toml_str(source_name: &str, text: &str) -> Result<Catalog, CatalogError> {
        let fail = |problems| CatalogError { source_name: source_name.to_string(), problems };
        let raw: raw::Catalog = raw::parse(text).map_err(|p| fail(vec![p]))?;
        let mut check = Check { problems: Vec::new() };
        let catalog = check.catalog(raw);
        if check.problems.is_empty() {
            Ok(Catalog { source_text: Some(text.to_string()), ..catalog })
        } else {
            Err(fail(check.problems))
        }
    }
}

/// The TOML as written: strings where the catalog has money and rates, so conversion can name
/// the key of a bad value.
mod raw {
    use std::collections::BTreeMap;

    use serde::Deserialize;
    use toml::value::Datetime;

    use super::Problem;

    pub fn parse(text: &str) -> Result<Catalog, Problem> {
        let deserializer = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            // One line per problem: the parser's own message may span lines.
            let mut message = inner.message().trim().replace('\n', ": ");
            if let Some(span) = inner.span() {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                message = format!("{message} (line {line})");
            }
            // serde_path_to_error writes "." for the document root.
            let key = if path == "." || path.is_empty() { "(top level)".to_string() } else { path };
            Problem { key, message }
        })
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Catalog {
        pub version: u32,
        pub categories: Vec<String>,
        pub settings: Settings,
        #[serde(default)]
        pub products: BTreeMap<String, Product>,
        #[serde(default)]
        pub bonus_rules: Vec<BonusRule>,
        #[serde(default)]
        pub member_tiers: Vec<MemberTier>,
        pub points: Option<Points>,
        pub birthday: Option<Birthday>,
        #[serde(default)]
        pub companies: Vec<Company>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Settings {
        pub pin_lockout_count: Option<u32>,
        pub dormancy_days: Option<u32>,
        pub dormancy_notice_days: Option<u32>,
        pub hold_expiry_days: Option<u32>,
        pub day_cutover: Option<String>,
        pub return_tax_percent: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Product {
        #[serde(default = "yes")]
        pub enabled: bool,
        pub real_name: bool,
        pub pin_required: bool,
        pub initial_pin: Option<String>,
        pub points: bool,
        pub member_discount: bool,
        pub fixed_discount_percent: Option<String>,
        pub approved_quantity: Option<u64>,
        pub validity_days: Option<u32>,
        pub load_min: String,
        pub load_max: String,
        pub balance_max: String,
        pub reloadable: bool,
        pub refundable: bool,
        pub transferable: bool,
        #[serde(default)]
        pub holds: bool,
        pub pay_first: Option<String>,
        pub card_fee: Option<String>,
        pub replacement_fee: Option<String>,
        pub categories: Option<Vec<String>>,
        #[serde(default)]
        pub limits: BTreeMap<String, Limit>,
    }

    fn yes() -> bool {
        true
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Limit {
        pub per_txn_max: Option<String>,
        pub per_day_max: Option<String>,
        #[serde(default)]
        pub override_allowed: bool,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct BonusRule {
        pub product: String,
        pub effective_from: Datetime,
        pub effective_until: Option<Datetime>,
        pub tiers: Vec<BonusTier>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct BonusTier {
        pub load_min: String,
        pub load_max: String,
        pub bonus_percent: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct MemberTier {
        pub name: String,
        pub threshold: String,
        pub discount_percent: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Points {
        pub redeem_points_per_yuan: Option<u32>,
        pub expiry_days: Option<u32>,
        pub inactivity_lapse_days: Option<u32>,
        #[serde(default)]
        pub spend_per_point: BTreeMap<String, String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Birthday {
        pub discount_percent: String,
        pub days_before: u32,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Company {
        pub id: u32,
        pub name: String,
        #[serde(default)]
        pub head_office: bool,
        #[serde(default)]
        pub stores: Vec<Store>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Store {
        pub id: u32,
        pub name: String,
        pub day_cutover: Option<String>,
    }
}

// Defaults named by the rules, used where the catalog leaves a setting out.
/// L4: five wrong PINs in a row.
pub const DEFAULT_PIN_LOCKOUT_COUNT: u32 = 5;
/// L8: 365 days without a transaction.
pub const DEFAULT_DORMANCY_DAYS: u32 = 365;
/// L8: 30 days of notice.
pub const DEFAULT_DORMANCY_NOTICE_DAYS: u32 = 30;
/// T4: 30 days.
pub const DEFAULT_HOLD_EXPIRY_DAYS: u32 = 30;
/// K4: 100 points = 1.00.
pub const DEFAULT_REDEEM_POINTS_PER_YUAN: u32 = 100;
/// K5: one year.
pub const DEFAULT_POINTS_EXPIRY_DAYS: u32 = 365;
/// K5: one year without spending.
pub const DEFAULT_POINTS_INACTIVITY_LAPSE_DAYS: u32 = 365;

/// Converts the raw catalog, collecting problems instead of stopping at the first.
struct Check {
    problems: Vec<Problem>,
}

impl Check {
    fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem { key: key.into(), message: message.into() });
    }

    /// Yuan string → minor units, `0..=MAX_AMOUNT_MINOR`, at most two decimals.
    fn money(&mut self, key: &str, text: &str) -> Option<i64> {
        match parse_money_minor(text) {
            Ok(minor) => Some(minor),
            Err(message) => {
                self.problem(key, message);
                None
            }
        }
    }

    /// Like [`Check::money`], and whole yuan (V1: loads carry no fen).
    fn whole_yuan(&mut self, key: &str, text: &str) -> Option<i64> {
        let minor = self.money(key, text)?;
        if minor % 100 != 0 {
            self.problem(key, format!("`{text}` is not whole yuan; loads are whole yuan (V1)"));
            return None;
        }
        Some(minor)
    }

    /// Percent string → fraction. `below_hundred`: a discount of 100% or more would make a sale
    /// free or negative, so it must stay below 100.
    fn percent(&mut self, key: &str, text: &str, below_hundred: bool) -> Option<Decimal> {
        let Ok(percent) = Decimal::from_str(text.trim()) else {
            self.problem(key, format!("`{text}` is not a decimal percentage (e.g. \"12\" or \"2.5\")"));
            return None;
        };
        let hundred = Decimal::ONE_HUNDRED;
        if percent.is_sign_negative() && !percent.is_zero() || percent > hundred || below_hundred && percent == hundred
        {
            let range = if below_hundred { "0 to below 100" } else { "0 to 100" };
            self.problem(key, format!("{text}% is out of range; a percentage here must be {range}"));
            return None;
        }
        Some(percent / hundred)
    }

    fn category(&mut self, key: &str, name: &str, known: &[Category]) -> Option<Category> {
        match category_from_name(name) {
            None => {
                let all: Vec<&str> = ALL_CATEGORIES.iter().map(|c| c.as_str()).collect();
                self.problem(key, format!("unknown category `{name}`; categories are {}", all.join(", ")));
                None
            }
            Some(category) if !known.is_empty() && !known.contains(&category) => {
                self.problem(key, format!("category `{name}` is not in the catalog's `categories`"));
                None
            }
            Some(category) => Some(category),
        }
    }

    fn date(&mut self, key: &str, value: &toml::value::Datetime) -> Option<BusinessDate> {
        match (value.date, value.time, value.offset) {
            (Some(d), None, None) => Some(d.year as u32 * 10_000 + d.month as u32 * 100 + d.day as u32),
            _ => {
                self.problem(key, format!("`{value}` is not a plain date (YYYY-MM-DD)"));
                None
            }
        }
    }

    fn positive(&mut self, key: &str, value: u32) -> u32 {
        if value == 0 {
            self.problem(key, "must be at least 1");
        }
        value
    }

    fn catalog(&mut self, raw: raw::Catalog) -> Catalog {
        if raw.version == 0 {
            self.problem("version", "must be at least 1 (journal entries record it; 0 means none)");
        }

        let mut categories = Vec::new();
        for (i, name) in raw.categories.iter().enumerate() {
            let key = format!("categories[{i}]");
            if let Some(category) = self.category(&key, name, &[]) {
                if categories.contains(&category) {
                    self.problem(key, format!("category `{name}` is listed twice"));
                } else {
                    categories.push(category);
                }
            }
        }
        if raw.categories.is_empty() {
            self.problem("categories", "must list at least one category");
        }

        let settings = self.settings(raw.settings);

        let mut products = Vec::new();
        for (name, product) in raw.products {
            let key = format!("products.{name}");
            match Product::ALL.iter().copied().find(|p| p.name() == name) {
                Some(code) => products.push(self.product(&key, code, product, &categories)),
                None => {
                    let all: Vec<&str> = Product::ALL.iter().map(|p| p.name()).collect();
                    self.problem(key, format!("unknown product `{name}`; products are {}", all.join(", ")));
                }
            }
        }
        products.sort_by_key(|p| p.product as u16);
        if products.is_empty() {
            self.problem("products", "must define at least one product");
        }

        let bonus_rules = self.bonus_rules(raw.bonus_rules, &products);
        let member_tiers = self.member_tiers(raw.member_tiers);
        let points = self.points(raw.points, &categories);
        let birthday = raw.birthday.and_then(|b| {
            let discount_rate = self.percent("birthday.discount_percent", &b.discount_percent, true)?;
            Some(BirthdayDiscount { discount_rate, days_before: b.days_before })
        });
        let companies = self.companies(raw.companies);

        Catalog {
            version: raw.version,
            categories,
            settings,
            products,
            bonus_rules,
            member_tiers,
            points,
            birthday,
            companies,
            source_text: None,
        }
    }

    /// A cutover time of day (S1), HH:MM, as minutes after midnight.
    fn cutover(&mut self, field: &str, text: Option<&str>) -> Option<u32> {
        let text = text?;
        let minutes = parse_time_minutes(text);
        if minutes.is_none() {
            self.problem(field, format!("`{text}` is not a time of day HH:MM (00:00 to 23:59)"));
        }
        minutes
    }

    fn settings(&mut self, raw: raw::Settings) -> Settings {
        let pin_lockout_count =
            self.positive("settings.pin_lockout_count", raw.pin_lockout_count.unwrap_or(DEFAULT_PIN_LOCKOUT_COUNT));
        let dormancy_days = self.positive("settings.dormancy_days", raw.dormancy_days.unwrap_or(DEFAULT_DORMANCY_DAYS));
        let dormancy_notice_days = raw.dormancy_notice_days.unwrap_or(DEFAULT_DORMANCY_NOTICE_DAYS);
        let hold_expiry_days =
            self.positive("settings.hold_expiry_days", raw.hold_expiry_days.unwrap_or(DEFAULT_HOLD_EXPIRY_DAYS));
        let day_cutover_minutes = self.cutover("settings.day_cutover", raw.day_cutover.as_deref()).unwrap_or(0);
        let return_tax_rate = raw
            .return_tax_percent
            .as_deref()
            .and_then(|text| self.percent("settings.return_tax_percent", text, true))
            .unwrap_or_default();
        Settings {
            pin_lockout_count,
            dormancy_days,
            dormancy_notice_days,
            hold_expiry_days,
            day_cutover_minutes,
            return_tax_rate,
        }
    }

    fn product(&mut self, key: &str, code: Product, raw: raw::Product, categories: &[Category]) -> ProductSettings {
        let load_min_minor = self.whole_yuan(&format!("{key}.load_min"), &raw.load_min).unwrap_or(0);
        let load_max_minor = self.whole_yuan(&format!("{key}.load_max"), &raw.load_max).unwrap_or(0);
        if load_min_minor > load_max_minor {
            self.problem(format!("{key}.load_max"), format!("{} is below load_min {}", raw.load_max, raw.load_min));
        }
        let balance_max_minor = self.money(&format!("{key}.balance_max"), &raw.balance_max).unwrap_or(0);
        if balance_max_minor < load_max_minor {
            self.problem(
                format!("{key}.balance_max"),
                format!(
                    "{} is below load_max {}: the largest load could never be taken",
                    raw.balance_max, raw.load_max
                ),
            );
        }

        let fixed_discount_rate = raw
            .fixed_discount_percent
            .as_deref()
            .and_then(|text| self.percent(&format!("{key}.fixed_discount_percent"), text, true));
        if code == Product::Special && raw.enabled && raw.fixed_discount_percent.is_none() {
            self.problem(
                format!("{key}.fixed_discount_percent"),
                "missing: an enabled `special` product needs its approved discount ratio (P3)",
            );
        }
        if code == Product::Special && raw.enabled && raw.approved_quantity.is_none() {
            self.problem(
                format!("{key}.approved_quantity"),
                "missing: an enabled `special` product needs its approved quantity of cards (P3)",
            );
        }
        if raw.approved_quantity == Some(0) {
            self.problem(format!("{key}.approved_quantity"), "0 cards could never be sold; leave it out for no cap");
        }

        if let Some(days) = raw.validity_days {
            self.positive(&format!("{key}.validity_days"), days);
        } else if code == Product::Gift {
            self.problem(format!("{key}.validity_days"), "missing: gift cards must have a validity period (P2)");
        }
        if code == Product::Gift && (raw.points || raw.member_discount) {
            self.problem(key, "gift cards earn no points and get no member discounts (P2)");
        }
        if code == Product::Gift && raw.real_name {
            self.problem(format!("{key}.real_name"), "gift cards are anonymous (P2)");
        }
        if code == Product::Member && !raw.real_name {
            self.problem(format!("{key}.real_name"), "member cards are issued against an ID only (M1)");
        }

        let initial_pin = match (&raw.initial_pin, raw.pin_required) {
            (Some(pin), _) if !crate::rules::Pin::is_valid(pin.as_bytes()) => {
                self.problem(format!("{key}.initial_pin"), format!("`{pin}` is not 4 to 12 digits (L3)"));
                None
            }
            (None, true) => {
                self.problem(
                    format!("{key}.initial_pin"),
                    "missing: a product that requires a PIN starts its cards with one (L3)",
                );
                None
            }
            (pin, _) => pin.clone(),
        };

        let pay_first = match raw.pay_first.as_deref() {
            None | Some("bonus") => PayFirst::Bonus,
            Some("cash") => PayFirst::Cash,
            Some(other) => {
                self.problem(format!("{key}.pay_first"), format!("`{other}` is neither `bonus` nor `cash` (T1)"));
                PayFirst::Bonus
            }
        };
        let card_fee_minor =
            raw.card_fee.as_deref().and_then(|t| self.money(&format!("{key}.card_fee"), t)).unwrap_or(0);
        let replacement_fee_minor =
            raw.replacement_fee.as_deref().and_then(|t| self.money(&format!("{key}.replacement_fee"), t)).unwrap_or(0);

        let allowed = match &raw.categories {
            None => categories.to_vec(),
            Some(names) => {
                let mut allowed = Vec::new();
                for (i, name) in names.iter().enumerate() {
                    if let Some(category) = self.category(&format!("{key}.categories[{i}]"), name, categories) {
                        if !allowed.contains(&category) {
                            allowed.push(category);
                        }
                    }
                }
                if names.is_empty() {
                    self.problem(format!("{key}.categories"), "must allow at least one category");
                }
                allowed
            }
        };
        if code == Product::Room && allowed.iter().any(|c| *c != Category::Room) {
            self.problem(format!("{key}.categories"), "room cards spend only in category `room` (R1)");
        }

        let mut limits = Vec::new();
        for (name, limit) in &raw.limits {
            let limit_key = format!("{key}.limits.{name}");
            let Some(category) = self.category(&limit_key, name, categories) else { continue };
            if !allowed.contains(&category) {
                self.problem(&limit_key, format!("category `{name}` is not allowed for this product"));
            }
            let per_txn_max_minor =
                limit.per_txn_max.as_deref().and_then(|t| self.money(&format!("{limit_key}.per_txn_max"), t));
            let per_day_max_minor =
                limit.per_day_max.as_deref().and_then(|t| self.money(&format!("{limit_key}.per_day_max"), t));
            if limit.per_txn_max.is_none() && limit.per_day_max.is_none() {
                self.problem(&limit_key, "sets no limit: give per_txn_max, per_day_max or both (R3)");
            }
            if let (Some(txn), Some(day)) = (per_txn_max_minor, per_day_max_minor) {
                if txn > day {
                    self.problem(format!("{limit_key}.per_day_max"), "is below per_txn_max");
                }
            }
            limits.push(CategoryLimit {
                category,
                per_txn_max_minor,
                per_day_max_minor,
                override_allowed: limit.override_allowed,
            });
        }

        ProductSettings {
            product: code,
            enabled: raw.enabled,
            real_name: raw.real_name,
            pin_required: raw.pin_required,
            initial_pin,
            points: raw.points,
            member_discount: raw.member_discount,
            fixed_discount_rate,
            approved_quantity: raw.approved_quantity,
            validity_days: raw.validity_days,
            load_min_minor,
            load_max_minor,
            balance_max_minor,
            reloadable: raw.reloadable,
            refundable: raw.refundable,
            transferable: raw.transferable,
            holds: raw.holds,
            pay_first,
            card_fee_minor,
            replacement_fee_minor,
            categories: allowed,
            limits,
        }
    }

    fn bonus_rules(&mut self, raw: Vec<raw::BonusRule>, products: &[ProductSettings]) -> Vec<BonusRule> {
        let mut rules: Vec<(String, BonusRule)> = Vec::new();
        for (i, rule) in raw.into_iter().enumerate() {
            let key = format!("bonus_rules[{i}]");
            let product = match Product::ALL.iter().copied().find(|p| p.name() == rule.product) {
                Some(p) if products.iter().any(|s| s.product == p) => Some(p),
                Some(_) => {
                    self.problem(format!("{key}.product"), format!("product `{}` is not in `products`", rule.product));
                    None
                }
                None => {
                    self.problem(format!("{key}.product"), format!("unknown product `{}`", rule.product));
                    None
                }
            };
            let from = self.date(&format!("{key}.effective_from"), &rule.effective_from);
            let until = rule.effective_until.as_ref().and_then(|d| self.date(&format!("{key}.effective_until"), d));
            if let (Some(from), Some(until)) = (from, until) {
                if until < from {
                    self.problem(format!("{key}.effective_until"), format!("{until} is before effective_from {from}"));
                }
            }
            if rule.tiers.is_empty() {
                self.problem(format!("{key}.tiers"), "must have at least one tier");
            }
            let mut tiers: Vec<BonusTier> = Vec::new();
            for (j, tier) in rule.tiers.iter().enumerate() {
                let tier_key = format!("{key}.tiers[{j}]");
                let min = self.whole_yuan(&format!("{tier_key}.load_min"), &tier.load_min);
                let max = self.whole_yuan(&format!("{tier_key}.load_max"), &tier.load_max);
                let rate = self.percent(&format!("{tier_key}.bonus_percent"), &tier.bonus_percent, false);
                let (Some(min), Some(max), Some(rate)) = (min, max, rate) else { continue };
                if min > max {
                    self.problem(
                        format!("{tier_key}.load_max"),
                        format!("{} is below load_min {}", tier.load_max, tier.load_min),
                    );
                }
                if let Some(previous) = tiers.last() {
                    if min <= previous.load_max_minor {
                        self.problem(
                            format!("{tier_key}.load_min"),
                            format!(
                                "{} is not above the previous tier's load_max: tiers must increase without overlap",
                                tier.load_min
                            ),
                        );
                    }
                }
                tiers.push(BonusTier { load_min_minor: min, load_max_minor: max, bonus_rate: rate });
            }
            if let (Some(product), Some(from)) = (product, from) {
                let rule = BonusRule { product, effective_from: from, effective_until: until, tiers };
                // Listed in date order per product, and never two in force on one day: which
                // rule a load got must be unambiguous when settlement re-runs a day.
                if let Some((previous_key, previous)) = rules.iter().rev().find(|(_, r)| r.product == product) {
                    if from <= previous.effective_from {
                        self.problem(
                            format!("{key}.effective_from"),
                            format!(
                                "{from} is not after {previous_key}.effective_from {}: rules of one product must be in date order",
                                previous.effective_from
                            ),
                        );
                    } else if previous.effective_until.is_none_or(|until| from <= until) {
                        self.problem(
                            format!("{key}.effective_from"),
                            format!(
                                "{from} overlaps {previous_key} ({} to {}) for product `{}`",
                                previous.effective_from,
                                previous.effective_until.map_or("open end".to_string(), |u| u.to_string()),
                                product.name()
                            ),
                        );
                    }
                }
                rules.push((key, rule));
            }
        }
        let mut rules: Vec<BonusRule> = rules.into_iter().map(|(_, r)| r).collect();
        rules.sort_by_key(|r| (r.product as u16, r.effective_from));
        rules
    }

    fn member_tiers(&mut self, raw: Vec<raw::MemberTier>) -> Vec<MemberTier> {
        let mut tiers: Vec<MemberTier> = Vec::new();
        let mut names = HashSet::new();
        for (i, tier) in raw.into_iter().enumerate() {
            let key = format!("member_tiers[{i}]");
            if !names.insert(tier.name.clone()) {
                self.problem(format!("{key}.name"), format!("tier `{}` is defined twice", tier.name));
            }
            let threshold = self.money(&format!("{key}.threshold"), &tier.threshold);
            let rate = self.percent(&format!("{key}.discount_percent"), &tier.discount_percent, true);
            let (Some(threshold_minor), Some(discount_rate)) = (threshold, rate) else { continue };
            match tiers.last() {
                None if threshold_minor != 0 => self.problem(
                    format!("{key}.threshold"),
                    "the first tier must start at 0 (K1: every member has a tier)",
                ),
                Some(previous) if threshold_minor <= previous.threshold_minor => self.problem(
                    format!("{key}.threshold"),
                    format!("{} is not above the previous tier's threshold: thresholds must increase", tier.threshold),
                ),
                _ => {}
            }
            tiers.push(MemberTier { name: tier.name, threshold_minor, discount_rate });
        }
        tiers
    }

    fn points(&mut self, raw: Option<raw::Points>, categories: &[Category]) -> PointsSettings {
        let raw = raw.unwrap_or(raw::Points {
            redeem_points_per_yuan: None,
            expiry_days: None,
            inactivity_lapse_days: None,
            spend_per_point: BTreeMap::new(),
        });
        let mut rates = Vec::new();
        for (name, spend) in &raw.spend_per_point {
            let key = format!("points.spend_per_point.{name}");
            let category = self.category(&key, name, categories);
            let spend = self.money(&key, spend);
            if spend == Some(0) {
                self.problem(&key, "must be above 0 (spend for one point)");
            }
            if let (Some(category), Some(spend_per_point_minor)) = (category, spend) {
                rates.push(PointsRate { category, spend_per_point_minor });
            }
        }
        PointsSettings {
            rates,
            redeem_points_per_yuan: self.positive(
                "points.redeem_points_per_yuan",
                raw.redeem_points_per_yuan.unwrap_or(DEFAULT_REDEEM_POINTS_PER_YUAN),
            ),
            expiry_days: self.positive("points.expiry_days", raw.expiry_days.unwrap_or(DEFAULT_POINTS_EXPIRY_DAYS)),
            inactivity_lapse_days: self.positive(
                "points.inactivity_lapse_days",
                raw.inactivity_lapse_days.unwrap_or(DEFAULT_POINTS_INACTIVITY_LAPSE_DAYS),
            ),
        }
    }

    fn companies(&mut self, raw: Vec<raw::Company>) -> Vec<Company> {
        let mut company_ids = HashSet::new();
        let mut store_ids = HashSet::new();
        let mut companies = Vec::new();
        for (i, company) in raw.into_iter().enumerate() {
            let key = format!("companies[{i}]");
            if !company_ids.insert(company.id) {
                self.problem(format!("{key}.id"), format!("company id {} is used twice", company.id));
            }
            let mut stores = Vec::new();
            for (j, store) in company.stores.into_iter().enumerate() {
                if !store_ids.insert(store.id) {
                    self.problem(format!("{key}.stores[{j}].id"), format!("store id {} is used twice", store.id));
                }
                let day_cutover_minutes =
                    self.cutover(&format!("{key}.stores[{j}].day_cutover"), store.day_cutover.as_deref());
                stores.push(Store { id: store.id, name: store.name, day_cutover_minutes });
            }
            companies.push(Company { id: company.id, name: company.name, head_office: company.head_office, stores });
        }
        let head_offices = companies.iter().filter(|c| c.head_office).count();
        if !companies.is_empty() && head_offices != 1 {
            self.problem("companies", format!("{head_offices} companies have head_office = true; exactly one must"));
        }
        companies
    }
}

const ALL_CATEGORIES: [Category; 9] = [
    Category::Retail,
    Category::Dining,
    Category::Room,
    Category::Spa,
    Category::Tobacco,
    Category::Luxury,
    Category::SmallAppliance,
    Category::LargeAppliance,
    Category::Other,
];

fn category_from_name(name: &str) -> Option<Category> {
    ALL_CATEGORIES.iter().copied().find(|c| c.as_str() == name)
}

/// Parses yuan with at most two decimals into minor units, exactly (no floats).
pub fn parse_money_minor(text: &str) -> Result<i64, String> {
    let trimmed = text.trim();
    let bad = || format!("`{text}` is not an amount in yuan (e.g. \"18.00\")");
    // Decimal accepts forms like "1e3" or "_"; plain digits with an optional point only.
    if trimmed.is_empty() || !trimmed.chars().all(|c| c.is_ascii_digit() || c == '.' || c == '-') {
        return Err(bad());
    }
    let value = Decimal::from_str(trimmed).map_err(|_| bad())?;
    if value.is_sign_negative() && !value.is_zero() {
        return Err(format!("{text} is negative; amounts must be 0 or more"));
    }
    if value.scale() > 2 && value.normalize().scale() > 2 {
        return Err(format!("`{text}` has fractions of a fen; at most two decimals"));
    }
    let minor = value * Decimal::ONE_HUNDRED;
    let max = Decimal::from(MAX_AMOUNT_MINOR);
    if minor > max {
        return Err(format!("{text} is above the largest amount the switch carries"));
    }
    i64::try_from(minor.trunc()).map_err(|_| bad())
}

fn parse_time_minutes(text: &str) -> Option<u32> {
    let (hours, minutes) = text.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let hours: u32 = hours.parse().ok()?;
    let minutes: u32 = minutes.parse().ok()?;
    (hours < 24 && minutes < 60).then_some(hours * 60 + minutes)
}
