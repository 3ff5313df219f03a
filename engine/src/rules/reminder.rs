//! Autostop reminders (lifecycle.md §6): whether a tick owes the owner a
//! reminder, and for which announced stop time.

use crate::model::{BuildWithJob, Template, User, Workspace};
use crate::time::Timestamp;

#[derive(Debug, Clone, Copy)]
pub struct ReminderInput<'a> {
    pub workspace: &'a Workspace,
    pub owner: &'a User,
    pub template: &'a Template,
    pub latest: Option<&'a BuildWithJob>,
    /// A non-archived chat names the workspace (it drives the reminder).
    pub has_live_chat: bool,
}

/// Why no reminder is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoReminder {
    NotifyOff,
    NotRunning,
    NoStop,
    Dormant,
    OwnerSuspended,
    OutsideWindow,
    AlreadyReminded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReminderDecision {
    /// Set the marker to `stop_at`; write the outbox row iff `notify` (false
    /// when a chat drives the workspace).
    Remind {
        stop_at: Timestamp,
        notify: bool,
    },
    None(NoReminder),
}

/// §6 at `tick_at`.
pub fn reminder(input: &ReminderInput<'_>, tick_at: Timestamp) -> ReminderDecision {
    let _ = (input, tick_at);
    todo!()
}
