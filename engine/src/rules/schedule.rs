//! Cron schedules with an optional `CRON_TZ=` zone: workspace autostart (weekly)
//! and user quiet hours (daily), and the autostart search of lifecycle.md §4.
//!
//! Parsing is strict, because stored schedules are untrusted: an optional
//! `CRON_TZ=<IANA zone>` first (default UTC), then exactly five fields
//! `minute hour day-of-month month day-of-week`. Minute and hour take numbers,
//! `*`, lists, ranges and steps; day-of-month and month must be `*`; the weekly
//! day-of-week also takes day names (`mon`..`sun`), the daily one must be `*`.
//! croner's extensions (`L`, `W`, `#`, `?`, `@daily`, seconds, years) are
//! refused, so every accepted schedule fires at least once a week and every
//! search below ends after a bounded number of steps.
//!
//! Evaluation is croner's, in the schedule's zone, at minute resolution, with
//! its daylight-saving behaviour (tested below):
//! - **spring-forward gap**: a fixed time (single minute and hour) that does not
//!   exist that day fires once, at the first instant after the gap (02:30 on
//!   2026-03-08 in America/Chicago fires at 03:00 CDT); an interval schedule
//!   (`*/30 2 * * *`) simply has no activations inside the gap;
//! - **fall-back overlap**: a fixed time that occurs twice fires once, at the
//!   earlier instant (01:30 CDT on 2026-11-01, not 01:30 CST); an interval
//!   schedule fires at both instants (`*/30 1 * * *` fires four times that day);
//! - other local times keep their wall-clock time across a change (a daily 09:00
//!   Chicago schedule is 15:00 UTC before 2026-03-08 and 14:00 UTC after).

use std::str::FromStr;

use chrono::{Datelike, NaiveDateTime, Offset, TimeZone};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

use crate::limits::{AUTOSTART_SEARCH_HORIZON, AUTOSTART_SEARCH_STEPS_MAX};
use crate::model::{Weekday, WeekdaySet};
use crate::time::{Span, Timestamp};

/// `next_after` answers `None` past this far ahead (its documented bound: every
/// schedule this module accepts fires within a week, so this is only reached on
/// instants at the end of the representable range).
const NEXT_AFTER_HORIZON: Span = Span::from_days(366);

/// Instants outside `[year 1, year 4000)` are not searched (croner stops at
/// year 5000, chrono a little further): `next_after` answers `None` there.
/// Only corrupt data reaches them.
const SEARCH_INSTANT_MIN: Timestamp = Timestamp::from_micros(-62_135_596_800_000_000);
const SEARCH_INSTANT_MAX: Timestamp = Timestamp::from_micros(64_060_588_800_000_000);

/// Why a schedule string is not a valid schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("empty schedule")]
    Empty,
    #[error("unknown time zone `{0}`")]
    UnknownZone(String),
    #[error("expected 5 cron fields, found {0}")]
    FieldCount(usize),
    #[error("{field} must be `*` in a {kind} schedule, found `{value}`")]
    MustBeStar { field: &'static str, kind: &'static str, value: String },
    #[error("invalid cron `{cron}`: {detail}")]
    Cron { cron: String, detail: String },
}

/// Which schedule shape a string must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Autostart: any minute, hour and day of week.
    Weekly,
    /// Quiet hours: any minute and hour, every day.
    Daily,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Weekly => "weekly",
            Kind::Daily => "daily",
        }
    }
}

/// A parsed schedule: a 5-field cron evaluated in a time zone (UTC by default).
#[derive(Debug, Clone)]
pub struct CronSchedule {
    text: String,
    zone: Tz,
    cron: Cron,
}

impl CronSchedule {
    /// An autostart schedule: `[CRON_TZ=<zone> ]min hour * * dow`.
    pub fn parse_weekly(text: &str) -> Result<CronSchedule, ScheduleError> {
        parse(text, Kind::Weekly)
    }

