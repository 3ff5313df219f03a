//! The daemon's HTTP surface (axum): the versioned JSON API under `/api/v1/`
//! over [`Api`], plus `/healthz` and `/metrics`. `engine/API.md` documents
//! every route with request and response examples.
//!
//! Bodies are JSON; instants are RFC 3339 strings in UTC (`2026-01-05T17:00:00Z`),
//! durations the scenario syntax (`8h`, `30m`, `0`). A refusal answers 4xx
//! with the refusal's text, a store error 503 (retryable: try again) or 500.
//! The daemon authenticates no one: user actions name their `actor`, and the
//! host's gateway is expected to set it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{FromRequest, Path, RawQuery, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use crate::api::{Api, ApiError, JobResult, NewWorkspace, Refusal, WorkspaceState, WorkspaceUpdate};
use crate::daemon::config::parse_duration;
use crate::daemon::database::DaemonStore;
use crate::daemon::metrics::Metrics;
use crate::ids::{JobId, ProvisionerId, TemplateId, UserId, VersionId, WorkspaceId};
use crate::limits;
use crate::model::{AutomaticUpdates, Build, BuildWithJob, Job, JobStatus, Transition, Workspace};
use crate::pubsub::{SharedSubscriber, Subscription, Topic};
use crate::rules::bump::ActivitySource;
use crate::runtime::SharedClock;
use crate::time::{Span, Timestamp};

/// What every handler reaches.
pub struct AppState<S: DaemonStore> {
    pub api: Arc<Api<S>>,
    pub store: Arc<S>,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    /// "Job available" notices, for long-polling acquires.
    pub subscriber: SharedSubscriber,
    /// Turns `true` when the daemon begins shutting down: long polls answer.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// The daemon's routes.
pub fn router<S: DaemonStore>(state: Arc<AppState<S>>) -> Router {
    Router::new()
        .route("/healthz", get(healthz::<S>))
        .route("/metrics", get(metrics::<S>))
        .route("/api/v1/workspaces", post(create_workspace::<S>))
        .route("/api/v1/workspaces/{id}", get(read_workspace::<S>).patch(update_workspace::<S>))
        .route("/api/v1/workspaces/{id}/builds", post(build::<S>))
        .route("/api/v1/workspaces/{id}/extend", axum::routing::put(extend::<S>))
        .route("/api/v1/workspaces/{id}/activity", post(activity::<S>))
        .route("/api/v1/workspaces/{id}/agent/ready", post(agent_ready::<S>))
        .route("/api/v1/provisioners/{id}/heartbeat", post(provisioner_heartbeat::<S>))
        .route("/api/v1/provisioners/{id}/acquire", post(acquire_job::<S>))
        .route("/api/v1/jobs/{id}/complete", post(complete_job::<S>))
        .fallback(not_found)
        .with_state(state)
}

// ---- errors ---------------------------------------------------------------------

/// An error answer: `{"error": "...", "kind": "..."}` with its status.
#[derive(Debug)]
pub struct HttpError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    kind: &'a str,
}

impl HttpError {
    fn bad_request(message: impl Into<String>) -> Self {
        HttpError { status: StatusCode::BAD_REQUEST, kind: "bad_request", message: message.into() }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = Json(ErrorBody { error: &self.message, kind: self.kind });
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            (self.status, [(header::RETRY_AFTER, "1")], body).into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}

impl From<ApiError> for HttpError {
    fn from(error: ApiError) -> Self {
        let message = error.to_string();
        match &error {
            ApiError::Refused(refusal) => {
                let status = match refusal {
                    Refusal::NotFound { .. } => StatusCode::NOT_FOUND,
                    Refusal::Forbidden { .. } => StatusCode::FORBIDDEN,
                    Refusal::JobUnfinished { .. }
                    | Refusal::Dormant { .. }
                    | Refusal::JobFinished { .. }
                    | Refusal::NameTaken { .. }
                    | Refusal::TemplateHasWorkspaces { .. } => StatusCode::CONFLICT,
                    Refusal::Extend(_)
                    | Refusal::InvalidTtl { .. }
                    | Refusal::InvalidSchedule(_)
                    | Refusal::AutostopDisallowed { .. }
                    | Refusal::AutostartDisallowed { .. }
                    | Refusal::ParameterRequired { .. }
                    | Refusal::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                };
                HttpError { status, kind: "refused", message }
            }
            ApiError::Store(store) if store.is_retryable() => {
                HttpError { status: StatusCode::SERVICE_UNAVAILABLE, kind: "unavailable", message }
            }
            ApiError::Store(_) => HttpError { status: StatusCode::INTERNAL_SERVER_ERROR, kind: "internal", message },
        }
    }
}

async fn not_found() -> HttpError {
    HttpError { status: StatusCode::NOT_FOUND, kind: "not_found", message: "no such route".to_owned() }
}

/// A JSON body whose rejections answer in the API's error shape.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = HttpError;

