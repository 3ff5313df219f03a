//! The lifecycle rules of one workspace at one tick (lifecycle.md §4): which
//! transition is due, if any, else whether a reminder is (§6).
//!
//! Rules compare against `tick_at`, in order, first match wins: 1 autostop,
//! 2 autostart, 3 failed-build stop, 4 dormancy, 5 auto-delete; none: the
//! reminder check. An unfinished latest job means wait. Prebuilds and deleted
//! workspaces get nothing. Every comparison of an instant plus a span against
//! `tick_at` is written as in the scan (`instant + span < tick_at`), so the two
//! agree even where saturating arithmetic clamps.

use crate::ids::VersionId;
use crate::limits::AUTODELETE_FAILED_RETRY_AFTER;
use crate::model::{
    AutomaticUpdates, BuildReason, BuildWithJob, JobStatus, Parameters, Template, TemplateVersion, Transition, User,
    UserStatus, Workspace,
};
use crate::rules::reminder::{reminder, NoReminder, ReminderDecision, ReminderInput};
use crate::rules::schedule::{next_allowed_autostart, CronSchedule, ScheduleError};
use crate::time::{Span, Timestamp};

/// Everything the rules read about one workspace, loaded in its transaction.
#[derive(Debug, Clone)]
pub struct LifecycleView {
    pub workspace: Workspace,
    pub owner: User,
    pub template: Template,
    pub latest: Option<BuildWithJob>,
    /// The template's active version (auto-update reads its parameters).
    pub active_version: Option<TemplateVersion>,
    /// A non-archived chat names the workspace.
    pub has_live_chat: bool,
}

/// The dormancy mark of rule 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DormancyMark {
    /// `now` (the replica's clock), not tick_at.
    pub dormant_at: Timestamp,
    /// `now + time_til_dormant_autodelete`, unset when that is 0.
    pub deleting_at: Option<Timestamp>,
}

/// A build a rule wants inserted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBuild {
    pub transition: Transition,
    pub reason: BuildReason,
    pub version_id: VersionId,
    pub parameters: Parameters,
    /// Autostart moving to another version: `(from, to)`; the driver writes
    /// `workspace_auto_updated`.
    pub auto_update: Option<(VersionId, VersionId)>,
}

/// A rule's error for this workspace (logged and counted; other rules and other
/// workspaces go on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleError {
    /// The stored autostart schedule does not parse (§4 rule 2).
    ScheduleInvalid(ScheduleError),
    /// The version autostart moves to rejects the carried parameters.
    BuildInvalid { parameter: String },
}

/// What the tick does to the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The latest job is unfinished: no rule applies yet.
    Wait,
    /// Insert a build (behind the provisioner gate); with the dormancy mark for
    /// a dormancy stop.
    Build { build: PlannedBuild, mark: Option<DormancyMark> },
    /// Rule 4 on a workspace that is not running: mark only, no gate.
    Mark(DormancyMark),
    /// No rule matched: the reminder check's answer.
    Reminder(ReminderDecision),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleOutcome {
    /// §2 step 4c: `autostart` set and `next_start_at` unset: the value computed
    /// from tick_at, to write even if nothing else happens (`Some(None)` when no
    /// allowed activation exists).
    pub next_start_at: Option<Option<Timestamp>>,
    pub action: Action,
    pub errors: Vec<RuleError>,
}

