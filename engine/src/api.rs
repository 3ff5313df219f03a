//! The engine's API: what users, agents and provisioners ask of it (the host's
//! HTTP layer, the daemon, or the simulator's timeline call these).
//!
//! Each call is one REPEATABLE READ transaction, retried a few times on
//! retryable errors. A request the reference API would refuse returns
//! [`ApiError::Refused`] and changes nothing.

use std::sync::Arc;

use crate::builds::{insert_next_build, BuildRequest};
use crate::events::{BuildOrigin, Event, SharedEvents};
use crate::ids::{JobId, PresetId, ProvisionerId, SharedIds, TemplateId, UserId, VersionId, WorkspaceId};
use crate::lifecycle::UsageTracker;
use crate::limits;
use crate::model::{
    AutomaticUpdates, AutostopRequirement, Build, BuildReason, BuildWithJob, DedupeKey, Job, JobStatus,
    NewNotification, NotificationKind, NotificationPayload, ParameterSpec, Parameters, Preset, PresetSchedules,
    PresetStatus, ProvisionerDaemon, Template, TemplateVersion, Transition, User, UserStatus, WeekdaySet, Workspace,
};
use crate::notify;
use crate::pubsub::{publish_committed, SharedPublisher};
use crate::rules::bump::{activity_bump, ActivitySource, BumpDecision, BumpInput};
use crate::rules::deadline::{
    deadline_when_ttl_cleared, deadlines_after_requirement_change, deadlines_at_completion, extend, max_deadline,
    ttl_after_template_update, CompletionDeadlines, CompletionInput, ExtendDecision, ExtendRefusal,
};
use crate::rules::schedule::{next_allowed_autostart, CronSchedule, ScheduleError};
use crate::store::{Store, StoreError, Subsystem, Tx, TxOptions};
use crate::time::{Span, Timestamp};

/// Attempts of one API transaction on retryable errors.
const API_ATTEMPTS_MAX: u32 = 3;
/// Workspaces read per page when a template change touches all of them.
const TEMPLATE_WORKSPACES_PAGE_MAX: u32 = 500;

/// Why a request was refused (the reference API's answers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("user {actor} may not act on {object}")]
    Forbidden { actor: String, object: String },
    #[error("workspace {workspace} has an unfinished job")]
    JobUnfinished { workspace: String },
    #[error("workspace {workspace} is dormant")]
    Dormant { workspace: String },
    #[error("cannot extend: {0:?}")]
    Extend(ExtendRefusal),
    #[error("invalid ttl {ttl}: expected 0 or whole minutes within 1m..30d")]
    InvalidTtl { ttl: Span },
    #[error("invalid schedule: {0}")]
    InvalidSchedule(ScheduleError),
    #[error("template {template} does not allow user autostop")]
    AutostopDisallowed { template: String },
    #[error("template {template} does not allow user autostart")]
    AutostartDisallowed { template: String },
    #[error("template {template} still has workspaces")]
    TemplateHasWorkspaces { template: String },
    #[error("version {version} requires parameter `{parameter}`")]
    ParameterRequired { version: String, parameter: String },
    #[error("job {job} is already finished")]
    JobFinished { job: JobId },
    #[error("name {name} is taken")]
    NameTaken { name: String },
    #[error("invalid value: {detail}")]
    Invalid { detail: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApiError {
    fn refused(refusal: Refusal) -> ApiError {
        ApiError::Refused(refusal)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Changes to a workspace's settings; `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkspaceUpdate {
    /// `Some(None)` or `Some(Some(0))`: no autostop.
    pub ttl: Option<Option<Span>>,
    pub autostart: Option<Option<String>>,
    pub automatic_updates: Option<AutomaticUpdates>,
    pub dormant: Option<bool>,
}

/// Changes to a template's settings; `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateUpdate {
    pub default_ttl: Option<Span>,
    pub activity_bump: Option<Span>,
    pub autostop_notify: Option<Span>,
    pub failure_ttl: Option<Span>,
    pub time_til_dormant: Option<Span>,
    pub time_til_dormant_autodelete: Option<Span>,
    pub allow_user_autostart: Option<bool>,
    pub allow_user_autostop: Option<bool>,
    pub autostart_days: Option<WeekdaySet>,
    pub autostop_requirement: Option<AutostopRequirement>,
    pub require_active_version: Option<bool>,
    pub deprecated: Option<bool>,
    pub deleted: Option<bool>,
}

/// A new template version with its presets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVersion {
    pub name: String,
    pub parameters: Vec<ParameterSpec>,
    pub presets: Vec<NewPreset>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPreset {
    pub name: String,
    pub parameters: Parameters,
    pub instances: Option<u32>,
    pub expiration_ttl: Span,
    pub schedules: Option<PresetSchedules>,
}

/// A workspace to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWorkspace {
    pub name: String,
    pub owner: UserId,
    pub template: TemplateId,
    /// Default: the active version.
    pub version: Option<VersionId>,
    pub preset: Option<PresetId>,
    pub parameters: Parameters,
    /// Default: the template's `default_ttl`.
    pub ttl: Option<Option<Span>>,
    pub autostart: Option<String>,
    pub automatic_updates: AutomaticUpdates,
}

