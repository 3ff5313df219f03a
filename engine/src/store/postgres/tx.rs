//! A PostgreSQL transaction: `BEGIN ISOLATION LEVEL REPEATABLE READ` on a
//! pooled connection it holds until `COMMIT` or `ROLLBACK`, and every `Tx`
//! method as one SQL statement with bound parameters.
//!
//! Error handling follows F8: any statement error aborts the transaction
//! (the server does so itself; the handle remembers it, so a client-side
//! failure such as an unencodable instant aborts it too), later statements
//! fail with `TransactionAborted`, `commit` of an aborted transaction rolls
//! back and says so. `NotFound` (an `UPDATE` that matched no row) and
//! `InvalidData` (a row the engine cannot decode) are the client's findings
//! and abort nothing, as on the SQLite backend.
//!
//! No `Drop` writes or sends: a handle dropped while open (a crash, a
//! cancelled future) detaches its connection from the pool and drops it; the
//! server rolls back when the socket closes (F12). A connection goes back to
//! the pool only after a `COMMIT` or `ROLLBACK` it saw succeed.

use async_trait::async_trait;
use deadpool::managed::Object;
use tokio_postgres::{NoTls, Row};
use uuid::Uuid;

use super::error::{aborts, map_error};
use super::pool::{PgConnection, Pooled, UsageGuard};
use super::records::{insert_statement, refs, text, ts, uuid, Param, PgRecord, SqlTimestamp};
use super::sql;
use crate::hash::LockKey;
use crate::ids::{BuildId, ChatId, JobId, NotificationId, ProvisionerId, TemplateId, UserId, VersionId, WorkspaceId};
use crate::model::{
    Build, BuildWithJob, Chat, Job, NewNotification, Notification, Preset, ProvisionerDaemon, Template,
    TemplateVersion, User, Workspace,
};
use crate::store::{LifecycleCursor, SessionId, StoreError, StoreResult, Tx};
use crate::time::Timestamp;

/// A statement text built once (from record column lists) at its call site.
macro_rules! sql_once {
    ($($format:tt)*) => {{
        static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        SQL.get_or_init(|| format!($($format)*)).as_str()
    }};
}

/// All rows of a table in id order, after an optional id (keyset paging): one
/// statement for the first page, one for the pages after a cursor.
macro_rules! paged_by_id {
    ($self:ident, $record:ty, $table:literal, $after:expr, $limit:expr) => {
        match $after {
            None => {
                let sql =
                    sql_once!(concat!("SELECT {} FROM ", $table, " ORDER BY id LIMIT $1"), <$record>::sql().columns);
                $self.list(sql, &[limit($limit)]).await
            }
            Some(after) => {
                let sql = sql_once!(
                    concat!("SELECT {} FROM ", $table, " WHERE id > $1 ORDER BY id LIMIT $2"),
                    <$record>::sql().columns
                );
                $self.list(sql, &[uuid(&after.0), limit($limit)]).await
            }
        }
    };
}

/// A pooled connection on loan: back to the pool only through
/// [`Held::release`]; dropped any other way, it is detached and closed.
pub(crate) struct Held {
    conn: Option<Pooled>,
}

impl Held {
    pub fn new(conn: Pooled) -> Self {
        Held { conn: Some(conn) }
    }

    pub fn get(&mut self) -> Option<&mut PgConnection> {
        self.conn.as_deref_mut()
    }

    /// Returns the connection to the pool (it is idle: no transaction open).
    pub fn release(&mut self) {
        drop(self.conn.take());
    }

