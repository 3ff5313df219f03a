//! Autostop reminders (lifecycle.md §6): whether a tick owes the owner a
//! reminder, and for which announced stop time.
//!
//! The announced stop `S` is the deadline, except for an active owner (used
//! within `A = min(15m, activity_bump / 2)`), whose activity keeps moving the
//! deadline: they hear only of a max deadline inside the window. A reminder is
//! due once per `S`, when `tick_at < S <= tick_at + notify`; the build's marker
//! remembers the last `S` announced.

use crate::limits::REMINDER_ACTIVE_OWNER_MAX;
use crate::model::{BuildWithJob, JobStatus, Template, Transition, User, UserStatus, Workspace};
use crate::time::{Span, Timestamp};

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
    let none = ReminderDecision::None;
    let notify = input.template.autostop_notify;
    if !notify.is_positive() {
        return none(NoReminder::NotifyOff);
    }
    let Some(latest) = input
        .latest
        .filter(|latest| latest.build.transition == Transition::Start && latest.job.status == JobStatus::Succeeded)
    else {
        return none(NoReminder::NotRunning);
    };
    let Some(deadline) = latest.build.deadline else {
        return none(NoReminder::NoStop);
    };
    if input.workspace.dormant_at.is_some() {
        return none(NoReminder::Dormant);
    }
    if input.owner.status == UserStatus::Suspended {
        return none(NoReminder::OwnerSuspended);
    }
    let window_end = tick_at + notify;
    let stop_at = if owner_is_active(input.workspace, input.template, tick_at) {
        // Activity moves the deadline: only a max deadline in the window is
        // announced; the deadline is, once the owner is idle.
        match latest.build.max_deadline {
            Some(max) if max <= window_end => max,
            _ => return none(NoReminder::OutsideWindow),
        }
    } else {
        deadline
    };
    if !(tick_at < stop_at && stop_at <= window_end) {
        return none(NoReminder::OutsideWindow);
    }
    if latest.build.notified_autostop_deadline == Some(stop_at) {
        return none(NoReminder::AlreadyReminded);
    }
    ReminderDecision::Remind { stop_at, notify: !input.has_live_chat }
}

/// §6's active owner: used less than `A = min(15m, activity_bump / 2)` before
/// `tick_at` (exactly `A` ago is idle); never with no activity bump.
fn owner_is_active(workspace: &Workspace, template: &Template, tick_at: Timestamp) -> bool {
    let bump = template.activity_bump;
    if !bump.is_positive() {
        return false;
    }
    let active_within: Span = REMINDER_ACTIVE_OWNER_MAX.min(bump.mul_ratio(1, 2));
    tick_at.since(workspace.last_used_at) < active_within
}
