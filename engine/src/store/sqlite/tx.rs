//! An emulated transaction and its statement pipeline (§3.1 of the design
//! note): (1) the snapshot, if this is the first statement, taken before any
//! await (F1); (2) the statement hook: latency on the server's clock, an
//! injected failure, a hang; (3) the lock phase, which may wait; (4) the apply
//! phase, one short SQLite transaction; (5) the reply.
//!
//! Any error except the domain-level `NotFound`/`InvalidData` aborts the
//! transaction (F8): later statements get `TransactionAborted`, rollback works.
//! Dropping the handle without commit or rollback aborts it in memory only.

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use super::hook::{HookDecision, OpClass, StatementInfo};
use super::mvcc::{RowId, TxId};
use super::ops::{self, limit_value, Stmt};
use super::pool::PoolPermit;
use super::records::{text_value, ts_value, uuid_value, Setting};
use super::server::{ApplyCtx, SqliteServer, Step};
use super::{lifecycle, ClientId};
use crate::hash::LockKey;
use crate::ids::{BuildId, ChatId, JobId, NotificationId, ProvisionerId, TemplateId, UserId, VersionId, WorkspaceId};
use crate::model::{
    Build, BuildWithJob, Chat, Job, JobStatus, NewNotification, Notification, Preset, ProvisionerDaemon, Template,
    TemplateVersion, User, Workspace,
};
use crate::store::{LifecycleCursor, SessionId, StoreError, StoreResult, Subsystem, Tx, TxOptions};
use crate::time::Timestamp;

fn rid(uuid: &Uuid) -> RowId {
    RowId::Uuid(*uuid.as_bytes())
}

/// Whether an error aborts the transaction it happened in (F8).
fn aborts(error: &StoreError) -> bool {
    !matches!(error, StoreError::NotFound { .. } | StoreError::InvalidData { .. })
}

/// An open emulated transaction; holds its pooled connection until it ends.
pub struct SqliteTx {
    server: Arc<SqliteServer>,
    client: ClientId,
    id: TxId,
    subsystem: Subsystem,
    read_only: bool,
    statements: u32,
    /// Set while a statement runs: still set at the next statement means the
    /// last one's future was dropped mid-way (cancelled, which aborts).
    in_statement: bool,
    db_now: Option<Timestamp>,
    _permit: PoolPermit,
}

impl std::fmt::Debug for SqliteTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteTx").field("client", &self.client).field("id", &self.id).finish_non_exhaustive()
    }
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        // In memory only: no SQLite write in a Drop (a crash must not clean up).
        self.server.forget_tx(self.client, self.id);
    }
}

/// One statement: start it, run `$body` with `$s: Stmt`, end it.
macro_rules! statement {
    ($self:ident, $op:literal, $class:expr, |$s:ident| $body:expr) => {{
        $self.begin_statement($op, $class).await?;
        let result = {
            let $s = $self.stmt();
            $body
        };
        $self.end_statement(result)
    }};
}

impl SqliteTx {
    pub(crate) fn new(
        server: Arc<SqliteServer>,
        client: ClientId,
        id: TxId,
        options: TxOptions,
        permit: PoolPermit,
    ) -> Self {
        SqliteTx {
            server,
            client,
            id,
            subsystem: options.subsystem,
            read_only: options.read_only,
            statements: 0,
            in_statement: false,
            db_now: None,
            _permit: permit,
        }
    }