    /// Takes the connection out of the pool for good and closes it.
    pub fn detach(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(Object::take(conn));
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // In memory only: dropping the client closes its channel, and its
        // connection task closes the socket; the server then rolls back.
        self.detach();
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Open,
    /// An error aborted the transaction: only rollback remains (25P02).
    Aborted,
    /// The connection is gone: the server rolled back.
    Lost,
}

/// An open PostgreSQL transaction.
pub struct PgTx {
    held: Held,
    session: SessionId,
    state: State,
    /// Set while a statement runs: still set at the next call means the last
    /// statement's future was dropped mid-way (cancelled), which aborts; the
    /// statement may still be running on the server.
    in_statement: bool,
    /// A statement's future was dropped mid-way: its connection may still be
    /// busy with it, so the transaction ends by dropping the connection.
    stale: bool,
    _usage: UsageGuard,
}

impl std::fmt::Debug for PgTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTx").field("session", &self.session).field("state", &self.state).finish_non_exhaustive()
    }
}

fn lost() -> StoreError {
    StoreError::connection_lost("connection to postgresql lost")
}

async fn run_query(conn: &mut PgConnection, sql: &'static str, params: &[Param]) -> StoreResult<Vec<Row>> {
    let statement = conn.statement(sql).await.map_err(|e| map_error(&e))?;
    conn.client.query(&statement, &refs(params)).await.map_err(|e| map_error(&e))
}

async fn run_execute(conn: &mut PgConnection, sql: &'static str, params: &[Param]) -> StoreResult<u64> {
    let statement = conn.statement(sql).await.map_err(|e| map_error(&e))?;
    conn.client.execute(&statement, &refs(params)).await.map_err(|e| map_error(&e))
}

fn decode_all<R: PgRecord>(rows: &[Row]) -> StoreResult<Vec<R>> {
    rows.iter().map(|row| R::decode(row, 0)).collect()
}

fn limit(limit: u32) -> Param {
    Box::new(i64::from(limit))
}

/// A build and its job from one row of [`sql::build_with_job_select`].
fn build_with_job(row: &Row) -> StoreResult<BuildWithJob> {
    let build = Build::decode(row, 0)?;
    let job_present = row
        .try_get::<usize, Option<Uuid>>(Build::COLUMNS.len())
        .map_err(|e| StoreError::invalid_data("provisioner_jobs.id", e.to_string()))?
        .is_some();
    if !job_present {
        return Err(StoreError::invalid_data(
            "workspace_builds.job_id",
            format!("build {} has no job {}", build.id, build.job_id),
        ));
    }
    let job = Job::decode(row, Build::COLUMNS.len())?;
    Ok(BuildWithJob { build, job })
}

impl PgTx {
    /// A transaction on `conn`, whose `BEGIN` has not been sent yet.
    pub(crate) fn new(conn: Pooled, usage: UsageGuard) -> Self {
        let session = SessionId(i64::from(conn.pid));
        PgTx { held: Held::new(conn), session, state: State::Open, in_statement: false, stale: false, _usage: usage }
    }

    /// Sends `BEGIN`; on failure the handle (and its connection) is dropped.
    pub(crate) async fn begin(mut self, read_only: bool) -> StoreResult<PgTx> {
        let sql = if read_only {
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
        } else {
            "BEGIN ISOLATION LEVEL REPEATABLE READ"
        };
        let conn = self.held.get().ok_or_else(lost)?;
        // `BEGIN` takes no snapshot: the first statement does (F1).
        conn.client.batch_execute(sql).await.map_err(|e| map_error(&e))?;
        Ok(self)
    }

    /// Statement start: may it run? Returns the connection to run it on.
    fn enter(&mut self) -> StoreResult<&mut PgConnection> {
        self.notice_cancelled();
        match self.state {
            State::Open => {}
            State::Aborted => return Err(StoreError::TransactionAborted),
            State::Lost => return Err(lost()),
        }
        let Some(conn) = self.held.get() else {
            self.state = State::Lost;
            return Err(lost());
        };
        if conn.client.is_closed() {
            self.state = State::Lost;
            return Err(lost());
        }
        self.in_statement = true;
        self.held.get().ok_or_else(lost)
    }

    /// A statement whose future was dropped mid-way aborts the transaction.
    fn notice_cancelled(&mut self) {
        if self.in_statement {
            self.in_statement = false;
            self.stale = true;
            if self.state == State::Open {
                self.state = State::Aborted;
            }
        }
    }

