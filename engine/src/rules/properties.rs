//! Property tests of the rules (lifecycle.md §10.4 and the bounds of §4-§5):
//! the scan is never stricter than the rules; a deadline never passes its max,
//! at completion or after a bump; a bump never shortens a deadline; the next
//! autostart is strictly after its origin, on an allowed day, within a week and
//! a step; and no stored text or instant, however absurd, makes a rule panic
//! or loop.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use crate::model::{
    AutomaticUpdates, AutostopRequirement, BuildWithJob, JobStatus, Parameters, Transition, UserStatus, WeekdaySet,
};
use crate::rules::bump::{activity_bump, ActivitySource, BumpDecision, BumpInput};
use crate::rules::deadline::{deadlines_at_completion, CompletionDeadlines, CompletionInput, Deadlines};
use crate::rules::eligibility::{candidate_arms, is_candidate};
use crate::rules::fixtures::{build, mon, version, view, V1, V2};
use crate::rules::lifecycle::{evaluate, Action, LifecycleView};
use crate::rules::reminder::ReminderDecision;
use crate::rules::schedule::{next_allowed_autostart, CronSchedule};
use crate::time::{Span, Timestamp};

const ZONES: &[&str] = &[
    "",
    "CRON_TZ=UTC ",
    "CRON_TZ=America/Chicago ",
    "CRON_TZ=Europe/Berlin ",
    "CRON_TZ=Australia/Lord_Howe ",
    "CRON_TZ=America/Santiago ",
    "CRON_TZ=Asia/Kolkata ",
    "CRON_TZ=Pacific/Apia ",
];

/// Instants around `base`: mostly within three hours of it (ticks are drawn
/// near it too, so windows and due instants meet), else within 40 days, at
/// whole minutes or any second, and now and then one from the whole range.
fn near(base: Timestamp) -> impl Strategy<Value = Timestamp> {
    let at = move |minutes: i64, seconds: i64| base + Span::from_mins(minutes) + Span::from_secs(seconds);
    prop_oneof![
        6 => (-180..180i64).prop_map(move |minutes| at(minutes, 0)),
        3 => (-180..180i64, 0..60i64).prop_map(move |(minutes, seconds)| at(minutes, seconds)),
        4 => (-40 * 24 * 60..40 * 24 * 60i64, prop_oneof![Just(0), 0..60i64])
            .prop_map(move |(minutes, seconds)| at(minutes, seconds)),
        1 => any::<i64>().prop_map(Timestamp::from_micros),
    ]
}

/// Instants around the catalogue's Monday 00:00.
fn instant() -> impl Strategy<Value = Timestamp> {
    near(mon("00:00"))
}

/// Spans: often zero, mostly minutes up to 30 days, now and then anything.
fn span() -> impl Strategy<Value = Span> {
    prop_oneof![
        3 => Just(Span::ZERO),
        8 => (1..30 * 24 * 60i64).prop_map(Span::from_mins),
        2 => (1..3 * 60 * 60i64).prop_map(Span::from_secs),
        1 => any::<i64>().prop_map(Span::from_micros),
    ]
}

/// Weekly schedules, valid in many shapes and zones, and some invalid.
fn weekly_text() -> impl Strategy<Value = String> {
    let minute = prop::sample::select(vec!["0", "30", "*/15", "*", "5,45", "0-10"]);
    let hour = prop::sample::select(vec!["0", "9", "2", "*", "8-18", "*/6", "23"]);
    let day = prop::sample::select(vec!["*", "1-5", "0", "sat", "mon,wed,fri", "6-7", "3"]);
    let zone = prop::sample::select(ZONES.to_vec());
    prop_oneof![
        8 => (zone, minute, hour, day).prop_map(|(zone, m, h, d)| format!("{zone}{m} {h} * * {d}")),
        1 => prop::sample::select(vec!["CRON_TZ=Mars/Base 0 9 * * *", "0 9 1 * *", "garbage", "", "0 9 * * 5#2"])
            .prop_map(String::from),
    ]
}

fn daily_text() -> impl Strategy<Value = String> {
    let minute = prop::sample::select(vec!["0", "30", "*/15", "59"]);
    let hour = prop::sample::select(vec!["0", "1", "2", "23", "*/8"]);
    let zone = prop::sample::select(ZONES.to_vec());
    prop_oneof![
        6 => (zone, minute, hour).prop_map(|(zone, m, h)| format!("{zone}{m} {h} * * *")),
        1 => prop::sample::select(vec!["", "CRON_TZ=Nowhere 0 0 * * *", "0 0 * * 1"]).prop_map(String::from),
    ]
}

fn days_set() -> impl Strategy<Value = WeekdaySet> {
    prop_oneof![1 => Just(WeekdaySet::ALL), 3 => any::<u8>().prop_map(WeekdaySet::from_bits)]
}

