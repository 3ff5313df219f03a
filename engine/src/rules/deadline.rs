//! Deadlines and max deadlines (lifecycle.md §5.1-§5.3): what a build completion
//! sets, and how later changes (extend, ttl, template, requirement) move them.

use chrono::{Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use chrono_tz::Tz;

use crate::limits::{EXTEND_AHEAD_MIN, MAX_DEADLINE_BUFFER, MAX_DEADLINE_LEEWAY, REQUIREMENT_CHANGE_FLOOR};
use crate::model::{
    AutostopRequirement, Build, BuildWithJob, JobStatus, Template, Transition, Weekday, Workspace, QUIET_HOURS_DEFAULT,
};
use crate::rules::schedule::CronSchedule;
use crate::time::{Span, Timestamp};

/// §5.2 step 2 counts weeks from this Monday (the reference's epoch).
const REQUIREMENT_EPOCH: Option<NaiveDate> = NaiveDate::from_ymd_opt(2023, 1, 2);

/// A local midnight that falls in a daylight-saving gap becomes the first local
/// minute of that day that exists; the search tries at most this many minutes
/// (a whole skipped day, as Pacific/Apia's 2011-12-30, has none: then no max).
const DAY_START_SEARCH_MINUTES_MAX: u32 = 25 * 60;

/// Deadlines of a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Deadlines {
    pub deadline: Option<Timestamp>,
    pub max_deadline: Option<Timestamp>,
}

/// What a successful start completion writes (§5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompletionDeadlines {
    Set(Deadlines),
    /// §5.1 step 5: a deadline or max before `completed_at`; the completion fails.
    Invalid {
        reason: String,
    },
}

/// Inputs of §5.1. `quiet_hours` is the owner's schedule text (empty: default;
/// an invalid one is read as the default).
#[derive(Debug, Clone, Copy)]
pub struct CompletionInput<'a> {
    pub template: &'a Template,
    pub workspace: &'a Workspace,
    pub quiet_hours: &'a str,
    pub completed_at: Timestamp,
}

/// §5.1 step 1: the ttl that applies to a new deadline (zero: none).
pub fn effective_ttl(template: &Template, workspace: &Workspace) -> Span {
    let ttl = if template.allow_user_autostop { workspace.ttl.unwrap_or(Span::ZERO) } else { template.default_ttl };
    if ttl.is_positive() {
        ttl
    } else {
        Span::ZERO
    }
}

/// §5.1 for a succeeded start build of a workspace that is not a prebuild (a
/// prebuild gets neither).
pub fn deadlines_at_completion(input: &CompletionInput<'_>) -> CompletionDeadlines {
    if input.workspace.is_prebuild() {
        return CompletionDeadlines::Set(Deadlines::default());
    }
    let completed_at = input.completed_at;
    // Steps 1-2.
    let ttl = effective_ttl(input.template, input.workspace);
    let mut deadline = ttl.is_positive().then(|| {
        let deadline = completed_at + ttl;
        match next_autostart_one_step(input.workspace, input.template, completed_at) {
            Some(autostart_at) if deadline > autostart_at => autostart_at + ttl,
            _ => deadline,
        }
    });
    // Steps 3-4.
    let max = quiet_hours_schedule(input.quiet_hours)
        .and_then(|quiet| max_deadline(&input.template.autostop_requirement, &quiet, completed_at));
    if let Some(max) = max {
        if deadline.is_none_or(|deadline| max < deadline) {
            deadline = Some(max);
        }
    }
    // Step 5.
    for (name, instant) in [("deadline", deadline), ("max deadline", max)] {
        if let Some(instant) = instant.filter(|instant| *instant < completed_at) {
            return CompletionDeadlines::Invalid {
                reason: format!("{name} {instant} is before the build completed at {completed_at}"),
            };
        }
    }
    CompletionDeadlines::Set(Deadlines { deadline, max_deadline: max })
}

/// §5.1 step 2's `N`: ONE step of the workspace's autostart schedule after
/// `at`, if that activation falls on an allowed day (the reference's
/// `NextAutostart`); `None` without a valid schedule.
fn next_autostart_one_step(workspace: &Workspace, template: &Template, at: Timestamp) -> Option<Timestamp> {
    let schedule = CronSchedule::parse_weekly(workspace.autostart.as_deref()?).ok()?;
    let next = schedule.next_after(at)?;
    template.autostart_days.contains(schedule.weekday_of(next)).then_some(next)
}

/// The owner's quiet hours: their schedule, else (empty or invalid) the default.
fn quiet_hours_schedule(text: &str) -> Option<CronSchedule> {
    let text = if text.trim().is_empty() { QUIET_HOURS_DEFAULT } else { text };
    CronSchedule::parse_daily(text).or_else(|_| CronSchedule::parse_daily(QUIET_HOURS_DEFAULT)).ok()
}

