//! The SQLite schema, as versioned migrations, and opening a database file.
//!
//! Migrations are `(version, sql)` pairs applied in order and recorded in
//! `schema_migrations`; a released migration never changes. Every record table
//! is versioned (see `mvcc.rs`): `_vid` is the physical version, `id` the
//! logical row, and the MVCC columns carry partial indexes so commit stamping
//! and cleanup touch only open versions. Unique keys exist as partial unique
//! indexes over live versions (`_xmax IS NULL`): a backstop only — the layer
//! checks keys itself (F9) and reports a backstop hit as a bug, not a 23505.
//! SQLite's foreign keys stay off: they cannot see versions.

use rusqlite::Connection;

use super::mvcc::{self, backend, Seq};
use crate::store::StoreResult;

/// The MVCC columns, lookup index and backstop primary key of a versioned table.
macro_rules! versioned_table {
    ($name:literal, $columns:literal) => {
        concat!(
            "CREATE TABLE ",
            $name,
            " (\n  _vid INTEGER PRIMARY KEY,\n  _xmin INTEGER NOT NULL,\n  _xmin_seq INTEGER,\n",
            "  _xmax INTEGER,\n  _xmax_seq INTEGER,\n  ",
            $columns,
            "\n);\n",
            "CREATE INDEX ",
            $name,
            "_id ON ",
            $name,
            " (id);\n",
            "CREATE UNIQUE INDEX ",
            $name,
            "_pkey_backstop ON ",
            $name,
            " (id) WHERE _xmax IS NULL;\n",
            "CREATE INDEX ",
            $name,
            "_open_xmin ON ",
            $name,
            " (_xmin) WHERE _xmin_seq IS NULL;\n",
            "CREATE INDEX ",
            $name,
            "_open_xmax ON ",
            $name,
            " (_xmax) WHERE _xmax IS NOT NULL AND _xmax_seq IS NULL;\n",
            "CREATE INDEX ",
            $name,
            "_dead ON ",
            $name,
            " (_xmax_seq) WHERE _xmax_seq IS NOT NULL;\n"
        )
    };
}