    /// Statement end: an error aborts the transaction (F8).
    fn leave<T>(&mut self, result: StoreResult<T>) -> StoreResult<T> {
        self.in_statement = false;
        if let Err(error) = &result {
            if matches!(error, StoreError::ConnectionLost { .. }) {
                self.state = State::Lost;
            } else if aborts(error) {
                self.state = State::Aborted;
            }
        }
        result
    }

    async fn query(&mut self, sql: &'static str, params: &[Param]) -> StoreResult<Vec<Row>> {
        let result = match self.enter() {
            Ok(conn) => run_query(conn, sql, params).await,
            Err(error) => return Err(error),
        };
        self.leave(result)
    }

    async fn execute(&mut self, sql: &'static str, params: &[Param]) -> StoreResult<u64> {
        let result = match self.enter() {
            Ok(conn) => run_execute(conn, sql, params).await,
            Err(error) => return Err(error),
        };
        self.leave(result)
    }

    async fn query_one_row(&mut self, sql: &'static str, params: &[Param]) -> StoreResult<Row> {
        self.query(sql, params)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Backend { detail: "statement returned no row".into() })
    }

    async fn insert<R: PgRecord>(&mut self, record: &R) -> StoreResult<()> {
        self.execute(&R::sql().insert, &record.params()).await.map(|_| ())
    }

    /// `UPDATE … WHERE id = $1` of every column: `NotFound` when the
    /// snapshot has no such row.
    async fn update<R: PgRecord>(&mut self, record: &R) -> StoreResult<()> {
        match self.execute(&R::sql().update, &record.params()).await? {
            0 => Err(StoreError::not_found(format!("{} {}", R::WHAT, record.id_text()))),
            _ => Ok(()),
        }
    }

    async fn get<R: PgRecord>(&mut self, id: &Uuid) -> StoreResult<Option<R>> {
        let rows = self.query(&R::sql().by_id, &[uuid(id)]).await?;
        rows.first().map(|row| R::decode(row, 0)).transpose()
    }

    async fn list<R: PgRecord>(&mut self, sql: &'static str, params: &[Param]) -> StoreResult<Vec<R>> {
        let rows = self.query(sql, params).await?;
        decode_all(&rows)
    }

    async fn builds(&mut self, sql: &'static str, params: &[Param]) -> StoreResult<Vec<BuildWithJob>> {
        let rows = self.query(sql, params).await?;
        rows.iter().map(build_with_job).collect()
    }

    /// Ends the transaction with `ROLLBACK`, keeping the connection if that
    /// worked. A statement left running by a dropped future is cancelled and
    /// its connection dropped instead (the server rolls back either way).
    async fn end_with_rollback(&mut self) -> StoreResult<()> {
        self.notice_cancelled();
        if self.stale && self.state != State::Lost {
            if let Some(conn) = self.held.get() {
                let _ = conn.client.cancel_token().cancel_query(NoTls).await;
            }
            self.held.detach();
            return Ok(());
        }
        if self.state == State::Lost {
            self.held.detach();
            return Err(lost());
        }
        let Some(conn) = self.held.get() else { return Err(lost()) };
        match conn.client.batch_execute("ROLLBACK").await {
            Ok(()) => {
                self.held.release();
                Ok(())
            }
            Err(error) => {
                self.held.detach();
                Err(map_error(&error))
            }
        }
    }
}

#[async_trait]
impl Tx for PgTx {
    // ---- transaction control -------------------------------------------------

    fn session_id(&self) -> SessionId {
        self.session
    }

    async fn commit(mut self) -> StoreResult<()> {
        self.notice_cancelled();
        if self.state == State::Aborted {
            // PostgreSQL would answer COMMIT of an aborted transaction with a
            // silent ROLLBACK; the caller must hear that nothing committed.
            self.end_with_rollback().await?;
            return Err(StoreError::TransactionAborted);
        }
        if self.state == State::Lost {
            self.held.detach();
            return Err(lost());
        }
        let Some(conn) = self.held.get() else { return Err(lost()) };
        match conn.client.batch_execute("COMMIT").await {
            Ok(()) => {
                self.held.release();
                Ok(())
            }
            Err(error) => {
                // The outcome of a COMMIT whose reply was lost is unknown (F12).
                self.held.detach();
                Err(map_error(&error))
            }
        }
    }