fn transition() -> impl Strategy<Value = Transition> {
    prop::sample::select(Transition::ALL.to_vec())
}

fn job_status() -> impl Strategy<Value = JobStatus> {
    prop_oneof![3 => Just(JobStatus::Succeeded), 2 => prop::sample::select(JobStatus::ALL.to_vec())]
}

fn user_status() -> impl Strategy<Value = UserStatus> {
    prop_oneof![3 => Just(UserStatus::Active), 2 => prop::sample::select(UserStatus::ALL.to_vec())]
}

prop_compose! {
    fn latest_build()(
        transition in transition(),
        status in job_status(),
        created_at in instant(),
        completed_at in prop::option::of(instant()),
        canceled_at in prop::option::of(instant()),
        deadline in prop::option::of(instant()),
        max_deadline in prop::option::of(instant()),
        marker in 0..4u8,
        marker_at in instant(),
        version_is_v2 in any::<bool>(),
        has_cpu in any::<bool>(),
    ) -> BuildWithJob {
        let mut latest = build(transition, status, created_at);
        latest.job.completed_at = completed_at;
        latest.job.canceled_at = canceled_at;
        latest.build.deadline = deadline;
        latest.build.max_deadline = max_deadline;
        latest.build.notified_autostop_deadline = match marker {
            0 => None,
            1 => deadline,
            2 => max_deadline,
            _ => Some(marker_at),
        };
        latest.build.version_id = if version_is_v2 { V2 } else { V1 };
        if has_cpu {
            latest.build.parameters = Parameters::from([("cpu".into(), "2".into())]);
        }
        latest
    }
}

prop_compose! {
    fn template_knobs()(
        notify in span(),
        failure_ttl in span(),
        time_til_dormant in span(),
        autodelete in span(),
        activity_bump in span(),
        default_ttl in span(),
        allow_user_autostart in any::<bool>(),
        allow_user_autostop in any::<bool>(),
        autostart_days in days_set(),
        require_active_version in any::<bool>(),
        active_is_v2 in any::<bool>(),
    ) -> (Span, Span, Span, Span, Span, Span, bool, bool, WeekdaySet, bool, bool) {
        (notify, failure_ttl, time_til_dormant, autodelete, activity_bump, default_ttl,
         allow_user_autostart, allow_user_autostop, autostart_days, require_active_version, active_is_v2)
    }
}

prop_compose! {
    /// Any view, its instants near the catalogue's Monday 00:00.
    fn any_view()(
        latest in prop::option::weighted(0.9, latest_build()),
        knobs in template_knobs(),
        autostart in prop::option::weighted(0.7, weekly_text()),
        next_start_at in prop::option::of(instant()),
        dormant_at in prop::option::weighted(0.3, instant()),
        deleting_at in prop::option::of(instant()),
        last_used_at in instant(),
        ttl in prop::option::of(span()),
        always_update in any::<bool>(),
        deleted in prop::bool::weighted(0.05),
        prebuild in prop::bool::weighted(0.05),
        owner_status in user_status(),
        (active_version, spec, has_live_chat) in (0..3u8, 0..3u8, any::<bool>()),
    ) -> LifecycleView {
        let (notify, failure_ttl, time_til_dormant, autodelete, activity_bump, default_ttl,
             allow_user_autostart, allow_user_autostop, autostart_days, require_active_version, active_is_v2) = knobs;
        let mut v = view(latest);
        v.template.autostop_notify = notify;
        v.template.failure_ttl = failure_ttl;
        v.template.time_til_dormant = time_til_dormant;
        v.template.time_til_dormant_autodelete = autodelete;
        v.template.activity_bump = activity_bump;
        v.template.default_ttl = default_ttl;
        v.template.allow_user_autostart = allow_user_autostart;
        v.template.allow_user_autostop = allow_user_autostop;
        v.template.autostart_days = autostart_days;
        v.template.require_active_version = require_active_version;
        v.template.active_version_id = if active_is_v2 { V2 } else { V1 };
        let specs: &[(&str, bool, Option<&str>)] = match spec {
            0 => &[],
            1 => &[("cpu", true, None)],
            _ => &[("cpu", false, Some("1")), ("disk", false, Some("10"))],
        };
        v.active_version = match active_version {
            0 => None,
            1 => Some(version(v.template.active_version_id, specs)),
            _ => Some(version(V1, specs)),
        };
        v.workspace.autostart = autostart;
        v.workspace.next_start_at = next_start_at;
        v.workspace.dormant_at = dormant_at;
        v.workspace.deleting_at = deleting_at;
        v.workspace.last_used_at = last_used_at;
        v.workspace.ttl = ttl;
        v.workspace.automatic_updates = if always_update { AutomaticUpdates::Always } else { AutomaticUpdates::Never };
        v.workspace.deleted = deleted;
        if prebuild {
            v.workspace.owner_id = crate::ids::PREBUILDS_USER_ID;
            v.owner.id = crate::ids::PREBUILDS_USER_ID;
        }
        v.owner.status = owner_status;
        v.has_live_chat = has_live_chat;
        v
    }
}

