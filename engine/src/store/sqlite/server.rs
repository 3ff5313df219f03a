//! The emulated database server: one SQLite connection and the in-memory
//! registry behind one mutex, shared by every replica's client.
//!
//! Statements reach SQLite only through [`SqliteServer::read`] (one snapshot
//! read) and [`SqliteServer::apply`] (checks and writes in one short
//! `BEGIN IMMEDIATE … COMMIT`), both synchronous: nothing is awaited while the
//! mutex is held, so SQLite's single writer is held for one step, never for an
//! emulated transaction (that would serialize replicas and hide their races).
//! Waiting happens between those steps, in [`SqliteServer::lock_row`] and
//! [`SqliteServer::wait_for_tx`], on a per-transaction wake signal; after
//! `DEADLOCK_TIMEOUT` on the server's clock a waiter searches the wait-for
//! graph once and aborts itself with 40P01 if it closes a cycle (F7).
//! Commit stamps the transaction's versions; abort is in memory only and its
//! versions are removed before the next write (or by vacuum, or on reopen).

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rusqlite::Connection;
use tokio::sync::watch;

use super::audit::{self, CommitRecord};
use super::hook::StatementHook;
use super::locks::{Acquire, LockMode};
use super::mvcc::{self, backend, RowKey, Seq, TxId, View};
use super::pool::PoolConfig;
use super::registry::{Registry, WaitState};
use super::schema;
use super::store::SqliteStore;
use super::ClientId;
use crate::limits::{DEADLOCK_TIMEOUT, VACUUM_BATCH_MAX, VACUUM_EVERY_COMMITS};
use crate::runtime::SharedClock;
use crate::store::{SessionId, StoreError, StoreResult};
use crate::time::Timestamp;

/// Bound on lock/unique-wait rounds of one statement (each round ends with
/// another transaction's end, so this is never reached in practice).
const STATEMENT_ROUNDS_MAX: u32 = 100_000;

pub(crate) struct Inner {
    pub conn: Connection,
    pub reg: Registry,
    /// The commit log, when enabled (see `audit.rs`).
    pub audit: Option<Vec<CommitRecord>>,
}

/// The apply phase's view of the server: SQLite inside a transaction, and the registry.
pub(crate) struct ApplyCtx<'a> {
    pub conn: &'a Connection,
    pub reg: &'a mut Registry,
    pub view: View,
}

impl ApplyCtx<'_> {
    /// Notes that this transaction wrote into `table`.
    pub fn wrote(&mut self, table: mvcc::Table) {
        self.reg.touch(self.view.tx, table);
    }
}

/// What one apply attempt ended with.
pub(crate) enum Step<T> {
    Done(T),
    /// A unique key is held by an open transaction: wait for it to end, retry (F9).
    WaitTx(TxId),
    /// Take this row lock (maybe waiting), retry.
    Lock(RowKey, LockMode),
}

/// One database, shared by all replicas via `Arc`.
pub struct SqliteServer {
    inner: Mutex<Inner>,
    clock: SharedClock,
    hook: Mutex<Option<Arc<dyn StatementHook>>>,
}

impl std::fmt::Debug for SqliteServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteServer").finish_non_exhaustive()
    }
}

impl SqliteServer {
    /// A fresh in-memory database.
    pub fn open_in_memory(clock: SharedClock) -> Result<Arc<SqliteServer>, StoreError> {
        let conn = Connection::open_in_memory().map_err(backend)?;
        Self::with_connection(conn, false, clock)
    }

    /// A database file: runs the migrations and removes the versions of
    /// transactions left open by an earlier process.
    pub fn open_file(path: &Path, clock: SharedClock) -> Result<Arc<SqliteServer>, StoreError> {
        let conn = Connection::open(path).map_err(backend)?;
        Self::with_connection(conn, true, clock)
    }

    fn with_connection(conn: Connection, file: bool, clock: SharedClock) -> StoreResult<Arc<SqliteServer>> {
        let (commit_seq, max_tx) = schema::open(&conn, file)?;
        Ok(Arc::new(SqliteServer {
            inner: Mutex::new(Inner { conn, reg: Registry::new(commit_seq, max_tx), audit: None }),
            clock,
            hook: Mutex::new(None),
        }))
    }

    /// A database restart: every open transaction of every client rolls back
    /// at once and its later statements see the connection lost; new
    /// transactions work (the fault layer decides how long the database is
    /// unreachable).
    pub fn restart_sessions(&self) {
        self.lock().reg.sever_all();
    }

