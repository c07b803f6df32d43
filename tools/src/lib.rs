//! Helpers shared by the cardswitch tools: parsing what people type (amounts in yuan, card
//! numbers, enumeration and product names), choosing trace numbers, and small output helpers.
//!
//! The parsers return `Result<_, String>` so they plug straight into clap's `value_parser`.
//!
//! The load generator's parts that are not about connections live in modules: the request
//! [`mix`], card popularity ([`zipf`]), open-loop pacing ([`schedule`]), latency reports
//! ([`latency`]) and the pseudo-random generator they share ([`rng`]). [`miniswitch`] is a
//! switch in miniature, in memory, that the load generator's tests and the ceiling measurement
//! run against.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub mod chaos;
pub mod latency;
pub mod miniswitch;
pub mod mix;
pub mod pos;
pub mod rng;
pub mod schedule;
pub mod zipf;

use protocol::types::{parse_minor, CardNo, Category, PaymentMethod};
use protocol::MAX_AMOUNT_MINOR;

/// Product names in the order of their codes: `member` is 1, ..., `vip_stored` is 8.
pub const PRODUCTS: [&str; 8] = ["member", "gift", "special", "cash", "comp", "offset", "room", "vip_stored"];

/// Largest trace number the tools use for the operations a person asks for. Trace numbers
/// above it (the upper half of `u32`) are reserved for the sign-ons the tools send on their
/// own, so the two can never collide.
pub const MAX_OPERATION_STAN: u32 = 0x7FFF_FFFF;
/// Bit set in every sign-on trace number the tools choose themselves.
pub const SIGN_ON_STAN_BIT: u32 = 0x8000_0000;

const MS_PER_DAY: i64 = 86_400_000;

/// Lower case, with `-` read as `_`, so `Bank-Card` finds `bank_card`.
fn normalise_name(text: &str) -> String {
    text.trim().to_ascii_lowercase().replace('-', "_")
}

/// A product by name (`member`, `gift`, ..., `vip_stored`) or by code `1..=8`.
pub fn parse_product(text: &str) -> Result<u16, String> {
    let name = normalise_name(text);
    if let Some(index) = PRODUCTS.iter().position(|p| *p == name) {
        return Ok(index as u16 + 1);
    }
    match name.parse::<u16>() {
        Ok(code) if product_name(code).is_some() => Ok(code),
        _ => Err(format!(
            "unknown product '{text}' (expected one of {} or a code 1..={})",
            PRODUCTS.join(", "),
            PRODUCTS.len()
        )),
    }
}

/// The name of product `code`, if the catalog the tools know has it.
pub fn product_name(code: u16) -> Option<&'static str> {
    PRODUCTS.get(usize::from(code).checked_sub(1)?).copied()
}

/// An amount in yuan with at most two decimals (`12`, `12.3`, `12.34`), exactly, as minor
/// units; refuses signs, more decimals and anything above [`MAX_AMOUNT_MINOR`].
pub fn parse_amount(text: &str) -> Result<i64, String> {
    let minor = parse_minor(text.trim())
        .ok_or_else(|| format!("invalid amount '{text}' (expected yuan with at most two decimals, e.g. 12.34)"))?;
    if minor > MAX_AMOUNT_MINOR {
        return Err(format!(
            "amount '{text}' exceeds the largest amount a message may carry ({})",
            protocol::types::format_minor(MAX_AMOUNT_MINOR)
        ));
    }
    Ok(minor)
}

/// A card number of 8 to 19 digits, first digit not zero.
pub fn parse_card(text: &str) -> Result<CardNo, String> {
    CardNo::parse(text.trim()).ok_or_else(|| {
        format!(
            "invalid card number '{text}' (expected {} to {} digits, not starting with 0)",
            CardNo::MIN_DIGITS,
            CardNo::MAX_DIGITS
        )
    })
}

/// A sale category by name (`retail`, `room`, `small_appliance`, ...).
pub fn parse_category(text: &str) -> Result<Category, String> {
    Category::from_name(&normalise_name(text)).ok_or_else(|| {
        let names: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
        format!("unknown category '{text}' (expected one of {})", names.join(", "))
    })
}

/// A payment method by name (`cash`, `bank_card`, `wechat`, ...).
pub fn parse_method(text: &str) -> Result<PaymentMethod, String> {
    PaymentMethod::from_name(&normalise_name(text)).ok_or_else(|| {
        let names: Vec<&str> = PaymentMethod::ALL.iter().map(|m| m.as_str()).collect();
        format!("unknown payment method '{text}' (expected one of {})", names.join(", "))
    })
}

