//! Deadlines and max deadlines (lifecycle.md §5.1-§5.3): what a build completion
//! sets, and how later changes (extend, ttl, template, requirement) move them.

use chrono::{Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use chrono_tz::Tz;

use crate::limits::{EXTEND_AHEAD_MIN, MAX_DEADLINE_BUFFER, MAX_DEADLINE_LEEWAY, REQUIREMENT_CHANGE_FLOOR};
use crate::model::{
    AutostopRequirement, Build, BuildWithJob, JobStatus, Template, Transition, Weekday, Workspace, QUIET_HOURS_DEFAULT,
};
use crate::rules::schedule::{local_datetime, CronSchedule};
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
/// the requirement has no days, and also when the chosen day does not exist in
/// the zone (Pacific/Apia skipped 2011-12-30) or the calendar arithmetic leaves
/// the representable range (corrupt instants).
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
    let mut day = local_datetime(zone, leeway_at)?.date();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::PREBUILDS_USER_ID;
    use crate::model::WeekdaySet;
    use crate::rules::fixtures::{build, hours, mon, template, ts, weekdays, workspace};

    fn every_day(weeks: u8) -> AutostopRequirement {
        AutostopRequirement { days: WeekdaySet::ALL, weeks }
    }

    fn quiet(text: &str) -> CronSchedule {
        CronSchedule::parse_daily(text).unwrap()
    }

    fn complete(template: &Template, workspace: &Workspace, quiet_hours: &str, at: Timestamp) -> CompletionDeadlines {
        deadlines_at_completion(&CompletionInput { template, workspace, quiet_hours, completed_at: at })
    }

    fn set(deadline: Option<Timestamp>, max_deadline: Option<Timestamp>) -> CompletionDeadlines {
        CompletionDeadlines::Set(Deadlines { deadline, max_deadline })
    }

    #[test]
    fn effective_ttl_reads_negative_as_none() {
        let mut template = template();
        let mut workspace = workspace();
        assert_eq!(effective_ttl(&template, &workspace), hours(8));
        workspace.ttl = Some(-hours(1));
        assert_eq!(effective_ttl(&template, &workspace), Span::ZERO);
        workspace.ttl = None;
        assert_eq!(effective_ttl(&template, &workspace), Span::ZERO);
        template.allow_user_autostop = false;
        template.default_ttl = -hours(3);
        assert_eq!(effective_ttl(&template, &workspace), Span::ZERO);
        template.default_ttl = hours(3);
        assert_eq!(effective_ttl(&template, &workspace), hours(3));
    }

    #[test]
    fn completion_of_a_prebuild_sets_nothing() {
        let mut workspace = workspace();
        workspace.owner_id = PREBUILDS_USER_ID;
        assert_eq!(complete(&template(), &workspace, "", mon("10:00")), set(None, None));
    }

    #[test]
    fn completion_autostart_adjustment_takes_one_step_on_an_allowed_day() {
        let mut template = template();
        let mut workspace = workspace();
        workspace.ttl = Some(hours(12));
        workspace.autostart = Some("CRON_TZ=UTC 0 9 * * *".into());
        // Tuesday's 09:00 is the one step; Tuesday disallowed: no adjustment,
        // even though Wednesday's is allowed.
        template.autostart_days = weekdays(&[Weekday::Wed]);
        assert_eq!(complete(&template, &workspace, "", mon("21:45")), set(Some(ts("2026-01-06T09:45:00Z")), None));
        // Deadline not past the autostart: unchanged.
        template.autostart_days = WeekdaySet::ALL;
        workspace.ttl = Some(hours(8));
        assert_eq!(complete(&template, &workspace, "", mon("21:45")), set(Some(ts("2026-01-06T05:45:00Z")), None));
        // An invalid schedule: no adjustment, no error here.
        workspace.ttl = Some(hours(12));
        workspace.autostart = Some("not a cron".into());
        assert_eq!(complete(&template, &workspace, "", mon("21:45")), set(Some(ts("2026-01-06T09:45:00Z")), None));
    }

    #[test]
    fn completion_with_invalid_quiet_hours_uses_the_default() {
        let mut template = template();
        template.autostop_requirement = every_day(1);
        let workspace = workspace();
        let expected = set(Some(mon("18:00")), Some(ts("2026-01-06T00:00:00Z")));
        for quiet_hours in ["", "  ", "CRON_TZ=Nowhere 0 0 * * *", "0 0 * * 1"] {
            assert_eq!(complete(&template, &workspace, quiet_hours, mon("10:00")), expected, "{quiet_hours:?}");
        }
        // No ttl: the deadline is the max.
        let mut no_ttl = workspace.clone();
        no_ttl.ttl = None;
        let expected = set(Some(ts("2026-01-06T00:00:00Z")), Some(ts("2026-01-06T00:00:00Z")));
        assert_eq!(complete(&template, &no_ttl, "", mon("10:00")), expected);
    }

    #[test]
    fn max_deadline_in_the_quiet_hours_zone() {
        // Quiet hours 01:00 in New York (-05:00 in January); done Mon 10:00 UTC
        // (05:00 local): tomorrow's 01:00 local is Tue 06:00 UTC.
        let quiet = quiet("CRON_TZ=America/New_York 0 1 * * *");
        assert_eq!(max_deadline(&every_day(1), &quiet, mon("10:00")), Some(ts("2026-01-06T06:00:00Z")));
        // Done 23:30 local: tomorrow's 01:00 is only 1h30 away, past the 2h
        // leeway: the day after.
        let late = ts("2026-01-06T04:30:00Z");
        assert_eq!(max_deadline(&every_day(1), &quiet, late), Some(ts("2026-01-07T06:00:00Z")));
    }

    #[test]
    fn max_deadline_without_days_is_none_and_zero_weeks_is_one() {
        let quiet = quiet("CRON_TZ=UTC 0 0 * * *");
        assert_eq!(max_deadline(&AutostopRequirement::default(), &quiet, mon("10:00")), None);
        assert_eq!(
            max_deadline(&every_day(0), &quiet, mon("10:00")),
            max_deadline(&every_day(1), &quiet, mon("10:00"))
        );
    }

    #[test]
    fn max_deadline_weeks_counted_before_the_epoch() {
        // Wed 2022-12-28 is in week -1 of the 2023-01-02 epoch: the next even
        // week starts on the epoch itself.
        let quiet = quiet("CRON_TZ=UTC 0 0 * * *");
        assert_eq!(max_deadline(&every_day(2), &quiet, ts("2022-12-28T10:00:00Z")), Some(ts("2023-01-02T00:00:00Z")));
        // Three-weekly, from Mon 2026-01-05 (week 157): week 159 = 2026-01-19.
        assert_eq!(max_deadline(&every_day(3), &quiet, mon("10:00")), Some(ts("2026-01-19T00:00:00Z")));
    }

    #[test]
    fn max_deadline_weeks_count_calendar_days_across_dst() {
        // Chicago midnight quiet hours, every day, every 3 weeks. Mon 2026-03-09
        // is day 1162 after the epoch by date (week 166, 166 mod 3 = 1: go to
        // week 168, Mon 2026-03-23). Counted in 24h spans from the epoch's CST
        // midnight, CDT midnight of 2026-03-09 is an hour short of day 1162:
        // week 165, a multiple of 3, and the max would wrongly be 2026-03-10.
        let quiet = quiet("CRON_TZ=America/Chicago 0 0 * * *");
        let done = ts("2026-03-09T15:00:00Z"); // 10:00 CDT
        assert_eq!(max_deadline(&every_day(3), &quiet, done), Some(ts("2026-03-23T05:00:00Z")));
        // Every 2 weeks, week 166 applies: tomorrow's midnight (CDT).
        assert_eq!(max_deadline(&every_day(2), &quiet, done), Some(ts("2026-03-10T05:00:00Z")));
    }

    #[test]
    fn max_deadline_when_midnight_falls_in_a_gap() {
        // Chile moves 00:00 -> 01:00 on Sun 2026-09-06: that day starts at
        // 01:00 -03 (04:00 UTC), and midnight quiet hours fire then.
        let quiet = quiet("CRON_TZ=America/Santiago 0 0 * * *");
        assert_eq!(
            start_of_day(quiet.zone(), NaiveDate::from_ymd_opt(2026, 9, 6).unwrap()),
            Some(ts("2026-09-06T04:00:00Z"))
        );
        // Done Sat 10:00 local (-04): the next requirement midnight is Sunday's.
        assert_eq!(max_deadline(&every_day(1), &quiet, ts("2026-09-05T14:00:00Z")), Some(ts("2026-09-06T04:00:00Z")));
    }

    #[test]
    fn max_deadline_on_absurd_instants_is_none_or_an_instant() {
        // Found by the property test: local time past chrono's range (Berlin,
        // year 262142) used to panic.
        for zone in ["UTC", "Europe/Berlin", "America/Chicago"] {
            let quiet = quiet(&format!("CRON_TZ={zone} 0 0 * * *"));
            for at in [i64::MIN, i64::MIN / 2, -1, i64::MAX / 2, i64::MAX] {
                let at = Timestamp::from_micros(at);
                for weeks in [1, 16] {
                    let max = max_deadline(&every_day(weeks), &quiet, at);
                    assert!(max.is_none_or(|max| max > at), "{zone} {at}: {max:?}");
                }
            }
        }
    }

    #[test]
    fn extend_refusals() {
        let mut start = build(Transition::Start, JobStatus::Succeeded, mon("09:00"));
        assert_eq!(extend(&start, mon("18:00"), mon("10:00")), ExtendDecision::Refused(ExtendRefusal::NoDeadline));
        start.build.deadline = Some(mon("17:00"));
        start.build.max_deadline = Some(mon("19:00"));
        assert_eq!(extend(&start, mon("10:29"), mon("10:00")), ExtendDecision::Set { deadline: mon("10:29") });
        assert_eq!(extend(&start, mon("19:00"), mon("10:00")), ExtendDecision::Set { deadline: mon("19:00") });
        assert_eq!(extend(&start, mon("19:01"), mon("10:00")), ExtendDecision::Refused(ExtendRefusal::PastMaxDeadline));
        assert_eq!(extend(&start, mon("10:28"), mon("10:00")), ExtendDecision::Refused(ExtendRefusal::TooSoon));
        let stop = build(Transition::Stop, JobStatus::Succeeded, mon("09:00"));
        assert_eq!(extend(&stop, mon("18:00"), mon("10:00")), ExtendDecision::Refused(ExtendRefusal::NotRunning));
        let mut failed = start.clone();
        failed.job.status = JobStatus::Failed;
        assert_eq!(extend(&failed, mon("18:00"), mon("10:00")), ExtendDecision::Refused(ExtendRefusal::NotRunning));
    }

    #[test]
    fn requirement_change_caps_floors_and_keeps() {
        let now = mon("12:00");
        let mut start = build(Transition::Start, JobStatus::Succeeded, mon("09:00")).build;
        start.deadline = Some(mon("17:00"));
        // Recomputed max later than the deadline: the deadline stays.
        let later = deadlines_after_requirement_change(&start, Some(mon("20:00")), now);
        assert_eq!(later, Deadlines { deadline: Some(mon("17:00")), max_deadline: Some(mon("20:00")) });
        // Earlier: the deadline is capped.
        let earlier = deadlines_after_requirement_change(&start, Some(mon("15:00")), now);
        assert_eq!(earlier, Deadlines { deadline: Some(mon("15:00")), max_deadline: Some(mon("15:00")) });
        // Before now + 2h: floored at now + 2h.
        let floored = deadlines_after_requirement_change(&start, Some(mon("12:30")), now);
        assert_eq!(floored, Deadlines { deadline: Some(mon("14:00")), max_deadline: Some(mon("14:00")) });
        // ... unless the build's max was already before now + 2h: kept.
        start.max_deadline = Some(mon("13:00"));
        start.deadline = Some(mon("13:00"));
        let kept = deadlines_after_requirement_change(&start, Some(mon("12:30")), now);
        assert_eq!(kept, Deadlines { deadline: Some(mon("13:00")), max_deadline: Some(mon("13:00")) });
        // No deadline: set to the max.
        start.deadline = None;
        start.max_deadline = None;
        let unset = deadlines_after_requirement_change(&start, Some(mon("20:00")), now);
        assert_eq!(unset, Deadlines { deadline: Some(mon("20:00")), max_deadline: Some(mon("20:00")) });
        // No requirement any more: no max, the deadline stays.
        start.deadline = Some(mon("17:00"));
        start.max_deadline = Some(mon("20:00"));
        let none = deadlines_after_requirement_change(&start, None, now);
        assert_eq!(none, Deadlines { deadline: Some(mon("17:00")), max_deadline: None });
    }
}
