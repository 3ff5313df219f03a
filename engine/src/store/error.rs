//! Typed store errors: one variant per failure kind, so callers decide retries
//! with [`StoreError::is_retryable`] and never parse driver messages.

/// Why a store call failed. Every variant except the data ones aborts the
/// transaction it happened in (PostgreSQL's behaviour): roll back and start over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// SQLSTATE 40001: a concurrent transaction changed a row this one needed.
    #[error("serialization failure: {detail}")]
    SerializationFailure { detail: String },
    /// SQLSTATE 40P01: this transaction was chosen to break a deadlock.
    #[error("deadlock detected: {detail}")]
    Deadlock { detail: String },
    /// SQLSTATE 55P03: a `NOWAIT` lock was not available.
    #[error("lock not available: {detail}")]
    LockNotAvailable { detail: String },
    /// No pooled connection came free within the acquire timeout.
    #[error("timed out waiting for a database connection after {waited_ms}ms")]
    PoolTimeout { waited_ms: i64 },
    /// The connection broke (or the replica is cut off); a commit's outcome is unknown.
    #[error("connection lost: {detail}")]
    ConnectionLost { detail: String },
    /// The call was cancelled (shutdown budget exhausted).
    #[error("cancelled")]
    Cancelled,
    /// SQLSTATE 25P02: an earlier statement failed; only rollback is possible.
    #[error("transaction aborted by an earlier error")]
    TransactionAborted,
    /// A row the call required does not exist.
    #[error("{what} not found")]
    NotFound { what: String },
    /// SQLSTATE 23505: a unique key is taken.
    #[error("unique violation on {constraint}")]
    UniqueViolation { constraint: String },
    /// Stored data the engine cannot decode (never a panic).
    #[error("invalid data in {what}: {detail}")]
    InvalidData { what: String, detail: String },
    /// A request the backend refuses (an unsupported isolation level, say).
    #[error("unsupported: {detail}")]
    Unsupported { detail: String },
    /// Anything else the backend reported.
    #[error("database error: {detail}")]
    Backend { detail: String },
}

impl StoreError {
    /// Whether retrying the whole transaction may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::SerializationFailure { .. }
                | StoreError::Deadlock { .. }
                | StoreError::LockNotAvailable { .. }
                | StoreError::PoolTimeout { .. }
                | StoreError::ConnectionLost { .. }
        )
    }

    /// A short stable name of the kind, for traces and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::SerializationFailure { .. } => "serialization_failure",
            StoreError::Deadlock { .. } => "deadlock",
            StoreError::LockNotAvailable { .. } => "lock_not_available",
            StoreError::PoolTimeout { .. } => "pool_timeout",
            StoreError::ConnectionLost { .. } => "connection_lost",
            StoreError::Cancelled => "cancelled",
            StoreError::TransactionAborted => "transaction_aborted",
            StoreError::NotFound { .. } => "not_found",
            StoreError::UniqueViolation { .. } => "unique_violation",
            StoreError::InvalidData { .. } => "invalid_data",
            StoreError::Unsupported { .. } => "unsupported",
            StoreError::Backend { .. } => "backend",
        }
    }

    pub fn serialization(detail: impl Into<String>) -> Self {
        StoreError::SerializationFailure { detail: detail.into() }
    }
    pub fn connection_lost(detail: impl Into<String>) -> Self {
        StoreError::ConnectionLost { detail: detail.into() }
    }
    pub fn not_found(what: impl Into<String>) -> Self {
        StoreError::NotFound { what: what.into() }
    }
    pub fn invalid_data(what: impl Into<String>, detail: impl Into<String>) -> Self {
        StoreError::InvalidData { what: what.into(), detail: detail.into() }
    }
}
