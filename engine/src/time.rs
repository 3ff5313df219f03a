//! Instants and spans: the engine's one representation of time.
//!
//! A [`Timestamp`] is a UTC instant with microsecond resolution (what PostgreSQL's
//! `timestamptz` keeps). A [`Span`] is a signed length of time with the same
//! resolution. Both are plain integers underneath, so they order, hash, store and
//! print the same way everywhere; conversions to `chrono` exist for the schedule
//! rules, which need calendars and time zones.

use std::fmt;
use std::ops::{Add, AddAssign, Neg, Sub, SubAssign};

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

const MICROS_PER_MILLI: i64 = 1_000;
const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_MINUTE: i64 = 60 * MICROS_PER_SECOND;
const MICROS_PER_HOUR: i64 = 60 * MICROS_PER_MINUTE;
const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;

/// A UTC instant, microseconds since the Unix epoch.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

/// A signed length of time in microseconds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Span(i64);

impl Timestamp {
    pub const UNIX_EPOCH: Timestamp = Timestamp(0);

    pub const fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// Parses RFC 3339 (`2026-01-05T09:00:00Z`).
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(text).ok().map(|dt| Self::from_chrono(dt.with_timezone(&Utc)))
    }

    pub fn from_chrono<Tz: TimeZone>(dt: DateTime<Tz>) -> Self {
        Timestamp(dt.with_timezone(&Utc).timestamp_micros())
    }

    pub fn to_chrono(self) -> DateTime<Utc> {
        // Every i64 of microseconds within ±262,000 years is representable; values
        // outside come only from corrupt data and clamp to the nearest end.
        DateTime::<Utc>::from_timestamp_micros(self.0).unwrap_or(if self.0 < 0 {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        })
    }

    /// Truncates to a multiple of `interval` since the epoch (the tick time rule).
    pub fn truncate(self, interval: Span) -> Self {
        if interval.0 <= 0 {
            return self;
        }
        Timestamp(self.0.div_euclid(interval.0) * interval.0)
    }

    pub fn checked_add(self, span: Span) -> Option<Self> {
        self.0.checked_add(span.0).map(Timestamp)
    }

    pub fn saturating_add(self, span: Span) -> Self {
        Timestamp(self.0.saturating_add(span.0))
    }

    pub fn saturating_sub(self, span: Span) -> Self {
        Timestamp(self.0.saturating_sub(span.0))
    }

    /// `self - earlier`, saturating.
    pub fn since(self, earlier: Timestamp) -> Span {
        Span(self.0.saturating_sub(earlier.0))
    }
}

impl Span {
    pub const ZERO: Span = Span(0);
    pub const MAX: Span = Span(i64::MAX);

    pub const fn from_micros(micros: i64) -> Self {
        Span(micros)
    }
    pub const fn from_millis(millis: i64) -> Self {
        Span(millis * MICROS_PER_MILLI)
    }
    pub const fn from_secs(secs: i64) -> Self {
        Span(secs * MICROS_PER_SECOND)
    }
    pub const fn from_mins(mins: i64) -> Self {
        Span(mins * MICROS_PER_MINUTE)
    }
    pub const fn from_hours(hours: i64) -> Self {
        Span(hours * MICROS_PER_HOUR)
    }
    pub const fn from_days(days: i64) -> Self {
        Span(days * MICROS_PER_DAY)
    }
    pub const fn as_micros(self) -> i64 {
        self.0
    }
    pub const fn as_millis(self) -> i64 {
        self.0 / MICROS_PER_MILLI
    }
    pub const fn as_secs(self) -> i64 {
        self.0 / MICROS_PER_SECOND
    }
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
    pub const fn is_positive(self) -> bool {
        self.0 > 0
    }
    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }
    pub fn abs(self) -> Span {
        Span(self.0.saturating_abs())
    }
    /// Multiplies by `num / den`, rounding toward zero (`0.95 * I` is `mul_ratio(19, 20)`).
    pub fn mul_ratio(self, num: i64, den: i64) -> Span {
        debug_assert!(den > 0);
        Span(((self.0 as i128 * num as i128) / den as i128) as i64)
    }
    pub fn saturating_mul(self, factor: i64) -> Span {
        Span(self.0.saturating_mul(factor))
    }
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_micros(self.0.max(0) as u64)
    }
    pub fn from_std(duration: std::time::Duration) -> Span {
        Span(i64::try_from(duration.as_micros()).unwrap_or(i64::MAX))
    }
    pub fn to_chrono(self) -> chrono::TimeDelta {
        chrono::TimeDelta::microseconds(self.0)
    }
}

