//! The store contract: typed, domain-level operations on an explicit
//! transaction, with PostgreSQL REPEATABLE READ semantics on every backend.
//!
//! [`Store::begin`] takes a pooled connection (waiting at most the acquire
//! timeout) and opens a transaction; the [`Tx`] holds that connection until it
//! commits, rolls back or is dropped (a dropped transaction rolls back, as a lost
//! PostgreSQL connection does). Every method is one statement. Every multi-row
//! read takes a `limit`. Timestamps are passed in: no backend calls SQL `now()`,
//! except [`Tx::db_now`], the database clock the chat semantics ask for.
//!
//! Backends: [`sqlite`] (embedded default, emulating PostgreSQL's concurrency in
//! a layer of its own) and, in production builds, PostgreSQL. One conformance
//! suite (`engine/tests/store_conformance/`) runs against each.

mod error;
#[cfg(all(feature = "postgres", not(madsim)))]
pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;

pub use error::StoreError;

use crate::hash::LockKey;
use crate::ids::{BuildId, ChatId, JobId, NotificationId, ProvisionerId, TemplateId, UserId, VersionId, WorkspaceId};
use crate::model::{
    Build, BuildWithJob, Chat, Job, NewNotification, Notification, Preset, ProvisionerDaemon, Template,
    TemplateVersion, User, Workspace,
};
use crate::time::Timestamp;

pub type StoreResult<T> = Result<T, StoreError>;

/// Who holds a connection: pools count use per subsystem, and the simulator's
/// invariants (`reconciler_pool_share`, `pool_reserve`) are judged on it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Subsystem {
    Lifecycle,
    Activity,
    Usage,
    Notifications,
    Provisioner,
    Api,
    Reconciler,
    Chat,
    ChatLease,
    Admin,
    /// Sending pubsub notices (`pg_notify`).
    Pubsub,
}

impl Subsystem {
    pub const fn as_str(self) -> &'static str {
        match self {
            Subsystem::Lifecycle => "lifecycle",
            Subsystem::Activity => "activity",
            Subsystem::Usage => "usage",
            Subsystem::Notifications => "notifications",
            Subsystem::Provisioner => "provisioner",
            Subsystem::Api => "api",
            Subsystem::Reconciler => "reconciler",
            Subsystem::Chat => "chat",
            Subsystem::ChatLease => "chat_lease",
            Subsystem::Admin => "admin",
            Subsystem::Pubsub => "pubsub",
        }
    }
}

/// Isolation levels a transaction may ask for. Only REPEATABLE READ exists: the
/// engine asks for nothing else, and the SQLite emulation refuses what it does
/// not emulate rather than silently giving something stronger or weaker.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Isolation {
    #[default]
    RepeatableRead,
}

/// How to open a transaction.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TxOptions {
    pub subsystem: Subsystem,
    pub isolation: Isolation,
    /// A read-only transaction fails any write with [`StoreError::Unsupported`].
    pub read_only: bool,
}

impl TxOptions {
    pub const fn new(subsystem: Subsystem) -> Self {
        TxOptions { subsystem, isolation: Isolation::RepeatableRead, read_only: false }
    }
    pub const fn read_only(subsystem: Subsystem) -> Self {
        TxOptions { subsystem, isolation: Isolation::RepeatableRead, read_only: true }
    }
}

/// Identifies a database session (a PostgreSQL backend pid, an emulated session).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct SessionId(pub i64);

/// Keyset cursor of the lifecycle scan: (latest build's version, workspace).
pub type LifecycleCursor = (VersionId, WorkspaceId);

/// A database: a pool of connections to it.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    type Tx: Tx;

    /// Takes a connection (waiting at most the pool's acquire timeout, else
    /// [`StoreError::PoolTimeout`]) and begins a transaction. The snapshot is
    /// taken by the first statement, not here.
    async fn begin(&self, options: TxOptions) -> StoreResult<Self::Tx>;

    /// Sessions now blocked waiting for a row lock or a unique-key holder (a
    /// probe for tests: `pg_blocking_pids` on PostgreSQL).
    async fn sessions_waiting(&self) -> StoreResult<Vec<SessionId>>;
}