    /// Starts recording every commit (see [`CommitRecord`]); observers call
    /// [`SqliteServer::take_commits`] to drain the log.
    pub fn enable_commit_log(&self) {
        let mut inner = self.lock();
        if inner.audit.is_none() {
            inner.audit = Some(Vec::new());
        }
    }

    /// The commits recorded since the last call, oldest first.
    pub fn take_commits(&self) -> Vec<CommitRecord> {
        self.lock().audit.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Installs (or removes) the statement hook of the fault layer.
    pub fn set_hook(&self, hook: Option<Arc<dyn StatementHook>>) {
        *self.hook.lock().unwrap_or_else(PoisonError::into_inner) = hook;
    }

    pub(crate) fn hook(&self) -> Option<Arc<dyn StatementHook>> {
        self.hook.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(crate) fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// A new client: one replica's connection pool.
    pub fn client(self: &Arc<Self>, pool: PoolConfig) -> SqliteStore {
        let id = self.lock().reg.new_client();
        SqliteStore::new(Arc::clone(self), id, pool)
    }

    /// A replica crashed or lost the network: every open transaction of
    /// `client` rolls back at once, its locks go and its waiters wake (F12);
    /// every later call on its handles fails with `ConnectionLost`.
    pub fn disconnect_client(&self, client: ClientId) {
        self.lock().reg.disconnect(client);
    }

    /// Removes versions no snapshot can see any more (and aborted leftovers).
    pub fn vacuum(&self) -> Result<(), StoreError> {
        let mut inner = self.lock();
        Self::vacuum_locked(&mut inner, true)
    }

    /// Physical versions in all tables (diagnostics and tests).
    pub fn version_count(&self) -> Result<u64, StoreError> {
        mvcc::count_versions(&self.lock().conn)
    }

    /// The commit counter (diagnostics and tests).
    /// The number of the last commit that wrote into `table` (by its SQL
    /// name), 0 if none since the server opened. Observers use it to skip
    /// re-reading a table nothing changed.
    pub fn table_write_seq(&self, table: &str) -> u64 {
        let inner = self.lock();
        mvcc::Table::ALL
            .iter()
            .find(|t| t.name() == table)
            .and_then(|t| inner.reg.table_seq.get(t).copied())
            .unwrap_or(0)
    }

    pub fn commit_seq(&self) -> u64 {
        self.lock().reg.commit_seq
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    // ---- transactions -----------------------------------------------------------

    pub(crate) fn begin_tx(&self, client: ClientId) -> StoreResult<TxId> {
        self.lock().reg.begin(client)
    }

    /// Statement start: may it run, and the snapshot (taken now if first).
    pub(crate) fn start_statement(&self, client: ClientId, tx: TxId) -> StoreResult<(Seq, Timestamp)> {
        let now = self.clock.now();
        let mut inner = self.lock();
        inner.reg.check(client, tx)?;
        inner.reg.snapshot(tx, now).ok_or(StoreError::TransactionAborted)
    }

    pub(crate) fn check(&self, client: ClientId, tx: TxId) -> StoreResult<()> {
        self.lock().reg.check(client, tx)
    }

    /// A statement failed: the transaction is aborted (F8), in memory.
    pub(crate) fn abort_tx(&self, client: ClientId, tx: TxId) {
        let mut inner = self.lock();
        if inner.reg.is_connected(client) {
            inner.reg.abort(tx);
        }
    }

    /// The handle was dropped without commit or rollback: abort in memory only
    /// (no SQLite write in a `Drop`); a lost client's handles have no effect.
    pub(crate) fn forget_tx(&self, client: ClientId, tx: TxId) {
        let mut inner = self.lock();
        if inner.reg.is_connected(client) {
            inner.reg.abort(tx);
            inner.reg.remove(tx);
        }
    }

    pub(crate) fn sessions_waiting(&self) -> Vec<SessionId> {
        self.lock().reg.waiting().into_iter().map(|tx| SessionId(mvcc::to_sql_int(tx))).collect()
    }

    /// Commit: stamp the commit number onto the transaction's versions and the
    /// counter in one SQLite transaction, then free its locks and wake waiters.
    pub(crate) fn commit(&self, client: ClientId, tx: TxId) -> StoreResult<()> {
        let mut inner = self.lock();
        inner.reg.check(client, tx)?;
        let tables = inner.reg.tables_written(tx);
        if !tables.is_empty() {
            Self::remove_aborted(&mut inner)?;
            let seq = inner.reg.commit_seq + 1;
            let conn = &inner.conn;
            let stamped = sqlite_tx(conn, || {
                for table in &tables {
                    mvcc::stamp_commit(conn, *table, tx, seq)?;
                }
                schema::store_commit_seq(conn, seq)
            });
            if let Err(error) = stamped {
                inner.reg.abort(tx);
                return Err(error);
            }
            if inner.audit.is_some() {
                let rows = audit::read_commit(&inner.conn, &tables, seq);
                let at = self.clock.now();
                if let (Some(log), Ok(rows)) = (inner.audit.as_mut(), rows) {
                    log.push(CommitRecord { seq, at, client, rows });
                }
            }
            inner.reg.commit_seq = seq;
            inner.reg.commits_since_vacuum += 1;
            for table in &tables {
                inner.reg.table_seq.insert(*table, seq);
            }
        }
        inner.reg.end_committed(tx);
        if inner.reg.commits_since_vacuum >= VACUUM_EVERY_COMMITS {
            inner.reg.commits_since_vacuum = 0;
            if let Err(error) = Self::vacuum_locked(&mut inner, false) {
                tracing::warn!(%error, "automatic vacuum failed");
            }
        }
        Ok(())
    }

    /// Rollback: abort in memory, then remove the versions at once.
    pub(crate) fn rollback(&self, client: ClientId, tx: TxId) -> StoreResult<()> {
        let mut inner = self.lock();
        if !inner.reg.is_connected(client) {
            return Err(StoreError::connection_lost("client disconnected"));
        }
        inner.reg.abort(tx);
        inner.reg.remove(tx);
        if let Err(error) = Self::remove_aborted(&mut inner) {
            // The rollback happened; the versions stay garbage for the next try.
            tracing::warn!(%error, "removing rolled-back versions failed");
        }
        Ok(())
    }

    // ---- statements -------------------------------------------------------------

    /// A snapshot read: one synchronous step under the mutex.
    pub(crate) fn read<T>(
        &self,
        client: ClientId,
        tx: TxId,
        f: impl FnOnce(&Connection, View) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let inner = self.lock();
        inner.reg.check(client, tx)?;
        let view = inner.reg.view(tx)?;
        f(&inner.conn, view)
    }

    /// One apply attempt in one SQLite transaction: committed if it is `Done`,
    /// rolled back otherwise (an attempt that must wait writes nothing).
    pub(crate) fn apply<T>(
        &self,
        client: ClientId,
        tx: TxId,
        f: impl FnOnce(&mut ApplyCtx<'_>) -> StoreResult<Step<T>>,
    ) -> StoreResult<Step<T>> {
        let mut inner = self.lock();
        inner.reg.check(client, tx)?;
        let view = inner.reg.view(tx)?;
        Self::remove_aborted(&mut inner)?;
        let Inner { conn, reg, .. } = &mut *inner;
        conn.execute_batch("BEGIN IMMEDIATE").map_err(backend)?;
        let result = f(&mut ApplyCtx { conn, reg, view });
        match result {
            Ok(Step::Done(value)) => match conn.execute_batch("COMMIT") {
                Ok(()) => Ok(Step::Done(value)),
                Err(error) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    Err(backend(error))
                }
            },
            other => {
                conn.execute_batch("ROLLBACK").map_err(backend)?;
                other
            }
        }
    }

    /// Runs apply attempts until one is done, taking the locks and waiting for
    /// the transactions the attempts ask for.
    pub(crate) async fn run<T: Send>(
        &self,
        client: ClientId,
        tx: TxId,
        mut f: impl FnMut(&mut ApplyCtx<'_>) -> StoreResult<Step<T>> + Send,
    ) -> StoreResult<T> {
        for _ in 0..STATEMENT_ROUNDS_MAX {
            match self.apply(client, tx, &mut f)? {
                Step::Done(value) => return Ok(value),
                Step::WaitTx(other) => self.wait_for_tx(client, tx, other).await?,
                Step::Lock(key, mode) => self.lock_row(client, tx, &key, mode).await?,
            }
        }
        Err(StoreError::Backend { detail: "statement retried without end".into() })
    }

    /// Takes a row lock, waiting (holding the connection) while it conflicts.
    pub(crate) async fn lock_row(&self, client: ClientId, tx: TxId, key: &RowKey, mode: LockMode) -> StoreResult<()> {
        let rx = {
            let mut inner = self.lock();
            inner.reg.check(client, tx)?;
            match inner.reg.lock_row(tx, key, mode) {
                Acquire::Granted => return Ok(()),
                Acquire::Blocked => inner.reg.subscribe(tx).ok_or(StoreError::TransactionAborted)?,
            }
        };
        self.wait(client, tx, rx).await
    }

    /// F9: waits for `other` to end (commit or rollback).
    pub(crate) async fn wait_for_tx(&self, client: ClientId, tx: TxId, other: TxId) -> StoreResult<()> {
        let rx = {
            let mut inner = self.lock();
            inner.reg.check(client, tx)?;
            if !inner.reg.wait_for_tx(tx, other) {
                return Ok(());
            }
            inner.reg.subscribe(tx).ok_or(StoreError::TransactionAborted)?
        };
        self.wait(client, tx, rx).await
    }

    async fn wait(&self, client: ClientId, tx: TxId, mut rx: watch::Receiver<u64>) -> StoreResult<()> {
        let mut guard = WaitGuard { server: self, client, tx, armed: true };
        let mut timer = Some(self.clock.sleep_until(self.clock.now() + DEADLOCK_TIMEOUT));
        loop {
            {
                let inner = self.lock();
                if !inner.reg.is_connected(client) {
                    guard.armed = false;
                    return Err(StoreError::connection_lost("client disconnected"));
                }
                match inner.reg.wait_state(tx) {
                    WaitState::Done => {
                        guard.armed = false;
                        return Ok(());
                    }
                    WaitState::Gone => {
                        guard.armed = false;
                        return Err(StoreError::TransactionAborted);
                    }
                    WaitState::Waiting => {}
                }
            }
            match timer.as_mut() {
                Some(deadlock_check_at) => {
                    tokio::select! {
                        biased;
                        changed = rx.changed() => {
                            if changed.is_err() {
                                timer = None;
                            }
                        }
                        () = deadlock_check_at => {
                            timer = None;
                            let mut inner = self.lock();
                            if inner.reg.wait_state(tx) == WaitState::Waiting && inner.reg.in_deadlock(tx) {
                                inner.reg.abort(tx);
                                guard.armed = false;
                                return Err(StoreError::Deadlock {
                                    detail: format!("session {tx} closed a cycle of lock waits"),
                                });
                            }
                        }
                    }
                }
                None => {
                    let _ = rx.changed().await;
                }
            }
        }
    }

    // ---- garbage ----------------------------------------------------------------

    /// Deletes what aborted transactions wrote (late rollback, §3.9).
    fn remove_aborted(inner: &mut Inner) -> StoreResult<()> {
        let pending = inner.reg.aborted_pending();
        if pending.is_empty() {
            return Ok(());
        }
        let conn = &inner.conn;
        sqlite_tx(conn, || mvcc::remove_aborted(conn, &pending))?;
        inner.reg.clear_aborted(&pending);
        Ok(())
    }

    /// Vacuum (§3.9): horizon = the oldest snapshot in use; versions replaced
    /// at or before it go, in batches of short SQLite transactions. `all`
    /// repeats batches until a table is clean; otherwise one batch per table.
    fn vacuum_locked(inner: &mut Inner, all: bool) -> StoreResult<()> {
        Self::remove_aborted(inner)?;
        let horizon = inner.reg.horizon();
        let conn = &inner.conn;
        for table in mvcc::Table::ALL {
            loop {
                let removed = sqlite_tx(conn, || mvcc::vacuum_table(conn, table, horizon, VACUUM_BATCH_MAX))?;
                if !all || removed < VACUUM_BATCH_MAX as usize {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// Runs `f` in one `BEGIN IMMEDIATE … COMMIT`, rolling back on error.
fn sqlite_tx<T>(conn: &Connection, f: impl FnOnce() -> StoreResult<T>) -> StoreResult<T> {
    conn.execute_batch("BEGIN IMMEDIATE").map_err(backend)?;
    match f() {
        Ok(value) => match conn.execute_batch("COMMIT") {
            Ok(()) => Ok(value),
            Err(error) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(backend(error))
            }
        },
        Err(error) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(error)
        }
    }
}

/// A wait abandoned mid-way (its future dropped) leaves the queue, and the
/// statement counts as cancelled: the transaction aborts, in memory only.
struct WaitGuard<'a> {
    server: &'a SqliteServer,
    client: ClientId,
    tx: TxId,
    armed: bool,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut inner = self.server.lock();
        if inner.reg.is_connected(self.client) {
            inner.reg.cancel_wait(self.tx);
            inner.reg.abort(self.tx);
        }
    }
}