    async fn from_request(request: Request, state: &S) -> Result<Self, HttpError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(HttpError {
                status: rejection.status(),
                kind: "bad_request",
                message: format!("invalid request body: {}", rejection.body_text()),
            }),
        }
    }
}

fn id_of<T: From<Uuid>>(what: &str, text: &str) -> Result<T, HttpError> {
    Uuid::parse_str(text).map(T::from).map_err(|_| HttpError::bad_request(format!("invalid {what} id `{text}`")))
}

fn instant(field: &str, text: &str) -> Result<Timestamp, HttpError> {
    Timestamp::parse_rfc3339(text)
        .ok_or_else(|| HttpError::bad_request(format!("`{field}`: expected an RFC 3339 instant, found `{text}`")))
}

fn parsed<T: std::str::FromStr>(field: &str, text: &str) -> Result<T, HttpError>
where
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e: T::Err| HttpError::bad_request(format!("`{field}`: {e}")))
}

/// `null` and absent differ: absent leaves a field alone, `null` clears it.
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

fn ttl_of(text: Option<&str>) -> Result<Option<Span>, HttpError> {
    match text {
        None => Ok(None),
        Some(text) => parse_duration(text).map(Some).map_err(|e| HttpError::bad_request(format!("`ttl`: {e}"))),
    }
}

// ---- response bodies ----------------------------------------------------------------

fn ts(at: Timestamp) -> String {
    at.to_string()
}

fn ts_opt(at: Option<Timestamp>) -> Option<String> {
    at.map(ts)
}

/// A workspace with its latest build.
#[derive(Debug, Serialize)]
pub struct WorkspaceBody {
    pub id: String,
    pub name: String,
    pub owner_id: String,
    pub template_id: String,
    pub ttl: Option<String>,
    pub autostart: Option<String>,
    pub automatic_updates: &'static str,
    pub last_used_at: String,
    pub dormant_at: Option<String>,
    pub deleting_at: Option<String>,
    pub next_start_at: Option<String>,
    pub deleted: bool,
    pub created_at: String,
    pub latest_build: Option<BuildBody>,
}