/// §2 step 4c-4d: evaluate the rules, first match wins. Rules compare against
/// `tick_at`; the dormancy mark is stamped with `now`.
///
/// Readings of the semantics made here:
/// - a prebuild or deleted workspace: no rule, no reminder, no `next_start_at`
///   (action `Reminder(None(NotRunning))`, the no-op);
/// - an invalid stored autostart is reported as `ScheduleInvalid` on every
///   evaluation (4c and rule 2 both need it) and 4c writes nothing; rules 3-5
///   still run;
/// - 4c is skipped while `dormant_at` is set (the dormancy mark unsets
///   `next_start_at`; a value computed while dormant would be long past, and
///   due at once, when the workspace is activated) and when this evaluation
///   marks the workspace dormant;
/// - no latest build: no rule matches (the scan never admits such a workspace);
/// - rule 2 whose new version rejects the carried parameters reports
///   `BuildInvalid` and builds nothing; rules 3-5 still run (only rule 4 can
///   then match: an idle workspace still goes dormant).
pub fn evaluate(view: &LifecycleView, tick_at: Timestamp, now: Timestamp) -> LifecycleOutcome {
    let workspace = &view.workspace;
    if workspace.deleted || workspace.is_prebuild() || view.owner.is_prebuilds() {
        return LifecycleOutcome {
            next_start_at: None,
            action: Action::Reminder(ReminderDecision::None(NoReminder::NotRunning)),
            errors: Vec::new(),
        };
    }
    let mut errors = Vec::new();
    let schedule = match workspace.autostart.as_deref().map(CronSchedule::parse_weekly) {
        None => None,
        Some(Ok(schedule)) => Some(schedule),
        Some(Err(error)) => {
            errors.push(RuleError::ScheduleInvalid(error));
            None
        }
    };
    // 4c.
    let mut next_start_at = match &schedule {
        Some(schedule) if workspace.next_start_at.is_none() && workspace.dormant_at.is_none() => {
            Some(next_allowed_autostart(schedule, tick_at, view.template.autostart_days))
        }
        _ => None,
    };
    let action = match &view.latest {
        None => Action::Reminder(reminder(&reminder_input(view), tick_at)),
        Some(latest) if !latest.job.status.is_terminal() => Action::Wait,
        Some(latest) => match due_rule(view, latest, schedule.is_some(), tick_at, now, &mut errors) {
            Some(action) => action,
            None => Action::Reminder(reminder(&reminder_input(view), tick_at)),
        },
    };
    if matches!(action, Action::Mark(_) | Action::Build { mark: Some(_), .. }) {
        next_start_at = None;
    }
    LifecycleOutcome { next_start_at, action, errors }
}

fn reminder_input(view: &LifecycleView) -> ReminderInput<'_> {
    ReminderInput {
        workspace: &view.workspace,
        owner: &view.owner,
        template: &view.template,
        latest: view.latest.as_ref(),
        has_live_chat: view.has_live_chat,
    }
}

/// Rules 1-5 on a workspace whose latest job is finished.
fn due_rule(
    view: &LifecycleView,
    latest: &BuildWithJob,
    schedule_valid: bool,
    tick_at: Timestamp,
    now: Timestamp,
    errors: &mut Vec<RuleError>,
) -> Option<Action> {
    let workspace = &view.workspace;
    let template = &view.template;
    let build = &latest.build;
    let job = &latest.job;
    let failed = job.status == JobStatus::Failed;
    // Rules 1, 3, 4 and 5 build the latest build's version and parameters.
    let same_version = |transition, reason| PlannedBuild {
        transition,
        reason,
        version_id: build.version_id,
        parameters: build.parameters.clone(),
        auto_update: None,
    };
    let unmarked = |build| Action::Build { build, mark: None };

    // 1. Autostop.
    if !failed
        && workspace.dormant_at.is_none()
        && build.transition == Transition::Start
        && (view.owner.status == UserStatus::Suspended || build.deadline.is_some_and(|deadline| deadline <= tick_at))
    {
        return Some(unmarked(same_version(Transition::Stop, BuildReason::Autostop)));
    }

    // 2. Autostart.
    if view.owner.status == UserStatus::Active
        && !failed
        && workspace.dormant_at.is_none()
        && build.transition == Transition::Stop
        && template.allow_user_autostart
        && schedule_valid
        && workspace.next_start_at.is_some_and(|next_start_at| next_start_at <= tick_at)
    {
        match autostart_build(view, latest) {
            Ok(planned) => return Some(Action::Build { build: planned, mark: None }),
            Err(error) => errors.push(error),
        }
    }

    // 3. Failed-build stop.
    if template.failure_ttl.is_positive()
        && failed
        && matches!(build.transition, Transition::Start | Transition::Stop)
        && job.completed_at.is_some_and(|completed_at| completed_at + template.failure_ttl < tick_at)
    {
        return Some(unmarked(same_version(Transition::Stop, BuildReason::Failedstop)));
    }

    // 4. Dormancy.
    if workspace.dormant_at.is_none()
        && template.time_til_dormant.is_positive()
        && workspace.last_used_at + template.time_til_dormant < tick_at
    {
        let autodelete = template.time_til_dormant_autodelete;
        let mark = DormancyMark { dormant_at: now, deleting_at: autodelete.is_positive().then(|| now + autodelete) };
        return Some(match build.transition {
            Transition::Start => {
                Action::Build { build: same_version(Transition::Stop, BuildReason::Dormancy), mark: Some(mark) }
            }
            Transition::Stop | Transition::Delete => Action::Mark(mark),
        });
    }

    // 5. Auto-delete.
    if workspace.dormant_at.is_some()
        && template.time_til_dormant_autodelete.is_positive()
        && workspace.deleting_at.is_some_and(|deleting_at| deleting_at < tick_at)
        && failed_delete_retry_due(latest, tick_at)
    {
        return Some(unmarked(same_version(Transition::Delete, BuildReason::Autodelete)));
    }
    None
}

