//! What the engine needs besides its state to apply the card rules: the catalog in force and
//! the deployment's PIN key; and the arithmetic the rules share (dates, rates, PINs).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hmac::{Hmac, Mac};
use protocol::CardNo;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use sha2::Sha256;

use crate::catalog::Catalog;
use crate::model::BusinessDate;

/// Shortest and longest PIN, in digits (L3; vip_stored cards use six).
pub const MIN_PIN_DIGITS: usize = 4;
pub const MAX_PIN_DIGITS: usize = 12;

/// A PIN as entered, held only while a request is applied: never stored, logged or printed
/// (`Debug` hides it). Cards keep [`PinKey::hash`] of it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    len: u8,
    digits: [u8; MAX_PIN_DIGITS],
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pin(..)")
    }
}

impl Pin {
    pub fn is_valid(bytes: &[u8]) -> bool {
        (MIN_PIN_DIGITS..=MAX_PIN_DIGITS).contains(&bytes.len()) && bytes.iter().all(u8::is_ascii_digit)
    }

    /// `None` unless 4 to 12 ASCII digits.
    pub fn new(bytes: &[u8]) -> Option<Pin> {
        if !Pin::is_valid(bytes) {
            return None;
        }
        let mut digits = [0u8; MAX_PIN_DIGITS];
        digits[..bytes.len()].copy_from_slice(bytes);
        Some(Pin { len: bytes.len() as u8, digits })
    }

    fn bytes(&self) -> &[u8] {
        &self.digits[..usize::from(self.len)]
    }
}

/// The deployment's secret for PIN hashes (derived from its master key): with it, a PIN's
/// hash is checked; without it, a stolen database says nothing about PINs.
#[derive(Clone)]
pub struct PinKey(Hmac<Sha256>);

impl std::fmt::Debug for PinKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PinKey(..)")
    }
}

impl PinKey {
    pub fn new(secret: &[u8; 32]) -> PinKey {
        PinKey(Hmac::new_from_slice(secret).expect("HMAC takes keys of any length"))
    }

    /// HMAC-SHA256 of the card number and the PIN, cut to 32 bits, never 0 (0 means "no PIN
    /// set"). 32 bits are plenty: a PIN has at most 10^12 values and is guessed online five
    /// times at most (L4); the key, not the width, is what keeps the hash from being reversed.
    pub fn hash(&self, card: CardNo, pin: &Pin) -> u32 {
        let mut mac = self.0.clone();
        mac.update(&card.0.to_be_bytes());
        mac.update(pin.bytes());
        let full = mac.finalize().into_bytes();
        u32::from_be_bytes([full[0], full[1], full[2], full[3]]).max(1)
    }
}

/// The rules' parameters for an engine: the catalog in force and the PIN key, and the count
/// of cards sold per product that the approved quantities cap (P3).
#[derive(Clone, Debug)]
pub struct Rules {
    pub catalog: Arc<Catalog>,
    pub pin_key: PinKey,
    /// Shared by every partition's engine: a quantity is approved for the whole deployment.
    pub issued: Arc<Issued>,
}

/// Cards sold per product code (index), counted where a product has an approved quantity.
#[derive(Debug, Default)]
pub struct Issued([AtomicU64; 9]);

impl Issued {
    /// Takes one of `product`'s `quantity` cards; false when none is left.
    pub fn take(&self, product: u16, quantity: u64) -> bool {
        let count = &self.0[usize::from(product).min(8)];
        count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < quantity).then_some(n + 1)).is_ok()
    }

    /// Gives one back (a sale refused after all, or undone).
    pub fn give_back(&self, product: u16) {
        let count = &self.0[usize::from(product).min(8)];
        let _ = count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Counts the cards recovered at start-up.
    pub fn set(&self, product: u16, count: u64) {
        self.0[usize::from(product).min(8)].store(count, Ordering::Release);
    }

    pub fn get(&self, product: u16) -> u64 {
        self.0[usize::from(product).min(8)].load(Ordering::Acquire)
    }
}

impl Rules {
    pub fn new(catalog: Arc<Catalog>, pin_key: PinKey) -> Rules {
        Rules { catalog, pin_key, issued: Arc::default() }
    }

    /// The same rules under another catalog (a product administered at run time).
    pub fn with_catalog(&self, catalog: Arc<Catalog>) -> Rules {
        Rules { catalog, ..self.clone() }
    }

