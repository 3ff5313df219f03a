//! What the engine reports about its own decisions and effects.
//!
//! Drivers emit an [`Event`] for every decision and effect (not for idle polls);
//! the host chooses the sink: the daemon logs them with `tracing` and counts
//! them in metrics, the simulator writes them into its trace with the replica
//! and simulated time. Nothing in the engine reads events back, and the
//! simulator's invariant checkers never trust them: they judge the database.

use std::sync::Arc;

use crate::ids::{BuildId, JobId, NotificationId, WorkspaceId};
use crate::model::{BuildReason, JobStatus, NotificationKind, Transition};
use crate::time::Timestamp;

/// What the lifecycle tick did to one workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkspaceOutcome {
    /// A build was inserted (and a dormancy mark, for a dormancy stop).
    Transition { transition: Transition, reason: BuildReason, build: BuildId },
    /// Rule 4 marked a workspace that was not running.
    MarkedDormant,
    /// A reminder's marker (and outbox row unless a chat drives it) committed.
    Reminded { stop_at: Timestamp, notified: bool },
    /// The latest job is unfinished.
    Waiting,
    /// Only `next_start_at` was written (or nothing at all).
    Nothing,
    /// Another replica holds the workspace's lock.
    LockBusy,
    /// A build is due but no provisioner was seen recently: retried next tick.
    NoProvisioner,
    /// Someone built first (unique build number): no error.
    LostRace,
    /// A serialization failure: retried next tick.
    Conflict,
    /// The workspace is gone or deleted.
    Gone,
    /// A rule's error (invalid schedule, rejected parameters) or a store error.
    Error { kind: String, detail: String },
}

impl WorkspaceOutcome {
    pub fn name(&self) -> &'static str {
        match self {
            WorkspaceOutcome::Transition { .. } => "transition",
            WorkspaceOutcome::MarkedDormant => "marked_dormant",
            WorkspaceOutcome::Reminded { .. } => "reminded",
            WorkspaceOutcome::Waiting => "waiting",
            WorkspaceOutcome::Nothing => "nothing",
            WorkspaceOutcome::LockBusy => "lock_busy",
            WorkspaceOutcome::NoProvisioner => "no_provisioner",
            WorkspaceOutcome::LostRace => "lost_race",
            WorkspaceOutcome::Conflict => "conflict",
            WorkspaceOutcome::Gone => "gone",
            WorkspaceOutcome::Error { .. } => "error",
        }
    }
}

/// Counters of one lifecycle tick (the reference's stats).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickStats {
    pub tick_at: Option<Timestamp>,
    pub candidates: u32,
    pub transitions: u32,
    pub marks: u32,
    pub reminders: u32,
    pub errors: u32,
    pub lock_busy: u32,
    pub lost_races: u32,
    pub conflicts: u32,
    pub no_provisioner: u32,
    /// Workspaces not dispatched because shutdown began.
    pub skipped_for_shutdown: u32,
    /// Workspaces whose transaction was cancelled at the shutdown timeout.
    pub cancelled: u32,
    /// The scan failed: nothing was done this tick.
    pub scan_failed: bool,
}

impl TickStats {
    pub fn count(&mut self, outcome: &WorkspaceOutcome) {
        match outcome {
            WorkspaceOutcome::Transition { .. } => self.transitions += 1,
            WorkspaceOutcome::MarkedDormant => self.marks += 1,
            WorkspaceOutcome::Reminded { .. } => self.reminders += 1,
            WorkspaceOutcome::LockBusy => self.lock_busy += 1,
            WorkspaceOutcome::NoProvisioner => self.no_provisioner += 1,
            WorkspaceOutcome::LostRace => self.lost_races += 1,
            WorkspaceOutcome::Conflict => self.conflicts += 1,
            WorkspaceOutcome::Error { .. } => self.errors += 1,
            WorkspaceOutcome::Waiting | WorkspaceOutcome::Nothing | WorkspaceOutcome::Gone => {}
        }
    }
}

/// Which part of the engine inserted a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildOrigin {
    Lifecycle,
    Api,
}

/// One decision or effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    TickStarted {
        tick_at: Timestamp,
        now: Timestamp,
    },
    Workspace {
        workspace: WorkspaceId,
        tick_at: Timestamp,
        outcome: WorkspaceOutcome,
    },
    TickFinished {
        stats: TickStats,
    },
    BuildInserted {
        workspace: WorkspaceId,
        build: BuildId,
        /// The build's provisioner job (pending; "job available" names it).
        job: JobId,
        number: i32,
        transition: Transition,
        reason: BuildReason,
        origin: BuildOrigin,
    },
    NotificationEnqueued {
        kind: NotificationKind,
        workspace: Option<WorkspaceId>,
        inserted: bool,
    },
    ActivityBumped {
        workspace: WorkspaceId,
        from: Timestamp,
        to: Timestamp,
    },
    UsageFlushed {
        workspaces: u32,
        written: u64,
        at: Timestamp,
    },
    UsageFlushFailed {
        workspaces: u32,
        error: String,
    },
    NotificationDelivered {
        id: NotificationId,
        kind: NotificationKind,
    },
    NotificationDeliveryFailed {
        id: NotificationId,
        kind: NotificationKind,
        retry_at: Timestamp,
    },
    JobAcquired {
        job: JobId,
        workspace: WorkspaceId,
    },
    JobCompleted {
        job: JobId,
        workspace: WorkspaceId,
        status: JobStatus,
    },
    Refused {
        action: &'static str,
        reason: String,
    },
    LoopError {
        loop_name: &'static str,
        error: String,
    },
    ShutdownStarted,
    ShutdownFinished {
        cancelled: bool,
    },
}

/// Where events go.
pub trait EventSink: Send + Sync + 'static {
    fn emit(&self, event: Event);
}

pub type SharedEvents = Arc<dyn EventSink>;

/// Drops every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoEvents;

impl EventSink for NoEvents {
    fn emit(&self, _event: Event) {}
}

/// Logs every event with `tracing` (the daemon's default).
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingEvents;

impl EventSink for TracingEvents {
    fn emit(&self, event: Event) {
        match &event {
            Event::LoopError { .. } | Event::UsageFlushFailed { .. } | Event::NotificationDeliveryFailed { .. } => {
                tracing::warn!(?event, "engine event")
            }
            Event::Workspace { outcome: WorkspaceOutcome::Error { .. }, .. } => tracing::warn!(?event, "engine event"),
            _ => tracing::info!(?event, "engine event"),
        }
    }
}

/// Keeps every event in memory (tests).
#[derive(Debug, Default)]
pub struct RecordedEvents {
    events: std::sync::Mutex<Vec<Event>>,
}

impl RecordedEvents {
    pub fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|poison| poison.into_inner()))
    }
    pub fn snapshot(&self) -> Vec<Event> {
        self.events.lock().unwrap_or_else(|poison| poison.into_inner()).clone()
    }
}

impl EventSink for RecordedEvents {
    fn emit(&self, event: Event) {
        self.events.lock().unwrap_or_else(|poison| poison.into_inner()).push(event);
    }
}
