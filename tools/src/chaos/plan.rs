//! What the seed decides: the moment of every SIGKILL, each terminal's window, its requests,
//! and how it resolves a request the kill left without an answer. The same seed always makes
//! the same choices; what the switch answers (and so which requests are left open) depends on
//! timing and is not reproducible, which is why every choice about a request is a pure
//! function of the seed and the request's identity rather than of a shared stream.

use crate::rng::XorShift;

/// Latest SIGKILL after the switch printed `listening on`, for [`KillPoint::AfterDelay`].
pub const MAX_KILL_DELAY_MS: u64 = 300;
/// Most responses the terminals receive before [`KillPoint::AfterResponses`] kills.
pub const MAX_KILL_RESPONSES: u64 = 2_000;
/// Latest SIGKILL after the process was started, for [`KillPoint::DuringStart`]: about the
/// time start-up and recovery take here (100-200 ms), so the kill lands before, during and
/// just after recovery.
pub const MAX_START_KILL_DELAY_MS: u64 = 200;
/// Most requests a load terminal keeps outstanding ("pipelined a little").
pub const MAX_LOAD_WINDOW: usize = 4;

/// Weights of the kill points, out of [`KILL_WEIGHT_TOTAL`].
const KILL_WEIGHT_DURING_START: u64 = 1;
const KILL_WEIGHT_AFTER_DELAY: u64 = 4;
const KILL_WEIGHT_TOTAL: u64 = 9;

/// Stream of the kill plan; terminal streams are their indices, far below it.
const KILL_PLAN_STREAM: u64 = u64::MAX - 1;

/// When one SIGKILL comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillPoint {
    /// This long after the process was spawned, whether or not it is listening yet: kills
    /// during recovery and start-up. No terminal runs in that round.
    DuringStart { delay_ms: u64 },
    /// This long after the switch printed `listening on`, while the terminals reconnect,
    /// resolve their open requests and send new ones.
    AfterDelay { delay_ms: u64 },
    /// As soon as the terminals have received this many responses since the restart: the
    /// kill then lands while other requests are outstanding and group commits are in flight.
    AfterResponses { responses: u64 },
}

/// The `kills` kill points of a run, in order.
pub fn kill_plan(seed: u64, kills: u32) -> Vec<KillPoint> {
    let mut rng = XorShift::new(seed, KILL_PLAN_STREAM);
    (0..kills)
        .map(|_| {
            let pick = rng.below(KILL_WEIGHT_TOTAL);
            if pick < KILL_WEIGHT_DURING_START {
                KillPoint::DuringStart { delay_ms: rng.in_range(0, MAX_START_KILL_DELAY_MS) }
            } else if pick < KILL_WEIGHT_DURING_START + KILL_WEIGHT_AFTER_DELAY {
                KillPoint::AfterDelay { delay_ms: rng.in_range(0, MAX_KILL_DELAY_MS) }
            } else {
                KillPoint::AfterResponses { responses: rng.in_range(1, MAX_KILL_RESPONSES) }
            }
        })
        .collect()
}

/// The random stream of load terminal `index`: its window, requests and probes.
pub fn terminal_rng(seed: u64, index: u32) -> XorShift {
    XorShift::new(seed, u64::from(index))
}

/// Requests load terminal `index` keeps outstanding: 1 to [`MAX_LOAD_WINDOW`].
pub fn load_window(seed: u64, index: u32) -> usize {
    // A stream of its own, so the window does not shift the terminal's request stream.
    let mut rng = XorShift::new(seed ^ 0x5749_4E44_4F57, u64::from(index));
    rng.in_range(1, MAX_LOAD_WINDOW as u64) as usize
}

/// How a terminal settles a request that got no answer (T8, T7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Send it again: same stan, same content, the RETRANSMIT flag set.
    Retransmit,
    /// Undo it with a reversal naming its stan.
    Reverse,
}

/// How terminal `terminal_id` settles its unanswered request `stan` on its `attempt`-th try
/// (0 first). A reversal is never itself reversed: a terminal that got no answer to one sends
/// the same reversal again (SPEC §9), which the caller does without asking.
pub fn resolution(seed: u64, terminal_id: u32, stan: u32, attempt: u32) -> Resolution {
    let identity = (u64::from(terminal_id) << 32) | u64::from(stan);
    let mut rng = XorShift::new(seed ^ u64::from(attempt).wrapping_mul(0xD6E8_FEB8_6659_FD93), identity);
    if rng.below(2) == 0 {
        Resolution::Retransmit
    } else {
        Resolution::Reverse
    }
}