    fn stmt(&self) -> Stmt<'_> {
        Stmt { server: &self.server, client: self.client, tx: self.id }
    }

    /// Steps (1) and (2). Returns whether the hook asked for commit-unknown.
    async fn begin_statement(&mut self, op: &'static str, class: OpClass) -> StoreResult<bool> {
        if self.in_statement {
            self.in_statement = false;
            self.server.abort_tx(self.client, self.id);
        }
        let (_, at) = self.server.start_statement(self.client, self.id)?;
        self.db_now = Some(at);
        if self.read_only && class == OpClass::Write {
            self.server.abort_tx(self.client, self.id);
            return Err(StoreError::Unsupported { detail: format!("{op} in a read-only transaction") });
        }
        let index = self.next_index();
        self.in_statement = true;
        let hooked = match self.run_hook(op, class, index).await {
            Ok(commit_unknown) => self.server.check(self.client, self.id).map(|()| commit_unknown),
            Err(error) => Err(error),
        };
        if let Err(error) = &hooked {
            self.in_statement = false;
            if aborts(error) {
                self.server.abort_tx(self.client, self.id);
            }
        }
        hooked
    }

    fn next_index(&mut self) -> u32 {
        let index = self.statements;
        self.statements = self.statements.saturating_add(1);
        index
    }

    async fn run_hook(&self, op: &'static str, class: OpClass, index: u32) -> StoreResult<bool> {
        let Some(hook) = self.server.hook() else { return Ok(false) };
        let info = StatementInfo {
            client: self.client,
            session: self.session_id(),
            subsystem: self.subsystem,
            op,
            class,
            index_in_tx: index,
        };
        let clock = Arc::clone(self.server.clock());
        match hook.on_statement(&info) {
            HookDecision::Proceed { latency } => {
                if latency.is_positive() {
                    clock.sleep_until(clock.now() + latency).await;
                }
                Ok(false)
            }
            HookDecision::Fail(error) => Err(error),
            HookDecision::Hang { until } => {
                clock.sleep_until(until).await;
                Ok(false)
            }
            HookDecision::CommitUnknown if class == OpClass::Commit => Ok(true),
            HookDecision::CommitUnknown => Err(StoreError::connection_lost("connection lost (injected)")),
        }
    }

    fn end_statement<T>(&mut self, result: StoreResult<T>) -> StoreResult<T> {
        self.in_statement = false;
        if let Err(error) = &result {
            if aborts(error) {
                self.server.abort_tx(self.client, self.id);
            }
        }
        result
    }

    fn build_with_job(s: &Stmt<'_>, build: Build) -> StoreResult<BuildWithJob> {
        let job = ops::get::<Job>(s, &rid(&build.job_id.0))?.ok_or_else(|| {
            StoreError::invalid_data(
                "workspace_builds.job_id",
                format!("build {} has no job {}", build.id, build.job_id),
            )
        })?;
        Ok(BuildWithJob { build, job })
    }
}

#[async_trait]
impl Tx for SqliteTx {
    // ---- transaction control -------------------------------------------------

    fn session_id(&self) -> SessionId {
        SessionId(super::mvcc::to_sql_int(self.id))
    }

    async fn commit(mut self) -> StoreResult<()> {
        let commit_unknown = self.begin_statement("commit", OpClass::Commit).await?;
        let result = self.server.commit(self.client, self.id);
        self.in_statement = false;
        match result {
            // F12: the commit applied, the reply was lost.
            Ok(()) if commit_unknown => Err(StoreError::connection_lost("commit outcome unknown (injected)")),
            other => other,
        }
    }

    async fn rollback(mut self) -> StoreResult<()> {
        self.in_statement = false;
        let index = self.next_index();
        let hooked = self.run_hook("rollback", OpClass::Commit, index).await;
        self.server.rollback(self.client, self.id)?;
        match hooked {
            Ok(false) => Ok(()),
            Ok(true) => Err(StoreError::connection_lost("connection lost (injected)")),
            Err(error) => Err(error),
        }
    }

    async fn try_advisory_xact_lock(&mut self, key: LockKey) -> StoreResult<bool> {
        statement!(self, "try_advisory_xact_lock", OpClass::Lock, |s| {
            let mut inner = s.server.lock();
            inner.reg.check(s.client, s.tx).map(|()| inner.reg.try_advisory(s.tx, key.0))
        })
    }