/// A trace number typed by a person: `1..=MAX_OPERATION_STAN`.
pub fn parse_stan(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(stan) if (1..=MAX_OPERATION_STAN).contains(&stan) => Ok(stan),
        _ => Err(format!("invalid trace number '{text}' (expected 1..={MAX_OPERATION_STAN})")),
    }
}

/// Milliseconds since the Unix epoch by the wall clock.
pub fn unix_ms_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A trace number for an operation typed by hand: milliseconds since local midnight plus one,
/// so runs a moment apart never share one. Always in `1..=86_400_000`, within
/// [`MAX_OPERATION_STAN`].
pub fn stan_from_clock(unix_ms: i64, utc_offset_minutes: i32) -> u32 {
    let offset_ms = i64::from(utc_offset_minutes) * 60_000;
    let local_ms = unix_ms.rem_euclid(MS_PER_DAY) + offset_ms.rem_euclid(MS_PER_DAY);
    (local_ms.rem_euclid(MS_PER_DAY) + 1) as u32
}

/// A trace number for a sign-on a tool sends before an operation: [`SIGN_ON_STAN_BIT`] set,
/// the low 31 bits from the clock. Never equal to any operation trace number (those are at
/// most [`MAX_OPERATION_STAN`]), and never the same for two runs less than ~24 days apart
/// unless they start in the same millisecond.
pub fn sign_on_stan_from_clock(unix_ms: i64) -> u32 {
    SIGN_ON_STAN_BIT | (unix_ms.rem_euclid(1 << 31) as u32)
}

/// Terminal ids one load-generator run owns: a block of this many consecutive ids.
pub const RUN_BLOCK_TERMINALS: u32 = 100_000;

/// How many blocks of [`RUN_BLOCK_TERMINALS`] ids there are: block `b` (`0..RUN_BLOCKS`) is the
/// ids `(b + 1) * 100_000 ..= (b + 1) * 100_000 + 99_999`, so the lowest id any run uses is
/// 100,000 (ids below are left to people and real terminals) and the highest 4,294,899,999,
/// within `u32`. One block per second for 42,948 s (11 h 55 min 48 s), then they repeat.
pub const RUN_BLOCKS: u32 = u32::MAX / RUN_BLOCK_TERMINALS - 1;

/// The first terminal id of the block owned by a load-generator run started at `unix_ms`:
/// the block of the Unix second, modulo [`RUN_BLOCKS`].
///
/// This is what keeps runs from reusing each other's trace numbers (the switch remembers every
/// request by `(terminal_id, stan)` for ever and declines a reused one with new content
/// `trace_reused`): every terminal of a run has an id in the run's block and counts its stans
/// up from 1 without wrapping, and two runs started in different seconds less than
/// [`RUN_BLOCKS`] seconds apart have disjoint blocks, so they share no `(terminal, stan)`
/// however many requests each sends. Runs started in the same second, an exact multiple of
/// 42,948 s apart, or after the clock was set back share a block.
pub fn run_terminal_block(unix_ms: i64) -> u32 {
    let second = unix_ms.div_euclid(1000);
    (second.rem_euclid(i64::from(RUN_BLOCKS)) as u32 + 1) * RUN_BLOCK_TERMINALS
}

/// How long until the Unix second after the one `started_ms` falls in, seen at `now_ms` (zero
/// once it has begun). A run that waits this long before it ends never shares its start second,
/// and so its block of terminal ids, with a run started after it.
pub fn until_next_second(started_ms: i64, now_ms: i64) -> Duration {
    let next_ms = (started_ms.div_euclid(1000) + 1).saturating_mul(1000);
    Duration::from_millis(next_ms.saturating_sub(now_ms).max(0) as u64)
}

/// A calendar date written `YYYY-MM-DD` (years 1900 to 2999, as the switch takes them) as
/// `YYYYMMDD`; None for anything else.
pub fn parse_date(text: &str) -> Option<u32> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    let date: u32 = digits.parse().ok().filter(|_| digits.len() == 8)?;
    let (year, month, day) = (date / 10_000, date / 100 % 100, date % 100);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    ((1900..=2999).contains(&year) && (1..=days_in_month).contains(&day)).then_some(date)
}

/// `YYYYMMDD` as `YYYY-MM-DD`.
pub fn format_date(yyyymmdd: u32) -> String {
    format!("{:04}-{:02}-{:02}", yyyymmdd / 10_000, yyyymmdd / 100 % 100, yyyymmdd % 100)
}

