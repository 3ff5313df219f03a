//! Connections and their pool: a `deadpool` manager of `tokio-postgres`
//! connections, and who holds one, by subsystem.
//!
//! Why `deadpool` (its core `managed` pool) with a manager of our own, not
//! `bb8`: deadpool is the better kept of the two (regular releases, a small
//! audited core, FIFO waiters, wait/create/recycle timeouts on tokio), and
//! `Object::take` detaches a connection from the pool, which is how a
//! transaction dropped while open leaves without ever going back with an open
//! transaction. Our own manager (rather than `deadpool-postgres`'s) keeps
//! each connection's backend pid (the [`crate::store::SessionId`]) and its
//! prepared statements beside the client, and spawns the connection's I/O task.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use tokio_postgres::{Client, NoTls, Statement};

use crate::store::sqlite::PoolStats;
use crate::store::Subsystem;

/// One server session: the client, its backend pid, its prepared statements.
pub(crate) struct PgConnection {
    pub client: Client,
    pub pid: i32,
    statements: BTreeMap<&'static str, Statement>,
}

impl PgConnection {
    /// The prepared statement for `sql`, preparing it on first use (the
    /// server then plans it with the first executions' values, and may later
    /// switch to a generic plan: both use the indexes, see the plan tests).
    pub async fn statement(&mut self, sql: &'static str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }
}

impl std::fmt::Debug for PgConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConnection").field("pid", &self.pid).finish_non_exhaustive()
    }
}

/// Makes and checks connections for the pool.
#[derive(Debug)]
pub(crate) struct PgManager {
    pub config: tokio_postgres::Config,
}

impl managed::Manager for PgManager {
    type Type = PgConnection;
    type Error = tokio_postgres::Error;

    async fn create(&self) -> Result<PgConnection, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(NoTls).await?;
        // The connection's I/O runs as a task of its own until the client is
        // dropped (then it says goodbye and closes the socket) or the server
        // goes away. This backend exists only outside the simulator, so the
        // task is the real runtime's, not one the engine's spawner counts.
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "postgresql connection ended with an error");
            }
        });
        let row = client.query_one("SELECT pg_backend_pid()", &[]).await?;
        let pid: i32 = row.try_get(0)?;
        Ok(PgConnection { client, pid, statements: BTreeMap::new() })
    }

    async fn recycle(&self, connection: &mut PgConnection, _: &Metrics) -> RecycleResult<tokio_postgres::Error> {
        // A connection comes back only after a successful COMMIT or ROLLBACK,
        // so it is idle; one the server closed meanwhile is dropped here.
        if connection.client.is_closed() {
            return Err(RecycleError::message("connection closed"));
        }
        Ok(())
    }
}

pub(crate) type Pool = managed::Pool<PgManager>;
pub(crate) type Pooled = managed::Object<PgManager>;

/// Who holds connections now (the SQLite pool's [`PoolStats`] shape, so
/// metrics read both backends the same way).
#[derive(Debug)]
pub(crate) struct Usage {
    stats: Mutex<PoolStats>,
}

impl Usage {
    pub fn new(size: u32) -> Arc<Usage> {
        Arc::new(Usage { stats: Mutex::new(PoolStats { size, ..PoolStats::default() }) })
    }

    pub fn stats(&self) -> PoolStats {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn update(&self, f: impl FnOnce(&mut PoolStats)) {
        f(&mut self.stats.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Counts a caller waiting for a connection until the guard drops.
    pub fn waiting(self: &Arc<Self>) -> WaitingGuard {
        self.update(|s| s.waiting += 1);
        WaitingGuard { usage: Arc::clone(self) }
    }

    /// Counts a held connection until the guard drops.
    pub fn hold(self: &Arc<Self>, subsystem: Subsystem) -> UsageGuard {
        self.update(|s| {
            s.in_use += 1;
            *s.in_use_by.entry(subsystem).or_insert(0) += 1;
        });
        UsageGuard { usage: Arc::clone(self), subsystem }
    }
}

/// A waiting caller (in-memory count only).
#[derive(Debug)]
pub(crate) struct WaitingGuard {
    usage: Arc<Usage>,
}

impl Drop for WaitingGuard {
    fn drop(&mut self) {
        self.usage.update(|s| s.waiting = s.waiting.saturating_sub(1));
    }
}

/// A held connection (in-memory count only: dropping it writes nothing).
#[derive(Debug)]
pub(crate) struct UsageGuard {
    usage: Arc<Usage>,
    subsystem: Subsystem,
}

impl Drop for UsageGuard {
    fn drop(&mut self) {
        let subsystem = self.subsystem;
        self.usage.update(|s| {
            s.in_use = s.in_use.saturating_sub(1);
            if let Some(n) = s.in_use_by.get_mut(&subsystem) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    s.in_use_by.remove(&subsystem);
                }
            }
        });
    }
}
