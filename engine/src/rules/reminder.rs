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
use crate::mutations::{self, Mutation};
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
    if latest.build.notified_autostop_deadline == Some(stop_at) && !mutations::is_on(Mutation::ReminderNoDedupe) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::fixtures::{build, hours, mins, mon, template, user, workspace};

    struct World {
        workspace: Workspace,
        owner: User,
        template: Template,
        latest: Option<BuildWithJob>,
        has_live_chat: bool,
    }

    /// Running, deadline 17:00, notify 30m, owner idle since the day before.
    fn world() -> World {
        let mut latest = build(Transition::Start, JobStatus::Succeeded, mon("09:00"));
        latest.build.deadline = Some(mon("17:00"));
        let mut template = template();
        template.autostop_notify = mins(30);
        World { workspace: workspace(), owner: user(), template, latest: Some(latest), has_live_chat: false }
    }

    fn decide(world: &World, tick_at: Timestamp) -> ReminderDecision {
        let input = ReminderInput {
            workspace: &world.workspace,
            owner: &world.owner,
            template: &world.template,
            latest: world.latest.as_ref(),
            has_live_chat: world.has_live_chat,
        };
        reminder(&input, tick_at)
    }

    fn latest(world: &mut World) -> &mut BuildWithJob {
        world.latest.as_mut().unwrap()
    }

    fn remind(stop_at: Timestamp) -> ReminderDecision {
        ReminderDecision::Remind { stop_at, notify: true }
    }

    #[test]
    fn window_is_open_at_the_start_and_closed_at_the_end() {
        let world = world();
        assert_eq!(decide(&world, mon("16:29")), ReminderDecision::None(NoReminder::OutsideWindow));
        assert_eq!(decide(&world, mon("16:30")), remind(mon("17:00")));
        assert_eq!(decide(&world, mon("16:59")), remind(mon("17:00")));
        // S = tick_at: the stop is due, not a reminder.
        assert_eq!(decide(&world, mon("17:00")), ReminderDecision::None(NoReminder::OutsideWindow));
    }

    #[test]
    fn no_reminder_cases() {
        let mut w = world();
        w.template.autostop_notify = Span::ZERO;
        assert_eq!(decide(&w, mon("16:30")), ReminderDecision::None(NoReminder::NotifyOff));
        let mut w = world();
        w.latest = None;
        assert_eq!(decide(&w, mon("16:30")), ReminderDecision::None(NoReminder::NotRunning));
        let mut w = world();
        latest(&mut w).build.transition = Transition::Stop;
        assert_eq!(decide(&w, mon("16:30")), ReminderDecision::None(NoReminder::NotRunning));
        let mut w = world();
        latest(&mut w).job.status = JobStatus::Failed;
        assert_eq!(decide(&w, mon("16:30")), ReminderDecision::None(NoReminder::NotRunning));
        let mut w = world();
        latest(&mut w).build.deadline = None;
        latest(&mut w).build.max_deadline = Some(mon("17:00"));
        assert_eq!(decide(&w, mon("16:30")), ReminderDecision::None(NoReminder::NoStop));
        let mut w = world();
        w.workspace.dormant_at = Some(mon("10:00"));
        assert_eq!(decide(&w, mon("16:30")), ReminderDecision::None(NoReminder::Dormant));
        let mut w = world();
        w.owner.status = UserStatus::Suspended;
        assert_eq!(decide(&w, mon("16:30")), ReminderDecision::None(NoReminder::OwnerSuspended));
        let mut w = world();
        latest(&mut w).build.notified_autostop_deadline = Some(mon("17:00"));
        assert_eq!(decide(&w, mon("16:30")), ReminderDecision::None(NoReminder::AlreadyReminded));
    }

    #[test]
    fn dormant_user_status_is_still_reminded() {
        let mut w = world();
        w.owner.status = UserStatus::Dormant;
        assert_eq!(decide(&w, mon("16:30")), remind(mon("17:00")));
    }

    #[test]
    fn active_owner_hears_only_of_a_max_deadline_in_the_window() {
        let mut w = world();
        w.workspace.last_used_at = mon("16:25");
        assert_eq!(decide(&w, mon("16:30")), ReminderDecision::None(NoReminder::OutsideWindow));
        latest(&mut w).build.max_deadline = Some(mon("17:01"));
        assert_eq!(decide(&w, mon("16:30")), ReminderDecision::None(NoReminder::OutsideWindow));
        assert_eq!(decide(&w, mon("16:31")), remind(mon("17:01")));
        // Idle again (15m): the deadline.
        assert_eq!(decide(&w, mon("16:40")), remind(mon("17:00")));
    }

    #[test]
    fn active_owner_threshold_is_half_a_short_bump() {
        let mut w = world();
        w.template.activity_bump = mins(20);
        w.workspace.last_used_at = mon("16:21");
        assert_eq!(decide(&w, mon("16:30")), ReminderDecision::None(NoReminder::OutsideWindow)); // 9m < 10m
        assert_eq!(decide(&w, mon("16:31")), remind(mon("17:00"))); // exactly 10m: idle
                                                                    // No activity bump: the owner never counts as active.
        w.template.activity_bump = Span::ZERO;
        w.workspace.last_used_at = mon("16:30");
        assert_eq!(decide(&w, mon("16:30")), remind(mon("17:00")));
        // A long bump: capped at 15m.
        w.template.activity_bump = hours(4);
        w.workspace.last_used_at = mon("16:15");
        assert_eq!(decide(&w, mon("16:30")), remind(mon("17:00")));
    }

    #[test]
    fn chat_bound_workspace_gets_the_marker_only() {
        let mut w = world();
        w.has_live_chat = true;
        assert_eq!(decide(&w, mon("16:30")), ReminderDecision::Remind { stop_at: mon("17:00"), notify: false });
    }
}
