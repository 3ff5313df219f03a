//! Unique keys checked against the present, not the snapshot (F9, F10).
//!
//! A probe looks at every version holding a key that no commit has replaced
//! (`_xmax_seq IS NULL`): live versions and versions being replaced by open
//! transactions. An open creator or replacer other than ourselves means wait
//! for it and probe again (PostgreSQL waits on the conflicting xid); our own
//! live version is a conflict at once; a committed live one is 23505 for a
//! plain insert, and for `ON CONFLICT` the caller decides by its visibility
//! (invisible to the snapshot: 40001, F10).

use rusqlite::params_from_iter;
use rusqlite::types::Value;

use super::mvcc::{backend, RowId, Table, TxId};
use super::records::{pkey_constraint, Record};
use super::server::ApplyCtx;
use crate::store::{StoreError, StoreResult};

/// What holds a key in the present state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    Nothing,
    /// This transaction's own live version.
    Own {
        id: RowId,
    },
    /// A committed live version; `visible` to this transaction's snapshot or not.
    Committed {
        id: RowId,
        visible: bool,
    },
    /// An open transaction created or is replacing a version with the key.
    WaitFor(TxId),
}

fn read_id(value: rusqlite::types::ValueRef<'_>, table: Table) -> StoreResult<RowId> {
    match value {
        rusqlite::types::ValueRef::Blob(bytes) => bytes
            .try_into()
            .map(RowId::Uuid)
            .map_err(|_| StoreError::invalid_data(table.name(), format!("id of {} bytes", bytes.len()))),
        rusqlite::types::ValueRef::Text(bytes) => Ok(RowId::Text(String::from_utf8_lossy(bytes).into_owned())),
        _ => Err(StoreError::invalid_data(table.name(), "id is neither blob nor text")),
    }
}

/// Who holds the key `matches` (SQL with `values` as `?1…`) in `table`,
/// ignoring versions of logical row `exclude` (the row being updated).
pub fn probe(
    cx: &ApplyCtx<'_>,
    table: Table,
    matches: &str,
    values: Vec<Value>,
    exclude: Option<&RowId>,
) -> StoreResult<Found> {
    let sql = format!(
        "SELECT id, _xmin, _xmin_seq, _xmax FROM {} WHERE _xmax_seq IS NULL AND ({matches}) ORDER BY _vid",
        table.name()
    );
    let mut stmt = cx.conn.prepare_cached(&sql).map_err(backend)?;
    let mut rows = stmt.query(params_from_iter(values)).map_err(backend)?;
    let me = cx.view.tx;
    while let Some(row) = rows.next().map_err(backend)? {
        let id = read_id(row.get_ref(0).map_err(backend)?, table)?;
        if exclude == Some(&id) {
            continue;
        }
        let xmin = row.get::<_, i64>(1).map_err(backend)? as TxId;
        let xmin_seq: Option<i64> = row.get(2).map_err(backend)?;
        let xmax = row.get::<_, Option<i64>>(3).map_err(backend)?.map(|x| x as TxId);
        // The creator first: an open insert of the key means wait (F9).
        let creator_open = xmin_seq.is_none() && xmin != me;
        if creator_open {
            if cx.reg.is_active(xmin) {
                return Ok(Found::WaitFor(xmin));
            }
            continue; // aborted leftover, about to be removed: no conflict
        }
        match xmax {
            Some(x) if x == me => continue, // we replaced it: our successor speaks for it
            Some(x) if cx.reg.is_active(x) => return Ok(Found::WaitFor(x)),
            _ => {}
        }
        return Ok(match xmin_seq {
            None => Found::Own { id },
            Some(seq) => Found::Committed { id, visible: seq as u64 <= cx.view.snapshot },
        });
    }
    Ok(Found::Nothing)
}

/// The primary key of `record` in the present state.
pub fn probe_pkey<R: Record>(cx: &ApplyCtx<'_>, record: &R) -> StoreResult<Found> {
    probe(cx, R::TABLE, "id = ?1", vec![record.row_id().to_value()], None)
}

/// Plain `INSERT`: every unique key of `record` (primary key first) must be
/// free. `Ok(Some(tx))`: wait for `tx`, then check again; a taken key: 23505.
pub fn check_insert<R: Record>(cx: &ApplyCtx<'_>, record: &R) -> StoreResult<Option<TxId>> {
    match probe_pkey(cx, record)? {
        Found::Nothing => {}
        Found::WaitFor(tx) => return Ok(Some(tx)),
        Found::Own { .. } | Found::Committed { .. } => {
            return Err(StoreError::UniqueViolation { constraint: pkey_constraint(R::TABLE).to_owned() })
        }
    }
    check_secondary(cx, record, None)
}

/// Keys other than the primary key, for an insert (`exclude` = None) or for
/// the new version of row `exclude` (an `UPDATE` that may change a key).
pub fn check_secondary<R: Record>(cx: &ApplyCtx<'_>, record: &R, exclude: Option<&RowId>) -> StoreResult<Option<TxId>> {
    for key in R::UNIQUE {
        let Some(values) = (key.values)(record) else { continue };
        match probe(cx, R::TABLE, key.matches, values, exclude)? {
            Found::Nothing => {}
            Found::WaitFor(tx) => return Ok(Some(tx)),
            Found::Own { .. } | Found::Committed { .. } => {
                return Err(StoreError::UniqueViolation { constraint: key.constraint.to_owned() })
            }
        }
    }
    Ok(None)
}