    async fn rollback(mut self) -> StoreResult<()> {
        self.end_with_rollback().await
    }

    async fn try_advisory_xact_lock(&mut self, key: LockKey) -> StoreResult<bool> {
        let row = self.query_one_row("SELECT pg_try_advisory_xact_lock($1)", &[Box::new(key.0)]).await?;
        row.try_get(0).map_err(|e| StoreError::invalid_data("pg_try_advisory_xact_lock", e.to_string()))
    }

    async fn db_now(&mut self) -> StoreResult<Timestamp> {
        // The one place SQL `now()` is used: the transaction's start time.
        let row = self.query_one_row("SELECT now()", &[]).await?;
        row.try_get::<usize, SqlTimestamp>(0).map(|t| t.0).map_err(|e| StoreError::invalid_data("now()", e.to_string()))
    }

    // ---- users, templates, versions, presets ----------------------------------

    async fn insert_user(&mut self, user: &User) -> StoreResult<()> {
        self.insert(user).await
    }

    async fn update_user(&mut self, user: &User) -> StoreResult<()> {
        self.update(user).await
    }

    async fn user(&mut self, id: UserId) -> StoreResult<Option<User>> {
        self.get(&id.0).await
    }

    async fn user_by_name(&mut self, name: &str) -> StoreResult<Option<User>> {
        let sql = sql_once!("SELECT {} FROM users WHERE name = $1 ORDER BY id LIMIT 1", User::sql().columns);
        Ok(self.list::<User>(sql, &[text(name)]).await?.pop())
    }

    async fn users(&mut self, after: Option<UserId>, limit_rows: u32) -> StoreResult<Vec<User>> {
        paged_by_id!(self, User, "users", after, limit_rows)
    }

    async fn insert_template(&mut self, template: &Template) -> StoreResult<()> {
        self.insert(template).await
    }

    async fn update_template(&mut self, template: &Template) -> StoreResult<()> {
        self.update(template).await
    }

    async fn template(&mut self, id: TemplateId) -> StoreResult<Option<Template>> {
        self.get(&id.0).await
    }

    async fn template_by_name(&mut self, name: &str) -> StoreResult<Option<Template>> {
        let sql = sql_once!(
            "SELECT {} FROM templates WHERE name = $1 AND NOT deleted ORDER BY id LIMIT 1",
            Template::sql().columns
        );
        Ok(self.list::<Template>(sql, &[text(name)]).await?.pop())
    }

    async fn templates(&mut self, after: Option<TemplateId>, limit_rows: u32) -> StoreResult<Vec<Template>> {
        paged_by_id!(self, Template, "templates", after, limit_rows)
    }

    async fn insert_version(&mut self, version: &TemplateVersion) -> StoreResult<()> {
        self.insert(version).await
    }

    async fn version(&mut self, id: VersionId) -> StoreResult<Option<TemplateVersion>> {
        self.get(&id.0).await
    }

    async fn versions_of_template(
        &mut self,
        template: TemplateId,
        limit_rows: u32,
    ) -> StoreResult<Vec<TemplateVersion>> {
        let sql = sql_once!(
            "SELECT {} FROM template_versions WHERE template_id = $1 ORDER BY created_at, id LIMIT $2",
            TemplateVersion::sql().columns
        );
        self.list(sql, &[uuid(&template.0), limit(limit_rows)]).await
    }

    async fn insert_preset(&mut self, preset: &Preset) -> StoreResult<()> {
        self.insert(preset).await
    }

    async fn update_preset(&mut self, preset: &Preset) -> StoreResult<()> {
        self.update(preset).await
    }