    async fn db_now(&mut self) -> StoreResult<Timestamp> {
        statement!(self, "db_now", OpClass::Read, |_s| {
            self.db_now.ok_or_else(|| StoreError::Backend { detail: "no transaction start time".into() })
        })
    }

    // ---- users, templates, versions, presets ----------------------------------

    async fn insert_user(&mut self, user: &User) -> StoreResult<()> {
        statement!(self, "insert_user", OpClass::Write, |s| ops::insert(&s, user).await)
    }

    async fn update_user(&mut self, user: &User) -> StoreResult<()> {
        statement!(self, "update_user", OpClass::Write, |s| {
            ops::modify::<User>(&s, rid(&user.id.0), &format!("user {}", user.id), |_| user.clone()).await.map(|_| ())
        })
    }

    async fn user(&mut self, id: UserId) -> StoreResult<Option<User>> {
        statement!(self, "user", OpClass::Read, |s| ops::get::<User>(&s, &rid(&id.0)))
    }

    async fn user_by_name(&mut self, name: &str) -> StoreResult<Option<User>> {
        statement!(self, "user_by_name", OpClass::Read, |s| {
            ops::list::<User>(&s, "name = ?3", &[text_value(name)], "ORDER BY id LIMIT 1").map(|mut v| v.pop())
        })
    }

    async fn users(&mut self, after: Option<UserId>, limit: u32) -> StoreResult<Vec<User>> {
        let after = after.map_or(rusqlite::types::Value::Null, |id| uuid_value(&id.0));
        statement!(self, "users", OpClass::Read, |s| {
            ops::list::<User>(&s, "?3 IS NULL OR id > ?3", &[after, limit_value(limit)], "ORDER BY id LIMIT ?4")
        })
    }

    async fn insert_template(&mut self, template: &Template) -> StoreResult<()> {
        statement!(self, "insert_template", OpClass::Write, |s| ops::insert(&s, template).await)
    }

    async fn update_template(&mut self, template: &Template) -> StoreResult<()> {
        statement!(self, "update_template", OpClass::Write, |s| {
            ops::modify::<Template>(&s, rid(&template.id.0), &format!("template {}", template.id), |_| template.clone())
                .await
                .map(|_| ())
        })
    }

    async fn template(&mut self, id: TemplateId) -> StoreResult<Option<Template>> {
        statement!(self, "template", OpClass::Read, |s| ops::get::<Template>(&s, &rid(&id.0)))
    }

    async fn template_by_name(&mut self, name: &str) -> StoreResult<Option<Template>> {
        statement!(self, "template_by_name", OpClass::Read, |s| {
            ops::list::<Template>(&s, "name = ?3 AND deleted = 0", &[text_value(name)], "ORDER BY id LIMIT 1")
                .map(|mut v| v.pop())
        })
    }

    async fn templates(&mut self, after: Option<TemplateId>, limit: u32) -> StoreResult<Vec<Template>> {
        let after = after.map_or(rusqlite::types::Value::Null, |id| uuid_value(&id.0));
        statement!(self, "templates", OpClass::Read, |s| {
            ops::list::<Template>(&s, "?3 IS NULL OR id > ?3", &[after, limit_value(limit)], "ORDER BY id LIMIT ?4")
        })
    }

    async fn insert_version(&mut self, version: &TemplateVersion) -> StoreResult<()> {
        statement!(self, "insert_version", OpClass::Write, |s| ops::insert(&s, version).await)
    }

    async fn version(&mut self, id: VersionId) -> StoreResult<Option<TemplateVersion>> {
        statement!(self, "version", OpClass::Read, |s| ops::get::<TemplateVersion>(&s, &rid(&id.0)))
    }