/// §5.2: the max deadline for a build completed at `completed_at`; `None` when
/// the requirement has no days (or, only on corrupt instants, when the calendar
/// arithmetic leaves the representable range).
pub fn max_deadline(
    requirement: &AutostopRequirement,
    quiet_hours: &CronSchedule,
    completed_at: Timestamp,
) -> Option<Timestamp> {
    if requirement.days.is_empty() {
        return None;
    }
    let zone = quiet_hours.zone();
    let leeway_at = completed_at + MAX_DEADLINE_LEEWAY;
    // 1. The local day of c + 2h.
    let mut day = local_date(zone, leeway_at);
    // 2. Every `weeks` weeks: the Monday of the next applicable week, weeks
    //    counted by calendar date from Monday 2023-01-02 (DST-safe).
    let weeks = i64::from(requirement.weeks_effective());
    if weeks > 1 {
        let epoch = REQUIREMENT_EPOCH?;
        let week = day.signed_duration_since(epoch).num_days().div_euclid(7);
        let behind = week.rem_euclid(weeks);
        if behind != 0 {
            let target_week = week.checked_add(weeks - behind)?;
            day = epoch.checked_add_signed(chrono::TimeDelta::try_days(target_week.checked_mul(7)?)?)?;
        }
    }
    // 3. Today's quiet hours too close or past: start tomorrow.
    if quiet_hours.next_after(start_of_day(zone, day)? - MAX_DEADLINE_BUFFER)? < leeway_at {
        day = day.succ_opt()?;
    }
    // 4. Forward to a requirement day (at most 6 steps: the set is not empty).
    for _ in 0..7 {
        if requirement.days.contains(Weekday::from_chrono(day.weekday())) {
            break;
        }
        day = day.succ_opt()?;
    }
    // 5-6.
    let start = start_of_day(zone, day)?;
    let one_hour_after = completed_at + Span::from_hours(1);
    let check = if start < one_hour_after { one_hour_after } else { start - MAX_DEADLINE_BUFFER };
    quiet_hours.next_after(check)
}

/// The calendar date of `at` in `zone`.
fn local_date(zone: Tz, at: Timestamp) -> NaiveDate {
    at.to_chrono().with_timezone(&zone).date_naive()
}

/// The first instant of `day` in `zone`: local midnight, the earlier one if it
/// occurs twice, the first existing minute after it if a gap swallows it.
fn start_of_day(zone: Tz, day: NaiveDate) -> Option<Timestamp> {
    let mut local: NaiveDateTime = day.and_time(NaiveTime::MIN);
    for _ in 0..DAY_START_SEARCH_MINUTES_MAX {
        if local.date() != day {
            return None;
        }
        match zone.from_local_datetime(&local) {
            LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => return Some(Timestamp::from_chrono(at)),
            LocalResult::None => local = local.checked_add_signed(chrono::TimeDelta::minutes(1))?,
        }
    }
    None
}

/// Why an extension is refused (§5.3, the reference API's checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtendRefusal {
    /// The latest build is not a succeeded start.
    NotRunning,
    /// The build has no deadline to move.
    NoDeadline,
    /// The new deadline is less than 29 minutes ahead of now.
    TooSoon,
    /// The new deadline is past the max deadline.
    PastMaxDeadline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtendDecision {
    Set { deadline: Timestamp },
    Refused(ExtendRefusal),
}

/// §5.3 extend: a user moves the deadline of the latest build.
pub fn extend(latest: &BuildWithJob, new_deadline: Timestamp, now: Timestamp) -> ExtendDecision {
    let refused = ExtendDecision::Refused;
    if latest.build.transition != Transition::Start || latest.job.status != JobStatus::Succeeded {
        return refused(ExtendRefusal::NotRunning);
    }
    if latest.build.deadline.is_none() {
        return refused(ExtendRefusal::NoDeadline);
    }
    if new_deadline < now + EXTEND_AHEAD_MIN {
        return refused(ExtendRefusal::TooSoon);
    }
    if latest.build.max_deadline.is_some_and(|max| new_deadline > max) {
        return refused(ExtendRefusal::PastMaxDeadline);
    }
    ExtendDecision::Set { deadline: new_deadline }
}

/// §5.3: the deadline of the running build when the workspace ttl is set to
/// none: the max deadline (unset if none).
pub fn deadline_when_ttl_cleared(build: &Build) -> Option<Timestamp> {
    build.max_deadline
}

/// §5.3: a template update that leaves user autostop disallowed, and disallowed
/// it or changed `default_ttl`, resets every workspace ttl: `Some(new ttl)`
/// (`Some(None)` = unset). `None`: ttls stay.
pub fn ttl_after_template_update(old: &Template, new: &Template) -> Option<Option<Span>> {
    let disallowed_now = !new.allow_user_autostop;
    let reset = disallowed_now && (old.allow_user_autostop || old.default_ttl != new.default_ttl);
    reset.then(|| new.default_ttl.is_positive().then_some(new.default_ttl))
}

/// §5.3 requirement change: the running build's new deadlines given the max
/// recomputed from its `completed_at` under the new requirement (`recomputed`,
/// `None` = no requirement now).
///
/// A recomputed max before `now + 2h` is floored there, except that a max the
/// build already had before `now + 2h` is kept (the floor never postpones a
/// stop that was already that close). The deadline is capped at the new max,
/// or set to it if unset; with no requirement the max is unset and the
/// deadline stays.
pub fn deadlines_after_requirement_change(build: &Build, recomputed: Option<Timestamp>, now: Timestamp) -> Deadlines {
    let Some(recomputed) = recomputed else {
        return Deadlines { deadline: build.deadline, max_deadline: None };
    };
    let floor = now + REQUIREMENT_CHANGE_FLOOR;
    let max = if recomputed >= floor {
        recomputed
    } else {
        match build.max_deadline {
            Some(current) if current < floor => current,
            _ => floor,
        }
    };
    let deadline = Some(build.deadline.map_or(max, |deadline| deadline.min(max)));
    Deadlines { deadline, max_deadline: Some(max) }
}
