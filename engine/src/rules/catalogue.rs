//! The behaviour catalogue of lifecycle.md §9, item by item, at rule level:
//! `lc_NN_<behaviour>` asserts the instants the catalogue gives, in its default
//! setup (Mon 2026-01-05, tick_at each whole minute, owner active, last used
//! the day before, ttl 8h, quiet hours midnight UTC). Items that need drivers,
//! replicas or crashes (1-5, 36's gate, 42's days, 46's chat, 54-57) are
//! covered elsewhere; where they have a rule-level half it is here.

use crate::ids::PREBUILDS_USER_ID;
use crate::model::{
    AutomaticUpdates, AutostopRequirement, BuildReason, JobStatus, Parameters, Transition, UserStatus, Weekday,
    WeekdaySet,
};
use crate::rules::bump::{activity_bump, ActivitySource, BumpDecision, BumpInput, BumpSkip};
use crate::rules::deadline::{
    deadline_when_ttl_cleared, deadlines_at_completion, extend, max_deadline, ttl_after_template_update,
    CompletionDeadlines, CompletionInput, Deadlines, ExtendDecision, ExtendRefusal,
};
use crate::rules::fixtures::{
    build, days, hours, mins, mon, running, secs, stopped, template, ts, version, weekdays, ViewExt, V1, V2,
};
use crate::rules::lifecycle::{
    deleting_at_after_autodelete_change, evaluate, next_start_at_after_build, Action, DormancyMark, LifecycleOutcome,
    LifecycleView, PlannedBuild, RuleError,
};
use crate::rules::reminder::{NoReminder, ReminderDecision};
use crate::rules::schedule::{next_allowed_autostart, CronSchedule, ScheduleError};
use crate::time::{Span, Timestamp};

/// The replica's clock a little after the tick instant (writes use it).
fn now_of(tick_at: Timestamp) -> Timestamp {
    tick_at + Span::from_millis(400)
}

fn eval(view: &LifecycleView, tick_at: Timestamp) -> LifecycleOutcome {
    evaluate(view, tick_at, now_of(tick_at))
}

/// The `(transition, reason)` of the build due at `tick_at`, if any.
fn due(view: &LifecycleView, tick_at: Timestamp) -> Option<(Transition, BuildReason)> {
    match eval(view, tick_at).action {
        Action::Build { build, .. } => Some((build.transition, build.reason)),
        _ => None,
    }
}

fn planned(view: &LifecycleView, tick_at: Timestamp) -> PlannedBuild {
    match eval(view, tick_at).action {
        Action::Build { build, .. } => build,
        other => panic!("expected a build at {tick_at}, got {other:?}"),
    }
}

fn reminder_at(view: &LifecycleView, tick_at: Timestamp) -> ReminderDecision {
    match eval(view, tick_at).action {
        Action::Reminder(decision) => decision,
        other => panic!("expected the reminder check at {tick_at}, got {other:?}"),
    }
}

const AUTOSTOP: Option<(Transition, BuildReason)> = Some((Transition::Stop, BuildReason::Autostop));
const AUTOSTART: Option<(Transition, BuildReason)> = Some((Transition::Start, BuildReason::Autostart));
const FAILEDSTOP: Option<(Transition, BuildReason)> = Some((Transition::Stop, BuildReason::Failedstop));
const AUTODELETE: Option<(Transition, BuildReason)> = Some((Transition::Delete, BuildReason::Autodelete));

/// A stopped workspace with `autostart`, its `next_start_at` set as the stop
/// build's insert (at `created_at`) would have set it.
fn stopped_with_autostart(created_at: Timestamp, autostart: &str) -> LifecycleView {
    let mut view = stopped(created_at);
    view.workspace.autostart = Some(autostart.into());
    view.workspace.next_start_at = next_start_at_after_build(&view.workspace, &view.template, created_at);
    view
}

fn completion(view: &LifecycleView, completed_at: Timestamp) -> Deadlines {
    let input = CompletionInput {
        template: &view.template,
        workspace: &view.workspace,
        quiet_hours: &view.owner.quiet_hours,
        completed_at,
    };
    match deadlines_at_completion(&input) {
        CompletionDeadlines::Set(deadlines) => deadlines,
        CompletionDeadlines::Invalid { reason } => panic!("completion at {completed_at} invalid: {reason}"),
    }
}

fn bump(view: &LifecycleView, source: ActivitySource, now: Timestamp) -> BumpDecision {
    let input = BumpInput {
        workspace: &view.workspace,
        template: &view.template,
        latest: view.latest.as_ref().expect("a latest build"),
        source,
    };
    activity_bump(&input, now)
}

const USAGE: ActivitySource = ActivitySource::AgentUsage { sessions: 1 };

fn quiet_midnight_utc() -> CronSchedule {
    CronSchedule::parse_daily("CRON_TZ=UTC 0 0 * * *").unwrap()
}

// ---- autostart ------------------------------------------------------------------

