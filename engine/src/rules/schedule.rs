//! Cron schedules with an optional `CRON_TZ=` zone: workspace autostart (weekly)
//! and user quiet hours (daily), and the autostart search of lifecycle.md §4.

use chrono_tz::Tz;

use crate::model::{Weekday, WeekdaySet};
use crate::time::Timestamp;

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

/// A parsed schedule: a 5-field cron evaluated in a time zone (UTC by default).
#[derive(Debug, Clone)]
pub struct CronSchedule {
    _private: (),
}

impl CronSchedule {
    /// An autostart schedule: `[CRON_TZ=<zone> ]min hour * * dow`.
    pub fn parse_weekly(text: &str) -> Result<CronSchedule, ScheduleError> {
        let _ = text;
        todo!()
    }

    /// A quiet-hours schedule: `[CRON_TZ=<zone> ]min hour * * *`.
    pub fn parse_daily(text: &str) -> Result<CronSchedule, ScheduleError> {
        let _ = text;
        todo!()
    }

    pub fn zone(&self) -> Tz {
        todo!()
    }

    /// The text it was parsed from.
    pub fn text(&self) -> &str {
        todo!()
    }

    /// The first activation strictly after `at` (minute resolution, in the
    /// schedule's zone). `None` only if none exists within a year.
    pub fn next_after(&self, at: Timestamp) -> Option<Timestamp> {
        let _ = at;
        todo!()
    }

    /// The weekday of `at` in the schedule's zone.
    pub fn weekday_of(&self, at: Timestamp) -> Weekday {
        let _ = at;
        todo!()
    }
}

/// `next_allowed_autostart(at)` of lifecycle.md §4 rule 2: the first activation
/// after `at` whose weekday (in the schedule's zone) is in `days`; the last one
/// tested is the first at or past `at + 7d`. `None` when none is allowed.
pub fn next_allowed_autostart(schedule: &CronSchedule, at: Timestamp, days: WeekdaySet) -> Option<Timestamp> {
    let _ = (schedule, at, days);
    todo!()
}