const V1_TABLES: &str = concat!(
    "CREATE TABLE emulation_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);\n",
    "INSERT INTO emulation_meta (key, value) VALUES ('commit_seq', 0);\n",
    versioned_table!(
        "users",
        "id BLOB NOT NULL, name TEXT NOT NULL, status TEXT NOT NULL, roles INTEGER NOT NULL,
  quiet_hours TEXT NOT NULL, created_at INTEGER NOT NULL"
    ),
    "CREATE UNIQUE INDEX users_name_backstop ON users (name) WHERE _xmax IS NULL;\n",
    "CREATE INDEX users_name ON users (name);\n",
    versioned_table!(
        "templates",
        "id BLOB NOT NULL, name TEXT NOT NULL, active_version_id BLOB NOT NULL,
  default_ttl INTEGER NOT NULL, activity_bump INTEGER NOT NULL, autostop_notify INTEGER NOT NULL,
  failure_ttl INTEGER NOT NULL, time_til_dormant INTEGER NOT NULL, time_til_dormant_autodelete INTEGER NOT NULL,
  allow_user_autostart INTEGER NOT NULL, allow_user_autostop INTEGER NOT NULL, autostart_days INTEGER NOT NULL,
  autostop_requirement_days INTEGER NOT NULL, autostop_requirement_weeks INTEGER NOT NULL,
  require_active_version INTEGER NOT NULL, deprecated INTEGER NOT NULL, deleted INTEGER NOT NULL,
  created_at INTEGER NOT NULL"
    ),
    "CREATE UNIQUE INDEX templates_name_backstop ON templates (name) WHERE _xmax IS NULL AND deleted = 0;\n",
    "CREATE INDEX templates_name ON templates (name);\n",
    versioned_table!(
        "template_versions",
        "id BLOB NOT NULL, template_id BLOB NOT NULL, name TEXT NOT NULL, parameters TEXT NOT NULL,
  created_at INTEGER NOT NULL"
    ),
    "CREATE INDEX template_versions_template ON template_versions (template_id, created_at, id);\n",
    versioned_table!(
        "presets",
        "id BLOB NOT NULL, version_id BLOB NOT NULL, name TEXT NOT NULL, parameters TEXT NOT NULL,
  instances INTEGER, expiration_ttl INTEGER NOT NULL, schedules TEXT, last_invalidated_at INTEGER,
  status TEXT NOT NULL"
    ),
    "CREATE UNIQUE INDEX presets_version_name_backstop ON presets (version_id, name) WHERE _xmax IS NULL;\n",
    "CREATE INDEX presets_version ON presets (version_id, name);\n",
    versioned_table!(
        "workspaces",
        "id BLOB NOT NULL, owner_id BLOB NOT NULL, template_id BLOB NOT NULL, name TEXT NOT NULL,
  ttl INTEGER, autostart TEXT, automatic_updates TEXT NOT NULL, last_used_at INTEGER NOT NULL,
  dormant_at INTEGER, deleting_at INTEGER, next_start_at INTEGER, deleted INTEGER NOT NULL,
  created_at INTEGER NOT NULL"
    ),
    "CREATE UNIQUE INDEX workspaces_owner_name_backstop ON workspaces (owner_id, lower(name))
  WHERE _xmax IS NULL AND deleted = 0;\n",
    "CREATE INDEX workspaces_owner_name ON workspaces (owner_id, lower(name));\n",
    "CREATE INDEX workspaces_name ON workspaces (lower(name));\n",
    "CREATE INDEX workspaces_template ON workspaces (template_id, id);\n",
    versioned_table!(
        "workspace_builds",
        "id BLOB NOT NULL, workspace_id BLOB NOT NULL, number INTEGER NOT NULL, transition TEXT NOT NULL,
  reason TEXT NOT NULL, initiator_id BLOB NOT NULL, version_id BLOB NOT NULL, job_id BLOB NOT NULL,
  preset_id BLOB, parameters TEXT NOT NULL, created_at INTEGER NOT NULL, deadline INTEGER,
  max_deadline INTEGER, notified_autostop_deadline INTEGER, agent_ready_at INTEGER"
    ),
    "CREATE UNIQUE INDEX workspace_builds_number_backstop ON workspace_builds (workspace_id, number)
  WHERE _xmax IS NULL;\n",
    "CREATE INDEX workspace_builds_workspace ON workspace_builds (workspace_id, number);\n",
    versioned_table!(
        "provisioner_jobs",
        "id BLOB NOT NULL, build_id BLOB NOT NULL, workspace_id BLOB NOT NULL, template_id BLOB NOT NULL,
  version_id BLOB NOT NULL, status TEXT NOT NULL, is_prebuild INTEGER NOT NULL, created_at INTEGER NOT NULL,
  started_at INTEGER, completed_at INTEGER, canceled_at INTEGER, worker_id BLOB, error TEXT"
    ),
    "CREATE INDEX provisioner_jobs_queue ON provisioner_jobs (status, is_prebuild, created_at, id);\n",
    versioned_table!("provisioner_daemons", "id BLOB NOT NULL, name TEXT NOT NULL, last_seen_at INTEGER NOT NULL"),
    "CREATE INDEX provisioner_daemons_seen ON provisioner_daemons (last_seen_at);\n",
    versioned_table!(
        "notifications",
        "id BLOB NOT NULL, kind TEXT NOT NULL, user_id BLOB NOT NULL, dedupe_key TEXT NOT NULL,
  workspace_id BLOB, payload TEXT NOT NULL, created_at INTEGER NOT NULL, attempts INTEGER NOT NULL,
  next_attempt_at INTEGER NOT NULL, delivered_at INTEGER"
    ),
    "CREATE UNIQUE INDEX notifications_dedupe_backstop ON notifications (kind, dedupe_key, user_id)
  WHERE _xmax IS NULL;\n",
    "CREATE INDEX notifications_dedupe ON notifications (kind, dedupe_key, user_id);\n",
    "CREATE INDEX notifications_due ON notifications (created_at, id) WHERE delivered_at IS NULL;\n",
    versioned_table!(
        "chats",
        "id BLOB NOT NULL, owner_id BLOB NOT NULL, name TEXT NOT NULL, workspace_id BLOB,
  status TEXT NOT NULL, created_at INTEGER NOT NULL, last_activity_at INTEGER NOT NULL"
    ),
    "CREATE INDEX chats_workspace ON chats (workspace_id);\n",
    versioned_table!("settings", "id TEXT NOT NULL, value TEXT NOT NULL"),
);

