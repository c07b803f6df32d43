//! The request mix of a load run: `--mix sale=70,load=10,hold=10,capture=5,balance=5`.

use std::fmt;

use protocol::MsgType;

/// The request types a load run sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    Sale = 0,
    Load = 1,
    Hold = 2,
    Capture = 3,
    Balance = 4,
}

impl Kind {
    /// Every kind, in the order `--mix` prints them.
    pub const ALL: [Kind; 5] = [Kind::Sale, Kind::Load, Kind::Hold, Kind::Capture, Kind::Balance];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Sale => "sale",
            Kind::Load => "load",
            Kind::Hold => "hold",
            Kind::Capture => "capture",
            Kind::Balance => "balance",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The protocol request type (and so the reply type) of this kind.
    pub fn msg_type(self) -> MsgType {
        match self {
            Kind::Sale => MsgType::Sale,
            Kind::Load => MsgType::Load,
            Kind::Hold => MsgType::Hold,
            Kind::Capture => MsgType::Capture,
            Kind::Balance => MsgType::Balance,
        }
    }
}

/// Largest weight one type may have in a mix.
pub const MAX_WEIGHT: u32 = 1_000_000;

/// Relative weights of the request types; at least one is positive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; 5],
    /// `bounds[i]` is the sum of the weights of kinds `0..=i`.
    bounds: [u64; 5],
}

impl Default for Mix {
    /// Sales only.
    fn default() -> Mix {
        Mix::from_weights([100, 0, 0, 0, 0]).expect("a positive weight")
    }
}

impl Mix {
    /// A mix from weights in the order of [`Kind::ALL`]; `None` when all are 0.
    pub fn from_weights(weights: [u32; 5]) -> Option<Mix> {
        let mut bounds = [0u64; 5];
        let mut sum = 0u64;
        for (bound, &weight) in bounds.iter_mut().zip(&weights) {
            sum += u64::from(weight);
            *bound = sum;
        }
        (sum > 0).then_some(Mix { weights, bounds })
    }

    pub fn weight(&self, kind: Kind) -> u32 {
        self.weights[kind as usize]
    }

    /// Sum of the weights: [`Mix::pick`] takes a number below it.
    pub fn total(&self) -> u64 {
        self.bounds[4]
    }

    /// The kind for `draw` in `0..total()`: each kind for a share of the draws equal to its
    /// weight over the total.
    #[inline]
    pub fn pick(&self, draw: u64) -> Kind {
        debug_assert!(draw < self.total());
        match self.bounds.iter().position(|&bound| draw < bound) {
            Some(0) => Kind::Sale,
            Some(1) => Kind::Load,
            Some(2) => Kind::Hold,
            Some(3) => Kind::Capture,
            _ => Kind::Balance,
        }
    }

    /// The share of requests of `kind`, 0..=1.
    pub fn share(&self, kind: Kind) -> f64 {
        f64::from(self.weight(kind)) / self.total() as f64
    }
}

/// `sale=70,load=10`: the types with a positive weight, in the order of [`Kind::ALL`].
impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for kind in Kind::ALL {
            let weight = self.weight(kind);
            if weight > 0 {
                write!(f, "{}{}={weight}", if first { "" } else { "," }, kind.name())?;
                first = false;
            }
        }
        Ok(())
    }
}