    /// A quiet-hours schedule: `[CRON_TZ=<zone> ]min hour * * *`.
    pub fn parse_daily(text: &str) -> Result<CronSchedule, ScheduleError> {
        parse(text, Kind::Daily)
    }

    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// The text it was parsed from.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The first activation strictly after `at` (minute resolution, in the
    /// schedule's zone). `None` only if none exists within a year.
    pub fn next_after(&self, at: Timestamp) -> Option<Timestamp> {
        if !(SEARCH_INSTANT_MIN..SEARCH_INSTANT_MAX).contains(&at) {
            return None;
        }
        let start = at.to_chrono().with_timezone(&self.zone);
        let next = Timestamp::from_chrono(self.cron.find_next_occurrence(&start, false).ok()?);
        // croner steps off `at`'s whole second, so the answer is strictly after
        // `at` whatever its fraction; the check keeps that a stated guarantee.
        (next > at && next <= at + NEXT_AFTER_HORIZON).then_some(next)
    }

    /// The weekday of `at` in the schedule's zone (in UTC at the very ends of
    /// the representable range, where local time does not exist).
    pub fn weekday_of(&self, at: Timestamp) -> Weekday {
        let local = local_datetime(self.zone, at).unwrap_or_else(|| at.to_chrono().naive_utc());
        Weekday::from_chrono(local.weekday())
    }
}

/// The wall-clock time of `at` in `zone`; `None` where it leaves chrono's
/// range (only instants within a day of its ends, from corrupt data).
/// chrono's own `DateTime<Tz>` accessors panic there.
pub(crate) fn local_datetime(zone: Tz, at: Timestamp) -> Option<NaiveDateTime> {
    let utc = at.to_chrono().naive_utc();
    utc.checked_add_offset(zone.offset_from_utc_datetime(&utc).fix())
}

/// `next_allowed_autostart(at)` of lifecycle.md §4 rule 2: the first activation
/// after `at` whose weekday (in the schedule's zone) is in `days`; the last one
/// tested is the first at or past `at + 7d`. `None` when none is allowed.
///
/// At most [`AUTOSTART_SEARCH_STEPS_MAX`] activations are tested. A schedule
/// firing every minute has 10,080 activations in a week (60 more across a
/// fall-back overlap), but an allowed day is always met within the first
/// 6 days and 1 minute of them, so the cap never changes an answer; it bounds
/// the work.
pub fn next_allowed_autostart(schedule: &CronSchedule, at: Timestamp, days: WeekdaySet) -> Option<Timestamp> {
    if days.is_empty() {
        return None;
    }
    let horizon = at + AUTOSTART_SEARCH_HORIZON;
    let mut cursor = at;
    for _ in 0..AUTOSTART_SEARCH_STEPS_MAX {
        let activation = schedule.next_after(cursor)?;
        if days.contains(schedule.weekday_of(activation)) {
            return Some(activation);
        }
        if activation >= horizon {
            return None;
        }
        cursor = activation;
    }
    None
}

fn parse(text: &str, kind: Kind) -> Result<CronSchedule, ScheduleError> {
    let mut fields: Vec<&str> = text.split_whitespace().collect();
    let Some(first) = fields.first() else {
        return Err(ScheduleError::Empty);
    };
    let zone = match first.strip_prefix("CRON_TZ=") {
        Some(name) => {
            let zone = Tz::from_str(name).map_err(|_| ScheduleError::UnknownZone(name.to_owned()))?;
            fields.remove(0);
            zone
        }
        None => Tz::UTC,
    };
    let [minute, hour, day_of_month, month, day_of_week] = fields[..] else {
        return Err(ScheduleError::FieldCount(fields.len()));
    };
    let cron_text = fields.join(" ");
    let bad_field = |field: &str, value: &str| ScheduleError::Cron {
        cron: cron_text.clone(),
        detail: format!("unsupported {field} `{value}`"),
    };
    for (field, value) in [("minute", minute), ("hour", hour)] {
        if !value.chars().all(is_numeric_field_char) {
            return Err(bad_field(field, value));
        }
    }
    for (field, value) in [("day-of-month", day_of_month), ("month", month)] {
        must_be_star(field, kind, value)?;
    }
    match kind {
        Kind::Weekly => {
            if !day_of_week_is_supported(day_of_week) {
                return Err(bad_field("day-of-week", day_of_week));
            }
        }
        Kind::Daily => must_be_star("day-of-week", kind, day_of_week)?,
    }
    let cron =
        CronParser::builder().seconds(Seconds::Disallowed).year(Year::Disallowed).build().parse(&cron_text).map_err(
            |error| ScheduleError::Cron { cron: cron_text.clone(), detail: error_detail(&error.to_string()) },
        )?;
    Ok(CronSchedule { text: text.to_owned(), zone, cron })
}

