//! The lifecycle scan's filter (lifecycle.md §3), stated over loaded data: the
//! store's scan query must return every workspace this accepts (tests compare
//! the two), and this must accept every workspace a rule or the reminder check
//! would act on (never stricter than §4).
//!
//! The arms, over the workspace, its owner, template, latest build and job
//! (common: not deleted, owner not the prebuilds user, a latest build exists):
//! - **A** transition start, job not failed, not dormant, and owner suspended
//!   or `deadline <= tick_at`;
//! - **B** transition stop, job not failed, not dormant, owner active,
//!   `autostart` set (any text), `next_start_at` unset or `<= tick_at`;
//! - **C** not dormant, `time_til_dormant > 0`,
//!   `last_used_at + time_til_dormant < tick_at`;
//! - **D** dormant, `deleting_at` set, `time_til_dormant_autodelete > 0`,
//!   `deleting_at < tick_at`;
//! - **E** `failure_ttl > 0`, job failed, transition start or stop,
//!   `completed_at` set and `completed_at + failure_ttl < tick_at`;
//! - **F** notify > 0, transition start, job succeeded, and the deadline or
//!   the max deadline in `(tick_at, tick_at + notify]` and distinct from the
//!   marker (SQL: `IS DISTINCT FROM`, an unset marker differs from any instant).
//!
//! What the scan must cover (§3, §10.4): every `Build`, `Mark` and
//! `Reminder::Remind` that `evaluate` returns, and the 4c `next_start_at`
//! write of a workspace rule 2 could start (stopped, job not failed, not
//! dormant, owner active): arm B admits those with `next_start_at` unset.
//! 4c's write on other workspaces (running, failed, suspended or dormant
//! owner) happens only when another arm admits them; it is not needed there,
//! since rule 2 cannot fire until a new build, whose insert sets
//! `next_start_at` anyway.

use crate::model::{JobStatus, Transition, UserStatus};
use crate::rules::lifecycle::LifecycleView;
use crate::time::Timestamp;

/// Which arm of §3 admitted a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Arm {
    /// A: rule 1 (autostop).
    Autostop,
    /// B: rule 2 without permission and schedule validity.
    Autostart,
    /// C: rule 4 (dormancy).
    Dormancy,
    /// D: rule 5 without the failed-delete delay.
    Autodelete,
    /// E: rule 3 (failed-build stop).
    FailedStop,
    /// F: the reminder window.
    Reminder,
}

/// The arms that admit `view` at `tick_at` (empty: not a candidate).
pub fn candidate_arms(view: &LifecycleView, tick_at: Timestamp) -> Vec<Arm> {
    let workspace = &view.workspace;
    let template = &view.template;
    let Some(latest) = view.latest.as_ref() else {
        return Vec::new();
    };
    if workspace.deleted || workspace.is_prebuild() {
        return Vec::new();
    }
    let build = &latest.build;
    let status = latest.job.status;
    let dormant = workspace.dormant_at.is_some();
    let mut arms = Vec::new();

    if build.transition == Transition::Start
        && status != JobStatus::Failed
        && !dormant
        && (view.owner.status == UserStatus::Suspended || build.deadline.is_some_and(|deadline| deadline <= tick_at))
    {
        arms.push(Arm::Autostop);
    }
    if build.transition == Transition::Stop
        && status != JobStatus::Failed
        && !dormant
        && view.owner.status == UserStatus::Active
        && workspace.autostart.is_some()
        && workspace.next_start_at.is_none_or(|next_start_at| next_start_at <= tick_at)
    {
        arms.push(Arm::Autostart);
    }
    if !dormant
        && template.time_til_dormant.is_positive()
        && workspace.last_used_at + template.time_til_dormant < tick_at
    {
        arms.push(Arm::Dormancy);
    }
    if dormant
        && template.time_til_dormant_autodelete.is_positive()
        && workspace.deleting_at.is_some_and(|deleting_at| deleting_at < tick_at)
    {
        arms.push(Arm::Autodelete);
    }
    if template.failure_ttl.is_positive()
        && status == JobStatus::Failed
        && matches!(build.transition, Transition::Start | Transition::Stop)
        && latest.job.completed_at.is_some_and(|completed_at| completed_at + template.failure_ttl < tick_at)
    {
        arms.push(Arm::FailedStop);
    }
    let notify = template.autostop_notify;
    let announced = |instant: Option<Timestamp>| {
        instant.is_some_and(|at| tick_at < at && at <= tick_at + notify && build.notified_autostop_deadline != Some(at))
    };
    if notify.is_positive()
        && build.transition == Transition::Start
        && status == JobStatus::Succeeded
        && (announced(build.deadline) || announced(build.max_deadline))
    {
        arms.push(Arm::Reminder);
    }
    arms
}

