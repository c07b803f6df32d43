//! Open-loop pacing: when each request of a terminal is meant to be sent.

use std::time::Duration;

/// Largest total rate accepted, requests per second.
pub const MAX_RATE: f64 = 100_000_000.0;

/// Parses a total rate in requests per second: a positive number up to [`MAX_RATE`].
pub fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 && rate <= MAX_RATE => Ok(rate),
        _ => Err(format!("invalid rate '{text}' (expected requests per second, a number above 0 up to {MAX_RATE})")),
    }
}

/// One terminal's intended send times: request `k` (from 0) is due `phase + k * interval`
/// after the start. With a total rate `R` spread over `N` terminals the interval is `N / R`
/// seconds and the phase is a fraction of one interval, so the terminals interleave.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    interval_ns: f64,
    phase_ns: f64,
}

impl Schedule {
    /// The schedule of one of `terminals` terminals sharing `rate` requests per second, with
    /// `phase` in `[0, 1)` (a share of the interval).
    pub fn new(terminals: u32, rate: f64, phase: f64) -> Schedule {
        debug_assert!(rate > 0.0 && (0.0..1.0).contains(&phase));
        let interval_ns = f64::from(terminals) * 1e9 / rate;
        Schedule { interval_ns, phase_ns: phase * interval_ns }
    }

    /// Time between two requests of this terminal.
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_ns.round() as u64)
    }

    /// When request `k` is due, after the start. Computed from `k` (not by adding intervals
    /// up), so the schedule never drifts.
    #[inline]
    pub fn due(&self, k: u64) -> Duration {
        Duration::from_nanos((self.phase_ns + k as f64 * self.interval_ns) as u64)
    }

    /// How many requests are due strictly before `elapsed` after the start.
    pub fn due_before(&self, elapsed: Duration) -> u64 {
        let ns = elapsed.as_nanos() as f64;
        if ns <= self.phase_ns {
            return 0;
        }
        // The smallest k with due(k) >= elapsed, corrected for rounding in either direction.
        let mut k = ((ns - self.phase_ns) / self.interval_ns).ceil() as u64;
        while k > 0 && self.due(k - 1) >= elapsed {
            k -= 1;
        }
        while self.due(k) < elapsed {
            k += 1;
        }
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("100000"), Ok(100_000.0));
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        assert_eq!(parse_rate("2.5e5"), Ok(250_000.0));
        for bad in ["0", "-5", "abc", "", "inf", "NaN", "1e9"] {
            assert!(parse_rate(bad).unwrap_err().contains("invalid rate"), "{bad}");
        }
    }

    #[test]
    fn terminals_share_the_rate_evenly() {
        // 100,000 requests/s over 50 terminals: each sends every 500 us.
        let schedule = Schedule::new(50, 100_000.0, 0.0);
        assert_eq!(schedule.interval(), Duration::from_micros(500));
        assert_eq!(schedule.due(0), Duration::ZERO);
        assert_eq!(schedule.due(1), Duration::from_micros(500));
        assert_eq!(schedule.due(2_000), Duration::from_secs(1));
        assert_eq!(schedule.due_before(Duration::from_secs(1)), 2_000);
        assert_eq!(schedule.due_before(Duration::from_secs(1) + Duration::from_nanos(1)), 2_001);
        // Over 10 s all terminals together send the total rate, whatever their phases.
        let ten_s = Duration::from_secs(10);
        let total: u64 = (0..50).map(|i| Schedule::new(50, 100_000.0, f64::from(i) / 50.0).due_before(ten_s)).sum();
        assert_eq!(total, 1_000_000);
    }

    #[test]
    fn phases_stay_within_one_interval_and_times_never_drift() {
        let schedule = Schedule::new(3, 7.0, 0.999);
        let interval = 3.0 / 7.0;
        assert!(schedule.due(0).as_secs_f64() < interval);
        assert!((schedule.due(0).as_secs_f64() - 0.999 * interval).abs() < 1e-6);
        // After a million intervals the due time is still exact to the nanosecond.
        let k = 1_000_000u64;
        let exact = (0.999 + k as f64) * interval;
        assert!((schedule.due(k).as_secs_f64() - exact).abs() < 2e-9);
        let mut last = Duration::ZERO;
        for k in 0..10_000 {
            let due = schedule.due(k);
            assert!(due >= last);
            last = due;
            assert_eq!(schedule.due_before(due), k);
            assert_eq!(schedule.due_before(due + Duration::from_nanos(1)), k + 1);
        }
        // Fractional rates: one request every 4 s on each of 2 terminals at 0.5/s in total.
        let slow = Schedule::new(2, 0.5, 0.25);
        assert_eq!(slow.due(0), Duration::from_secs(1));
        assert_eq!(slow.due(1), Duration::from_secs(5));
        assert_eq!(slow.due_before(Duration::from_secs(10)), 3);
    }
}