/// Rule 5's delay: after a failed delete, another only once it finished more
/// than 24h ago (`completed_at`, else `canceled_at`; a failed job with neither,
/// only in corrupt data, counts from its build's creation).
fn failed_delete_retry_due(latest: &BuildWithJob, tick_at: Timestamp) -> bool {
    if latest.build.transition != Transition::Delete || latest.job.status != JobStatus::Failed {
        return true;
    }
    let finished_at = latest.job.finished_at().unwrap_or(latest.build.created_at);
    finished_at + AUTODELETE_FAILED_RETRY_AFTER < tick_at
}

/// Rule 2's build: the active version when the template requires it or the
/// workspace updates automatically, else the latest build's; the latest
/// build's parameters carried, checked against the chosen version.
fn autostart_build(view: &LifecycleView, latest: &BuildWithJob) -> Result<PlannedBuild, RuleError> {
    let from = latest.build.version_id;
    let to_active =
        view.template.require_active_version || view.workspace.automatic_updates == AutomaticUpdates::Always;
    let to = if to_active { view.template.active_version_id } else { from };
    let mut parameters = latest.build.parameters.clone();
    // The specs are known for the active version only; the latest build's own
    // version accepted these parameters when it was built.
    if let Some(version) = view.active_version.as_ref().filter(|version| version.id == to) {
        parameters = carry_parameters(version, parameters)?;
    }
    Ok(PlannedBuild {
        transition: Transition::Start,
        reason: BuildReason::Autostart,
        version_id: to,
        parameters,
        auto_update: (to != from).then_some((from, to)),
    })
}

/// Carried values checked against a version's specs: a required parameter
/// missing is an error; a missing optional one with a default gets it. Values
/// the version does not declare are carried as they are.
fn carry_parameters(version: &TemplateVersion, mut parameters: Parameters) -> Result<Parameters, RuleError> {
    for spec in &version.parameters {
        if parameters.contains_key(&spec.name) {
            continue;
        }
        if spec.required {
            return Err(RuleError::BuildInvalid { parameter: spec.name.clone() });
        }
        if let Some(default) = &spec.default {
            parameters.insert(spec.name.clone(), default.clone());
        }
    }
    Ok(parameters)
}

/// `next_start_at` after a build of this workspace is inserted at `created_at`
/// (§4 rule 2): the next allowed autostart, or `None` (no or invalid schedule,
/// no allowed day).
///
/// A dormancy stop's mark unsets `next_start_at` after this (the mark wins).
pub fn next_start_at_after_build(
    workspace: &Workspace,
    template: &Template,
    created_at: Timestamp,
) -> Option<Timestamp> {
    if workspace.is_prebuild() {
        return None;
    }
    let schedule = CronSchedule::parse_weekly(workspace.autostart.as_deref()?).ok()?;
    next_allowed_autostart(&schedule, created_at, template.autostart_days)
}

