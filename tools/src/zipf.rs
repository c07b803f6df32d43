//! Card popularity of a load run: uniform, or Zipf-distributed (`--skew zipf:S`).
//!
//! The Zipf sampler is rejection-inversion (W. Hörmann and G. Derflinger, "Rejection-inversion
//! to generate variates from monotone discrete distributions", ACM TOMACS 6(3), 1996): constant
//! memory and expected constant time for any number of elements, any exponent `s > 0`.

use std::fmt;

use crate::rng::XorShift;

/// Largest Zipf exponent accepted.
pub const MAX_EXPONENT: f64 = 100.0;

/// How a load run chooses cards.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Skew {
    /// Every card equally likely.
    #[default]
    Uniform,
    /// Card of rank `k` (1 = the first card) with probability proportional to `1 / k^s`.
    Zipf(f64),
}

impl fmt::Display for Skew {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skew::Uniform => f.write_str("uniform"),
            Skew::Zipf(s) => write!(f, "zipf:{s}"),
        }
    }
}

/// Parses `zipf:S` (`S` a number, `0 < S <= MAX_EXPONENT`) or `uniform`.
pub fn parse_skew(text: &str) -> Result<Skew, String> {
    let trimmed = text.trim().to_ascii_lowercase();
    if trimmed == "uniform" {
        return Ok(Skew::Uniform);
    }
    let usage = "expected zipf:S with an exponent 0 < S <= 100, e.g. zipf:1.1, or uniform";
    let Some(exponent) = trimmed.strip_prefix("zipf:") else {
        return Err(format!("unknown skew '{text}' ({usage})"));
    };
    match exponent.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= MAX_EXPONENT => Ok(Skew::Zipf(s)),
        Ok(_) => Err(format!("Zipf exponent '{exponent}' is out of range ({usage})")),
        Err(_) => Err(format!("Zipf exponent '{exponent}' is not a number ({usage})")),
    }
}

/// Zipf distribution over `1..=n` with exponent `s`: `P(k) = k^-s / H(n, s)`.
#[derive(Clone, Debug)]
pub struct Zipf {
    n: u64,
    n_f64: f64,
    exponent: f64,
    /// `H(1.5) - 1`, where `H` is the integral of `h(x) = x^-s` (up to a constant).
    h_integral_x1: f64,
    /// `H(n + 0.5)`.
    h_integral_n: f64,
    /// Squeeze: values of `k - x` up to it are accepted without evaluating `H` again.
    squeeze: f64,
}

impl Zipf {
    /// The distribution over `1..=n` (`n >= 1`) with exponent `0 < s <= MAX_EXPONENT`.
    pub fn new(n: u64, exponent: f64) -> Result<Zipf, String> {
        if n == 0 {
            return Err("a Zipf distribution needs at least one element".to_string());
        }
        if !(exponent.is_finite() && exponent > 0.0 && exponent <= MAX_EXPONENT) {
            return Err(format!("Zipf exponent {exponent} is out of range (0, {MAX_EXPONENT}]"));
        }
        let mut zipf = Zipf { n, n_f64: n as f64, exponent, h_integral_x1: 0.0, h_integral_n: 0.0, squeeze: 0.0 };
        zipf.h_integral_x1 = zipf.h_integral(1.5) - 1.0;
        zipf.h_integral_n = zipf.h_integral(zipf.n_f64 + 0.5);
        zipf.squeeze = 2.0 - zipf.h_integral_inverse(zipf.h_integral(2.5) - zipf.h(2.0));
        Ok(zipf)
    }

    pub fn n(&self) -> u64 {
        self.n
    }

    pub fn exponent(&self) -> f64 {
        self.exponent
    }

    /// A rank in `1..=n`.
    #[inline]
    pub fn sample(&self, rng: &mut XorShift) -> u64 {
        loop {
            // Uniform in (h_integral_x1, h_integral_n].
            let u = self.h_integral_n + rng.next_f64() * (self.h_integral_x1 - self.h_integral_n);
            let x = self.h_integral_inverse(u);
            // Round to the nearest rank, kept inside 1..=n against rounding at the ends.
            let k = (x + 0.5).floor().clamp(1.0, self.n_f64);
            if k - x <= self.squeeze || u >= self.h_integral(k + 0.5) - self.h(k) {
                return k as u64;
            }
        }
    }

    /// `h(x) = x^-s`.
    fn h(&self, x: f64) -> f64 {
        (-self.exponent * x.ln()).exp()
    }

    /// `H(x) = (x^(1-s) - 1) / (1 - s)`, or `ln x` when `s = 1`, computed stably near `s = 1`.
    fn h_integral(&self, x: f64) -> f64 {
        let log_x = x.ln();
        helper2((1.0 - self.exponent) * log_x) * log_x
    }

    /// The inverse of [`Zipf::h_integral`].
    fn h_integral_inverse(&self, x: f64) -> f64 {
        // Clamped so the logarithm below stays defined for values at the edge of the range.
        let t = (x * (1.0 - self.exponent)).max(-1.0);
        (helper1(t) * x).exp()
    }
}

