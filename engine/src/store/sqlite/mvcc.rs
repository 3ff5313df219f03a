//! Versioned rows: the primitives that make SQLite tables behave like
//! PostgreSQL heaps under REPEATABLE READ.
//!
//! Every table holds versions of logical rows (`id`), each stamped with
//! `_xmin`/`_xmin_seq` (creating transaction and its commit number, NULL while
//! open) and `_xmax`/`_xmax_seq` (replacing transaction, likewise). A snapshot is
//! the commit counter at the transaction's first statement (F1); the predicate of
//! [`visible_sql`] shows a transaction what was committed before it plus its own
//! writes, nothing of open transactions (no dirty reads), nothing committed later
//! (no phantoms). Writes follow first-updater-wins (F3): [`replace_version`]
//! fails with 40001 when the snapshot's version was replaced by a commit after
//! the snapshot. Commit stamps the commit number onto the transaction's versions
//! in one SQLite transaction; abort only forgets the transaction in memory, and
//! [`remove_aborted`] later deletes what it created and clears what it marked.
//! [`vacuum_table`] removes versions no snapshot can see.

use rusqlite::types::{ToSql, ToSqlOutput, Value};
use rusqlite::{params_from_iter, Connection};

use super::records::Record;
use crate::store::{StoreError, StoreResult};

/// An emulated transaction id (also its session id).
pub type TxId = u64;
/// A commit number: the commit counter after that commit.
pub type Seq = u64;

/// Every versioned table, one per record type of the model.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Table {
    Users,
    Templates,
    TemplateVersions,
    Presets,
    Workspaces,
    WorkspaceBuilds,
    ProvisionerJobs,
    ProvisionerDaemons,
    Notifications,
    Chats,
    Settings,
}

impl Table {
    pub const ALL: [Table; 11] = [
        Table::Users,
        Table::Templates,
        Table::TemplateVersions,
        Table::Presets,
        Table::Workspaces,
        Table::WorkspaceBuilds,
        Table::ProvisionerJobs,
        Table::ProvisionerDaemons,
        Table::Notifications,
        Table::Chats,
        Table::Settings,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Table::Users => "users",
            Table::Templates => "templates",
            Table::TemplateVersions => "template_versions",
            Table::Presets => "presets",
            Table::Workspaces => "workspaces",
            Table::WorkspaceBuilds => "workspace_builds",
            Table::ProvisionerJobs => "provisioner_jobs",
            Table::ProvisionerDaemons => "provisioner_daemons",
            Table::Notifications => "notifications",
            Table::Chats => "chats",
            Table::Settings => "settings",
        }
    }
}

/// A logical row's key: a UUID for records, text for settings.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum RowId {
    Uuid([u8; 16]),
    Text(String),
}

impl ToSql for RowId {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            RowId::Uuid(bytes) => ToSqlOutput::from(&bytes[..]),
            RowId::Text(text) => ToSqlOutput::from(text.as_str()),
        })
    }
}

impl RowId {
    pub fn to_value(&self) -> Value {
        match self {
            RowId::Uuid(bytes) => Value::Blob(bytes.to_vec()),
            RowId::Text(text) => Value::Text(text.clone()),
        }
    }
}

/// What a row lock is on: a logical row (PostgreSQL locks tuples; we lock the
/// logical row, which is the same thing once the version chain is followed).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct RowKey {
    pub table: Table,
    pub id: RowId,
}

/// Who is reading: the transaction and its snapshot.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct View {
    pub tx: TxId,
    pub snapshot: Seq,
}

impl View {
    /// The two leading parameters of every visibility-filtered statement.
    pub fn params(&self) -> [Value; 2] {
        [Value::Integer(to_sql_int(self.tx)), Value::Integer(to_sql_int(self.snapshot))]
    }
}

pub fn to_sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The MVCC columns, selected before a record's own columns.
pub const MVCC_COLUMNS: &str = "_vid, _xmin, _xmin_seq, _xmax, _xmax_seq";
pub const MVCC_COLUMN_COUNT: usize = 5;

/// The visibility predicate (§3.3 of the design note) for table alias `alias`
/// (empty for none). Parameter `?1` is the transaction, `?2` its snapshot:
/// created by itself or committed at or before the snapshot, and not replaced by
/// itself nor by a transaction committed at or before the snapshot.
pub fn visible_sql(alias: &str) -> String {
    let a = if alias.is_empty() { String::new() } else { format!("{alias}.") };
    format!(
        "(({a}_xmin = ?1 OR {a}_xmin_seq <= ?2) AND ({a}_xmax IS NULL OR ({a}_xmax <> ?1 AND ({a}_xmax_seq IS NULL OR {a}_xmax_seq > ?2))))"
    )
}

/// One physical version of a record.
#[derive(Clone, Debug)]
pub struct Version<R> {
    pub vid: i64,
    pub xmin: TxId,
    pub xmin_seq: Option<Seq>,
    pub xmax: Option<TxId>,
    pub xmax_seq: Option<Seq>,
    pub record: R,
}