#[test]
fn lc_06_invalid_schedule_is_an_error_and_rules_3_to_5_still_run() {
    let mut view = stopped(mon("08:00"));
    view.workspace.autostart = Some("CRON_TZ=Mars/Base 0 9 * * *".into());
    let outcome = eval(&view, mon("09:00"));
    assert_eq!(outcome.errors, vec![RuleError::ScheduleInvalid(ScheduleError::UnknownZone("Mars/Base".into()))]);
    assert_eq!(outcome.next_start_at, None);
    assert_eq!(outcome.action, Action::Reminder(ReminderDecision::None(NoReminder::NotifyOff)));
    // Dormancy still marks it.
    view.template.time_til_dormant = days(1);
    let outcome = eval(&view, mon("12:01"));
    assert_eq!(outcome.errors.len(), 1);
    assert_eq!(outcome.action, Action::Mark(DormancyMark { dormant_at: now_of(mon("12:01")), deleting_at: None }));
}

#[test]
fn lc_07_hourly_autostart_waits_for_next_hour() {
    let view = stopped_with_autostart(mon("10:20"), "CRON_TZ=UTC 0 * * * *");
    assert_eq!(view.workspace.next_start_at, Some(mon("11:00")));
    assert_eq!(due(&view, mon("10:59")), None);
    assert_eq!(due(&view, mon("11:00")), AUTOSTART);
}

#[test]
fn lc_08_no_start_without_schedule_or_permission() {
    // Stopped, no autostart: nothing in 24h, nothing to compute.
    let view = stopped(mon("08:00"));
    for hour in 0..=24 {
        let outcome = eval(&view, mon("08:00") + hours(hour));
        assert_eq!(outcome.next_start_at, None);
        assert!(!matches!(outcome.action, Action::Build { .. }));
    }
    // A due schedule, but the template forbids user autostart.
    let mut view = stopped_with_autostart(mon("08:00"), "CRON_TZ=UTC 0 9 * * *");
    view.template.allow_user_autostart = false;
    for hour in 0..=24 {
        assert_eq!(due(&view, mon("09:00") + hours(hour)), None);
    }
    // Running: rule 2 needs a stopped workspace (ttl none: no autostop either).
    let mut view = running(mon("08:00"), None);
    view.workspace.autostart = Some("CRON_TZ=UTC 0 9 * * *".into());
    view.workspace.next_start_at = Some(mon("09:00"));
    for hour in 0..=24 {
        assert_eq!(due(&view, mon("09:00") + hours(hour)), None);
    }
}

#[test]
fn lc_09_suspended_or_dormant_owner_is_not_started() {
    for status in [UserStatus::Suspended, UserStatus::Dormant] {
        let mut view = stopped_with_autostart(mon("08:00"), "CRON_TZ=UTC 0 9 * * *");
        view.owner.status = status;
        for minute in [0, 1, 60] {
            let outcome = eval(&view, mon("09:00") + mins(minute));
            assert_eq!(outcome.errors, vec![], "{status}");
            assert!(!matches!(outcome.action, Action::Build { .. }), "{status}");
        }
    }
}

/// v2 is active, the workspace was last built on v1 with `parameters`.
fn stopped_on_v1_with_v2_active(updates: AutomaticUpdates, v2_specs: &[(&str, bool, Option<&str>)]) -> LifecycleView {
    let mut view = stopped_with_autostart(mon("08:00"), "CRON_TZ=UTC 0 9 * * *");
    view.template.active_version_id = V2;
    view.active_version = Some(version(V2, v2_specs));
    view.workspace.automatic_updates = updates;
    view
}

#[test]
fn lc_10_never_keeps_the_old_version() {
    let view = stopped_on_v1_with_v2_active(AutomaticUpdates::Never, &[]);
    let build = planned(&view, mon("09:00"));
    assert_eq!((build.transition, build.reason), (Transition::Start, BuildReason::Autostart));
    assert_eq!(build.version_id, V1);
    assert_eq!(build.auto_update, None);
}

#[test]
fn lc_11_always_moves_to_a_compatible_active_version() {
    let view = stopped_on_v1_with_v2_active(AutomaticUpdates::Always, &[("cpu", false, Some("2"))]);
    let build = planned(&view, mon("09:00"));
    assert_eq!((build.transition, build.reason), (Transition::Start, BuildReason::Autostart));
    assert_eq!(build.version_id, V2);
    assert_eq!(build.auto_update, Some((V1, V2)));
    assert_eq!(build.parameters, Parameters::from([("cpu".into(), "2".into())]));
}

#[test]
fn lc_12_new_required_parameter_blocks_autostart_each_tick() {
    let view = stopped_on_v1_with_v2_active(AutomaticUpdates::Always, &[("cpu", true, Some("2"))]);
    for minute in 0..3 {
        let outcome = eval(&view, mon("09:00") + mins(minute));
        assert_eq!(outcome.errors, vec![RuleError::BuildInvalid { parameter: "cpu".into() }]);
        assert!(!matches!(outcome.action, Action::Build { .. }));
    }
}