/// A workspace with its latest build and that build's job, as stored (what
/// [`Api::workspace`] reads for a host's API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceState {
    pub workspace: Workspace,
    pub latest: Option<BuildWithJob>,
}

/// How a provisioner job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobResult {
    Succeeded,
    Failed { error: String },
}

/// Runs `$body` (an expression using `$tx`) in a transaction of `$subsystem`,
/// committing on `Ok`, rolling back on `Err`, retrying retryable store errors.
/// Events returned with the value are emitted only after the commit, and
/// each build it inserted is published as "job available" then.
macro_rules! transact {
    ($self:ident, $subsystem:expr, $action:literal, |$tx:ident| $body:expr) => {{
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut tx = $self.store.begin(TxOptions::new($subsystem)).await?;
            let result: ApiResult<(_, Vec<Event>)> = {
                let $tx = &mut tx;
                $body.await
            };
            match result {
                Ok((value, events)) => match tx.commit().await {
                    Ok(()) => {
                        publish_committed(events, $self.events.as_ref(), $self.publisher.as_ref());
                        break Ok(value);
                    }
                    Err(error) if error.is_retryable() && attempt < API_ATTEMPTS_MAX => continue,
                    Err(error) => break Err(ApiError::Store(error)),
                },
                Err(error) => {
                    let _ = tx.rollback().await;
                    match error {
                        ApiError::Store(ref store) if store.is_retryable() && attempt < API_ATTEMPTS_MAX => continue,
                        ApiError::Refused(ref refusal) => {
                            $self.events.emit(Event::Refused { action: $action, reason: refusal.to_string() });
                            break Err(error);
                        }
                        _ => break Err(error),
                    }
                }
            }
        }
    }};
}

/// The engine's request handlers for one replica.
pub struct Api<S: Store> {
    store: Arc<S>,
    ids: SharedIds,
    events: SharedEvents,
    publisher: SharedPublisher,
    usage: Arc<UsageTracker<S>>,
}

impl<S: Store> Api<S> {
    pub fn new(
        store: Arc<S>,
        ids: SharedIds,
        events: SharedEvents,
        publisher: SharedPublisher,
        usage: Arc<UsageTracker<S>>,
    ) -> Self {
        Api { store, ids, events, publisher, usage }
    }

    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    // ---- reads -------------------------------------------------------------------