fn int_to_u64(value: i64, what: &str) -> StoreResult<u64> {
    u64::try_from(value).map_err(|_| StoreError::invalid_data(what, format!("negative {value}")))
}

/// Decodes a row selected as `MVCC_COLUMNS, <record columns>`.
pub fn decode_version<R: Record>(row: &rusqlite::Row<'_>) -> StoreResult<Version<R>> {
    let what = R::TABLE.name();
    let get = |idx: usize| -> StoreResult<Option<i64>> {
        row.get::<_, Option<i64>>(idx).map_err(|e| StoreError::invalid_data(what, format!("mvcc column {idx}: {e}")))
    };
    let unsigned = |idx: usize| -> StoreResult<Option<u64>> { get(idx)?.map(|v| int_to_u64(v, what)).transpose() };
    Ok(Version {
        vid: get(0)?.ok_or_else(|| StoreError::invalid_data(what, "null _vid"))?,
        xmin: unsigned(1)?.ok_or_else(|| StoreError::invalid_data(what, "null _xmin"))?,
        xmin_seq: unsigned(2)?,
        xmax: unsigned(3)?,
        xmax_seq: unsigned(4)?,
        record: R::decode(row, MVCC_COLUMN_COUNT)?,
    })
}

pub fn backend(error: rusqlite::Error) -> StoreError {
    match error.sqlite_error_code() {
        // Never expected with one connection and nothing awaited inside a SQLite
        // transaction; if it happens it is contention, which is worth a retry.
        Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::serialization(format!("sqlite busy: {error}"))
        }
        _ => StoreError::Backend { detail: error.to_string() },
    }
}

