//! The activity bump (lifecycle.md §5.4): by how much usage moves a deadline.

use crate::model::{BuildWithJob, Template, Workspace};
use crate::time::Timestamp;

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
    let _ = (input, now);
    todo!()
}
