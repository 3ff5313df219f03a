//! Clocks: the wall clock for production, and a monotonic clock anchored at a
//! chosen instant for the simulator and tests (madsim's time, or tokio's paused
//! test time, drives it).
//!
//! These two types are the only code allowed to read a real clock.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::time::{Span, Timestamp};

/// The engine's one view of time.
pub trait Clock: Send + Sync + 'static {
    /// The current instant as this replica reads it.
    fn now(&self) -> Timestamp;

    /// Completes once [`Clock::now`] reads at least `at`. The target is turned into
    /// a wait when this is called: a later skew change does not move it.
    fn sleep_until(&self, at: Timestamp) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
}

pub type SharedClock = Arc<dyn Clock>;

/// Production: the system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the production clock edge
    fn now(&self) -> Timestamp {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timestamp::from_micros(i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX))
    }

    #[allow(clippy::disallowed_methods)] // the production clock edge
    fn sleep_until(&self, at: Timestamp) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let wait = at.since(self.now());
        Box::pin(tokio::time::sleep(wait.to_std()))
    }
}

/// A clock that reads `anchor` at its creation and then advances with the
/// runtime's monotonic time, plus an adjustable skew.
///
/// Under madsim the monotonic time is simulated, so this is a replica's clock in
/// the simulator (the anchor is the scenario's `start`); under tokio's paused
/// test time it makes driver tests instant and repeatable.
#[derive(Debug)]
pub struct MonotonicClock {
    anchor: Timestamp,
    origin: tokio::time::Instant,
    skew_micros: AtomicI64,
}

impl MonotonicClock {
    #[allow(clippy::disallowed_methods)] // the simulated clock edge
    pub fn new(anchor: Timestamp) -> Self {
        MonotonicClock { anchor, origin: tokio::time::Instant::now(), skew_micros: AtomicI64::new(0) }
    }

    /// A clock that reads `anchor + elapsed + skew`, sharing `origin` with others
    /// (replicas of one simulated world share the origin, differ by skew).
    pub fn with_origin(anchor: Timestamp, origin: tokio::time::Instant, skew: Span) -> Self {
        MonotonicClock { anchor, origin, skew_micros: AtomicI64::new(skew.as_micros()) }
    }

    /// A clock reading the same true time as this one, with its own skew.
    pub fn sibling(&self, skew: Span) -> MonotonicClock {
        MonotonicClock::with_origin(self.anchor, self.origin, skew)
    }

    pub fn skew(&self) -> Span {
        Span::from_micros(self.skew_micros.load(Ordering::SeqCst))
    }

    pub fn set_skew(&self, skew: Span) {
        self.skew_micros.store(skew.as_micros(), Ordering::SeqCst);
    }

    /// True time (no skew).
    #[allow(clippy::disallowed_methods)] // the simulated clock edge
    pub fn true_now(&self) -> Timestamp {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.origin);
        self.anchor + Span::from_std(elapsed)
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Timestamp {
        self.true_now() + self.skew()
    }

    #[allow(clippy::disallowed_methods)] // the simulated clock edge
    fn sleep_until(&self, at: Timestamp) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        // Reading `at` on this clock means true time `at - skew`.
        let true_target = at - self.skew();
        let offset = true_target.since(self.anchor);
        let deadline = if offset.is_negative() { self.origin } else { self.origin + offset.to_std() };
        Box::pin(tokio::time::sleep_until(deadline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn monotonic_clock_follows_paused_time_and_skew() {
        let start = Timestamp::parse_rfc3339("2026-01-05T00:00:00Z").unwrap();
        let clock = MonotonicClock::new(start);
        assert_eq!(clock.now(), start);
        clock.sleep_until(start + Span::from_mins(5)).await;
        assert_eq!(clock.now(), start + Span::from_mins(5));
        clock.set_skew(Span::from_secs(2));
        assert_eq!(clock.now(), start + Span::from_mins(5) + Span::from_secs(2));
        // A skewed clock wakes when it reads the target: 2s earlier in true time.
        clock.sleep_until(start + Span::from_mins(6)).await;
        assert_eq!(clock.true_now(), start + Span::from_mins(6) - Span::from_secs(2));
    }
}
