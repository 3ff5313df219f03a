//! The lifecycle rules of one workspace at one tick (lifecycle.md §4): which
//! transition is due, if any, else whether a reminder is (§6).

use crate::ids::VersionId;
use crate::model::{BuildReason, BuildWithJob, Parameters, Template, TemplateVersion, Transition, User, Workspace};
use crate::rules::reminder::ReminderDecision;
use crate::rules::schedule::ScheduleError;
use crate::time::Timestamp;

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
pub fn evaluate(view: &LifecycleView, tick_at: Timestamp, now: Timestamp) -> LifecycleOutcome {
    let _ = (view, tick_at, now);
    todo!()
}

/// `next_start_at` after a build of this workspace is inserted at `created_at`
/// (§4 rule 2): the next allowed autostart, or `None` (no or invalid schedule,
/// no allowed day).
pub fn next_start_at_after_build(
    workspace: &Workspace,
    template: &Template,
    created_at: Timestamp,
) -> Option<Timestamp> {
    let _ = (workspace, template, created_at);
    todo!()
}