/// Smallest and largest sale and hold, fen.
pub const DEBIT_MIN_MINOR: u64 = 1;
pub const DEBIT_MAX_MINOR: u64 = 2_000;
/// A sale for more than any card here ever holds (1,000,000.00 yuan): declined
/// `insufficient_value`, and a remembered decline must come back the same after a restart.
pub const DECLINED_SALE_MINOR: i64 = 100_000_000;
/// One sale in this many is for [`DECLINED_SALE_MINOR`].
const DECLINED_SALE_ONE_IN: u64 = 32;
/// Smallest and largest load, whole yuan (loads are whole yuan, V1).
pub const LOAD_MIN_YUAN: u64 = 1;
pub const LOAD_MAX_YUAN: u64 = 20;

/// What a load terminal does next, with its amounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Sale {
        card_index: u64,
        amount_minor: i64,
    },
    Load {
        card_index: u64,
        amount_minor: i64,
    },
    Hold {
        card_index: u64,
        amount_minor: i64,
    },
    /// Capture the oldest of the terminal's open holds for [`capture_amount`] of it (drawn
    /// with `discount_draw`); a sale of `amount_minor` on `card_index` when it has none.
    Capture {
        card_index: u64,
        amount_minor: i64,
        discount_draw: u64,
    },
    Balance {
        card_index: u64,
    },
}

/// Weights of the actions: sale, load, hold, capture, balance.
const ACTION_WEIGHTS: [u64; 5] = [45, 20, 15, 10, 10];

/// The next action of a load terminal over `cards` cards.
pub fn next_action(rng: &mut XorShift, cards: u64) -> Action {
    let total: u64 = ACTION_WEIGHTS.iter().sum();
    let mut pick = rng.below(total);
    let kind = ACTION_WEIGHTS
        .iter()
        .position(|&w| {
            if pick < w {
                true
            } else {
                pick -= w;
                false
            }
        })
        .expect("the pick is below the total");
    let card_index = rng.below(cards);
    let debit = |rng: &mut XorShift| rng.in_range(DEBIT_MIN_MINOR, DEBIT_MAX_MINOR) as i64;
    match kind {
        0 if rng.below(DECLINED_SALE_ONE_IN) == 0 => Action::Sale { card_index, amount_minor: DECLINED_SALE_MINOR },
        0 => Action::Sale { card_index, amount_minor: debit(rng) },
        1 => Action::Load { card_index, amount_minor: rng.in_range(LOAD_MIN_YUAN, LOAD_MAX_YUAN) as i64 * 100 },
        2 => Action::Hold { card_index, amount_minor: debit(rng) },
        3 => Action::Capture { card_index, amount_minor: debit(rng), discount_draw: rng.next_u64() },
        _ => Action::Balance { card_index },
    }
}

/// The final amount of a capture of a hold of `hold_minor`: the held amount or up to a tenth
/// less (never below 1 fen), chosen by `draw`. Never more than the hold, so a capture of an
/// open hold is always approved and its outcome tells about the switch, not about balances.
pub fn capture_amount(hold_minor: i64, draw: u64) -> i64 {
    let room = (hold_minor / 10).max(0) as u64 + 1;
    (hold_minor - (draw % room) as i64).max(1)
}

/// Whether a load terminal retransmits a few answered requests after a restart, to check the
/// answer is still the original one (T8, after a crash and from disk), and which ones.
pub fn probe_count(rng: &mut XorShift) -> usize {
    // One restart in four, up to three requests.
    if rng.below(4) == 0 {
        rng.in_range(1, 3) as usize
    } else {
        0
    }
}