    /// The core rules (no catalog) with a fixed PIN key: for tests and benchmarks, where no
    /// product requires a PIN.
    pub fn core() -> Rules {
        Rules::new(Arc::new(Catalog::core()), PinKey::new(&[0; 32]))
    }
}

impl Default for Rules {
    fn default() -> Self {
        Rules::core()
    }
}

/// Days since 1970-01-01 of a YYYYMMDD date (the days-from-civil algorithm; inverse of
/// `protocol::types::date_from_days`).
pub fn days_from_date(date: BusinessDate) -> i64 {
    let (year, month, day) = (i64::from(date / 10_000), i64::from(date / 100 % 100), i64::from(date % 100));
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Is `date` (YYYYMMDD) a calendar date of the years 1900 to 2999?
pub fn is_date(date: BusinessDate) -> bool {
    let (year, month, day) = (date / 10_000, date / 100 % 100, date % 100);
    // A day past the month's end comes back from the round trip as a day of the next month.
    (1900..=2999).contains(&year) && (1..=12).contains(&month) && day >= 1 && add_days(date, 0) == date
}

/// `date` plus `days` calendar days.
/// `date` as YYYY-MM-DD, for people.
pub fn date_text(date: BusinessDate) -> String {
    format!("{:04}-{:02}-{:02}", date / 10_000, date / 100 % 100, date % 100)
}

pub fn add_days(date: BusinessDate, days: i64) -> BusinessDate {
    protocol::types::date_from_days(days_from_date(date) + days)
}

/// Whether `date` falls in the `days_before` days before a birthday (MMDD) or on it (K3).
pub fn in_birthday_window(date: BusinessDate, birthday_mmdd: u16, days_before: u32) -> bool {
    if birthday_mmdd == 0 {
        return false;
    }
    let (month, day) = (u32::from(birthday_mmdd / 100), u32::from(birthday_mmdd % 100));
    let today = days_from_date(date);
    // The birthday this year or next year, whichever comes first on or after today; a 29
    // February birthday falls on 1 March in other years.
    (0..=1).any(|offset| {
        let year = date / 10_000 + offset;
        let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
        let (m, d) = if month == 2 && day == 29 && !leap { (3, 1) } else { (month, day) };
        let until = days_from_date(year * 10_000 + m * 100 + d) - today;
        (0..=i64::from(days_before)).contains(&until)
    })
}

/// `amount_minor × rate`, rounded half up to the fen (money rounds half up).
pub fn apply_rate(amount_minor: i64, rate: Decimal) -> i64 {
    (Decimal::from(amount_minor) * rate)
        .round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
        .to_i64()
        .expect("amounts are bounded far below i64")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        for date in [19700101, 20000229, 20261122, 20271231, 20280229, 21000301] {
            assert_eq!(protocol::types::date_from_days(days_from_date(date)), date);
        }
        assert_eq!(add_days(20261122, 365), 20271122);
        assert_eq!(add_days(20280228, 1), 20280229);
    }

    #[test]
    fn k3_birthday_window_is_three_days_before_to_the_day() {
        assert!(in_birthday_window(20261122, 1125, 3));
        assert!(in_birthday_window(20261125, 1125, 3));
        assert!(!in_birthday_window(20261121, 1125, 3));
        assert!(!in_birthday_window(20261126, 1125, 3));
        // Across the new year.
        assert!(in_birthday_window(20261230, 101, 3));
        assert!(!in_birthday_window(20261230, 0, 3));
    }

    #[test]
    fn rates_round_half_up_to_the_fen() {
        assert_eq!(apply_rate(1_005, Decimal::new(5, 2)), 50); // 50.25 → 50
        assert_eq!(apply_rate(1_010, Decimal::new(5, 2)), 51); // 50.5 → 51
        assert_eq!(apply_rate(300_100, Decimal::new(10, 2)), 30_010);
    }

    #[test]
    fn pin_hashes_depend_on_key_card_and_pin() {
        let key = PinKey::new(&[7; 32]);
        let pin = Pin::new(b"123456").unwrap();
        let h = key.hash(CardNo(6200880000000001), &pin);
        assert_ne!(h, key.hash(CardNo(6200880000000002), &pin));
        assert_ne!(h, key.hash(CardNo(6200880000000001), &Pin::new(b"123457").unwrap()));
        assert_ne!(h, PinKey::new(&[8; 32]).hash(CardNo(6200880000000001), &pin));
        assert!(Pin::new(b"123").is_none() && Pin::new(b"12a4").is_none());
        assert_eq!(format!("{pin:?}"), "Pin(..)");
    }
}
