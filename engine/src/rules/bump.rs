//! The activity bump (lifecycle.md §5.4): by how much usage moves a deadline.
//!
//! The bump interval `I` is the template's `activity_bump`, except that agent
//! usage shortly before the next allowed autostart counts the deadline from
//! that autostart, as if the workspace had autostarted then. The new deadline
//! is never earlier than the current one and never past the max deadline.

use crate::model::{BuildWithJob, JobStatus, Template, Transition, Workspace};
use crate::mutations::{self, Mutation};
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
        if !mutations::is_on(Mutation::BumpIgnoresMaxDeadline) {
            bumped = bumped.min(max);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Weekday, WeekdaySet};
    use crate::rules::fixtures::{build, hours, mon, template, weekdays, workspace};

    const USAGE: ActivitySource = ActivitySource::AgentUsage { sessions: 2 };

    fn bump_of(workspace: &Workspace, template: &Template, latest: &BuildWithJob, now: Timestamp) -> BumpDecision {
        activity_bump(&BumpInput { workspace, template, latest, source: USAGE }, now)
    }

    fn running(deadline: Timestamp, max: Option<Timestamp>) -> BuildWithJob {
        let mut latest = build(Transition::Start, JobStatus::Succeeded, mon("08:00"));
        latest.build.deadline = Some(deadline);
        latest.build.max_deadline = max;
        latest
    }

    #[test]
    fn no_bump_unless_a_succeeded_start() {
        let (workspace, template) = (workspace(), template());
        for (transition, status) in [
            (Transition::Stop, JobStatus::Succeeded),
            (Transition::Start, JobStatus::Failed),
            (Transition::Start, JobStatus::Running),
            (Transition::Delete, JobStatus::Succeeded),
        ] {
            let mut latest = running(mon("12:00"), None);
            latest.build.transition = transition;
            latest.job.status = status;
            assert_eq!(bump_of(&workspace, &template, &latest, mon("11:30")), BumpDecision::Skip(BumpSkip::NotRunning));
        }
    }

    #[test]
    fn bump_capped_at_a_max_it_already_reached_is_no_change() {
        let latest = running(mon("12:00"), Some(mon("12:00")));
        assert_eq!(bump_of(&workspace(), &template(), &latest, mon("11:30")), BumpDecision::Skip(BumpSkip::NoChange));
        // A deadline already past a (corrupt) earlier max is never shortened.
        let latest = running(mon("12:00"), Some(mon("11:00")));
        assert_eq!(bump_of(&workspace(), &template(), &latest, mon("11:30")), BumpDecision::Skip(BumpSkip::NoChange));
    }

    #[test]
    fn autostart_exception_only_inside_the_window() {
        let mut workspace = workspace();
        workspace.autostart = Some("CRON_TZ=UTC 0 9 * * *".into());
        let template = template();
        let latest = running(mon("08:30"), None);
        // N = 09:00 exactly now + b: outside the window, a plain bump.
        assert_eq!(
            bump_of(&workspace, &template, &latest, mon("08:00")),
            BumpDecision::Bump { deadline: mon("09:00") }
        );
        // Inside: from N with the ttl.
        assert_eq!(
            bump_of(&workspace, &template, &latest, mon("08:01")),
            BumpDecision::Bump { deadline: mon("17:00") }
        );
    }

    #[test]
    fn autostart_exception_needs_an_allowed_day() {
        let mut workspace = workspace();
        workspace.autostart = Some("CRON_TZ=UTC 0 9 * * *".into());
        let mut template = template();
        template.autostart_days = weekdays(&[Weekday::Tue]);
        let latest = running(mon("08:30"), None);
        assert_eq!(
            bump_of(&workspace, &template, &latest, mon("08:10")),
            BumpDecision::Bump { deadline: mon("09:10") }
        );
        template.autostart_days = WeekdaySet::EMPTY;
        assert_eq!(
            bump_of(&workspace, &template, &latest, mon("08:10")),
            BumpDecision::Bump { deadline: mon("09:10") }
        );
        // An invalid schedule: a plain bump.
        template.autostart_days = WeekdaySet::ALL;
        workspace.autostart = Some("CRON_TZ=Mars/Base 0 9 * * *".into());
        assert_eq!(
            bump_of(&workspace, &template, &latest, mon("08:10")),
            BumpDecision::Bump { deadline: mon("09:10") }
        );
    }

    #[test]
    fn autostart_exception_with_no_ttl_counts_the_time_to_autostart() {
        let mut workspace = workspace();
        workspace.autostart = Some("CRON_TZ=UTC 0 9 * * *".into());
        workspace.ttl = None;
        let latest = running(mon("08:30"), None);
        // I = 50m: due (08:30 - 47m30s < 08:10), new = max(08:30, 09:00).
        assert_eq!(
            bump_of(&workspace, &template(), &latest, mon("08:10")),
            BumpDecision::Bump { deadline: mon("09:00") }
        );
        // A corrupt negative ttl making I negative: no bump.
        workspace.ttl = Some(-hours(2));
        assert_eq!(bump_of(&workspace, &template(), &latest, mon("08:10")), BumpDecision::Skip(BumpSkip::BumpDisabled));
    }

    #[test]
    fn bump_from_other_sources() {
        let latest = running(mon("12:00"), None);
        for source in [ActivitySource::ChatHeartbeat, ActivitySource::AppStatus] {
            let input = BumpInput { workspace: &workspace(), template: &template(), latest: &latest, source };
            assert_eq!(activity_bump(&input, mon("11:30")), BumpDecision::Bump { deadline: mon("12:30") });
        }
    }
}