/// Every migration, oldest first. Append only.
pub const MIGRATIONS: &[(u32, &str)] = &[(1, V1_TABLES)];

/// Applies the migrations `conn` lacks, each in its own SQLite transaction.
pub fn migrate(conn: &Connection) -> StoreResult<()> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY);")
        .map_err(backend)?;
    for (version, sql) in MIGRATIONS {
        let applied: bool = conn
            .query_row("SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)", [version], |r| r.get(0))
            .map_err(backend)?;
        if applied {
            continue;
        }
        conn.execute_batch("BEGIN IMMEDIATE").map_err(backend)?;
        let result = conn
            .execute_batch(sql)
            .and_then(|()| conn.execute("INSERT INTO schema_migrations (version) VALUES (?1)", [version]).map(|_| ()));
        match result {
            Ok(()) => conn.execute_batch("COMMIT").map_err(backend)?,
            Err(error) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(backend(error));
            }
        }
    }
    Ok(())
}

/// The persisted commit counter.
pub fn load_commit_seq(conn: &Connection) -> StoreResult<Seq> {
    let value: i64 = conn
        .query_row("SELECT value FROM emulation_meta WHERE key = 'commit_seq'", [], |r| r.get(0))
        .map_err(backend)?;
    Ok(value.max(0) as Seq)
}

pub fn store_commit_seq(conn: &Connection, seq: Seq) -> StoreResult<()> {
    conn.prepare_cached("UPDATE emulation_meta SET value = ?1 WHERE key = 'commit_seq'")
        .map_err(backend)?
        .execute([mvcc::to_sql_int(seq)])
        .map_err(backend)?;
    Ok(())
}

/// Connection settings: no busy handler (a wait inside SQLite would freeze the
/// simulator), no foreign keys, a statement cache for the emulation's SQL.
pub fn configure(conn: &Connection, file: bool) -> StoreResult<()> {
    conn.busy_timeout(std::time::Duration::ZERO).map_err(backend)?;
    // Query planner stability: a cached statement keeps its plan whatever is
    // bound to it. Without this, SQLite re-prepares a statement whenever a new
    // value for a `LIMIT ?` or a partial-index term could change its plan,
    // which made re-parsing SQL most of the emulated store's cost.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map_err(backend)?;
    conn.set_prepared_statement_cache_capacity(256);
    conn.set_prepared_statement_cache_capacity(256);
    conn.execute_batch("PRAGMA foreign_keys = OFF;").map_err(backend)?;
    if file {
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;").map_err(backend)?;
    }
    Ok(())
}

/// Opening: migrate, then drop what transactions of an earlier process left
/// uncommitted (they all ended with it, F12).
pub fn open(conn: &Connection, file: bool) -> StoreResult<(Seq, mvcc::TxId)> {
    configure(conn, file)?;
    migrate(conn)?;
    conn.execute_batch("BEGIN IMMEDIATE").map_err(backend)?;
    let result = mvcc::remove_unstamped(conn).and_then(|()| Ok((load_commit_seq(conn)?, mvcc::max_tx_id(conn)?)));
    match result {
        Ok(found) => {
            conn.execute_batch("COMMIT").map_err(backend)?;
            Ok(found)
        }
        Err(error) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once() {
        let conn = Connection::open_in_memory().unwrap();
        let (seq, max_tx) = open(&conn, false).unwrap();
        assert_eq!((seq, max_tx), (0, 0));
        migrate(&conn).unwrap();
        let count: i64 = conn.query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0)).unwrap();
        assert_eq!(count, MIGRATIONS.len() as i64);
        assert_eq!(mvcc::count_versions(&conn).unwrap(), 0);
    }

    #[test]
    fn versions_are_unique_per_version_number() {
        let mut versions: Vec<u32> = MIGRATIONS.iter().map(|(v, _)| *v).collect();
        let sorted = versions.clone();
        versions.dedup();
        assert_eq!(versions, sorted);
        assert!(sorted.windows(2).all(|w| w[0] < w[1]));
    }
}
