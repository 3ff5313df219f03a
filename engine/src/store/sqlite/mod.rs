//! The embedded SQLite store: PostgreSQL REPEATABLE READ, emulated.
//!
//! One [`SqliteServer`] per database owns a single rusqlite connection and an
//! in-memory registry of transactions, row locks and advisory locks; each
//! replica gets a [`SqliteStore`] client with its own bounded pool. Every
//! `Tx` method is one statement, run as §3.1 of
//! `shared/notes/postgres-semantics-on-sqlite.md` describes: snapshot at the
//! first statement, the fault layer's hook, a lock phase that may wait while
//! holding the connection, and an apply phase in one short SQLite transaction.
//! Rows are versioned (`mvcc.rs`), so transactions of different replicas
//! overlap as on PostgreSQL: first updater wins, unique keys see the present,
//! `SKIP LOCKED` skips, deadlocks are found after `DEADLOCK_TIMEOUT`.
//!
//! Module map: `server` (the mutex, statements' SQLite steps, waits, commit,
//! vacuum), `registry` (transactions, waits, wait-for graph), `locks` (row and
//! advisory lock tables), `mvcc` (versions and visibility), `unique`
//! (present-state key checks), `records` (row codecs), `schema` (migrations),
//! `ops` (statement bodies), `lifecycle` (the scan query), `pool`, `store`
//! (the client), `tx` (the transaction and its pipeline), `hook` (faults).
//!
//! Weaker than PostgreSQL, by design or cost (never stricter): a lost
//! client's locks go at once; foreign keys are not checked; an `UPDATE` that
//! changes a unique column takes `FOR NO KEY UPDATE`, not `FOR UPDATE` (only
//! `FOR KEY SHARE` could tell, and nothing takes it). Absent: savepoints,
//! table locks, SERIALIZABLE, session-level advisory locks.

mod audit;
mod hook;
mod lifecycle;
mod locks;
mod mvcc;
mod ops;
mod pool;
mod records;
mod registry;
mod schema;
mod server;
mod store;
mod tx;
mod unique;

pub use audit::{AuditRow, CommitRecord};
pub use hook::{HookDecision, OpClass, StatementHook, StatementInfo};
pub use pool::{PoolConfig, PoolStats};
pub use server::SqliteServer;
pub use store::SqliteStore;
pub use tx::SqliteTx;

/// Identifies a client of the server (one replica's pool; a restarted replica
/// gets a new one).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ClientId(pub u64);

#[cfg(test)]
mod tests;
