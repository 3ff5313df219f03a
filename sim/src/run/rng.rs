//! Seeded randomness of a run: one ChaCha stream per purpose, derived from the
//! seed, so adding draws for one purpose never shifts another's.

use std::collections::BTreeMap;

use engine::hash::fnv1_64;
use engine::time::Span;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::scenario::DurationRange;

#[derive(Debug)]
pub(crate) struct Rngs {
    seed: u64,
    streams: BTreeMap<String, ChaCha8Rng>,
}

impl Rngs {
    pub fn new(seed: u64) -> Rngs {
        Rngs { seed, streams: BTreeMap::new() }
    }

    fn stream(&mut self, purpose: &str) -> &mut ChaCha8Rng {
        let seed = self.seed;
        self.streams
            .entry(purpose.to_owned())
            .or_insert_with(|| ChaCha8Rng::seed_from_u64(seed ^ fnv1_64(purpose.as_bytes())))
    }

    /// A duration drawn uniformly from `[min, max]` (microsecond resolution).
    pub fn span(&mut self, purpose: &str, range: DurationRange) -> Span {
        let (min, max) = (range.min.as_micros(), range.max.as_micros());
        if max <= min {
            return range.min;
        }
        Span::from_micros(self.stream(purpose).random_range(min..=max))
    }

    /// A duration in `[0, max)`.
    pub fn below(&mut self, purpose: &str, max: Span) -> Span {
        if max.as_micros() <= 0 {
            return Span::ZERO;
        }
        Span::from_micros(self.stream(purpose).random_range(0..max.as_micros()))
    }

    /// True with probability `rate` (no draw when the rate is 0 or 1, so a
    /// knob that is off leaves the stream alone).
    pub fn chance(&mut self, purpose: &str, rate: f64) -> bool {
        if rate <= 0.0 {
            return false;
        }
        if rate >= 1.0 {
            return true;
        }
        self.stream(purpose).random_bool(rate)
    }

    /// An exponentially distributed wait with `per_hour` events an hour.
    pub fn exponential(&mut self, purpose: &str, per_hour: f64) -> Option<Span> {
        if per_hour <= 0.0 {
            return None;
        }
        let u: f64 = self.stream(purpose).random_range(f64::MIN_POSITIVE..1.0);
        let hours = -u.ln() / per_hour;
        Some(Span::from_micros((hours * 3_600_000_000.0).min(i64::MAX as f64 / 2.0) as i64))
    }

    /// A signed skew drawn from `[min, max]` with a random sign.
    pub fn skew(&mut self, purpose: &str, range: DurationRange) -> Span {
        let magnitude = self.span(purpose, range);
        if self.stream(purpose).random_bool(0.5) {
            -magnitude
        } else {
            magnitude
        }
    }
}
