//! The statement hook: how the simulator's fault layer sees and steers every
//! statement of the SQLite store (latency, errors, hangs, commit-unknown).
//!
//! The server calls the hook once per statement (every `Tx` method call,
//! commit and rollback included), after the snapshot is taken for a first
//! statement and before the lock phase, so injected latency interleaves
//! transactions the way network round trips do on PostgreSQL.

use super::ClientId;
use crate::store::{SessionId, StoreError, Subsystem};
use crate::time::{Span, Timestamp};

/// Statement classes, each statement in exactly one (SCENARIOS.md, store faults).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum OpClass {
    /// Chat lease writes and reads (reserved; no such statement exists yet).
    Lease,
    /// Advisory lock calls.
    Lock,
    /// `commit` and `rollback`.
    Commit,
    /// Any change, `SELECT … FOR UPDATE` and `SKIP LOCKED` claims included.
    Write,
    /// Everything else.
    Read,
}

impl OpClass {
    pub const fn as_str(self) -> &'static str {
        match self {
            OpClass::Lease => "lease",
            OpClass::Lock => "lock",
            OpClass::Commit => "commit",
            OpClass::Write => "write",
            OpClass::Read => "read",
        }
    }
}

/// What the hook is told about a statement.
#[derive(Clone, Debug)]
pub struct StatementInfo {
    pub client: ClientId,
    pub session: SessionId,
    pub subsystem: Subsystem,
    /// The `Tx` method name (`"update_workspace"`, `"commit"`, …).
    pub op: &'static str,
    pub class: OpClass,
    /// 0 for the transaction's first statement.
    pub index_in_tx: u32,
}

/// What the server does with a statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookDecision {
    /// Wait `latency` on the server's clock, then run it.
    Proceed { latency: Span },
    /// Fail with this error (the transaction aborts, as on PostgreSQL).
    Fail(StoreError),
    /// Block until the server's clock reads `until`, then run it.
    Hang { until: Timestamp },
    /// For `commit`: the commit applies but the caller gets `ConnectionLost`.
    /// For any other statement: the connection is lost (`ConnectionLost`, the
    /// transaction aborts).
    CommitUnknown,
}

/// The fault layer's view of the store.
pub trait StatementHook: Send + Sync + 'static {
    fn on_statement(&self, info: &StatementInfo) -> HookDecision;
}