/// Parses `TYPE=WEIGHT[,TYPE=WEIGHT...]` with types among sale, load, hold, capture, balance
/// and whole-number weights in `0..=MAX_WEIGHT`; types not named get 0. Refuses unknown or
/// repeated types, bad numbers and a mix whose weights are all 0.
pub fn parse_mix(text: &str) -> Result<Mix, String> {
    let names = Kind::ALL.map(Kind::name).join(", ");
    if text.trim().is_empty() {
        return Err(format!("empty mix (expected TYPE=WEIGHT,... with types {names}, e.g. sale=70,load=30)"));
    }
    let mut weights = [0u32; 5];
    let mut seen = [false; 5];
    for entry in text.split(',') {
        let entry = entry.trim();
        if entry.is_empty() {
            return Err(format!("empty entry in mix '{text}' (expected TYPE=WEIGHT,...)"));
        }
        let Some((name, number)) = entry.split_once('=') else {
            return Err(format!("mix entry '{entry}' is not TYPE=WEIGHT (e.g. sale=70)"));
        };
        let name = name.trim().to_ascii_lowercase();
        let Some(kind) = Kind::from_name(&name) else {
            return Err(format!("unknown request type '{}' in mix (expected one of {names})", name));
        };
        if seen[kind as usize] {
            return Err(format!("request type '{name}' appears twice in the mix"));
        }
        seen[kind as usize] = true;
        let number = number.trim();
        let weight = match number.parse::<u32>() {
            Ok(weight) if weight <= MAX_WEIGHT && number.bytes().all(|b| b.is_ascii_digit()) => weight,
            _ => {
                return Err(format!(
                    "bad weight '{number}' for {name} in mix (expected a whole number 0..={MAX_WEIGHT})"
                ))
            }
        };
        weights[kind as usize] = weight;
    }
    Mix::from_weights(weights)
        .ok_or_else(|| format!("every weight in mix '{text}' is 0 (at least one type needs a positive weight)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse_with_missing_types_as_zero() {
        let mix = parse_mix("sale=70,load=10,hold=10,capture=5,balance=5").unwrap();
        assert_eq!(mix.weights, [70, 10, 10, 5, 5]);
        assert_eq!(mix.total(), 100);
        assert_eq!(mix.to_string(), "sale=70,load=10,hold=10,capture=5,balance=5");
        let mix = parse_mix(" Balance = 3 , sale=1 ").unwrap();
        assert_eq!(mix.weights, [1, 0, 0, 0, 3]);
        assert_eq!(mix.to_string(), "sale=1,balance=3");
        assert_eq!(parse_mix("load=0,hold=2").unwrap().to_string(), "hold=2");
        assert_eq!(Mix::default().to_string(), "sale=100");
        assert_eq!(parse_mix("sale=100").unwrap(), Mix::default());
        assert_eq!(parse_mix(&format!("capture={MAX_WEIGHT}")).unwrap().weight(Kind::Capture), MAX_WEIGHT);
    }

    #[test]
    fn bad_mixes_say_what_is_wrong() {
        let cases = [
            ("", "empty mix"),
            ("  ", "empty mix"),
            ("sale=1,", "empty entry"),
            ("sale=1,,load=1", "empty entry"),
            ("sale", "is not TYPE=WEIGHT"),
            ("refund=5", "unknown request type 'refund'"),
            ("sale=70,void=1", "unknown request type 'void'"),
            ("sale=x", "bad weight 'x' for sale"),
            ("sale=-1", "bad weight '-1'"),
            ("sale=+1", "bad weight '+1'"),
            ("sale=1.5", "bad weight '1.5'"),
            ("sale=", "bad weight ''"),
            ("sale=1000001", "bad weight '1000001'"),
            ("sale=99999999999", "bad weight"),
            ("sale=1,sale=2", "appears twice"),
            ("sale=0", "every weight"),
            ("sale=0,load=0,hold=0,capture=0,balance=0", "every weight"),
        ];
        for (text, expected) in cases {
            let error = parse_mix(text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
        assert!(parse_mix("x=1").unwrap_err().contains("sale, load, hold, capture, balance"));
    }

    #[test]
    fn picks_follow_the_weights() {
        let mix = parse_mix("sale=70,load=10,hold=10,capture=5,balance=5").unwrap();
        let mut counts = [0u64; 5];
        for draw in 0..mix.total() {
            counts[mix.pick(draw) as usize] += 1;
        }
        assert_eq!(counts, [70, 10, 10, 5, 5]);
        let only = parse_mix("balance=1").unwrap();
        assert_eq!(only.pick(0), Kind::Balance);
        let gaps = parse_mix("load=1,capture=2").unwrap();
        assert_eq!([gaps.pick(0), gaps.pick(1), gaps.pick(2)], [Kind::Load, Kind::Capture, Kind::Capture]);
        assert!((mix.share(Kind::Sale) - 0.7).abs() < 1e-12);
        for kind in Kind::ALL {
            assert_eq!(Kind::from_name(kind.name()), Some(kind));
            assert_eq!(kind.msg_type().as_str(), kind.name());
        }
    }
}