    async fn versions_of_template(&mut self, template: TemplateId, limit: u32) -> StoreResult<Vec<TemplateVersion>> {
        statement!(self, "versions_of_template", OpClass::Read, |s| {
            ops::list::<TemplateVersion>(
                &s,
                "template_id = ?3",
                &[uuid_value(&template.0), limit_value(limit)],
                "ORDER BY created_at, id LIMIT ?4",
            )
        })
    }

    async fn insert_preset(&mut self, preset: &Preset) -> StoreResult<()> {
        statement!(self, "insert_preset", OpClass::Write, |s| ops::insert(&s, preset).await)
    }

    async fn update_preset(&mut self, preset: &Preset) -> StoreResult<()> {
        statement!(self, "update_preset", OpClass::Write, |s| {
            ops::modify::<Preset>(&s, rid(&preset.id.0), &format!("preset {}", preset.id), |_| preset.clone())
                .await
                .map(|_| ())
        })
    }

    async fn presets_of_version(&mut self, version: VersionId, limit: u32) -> StoreResult<Vec<Preset>> {
        statement!(self, "presets_of_version", OpClass::Read, |s| {
            ops::list::<Preset>(
                &s,
                "version_id = ?3",
                &[uuid_value(&version.0), limit_value(limit)],
                "ORDER BY name, id LIMIT ?4",
            )
        })
    }

    // ---- workspaces ---------------------------------------------------------

    async fn insert_workspace(&mut self, workspace: &Workspace) -> StoreResult<()> {
        statement!(self, "insert_workspace", OpClass::Write, |s| ops::insert(&s, workspace).await)
    }

    async fn update_workspace(&mut self, workspace: &Workspace) -> StoreResult<()> {
        statement!(self, "update_workspace", OpClass::Write, |s| {
            ops::modify::<Workspace>(&s, rid(&workspace.id.0), &format!("workspace {}", workspace.id), |_| {
                workspace.clone()
            })
            .await
            .map(|_| ())
        })
    }

    async fn workspace(&mut self, id: WorkspaceId) -> StoreResult<Option<Workspace>> {
        statement!(self, "workspace", OpClass::Read, |s| ops::get::<Workspace>(&s, &rid(&id.0)))
    }

    async fn workspace_for_update(&mut self, id: WorkspaceId) -> StoreResult<Option<Workspace>> {
        statement!(self, "workspace_for_update", OpClass::Write, |s| {
            ops::lock_for_update::<Workspace>(&s, rid(&id.0)).await
        })
    }

    async fn workspace_by_name(&mut self, name: &str) -> StoreResult<Option<Workspace>> {
        statement!(self, "workspace_by_name", OpClass::Read, |s| {
            ops::list::<Workspace>(
                &s,
                "lower(name) = lower(?3) AND deleted = 0",
                &[text_value(name)],
                "ORDER BY id LIMIT 1",
            )
            .map(|mut v| v.pop())
        })
    }

    async fn workspaces(&mut self, after: Option<WorkspaceId>, limit: u32) -> StoreResult<Vec<Workspace>> {
        let after = after.map_or(rusqlite::types::Value::Null, |id| uuid_value(&id.0));
        statement!(self, "workspaces", OpClass::Read, |s| {
            ops::list::<Workspace>(&s, "?3 IS NULL OR id > ?3", &[after, limit_value(limit)], "ORDER BY id LIMIT ?4")
        })
    }

    async fn workspaces_of_template(
        &mut self,
        template: TemplateId,
        after: Option<WorkspaceId>,
        limit: u32,
    ) -> StoreResult<Vec<Workspace>> {
        let after = after.map_or(rusqlite::types::Value::Null, |id| uuid_value(&id.0));
        statement!(self, "workspaces_of_template", OpClass::Read, |s| {
            ops::list::<Workspace>(
                &s,
                "template_id = ?3 AND deleted = 0 AND (?4 IS NULL OR id > ?4)",
                &[uuid_value(&template.0), after, limit_value(limit)],
                "ORDER BY id LIMIT ?5",
            )
        })
    }