    /// Reads a workspace (a deleted one too, with `deleted` set) and its latest
    /// build in one read-only snapshot. Unknown ids are refused as not found.
    pub async fn workspace(&self, workspace: WorkspaceId) -> ApiResult<WorkspaceState> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = async {
                let mut tx = self.store.begin(TxOptions::read_only(Subsystem::Api)).await?;
                let read = async {
                    let Some(found) = tx.workspace(workspace).await? else { return Ok(None) };
                    let latest = tx.latest_build(workspace).await?;
                    Ok::<_, StoreError>(Some(WorkspaceState { workspace: found, latest }))
                }
                .await;
                let _ = tx.rollback().await;
                read
            }
            .await;
            match result {
                Ok(Some(state)) => break Ok(state),
                Ok(None) => {
                    let refusal = Refusal::NotFound { what: format!("workspace {workspace}") };
                    self.events.emit(Event::Refused { action: "workspace", reason: refusal.to_string() });
                    break Err(ApiError::refused(refusal));
                }
                Err(error) if error.is_retryable() && attempt < API_ATTEMPTS_MAX => continue,
                Err(error) => break Err(ApiError::Store(error)),
            }
        }
    }

    // ---- users' workspace actions ----------------------------------------------

    /// A user starts, stops or deletes a workspace (reason `initiator`).
    pub async fn build(
        &self,
        workspace: WorkspaceId,
        actor: UserId,
        transition: Transition,
        now: Timestamp,
    ) -> ApiResult<Build> {
        transact!(self, Subsystem::Api, "build", |tx| self.build_in(tx, workspace, actor, transition, now))
    }

    async fn build_in(
        &self,
        tx: &mut S::Tx,
        workspace_id: WorkspaceId,
        actor: UserId,
        transition: Transition,
        now: Timestamp,
    ) -> ApiResult<(Build, Vec<Event>)> {
        let workspace = load_workspace_for_update(tx, workspace_id).await?;
        let actor = load_user(tx, actor).await?;
        authorize(&actor, &workspace)?;
        let template = load_template(tx, workspace.template_id).await?;
        let latest = tx.latest_build(workspace.id).await?;
        if let Some(latest) = &latest {
            if !latest.job.status.is_terminal() {
                return Err(ApiError::refused(Refusal::JobUnfinished { workspace: workspace.name.clone() }));
            }
        }
        if transition == Transition::Start && workspace.dormant_at.is_some() {
            return Err(ApiError::refused(Refusal::Dormant { workspace: workspace.name.clone() }));
        }
        let carried = latest.as_ref().map(|l| l.build.parameters.clone()).unwrap_or_default();
        let version_id = match (&latest, transition) {
            (_, Transition::Start) if template.require_active_version => template.active_version_id,
            (Some(latest), _) => latest.build.version_id,
            (None, _) => template.active_version_id,
        };
        let parameters = if transition == Transition::Start {
            let version = load_version(tx, version_id).await?;
            resolve_parameters(&version, &carried)?
        } else {
            carried
        };
        let request = BuildRequest {
            transition,
            reason: BuildReason::Initiator,
            initiator: actor.id,
            version_id,
            parameters,
            preset_id: latest.as_ref().and_then(|l| l.build.preset_id),
        };
        let (build, next_start_at) =
            insert_next_build(tx, &self.ids, &workspace, &template, latest.as_ref(), request, now).await?;
        if next_start_at != workspace.next_start_at {
            tx.set_next_start_at(workspace.id, next_start_at).await?;
        }
        let event = build_event(&build, BuildOrigin::Api);
        Ok((build, vec![event]))
    }

    /// A user moves the deadline of the running build (§5.3).
    pub async fn extend(
        &self,
        workspace: WorkspaceId,
        actor: UserId,
        deadline: Timestamp,
        now: Timestamp,
    ) -> ApiResult<Timestamp> {
        transact!(self, Subsystem::Api, "extend", |tx| self.extend_in(tx, workspace, actor, deadline, now))
    }

    async fn extend_in(
        &self,
        tx: &mut S::Tx,
        workspace_id: WorkspaceId,
        actor: UserId,
        deadline: Timestamp,
        now: Timestamp,
    ) -> ApiResult<(Timestamp, Vec<Event>)> {
        let workspace = load_workspace(tx, workspace_id).await?;
        let actor = load_user(tx, actor).await?;
        authorize(&actor, &workspace)?;
        let Some(latest) = tx.latest_build(workspace.id).await? else {
            return Err(ApiError::refused(Refusal::Extend(ExtendRefusal::NotRunning)));
        };
        match extend(&latest, deadline, now) {
            ExtendDecision::Refused(refusal) => Err(ApiError::refused(Refusal::Extend(refusal))),
            ExtendDecision::Set { deadline } => {
                let mut build = latest.build;
                build.deadline = Some(deadline);
                tx.update_build(&build).await?;
                Ok((deadline, Vec::new()))
            }
        }
    }

    /// Changes a workspace's ttl, autostart, update policy or dormancy.
    pub async fn update_workspace(
        &self,
        workspace: WorkspaceId,
        actor: UserId,
        update: WorkspaceUpdate,
        now: Timestamp,
    ) -> ApiResult<Workspace> {
        transact!(self, Subsystem::Api, "update_workspace", |tx| self
            .update_workspace_in(tx, workspace, actor, &update, now))
    }

    async fn update_workspace_in(
        &self,
        tx: &mut S::Tx,
        workspace_id: WorkspaceId,
        actor: UserId,
        update: &WorkspaceUpdate,
        now: Timestamp,
    ) -> ApiResult<(Workspace, Vec<Event>)> {
        let mut workspace = load_workspace_for_update(tx, workspace_id).await?;
        let actor = load_user(tx, actor).await?;
        authorize(&actor, &workspace)?;
        let template = load_template(tx, workspace.template_id).await?;
        let mut events = Vec::new();

        if let Some(ttl) = update.ttl {
            let ttl = validate_ttl(ttl)?;
            if !template.allow_user_autostop {
                return Err(ApiError::refused(Refusal::AutostopDisallowed { template: template.name.clone() }));
            }
            if ttl.is_none() && workspace.ttl.is_some() {
                // §5.3: clearing the ttl moves the running deadline to the max.
                if let Some(latest) = tx.latest_build(workspace.id).await? {
                    if is_running(&latest) {
                        let mut build = latest.build;
                        build.deadline = deadline_when_ttl_cleared(&build);
                        tx.update_build(&build).await?;
                    }
                }
            }
            workspace.ttl = ttl;
        }
        if let Some(autostart) = &update.autostart {
            let autostart = autostart.as_ref().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
            match &autostart {
                Some(text) => {
                    if !template.allow_user_autostart {
                        return Err(ApiError::refused(Refusal::AutostartDisallowed {
                            template: template.name.clone(),
                        }));
                    }
                    let schedule = CronSchedule::parse_weekly(text)
                        .map_err(|error| ApiError::refused(Refusal::InvalidSchedule(error)))?;
                    workspace.next_start_at = next_allowed_autostart(&schedule, now, template.autostart_days);
                }
                None => workspace.next_start_at = None,
            }
            workspace.autostart = autostart;
        }
        if let Some(policy) = update.automatic_updates {
            workspace.automatic_updates = policy;
        }
        if let Some(dormant) = update.dormant {
            if !actor.roles.admin {
                return Err(ApiError::refused(Refusal::Forbidden {
                    actor: actor.name.clone(),
                    object: format!("the dormancy of {}", workspace.name),
                }));
            }
            match (dormant, workspace.dormant_at) {
                (true, None) => {
                    let autodelete = template.time_til_dormant_autodelete;
                    workspace.dormant_at = Some(now);
                    workspace.deleting_at = autodelete.is_positive().then(|| now + autodelete);
                    workspace.next_start_at = None;
                    let notification = NewNotification {
                        kind: NotificationKind::WorkspaceDormant,
                        user_id: workspace.owner_id,
                        dedupe_key: DedupeKey::workspace_dormant(workspace.id, now),
                        workspace_id: Some(workspace.id),
                        payload: NotificationPayload::WorkspaceDormant {
                            workspace: workspace.name.clone(),
                            reason: format!("marked dormant by {}", actor.name),
                            deleting_at: workspace.deleting_at,
                        },
                    };
                    notify::enqueue(tx, &self.ids, &notification, now, &mut events).await?;
                }
                (false, Some(_)) => {
                    workspace.dormant_at = None;
                    workspace.deleting_at = None;
                    workspace.last_used_at = workspace.last_used_at.max(now);
                }
                _ => {}
            }
        }
        tx.update_workspace(&workspace).await?;
        Ok((workspace, events))
    }

    /// A user creates a workspace and its first start build.
    pub async fn create_workspace(&self, actor: UserId, new: NewWorkspace, now: Timestamp) -> ApiResult<Workspace> {
        transact!(self, Subsystem::Api, "create_workspace", |tx| self.create_workspace_in(tx, actor, &new, now))
    }

    async fn create_workspace_in(
        &self,
        tx: &mut S::Tx,
        actor: UserId,
        new: &NewWorkspace,
        now: Timestamp,
    ) -> ApiResult<(Workspace, Vec<Event>)> {
        let actor = load_user(tx, actor).await?;
        if actor.id != new.owner && !actor.roles.admin {
            return Err(ApiError::refused(Refusal::Forbidden { actor: actor.name, object: new.name.clone() }));
        }
        let template = load_template(tx, new.template).await?;
        if template.deleted {
            return Err(ApiError::refused(Refusal::NotFound { what: format!("template {}", template.name) }));
        }
        if tx.workspace_by_name(&new.name).await?.is_some() {
            return Err(ApiError::refused(Refusal::NameTaken { name: new.name.clone() }));
        }
        let version = load_version(tx, new.version.unwrap_or(template.active_version_id)).await?;
        let parameters = resolve_parameters(&version, &new.parameters)?;
        let ttl = match new.ttl {
            Some(ttl) => validate_ttl(ttl)?,
            None => template.default_ttl.is_positive().then_some(template.default_ttl),
        };
        let autostart = match &new.autostart {
            Some(text) => {
                CronSchedule::parse_weekly(text).map_err(|error| ApiError::refused(Refusal::InvalidSchedule(error)))?;
                Some(text.clone())
            }
            None => None,
        };
        let mut workspace = Workspace {
            id: self.ids.next(),
            owner_id: new.owner,
            template_id: template.id,
            name: new.name.clone(),
            ttl,
            autostart,
            automatic_updates: new.automatic_updates,
            last_used_at: now,
            dormant_at: None,
            deleting_at: None,
            next_start_at: None,
            deleted: false,
            created_at: now,
        };
        match tx.insert_workspace(&workspace).await {
            Err(StoreError::UniqueViolation { .. }) => {
                return Err(ApiError::refused(Refusal::NameTaken { name: new.name.clone() }))
            }
            other => other?,
        }
        let request = BuildRequest {
            transition: Transition::Start,
            reason: BuildReason::Initiator,
            initiator: actor.id,
            version_id: version.id,
            parameters,
            preset_id: new.preset,
        };
        let (build, next_start_at) =
            insert_next_build(tx, &self.ids, &workspace, &template, None, request, now).await?;
        if next_start_at.is_some() {
            tx.set_next_start_at(workspace.id, next_start_at).await?;
            workspace.next_start_at = next_start_at;
        }
        Ok((workspace, vec![build_event(&build, BuildOrigin::Api)]))
    }

    // ---- admins: templates, versions, users ------------------------------------

    /// An admin changes template settings (§5.3's knock-on effects included) or
    /// deletes the template.
    pub async fn update_template(
        &self,
        template: TemplateId,
        actor: UserId,
        update: TemplateUpdate,
        now: Timestamp,
    ) -> ApiResult<Template> {
        transact!(self, Subsystem::Api, "update_template", |tx| self
            .update_template_in(tx, template, actor, &update, now))
    }

    async fn update_template_in(
        &self,
        tx: &mut S::Tx,
        template_id: TemplateId,
        actor: UserId,
        update: &TemplateUpdate,
        now: Timestamp,
    ) -> ApiResult<(Template, Vec<Event>)> {
        let actor = load_user(tx, actor).await?;
        let old = load_template(tx, template_id).await?;
        if !actor.roles.admin {
            return Err(ApiError::refused(Refusal::Forbidden { actor: actor.name, object: old.name }));
        }
        let mut new = old.clone();
        apply_template_update(&mut new, update)?;
        if update.deleted == Some(true) && !old.deleted {
            if !tx.workspaces_of_template(template_id, None, 1).await?.is_empty() {
                return Err(ApiError::refused(Refusal::TemplateHasWorkspaces { template: old.name }));
            }
            new.deleted = true;
        }
        tx.update_template(&new).await?;

        let mut events = Vec::new();
        let ttl_reset = ttl_after_template_update(&old, &new);
        let requirement_changed = old.autostop_requirement != new.autostop_requirement;
        let autodelete_changed = old.time_til_dormant_autodelete != new.time_til_dormant_autodelete;
        let days_changed = old.autostart_days != new.autostart_days;
        if ttl_reset.is_none() && !requirement_changed && !autodelete_changed && !days_changed {
            return Ok((new, Vec::new()));
        }
        let mut after = None;
        loop {
            let page = tx.workspaces_of_template(template_id, after, TEMPLATE_WORKSPACES_PAGE_MAX).await?;
            let full = page.len() as u32 == TEMPLATE_WORKSPACES_PAGE_MAX;
            after = page.last().map(|w| w.id);
            for mut workspace in page {
                let before = workspace.clone();
                if let Some(ttl) = ttl_reset {
                    workspace.ttl = ttl;
                }
                if days_changed {
                    if let Some(Ok(schedule)) = workspace.autostart.as_deref().map(CronSchedule::parse_weekly) {
                        workspace.next_start_at = next_allowed_autostart(&schedule, now, new.autostart_days);
                    }
                }
                if autodelete_changed {
                    if let Some(dormant_at) = workspace.dormant_at {
                        let autodelete = new.time_til_dormant_autodelete;
                        workspace.deleting_at = autodelete.is_positive().then(|| dormant_at + autodelete);
                        if let Some(deleting_at) = workspace.deleting_at {
                            let notification = NewNotification {
                                kind: NotificationKind::WorkspaceMarkedForDeletion,
                                user_id: workspace.owner_id,
                                dedupe_key: DedupeKey::workspace_marked_for_deletion(workspace.id, deleting_at),
                                workspace_id: Some(workspace.id),
                                payload: NotificationPayload::WorkspaceMarkedForDeletion {
                                    workspace: workspace.name.clone(),
                                    deleting_at,
                                },
                            };
                            notify::enqueue(tx, &self.ids, &notification, now, &mut events).await?;
                        }
                    }
                }
                if workspace != before {
                    tx.update_workspace(&workspace).await?;
                }
                if requirement_changed {
                    self.recompute_max_deadline(tx, &workspace, &new, now).await?;
                }
            }
            if !full {
                break;
            }
        }
        Ok((new, events))
    }

    /// §5.3 requirement change for one workspace's running build.
    async fn recompute_max_deadline(
        &self,
        tx: &mut S::Tx,
        workspace: &Workspace,
        template: &Template,
        now: Timestamp,
    ) -> ApiResult<()> {
        let Some(latest) = tx.latest_build(workspace.id).await? else { return Ok(()) };
        if !is_running(&latest) || workspace.is_prebuild() {
            return Ok(());
        }
        let Some(completed_at) = latest.job.completed_at else { return Ok(()) };
        let owner = load_user(tx, workspace.owner_id).await?;
        let quiet = CronSchedule::parse_daily(owner.quiet_hours_or_default())
            .or_else(|_| CronSchedule::parse_daily(crate::model::QUIET_HOURS_DEFAULT));
        let recomputed = match quiet {
            Ok(quiet) => max_deadline(&template.autostop_requirement, &quiet, completed_at),
            Err(_) => None,
        };
        let deadlines = deadlines_after_requirement_change(&latest.build, recomputed, now);
        if deadlines.deadline != latest.build.deadline || deadlines.max_deadline != latest.build.max_deadline {
            let mut build = latest.build;
            build.deadline = deadlines.deadline;
            build.max_deadline = deadlines.max_deadline;
            tx.update_build(&build).await?;
        }
        Ok(())
    }

    /// An admin publishes a new active version with its presets.
    pub async fn publish_version(
        &self,
        template: TemplateId,
        actor: UserId,
        version: NewVersion,
        now: Timestamp,
    ) -> ApiResult<TemplateVersion> {
        transact!(self, Subsystem::Api, "publish_version", |tx| self
            .publish_version_in(tx, template, actor, &version, now))
    }

    async fn publish_version_in(
        &self,
        tx: &mut S::Tx,
        template_id: TemplateId,
        actor: UserId,
        new: &NewVersion,
        now: Timestamp,
    ) -> ApiResult<(TemplateVersion, Vec<Event>)> {
        let actor = load_user(tx, actor).await?;
        let mut template = load_template(tx, template_id).await?;
        if !actor.roles.admin {
            return Err(ApiError::refused(Refusal::Forbidden { actor: actor.name, object: template.name }));
        }
        let version = TemplateVersion {
            id: self.ids.next(),
            template_id,
            name: new.name.clone(),
            parameters: new.parameters.clone(),
            created_at: now,
        };
        tx.insert_version(&version).await?;
        for preset in &new.presets {
            let preset = Preset {
                id: self.ids.next(),
                version_id: version.id,
                name: preset.name.clone(),
                parameters: preset.parameters.clone(),
                instances: preset.instances,
                expiration_ttl: preset.expiration_ttl,
                schedules: preset.schedules.clone(),
                last_invalidated_at: None,
                status: PresetStatus::Healthy,
            };
            tx.insert_preset(&preset).await?;
        }
        template.active_version_id = version.id;
        tx.update_template(&template).await?;
        Ok((version, Vec::new()))
    }

    /// An admin suspends, reactivates or changes the roles of a user.
    pub async fn set_user(
        &self,
        user: UserId,
        actor: UserId,
        status: Option<UserStatus>,
        roles: Option<crate::model::Roles>,
    ) -> ApiResult<User> {
        transact!(self, Subsystem::Api, "set_user", |tx| self.set_user_in(tx, user, actor, status, roles))
    }

    async fn set_user_in(
        &self,
        tx: &mut S::Tx,
        user_id: UserId,
        actor: UserId,
        status: Option<UserStatus>,
        roles: Option<crate::model::Roles>,
    ) -> ApiResult<(User, Vec<Event>)> {
        let actor = load_user(tx, actor).await?;
        let mut user = load_user(tx, user_id).await?;
        if !actor.roles.admin {
            return Err(ApiError::refused(Refusal::Forbidden { actor: actor.name, object: user.name }));
        }
        if let Some(status) = status {
            user.status = status;
        }
        if let Some(roles) = roles {
            user.roles = roles;
        }
        tx.update_user(&user).await?;
        Ok((user, Vec::new()))
    }

    // ---- agents -------------------------------------------------------------------

    /// An agent reports activity: marks usage (flushed in batches) and bumps the
    /// deadline in its own transaction (§5.4, §7). Returns the new deadline if
    /// it moved.
    pub async fn report_activity(
        &self,
        workspace: WorkspaceId,
        source: ActivitySource,
        now: Timestamp,
    ) -> ApiResult<Option<Timestamp>> {
        let marks_usage = match source {
            ActivitySource::AgentUsage { sessions } => sessions > 0,
            ActivitySource::ChatHeartbeat | ActivitySource::AppStatus => true,
        };
        if marks_usage {
            self.usage.mark(workspace);
        }
        transact!(self, Subsystem::Activity, "report_activity", |tx| self.bump_in(tx, workspace, source, now))
    }

    async fn bump_in(
        &self,
        tx: &mut S::Tx,
        workspace_id: WorkspaceId,
        source: ActivitySource,
        now: Timestamp,
    ) -> ApiResult<(Option<Timestamp>, Vec<Event>)> {
        let workspace = load_workspace(tx, workspace_id).await?;
        let template = load_template(tx, workspace.template_id).await?;
        let Some(latest) = tx.latest_build(workspace.id).await? else { return Ok((None, Vec::new())) };
        let input = BumpInput { workspace: &workspace, template: &template, latest: &latest, source };
        match activity_bump(&input, now) {
            BumpDecision::Skip(_) => Ok((None, Vec::new())),
            BumpDecision::Bump { deadline } => {
                let from = latest.build.deadline;
                let mut build = latest.build;
                build.deadline = Some(deadline);
                tx.update_build(&build).await?;
                let events = match from {
                    Some(from) => vec![Event::ActivityBumped { workspace: workspace.id, from, to: deadline }],
                    None => Vec::new(),
                };
                Ok((Some(deadline), events))
            }
        }
    }

    /// The agent of the workspace's latest build reports ready.
    pub async fn report_agent_ready(&self, workspace: WorkspaceId, now: Timestamp) -> ApiResult<bool> {
        transact!(self, Subsystem::Api, "report_agent_ready", |tx| self.agent_ready_in(tx, workspace, now))
    }

    async fn agent_ready_in(
        &self,
        tx: &mut S::Tx,
        workspace_id: WorkspaceId,
        now: Timestamp,
    ) -> ApiResult<(bool, Vec<Event>)> {
        let Some(latest) = tx.latest_build(workspace_id).await? else { return Ok((false, Vec::new())) };
        if !is_running(&latest) || latest.build.agent_ready_at.is_some() {
            return Ok((false, Vec::new()));
        }
        let mut build = latest.build;
        build.agent_ready_at = Some(now);
        tx.update_build(&build).await?;
        Ok((true, Vec::new()))
    }

    // ---- provisioners -------------------------------------------------------------

    /// A provisioner daemon reports itself alive.
    pub async fn provisioner_heartbeat(&self, daemon: ProvisionerId, name: &str, now: Timestamp) -> ApiResult<()> {
        let daemon = ProvisionerDaemon { id: daemon, name: name.to_owned(), last_seen_at: now };
        transact!(self, Subsystem::Provisioner, "provisioner_heartbeat", |tx| async {
            tx.upsert_provisioner(&daemon).await?;
            Ok(((), Vec::new()))
        })
    }

    /// A provisioner daemon takes the next job (users' first, oldest first).
    /// Liveness is reported separately ([`Api::provisioner_heartbeat`]), so an
    /// idle poll writes nothing.
    pub async fn acquire_job(&self, daemon: ProvisionerId, now: Timestamp) -> ApiResult<Option<Job>> {
        transact!(self, Subsystem::Provisioner, "acquire_job", |tx| async {
            let job = tx.acquire_job(daemon, now).await?;
            let events =
                job.iter().map(|job| Event::JobAcquired { job: job.id, workspace: job.workspace_id }).collect();
            Ok((job, events))
        })
    }

    /// A provisioner reports a job's end: the engine's job-completion operation,
    /// which sets deadlines (§5.1) and writes the resulting notifications (§8).
    pub async fn complete_job(&self, job: JobId, result: JobResult, now: Timestamp) -> ApiResult<Job> {
        transact!(self, Subsystem::Provisioner, "complete_job", |tx| self.complete_job_in(tx, job, &result, now))
    }

    async fn complete_job_in(
        &self,
        tx: &mut S::Tx,
        job_id: JobId,
        result: &JobResult,
        now: Timestamp,
    ) -> ApiResult<(Job, Vec<Event>)> {
        let mut job = tx
            .job(job_id)
            .await?
            .ok_or_else(|| ApiError::refused(Refusal::NotFound { what: format!("job {job_id}") }))?;
        if job.status.is_terminal() {
            return Err(ApiError::refused(Refusal::JobFinished { job: job_id }));
        }
        let BuildWithJob { mut build, .. } = tx
            .build(job.build_id)
            .await?
            .ok_or_else(|| StoreError::invalid_data("job", format!("build {} missing", job.build_id)))?;
        let mut workspace = load_workspace(tx, job.workspace_id).await?;
        let template = load_template(tx, workspace.template_id).await?;

        let mut failure = match result {
            JobResult::Succeeded => None,
            JobResult::Failed { error } => Some(error.clone()),
        };
        if failure.is_none() && build.transition == Transition::Start && !workspace.is_prebuild() {
            let owner = load_user(tx, workspace.owner_id).await?;
            let input = CompletionInput {
                template: &template,
                workspace: &workspace,
                quiet_hours: owner.quiet_hours_or_default(),
                completed_at: now,
            };
            match deadlines_at_completion(&input) {
                CompletionDeadlines::Set(deadlines) => {
                    build.deadline = deadlines.deadline;
                    build.max_deadline = deadlines.max_deadline;
                }
                CompletionDeadlines::Invalid { reason } => failure = Some(reason),
            }
        }
        job.completed_at = Some(now);
        match &failure {
            None => {
                job.status = JobStatus::Succeeded;
                job.error = None;
            }
            Some(error) => {
                job.status = JobStatus::Failed;
                job.error = Some(error.clone());
                build.deadline = None;
                build.max_deadline = None;
            }
        }
        tx.update_job(&job).await?;
        tx.update_build(&build).await?;
        let mut events = Vec::new();

        if failure.is_none() && build.transition == Transition::Delete {
            workspace.deleted = true;
            tx.update_workspace(&workspace).await?;
            if build.reason == BuildReason::Autodelete {
                let deleted = NewNotification {
                    kind: NotificationKind::WorkspaceDeleted,
                    user_id: workspace.owner_id,
                    dedupe_key: DedupeKey::workspace_deleted(workspace.id),
                    workspace_id: Some(workspace.id),
                    payload: NotificationPayload::WorkspaceDeleted {
                        workspace: workspace.name.clone(),
                        reason: "dormancy".to_owned(),
                    },
                };
                notify::enqueue(tx, &self.ids, &deleted, now, &mut events).await?;
            }
        }
        if failure.is_some() && build.reason.is_autobuild() {
            let failed = NewNotification {
                kind: NotificationKind::AutobuildFailed,
                user_id: workspace.owner_id,
                dedupe_key: DedupeKey::autobuild_failed(build.id),
                workspace_id: Some(workspace.id),
                payload: NotificationPayload::AutobuildFailed {
                    workspace: workspace.name.clone(),
                    build_number: build.number,
                    reason: build.reason,
                },
            };
            notify::enqueue(tx, &self.ids, &failed, now, &mut events).await?;
        }
        events.push(Event::JobCompleted { job: job.id, workspace: job.workspace_id, status: job.status });
        Ok((job, events))
    }
}