/// Versions of `R` visible to `view` that satisfy `filter` (SQL over the
/// record's columns, parameters from `?3` on), then `tail` (`ORDER BY … LIMIT …`).
pub fn select_visible<R: Record>(
    conn: &Connection,
    view: View,
    filter: &str,
    params: &[Value],
    tail: &str,
) -> StoreResult<Vec<Version<R>>> {
    let sql = format!(
        "SELECT {MVCC_COLUMNS}, {} FROM {} WHERE {} AND ({filter}) {tail}",
        R::COLUMNS.join(", "),
        R::TABLE.name(),
        visible_sql("")
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
    let all = view.params().into_iter().chain(params.iter().cloned());
    let mut rows = stmt.query(params_from_iter(all)).map_err(backend)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(backend)? {
        out.push(decode_version::<R>(row)?);
    }
    Ok(out)
}

/// The version of logical row `id` visible to `view`, if any.
pub fn visible_by_id<R: Record>(conn: &Connection, view: View, id: &RowId) -> StoreResult<Option<Version<R>>> {
    let mut rows = select_visible::<R>(conn, view, "id = ?3", &[id.to_value()], "ORDER BY _vid LIMIT 2")?;
    if rows.len() > 1 {
        return Err(StoreError::invalid_data(R::TABLE.name(), "two visible versions of one row"));
    }
    Ok(rows.pop())
}

/// Inserts `record` as a new version created by `tx`.
pub fn insert_version<R: Record>(conn: &Connection, tx: TxId, record: &R) -> StoreResult<()> {
    let columns = R::COLUMNS;
    let placeholders: Vec<String> = (0..columns.len()).map(|i| format!("?{}", i + 2)).collect();
    let sql = format!(
        "INSERT INTO {} (_xmin, {}) VALUES (?1, {})",
        R::TABLE.name(),
        columns.join(", "),
        placeholders.join(", ")
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
    let values = record.values();
    debug_assert_eq!(values.len(), columns.len());
    let all = std::iter::once(Value::Integer(to_sql_int(tx))).chain(values);
    stmt.execute(params_from_iter(all)).map_err(backend)?;
    Ok(())
}

/// Writes `record` as the successor of `old` (the version `tx`'s snapshot sees),
/// first updater wins (§3.4, F3): the caller holds the row lock; if a
/// transaction committed a replacement of `old` after the snapshot, 40001. A
/// version `tx` created itself is rewritten in place.
pub fn replace_version<R: Record>(conn: &Connection, tx: TxId, old: &Version<R>, record: &R) -> StoreResult<()> {
    check_not_replaced(old)?;
    if old.xmax.is_some_and(|xmax| xmax != tx) {
        // An open transaction replacing it would hold a conflicting row lock, and
        // aborted marks are cleared before any write: the layer has a bug.
        return Err(StoreError::Backend {
            detail: format!("{} version {} is marked by another open transaction", R::TABLE.name(), old.vid),
        });
    }
    let columns = R::COLUMNS;
    if old.xmin == tx && old.xmin_seq.is_none() {
        let sets: Vec<String> = columns.iter().enumerate().map(|(i, c)| format!("{c} = ?{}", i + 2)).collect();
        let sql = format!("UPDATE {} SET {} WHERE _vid = ?1", R::TABLE.name(), sets.join(", "));
        let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
        let all = std::iter::once(Value::Integer(old.vid)).chain(record.values());
        stmt.execute(params_from_iter(all)).map_err(backend)?;
        return Ok(());
    }
    // Mark the old version first, so the unique backstop never sees two live ones.
    let sql = format!("UPDATE {} SET _xmax = ?1 WHERE _vid = ?2 AND _xmax_seq IS NULL", R::TABLE.name());
    let changed = conn
        .prepare_cached(&sql)
        .map_err(backend)?
        .execute([Value::Integer(to_sql_int(tx)), Value::Integer(old.vid)])
        .map_err(backend)?;
    if changed != 1 {
        return Err(StoreError::serialization(format!(
            "could not serialize access due to concurrent update of {}",
            R::TABLE.name()
        )));
    }
    insert_version(conn, tx, record)
}

/// F3/F4/F6: a version the snapshot sees but a later commit replaced.
pub fn check_not_replaced<R: Record>(version: &Version<R>) -> StoreResult<()> {
    if version.xmax_seq.is_some() {
        return Err(StoreError::serialization(format!(
            "could not serialize access due to concurrent update of {}",
            R::TABLE.name()
        )));
    }
    Ok(())
}

/// Commit: stamps commit number `seq` onto what `tx` created and replaced in `table`.
pub fn stamp_commit(conn: &Connection, table: Table, tx: TxId, seq: Seq) -> StoreResult<()> {
    let name = table.name();
    let params = [Value::Integer(to_sql_int(seq)), Value::Integer(to_sql_int(tx))];
    conn.prepare_cached(&format!("UPDATE {name} SET _xmin_seq = ?1 WHERE _xmin = ?2 AND _xmin_seq IS NULL"))
        .map_err(backend)?
        .execute(params_from_iter(params.iter()))
        .map_err(backend)?;
    conn.prepare_cached(&format!("UPDATE {name} SET _xmax_seq = ?1 WHERE _xmax = ?2 AND _xmax_seq IS NULL"))
        .map_err(backend)?
        .execute(params_from_iter(params.iter()))
        .map_err(backend)?;
    Ok(())
}

/// Rollback, done late: deletes the versions aborted transactions created, then
/// clears their marks on the versions they replaced (this order keeps the
/// unique backstop quiet).
pub fn remove_aborted(conn: &Connection, txs: &[TxId]) -> StoreResult<()> {
    if txs.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = txs.iter().map(|tx| to_sql_int(*tx).to_string()).collect();
    let list = list.join(", ");
    for table in Table::ALL {
        let name = table.name();
        conn.execute(&format!("DELETE FROM {name} WHERE _xmin_seq IS NULL AND _xmin IN ({list})"), [])
            .map_err(backend)?;
        conn.execute(
            &format!(
                "UPDATE {name} SET _xmax = NULL WHERE _xmax IS NOT NULL AND _xmax_seq IS NULL AND _xmax IN ({list})"
            ),
            [],
        )
        .map_err(backend)?;
    }
    Ok(())
}

/// Reopening a file: every transaction of the previous process is gone, so
/// every unstamped version is an uncommitted write.
pub fn remove_unstamped(conn: &Connection) -> StoreResult<()> {
    for table in Table::ALL {
        let name = table.name();
        conn.execute(&format!("DELETE FROM {name} WHERE _xmin_seq IS NULL"), []).map_err(backend)?;
        conn.execute(&format!("UPDATE {name} SET _xmax = NULL WHERE _xmax IS NOT NULL AND _xmax_seq IS NULL"), [])
            .map_err(backend)?;
    }
    Ok(())
}

/// Deletes at most `batch` versions of `table` replaced at or before `horizon`
/// (no snapshot at or after the horizon can see them). Returns how many.
pub fn vacuum_table(conn: &Connection, table: Table, horizon: Seq, batch: u32) -> StoreResult<usize> {
    let name = table.name();
    conn.prepare_cached(&format!(
        "DELETE FROM {name} WHERE _vid IN (SELECT _vid FROM {name} WHERE _xmax_seq IS NOT NULL AND _xmax_seq <= ?1 ORDER BY _xmax_seq, _vid LIMIT ?2)"
    ))
    .map_err(backend)?
    .execute([Value::Integer(to_sql_int(horizon)), Value::Integer(i64::from(batch))])
    .map_err(backend)
}

/// The largest transaction id any version names (new ids start above it).
pub fn max_tx_id(conn: &Connection) -> StoreResult<TxId> {
    let mut max = 0u64;
    for table in Table::ALL {
        let name = table.name();
        let value: Option<i64> = conn
            .query_row(&format!("SELECT max(coalesce(max(_xmin), 0), coalesce(max(_xmax), 0)) FROM {name}"), [], |r| {
                r.get(0)
            })
            .map_err(backend)?;
        max = max.max(value.unwrap_or(0).max(0) as u64);
    }
    Ok(max)
}

/// Physical versions in all tables (for tests and diagnostics).
pub fn count_versions(conn: &Connection) -> StoreResult<u64> {
    let mut total = 0u64;
    for table in Table::ALL {
        let count: i64 =
            conn.query_row(&format!("SELECT count(*) FROM {}", table.name()), [], |r| r.get(0)).map_err(backend)?;
        total += count.max(0) as u64;
    }
    Ok(total)
}