/// §5.3 autodelete change on a dormant workspace: `deleting_at` becomes
/// `dormant_at + time_til_dormant_autodelete` (unset when that is 0 or the
/// workspace is not dormant).
pub fn deleting_at_after_autodelete_change(workspace: &Workspace, autodelete: Span) -> Option<Timestamp> {
    let dormant_at = workspace.dormant_at?;
    autodelete.is_positive().then(|| dormant_at + autodelete)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::fixtures::{build, days, mon, running, stopped, version, view, ViewExt, V1, V2};

    fn eval(view: &LifecycleView, tick_at: Timestamp) -> LifecycleOutcome {
        evaluate(view, tick_at, tick_at)
    }

    fn nothing() -> Action {
        Action::Reminder(ReminderDecision::None(NoReminder::NotifyOff))
    }

    #[test]
    fn waiting_job_still_computes_next_start_at() {
        let mut v = view(Some(build(Transition::Stop, JobStatus::Pending, mon("08:00"))));
        v.workspace.autostart = Some("CRON_TZ=UTC 0 9 * * *".into());
        let outcome = eval(&v, mon("08:01"));
        assert_eq!(outcome.action, Action::Wait);
        assert_eq!(outcome.next_start_at, Some(Some(mon("09:00"))));
        for status in [JobStatus::Running, JobStatus::Canceling] {
            v.latest_mut().job.status = status;
            assert_eq!(eval(&v, mon("08:01")).action, Action::Wait);
        }
    }

    #[test]
    fn no_latest_build_matches_no_rule() {
        let mut v = view(None);
        v.workspace.autostart = Some("CRON_TZ=UTC 0 9 * * *".into());
        v.template.time_til_dormant = days(1);
        v.workspace.last_used_at = mon("09:00") - days(3);
        let outcome = eval(&v, mon("09:00"));
        assert_eq!(outcome.action, nothing());
        assert_eq!(outcome.next_start_at, Some(Some(mon("09:00") + days(1))));
    }

    #[test]
    fn deleted_workspace_gets_nothing() {
        let mut v = running(mon("08:00"), Some(mon("09:00")));
        v.workspace.deleted = true;
        v.workspace.autostart = Some("bad".into());
        let outcome = eval(&v, mon("10:00"));
        assert_eq!(outcome.action, Action::Reminder(ReminderDecision::None(NoReminder::NotRunning)));
        assert_eq!((outcome.next_start_at, outcome.errors), (None, vec![]));
    }

    #[test]
    fn next_start_at_not_computed_while_dormant_or_when_marking() {
        let mut v = stopped(mon("08:00"));
        v.workspace.autostart = Some("CRON_TZ=UTC 0 9 * * *".into());
        v.workspace.dormant_at = Some(mon("07:00"));
        assert_eq!(eval(&v, mon("08:01")).next_start_at, None);
        v.workspace.dormant_at = None;
        v.template.time_til_dormant = days(1);
        v.workspace.last_used_at = mon("08:00") - days(2);
        let outcome = eval(&v, mon("08:01"));
        assert!(matches!(outcome.action, Action::Mark(_)));
        assert_eq!(outcome.next_start_at, None);
    }

    #[test]
    fn dormancy_of_a_failed_start_stops_it_and_of_a_delete_only_marks() {
        let mut v = view(Some(build(Transition::Start, JobStatus::Failed, mon("08:00"))));
        v.template.time_til_dormant = days(1);
        v.template.time_til_dormant_autodelete = days(2);
        v.workspace.last_used_at = mon("08:00") - days(2);
        let mark = DormancyMark { dormant_at: mon("08:01"), deleting_at: Some(mon("08:01") + days(2)) };
        match eval(&v, mon("08:01")).action {
            Action::Build { build, mark: Some(got) } => {
                assert_eq!((build.transition, build.reason), (Transition::Stop, BuildReason::Dormancy));
                assert_eq!(got, mark);
            }
            other => panic!("expected a dormancy stop, got {other:?}"),
        }
        v.latest = Some(build(Transition::Delete, JobStatus::Failed, mon("08:00")));
        assert_eq!(eval(&v, mon("08:01")).action, Action::Mark(mark));
        // A canceled start is not failed: still a dormancy stop (rule 1 needs a deadline).
        v.latest = Some(build(Transition::Start, JobStatus::Canceled, mon("08:00")));
        assert!(matches!(eval(&v, mon("08:01")).action, Action::Build { mark: Some(_), .. }));
    }

    #[test]
    fn rules_1_3_4_5_rebuild_the_latest_version_and_parameters() {
        let mut v = running(mon("08:00"), Some(mon("09:00")));
        v.template.active_version_id = V2;
        v.workspace.automatic_updates = AutomaticUpdates::Always;
        v.latest_mut().build.parameters = Parameters::from([("cpu".into(), "4".into())]);
        match eval(&v, mon("09:00")).action {
            Action::Build { build, .. } => {
                assert_eq!(build.version_id, V1);
                assert_eq!(build.parameters, Parameters::from([("cpu".into(), "4".into())]));
                assert_eq!(build.auto_update, None);
            }
            other => panic!("expected autostop, got {other:?}"),
        }
    }

    #[test]
    fn canceled_delete_is_retried_without_delay() {
        let mut v = view(Some(build(Transition::Delete, JobStatus::Canceled, mon("08:00"))));
        v.template.time_til_dormant_autodelete = days(1);
        v.workspace.dormant_at = Some(mon("08:00") - days(3));
        v.workspace.deleting_at = Some(mon("08:00") - days(2));
        match eval(&v, mon("08:01")).action {
            Action::Build { build, mark: None } => {
                assert_eq!((build.transition, build.reason), (Transition::Delete, BuildReason::Autodelete))
            }
            other => panic!("expected autodelete, got {other:?}"),
        }
    }

    #[test]
    fn autostart_to_an_active_version_without_specs_carries_parameters() {
        let mut v = stopped(mon("08:00"));
        v.workspace.autostart = Some("CRON_TZ=UTC 0 9 * * *".into());
        v.workspace.next_start_at = Some(mon("09:00"));
        v.workspace.automatic_updates = AutomaticUpdates::Always;
        v.template.active_version_id = V2;
        v.active_version = None;
        v.latest_mut().build.parameters = Parameters::from([("cpu".into(), "4".into())]);
        match eval(&v, mon("09:00")).action {
            Action::Build { build, .. } => {
                assert_eq!(build.version_id, V2);
                assert_eq!(build.auto_update, Some((V1, V2)));
                assert_eq!(build.parameters, Parameters::from([("cpu".into(), "4".into())]));
            }
            other => panic!("expected autostart, got {other:?}"),
        }
    }

    #[test]
    fn build_invalid_falls_through_to_dormancy() {
        let mut v = stopped(mon("08:00"));
        v.workspace.autostart = Some("CRON_TZ=UTC 0 9 * * *".into());
        v.workspace.next_start_at = Some(mon("09:00"));
        v.workspace.automatic_updates = AutomaticUpdates::Always;
        v.template.active_version_id = V2;
        v.active_version = Some(version(V2, &[("cpu", true, None)]));
        v.template.time_til_dormant = days(1);
        v.workspace.last_used_at = mon("09:00") - days(2);
        let outcome = eval(&v, mon("09:00"));
        assert_eq!(outcome.errors, vec![RuleError::BuildInvalid { parameter: "cpu".into() }]);
        assert!(matches!(outcome.action, Action::Mark(_)));
    }

    #[test]
    fn failed_stop_is_not_autostarted() {
        let mut v = view(Some(build(Transition::Stop, JobStatus::Failed, mon("08:00"))));
        v.workspace.autostart = Some("CRON_TZ=UTC 0 9 * * *".into());
        v.workspace.next_start_at = Some(mon("09:00"));
        assert_eq!(eval(&v, mon("09:00")).action, nothing());
    }

    #[test]
    fn next_start_at_after_build_needs_a_valid_schedule() {
        let v = stopped(mon("08:00"));
        let mut workspace = v.workspace.clone();
        assert_eq!(next_start_at_after_build(&workspace, &v.template, mon("08:00")), None);
        workspace.autostart = Some("0 9 * * 8".into());
        assert_eq!(next_start_at_after_build(&workspace, &v.template, mon("08:00")), None);
        workspace.autostart = Some("0 9 * * *".into());
        assert_eq!(next_start_at_after_build(&workspace, &v.template, mon("08:00")), Some(mon("09:00")));
        workspace.owner_id = crate::ids::PREBUILDS_USER_ID;
        assert_eq!(next_start_at_after_build(&workspace, &v.template, mon("08:00")), None);
    }
}
