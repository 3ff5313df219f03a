//! Versioned migrations: an ordered list of SQL files embedded in the
//! binary, applied in one transaction under an advisory lock and recorded in
//! `schema_migrations` (version, name, checksum).
//!
//! Several processes may migrate at once: each takes
//! `pg_advisory_xact_lock` first, so one applies and the others, once it
//! commits, find every version recorded and do nothing. The transaction is
//! READ COMMITTED on purpose: under REPEATABLE READ the lock statement would
//! fix a snapshot taken before the winner's commit. A released migration
//! never changes: a recorded checksum that differs from the embedded file's
//! is an error, not a silent skip.
//!
//! Why not `refinery`: its async PostgreSQL runner takes no lock of its own
//! (two processes starting together can both apply a migration), and its
//! transaction handling goes through the driver's `Transaction`, whose `Drop`
//! sends a `ROLLBACK`; thirty lines here keep both rules.

use super::error::map_error;
use super::pool::PgConnection;
use crate::hash::{fnv1_64, LockKey};
use crate::store::{StoreError, StoreResult};

/// One migration: append only, never edited once released.
pub(crate) struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    fn checksum(&self) -> i64 {
        fnv1_64(self.sql.as_bytes()) as i64
    }
}

/// Every migration, oldest first.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "initial", sql: include_str!("migrations/0001_initial.sql") },
    Migration {
        version: 2,
        name: "lifecycle_scan_indexes",
        sql: include_str!("migrations/0002_lifecycle_scan_indexes.sql"),
    },
];

fn lock_key() -> LockKey {
    LockKey::named("engine-schema-migrations")
}

/// Applies what the database lacks. The caller ends the transaction on error
/// (by dropping the connection): nothing here is half-applied.
pub(crate) async fn migrate(conn: &mut PgConnection) -> StoreResult<Vec<i32>> {
    let client = &conn.client;
    let db = |e: tokio_postgres::Error| map_error(&e);
    client.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED").await.map_err(db)?;
    client.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key().0]).await.map_err(db)?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                checksum bigint NOT NULL
            )",
        )
        .await
        .map_err(db)?;
    let rows =
        client.query("SELECT version, checksum FROM schema_migrations ORDER BY version", &[]).await.map_err(db)?;
    let mut recorded = Vec::with_capacity(rows.len());
    for row in &rows {
        let version: i32 =
            row.try_get(0).map_err(|e| StoreError::invalid_data("schema_migrations.version", e.to_string()))?;
        let checksum: i64 =
            row.try_get(1).map_err(|e| StoreError::invalid_data("schema_migrations.checksum", e.to_string()))?;
        recorded.push((version, checksum));
    }
    let mut applied = Vec::new();
    for migration in MIGRATIONS {
        match recorded.iter().find(|(version, _)| *version == migration.version) {
            Some((_, checksum)) if *checksum == migration.checksum() => {}
            Some((_, checksum)) => {
                return Err(StoreError::Backend {
                    detail: format!(
                        "migration {} ({}) was applied with checksum {checksum}, the embedded one is {}",
                        migration.version,
                        migration.name,
                        migration.checksum()
                    ),
                });
            }
            None => {
                client.batch_execute(migration.sql).await.map_err(db)?;
                client
                    .execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        &[&migration.version, &migration.name, &migration.checksum()],
                    )
                    .await
                    .map_err(db)?;
                applied.push(migration.version);
            }
        }
    }
    if let Some((unknown, _)) = recorded.iter().find(|(v, _)| !MIGRATIONS.iter().any(|m| m.version == *v)) {
        return Err(StoreError::Backend {
            detail: format!("database has migration {unknown}, which this build does not know (a newer engine?)"),
        });
    }
    client.batch_execute("COMMIT").await.map_err(db)?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_ascend_and_names_are_set() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
        assert!(MIGRATIONS.iter().all(|m| !m.name.is_empty() && !m.sql.trim().is_empty()));
        assert_eq!(MIGRATIONS[0].version, 1);
    }

    #[test]
    fn schema_names_the_constraints_the_sqlite_store_reports() {
        let sql = MIGRATIONS[0].sql;
        for name in [
            "users_pkey",
            "users_name_key",
            "templates_name_key",
            "presets_version_id_name_key",
            "workspaces_owner_id_lower_name_key",
            "workspace_builds_workspace_id_number_key",
            "notifications_kind_dedupe_key_user_id_key",
            "settings_pkey",
        ] {
            assert!(sql.contains(name), "{name}");
        }
        assert!(!sql.contains("now()"), "instants are passed in");
        assert!(!sql.to_lowercase().contains("references"), "no foreign keys, as on SQLite");
    }

    #[test]
    fn later_migrations_only_add_indexes() {
        for migration in &MIGRATIONS[1..] {
            let statements: Vec<&str> = migration
                .sql
                .lines()
                .filter(|line| !line.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
                .map(|head| if head == "CREATE INDEX" { "CREATE INDEX" } else { "other" })
                .collect();
            assert!(statements.iter().all(|s| *s == "CREATE INDEX"), "{}: {statements:?}", migration.name);
            assert!(!migration.sql.contains("now()"), "{}", migration.name);
        }
    }
}
