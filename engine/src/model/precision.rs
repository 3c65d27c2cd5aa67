//! Which of a model directory's graph sets runs: the exported graphs as they are (`exact`, held to
//! the official predictor's traces), or the fast set beside them (`fast`, docs/formats.md "Fast
//! set"), which trades a measured deviation for speed on the CPU.
//!
//! A separate setting rather than a second model directory, because the fast set is derived from
//! the exact graphs and is only valid next to them: the model, its tensors and its settings stay
//! one, and a session or a track cache tells the two apart by [`Precision`].

use std::str::FromStr;

use crate::error::Error;

/// The graph set a model is loaded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// The exported graphs: parity with the official predictor in float32.
    #[default]
    Exact,
    /// The fast set (`fast/manifest.json`): quantized graphs, faster on a CPU, whose deviation
    /// from exact `./bench.sh` sets against the official predictor's bfloat16 autocast's from its
    /// float32 (docs/precision.md: not within it yet, hence not the default).
    Fast,
}

impl Precision {
    /// Both, in the order a user is offered them.
    pub const ALL: [Precision; 2] = [Precision::Exact, Precision::Fast];

    /// The name the CLI, the plug-in and messages use.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Exact => "exact",
            Precision::Fast => "fast",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Precision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Precision, Error> {
        Precision::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| Error::UnknownPrecision { given: s.into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_others_are_refused_with_the_choices() {
        for p in Precision::ALL {
            assert_eq!(p.as_str().parse::<Precision>().unwrap(), p);
        }
        assert_eq!(" Fast ".parse::<Precision>().unwrap(), Precision::Fast);
        assert_eq!(Precision::default(), Precision::Exact);
        let message = "int8".parse::<Precision>().unwrap_err().to_string();
        assert!(message.contains("\"int8\""), "{message}");
        assert!(message.contains("exact or fast"), "{message}");
    }
}
