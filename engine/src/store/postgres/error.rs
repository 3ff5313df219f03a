//! Driver errors to [`StoreError`]: by SQLSTATE for what the server reports,
//! by kind for what the client notices (a closed socket, an I/O failure), so
//! callers never parse a driver message.
//!
//! The mapping is the one of `shared/notes/postgres-semantics-on-sqlite.md`
//! (F8), the same the SQLite emulation produces: 40001, 40P01, 55P03, 23505
//! (with the constraint's name), 25P02; 57014 is a cancelled call; 25006 (a
//! write in a `READ ONLY` transaction) is `Unsupported`, as the emulation has it.

use tokio_postgres::error::SqlState;

use crate::store::StoreError;

/// Why a pooled connection could not be had.
pub(crate) fn pool_error(error: deadpool::managed::PoolError<tokio_postgres::Error>, waited_ms: i64) -> StoreError {
    use deadpool::managed::PoolError;
    match error {
        PoolError::Timeout(_) => StoreError::PoolTimeout { waited_ms },
        PoolError::Backend(error) => {
            // Connecting failed: the server is down or refuses us; a retry may succeed.
            StoreError::connection_lost(format!("could not connect: {}", describe(&error)))
        }
        PoolError::Closed => StoreError::connection_lost("the store's pool is closed"),
        PoolError::NoRuntimeSpecified => StoreError::Backend { detail: "pool has no runtime for its timeouts".into() },
        PoolError::PostCreateHook(error) => StoreError::connection_lost(format!("new connection rejected: {error}")),
    }
}

/// A statement's (or `BEGIN`'s, `COMMIT`'s) failure.
pub(crate) fn map_error(error: &tokio_postgres::Error) -> StoreError {
    if let Some(db) = error.as_db_error() {
        let detail = db.message().to_owned();
        let code = db.code();
        return match code {
            c if *c == SqlState::T_R_SERIALIZATION_FAILURE => StoreError::SerializationFailure { detail },
            c if *c == SqlState::T_R_DEADLOCK_DETECTED => StoreError::Deadlock { detail },
            c if *c == SqlState::LOCK_NOT_AVAILABLE => StoreError::LockNotAvailable { detail },
            c if *c == SqlState::UNIQUE_VIOLATION => StoreError::UniqueViolation {
                constraint: db.constraint().map_or_else(|| "unknown".to_owned(), str::to_owned),
            },
            c if *c == SqlState::IN_FAILED_SQL_TRANSACTION => StoreError::TransactionAborted,
            c if *c == SqlState::QUERY_CANCELED => StoreError::Cancelled,
            c if *c == SqlState::READ_ONLY_SQL_TRANSACTION => StoreError::Unsupported { detail },
            c if is_connection_code(c) => StoreError::ConnectionLost { detail },
            c => StoreError::Backend { detail: format!("{}: {detail}", c.code()) },
        };
    }
    if error.is_closed() || has_io_source(error) {
        return StoreError::connection_lost(describe(error));
    }
    StoreError::Backend { detail: describe(error) }
}

/// Server codes that mean the session is gone: class 08 (connection
/// exception) and the shutdown codes of class 57 (a terminated backend).
fn is_connection_code(code: &SqlState) -> bool {
    code.code().starts_with("08")
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || *code == SqlState::IDLE_SESSION_TIMEOUT
}

fn has_io_source(error: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        if inner.is::<std::io::Error>() {
            return true;
        }
        source = inner.source();
    }
    false
}

/// The error and its causes on one line, lowercase as the driver writes them.
fn describe(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    text
}

/// Whether an error aborts the transaction it happened in (F8). Decoding
/// problems and a missing row are the client's findings, not the server's:
/// the transaction goes on, as on the SQLite backend.
pub(crate) fn aborts(error: &StoreError) -> bool {
    !matches!(error, StoreError::NotFound { .. } | StoreError::InvalidData { .. })
}