pub fn is_candidate(view: &LifecycleView, tick_at: Timestamp) -> bool {
    !candidate_arms(view, tick_at).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::PREBUILDS_USER_ID;
    use crate::model::JobStatus;
    use crate::rules::fixtures::{build, days, mins, mon, running, stopped, view, ViewExt};

    #[test]
    fn arm_a_autostop_inclusive_deadline_or_suspended_owner() {
        let mut v = running(mon("08:00"), Some(mon("17:00")));
        assert_eq!(candidate_arms(&v, mon("16:59")), vec![]);
        assert_eq!(candidate_arms(&v, mon("17:00")), vec![Arm::Autostop]);
        v.latest_mut().build.deadline = None;
        v.owner.status = UserStatus::Suspended;
        assert_eq!(candidate_arms(&v, mon("10:00")), vec![Arm::Autostop]);
        v.latest_mut().job.status = JobStatus::Failed;
        assert_eq!(candidate_arms(&v, mon("10:00")), vec![]);
    }

    #[test]
    fn arm_b_autostart_any_text_unset_or_due() {
        let mut v = stopped(mon("08:00"));
        v.workspace.autostart = Some("not even a cron".into());
        assert_eq!(candidate_arms(&v, mon("08:01")), vec![Arm::Autostart]);
        v.workspace.next_start_at = Some(mon("09:00"));
        assert_eq!(candidate_arms(&v, mon("08:59")), vec![]);
        assert_eq!(candidate_arms(&v, mon("09:00")), vec![Arm::Autostart]);
        v.owner.status = UserStatus::Dormant;
        assert_eq!(candidate_arms(&v, mon("09:00")), vec![]);
    }

    #[test]
    fn arms_c_d_e_strict_after_their_spans() {
        let mut v = stopped(mon("08:00"));
        v.template.time_til_dormant = days(1);
        v.workspace.last_used_at = mon("08:00");
        assert_eq!(candidate_arms(&v, mon("08:00") + days(1)), vec![]);
        assert_eq!(candidate_arms(&v, mon("08:01") + days(1)), vec![Arm::Dormancy]);

        v.workspace.dormant_at = Some(mon("08:00"));
        v.workspace.deleting_at = Some(mon("09:00"));
        v.template.time_til_dormant_autodelete = mins(60);
        assert_eq!(candidate_arms(&v, mon("09:00")), vec![]);
        assert_eq!(candidate_arms(&v, mon("09:01")), vec![Arm::Autodelete]);

        let mut f = view(Some(build(Transition::Start, JobStatus::Failed, mon("10:00"))));
        f.template.failure_ttl = mins(1);
        assert_eq!(candidate_arms(&f, mon("10:01")), vec![]);
        assert_eq!(candidate_arms(&f, mon("10:02")), vec![Arm::FailedStop]);
        f.latest_mut().build.transition = Transition::Delete;
        assert_eq!(candidate_arms(&f, mon("10:02")), vec![]);
    }

    #[test]
    fn arm_f_reminder_window_and_marker() {
        let mut v = running(mon("08:00"), Some(mon("17:00")));
        v.template.autostop_notify = mins(30);
        assert_eq!(candidate_arms(&v, mon("16:29")), vec![]);
        assert_eq!(candidate_arms(&v, mon("16:30")), vec![Arm::Reminder]);
        v.latest_mut().build.notified_autostop_deadline = Some(mon("17:00"));
        assert_eq!(candidate_arms(&v, mon("16:30")), vec![]);
        // The max deadline in the window, distinct from the marker.
        v.latest_mut().build.max_deadline = Some(mon("16:50"));
        assert_eq!(candidate_arms(&v, mon("16:30")), vec![Arm::Reminder]);
    }

    #[test]
    fn common_conditions() {
        let mut v = running(mon("08:00"), Some(mon("09:00")));
        assert!(is_candidate(&v, mon("09:00")));
        v.workspace.deleted = true;
        assert!(!is_candidate(&v, mon("09:00")));
        v.workspace.deleted = false;
        v.workspace.owner_id = PREBUILDS_USER_ID;
        assert!(!is_candidate(&v, mon("09:00")));
        v.workspace.owner_id = v.owner.id;
        v.latest = None;
        assert!(!is_candidate(&v, mon("09:00")));
    }
}