/// Puts one instant of `view` at `base + off_by` on the boundary of a rule or
/// arm (`snap` picks which; above 7, none).
fn snap_to_boundary(view: &mut LifecycleView, base: Timestamp, snap: u8, off_by: Span) {
    let at = base + off_by;
    let template = view.template.clone();
    match (snap, view.latest.as_mut()) {
        (0, Some(latest)) => latest.build.deadline = Some(at),
        (1, _) => view.workspace.next_start_at = Some(at),
        (2, _) => view.workspace.last_used_at = at - template.time_til_dormant,
        (3, _) => view.workspace.deleting_at = Some(at),
        (4, Some(latest)) => latest.job.completed_at = Some(at - template.failure_ttl),
        (5, Some(latest)) => latest.build.deadline = Some(at + template.autostop_notify),
        (6, Some(latest)) => latest.build.max_deadline = Some(at + template.autostop_notify),
        (7, Some(latest)) => latest.job.completed_at = Some(at - crate::limits::AUTODELETE_FAILED_RETRY_AFTER),
        _ => {}
    }
}

/// The workspaces rule 2 could start: 4c's `next_start_at` write on them must
/// be reached by the scan (arm B); elsewhere it only rides along (see
/// `eligibility`'s module documentation).
fn autostart_could_fire(view: &LifecycleView) -> bool {
    view.latest.as_ref().is_some_and(|latest| {
        latest.build.transition == Transition::Stop
            && latest.job.status != JobStatus::Failed
            && view.workspace.dormant_at.is_none()
            && view.owner.status == UserStatus::Active
    })
}