fn build_event(build: &Build, origin: BuildOrigin) -> Event {
    Event::BuildInserted {
        workspace: build.workspace_id,
        build: build.id,
        job: build.job_id,
        number: build.number,
        transition: build.transition,
        reason: build.reason,
        origin,
    }
}

fn is_running(latest: &BuildWithJob) -> bool {
    latest.build.transition == Transition::Start && latest.job.status == JobStatus::Succeeded
}

/// Only the owner or an admin may act on a workspace.
fn authorize(actor: &User, workspace: &Workspace) -> ApiResult<()> {
    if actor.id == workspace.owner_id || actor.roles.admin {
        Ok(())
    } else {
        Err(ApiError::refused(Refusal::Forbidden { actor: actor.name.clone(), object: workspace.name.clone() }))
    }
}

/// 0 or none: no autostop; else whole minutes within 1m..30d.
fn validate_ttl(ttl: Option<Span>) -> ApiResult<Option<Span>> {
    match ttl {
        None => Ok(None),
        Some(ttl) if ttl.is_zero() => Ok(None),
        Some(ttl) => {
            let whole_minutes = ttl.as_micros() % Span::from_mins(1).as_micros() == 0;
            if ttl < limits::WORKSPACE_TTL_MIN || ttl > limits::WORKSPACE_TTL_MAX || !whole_minutes {
                Err(ApiError::refused(Refusal::InvalidTtl { ttl }))
            } else {
                Ok(Some(ttl))
            }
        }
    }
}