    async fn presets_of_version(&mut self, version: VersionId, limit_rows: u32) -> StoreResult<Vec<Preset>> {
        let sql =
            sql_once!("SELECT {} FROM presets WHERE version_id = $1 ORDER BY name, id LIMIT $2", Preset::sql().columns);
        self.list(sql, &[uuid(&version.0), limit(limit_rows)]).await
    }

    // ---- workspaces ---------------------------------------------------------

    async fn insert_workspace(&mut self, workspace: &Workspace) -> StoreResult<()> {
        self.insert(workspace).await
    }

    async fn update_workspace(&mut self, workspace: &Workspace) -> StoreResult<()> {
        self.update(workspace).await
    }

    async fn workspace(&mut self, id: WorkspaceId) -> StoreResult<Option<Workspace>> {
        self.get(&id.0).await
    }

    async fn workspace_for_update(&mut self, id: WorkspaceId) -> StoreResult<Option<Workspace>> {
        let sql = sql_once!("{} FOR UPDATE", Workspace::sql().by_id);
        Ok(self.list::<Workspace>(sql, &[uuid(&id.0)]).await?.pop())
    }

    async fn workspace_by_name(&mut self, name: &str) -> StoreResult<Option<Workspace>> {
        let sql = sql_once!(
            "SELECT {} FROM workspaces WHERE lower(name) = lower($1) AND NOT deleted ORDER BY id LIMIT 1",
            Workspace::sql().columns
        );
        Ok(self.list::<Workspace>(sql, &[text(name)]).await?.pop())
    }

    async fn workspaces(&mut self, after: Option<WorkspaceId>, limit_rows: u32) -> StoreResult<Vec<Workspace>> {
        paged_by_id!(self, Workspace, "workspaces", after, limit_rows)
    }

    async fn workspaces_of_template(
        &mut self,
        template: TemplateId,
        after: Option<WorkspaceId>,
        limit_rows: u32,
    ) -> StoreResult<Vec<Workspace>> {
        match after {
            None => {
                let sql = sql_once!(
                    "SELECT {} FROM workspaces WHERE template_id = $1 AND NOT deleted ORDER BY id LIMIT $2",
                    Workspace::sql().columns
                );
                self.list(sql, &[uuid(&template.0), limit(limit_rows)]).await
            }
            Some(after) => {
                let sql = sql_once!(
                    "SELECT {} FROM workspaces WHERE template_id = $1 AND NOT deleted AND id > $2 \
                     ORDER BY id LIMIT $3",
                    Workspace::sql().columns
                );
                self.list(sql, &[uuid(&template.0), uuid(&after.0), limit(limit_rows)]).await
            }
        }
    }