impl WorkspaceBody {
    fn of(workspace: &Workspace, latest: Option<&BuildWithJob>) -> Self {
        WorkspaceBody {
            id: workspace.id.to_string(),
            name: workspace.name.clone(),
            owner_id: workspace.owner_id.to_string(),
            template_id: workspace.template_id.to_string(),
            ttl: workspace.ttl.map(|t| t.to_string()),
            autostart: workspace.autostart.clone(),
            automatic_updates: workspace.automatic_updates.as_str(),
            last_used_at: ts(workspace.last_used_at),
            dormant_at: ts_opt(workspace.dormant_at),
            deleting_at: ts_opt(workspace.deleting_at),
            next_start_at: ts_opt(workspace.next_start_at),
            deleted: workspace.deleted,
            created_at: ts(workspace.created_at),
            latest_build: latest.map(|l| BuildBody::of(&l.build, Some(&l.job))),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct BuildBody {
    pub id: String,
    pub workspace_id: String,
    pub number: i32,
    pub transition: &'static str,
    pub reason: &'static str,
    pub initiator_id: String,
    pub version_id: String,
    pub created_at: String,
    pub deadline: Option<String>,
    pub max_deadline: Option<String>,
    pub notified_autostop_deadline: Option<String>,
    pub agent_ready_at: Option<String>,
    pub job_id: String,
    pub job: Option<JobBody>,
}

impl BuildBody {
    fn of(build: &Build, job: Option<&Job>) -> Self {
        BuildBody {
            id: build.id.to_string(),
            workspace_id: build.workspace_id.to_string(),
            number: build.number,
            transition: build.transition.as_str(),
            reason: build.reason.as_str(),
            initiator_id: build.initiator_id.to_string(),
            version_id: build.version_id.to_string(),
            created_at: ts(build.created_at),
            deadline: ts_opt(build.deadline),
            max_deadline: ts_opt(build.max_deadline),
            notified_autostop_deadline: ts_opt(build.notified_autostop_deadline),
            agent_ready_at: ts_opt(build.agent_ready_at),
            job_id: build.job_id.to_string(),
            job: job.map(JobBody::of),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct JobBody {
    pub id: String,
    pub build_id: String,
    pub workspace_id: String,
    pub version_id: String,
    pub status: &'static str,
    pub created_at: String,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub canceled_at: Option<String>,
    pub worker_id: Option<String>,
    pub error: Option<String>,
}

impl JobBody {
    fn of(job: &Job) -> Self {
        JobBody {
            id: job.id.to_string(),
            build_id: job.build_id.to_string(),
            workspace_id: job.workspace_id.to_string(),
            version_id: job.version_id.to_string(),
            status: job.status.as_str(),
            created_at: ts(job.created_at),
            started_at: ts_opt(job.started_at),
            completed_at: ts_opt(job.completed_at),
            canceled_at: ts_opt(job.canceled_at),
            worker_id: job.worker_id.map(|w| w.to_string()),
            error: job.error.clone(),
        }
    }
}

// ---- health and metrics -----------------------------------------------------------

async fn healthz<S: DaemonStore>(State(state): State<Arc<AppState<S>>>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(serde_json::json!({ "status": "ok" }))).into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "unavailable", "error": error.to_string() })),
        )
            .into_response(),
    }
}

async fn metrics<S: DaemonStore>(State(state): State<Arc<AppState<S>>>) -> Response {
    state.metrics.observe_pool(&state.store.pool_stats());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render()).into_response()
}

// ---- workspaces -------------------------------------------------------------------