    async fn set_next_start_at(&mut self, id: WorkspaceId, next_start_at: Option<Timestamp>) -> StoreResult<()> {
        statement!(self, "set_next_start_at", OpClass::Write, |s| {
            ops::modify::<Workspace>(&s, rid(&id.0), &format!("workspace {id}"), |w| Workspace {
                next_start_at,
                ..w.clone()
            })
            .await
            .map(|_| ())
        })
    }

    async fn touch_last_used(&mut self, ids: &[WorkspaceId], now: Timestamp) -> StoreResult<u64> {
        let mut keys: Vec<[u8; 16]> = ids.iter().map(|id| *id.as_bytes()).collect();
        keys.sort_unstable();
        keys.dedup();
        statement!(self, "touch_last_used", OpClass::Write, |s| {
            if keys.is_empty() {
                Ok(0)
            } else {
                // The predicate keeps the flush monotonic (`last_used_monotonic`);
                // the mutation drops it, as the reference's bug did.
                let filter = if crate::mutations::is_on(crate::mutations::Mutation::UsageFlushOverwritesNewer) {
                    "id IN (SELECT unhex(value) FROM json_each(?3)) AND ?4 IS NOT NULL"
                } else {
                    "id IN (SELECT unhex(value) FROM json_each(?3)) AND last_used_at < ?4"
                };
                ops::modify_many::<Workspace>(&s, filter, &[ops::ids_json(&keys), ts_value(now)], |w| Workspace {
                    last_used_at: now,
                    ..w.clone()
                })
                .await
            }
        })
    }

    async fn lifecycle_candidates(
        &mut self,
        tick_at: Timestamp,
        after: Option<LifecycleCursor>,
        limit: u32,
    ) -> StoreResult<Vec<LifecycleCursor>> {
        statement!(self, "lifecycle_candidates", OpClass::Read, |s| {
            s.read(|conn, view| lifecycle::candidates(conn, view, tick_at, after, limit))
        })
    }

    // ---- builds and jobs ----------------------------------------------------

