//! The activity bump (lifecycle.md §5.4): by how much usage moves a deadline.
//!
//! The bump interval `I` is the template's `activity_bump`, except that agent
//! usage shortly before the next allowed autostart counts the deadline from
//! that autostart, as if the workspace had autostarted then. The new deadline
//! is never earlier than the current one and never past the max deadline.

use crate::model::{BuildWithJob, JobStatus, Template, Transition, Workspace};
use crate::rules::schedule::{next_allowed_autostart, CronSchedule};
use crate::time::{Span, Timestamp};

/// What reported the activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivitySource {
    /// An agent's usage report, with its session count (0 sessions: marks only).
    AgentUsage { sessions: u32 },
    /// A chat's heartbeat.
    ChatHeartbeat,
    /// An agent app status around "working".
    AppStatus,
}

#[derive(Debug, Clone, Copy)]
pub struct BumpInput<'a> {
    pub workspace: &'a Workspace,
    pub template: &'a Template,
    pub latest: &'a BuildWithJob,
    pub source: ActivitySource,
}

/// Why no bump happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BumpSkip {
    Prebuild,
    NoSessions,
    NotRunning,
    BumpDisabled,
    NoDeadline,
    /// The deadline is far enough ahead (`deadline - 0.95 * I >= now`).
    NotDue,
    /// The capped new deadline would not move the deadline later.
    NoChange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BumpDecision {
    Bump { deadline: Timestamp },
    Skip(BumpSkip),
}

/// §5.4: the new deadline, never shorter, never past the max deadline.
pub fn activity_bump(input: &BumpInput<'_>, now: Timestamp) -> BumpDecision {
    let skip = BumpDecision::Skip;
    let BumpInput { workspace, template, latest, source } = *input;
    if workspace.is_prebuild() {
        return skip(BumpSkip::Prebuild);
    }
    if source == (ActivitySource::AgentUsage { sessions: 0 }) {
        return skip(BumpSkip::NoSessions);
    }
    if latest.build.transition != Transition::Start || latest.job.status != JobStatus::Succeeded {
        return skip(BumpSkip::NotRunning);
    }
    let bump = template.activity_bump;
    if !bump.is_positive() {
        return skip(BumpSkip::BumpDisabled);
    }
    let Some(deadline) = latest.build.deadline else {
        return skip(BumpSkip::NoDeadline);
    };
    let interval = bump_interval(input, now);
    if !interval.is_positive() {
        // Only a corrupt (negative) ttl in the autostart exception gets here.
        return skip(BumpSkip::BumpDisabled);
    }
    if deadline - interval.mul_ratio(19, 20) >= now {
        return skip(BumpSkip::NotDue);
    }
    let mut bumped = deadline.max(now + interval);
    if let Some(max) = latest.build.max_deadline {
        bumped = bumped.min(max);
    }
    if bumped <= deadline {
        return skip(BumpSkip::NoChange);
    }
    BumpDecision::Bump { deadline: bumped }
}

/// `I` of §5.4: `activity_bump`, or for agent usage with the next allowed
/// autostart `N` inside `(now, now + activity_bump)`, `(N - now) + T` (T: the
/// workspace ttl if users may set it, else the template's `default_ttl`).
fn bump_interval(input: &BumpInput<'_>, now: Timestamp) -> Span {
    let bump = input.template.activity_bump;
    if !matches!(input.source, ActivitySource::AgentUsage { .. }) {
        return bump;
    }
    let Some(schedule) = input.workspace.autostart.as_deref().and_then(|text| CronSchedule::parse_weekly(text).ok())
    else {
        return bump;
    };
    match next_allowed_autostart(&schedule, now, input.template.autostart_days) {
        Some(autostart_at) if now < autostart_at && autostart_at < now + bump => {
            let ttl = if input.template.allow_user_autostop {
                input.workspace.ttl.unwrap_or(Span::ZERO)
            } else {
                input.template.default_ttl
            };
            autostart_at.since(now) + ttl
        }
        _ => bump,
    }
}