#[test]
fn lc_13_require_active_version_moves_and_keeps_parameters() {
    let mut view = stopped_on_v1_with_v2_active(AutomaticUpdates::Never, &[("region", true, None)]);
    view.template.require_active_version = true;
    view.latest_mut().build.parameters = Parameters::from([("region".into(), "eu".into())]);
    let build = planned(&view, mon("09:00"));
    assert_eq!(build.version_id, V2);
    assert_eq!(build.auto_update, Some((V1, V2)));
    assert_eq!(build.parameters, Parameters::from([("region".into(), "eu".into())]));
}

#[test]
fn lc_14_weekdays_only_skip_the_weekend() {
    let mut view = stopped(ts("2026-01-09T18:00:00Z"));
    view.template.autostart_days = weekdays(&[Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri]);
    view.workspace.autostart = Some("CRON_TZ=UTC 0 9 * * *".into());
    assert_eq!(
        next_start_at_after_build(&view.workspace, &view.template, ts("2026-01-09T18:00:00Z")),
        Some(ts("2026-01-12T09:00:00Z"))
    );
}

#[test]
fn lc_15_allowed_day_is_the_schedule_zones() {
    // Fri 2021-01-01 20:00 in Chicago is Sat 02:00 UTC.
    let autostart = "CRON_TZ=America/Chicago 0 20 * * *";
    let stop_created = ts("2021-01-01T18:00:00Z"); // Friday noon in Chicago
    let fri_20h_chicago = ts("2021-01-02T02:00:00Z");
    for (days, expected) in [(&[Weekday::Fri], AUTOSTART), (&[Weekday::Sat], None)] {
        let mut view = stopped(stop_created);
        view.template.autostart_days = weekdays(days);
        view.workspace.autostart = Some(autostart.into());
        view.workspace.next_start_at = next_start_at_after_build(&view.workspace, &view.template, stop_created);
        assert_eq!(due(&view, fri_20h_chicago), expected, "{days:?}");
    }
}

#[test]
fn lc_16_no_allowed_day_never_starts() {
    let mut view = stopped(mon("08:00"));
    view.template.autostart_days = WeekdaySet::EMPTY;
    view.workspace.autostart = Some("CRON_TZ=UTC 0 9 * * *".into());
    for tick_at in [mon("08:00"), mon("09:00"), mon("09:00") + days(3)] {
        let outcome = eval(&view, tick_at);
        assert_eq!(outcome.next_start_at, Some(None));
        assert_eq!(outcome.errors, vec![]);
        assert!(!matches!(outcome.action, Action::Build { .. }));
    }
}

#[test]
fn lc_17_disallowed_monday_moves_autostart_to_tuesday() {
    let mut view = stopped(ts("2023-12-31T12:00:00Z"));
    view.workspace.autostart = Some("CRON_TZ=UTC 0 9 * * *".into());
    let tick_at = ts("2024-01-01T08:00:00Z");
    assert_eq!(eval(&view, tick_at).next_start_at, Some(Some(ts("2024-01-01T09:00:00Z"))));
    view.template.autostart_days = weekdays(&[Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri, Weekday::Sat]);
    assert_eq!(eval(&view, tick_at).next_start_at, Some(Some(ts("2024-01-02T09:00:00Z"))));
}

#[test]
fn lc_18_missed_autostart_fires_once_when_ticks_resume() {
    // Rule-level half: next_start_at 09:00, no tick until 12:00 (or 3 days later).
    for resume_at in [mon("12:00"), mon("09:00") + days(3)] {
        let mut view = stopped_with_autostart(mon("08:00"), "CRON_TZ=UTC 0 9 * * *");
        assert_eq!(due(&view, resume_at), AUTOSTART);
        // The insert moves next_start_at to the next activation; the new
        // build is a start: no second autostart.
        let created_at = now_of(resume_at);
        view.workspace.next_start_at = next_start_at_after_build(&view.workspace, &view.template, created_at);
        assert!(view.workspace.next_start_at > Some(resume_at));
        view.latest = Some(build(Transition::Start, JobStatus::Pending, created_at));
        assert_eq!(eval(&view, resume_at + mins(1)).action, Action::Wait);
    }
}

#[test]
fn lc_19_stop_finishing_after_the_instant_starts_next_tick() {
    let created_at = ts("2026-01-05T08:59:10Z");
    let mut view = stopped_with_autostart(created_at, "CRON_TZ=UTC 0 9 * * *");
    assert_eq!(view.workspace.next_start_at, Some(mon("09:00")));
    view.latest_mut().job.status = JobStatus::Running;
    view.latest_mut().job.completed_at = None;
    let outcome = eval(&view, mon("09:00"));
    assert_eq!(outcome.action, Action::Wait);
    assert_eq!(outcome.next_start_at, None);
    view.latest_mut().job.status = JobStatus::Succeeded;
    view.latest_mut().job.completed_at = Some(ts("2026-01-05T09:00:20Z"));
    assert_eq!(due(&view, mon("09:01")), AUTOSTART);
}