/// `text` as a JSON string literal, quotes included.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An i/o error's message without the trailing ` (os error N)`.
pub fn describe_io_error(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_string(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_parse_by_name_or_code_in_catalog_order() {
        assert_eq!(parse_product("member"), Ok(1));
        assert_eq!(parse_product("gift"), Ok(2));
        assert_eq!(parse_product("special"), Ok(3));
        assert_eq!(parse_product("cash"), Ok(4));
        assert_eq!(parse_product("comp"), Ok(5));
        assert_eq!(parse_product("offset"), Ok(6));
        assert_eq!(parse_product("room"), Ok(7));
        assert_eq!(parse_product("vip_stored"), Ok(8));
        assert_eq!(parse_product("VIP-Stored"), Ok(8));
        assert_eq!(parse_product("1"), Ok(1));
        assert_eq!(parse_product("8"), Ok(8));
        assert!(parse_product("0").is_err());
        assert!(parse_product("9").is_err());
        assert!(parse_product("platinum").is_err());
        assert!(parse_product("").is_err());
        for code in 1..=8 {
            assert_eq!(parse_product(product_name(code).unwrap()), Ok(code));
        }
        assert_eq!(product_name(0), None);
        assert_eq!(product_name(9), None);
    }

    #[test]
    fn amounts_parse_exactly_in_yuan() {
        assert_eq!(parse_amount("12.34"), Ok(1234));
        assert_eq!(parse_amount("12.3"), Ok(1230));
        assert_eq!(parse_amount("12"), Ok(1200));
        assert_eq!(parse_amount("0"), Ok(0));
        assert_eq!(parse_amount("0.01"), Ok(1));
        // 0.1 + 0.2 style float traps do not exist here.
        assert_eq!(parse_amount("0.29"), Ok(29));
        assert_eq!(parse_amount("10000000000.00"), Ok(MAX_AMOUNT_MINOR));
        assert!(parse_amount("10000000000.01").unwrap_err().contains("exceeds"));
        assert!(parse_amount("99999999999999999999").is_err());
        assert!(parse_amount("-1").is_err());
        assert!(parse_amount("+1").is_err());
        assert!(parse_amount("1.234").is_err());
        assert!(parse_amount(".5").is_err());
        assert!(parse_amount("1,5").is_err());
        assert!(parse_amount("1e3").is_err());
        assert!(parse_amount("").is_err());
    }

    #[test]
    fn cards_categories_and_methods_parse_by_protocol_rules() {
        assert_eq!(parse_card("6200880000000017"), Ok(CardNo(6_200_880_000_000_017)));
        assert!(parse_card("0620088000").unwrap_err().contains("invalid card number"));
        assert!(parse_card("1234567").is_err());
        assert!(parse_card("62008800000000x7").is_err());
        assert_eq!(parse_category("retail"), Ok(Category::Retail));
        assert_eq!(parse_category("small-appliance"), Ok(Category::SmallAppliance));
        assert!(parse_category("food").unwrap_err().contains("dining"));
        assert_eq!(parse_method("bank_card"), Ok(PaymentMethod::BankCard));
        assert_eq!(parse_method("WeChat"), Ok(PaymentMethod::Wechat));
        assert!(parse_method("bitcoin").unwrap_err().contains("alipay"));
    }

    #[test]
    fn typed_trace_numbers_stay_in_the_operation_half() {
        assert_eq!(parse_stan("1"), Ok(1));
        assert_eq!(parse_stan("45213007"), Ok(45_213_007));
        assert_eq!(parse_stan("2147483647"), Ok(MAX_OPERATION_STAN));
        assert!(parse_stan("0").is_err());
        assert!(parse_stan("2147483648").is_err());
        assert!(parse_stan("4294967296").is_err());
        assert!(parse_stan("-5").is_err());
        assert!(parse_stan("abc").is_err());
    }

    #[test]
    fn clock_trace_numbers_are_ms_since_local_midnight_plus_one() {
        // 2026-11-22T01:30:05.123Z is 09:30:05.123 at UTC+8.
        let unix_ms = 1_795_311_005_123;
        assert_eq!(stan_from_clock(unix_ms, 480), (9 * 3600 + 30 * 60 + 5) * 1000 + 123 + 1);
        assert_eq!(stan_from_clock(unix_ms, 0), (3600 + 30 * 60 + 5) * 1000 + 123 + 1);
        // Local midnight gives 1, the last millisecond of the day 86_400_000: never 0.
        assert_eq!(stan_from_clock(16 * 3_600_000, 480), 1);
        assert_eq!(stan_from_clock(16 * 3_600_000 - 1, 480), 86_400_000);
        assert_eq!(stan_from_clock(0, 0), 1);
        assert_eq!(stan_from_clock(-1, 0), 86_400_000);
        for ms in [0, 1, 999, 86_399_999, 86_400_000, unix_ms, i64::MIN, i64::MAX] {
            let stan = stan_from_clock(ms, 480);
            assert!((1..=86_400_000).contains(&stan));
            assert!(stan <= MAX_OPERATION_STAN);
        }
    }

    #[test]
    fn sign_on_trace_numbers_never_meet_operation_ones() {
        for ms in [0, 1, (1 << 31) - 1, 1 << 31, 1_795_311_005_123, i64::MAX] {
            let sign_on = sign_on_stan_from_clock(ms);
            assert!(sign_on > MAX_OPERATION_STAN);
            assert_ne!(sign_on, stan_from_clock(ms, 480));
        }
        assert_eq!(sign_on_stan_from_clock(5), SIGN_ON_STAN_BIT | 5);
        assert_ne!(sign_on_stan_from_clock(1_000), sign_on_stan_from_clock(1_001));
    }

    #[test]
    fn run_blocks_follow_the_second_and_fit_u32() {
        // 2026-11-22T01:30:05.123Z.
        let unix_ms: i64 = 1_795_311_005_123;
        let second = unix_ms / 1000;
        let block = run_terminal_block(unix_ms);
        assert_eq!(block, (second % 42_948 + 1) as u32 * 100_000);
        // The whole second has the same block.
        assert_eq!(run_terminal_block(second * 1000), block);
        assert_eq!(run_terminal_block(second * 1000 + 999), block);
        // Runs one second apart own disjoint blocks: the next one starts where this one ends.
        let next = run_terminal_block(unix_ms + 1000);
        assert_eq!(next, block + RUN_BLOCK_TERMINALS);
        let ids = |base: u32| base..base + RUN_BLOCK_TERMINALS;
        assert!(ids(block).end <= ids(next).start);
        // No two seconds within one cycle share a block, and they only repeat after it.
        let mut seen = std::collections::HashSet::new();
        for s in 0..i64::from(RUN_BLOCKS) {
            assert!(seen.insert(run_terminal_block((second + s) * 1000)), "second {s}");
        }
        assert_eq!(run_terminal_block((second + i64::from(RUN_BLOCKS)) * 1000), block);
        // Every id of every block is in u32, never 0 and at least 100,000.
        assert_eq!(RUN_BLOCKS, 42_948);
        let highest = u64::from(RUN_BLOCKS) * u64::from(RUN_BLOCK_TERMINALS) + u64::from(RUN_BLOCK_TERMINALS) - 1;
        assert_eq!(highest, 4_294_899_999);
        assert!(highest <= u64::from(u32::MAX));
        for ms in [0, 999, 1000, unix_ms, -1, -1000, i64::MIN, i64::MAX] {
            let base = run_terminal_block(ms);
            assert!(base >= RUN_BLOCK_TERMINALS && base.is_multiple_of(RUN_BLOCK_TERMINALS), "{ms}: {base}");
            assert!(base.checked_add(RUN_BLOCK_TERMINALS - 1).is_some(), "{ms}: {base}");
        }
        assert_eq!(run_terminal_block(0), 100_000);
        assert_eq!(run_terminal_block(-1), 42_948 * 100_000);
    }

    #[test]
    fn runs_end_after_their_start_second() {
        let ms = Duration::from_millis;
        assert_eq!(until_next_second(5_000, 5_000), ms(1_000));
        assert_eq!(until_next_second(5_250, 5_900), ms(100));
        assert_eq!(until_next_second(5_250, 6_000), ms(0));
        assert_eq!(until_next_second(5_250, 9_000), ms(0));
        assert_eq!(until_next_second(-1, -1), ms(1));
        // No overflow at the ends of the range.
        assert!(until_next_second(i64::MAX, 0) > ms(0));
        assert_eq!(until_next_second(i64::MIN, 0), ms(0));
    }

    #[test]
    fn output_helpers() {
        assert_eq!(format_date(20261122), "2026-11-22");
        assert_eq!(json_string("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
        let refused = std::io::Error::from_raw_os_error(111);
        assert!(!describe_io_error(&refused).contains("os error"));
    }
}