/// Carried parameters checked against a version: a required one missing is a
/// refusal; a missing optional one with a default gets it.
fn resolve_parameters(version: &TemplateVersion, carried: &Parameters) -> ApiResult<Parameters> {
    let mut resolved = carried.clone();
    for spec in &version.parameters {
        if resolved.contains_key(&spec.name) {
            continue;
        }
        if spec.required {
            return Err(ApiError::refused(Refusal::ParameterRequired {
                version: version.name.clone(),
                parameter: spec.name.clone(),
            }));
        }
        if let Some(default) = &spec.default {
            resolved.insert(spec.name.clone(), default.clone());
        }
    }
    Ok(resolved)
}

fn apply_template_update(template: &mut Template, update: &TemplateUpdate) -> ApiResult<()> {
    let non_negative = |name: &str, span: Span| {
        if span.is_negative() {
            Err(ApiError::refused(Refusal::Invalid { detail: format!("{name} is negative") }))
        } else {
            Ok(span)
        }
    };
    if let Some(v) = update.default_ttl {
        template.default_ttl = non_negative("default_ttl", v)?;
    }
    if let Some(v) = update.activity_bump {
        template.activity_bump = non_negative("activity_bump", v)?;
    }
    if let Some(v) = update.autostop_notify {
        let v = non_negative("time_til_autostop_notify", v)?;
        if v.is_positive() && v < limits::AUTOSTOP_NOTIFY_MIN {
            return Err(ApiError::refused(Refusal::Invalid {
                detail: "time_til_autostop_notify is below 1m".to_owned(),
            }));
        }
        template.autostop_notify = v;
    }
    if let Some(v) = update.failure_ttl {
        template.failure_ttl = non_negative("failure_ttl", v)?;
    }
    if let Some(v) = update.time_til_dormant {
        template.time_til_dormant = non_negative("time_til_dormant", v)?;
    }
    if let Some(v) = update.time_til_dormant_autodelete {
        template.time_til_dormant_autodelete = non_negative("time_til_dormant_autodelete", v)?;
    }
    if let Some(v) = update.allow_user_autostart {
        template.allow_user_autostart = v;
    }
    if let Some(v) = update.allow_user_autostop {
        template.allow_user_autostop = v;
    }
    if let Some(v) = update.autostart_days {
        template.autostart_days = v;
    }
    if let Some(v) = update.autostop_requirement {
        if v.weeks > limits::AUTOSTOP_REQUIREMENT_WEEKS_MAX {
            return Err(ApiError::refused(Refusal::Invalid {
                detail: format!("autostop_requirement.weeks is {}, expected 1..16", v.weeks),
            }));
        }
        template.autostop_requirement = v;
    }
    if let Some(v) = update.require_active_version {
        template.require_active_version = v;
    }
    if let Some(v) = update.deprecated {
        template.deprecated = v;
    }
    if update.deleted == Some(false) {
        template.deleted = false;
    }
    Ok(())
}