// ---- autostop and deadlines -------------------------------------------------------

#[test]
fn lc_20_autostop_at_the_deadline_minute() {
    let view = running(mon("09:00"), Some(mon("17:00")));
    assert_eq!(due(&view, mon("16:59")), None);
    assert_eq!(due(&view, mon("17:00")), AUTOSTOP);
}

#[test]
fn lc_21_deadline_inside_a_minute_stops_at_the_next_tick() {
    let view = running(mon("09:00"), Some(ts("2026-01-05T17:00:30Z")));
    assert_eq!(due(&view, mon("17:00")), None);
    assert_eq!(due(&view, mon("17:01")), AUTOSTOP);
}

#[test]
fn lc_22_extended_deadline_is_the_one_that_counts() {
    let mut view = running(mon("09:00"), Some(mon("17:00")));
    let latest = view.latest.clone().unwrap();
    assert_eq!(extend(&latest, mon("17:30"), mon("16:55")), ExtendDecision::Set { deadline: mon("17:30") });
    assert_eq!(extend(&latest, mon("17:20"), mon("16:55")), ExtendDecision::Refused(ExtendRefusal::TooSoon));
    view.latest_mut().build.deadline = Some(mon("17:30"));
    assert_eq!(due(&view, mon("17:01")), None);
    assert_eq!(due(&view, mon("17:29")), None);
    assert_eq!(due(&view, mon("17:30")), AUTOSTOP);
}

#[test]
fn lc_23_no_ttl_no_deadline_no_stop() {
    let mut view = running(mon("09:00"), None);
    view.workspace.ttl = None;
    assert_eq!(completion(&view, mon("09:00")), Deadlines { deadline: None, max_deadline: None });
    for day in [1, 30, 365] {
        assert_eq!(due(&view, mon("09:00") + days(day)), None);
    }
}

#[test]
fn lc_24_suspended_owner_is_stopped_without_deadline() {
    let mut view = running(mon("09:00"), None);
    view.owner.status = UserStatus::Suspended;
    assert_eq!(due(&view, mon("09:01")), AUTOSTOP);
}

#[test]
fn lc_25_new_ttl_leaves_the_running_deadline() {
    // Rule-level half: only the stored deadline counts, whatever the ttl now.
    let mut view = running(mon("10:00"), Some(mon("18:00")));
    view.workspace.ttl = Some(hours(2));
    for tick_at in [mon("12:00"), mon("14:00"), mon("17:59")] {
        assert_eq!(due(&view, tick_at), None);
    }
    assert_eq!(due(&view, mon("18:00")), AUTOSTOP);
}

#[test]
fn lc_26_ttl_cleared_deadline_becomes_the_max() {
    let mut start = build(Transition::Start, JobStatus::Succeeded, mon("10:00")).build;
    start.deadline = Some(mon("18:00"));
    start.max_deadline = Some(mon("20:00"));
    assert_eq!(deadline_when_ttl_cleared(&start), Some(mon("20:00")));
    start.max_deadline = None;
    assert_eq!(deadline_when_ttl_cleared(&start), None);
}

#[test]
fn lc_27_template_ttl_when_user_autostop_is_disallowed() {
    let mut view = running(mon("10:00"), None);
    view.template.allow_user_autostop = false;
    view.template.default_ttl = hours(1);
    view.workspace.ttl = Some(mins(30));
    let deadlines = completion(&view, mon("10:00"));
    assert_eq!(deadlines.deadline, Some(mon("11:00")));
    view.latest_mut().build.deadline = deadlines.deadline;
    assert_eq!(due(&view, mon("10:45")), None);
    assert_eq!(due(&view, mon("11:00")), AUTOSTOP);
}

#[test]
fn lc_28_deadline_counts_from_the_next_autostart() {
    let mut view = running(mon("21:45"), None);
    view.workspace.ttl = Some(hours(12));
    view.workspace.autostart = Some("CRON_TZ=UTC 0 9 * * *".into());
    assert_eq!(completion(&view, mon("21:45")).deadline, Some(ts("2026-01-06T21:00:00Z")));
}

#[test]
fn lc_29_template_default_ttl_resets_workspace_ttls() {
    let mut old = template();
    old.allow_user_autostop = false;
    old.default_ttl = hours(24);
    let mut new = old.clone();
    new.default_ttl = hours(72);
    assert_eq!(ttl_after_template_update(&old, &new), Some(Some(hours(72))));
    new.default_ttl = Span::ZERO;
    assert_eq!(ttl_after_template_update(&old, &new), Some(None));
    // Nothing changed: ttls stay.
    assert_eq!(ttl_after_template_update(&old, &old), None);
    // User autostop allowed afterwards: ttls stay.
    new.allow_user_autostop = true;
    new.default_ttl = hours(72);
    assert_eq!(ttl_after_template_update(&old, &new), None);
    // Disallowing it resets them even with the same default.
    let mut allowed = old.clone();
    allowed.allow_user_autostop = true;
    assert_eq!(ttl_after_template_update(&allowed, &old), Some(Some(hours(24))));
}

