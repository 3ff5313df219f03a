//! Test fixtures of the rules: the catalogue's default setup (lifecycle.md §9:
//! Mon 2026-01-05, owner active, last used the day before, ttl 8h, quiet hours
//! midnight UTC, `SCENARIOS.md` template defaults) as plain values that tests
//! adjust field by field.

use uuid::Uuid;

use crate::ids::{BuildId, JobId, TemplateId, UserId, VersionId, WorkspaceId};
use crate::model::{
    AutomaticUpdates, Build, BuildReason, BuildWithJob, Job, JobStatus, ParameterSpec, Parameters, Template,
    TemplateVersion, Transition, User, Weekday, WeekdaySet, Workspace,
};
use crate::rules::lifecycle::LifecycleView;
use crate::time::{Span, Timestamp};

pub(crate) const V1: VersionId = VersionId::from_uuid(Uuid::from_u128(0x1001));
pub(crate) const V2: VersionId = VersionId::from_uuid(Uuid::from_u128(0x1002));
pub(crate) const OWNER: UserId = UserId::from_uuid(Uuid::from_u128(0x2001));
pub(crate) const TEMPLATE: TemplateId = TemplateId::from_uuid(Uuid::from_u128(0x3001));
pub(crate) const WORKSPACE: WorkspaceId = WorkspaceId::from_uuid(Uuid::from_u128(0x4001));

/// An RFC 3339 instant (`2026-01-05T09:00:00Z`).
pub(crate) fn ts(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap_or_else(|| panic!("bad test instant `{text}`"))
}

/// `HH:MM` on the catalogue's Monday, 2026-01-05 (UTC).
pub(crate) fn mon(hh_mm: &str) -> Timestamp {
    ts(&format!("2026-01-05T{hh_mm}:00Z"))
}

pub(crate) fn secs(n: i64) -> Span {
    Span::from_secs(n)
}
pub(crate) fn mins(n: i64) -> Span {
    Span::from_mins(n)
}
pub(crate) fn hours(n: i64) -> Span {
    Span::from_hours(n)
}
pub(crate) fn days(n: i64) -> Span {
    Span::from_days(n)
}

pub(crate) fn weekdays(days: &[Weekday]) -> WeekdaySet {
    days.iter().copied().collect()
}

pub(crate) fn user() -> User {
    User::new(OWNER, "alice", ts("2025-01-01T00:00:00Z"))
}

pub(crate) fn template() -> Template {
    Template::new(TEMPLATE, "dev", V1, ts("2025-01-01T00:00:00Z"))
}

pub(crate) fn version(id: VersionId, parameters: &[(&str, bool, Option<&str>)]) -> TemplateVersion {
    TemplateVersion {
        id,
        template_id: TEMPLATE,
        name: if id == V1 { "v1".into() } else { "v2".into() },
        parameters: parameters
            .iter()
            .map(|(name, required, default)| ParameterSpec {
                name: (*name).into(),
                required: *required,
                default: default.map(Into::into),
            })
            .collect(),
        created_at: ts("2025-01-01T00:00:00Z"),
    }
}

pub(crate) fn workspace() -> Workspace {
    Workspace {
        id: WORKSPACE,
        owner_id: OWNER,
        template_id: TEMPLATE,
        name: "w1".into(),
        ttl: Some(hours(8)),
        autostart: None,
        automatic_updates: AutomaticUpdates::Never,
        last_used_at: ts("2026-01-04T12:00:00Z"),
        dormant_at: None,
        deleting_at: None,
        next_start_at: None,
        deleted: false,
        created_at: ts("2025-12-01T00:00:00Z"),
    }
}

/// A build of version v1 created at `at`; a terminal job finished then too.
pub(crate) fn build(transition: Transition, status: JobStatus, at: Timestamp) -> BuildWithJob {
    let build_id = BuildId::from_uuid(Uuid::from_u128(0x5001));
    let job_id = JobId::from_uuid(Uuid::from_u128(0x6001));
    BuildWithJob {
        build: Build {
            id: build_id,
            workspace_id: WORKSPACE,
            number: 1,
            transition,
            reason: BuildReason::Initiator,
            initiator_id: OWNER,
            version_id: V1,
            job_id,
            preset_id: None,
            parameters: Parameters::new(),
            created_at: at,
            deadline: None,
            max_deadline: None,
            notified_autostop_deadline: None,
            agent_ready_at: None,
        },
        job: Job {
            id: job_id,
            build_id,
            workspace_id: WORKSPACE,
            template_id: TEMPLATE,
            version_id: V1,
            status,
            is_prebuild: false,
            created_at: at,
            started_at: Some(at),
            completed_at: matches!(status, JobStatus::Succeeded | JobStatus::Failed).then_some(at),
            canceled_at: (status == JobStatus::Canceled).then_some(at),
            worker_id: None,
            error: (status == JobStatus::Failed).then(|| "boom".into()),
        },
    }
}

/// The default world around `latest`.
pub(crate) fn view(latest: Option<BuildWithJob>) -> LifecycleView {
    LifecycleView {
        workspace: workspace(),
        owner: user(),
        template: template(),
        latest,
        active_version: Some(version(V1, &[])),
        has_live_chat: false,
    }
}

/// A running workspace: a succeeded start finished at `completed_at`, with
/// `deadline` (no max deadline).
pub(crate) fn running(completed_at: Timestamp, deadline: Option<Timestamp>) -> LifecycleView {
    let mut start = build(Transition::Start, JobStatus::Succeeded, completed_at);
    start.build.deadline = deadline;
    view(Some(start))
}

/// A stopped workspace: a succeeded stop finished at `completed_at`.
pub(crate) fn stopped(completed_at: Timestamp) -> LifecycleView {
    view(Some(build(Transition::Stop, JobStatus::Succeeded, completed_at)))
}

/// Shorthands on a view.
pub(crate) trait ViewExt {
    fn latest_mut(&mut self) -> &mut BuildWithJob;
}

impl ViewExt for LifecycleView {
    fn latest_mut(&mut self) -> &mut BuildWithJob {
        self.latest.as_mut().expect("the view has a latest build")
    }
}