/// An open transaction. One statement per method.
#[async_trait]
pub trait Tx: Send + 'static {
    // ---- transaction control -------------------------------------------------

    fn session_id(&self) -> SessionId;
    async fn commit(self) -> StoreResult<()>;
    async fn rollback(self) -> StoreResult<()>;
    /// `pg_try_advisory_xact_lock`: true at once or false without waiting;
    /// re-entrant; released when the transaction ends.
    async fn try_advisory_xact_lock(&mut self, key: LockKey) -> StoreResult<bool>;
    /// The database clock: the transaction's start time, fixed throughout
    /// (PostgreSQL's `now()`). Only the chat semantics use it.
    async fn db_now(&mut self) -> StoreResult<Timestamp>;

    // ---- users, templates, versions, presets ----------------------------------

    async fn insert_user(&mut self, user: &User) -> StoreResult<()>;
    /// Writes every field of `user` (by id).
    async fn update_user(&mut self, user: &User) -> StoreResult<()>;
    async fn user(&mut self, id: UserId) -> StoreResult<Option<User>>;
    async fn user_by_name(&mut self, name: &str) -> StoreResult<Option<User>>;
    /// Users ordered by id, after `after`.
    async fn users(&mut self, after: Option<UserId>, limit: u32) -> StoreResult<Vec<User>>;

    async fn insert_template(&mut self, template: &Template) -> StoreResult<()>;
    async fn update_template(&mut self, template: &Template) -> StoreResult<()>;
    async fn template(&mut self, id: TemplateId) -> StoreResult<Option<Template>>;
    /// Non-deleted template by name.
    async fn template_by_name(&mut self, name: &str) -> StoreResult<Option<Template>>;
    async fn templates(&mut self, after: Option<TemplateId>, limit: u32) -> StoreResult<Vec<Template>>;

    async fn insert_version(&mut self, version: &TemplateVersion) -> StoreResult<()>;
    async fn version(&mut self, id: VersionId) -> StoreResult<Option<TemplateVersion>>;
    /// Versions of a template, oldest first.
    async fn versions_of_template(&mut self, template: TemplateId, limit: u32) -> StoreResult<Vec<TemplateVersion>>;

    async fn insert_preset(&mut self, preset: &Preset) -> StoreResult<()>;
    async fn update_preset(&mut self, preset: &Preset) -> StoreResult<()>;
    async fn presets_of_version(&mut self, version: VersionId, limit: u32) -> StoreResult<Vec<Preset>>;

    // ---- workspaces ---------------------------------------------------------

    /// Fails with [`StoreError::UniqueViolation`] when a non-deleted workspace
    /// of the same owner has the same name.
    async fn insert_workspace(&mut self, workspace: &Workspace) -> StoreResult<()>;
    /// Writes every field of `workspace` (by id).
    async fn update_workspace(&mut self, workspace: &Workspace) -> StoreResult<()>;
    async fn workspace(&mut self, id: WorkspaceId) -> StoreResult<Option<Workspace>>;
    /// `SELECT … FOR UPDATE`: the row locked until the transaction ends.
    async fn workspace_for_update(&mut self, id: WorkspaceId) -> StoreResult<Option<Workspace>>;
    /// Non-deleted workspace by name (names are unique among non-deleted ones).
    async fn workspace_by_name(&mut self, name: &str) -> StoreResult<Option<Workspace>>;
    /// Workspaces (deleted ones too) ordered by id, after `after`.
    async fn workspaces(&mut self, after: Option<WorkspaceId>, limit: u32) -> StoreResult<Vec<Workspace>>;
    /// Non-deleted workspaces of a template ordered by id, after `after`.
    async fn workspaces_of_template(
        &mut self,
        template: TemplateId,
        after: Option<WorkspaceId>,
        limit: u32,
    ) -> StoreResult<Vec<Workspace>>;
    /// Sets `next_start_at` (one column).
    async fn set_next_start_at(&mut self, id: WorkspaceId, next_start_at: Option<Timestamp>) -> StoreResult<()>;
    /// The usage flush: `last_used_at = now` for the given workspaces where
    /// `last_used_at < now` (never backwards). Returns the rows changed.
    async fn touch_last_used(&mut self, ids: &[WorkspaceId], now: Timestamp) -> StoreResult<u64>;

    /// The lifecycle scan (semantics/lifecycle.md §3): workspaces that any rule
    /// or the reminder check might act on at `tick_at`, ordered by (latest
    /// build's version id, workspace id), strictly after `after`. Never stricter
    /// than the rules: see `rules::eligibility::is_candidate`, which states the
    /// same arms over loaded data.
    async fn lifecycle_candidates(
        &mut self,
        tick_at: Timestamp,
        after: Option<LifecycleCursor>,
        limit: u32,
    ) -> StoreResult<Vec<LifecycleCursor>>;

    // ---- builds and jobs ----------------------------------------------------

    /// Inserts a build and its job. [`StoreError::UniqueViolation`] when the
    /// workspace already has a build with that number.
    async fn insert_build(&mut self, build: &Build, job: &Job) -> StoreResult<()>;
    /// Writes every field of `build` (by id).
    async fn update_build(&mut self, build: &Build) -> StoreResult<()>;
    async fn build(&mut self, id: BuildId) -> StoreResult<Option<BuildWithJob>>;
    /// The build with the highest number, with its job.
    async fn latest_build(&mut self, workspace: WorkspaceId) -> StoreResult<Option<BuildWithJob>>;
    /// Builds of a workspace, highest number first.
    async fn builds_of_workspace(&mut self, workspace: WorkspaceId, limit: u32) -> StoreResult<Vec<BuildWithJob>>;

    async fn job(&mut self, id: JobId) -> StoreResult<Option<Job>>;
    /// Writes every field of `job` (by id).
    async fn update_job(&mut self, job: &Job) -> StoreResult<()>;
    /// Claims the oldest pending job, users' jobs before prebuilds' (`FOR UPDATE
    /// SKIP LOCKED`), marks it running on `worker` at `now`, and returns it.
    async fn acquire_job(&mut self, worker: ProvisionerId, now: Timestamp) -> StoreResult<Option<Job>>;
    /// Unfinished jobs (pending, running, canceling), oldest first.
    async fn unfinished_jobs(&mut self, limit: u32) -> StoreResult<Vec<Job>>;

    // ---- provisioner daemons ------------------------------------------------

    /// Inserts or refreshes a daemon's `last_seen_at` (never moves it backwards).
    async fn upsert_provisioner(&mut self, daemon: &ProvisionerDaemon) -> StoreResult<()>;
    /// Whether some daemon was seen at or after `since` (the provisioner gate).
    async fn provisioner_seen_since(&mut self, since: Timestamp) -> StoreResult<bool>;

    // ---- notifications (the outbox) -----------------------------------------

    /// `INSERT … ON CONFLICT (kind, dedupe_key, user_id) DO NOTHING`: true when a
    /// row was written, false when the key was already there.
    async fn enqueue_notification(
        &mut self,
        id: NotificationId,
        notification: &NewNotification,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Claims undelivered rows due at `now` (`next_attempt_at <= now`), oldest
    /// first, `FOR UPDATE SKIP LOCKED`.
    async fn claim_due_notifications(&mut self, now: Timestamp, limit: u32) -> StoreResult<Vec<Notification>>;
    async fn mark_notification_delivered(&mut self, id: NotificationId, now: Timestamp) -> StoreResult<()>;
    /// Counts a failed attempt and schedules the next one.
    async fn mark_notification_failed(&mut self, id: NotificationId, retry_at: Timestamp) -> StoreResult<()>;
    /// Outbox rows ordered by id, after `after` (delivered ones too).
    async fn notifications(&mut self, after: Option<NotificationId>, limit: u32) -> StoreResult<Vec<Notification>>;

    // ---- chats (what the lifecycle needs of them) ----------------------------

    async fn insert_chat(&mut self, chat: &Chat) -> StoreResult<()>;
    async fn update_chat(&mut self, chat: &Chat) -> StoreResult<()>;
    async fn chat(&mut self, id: ChatId) -> StoreResult<Option<Chat>>;
    /// Whether a non-archived chat names the workspace (it drives reminders).
    async fn workspace_has_live_chat(&mut self, workspace: WorkspaceId) -> StoreResult<bool>;

    // ---- settings stored in the database -------------------------------------

    async fn setting(&mut self, key: &str) -> StoreResult<Option<String>>;
    async fn set_setting(&mut self, key: &str, value: &str) -> StoreResult<()>;
}