fn every_day() -> AutostopRequirement {
    AutostopRequirement { days: WeekdaySet::ALL, weeks: 1 }
}

#[test]
fn lc_30_max_deadline_is_the_next_quiet_hours() {
    let mut view = running(mon("10:00"), None);
    view.template.autostop_requirement = every_day();
    assert_eq!(
        completion(&view, mon("10:00")),
        Deadlines { deadline: Some(mon("18:00")), max_deadline: Some(ts("2026-01-06T00:00:00Z")) }
    );
}

#[test]
fn lc_31_late_completion_max_deadline_two_days() {
    let mut view = running(mon("22:30"), None);
    view.template.autostop_requirement = every_day();
    assert_eq!(
        completion(&view, mon("22:30")),
        Deadlines { deadline: Some(ts("2026-01-06T06:30:00Z")), max_deadline: Some(ts("2026-01-07T00:00:00Z")) }
    );
}

#[test]
fn lc_32_requirement_days_and_weeks() {
    let saturday = AutostopRequirement { days: weekdays(&[Weekday::Sat]), weeks: 1 };
    assert_eq!(max_deadline(&saturday, &quiet_midnight_utc(), mon("10:00")), Some(ts("2026-01-10T00:00:00Z")));
    let fortnightly = AutostopRequirement { days: WeekdaySet::ALL, weeks: 2 };
    assert_eq!(max_deadline(&fortnightly, &quiet_midnight_utc(), mon("10:00")), Some(ts("2026-01-12T00:00:00Z")));
}

// ---- failed builds ------------------------------------------------------------------

#[test]
fn lc_33_failed_start_is_stopped_after_failure_ttl() {
    let mut view = view_failed(Transition::Start, mon("10:00"));
    view.template.failure_ttl = mins(1);
    assert_eq!(due(&view, mon("10:01")), None);
    assert_eq!(due(&view, mon("10:02")), FAILEDSTOP);
    view.template.failure_ttl = Span::ZERO;
    assert_eq!(due(&view, mon("10:02") + days(1)), None);
    let mut failed_delete = view_failed(Transition::Delete, mon("10:00"));
    failed_delete.template.failure_ttl = mins(1);
    assert_eq!(due(&failed_delete, mon("10:02") + days(1)), None);
}

fn view_failed(transition: Transition, at: Timestamp) -> LifecycleView {
    crate::rules::fixtures::view(Some(build(transition, JobStatus::Failed, at)))
}

#[test]
fn lc_34_failed_stop_is_retried_and_a_failed_retry_restarts_the_clock() {
    let mut view = view_failed(Transition::Stop, mon("10:00"));
    view.template.failure_ttl = mins(1);
    assert_eq!(due(&view, mon("10:02")), FAILEDSTOP);
    // That failedstop fails at 10:02:40.
    let mut retry = build(Transition::Stop, JobStatus::Failed, ts("2026-01-05T10:02:40Z"));
    retry.build.reason = BuildReason::Failedstop;
    view.latest = Some(retry);
    assert_eq!(due(&view, mon("10:03")), None);
    assert_eq!(due(&view, mon("10:04")), FAILEDSTOP);
}

// ---- dormancy and auto-delete ---------------------------------------------------------

#[test]
fn lc_35_idle_running_workspace_is_stopped_and_marked() {
    let mut view = running(mon("10:00"), None);
    view.template.time_til_dormant = days(7);
    view.workspace.last_used_at = mon("10:00");
    let next_monday = |hh_mm: &str| ts(&format!("2026-01-12T{hh_mm}:00Z"));
    assert!(!matches!(eval(&view, next_monday("10:00")).action, Action::Build { .. } | Action::Mark(_)));
    let tick_at = next_monday("10:01");
    match eval(&view, tick_at).action {
        Action::Build { build, mark } => {
            assert_eq!((build.transition, build.reason), (Transition::Stop, BuildReason::Dormancy));
            assert_eq!(mark, Some(DormancyMark { dormant_at: now_of(tick_at), deleting_at: None }));
        }
        other => panic!("expected a dormancy stop, got {other:?}"),
    }
}

#[test]
fn lc_36_idle_stopped_workspace_is_marked_without_build() {
    let mut view = stopped(mon("10:00"));
    view.template.time_til_dormant = days(7);
    view.workspace.last_used_at = mon("10:00");
    let tick_at = ts("2026-01-12T10:01:00Z");
    assert_eq!(
        eval(&view, tick_at).action,
        Action::Mark(DormancyMark { dormant_at: now_of(tick_at), deleting_at: None })
    );
}

