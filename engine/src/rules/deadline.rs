//! Deadlines and max deadlines (lifecycle.md §5.1-§5.3): what a build completion
//! sets, and how later changes (extend, ttl, template, requirement) move them.

use crate::model::{AutostopRequirement, Build, BuildWithJob, Template, Workspace};
use crate::rules::schedule::CronSchedule;
use crate::time::{Span, Timestamp};

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
    let _ = (template, workspace);
    todo!()
}

/// §5.1 for a succeeded start build of a workspace that is not a prebuild.
pub fn deadlines_at_completion(input: &CompletionInput<'_>) -> CompletionDeadlines {
    let _ = input;
    todo!()
}

/// §5.2: the max deadline for a build completed at `completed_at`; `None` when
/// the requirement has no days.
pub fn max_deadline(
    requirement: &AutostopRequirement,
    quiet_hours: &CronSchedule,
    completed_at: Timestamp,
) -> Option<Timestamp> {
    let _ = (requirement, quiet_hours, completed_at);
    todo!()
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
    let _ = (latest, new_deadline, now);
    todo!()
}

/// §5.3: the deadline of the running build when the workspace ttl is set to
/// none: the max deadline (unset if none).
pub fn deadline_when_ttl_cleared(build: &Build) -> Option<Timestamp> {
    let _ = build;
    todo!()
}

/// §5.3: a template update that leaves user autostop disallowed, and disallowed
/// it or changed `default_ttl`, resets every workspace ttl: `Some(new ttl)`
/// (`Some(None)` = unset). `None`: ttls stay.
pub fn ttl_after_template_update(old: &Template, new: &Template) -> Option<Option<Span>> {
    let _ = (old, new);
    todo!()
}

/// §5.3 requirement change: the running build's new deadlines given the max
/// recomputed from its `completed_at` under the new requirement (`recomputed`,
/// `None` = no requirement now).
pub fn deadlines_after_requirement_change(build: &Build, recomputed: Option<Timestamp>, now: Timestamp) -> Deadlines {
    let _ = (build, recomputed, now);
    todo!()
}
