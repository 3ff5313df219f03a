//! Fixed-rate schedules: the instants `anchor + k * interval` (k >= 1), read on
//! the replica's own clock. A run that overruns skips the instants it missed;
//! nothing runs before its instant.

use crate::time::{Span, Timestamp};

#[derive(Debug, Clone)]
pub struct FixedRate {
    anchor: Timestamp,
    interval: Span,
    /// The next k that may run.
    next_k: i64,
}

impl FixedRate {
    /// First instant one `interval` after `anchor`.
    pub fn new(anchor: Timestamp, interval: Span) -> Self {
        debug_assert!(interval.is_positive());
        FixedRate { anchor, interval: if interval.is_positive() { interval } else { Span::from_secs(1) }, next_k: 1 }
    }

    /// The first instant at or after `now` not yet taken, then marks it taken.
    pub fn next(&mut self, now: Timestamp) -> Timestamp {
        let since = now.since(self.anchor).as_micros();
        let step = self.interval.as_micros();
        // Smallest k with anchor + k * interval >= now.
        let k_now = if since <= 0 { 0 } else { (since + step - 1) / step };
        let k = k_now.max(self.next_k);
        self.next_k = k.saturating_add(1);
        self.anchor + Span::from_micros(k.saturating_mul(step))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_run_is_one_interval_in_and_overruns_skip() {
        let anchor = Timestamp::from_micros(400_000);
        let mut rate = FixedRate::new(anchor, Span::from_mins(1));
        assert_eq!(rate.next(anchor), anchor + Span::from_mins(1));
        // Finished quickly: the next instant follows.
        assert_eq!(rate.next(anchor + Span::from_mins(1) + Span::from_secs(3)), anchor + Span::from_mins(2));
        // Overran past 3m and 4m: both skipped.
        assert_eq!(rate.next(anchor + Span::from_mins(4) + Span::from_secs(1)), anchor + Span::from_mins(5));
        // Exactly on an instant: that instant runs.
        assert_eq!(rate.next(anchor + Span::from_mins(6)), anchor + Span::from_mins(6));
    }
}