#[test]
fn lc_37_autostop_comes_before_dormancy() {
    let mut view = running(mon("09:00"), Some(mon("17:00")));
    view.template.time_til_dormant = days(1);
    view.workspace.last_used_at = mon("09:00") - days(2);
    assert_eq!(due(&view, mon("17:00")), AUTOSTOP);
    assert!(matches!(eval(&view, mon("17:00")).action, Action::Build { mark: None, .. }));
    view.latest = Some(build(Transition::Stop, JobStatus::Succeeded, ts("2026-01-05T17:00:30Z")));
    assert!(matches!(eval(&view, mon("17:01")).action, Action::Mark(_)));
}

#[test]
fn lc_38_deleting_at_follows_autodelete() {
    let mut view = stopped(mon("10:00"));
    view.template.time_til_dormant = days(7);
    view.workspace.last_used_at = mon("10:00") - days(8);
    let tick_at = mon("10:01");
    view.template.time_til_dormant_autodelete = days(35);
    let now = now_of(tick_at);
    assert_eq!(
        eval(&view, tick_at).action,
        Action::Mark(DormancyMark { dormant_at: now, deleting_at: Some(now + days(35)) })
    );
    view.template.time_til_dormant_autodelete = Span::ZERO;
    assert_eq!(eval(&view, tick_at).action, Action::Mark(DormancyMark { dormant_at: now, deleting_at: None }));
}

fn dormant_stopped(dormant_at: Timestamp, autodelete: Span) -> LifecycleView {
    let mut view = stopped(dormant_at - days(1));
    view.template.time_til_dormant = days(7);
    view.template.time_til_dormant_autodelete = autodelete;
    view.workspace.dormant_at = Some(dormant_at);
    view.workspace.deleting_at = deleting_at_after_autodelete_change(&view.workspace, autodelete);
    view
}

#[test]
fn lc_39_dormant_workspace_is_deleted_after_deleting_at() {
    let view = dormant_stopped(mon("10:00"), days(30));
    assert_eq!(view.workspace.deleting_at, Some(mon("10:00") + days(30)));
    assert_eq!(due(&view, mon("10:00") + days(30)), None);
    assert_eq!(due(&view, mon("10:01") + days(30)), AUTODELETE);
    let mut awake = view.clone();
    awake.workspace.dormant_at = None;
    awake.workspace.deleting_at = None;
    awake.workspace.last_used_at = mon("10:00") + days(40);
    assert_eq!(due(&awake, mon("10:01") + days(40)), None);
}

#[test]
fn lc_40_failed_delete_is_retried_a_day_later() {
    let mut view = dormant_stopped(mon("10:00") - days(40), days(30));
    let tuesday = |hh_mm: &str| ts(&format!("2026-01-06T{hh_mm}:00Z"));
    let wednesday = |hh_mm: &str| ts(&format!("2026-01-07T{hh_mm}:00Z"));
    let mut failed = build(Transition::Delete, JobStatus::Failed, tuesday("10:00"));
    failed.build.reason = BuildReason::Autodelete;
    view.latest = Some(failed);
    assert_eq!(due(&view, tuesday("11:00")), None);
    assert_eq!(due(&view, wednesday("10:00")), None);
    assert_eq!(due(&view, wednesday("10:01")), AUTODELETE);
    // A failed delete with only a cancellation time counts from it.
    view.latest_mut().job.completed_at = None;
    view.latest_mut().job.canceled_at = Some(tuesday("12:00"));
    assert_eq!(due(&view, wednesday("12:00")), None);
    assert_eq!(due(&view, wednesday("12:01")), AUTODELETE);
}

#[test]
fn lc_41_autodelete_change_sets_deleting_at_from_dormant_at() {
    let mut view = dormant_stopped(ts("2026-01-01T00:00:00Z"), Span::ZERO);
    assert_eq!(view.workspace.deleting_at, None);
    assert_eq!(deleting_at_after_autodelete_change(&view.workspace, days(7)), Some(ts("2026-01-08T00:00:00Z")));
    view.workspace.dormant_at = None;
    assert_eq!(deleting_at_after_autodelete_change(&view.workspace, days(7)), None);
}

#[test]
fn lc_42_prebuild_gets_no_rule_and_no_bump() {
    // Everything due at once: deadline, schedule, idle, failure, reminder.
    let mut view = running(mon("08:00"), Some(mon("09:00")));
    view.workspace.owner_id = PREBUILDS_USER_ID;
    view.owner.id = PREBUILDS_USER_ID;
    view.workspace.autostart = Some("* * * * *".into());
    view.template.time_til_dormant = days(1);
    view.template.failure_ttl = mins(1);
    view.template.autostop_notify = hours(2);
    view.workspace.last_used_at = mon("08:00") - days(30);
    let nothing = LifecycleOutcome {
        next_start_at: None,
        action: Action::Reminder(ReminderDecision::None(NoReminder::NotRunning)),
        errors: vec![],
    };
    for transition in [Transition::Start, Transition::Stop] {
        for status in [JobStatus::Succeeded, JobStatus::Failed] {
            view.latest_mut().build.transition = transition;
            view.latest_mut().job.status = status;
            for day in [0, 1, 10] {
                assert_eq!(eval(&view, mon("09:30") + days(day)), nothing);
            }
        }
    }
    view.latest_mut().build.transition = Transition::Start;
    view.latest_mut().job.status = JobStatus::Succeeded;
    assert_eq!(bump(&view, USAGE, mon("08:59")), BumpDecision::Skip(BumpSkip::Prebuild));
}