fn must_be_star(field: &'static str, kind: Kind, value: &str) -> Result<(), ScheduleError> {
    if value == "*" {
        Ok(())
    } else {
        Err(ScheduleError::MustBeStar { field, kind: kind.name(), value: value.to_owned() })
    }
}

fn is_numeric_field_char(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, '*' | ',' | '-' | '/')
}

/// Numbers, `*`, lists, ranges and steps, and three-letter day names.
fn day_of_week_is_supported(value: &str) -> bool {
    const NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    !value.is_empty()
        && value.split([',', '-', '/']).all(|token| {
            token == "*"
                || (!token.is_empty() && token.chars().all(|c| c.is_ascii_digit()))
                || NAMES.iter().any(|name| name.eq_ignore_ascii_case(token))
        })
}

/// croner's message in this project's style: lowercase first letter, no period.
fn error_detail(message: &str) -> String {
    let trimmed = message.trim().trim_end_matches('.');
    let mut chars = trimmed.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::fixtures::{days, ts};

    fn weekly(text: &str) -> CronSchedule {
        CronSchedule::parse_weekly(text).unwrap()
    }

    fn next(text: &str, at: &str) -> Timestamp {
        weekly(text).next_after(ts(at)).unwrap()
    }

    #[test]
    fn parses_zone_and_defaults_to_utc() {
        assert_eq!(weekly("0 9 * * 1-5").zone(), Tz::UTC);
        let chicago = weekly("CRON_TZ=America/Chicago 0 20 * * *");
        assert_eq!(chicago.zone(), chrono_tz::America::Chicago);
        assert_eq!(chicago.text(), "CRON_TZ=America/Chicago 0 20 * * *");
        assert_eq!(CronSchedule::parse_daily("CRON_TZ=UTC 0 0 * * *").unwrap().zone(), Tz::UTC);
        assert!(CronSchedule::parse_weekly("30 9 * * MON-fri").is_ok());
        assert!(CronSchedule::parse_weekly("*/15 8-18 * * 1,3,5").is_ok());
    }

    #[test]
    fn rejects_what_is_not_a_weekly_schedule() {
        let err = |text: &str| CronSchedule::parse_weekly(text).unwrap_err();
        assert_eq!(err(""), ScheduleError::Empty);
        assert_eq!(err("   "), ScheduleError::Empty);
        assert_eq!(err("CRON_TZ=Mars/Base 0 9 * * *"), ScheduleError::UnknownZone("Mars/Base".into()));
        assert_eq!(err("CRON_TZ= 0 9 * * *"), ScheduleError::UnknownZone(String::new()));
        assert_eq!(err("CRON_TZ=UTC"), ScheduleError::FieldCount(0));
        assert_eq!(err("0 9 * *"), ScheduleError::FieldCount(4));
        assert_eq!(err("0 0 9 * * *"), ScheduleError::FieldCount(6));
        assert_eq!(err("@daily"), ScheduleError::FieldCount(1));
        assert_eq!(
            err("0 9 1 * *"),
            ScheduleError::MustBeStar { field: "day-of-month", kind: "weekly", value: "1".into() }
        );
        assert_eq!(err("0 9 * 1 *"), ScheduleError::MustBeStar { field: "month", kind: "weekly", value: "1".into() });
        for text in ["0 9 * * 5#2", "0 9 * * 5L", "0 9 * * ?", "L 9 * * *", "0 24 * * *", "60 9 * * *", "0 9 * * 8"] {
            assert!(matches!(err(text), ScheduleError::Cron { .. }), "{text}: {:?}", err(text));
        }
        let message = err("0 25 * * *").to_string();
        assert!(message.starts_with("invalid cron `0 25 * * *`: "), "{message}");
        assert!(!message.ends_with('.'), "{message}");
    }

    #[test]
    fn rejects_what_is_not_a_daily_schedule() {
        let err = |text: &str| CronSchedule::parse_daily(text).unwrap_err();
        assert_eq!(
            err("0 0 * * 1"),
            ScheduleError::MustBeStar { field: "day-of-week", kind: "daily", value: "1".into() }
        );
        assert_eq!(err("CRON_TZ=Nowhere 0 0 * * *"), ScheduleError::UnknownZone("Nowhere".into()));
        assert_eq!(err("0 0 * * 1").to_string(), "day-of-week must be `*` in a daily schedule, found `1`");
    }

    #[test]
    fn next_after_is_strictly_after_at_minute_resolution() {
        assert_eq!(next("0 9 * * *", "2026-01-05T08:59:00Z"), ts("2026-01-05T09:00:00Z"));
        assert_eq!(next("0 9 * * *", "2026-01-05T08:59:59.999999Z"), ts("2026-01-05T09:00:00Z"));
        assert_eq!(next("0 9 * * *", "2026-01-05T09:00:00Z"), ts("2026-01-06T09:00:00Z"));
        assert_eq!(next("0 9 * * *", "2026-01-05T09:00:00.000001Z"), ts("2026-01-06T09:00:00Z"));
        assert_eq!(next("* * * * *", "2026-01-05T09:00:30Z"), ts("2026-01-05T09:01:00Z"));
        assert_eq!(next("0 * * * *", "2026-01-05T10:20:00Z"), ts("2026-01-05T11:00:00Z"));
        // Day names, weekday numbers 0 and 7 both Sunday.
        assert_eq!(next("0 9 * * sun", "2026-01-05T00:00:00Z"), ts("2026-01-11T09:00:00Z"));
        assert_eq!(next("0 9 * * 7", "2026-01-05T00:00:00Z"), ts("2026-01-11T09:00:00Z"));
    }

    #[test]
    fn next_after_on_absurd_instants_is_none() {
        let schedule = weekly("0 9 * * *");
        assert_eq!(schedule.next_after(Timestamp::from_micros(i64::MAX)), None);
        assert_eq!(schedule.next_after(Timestamp::from_micros(i64::MIN)), None);
        // The weekday of an instant whose local time chrono cannot hold is
        // still an answer (read in UTC), not a panic.
        for zoned in [weekly("CRON_TZ=Europe/Berlin 0 9 * * *"), weekly("CRON_TZ=America/Chicago 0 9 * * *")] {
            for at in [i64::MIN, i64::MAX] {
                let at = Timestamp::from_micros(at);
                assert_eq!(zoned.weekday_of(at), schedule.weekday_of(at));
                assert_eq!(zoned.next_after(at), None);
            }
        }
    }

    #[test]
    fn dst_daily_schedule_keeps_its_local_time() {
        // America/Chicago springs forward on Sunday 2026-03-08 (CST -6 -> CDT -5).
        let text = "CRON_TZ=America/Chicago 0 9 * * *";
        assert_eq!(next(text, "2026-03-07T12:00:00Z"), ts("2026-03-07T15:00:00Z"));
        assert_eq!(next(text, "2026-03-07T15:00:00Z"), ts("2026-03-08T14:00:00Z"));
        assert_eq!(next(text, "2026-03-08T14:00:00Z"), ts("2026-03-09T14:00:00Z"));
        // And falls back on Sunday 2026-11-01.
        assert_eq!(next(text, "2026-10-31T14:00:00Z"), ts("2026-11-01T15:00:00Z"));
    }

    #[test]
    fn dst_spring_forward_gap_fixed_time_fires_after_the_gap() {
        // 02:30 does not exist on 2026-03-08 in Chicago (02:00 CST -> 03:00 CDT).
        let text = "CRON_TZ=America/Chicago 30 2 * * *";
        assert_eq!(next(text, "2026-03-07T12:00:00Z"), ts("2026-03-08T08:00:00Z")); // 03:00 CDT
        assert_eq!(next(text, "2026-03-08T08:00:00Z"), ts("2026-03-09T07:30:00Z"));
        // 02:30 CDT
    }

    #[test]
    fn dst_spring_forward_gap_interval_skips_the_gap() {
        let text = "CRON_TZ=America/Chicago */30 2 * * *";
        // 01:59 CST on the 8th; the next 2:xx that exists is the next day's.
        assert_eq!(next(text, "2026-03-08T07:59:00Z"), ts("2026-03-09T07:00:00Z"));
    }

    #[test]
    fn dst_fall_back_overlap() {
        // 01:00-02:00 happens twice on 2026-11-01 in Chicago: CDT (06:xx UTC), then CST (07:xx UTC).
        let fixed = "CRON_TZ=America/Chicago 30 1 * * *";
        assert_eq!(next(fixed, "2026-11-01T05:00:00Z"), ts("2026-11-01T06:30:00Z"));
        assert_eq!(next(fixed, "2026-11-01T06:30:00Z"), ts("2026-11-02T07:30:00Z"));
        let interval = "CRON_TZ=America/Chicago */30 1 * * *";
        let schedule = weekly(interval);
        let mut at = ts("2026-11-01T05:00:00Z");
        let mut seen = Vec::new();
        for _ in 0..5 {
            at = schedule.next_after(at).unwrap();
            seen.push(at);
        }
        let expected = ["06:00", "06:30", "07:00", "07:30"].map(|t| ts(&format!("2026-11-01T{t}:00Z")));
        assert_eq!(seen[..4], expected);
        assert_eq!(seen[4], ts("2026-11-02T07:00:00Z"));
    }

    #[test]
    fn weekday_is_read_in_the_schedule_zone() {
        let chicago = weekly("CRON_TZ=America/Chicago 0 20 * * *");
        // Fri 2021-01-01 20:00 in Chicago is Saturday 02:00 UTC.
        assert_eq!(chicago.weekday_of(ts("2021-01-02T02:00:00Z")), Weekday::Fri);
        assert_eq!(weekly("0 20 * * *").weekday_of(ts("2021-01-02T02:00:00Z")), Weekday::Sat);
    }

    #[test]
    fn next_allowed_autostart_skips_disallowed_days() {
        let weekdays: WeekdaySet =
            [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri].into_iter().collect();
        let schedule = weekly("CRON_TZ=UTC 0 9 * * *");
        assert_eq!(
            next_allowed_autostart(&schedule, ts("2026-01-09T18:00:00Z"), weekdays),
            Some(ts("2026-01-12T09:00:00Z"))
        );
        assert_eq!(next_allowed_autostart(&schedule, ts("2026-01-09T18:00:00Z"), WeekdaySet::EMPTY), None);
    }

    #[test]
    fn next_allowed_autostart_tests_the_first_activation_at_or_past_a_week() {
        // Mondays only, asked on a Monday at 09:00 sharp: the next Monday 09:00
        // is exactly at + 7d, the last activation tested, and allowed.
        let mondays: WeekdaySet = [Weekday::Mon].into_iter().collect();
        let daily = weekly("0 9 * * *");
        let at = ts("2026-01-05T09:00:00Z");
        assert_eq!(next_allowed_autostart(&daily, at, mondays), Some(at + days(7)));
        // Only Monday activations, only Tuesday allowed: the search ends at the
        // first activation at or past at + 7d and finds nothing.
        let only_monday = weekly("0 9 * * 1");
        let tuesday: WeekdaySet = [Weekday::Tue].into_iter().collect();
        assert_eq!(next_allowed_autostart(&only_monday, at, tuesday), None);
        // Every minute, allowed only the day six days out: found without hitting the cap.
        let every_minute = weekly("* * * * *");
        let sunday: WeekdaySet = [Weekday::Sun].into_iter().collect();
        assert_eq!(
            next_allowed_autostart(&every_minute, ts("2026-01-05T00:00:00Z"), sunday),
            Some(ts("2026-01-11T00:00:00Z"))
        );
        assert_eq!(
            next_allowed_autostart(&every_minute, ts("2026-01-05T00:00:30Z"), WeekdaySet::ALL),
            Some(ts("2026-01-05T00:01:00Z"))
        );
    }
}