// Failing seeds are kept beside this file (`properties.regressions`).
proptest! {
    // The scan property gets more cases: few random views are due at all.
    #![proptest_config(ProptestConfig {
        cases: 4096,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    /// §10.4: whatever the rules act on, the scan admits.
    #[test]
    fn scan_is_never_stricter_than_the_rules(
        mut view in any_view(),
        tick_at in instant(),
        lag in 0..60i64,
        (snap, off_by) in (0..10u8, -1..=1i64),
    ) {
        snap_to_boundary(&mut view, tick_at, snap, Span::from_micros(off_by));
        let now = tick_at + Span::from_secs(lag);
        let outcome = evaluate(&view, tick_at, now);
        let acts = match &outcome.action {
            Action::Build { .. } | Action::Mark(_) | Action::Reminder(ReminderDecision::Remind { .. }) => true,
            Action::Wait | Action::Reminder(ReminderDecision::None(_)) => false,
        };
        let writes_next_start = matches!(outcome.next_start_at, Some(Some(_))) && autostart_could_fire(&view);
        if acts || writes_next_start {
            prop_assert!(
                is_candidate(&view, tick_at),
                "outcome {:?} at {} but no arm admits {:?}", outcome, tick_at, view
            );
        }
        // Prebuilds and deleted workspaces: nothing at all, and no arm.
        if view.workspace.deleted || view.workspace.is_prebuild() {
            prop_assert!(!acts && outcome.next_start_at.is_none() && outcome.errors.is_empty());
            prop_assert!(candidate_arms(&view, tick_at).is_empty());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    /// §5.1-§5.2: the deadline at completion never passes the max deadline,
    /// and neither is before the completion.
    #[test]
    fn completion_deadline_never_exceeds_max(
        knobs in template_knobs(),
        requirement_days in any::<u8>(),
        weeks in 0..=16u8,
        ttl in prop::option::of(span()),
        autostart in prop::option::of(weekly_text()),
        quiet_hours in daily_text(),
        completed_at in instant(),
    ) {
        let mut v = view(None);
        v.template.default_ttl = knobs.5;
        v.template.allow_user_autostop = knobs.7;
        v.template.autostart_days = knobs.8;
        v.template.autostop_requirement =
            AutostopRequirement { days: WeekdaySet::from_bits(requirement_days), weeks };
        v.workspace.ttl = ttl;
        v.workspace.autostart = autostart;
        let input = CompletionInput {
            template: &v.template,
            workspace: &v.workspace,
            quiet_hours: &quiet_hours,
            completed_at,
        };
        match deadlines_at_completion(&input) {
            CompletionDeadlines::Set(Deadlines { deadline, max_deadline }) => {
                if let (Some(deadline), Some(max)) = (deadline, max_deadline) {
                    prop_assert!(deadline <= max, "deadline {} past max {}", deadline, max);
                }
                prop_assert!(deadline.is_none_or(|deadline| deadline >= completed_at));
                prop_assert!(max_deadline.is_none_or(|max| max >= completed_at));
                if max_deadline.is_some() {
                    prop_assert!(deadline.is_some());
                }
            }
            CompletionDeadlines::Invalid { reason } => {
                prop_assert!(!reason.is_empty());
            }
        }
    }

    /// §5.4: a bump never shortens the deadline and never passes a max the
    /// deadline had not already passed.
    #[test]
    fn bump_never_shortens_nor_passes_max(
        view in any_view(),
        source in prop_oneof![
            (0..3u32).prop_map(|sessions| ActivitySource::AgentUsage { sessions }),
            Just(ActivitySource::ChatHeartbeat),
            Just(ActivitySource::AppStatus),
        ],
        now in instant(),
    ) {
        let Some(latest) = view.latest.as_ref() else { return Ok(()) };
        let input = BumpInput { workspace: &view.workspace, template: &view.template, latest, source };
        if let BumpDecision::Bump { deadline } = activity_bump(&input, now) {
            let old = latest.build.deadline;
            prop_assert!(old.is_some_and(|old| deadline > old), "bumped {:?} to {}", old, deadline);
            if let Some(max) = latest.build.max_deadline {
                prop_assert!(deadline <= max, "bumped to {} past max {}", deadline, max);
            }
        }
    }

    /// A deadline within its max stays within it through any bump.
    #[test]
    fn bumped_deadline_within_max(view in any_view(), before_max in span(), now in instant()) {
        let Some(mut latest) = view.latest.clone() else { return Ok(()) };
        let Some(max) = latest.build.max_deadline else { return Ok(()) };
        let deadline = max - before_max.abs();
        latest.build.deadline = Some(deadline);
        let input = BumpInput {
            workspace: &view.workspace,
            template: &view.template,
            latest: &latest,
            source: ActivitySource::AgentUsage { sessions: 1 },
        };
        if let BumpDecision::Bump { deadline: bumped } = activity_bump(&input, now) {
            prop_assert!(deadline < bumped && bumped <= max);
        }
    }

    /// §4 rule 2: strictly after `at`, on an allowed day in the schedule's
    /// zone, no later than the first activation at or past `at + 7d`.
    #[test]
    fn next_autostart_is_after_allowed_and_within_a_week_and_a_step(
        text in weekly_text(),
        at in instant(),
        days in days_set(),
    ) {
        let Ok(schedule) = CronSchedule::parse_weekly(&text) else { return Ok(()) };
        if let Some(next) = next_allowed_autostart(&schedule, at, days) {
            prop_assert!(next > at);
            prop_assert!(days.contains(schedule.weekday_of(next)));
            let last_tested = schedule.next_after(at + Span::from_days(7) - Span::from_micros(1));
            prop_assert!(last_tested.is_some_and(|last| next <= last), "{} past {:?}", next, last_tested);
            // Nothing allowed was skipped: the one step before is not allowed
            // or is the answer.
            let first = schedule.next_after(at);
            prop_assert!(first.is_some());
            if first.is_some_and(|first| days.contains(schedule.weekday_of(first))) {
                prop_assert_eq!(first, Some(next));
            }
        } else if !days.is_empty() && (SEARCH_LOW..SEARCH_HIGH).contains(&at) {
            // None only when no activation of the week is on an allowed day.
            let mut cursor = at;
            while let Some(activation) = schedule.next_after(cursor) {
                prop_assert!(!days.contains(schedule.weekday_of(activation)));
                if activation >= at + Span::from_days(7) {
                    break;
                }
                // Jump a day ahead: activations on one local day share its weekday.
                cursor = activation.max(cursor + Span::from_hours(20));
            }
        }
    }

    /// Stored text is untrusted: parsing never panics, and every search on a
    /// parsed schedule ends.
    #[test]
    fn arbitrary_schedule_text_never_panics(
        text in prop_oneof![
            "[ -~]{0,40}",
            ("(CRON_TZ=[A-Za-z/_]{0,12} )?", prop::collection::vec("[0-9*,/LW#?A-Za-z-]{1,5}", 0..8))
                .prop_map(|(zone, fields)| format!("{zone}{}", fields.join(" "))),
        ],
        at in instant(),
        days in days_set(),
    ) {
        for schedule in [CronSchedule::parse_weekly(&text), CronSchedule::parse_daily(&text)].into_iter().flatten() {
            if let Some(next) = schedule.next_after(at) {
                prop_assert!(next > at);
            }
            let _ = schedule.weekday_of(at);
            let _ = next_allowed_autostart(&schedule, at, days);
        }
    }
}

/// Ordinary instants (years 1970-2100), where an exhaustive check is cheap.
const SEARCH_LOW: Timestamp = Timestamp::from_micros(0);
const SEARCH_HIGH: Timestamp = Timestamp::from_micros(4_102_444_800_000_000);