// ---- activity bump --------------------------------------------------------------------

#[test]
fn lc_43_bump_when_under_57_minutes_left_capped_at_max() {
    let mut view = running(mon("09:00"), Some(mon("12:00")));
    assert_eq!(bump(&view, USAGE, mon("11:02")), BumpDecision::Skip(BumpSkip::NotDue));
    assert_eq!(bump(&view, USAGE, mon("11:04")), BumpDecision::Bump { deadline: mon("12:04") });
    view.latest_mut().build.max_deadline = Some(mon("12:30"));
    assert_eq!(bump(&view, USAGE, mon("11:45")), BumpDecision::Bump { deadline: mon("12:30") });
}

#[test]
fn lc_44_no_bump_without_deadline_bump_or_sessions() {
    let mut view = running(mon("09:00"), None);
    assert_eq!(bump(&view, USAGE, mon("11:30")), BumpDecision::Skip(BumpSkip::NoDeadline));
    view.latest_mut().build.deadline = Some(mon("12:00"));
    assert_eq!(
        bump(&view, ActivitySource::AgentUsage { sessions: 0 }, mon("11:30")),
        BumpDecision::Skip(BumpSkip::NoSessions)
    );
    view.template.activity_bump = Span::ZERO;
    assert_eq!(bump(&view, USAGE, mon("11:30")), BumpDecision::Skip(BumpSkip::BumpDisabled));
}

#[test]
fn lc_45_bump_before_autostart_counts_from_the_autostart() {
    let mut view = running(mon("00:30"), Some(mon("08:30")));
    view.workspace.autostart = Some("CRON_TZ=UTC 0 9 * * *".into());
    assert_eq!(bump(&view, USAGE, mon("08:10")), BumpDecision::Bump { deadline: mon("17:00") });
    view.template.allow_user_autostop = false;
    view.template.default_ttl = hours(4);
    assert_eq!(bump(&view, USAGE, mon("08:10")), BumpDecision::Bump { deadline: mon("13:00") });
    // Only agent usage takes the exception.
    assert_eq!(bump(&view, ActivitySource::ChatHeartbeat, mon("08:10")), BumpDecision::Bump { deadline: mon("09:10") });
}

#[test]
fn lc_46_chat_heartbeats_keep_the_workspace_running() {
    // Rule-level half: heartbeats every 30s from 09:00 bump the deadline
    // (10:00) early enough that no minute tick in 3 hours finds it due.
    let mut view = running(mon("09:00"), Some(mon("10:00")));
    let mut at = mon("09:00");
    while at <= mon("12:00") {
        if let BumpDecision::Bump { deadline } = bump(&view, ActivitySource::ChatHeartbeat, at) {
            view.latest_mut().build.deadline = Some(deadline);
        }
        if at == at.truncate(mins(1)) {
            assert_eq!(due(&view, at), None, "stopped at {at}");
        }
        at += secs(30);
    }
    assert!(view.latest.unwrap().build.deadline > Some(mon("12:57")));
}

// ---- reminders --------------------------------------------------------------------------

/// Marks the reminder as sent, as the executor does.
fn remember(view: &mut LifecycleView, decision: ReminderDecision) {
    if let ReminderDecision::Remind { stop_at, .. } = decision {
        view.latest_mut().build.notified_autostop_deadline = Some(stop_at);
    }
}

/// Runs the minute ticks in `[from, to]`, applying each reminder; returns
/// `(tick, stop_at)` of each.
fn reminders(view: &mut LifecycleView, from: Timestamp, to: Timestamp) -> Vec<(Timestamp, Timestamp)> {
    let mut sent = Vec::new();
    let mut tick_at = from;
    while tick_at <= to {
        if let Action::Reminder(decision) = eval(view, tick_at).action {
            if let ReminderDecision::Remind { stop_at, .. } = decision {
                sent.push((tick_at, stop_at));
            }
            remember(view, decision);
        }
        tick_at += mins(1);
    }
    sent
}