impl Add<Span> for Timestamp {
    type Output = Timestamp;
    fn add(self, rhs: Span) -> Timestamp {
        self.saturating_add(rhs)
    }
}
impl AddAssign<Span> for Timestamp {
    fn add_assign(&mut self, rhs: Span) {
        *self = *self + rhs;
    }
}
impl Sub<Span> for Timestamp {
    type Output = Timestamp;
    fn sub(self, rhs: Span) -> Timestamp {
        self.saturating_sub(rhs)
    }
}
impl SubAssign<Span> for Timestamp {
    fn sub_assign(&mut self, rhs: Span) {
        *self = *self - rhs;
    }
}
impl Sub<Timestamp> for Timestamp {
    type Output = Span;
    fn sub(self, rhs: Timestamp) -> Span {
        self.since(rhs)
    }
}
impl Add for Span {
    type Output = Span;
    fn add(self, rhs: Span) -> Span {
        Span(self.0.saturating_add(rhs.0))
    }
}
impl Sub for Span {
    type Output = Span;
    fn sub(self, rhs: Span) -> Span {
        Span(self.0.saturating_sub(rhs.0))
    }
}
impl Neg for Span {
    type Output = Span;
    fn neg(self) -> Span {
        Span(self.0.saturating_neg())
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC, fractional seconds only when present.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dt = self.to_chrono();
        if self.0.rem_euclid(MICROS_PER_SECOND) == 0 {
            write!(f, "{}", dt.format("%Y-%m-%dT%H:%M:%SZ"))
        } else if self.0.rem_euclid(MICROS_PER_MILLI) == 0 {
            write!(f, "{}", dt.format("%Y-%m-%dT%H:%M:%S%.3fZ"))
        } else {
            write!(f, "{}", dt.format("%Y-%m-%dT%H:%M:%S%.6fZ"))
        }
    }
}
impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Span {
    /// Compact form in the scenario syntax: `1h30m`, `-40s`, `250ms`, `0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0");
        }
        if self.0 < 0 {
            f.write_str("-")?;
        }
        let mut rest = self.0.unsigned_abs();
        let units: [(u64, &str); 6] = [
            (MICROS_PER_DAY as u64, "d"),
            (MICROS_PER_HOUR as u64, "h"),
            (MICROS_PER_MINUTE as u64, "m"),
            (MICROS_PER_SECOND as u64, "s"),
            (MICROS_PER_MILLI as u64, "ms"),
            (1, "us"),
        ];
        for (size, name) in units {
            if rest >= size {
                write!(f, "{}{}", rest / size, name)?;
                rest %= size;
            }
        }
        Ok(())
    }
}
impl fmt::Debug for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_is_epoch_aligned() {
        let t = Timestamp::parse_rfc3339("2026-01-05T09:00:59.999Z").unwrap();
        assert_eq!(t.truncate(Span::from_mins(1)).to_string(), "2026-01-05T09:00:00Z");
        let before_epoch = Timestamp::from_micros(-1);
        assert_eq!(before_epoch.truncate(Span::from_secs(1)).as_micros(), -1_000_000);
    }

    #[test]
    fn display_round_trips() {
        for text in ["2026-01-05T09:00:00Z", "2026-01-05T09:00:00.250Z", "2026-01-05T09:00:00.000001Z"] {
            assert_eq!(Timestamp::parse_rfc3339(text).unwrap().to_string(), text);
        }
        assert_eq!(Span::from_mins(90).to_string(), "1h30m");
        assert_eq!((-Span::from_secs(40)).to_string(), "-40s");
        assert_eq!(Span::ZERO.to_string(), "0");
    }

    #[test]
    fn mul_ratio_rounds_toward_zero() {
        assert_eq!(Span::from_hours(1).mul_ratio(19, 20), Span::from_mins(57));
    }
}
