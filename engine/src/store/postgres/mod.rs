//! The PostgreSQL store: the production backend of [`Store`], on
//! `tokio-postgres` with a `deadpool` pool. Built only with the `postgres`
//! feature and never under `--cfg madsim` (the simulator runs the SQLite
//! emulation instead); the conformance suite runs the same cases on both.
//!
//! Transactions are PostgreSQL's own REPEATABLE READ: snapshots, first
//! updater wins, row locks, `SKIP LOCKED`, advisory locks and unique checks
//! are the server's, so this module is thin by design: SQL with bound
//! parameters (no SQL `now()` but [`Tx::db_now`](crate::store::Tx::db_now)),
//! row codecs, the error mapping, the pool and its accounting.
//!
//! Module map: `pool` (connections, the deadpool manager, who holds what),
//! `tx` ([`PgTx`]: one statement per method), `records` (row codecs and
//! per-record SQL), `sql` (the statements whose plans matter, public for the
//! plan tests), `error` (SQLSTATE to [`StoreError`]), `migrate` (versioned
//! migrations under an advisory lock), `migrations/` (the SQL files),
//! `pubsub` ([`pubsub::PgPubSub`]: the engine's notices over `LISTEN`/`NOTIFY`).
//!
//! Transport: plain TCP or a Unix socket (`NoTls`); a TLS connector is not
//! wired in yet.

mod error;
mod migrate;
mod pool;
pub mod pubsub;
mod records;
pub mod sql;
mod tx;

use std::sync::Arc;

use async_trait::async_trait;
use deadpool::managed::Timeouts;
use deadpool::Runtime;

pub use records::SqlTimestamp;
pub use tx::PgTx;

use self::error::{map_error, pool_error};
use self::pool::{PgManager, Pool, Pooled, Usage, UsageGuard};
use self::tx::Held;
use crate::store::sqlite::PoolStats;
use crate::store::{SessionId, Store, StoreError, StoreResult, Subsystem, TxOptions};
use crate::time::Span;

/// A pool's shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgPoolConfig {
    /// Connections at most (at least 1).
    pub size: u32,
    /// How long `begin` waits for a connection before [`StoreError::PoolTimeout`]
    /// (also the connect timeout of a new connection).
    pub acquire_timeout: Span,
    /// Names this pool's sessions in `pg_stat_activity`.
    pub application_name: String,
}

/// One replica's handle on the database (cheap to clone; clones share the pool).
#[derive(Clone, Debug)]
pub struct PgStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: Pool,
    usage: Arc<Usage>,
    config: PgPoolConfig,
}

impl PgStore {
    /// Opens a pool on `url` (`postgres://user@host:port/db?…` or the
    /// key-value form) and checks that one connection can be made.
    pub async fn connect(url: &str, pool: PgPoolConfig) -> StoreResult<PgStore> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| StoreError::Unsupported { detail: format!("postgresql url: {e}") })?;
        Self::connect_config(config, pool).await
    }

    /// As [`PgStore::connect`], from a parsed driver configuration.
    pub async fn connect_config(mut config: tokio_postgres::Config, pool: PgPoolConfig) -> StoreResult<PgStore> {
        if pool.size == 0 {
            return Err(StoreError::Unsupported { detail: "a pool of 0 connections".into() });
        }
        let timeout = pool.acquire_timeout.to_std();
        config.application_name(&pool.application_name);
        if !timeout.is_zero() {
            // Zero would fail every connect at once; the pool's own wait still applies.
            config.connect_timeout(timeout);
        }
        // JIT compilation costs more than it saves on these short statements
        // (hundreds of milliseconds on the lifecycle scan's estimated cost).
        let options = match config.get_options() {
            Some(options) if !options.is_empty() => format!("{options} -c jit=off"),
            _ => "-c jit=off".to_owned(),
        };
        config.options(options);
        let built = Pool::builder(PgManager { config })
            .max_size(pool.size as usize)
            .timeouts(Timeouts { wait: Some(timeout), create: Some(timeout), recycle: Some(timeout) })
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Backend { detail: format!("building the pool: {e}") })?;
        let store = PgStore { inner: Arc::new(Inner { usage: Usage::new(pool.size), pool: built, config: pool }) };
        // Fail now, not at the first transaction, when the server is unreachable.
        let (conn, _usage) = store.acquire(Subsystem::Admin).await?;
        drop(conn);
        Ok(store)
    }

    /// Applies the migrations the database lacks (safe to run from several
    /// processes at once). Returns the versions this call applied.
    pub async fn migrate(&self) -> StoreResult<Vec<i32>> {
        let (conn, _usage) = self.acquire(Subsystem::Admin).await?;
        let mut held = Held::new(conn);
        let Some(connection) = held.get() else { return Err(StoreError::connection_lost("no connection")) };
        let applied = migrate::migrate(connection).await?;
        held.release();
        Ok(applied)
    }

    /// Who holds this pool's connections now.
    pub fn pool_stats(&self) -> PoolStats {
        self.inner.usage.stats()
    }

    pub fn pool_config(&self) -> &PgPoolConfig {
        &self.inner.config
    }

    /// Closes the pool: idle connections go now, held ones when their
    /// transactions end; every later `begin` fails with `ConnectionLost`.
    pub fn close(&self) {
        self.inner.pool.close();
    }

    /// A connection for `subsystem`, counted until the guard drops.
    async fn acquire(&self, subsystem: Subsystem) -> StoreResult<(Pooled, UsageGuard)> {
        if self.inner.pool.is_closed() {
            return Err(StoreError::connection_lost("the store's pool is closed"));
        }
        let waited_ms = self.inner.config.acquire_timeout.as_millis();
        let conn = {
            let _waiting = self.inner.usage.waiting();
            self.inner.pool.get().await.map_err(|e| pool_error(e, waited_ms))?
        };
        Ok((conn, self.inner.usage.hold(subsystem)))
    }
}

#[async_trait]
impl Store for PgStore {
    type Tx = PgTx;

    async fn begin(&self, options: TxOptions) -> StoreResult<PgTx> {
        // Only REPEATABLE READ exists (`Isolation`), which is what BEGIN asks.
        let (conn, usage) = self.acquire(options.subsystem).await?;
        PgTx::new(conn, usage).begin(options.read_only).await
    }

    async fn sessions_waiting(&self) -> StoreResult<Vec<SessionId>> {
        let (conn, _usage) = self.acquire(Subsystem::Admin).await?;
        let mut held = Held::new(conn);
        let Some(connection) = held.get() else { return Err(StoreError::connection_lost("no connection")) };
        let rows = connection
            .client
            .query(
                "SELECT pid FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock' ORDER BY pid",
                &[],
            )
            .await
            .map_err(|e| map_error(&e))?;
        held.release();
        rows.iter()
            .map(|row| {
                row.try_get::<usize, i32>(0)
                    .map(|pid| SessionId(i64::from(pid)))
                    .map_err(|e| StoreError::invalid_data("pg_stat_activity.pid", e.to_string()))
            })
            .collect()
    }
}