#[test]
fn lc_47_reminder_once_in_the_window_then_the_stop() {
    let mut view = running(mon("09:00"), Some(mon("17:00")));
    view.template.autostop_notify = mins(30);
    assert_eq!(reminder_at(&view, mon("16:29")), ReminderDecision::None(NoReminder::OutsideWindow));
    assert_eq!(reminders(&mut view, mon("16:29"), mon("16:59")), vec![(mon("16:30"), mon("17:00"))]);
    assert_eq!(reminder_at(&view, mon("16:45")), ReminderDecision::None(NoReminder::AlreadyReminded));
    assert_eq!(due(&view, mon("17:00")), AUTOSTOP);
}

#[test]
fn lc_48_extension_rearms_the_reminder() {
    let mut view = running(mon("09:00"), Some(mon("19:00")));
    view.template.autostop_notify = mins(30);
    view.latest_mut().build.notified_autostop_deadline = Some(mon("17:00"));
    assert_eq!(reminders(&mut view, mon("16:30"), mon("18:59")), vec![(mon("18:30"), mon("19:00"))]);
    view.template.autostop_notify = Span::ZERO;
    view.latest_mut().build.notified_autostop_deadline = Some(mon("17:00"));
    assert_eq!(reminders(&mut view, mon("16:30"), mon("18:59")), vec![]);
}

#[test]
fn lc_49_notify_beyond_the_lifetime_reminds_once() {
    let completed_at = ts("2026-01-05T10:00:20Z");
    let mut view = running(completed_at, None);
    view.template.autostop_notify = hours(100);
    view.latest_mut().build.deadline = completion(&view, completed_at).deadline;
    assert_eq!(view.latest_mut().build.deadline, Some(ts("2026-01-05T18:00:20Z")));
    assert_eq!(reminders(&mut view, mon("10:01"), mon("18:00")), vec![(mon("10:01"), ts("2026-01-05T18:00:20Z"))]);
}

#[test]
fn lc_50_chat_bound_workspace_gets_the_marker_not_the_notification() {
    let mut view = running(mon("09:00"), Some(mon("17:00")));
    view.template.autostop_notify = mins(30);
    view.has_live_chat = true;
    assert_eq!(reminder_at(&view, mon("16:30")), ReminderDecision::Remind { stop_at: mon("17:00"), notify: false });
}

#[test]
fn lc_51_active_owner_is_reminded_once_idle() {
    let mut view = running(mon("09:00"), Some(mon("17:00")));
    view.template.autostop_notify = mins(30);
    view.workspace.last_used_at = mon("16:29");
    assert_eq!(reminder_at(&view, mon("16:30")), ReminderDecision::None(NoReminder::OutsideWindow));
    assert_eq!(reminders(&mut view, mon("16:30"), mon("16:59")), vec![(mon("16:44"), mon("17:00"))]);
}

#[test]
fn lc_52_active_owner_hears_of_the_max_deadline_once() {
    let mut view = running(mon("09:00"), Some(mon("17:00")));
    view.template.autostop_notify = hours(2);
    view.latest_mut().build.max_deadline = Some(mon("18:00"));
    let mut sent = Vec::new();
    let mut tick_at = mon("16:00");
    while tick_at < mon("18:00") {
        // Usage every 3 minutes: the mark and the bump.
        if (tick_at - mon("16:00")).as_secs() % 180 == 0 {
            view.workspace.last_used_at = tick_at;
            if let BumpDecision::Bump { deadline } = bump(&view, USAGE, tick_at) {
                view.latest_mut().build.deadline = Some(deadline);
            }
        }
        match eval(&view, tick_at).action {
            Action::Reminder(decision) => {
                if let ReminderDecision::Remind { stop_at, .. } = decision {
                    sent.push((tick_at, stop_at));
                }
                remember(&mut view, decision);
            }
            other => panic!("unexpected {other:?} at {tick_at}"),
        }
        tick_at += mins(1);
    }
    assert_eq!(sent, vec![(mon("16:00"), mon("18:00"))]);
    assert_eq!(view.latest_mut().build.deadline, Some(mon("18:00")));
    assert_eq!(due(&view, mon("18:00")), AUTOSTOP);
}

#[test]
fn lc_53_short_bump_guard_reminds_an_idle_owner() {
    let mut view = running(mon("09:00"), Some(mon("16:10")));
    view.template.activity_bump = mins(10);
    view.template.autostop_notify = mins(30);
    view.workspace.last_used_at = mon("16:00");
    assert_eq!(reminder_at(&view, mon("16:04")), ReminderDecision::None(NoReminder::OutsideWindow));
    assert_eq!(reminder_at(&view, mon("16:05")), ReminderDecision::Remind { stop_at: mon("16:10"), notify: true });
}

#[test]
fn next_allowed_autostart_of_the_catalogue_setup() {
    // lc_14's search directly, as the API computes it when autostart changes.
    let schedule = CronSchedule::parse_weekly("CRON_TZ=UTC 0 9 * * *").unwrap();
    let weekdays_only = weekdays(&[Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri]);
    assert_eq!(
        next_allowed_autostart(&schedule, ts("2026-01-10T09:00:00Z"), weekdays_only),
        Some(ts("2026-01-12T09:00:00Z"))
    );
}