    async fn insert_build(&mut self, build: &Build, job: &Job) -> StoreResult<()> {
        statement!(self, "insert_build", OpClass::Write, |s| {
            s.run(|cx: &mut ApplyCtx<'_>| {
                if let Some(holder) = ops::insert_step(cx, build)? {
                    return Ok(Step::WaitTx(holder));
                }
                if let Some(holder) = ops::insert_step(cx, job)? {
                    return Ok(Step::WaitTx(holder));
                }
                Ok(Step::Done(()))
            })
            .await
        })
    }

    async fn update_build(&mut self, build: &Build) -> StoreResult<()> {
        statement!(self, "update_build", OpClass::Write, |s| {
            ops::modify::<Build>(&s, rid(&build.id.0), &format!("build {}", build.id), |_| build.clone())
                .await
                .map(|_| ())
        })
    }

    async fn build(&mut self, id: BuildId) -> StoreResult<Option<BuildWithJob>> {
        statement!(self, "build", OpClass::Read, |s| {
            match ops::get::<Build>(&s, &rid(&id.0)) {
                Ok(Some(build)) => Self::build_with_job(&s, build).map(Some),
                other => other.map(|_| None),
            }
        })
    }

    async fn latest_build(&mut self, workspace: WorkspaceId) -> StoreResult<Option<BuildWithJob>> {
        statement!(self, "latest_build", OpClass::Read, |s| {
            let latest = ops::list::<Build>(
                &s,
                "workspace_id = ?3",
                &[uuid_value(&workspace.0)],
                "ORDER BY number DESC, id LIMIT 1",
            );
            match latest {
                Ok(mut builds) => builds.pop().map(|b| Self::build_with_job(&s, b)).transpose(),
                Err(error) => Err(error),
            }
        })
    }

    async fn builds_of_workspace(&mut self, workspace: WorkspaceId, limit: u32) -> StoreResult<Vec<BuildWithJob>> {
        statement!(self, "builds_of_workspace", OpClass::Read, |s| {
            ops::list::<Build>(
                &s,
                "workspace_id = ?3",
                &[uuid_value(&workspace.0), limit_value(limit)],
                "ORDER BY number DESC, id LIMIT ?4",
            )
            .and_then(|builds| builds.into_iter().map(|b| Self::build_with_job(&s, b)).collect())
        })
    }

    async fn job(&mut self, id: JobId) -> StoreResult<Option<Job>> {
        statement!(self, "job", OpClass::Read, |s| ops::get::<Job>(&s, &rid(&id.0)))
    }

    async fn update_job(&mut self, job: &Job) -> StoreResult<()> {
        statement!(self, "update_job", OpClass::Write, |s| {
            ops::modify::<Job>(&s, rid(&job.id.0), &format!("job {}", job.id), |_| job.clone()).await.map(|_| ())
        })
    }

    async fn acquire_job(&mut self, worker: ProvisionerId, now: Timestamp) -> StoreResult<Option<Job>> {
        statement!(self, "acquire_job", OpClass::Write, |s| {
            s.run(|cx: &mut ApplyCtx<'_>| {
                let mut claimed = ops::claim::<Job>(cx, "status = 'pending'", &[], "is_prebuild, created_at, id", 1)?;
                let Some(version) = claimed.pop() else { return Ok(Step::Done(None)) };
                let job = Job {
                    status: JobStatus::Running,
                    started_at: Some(now),
                    worker_id: Some(worker),
                    ..version.record.clone()
                };
                super::mvcc::replace_version(cx.conn, cx.view.tx, &version, &job)?;
                cx.wrote(super::mvcc::Table::ProvisionerJobs);
                Ok(Step::Done(Some(job)))
            })
            .await
        })
    }

    async fn unfinished_jobs(&mut self, limit: u32) -> StoreResult<Vec<Job>> {
        statement!(self, "unfinished_jobs", OpClass::Read, |s| {
            ops::list::<Job>(
                &s,
                "status IN ('pending', 'running', 'canceling')",
                &[limit_value(limit)],
                "ORDER BY created_at, id LIMIT ?3",
            )
        })
    }

    // ---- provisioner daemons ------------------------------------------------

    async fn upsert_provisioner(&mut self, daemon: &ProvisionerDaemon) -> StoreResult<()> {
        statement!(self, "upsert_provisioner", OpClass::Write, |s| {
            ops::upsert(&s, daemon, |old: &ProvisionerDaemon, new: &ProvisionerDaemon| ProvisionerDaemon {
                id: old.id,
                name: new.name.clone(),
                last_seen_at: old.last_seen_at.max(new.last_seen_at),
            })
            .await
        })
    }

    async fn provisioner_seen_since(&mut self, since: Timestamp) -> StoreResult<bool> {
        statement!(self, "provisioner_seen_since", OpClass::Read, |s| {
            ops::list::<ProvisionerDaemon>(&s, "last_seen_at >= ?3", &[ts_value(since)], "ORDER BY id LIMIT 1")
                .map(|v| !v.is_empty())
        })
    }

    // ---- notifications (the outbox) -----------------------------------------

    async fn enqueue_notification(
        &mut self,
        id: NotificationId,
        notification: &NewNotification,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let record = Notification {
            id,
            kind: notification.kind,
            user_id: notification.user_id,
            dedupe_key: notification.dedupe_key.clone(),
            workspace_id: notification.workspace_id,
            payload: notification.payload.clone(),
            created_at: now,
            attempts: 0,
            next_attempt_at: now,
            delivered_at: None,
        };
        statement!(self, "enqueue_notification", OpClass::Write, |s| {
            s.run(|cx: &mut ApplyCtx<'_>| ops::enqueue_step(cx, &record)).await
        })
    }

    async fn claim_due_notifications(&mut self, now: Timestamp, limit: u32) -> StoreResult<Vec<Notification>> {
        statement!(self, "claim_due_notifications", OpClass::Write, |s| {
            s.run(|cx: &mut ApplyCtx<'_>| {
                let claimed = ops::claim::<Notification>(
                    cx,
                    "delivered_at IS NULL AND next_attempt_at <= ?3",
                    &[ts_value(now)],
                    "created_at, id",
                    limit,
                )?;
                Ok(Step::Done(claimed.into_iter().map(|v| v.record).collect()))
            })
            .await
        })
    }

    async fn mark_notification_delivered(&mut self, id: NotificationId, now: Timestamp) -> StoreResult<()> {
        statement!(self, "mark_notification_delivered", OpClass::Write, |s| {
            ops::modify::<Notification>(&s, rid(&id.0), &format!("notification {id}"), |n| Notification {
                delivered_at: Some(now),
                ..n.clone()
            })
            .await
            .map(|_| ())
        })
    }

    async fn mark_notification_failed(&mut self, id: NotificationId, retry_at: Timestamp) -> StoreResult<()> {
        statement!(self, "mark_notification_failed", OpClass::Write, |s| {
            ops::modify::<Notification>(&s, rid(&id.0), &format!("notification {id}"), |n| Notification {
                attempts: n.attempts.saturating_add(1),
                next_attempt_at: retry_at,
                ..n.clone()
            })
            .await
            .map(|_| ())
        })
    }

    async fn notifications(&mut self, after: Option<NotificationId>, limit: u32) -> StoreResult<Vec<Notification>> {
        let after = after.map_or(rusqlite::types::Value::Null, |id| uuid_value(&id.0));
        statement!(self, "notifications", OpClass::Read, |s| {
            ops::list::<Notification>(&s, "?3 IS NULL OR id > ?3", &[after, limit_value(limit)], "ORDER BY id LIMIT ?4")
        })
    }

    // ---- chats (what the lifecycle needs of them) ----------------------------

    async fn insert_chat(&mut self, chat: &Chat) -> StoreResult<()> {
        statement!(self, "insert_chat", OpClass::Write, |s| ops::insert(&s, chat).await)
    }

    async fn update_chat(&mut self, chat: &Chat) -> StoreResult<()> {
        statement!(self, "update_chat", OpClass::Write, |s| {
            ops::modify::<Chat>(&s, rid(&chat.id.0), &format!("chat {}", chat.id), |_| chat.clone()).await.map(|_| ())
        })
    }

    async fn chat(&mut self, id: ChatId) -> StoreResult<Option<Chat>> {
        statement!(self, "chat", OpClass::Read, |s| ops::get::<Chat>(&s, &rid(&id.0)))
    }

    async fn workspace_has_live_chat(&mut self, workspace: WorkspaceId) -> StoreResult<bool> {
        statement!(self, "workspace_has_live_chat", OpClass::Read, |s| {
            ops::list::<Chat>(
                &s,
                "workspace_id = ?3 AND status <> 'archived'",
                &[uuid_value(&workspace.0)],
                "ORDER BY id LIMIT 1",
            )
            .map(|v| !v.is_empty())
        })
    }

    // ---- settings stored in the database -------------------------------------

    async fn setting(&mut self, key: &str) -> StoreResult<Option<String>> {
        statement!(self, "setting", OpClass::Read, |s| {
            ops::get::<Setting>(&s, &RowId::Text(key.to_owned())).map(|v| v.map(|setting| setting.value))
        })
    }

    async fn set_setting(&mut self, key: &str, value: &str) -> StoreResult<()> {
        let record = Setting { key: key.to_owned(), value: value.to_owned() };
        statement!(self, "set_setting", OpClass::Write, |s| {
            ops::upsert(&s, &record, |_old: &Setting, new: &Setting| new.clone()).await
        })
    }
}