/// `ln(1 + x) / x`, and its limit 1 at 0.
fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// `(e^x - 1) / x`, and its limit 1 at 0.
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `P(k)` exactly, by summing the normalising constant.
    fn probability(n: u64, s: f64, k: u64) -> f64 {
        let norm: f64 = (1..=n).map(|i| (i as f64).powf(-s)).sum();
        (k as f64).powf(-s) / norm
    }

    #[test]
    fn skews_parse_and_refuse_bad_exponents() {
        assert_eq!(parse_skew("zipf:1.1"), Ok(Skew::Zipf(1.1)));
        assert_eq!(parse_skew("ZIPF:0.5"), Ok(Skew::Zipf(0.5)));
        assert_eq!(parse_skew("zipf:1"), Ok(Skew::Zipf(1.0)));
        assert_eq!(parse_skew("uniform"), Ok(Skew::Uniform));
        assert_eq!(Skew::Zipf(1.1).to_string(), "zipf:1.1");
        for bad in ["zipf:0", "zipf:-1", "zipf:abc", "zipf:", "zipf:inf", "zipf:NaN", "zipf:101", "pareto:1", "1.1", ""]
        {
            let error = parse_skew(bad).unwrap_err();
            assert!(error.contains("zipf:1.1"), "{bad:?}: {error}");
        }
        assert!(parse_skew("zipf:x").unwrap_err().contains("not a number"));
        assert!(parse_skew("zipf:0").unwrap_err().contains("out of range"));
        assert!(Zipf::new(0, 1.0).is_err());
        assert!(Zipf::new(10, 0.0).is_err());
        assert!(Zipf::new(10, f64::NAN).is_err());
    }

    #[test]
    fn frequencies_follow_the_zipf_law() {
        let draws = 400_000u64;
        for (n, s) in [(1_000u64, 1.1), (1_000, 1.0), (100, 0.5), (50, 2.0), (10_000, 1.1)] {
            let zipf = Zipf::new(n, s).unwrap();
            let mut rng = XorShift::new(42, 7);
            let mut counts = vec![0u64; n as usize + 1];
            for _ in 0..draws {
                let k = zipf.sample(&mut rng);
                assert!((1..=n).contains(&k));
                counts[k as usize] += 1;
            }
            for k in [1, 2, 3, 10] {
                let expected = probability(n, s, k) * draws as f64;
                let observed = counts[k as usize] as f64;
                // Within 5 standard deviations of a binomial count, and within 3% for large counts.
                let tolerance = 5.0 * expected.sqrt() + 0.03 * expected;
                assert!((observed - expected).abs() <= tolerance, "n {n} s {s} rank {k}: {observed} vs {expected:.0}");
            }
            // The first rank is the most popular one.
            let top = counts.iter().enumerate().max_by_key(|&(_, c)| *c).unwrap().0;
            assert_eq!(top, 1, "n {n} s {s}");
        }
    }

    #[test]
    fn rank_one_share_for_a_large_range() {
        // s = 1.1 over a million cards: P(1) = 1 / H(10^6, 1.1).
        let n = 1_000_000;
        let zipf = Zipf::new(n, 1.1).unwrap();
        let expected = probability(n, 1.1, 1);
        let mut rng = XorShift::new(1, 0);
        let draws = 200_000;
        let ones = (0..draws).filter(|_| zipf.sample(&mut rng) == 1).count() as f64;
        assert!((ones / draws as f64 - expected).abs() < 0.01, "{} vs {expected}", ones / draws as f64);
    }

    #[test]
    fn samples_repeat_per_seed_and_stay_in_range_at_the_extremes() {
        let zipf = Zipf::new(1_000_000_000, 1.1).unwrap();
        let run = |seed, stream| {
            let mut rng = XorShift::new(seed, stream);
            (0..1_000).map(|_| zipf.sample(&mut rng)).collect::<Vec<u64>>()
        };
        assert_eq!(run(5, 1), run(5, 1));
        assert_ne!(run(5, 1), run(6, 1));
        assert_ne!(run(5, 1), run(5, 2));
        assert!(run(5, 1).iter().all(|&k| (1..=1_000_000_000).contains(&k)));
        for s in [1e-6, 0.01, 0.999_999_99, 1.0, 1.000_000_01, 3.0, 20.0, MAX_EXPONENT] {
            for n in [1u64, 2, 3, 1_000, u64::from(u32::MAX) * 4] {
                let zipf = Zipf::new(n, s).unwrap();
                let mut rng = XorShift::new(9, n);
                for _ in 0..2_000 {
                    let k = zipf.sample(&mut rng);
                    assert!((1..=n).contains(&k), "n {n} s {s}: {k}");
                }
            }
        }
        // One element: always rank 1. A steep exponent: nearly always rank 1.
        let mut rng = XorShift::new(1, 1);
        assert!((0..100).all(|_| Zipf::new(1, 1.1).unwrap().sample(&mut rng) == 1));
        let steep = Zipf::new(1_000, 20.0).unwrap();
        assert!((0..1_000).filter(|_| steep.sample(&mut rng) == 1).count() > 990);
        // A tiny exponent is nearly uniform: the first decile gets about a tenth.
        let flat = Zipf::new(1_000, 1e-6).unwrap();
        let low = (0..100_000).filter(|_| flat.sample(&mut rng) <= 100).count();
        assert!((9_000..11_000).contains(&low), "{low}");
    }
}