async fn read_workspace<S: DaemonStore>(
    State(state): State<Arc<AppState<S>>>,
    Path(id): Path<String>,
) -> Result<Json<WorkspaceBody>, HttpError> {
    let id: WorkspaceId = id_of("workspace", &id)?;
    let WorkspaceState { workspace, latest } = state.api.workspace(id).await?;
    Ok(Json(WorkspaceBody::of(&workspace, latest.as_ref())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspaceRequest {
    pub actor: Uuid,
    pub name: String,
    pub owner: Uuid,
    pub template: Uuid,
    #[serde(default)]
    pub version: Option<Uuid>,
    #[serde(default, deserialize_with = "present")]
    pub ttl: Option<Option<String>>,
    #[serde(default)]
    pub autostart: Option<String>,
    #[serde(default)]
    pub automatic_updates: Option<String>,
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
}

async fn create_workspace<S: DaemonStore>(
    State(state): State<Arc<AppState<S>>>,
    Body(request): Body<CreateWorkspaceRequest>,
) -> Result<(StatusCode, Json<WorkspaceBody>), HttpError> {
    let ttl = match &request.ttl {
        None => None,
        Some(ttl) => Some(ttl_of(ttl.as_deref())?),
    };
    let automatic_updates = match &request.automatic_updates {
        Some(text) => parsed::<AutomaticUpdates>("automatic_updates", text)?,
        None => AutomaticUpdates::Never,
    };
    let new = NewWorkspace {
        name: request.name,
        owner: UserId::from(request.owner),
        template: TemplateId::from(request.template),
        version: request.version.map(VersionId::from),
        preset: None,
        parameters: request.parameters,
        ttl,
        autostart: request.autostart,
        automatic_updates,
    };
    let now = state.clock.now();
    let workspace = state.api.create_workspace(UserId::from(request.actor), new, now).await?;
    let WorkspaceState { workspace, latest } = state.api.workspace(workspace.id).await?;
    Ok((StatusCode::CREATED, Json(WorkspaceBody::of(&workspace, latest.as_ref()))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateWorkspaceRequest {
    pub actor: Uuid,
    #[serde(default, deserialize_with = "present")]
    pub ttl: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub autostart: Option<Option<String>>,
    #[serde(default)]
    pub automatic_updates: Option<String>,
    #[serde(default)]
    pub dormant: Option<bool>,
}

async fn update_workspace<S: DaemonStore>(
    State(state): State<Arc<AppState<S>>>,
    Path(id): Path<String>,
    Body(request): Body<UpdateWorkspaceRequest>,
) -> Result<Json<WorkspaceBody>, HttpError> {
    let id: WorkspaceId = id_of("workspace", &id)?;
    let update = WorkspaceUpdate {
        ttl: match &request.ttl {
            None => None,
            Some(ttl) => Some(ttl_of(ttl.as_deref())?),
        },
        autostart: request.autostart.clone(),
        automatic_updates: match &request.automatic_updates {
            Some(text) => Some(parsed::<AutomaticUpdates>("automatic_updates", text)?),
            None => None,
        },
        dormant: request.dormant,
    };
    let now = state.clock.now();
    state.api.update_workspace(id, UserId::from(request.actor), update, now).await?;
    let WorkspaceState { workspace, latest } = state.api.workspace(id).await?;
    Ok(Json(WorkspaceBody::of(&workspace, latest.as_ref())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildRequest {
    pub actor: Uuid,
    pub transition: String,
}

async fn build<S: DaemonStore>(
    State(state): State<Arc<AppState<S>>>,
    Path(id): Path<String>,
    Body(request): Body<BuildRequest>,
) -> Result<(StatusCode, Json<BuildBody>), HttpError> {
    let id: WorkspaceId = id_of("workspace", &id)?;
    let transition: Transition = parsed("transition", &request.transition)?;
    let now = state.clock.now();
    let build = state.api.build(id, UserId::from(request.actor), transition, now).await?;
    Ok((StatusCode::CREATED, Json(BuildBody::of(&build, None))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtendRequest {
    pub actor: Uuid,
    pub deadline: String,
}

#[derive(Debug, Serialize)]
pub struct DeadlineBody {
    pub deadline: Option<String>,
}

async fn extend<S: DaemonStore>(
    State(state): State<Arc<AppState<S>>>,
    Path(id): Path<String>,
    Body(request): Body<ExtendRequest>,
) -> Result<Json<DeadlineBody>, HttpError> {
    let id: WorkspaceId = id_of("workspace", &id)?;
    let deadline = instant("deadline", &request.deadline)?;
    let now = state.clock.now();
    let deadline = state.api.extend(id, UserId::from(request.actor), deadline, now).await?;
    Ok(Json(DeadlineBody { deadline: Some(ts(deadline)) }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityRequest {
    /// Open sessions (SSH, IDE, apps); 0 marks nothing and bumps nothing.
    pub sessions: u32,
}

async fn activity<S: DaemonStore>(
    State(state): State<Arc<AppState<S>>>,
    Path(id): Path<String>,
    Body(request): Body<ActivityRequest>,
) -> Result<Json<DeadlineBody>, HttpError> {
    let id: WorkspaceId = id_of("workspace", &id)?;
    let now = state.clock.now();
    let source = ActivitySource::AgentUsage { sessions: request.sessions };
    let deadline = state.api.report_activity(id, source, now).await?;
    Ok(Json(DeadlineBody { deadline: ts_opt(deadline) }))
}

#[derive(Debug, Serialize)]
pub struct ChangedBody {
    pub changed: bool,
}

async fn agent_ready<S: DaemonStore>(
    State(state): State<Arc<AppState<S>>>,
    Path(id): Path<String>,
) -> Result<Json<ChangedBody>, HttpError> {
    let id: WorkspaceId = id_of("workspace", &id)?;
    let now = state.clock.now();
    let changed = state.api.report_agent_ready(id, now).await?;
    Ok(Json(ChangedBody { changed }))
}

// ---- provisioners ------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    pub name: String,
}

async fn provisioner_heartbeat<S: DaemonStore>(
    State(state): State<Arc<AppState<S>>>,
    Path(id): Path<String>,
    Body(request): Body<HeartbeatRequest>,
) -> Result<StatusCode, HttpError> {
    let id: ProvisionerId = id_of("provisioner", &id)?;
    let now = state.clock.now();
    state.api.provisioner_heartbeat(id, &request.name, now).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize)]
pub struct AcquiredBody {
    /// `null` when no job is pending.
    pub job: Option<AcquiredJob>,
}

#[derive(Debug, Serialize)]
pub struct AcquiredJob {
    #[serde(flatten)]
    pub job: JobBody,
    /// What the build does, so a provisioner knows what to run.
    pub transition: Option<&'static str>,
}

/// `?wait=<duration>` of an acquire: how long to wait for a job when none is
/// pending (default 0, at most [`limits::ACQUIRE_WAIT_MAX`]).
fn acquire_wait(query: Option<&str>) -> Result<Span, HttpError> {
    let mut wait = Span::ZERO;
    for pair in query.unwrap_or_default().split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "wait" => wait = parse_duration(value).map_err(|e| HttpError::bad_request(format!("`wait`: {e}")))?,
            other => return Err(HttpError::bad_request(format!("unknown query parameter `{other}`, expected `wait`"))),
        }
    }
    if wait > limits::ACQUIRE_WAIT_MAX {
        return Err(HttpError::bad_request(format!(
            "`wait`: {wait} is longer than the maximum {}",
            limits::ACQUIRE_WAIT_MAX
        )));
    }
    Ok(wait)
}

/// What ended one wait of a long-polling acquire.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Woken {
    Stopping,
    Notice,
    Timeout,
}

/// The next notice; a closed subscription never yields (the wait then ends
/// at its timeout, and polling alone finds the job).
async fn next_notice(notices: &mut Subscription) {
    if notices.recv().await.is_none() {
        std::future::pending::<()>().await;
    }
}

async fn acquire_job<S: DaemonStore>(
    State(state): State<Arc<AppState<S>>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<AcquiredBody>, HttpError> {
    let id: ProvisionerId = id_of("provisioner", &id)?;
    let wait = acquire_wait(query.as_deref())?;
    // Subscribed before the first try: a job committed between that try and
    // the wait still wakes it.
    let mut notices = (!wait.is_zero()).then(|| state.subscriber.subscribe(Topic::JobAvailable));
    let mut acquired = state.api.acquire_job(id, state.clock.now()).await?;
    if let (None, Some(notices)) = (&acquired, notices.as_mut()) {
        // Long poll: each notice (or the timeout) is followed by one more try;
        // a notice whose job another provisioner took waits on.
        let deadline = state.clock.now() + wait;
        let mut stopping = state.stopping.clone();
        loop {
            let woken = tokio::select! {
                biased;
                _ = stopping.wait_for(|stopping| *stopping) => Woken::Stopping,
                _ = next_notice(notices) => Woken::Notice,
                _ = state.clock.sleep_until(deadline) => Woken::Timeout,
            };
            if woken == Woken::Stopping {
                break;
            }
            acquired = state.api.acquire_job(id, state.clock.now()).await?;
            if acquired.is_some() || woken == Woken::Timeout {
                break;
            }
        }
    }
    let Some(job) = acquired else { return Ok(Json(AcquiredBody { job: None })) };
    // The transition is read after the claim committed: the build never changes it.
    let transition = match state.api.workspace(job.workspace_id).await {
        Ok(WorkspaceState { latest: Some(latest), .. }) if latest.build.id == job.build_id => {
            Some(latest.build.transition.as_str())
        }
        _ => None,
    };
    Ok(Json(AcquiredBody { job: Some(AcquiredJob { job: JobBody::of(&job), transition }) }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// `succeeded` or `failed`.
    pub status: String,
    #[serde(default)]
    pub error: Option<String>,
}

async fn complete_job<S: DaemonStore>(
    State(state): State<Arc<AppState<S>>>,
    Path(id): Path<String>,
    Body(request): Body<CompleteRequest>,
) -> Result<Json<JobBody>, HttpError> {
    let id: JobId = id_of("job", &id)?;
    let result = match parsed::<JobStatus>("status", &request.status)? {
        JobStatus::Succeeded => JobResult::Succeeded,
        JobStatus::Failed => JobResult::Failed { error: request.error.unwrap_or_else(|| "failed".to_owned()) },
        other => {
            return Err(HttpError::bad_request(format!("`status`: expected `succeeded` or `failed`, found `{other}`")))
        }
    };
    let now = state.clock.now();
    let job = state.api.complete_job(id, result, now).await?;
    Ok(Json(JobBody::of(&job)))
}