async fn load_workspace<T: Tx>(tx: &mut T, id: WorkspaceId) -> ApiResult<Workspace> {
    match tx.workspace(id).await? {
        Some(workspace) if !workspace.deleted => Ok(workspace),
        _ => Err(ApiError::refused(Refusal::NotFound { what: format!("workspace {id}") })),
    }
}

async fn load_workspace_for_update<T: Tx>(tx: &mut T, id: WorkspaceId) -> ApiResult<Workspace> {
    match tx.workspace_for_update(id).await? {
        Some(workspace) if !workspace.deleted => Ok(workspace),
        _ => Err(ApiError::refused(Refusal::NotFound { what: format!("workspace {id}") })),
    }
}

async fn load_user<T: Tx>(tx: &mut T, id: UserId) -> ApiResult<User> {
    tx.user(id).await?.ok_or_else(|| ApiError::refused(Refusal::NotFound { what: format!("user {id}") }))
}

async fn load_template<T: Tx>(tx: &mut T, id: TemplateId) -> ApiResult<Template> {
    tx.template(id).await?.ok_or_else(|| ApiError::refused(Refusal::NotFound { what: format!("template {id}") }))
}

async fn load_version<T: Tx>(tx: &mut T, id: VersionId) -> ApiResult<TemplateVersion> {
    tx.version(id).await?.ok_or_else(|| ApiError::refused(Refusal::NotFound { what: format!("version {id}") }))
}