/// Whether a new request goes out twice back to back (the second copy flagged RETRANSMIT)
/// while the first is still outstanding: both copies must get the same answer (SPEC §8,
/// "in flight").
pub fn send_twice(rng: &mut XorShift) -> bool {
    rng.below(64) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kill_plan_is_the_seeds_and_stays_in_bounds() {
        let plan = kill_plan(42, 1_000);
        assert_eq!(plan.len(), 1_000);
        assert_eq!(plan, kill_plan(42, 1_000), "same seed, same plan");
        assert_ne!(plan, kill_plan(43, 1_000), "another seed, another plan");
        // A shorter run is the start of a longer one.
        assert_eq!(kill_plan(42, 10)[..], plan[..10]);
        let (mut start, mut delay, mut responses) = (0, 0, 0);
        for point in &plan {
            match *point {
                KillPoint::DuringStart { delay_ms } => {
                    assert!(delay_ms <= MAX_START_KILL_DELAY_MS);
                    start += 1;
                }
                KillPoint::AfterDelay { delay_ms } => {
                    assert!(delay_ms <= MAX_KILL_DELAY_MS);
                    delay += 1;
                }
                KillPoint::AfterResponses { responses: n } => {
                    assert!((1..=MAX_KILL_RESPONSES).contains(&n));
                    responses += 1;
                }
            }
        }
        // Roughly 1 : 4 : 4.
        assert!((60..=170).contains(&start), "{start}");
        assert!((380..=520).contains(&delay), "{delay}");
        assert!((380..=520).contains(&responses), "{responses}");
        // Both ends of the delays occur: kills right away and late ones.
        assert!(plan.iter().any(|p| matches!(p, KillPoint::AfterDelay { delay_ms } if *delay_ms < 15)));
        assert!(plan.iter().any(|p| matches!(p, KillPoint::AfterDelay { delay_ms } if *delay_ms > 285)));
        assert!(kill_plan(7, 0).is_empty());
    }

    #[test]
    fn resolutions_are_a_function_of_seed_and_request_and_both_occur() {
        let mut retransmits = 0;
        for stan in 1..=1_000 {
            let choice = resolution(9, 1_001, stan, 0);
            assert_eq!(choice, resolution(9, 1_001, stan, 0));
            if choice == Resolution::Retransmit {
                retransmits += 1;
            }
        }
        assert!((400..=600).contains(&retransmits), "{retransmits}");
        // A later attempt, another terminal or another seed may choose differently.
        let differs = |f: &dyn Fn(u32) -> Resolution| (1..=64).any(|stan| f(stan) != resolution(9, 1_001, stan, 0));
        assert!(differs(&|stan| resolution(9, 1_001, stan, 1)));
        assert!(differs(&|stan| resolution(9, 1_002, stan, 0)));
        assert!(differs(&|stan| resolution(10, 1_001, stan, 0)));
    }

    #[test]
    fn actions_cover_the_mix_with_valid_amounts() {
        let mut rng = terminal_rng(5, 3);
        let mut counts = [0u32; 5];
        let mut declined_sales = 0;
        for _ in 0..10_000 {
            match next_action(&mut rng, 200) {
                Action::Sale { card_index, amount_minor: DECLINED_SALE_MINOR } => {
                    assert!(card_index < 200);
                    declined_sales += 1;
                    counts[0] += 1;
                }
                Action::Sale { card_index, amount_minor } | Action::Hold { card_index, amount_minor } => {
                    assert!(card_index < 200);
                    assert!((1..=2_000).contains(&amount_minor));
                    counts[0] += 1;
                }
                Action::Load { card_index, amount_minor } => {
                    assert!(card_index < 200);
                    assert!((100..=2_000).contains(&amount_minor) && amount_minor % 100 == 0);
                    counts[1] += 1;
                }
                Action::Capture { card_index, .. } => {
                    assert!(card_index < 200);
                    counts[3] += 1;
                }
                Action::Balance { card_index } => {
                    assert!(card_index < 200);
                    counts[4] += 1;
                }
            }
        }
        // One sale in 32 is meant to be declined.
        assert!((90..=200).contains(&declined_sales), "{declined_sales}");
        // Sales and holds 60 %, loads 20 %, captures 10 %, balances 10 %.
        assert!((5_600..=6_400).contains(&counts[0]), "{counts:?}");
        assert!((1_700..=2_300).contains(&counts[1]), "{counts:?}");
        assert!((800..=1_200).contains(&counts[3]), "{counts:?}");
        assert!((800..=1_200).contains(&counts[4]), "{counts:?}");
        // One card: always card 0.
        assert!(matches!(
            next_action(&mut rng, 1),
            Action::Sale { card_index: 0, .. }
                | Action::Load { card_index: 0, .. }
                | Action::Hold { card_index: 0, .. }
                | Action::Capture { card_index: 0, .. }
                | Action::Balance { card_index: 0 }
        ));
    }

    #[test]
    fn captures_take_the_hold_or_up_to_a_tenth_less() {
        for draw in 0..100 {
            assert_eq!(capture_amount(1, draw), 1);
            assert_eq!(capture_amount(9, draw), 9);
            let amount = capture_amount(1_000, draw);
            assert!((900..=1_000).contains(&amount), "{amount}");
        }
        assert_eq!(capture_amount(1_000, 0), 1_000);
        assert_eq!(capture_amount(1_000, 100), 900);
        assert_eq!(capture_amount(1_000, 101), 1_000);
    }

    #[test]
    fn windows_probes_and_copies_stay_small() {
        let windows: Vec<usize> = (0..100).map(|i| load_window(3, i)).collect();
        assert!(windows.iter().all(|w| (1..=MAX_LOAD_WINDOW).contains(w)));
        assert!(windows.contains(&1) && windows.contains(&MAX_LOAD_WINDOW));
        assert_eq!(windows, (0..100).map(|i| load_window(3, i)).collect::<Vec<_>>());
        let mut rng = terminal_rng(3, 0);
        let probes: Vec<usize> = (0..1_000).map(|_| probe_count(&mut rng)).collect();
        assert!(probes.iter().all(|&p| p <= 3));
        let probing = probes.iter().filter(|&&p| p > 0).count();
        assert!((180..=320).contains(&probing), "{probing}");
        let twice = (0..6_400).filter(|_| send_twice(&mut rng)).count();
        assert!((60..=150).contains(&twice), "{twice}");
    }
}