    async fn set_next_start_at(&mut self, id: WorkspaceId, next_start_at: Option<Timestamp>) -> StoreResult<()> {
        let changed = self
            .execute(
                "UPDATE workspaces SET next_start_at = $2 WHERE id = $1",
                &[uuid(&id.0), Box::new(next_start_at.map(SqlTimestamp))],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::not_found(format!("workspace {id}")));
        }
        Ok(())
    }

    async fn touch_last_used(&mut self, ids: &[WorkspaceId], now: Timestamp) -> StoreResult<u64> {
        let mut keys: Vec<Uuid> = ids.iter().map(|id| id.0).collect();
        keys.sort_unstable();
        keys.dedup();
        // One statement even for no ids: a read-only transaction refuses it
        // the same way on both backends.
        let sql = if crate::mutations::is_on(crate::mutations::Mutation::UsageFlushOverwritesNewer) {
            sql::TOUCH_LAST_USED_UNGUARDED
        } else {
            sql::TOUCH_LAST_USED
        };
        self.execute(sql, &[Box::new(keys), ts(now)]).await
    }

    async fn lifecycle_candidates(
        &mut self,
        tick_at: Timestamp,
        after: Option<LifecycleCursor>,
        limit_rows: u32,
    ) -> StoreResult<Vec<LifecycleCursor>> {
        let mut params = vec![ts(tick_at), Box::new(tick_at.as_micros()) as Param, limit(limit_rows)];
        if let Some((version, workspace)) = after {
            params.push(uuid(&version.0));
            params.push(uuid(&workspace.0));
        }
        let rows = self.query(sql::lifecycle_scan(after.is_some()), &params).await?;
        rows.iter()
            .map(|row| {
                let version: Uuid =
                    row.try_get(0).map_err(|e| StoreError::invalid_data("lifecycle scan", e.to_string()))?;
                let workspace: Uuid =
                    row.try_get(1).map_err(|e| StoreError::invalid_data("lifecycle scan", e.to_string()))?;
                Ok((VersionId::from_uuid(version), WorkspaceId::from_uuid(workspace)))
            })
            .collect()
    }

    // ---- builds and jobs ----------------------------------------------------

    async fn insert_build(&mut self, build: &Build, job: &Job) -> StoreResult<()> {
        // One statement: the build and its job in a data-modifying CTE.
        let sql = sql_once!(
            "WITH build AS ({}) {}",
            Build::sql().insert,
            insert_statement(Job::TABLE, Job::COLUMNS, Build::COLUMNS.len() + 1)
        );
        let mut params = build.params();
        params.extend(job.params());
        self.execute(sql, &params).await.map(|_| ())
    }

    async fn update_build(&mut self, build: &Build) -> StoreResult<()> {
        self.update(build).await
    }

    async fn build(&mut self, id: BuildId) -> StoreResult<Option<BuildWithJob>> {
        let sql = sql_once!("{} WHERE b.id = $1", sql::build_with_job_select());
        Ok(self.builds(sql, &[uuid(&id.0)]).await?.pop())
    }

    async fn latest_build(&mut self, workspace: WorkspaceId) -> StoreResult<Option<BuildWithJob>> {
        Ok(self.builds(sql::latest_build(), &[uuid(&workspace.0)]).await?.pop())
    }

    async fn builds_of_workspace(&mut self, workspace: WorkspaceId, limit_rows: u32) -> StoreResult<Vec<BuildWithJob>> {
        let sql =
            sql_once!("{} WHERE b.workspace_id = $1 ORDER BY b.number DESC LIMIT $2", sql::build_with_job_select());
        self.builds(sql, &[uuid(&workspace.0), limit(limit_rows)]).await
    }

    async fn job(&mut self, id: JobId) -> StoreResult<Option<Job>> {
        self.get(&id.0).await
    }

    async fn update_job(&mut self, job: &Job) -> StoreResult<()> {
        self.update(job).await
    }

    async fn acquire_job(&mut self, worker: ProvisionerId, now: Timestamp) -> StoreResult<Option<Job>> {
        // The queue claim: users' jobs before prebuilds', oldest first; rows
        // other transactions hold are skipped (F5), a row changed after the
        // snapshot is a serialization failure (F6).
        let sql = sql_once!(
            "UPDATE provisioner_jobs SET status = 'running', started_at = $2, worker_id = $1
WHERE id = (
  SELECT id FROM provisioner_jobs WHERE status = 'pending'
  ORDER BY is_prebuild, created_at, id
  LIMIT 1
  FOR UPDATE SKIP LOCKED
)
RETURNING {}",
            Job::sql().columns
        );
        Ok(self.list::<Job>(sql, &[uuid(&worker.0), ts(now)]).await?.pop())
    }

    async fn unfinished_jobs(&mut self, limit_rows: u32) -> StoreResult<Vec<Job>> {
        let sql = sql_once!(
            "SELECT {} FROM provisioner_jobs WHERE status IN ('pending', 'running', 'canceling') \
             ORDER BY created_at, id LIMIT $1",
            Job::sql().columns
        );
        self.list(sql, &[limit(limit_rows)]).await
    }

    // ---- provisioner daemons ------------------------------------------------

    async fn upsert_provisioner(&mut self, daemon: &ProvisionerDaemon) -> StoreResult<()> {
        let sql = sql_once!(
            "{} ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, \
             last_seen_at = GREATEST(provisioner_daemons.last_seen_at, EXCLUDED.last_seen_at)",
            ProvisionerDaemon::sql().insert
        );
        self.execute(sql, &daemon.params()).await.map(|_| ())
    }

    async fn provisioner_seen_since(&mut self, since: Timestamp) -> StoreResult<bool> {
        let row = self
            .query_one_row("SELECT EXISTS (SELECT 1 FROM provisioner_daemons WHERE last_seen_at >= $1)", &[ts(since)])
            .await?;
        row.try_get(0).map_err(|e| StoreError::invalid_data("provisioner_daemons", e.to_string()))
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
        let sql = sql_once!("{} ON CONFLICT (kind, dedupe_key, user_id) DO NOTHING", Notification::sql().insert);
        Ok(self.execute(sql, &record.params()).await? > 0)
    }

    async fn claim_due_notifications(&mut self, now: Timestamp, limit_rows: u32) -> StoreResult<Vec<Notification>> {
        let sql = sql_once!(
            "SELECT {} FROM notifications WHERE delivered_at IS NULL AND next_attempt_at <= $1 \
             ORDER BY created_at, id LIMIT $2 FOR UPDATE SKIP LOCKED",
            Notification::sql().columns
        );
        self.list(sql, &[ts(now), limit(limit_rows)]).await
    }

    async fn mark_notification_delivered(&mut self, id: NotificationId, now: Timestamp) -> StoreResult<()> {
        let changed =
            self.execute("UPDATE notifications SET delivered_at = $2 WHERE id = $1", &[uuid(&id.0), ts(now)]).await?;
        if changed == 0 {
            return Err(StoreError::not_found(format!("notification {id}")));
        }
        Ok(())
    }

    async fn mark_notification_failed(&mut self, id: NotificationId, retry_at: Timestamp) -> StoreResult<()> {
        let changed = self
            .execute(
                "UPDATE notifications SET attempts = LEAST(attempts + 1, 4294967295), next_attempt_at = $2 \
                 WHERE id = $1",
                &[uuid(&id.0), ts(retry_at)],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::not_found(format!("notification {id}")));
        }
        Ok(())
    }

    async fn notifications(
        &mut self,
        after: Option<NotificationId>,
        limit_rows: u32,
    ) -> StoreResult<Vec<Notification>> {
        paged_by_id!(self, Notification, "notifications", after, limit_rows)
    }

    // ---- chats (what the lifecycle needs of them) ----------------------------

    async fn insert_chat(&mut self, chat: &Chat) -> StoreResult<()> {
        self.insert(chat).await
    }

    async fn update_chat(&mut self, chat: &Chat) -> StoreResult<()> {
        self.update(chat).await
    }

    async fn chat(&mut self, id: ChatId) -> StoreResult<Option<Chat>> {
        self.get(&id.0).await
    }

    async fn workspace_has_live_chat(&mut self, workspace: WorkspaceId) -> StoreResult<bool> {
        let row = self
            .query_one_row(
                "SELECT EXISTS (SELECT 1 FROM chats WHERE workspace_id = $1 AND status <> 'archived')",
                &[uuid(&workspace.0)],
            )
            .await?;
        row.try_get(0).map_err(|e| StoreError::invalid_data("chats", e.to_string()))
    }

    // ---- settings stored in the database -------------------------------------

    async fn setting(&mut self, key: &str) -> StoreResult<Option<String>> {
        let rows = self.query("SELECT value FROM settings WHERE id = $1", &[text(key)]).await?;
        rows.first()
            .map(|row| row.try_get::<usize, String>(0))
            .transpose()
            .map_err(|e| StoreError::invalid_data("settings.value", e.to_string()))
    }

    async fn set_setting(&mut self, key: &str, value: &str) -> StoreResult<()> {
        self.execute(
            "INSERT INTO settings (id, value) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value",
            &[text(key), text(value)],
        )
        .await
        .map(|_| ())
    }
}
