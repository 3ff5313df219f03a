//! Statement bodies: the lock phase and apply phase of each kind of statement
//! the `Tx` methods are made of.
//!
//! - snapshot reads ([`get`], [`list`]): visible versions only (F1);
//! - `UPDATE` ([`modify`]): targets picked from the snapshot, `FOR NO KEY
//!   UPDATE` row lock (maybe waiting), then first-updater-wins (F3) and the
//!   new version's unique keys against the present (F9);
//! - `SELECT … FOR UPDATE` ([`lock_for_update`]): the lock, then the same
//!   changed-since-snapshot check (F4), no version written;
//! - `INSERT` ([`insert`]): unique keys against the present (F9);
//! - `INSERT … ON CONFLICT DO UPDATE` ([`upsert`]): F10's rules, the existing
//!   row locked and checked as an `UPDATE`;
//! - `FOR UPDATE SKIP LOCKED LIMIT n` ([`claim`]): try-locks in scan order,
//!   skipping rows open transactions lock, 40001 on a row a later commit
//!   changed (F5, F6).

use rusqlite::types::Value;
use rusqlite::Connection;

use super::locks::LockMode;
use super::mvcc::{self, RowId, RowKey, TxId, Version, View};
use super::records::Record;
use super::server::{ApplyCtx, SqliteServer, Step};
use super::unique::{self, Found};
use super::ClientId;
use crate::model::Notification;
use crate::store::{StoreError, StoreResult};

/// Candidates read per page by a `SKIP LOCKED` scan.
const CLAIM_PAGE_ROWS: i64 = 64;

/// The statement being run: which transaction, through which server.
pub(crate) struct Stmt<'a> {
    pub server: &'a SqliteServer,
    pub client: ClientId,
    pub tx: TxId,
}

impl Stmt<'_> {
    pub fn read<T>(&self, f: impl FnOnce(&Connection, View) -> StoreResult<T>) -> StoreResult<T> {
        self.server.read(self.client, self.tx, f)
    }

    pub async fn run<T: Send>(
        &self,
        f: impl FnMut(&mut ApplyCtx<'_>) -> StoreResult<Step<T>> + Send,
    ) -> StoreResult<T> {
        self.server.run(self.client, self.tx, f).await
    }

    pub async fn lock(&self, key: &RowKey, mode: LockMode) -> StoreResult<()> {
        self.server.lock_row(self.client, self.tx, key, mode).await
    }
}

pub(crate) fn key_of<R: Record>(id: RowId) -> RowKey {
    RowKey { table: R::TABLE, id }
}

pub(crate) fn limit_value(limit: u32) -> Value {
    Value::Integer(i64::from(limit))
}

fn concurrent_update<R: Record>() -> StoreError {
    StoreError::serialization(format!("could not serialize access due to concurrent update of {}", R::TABLE.name()))
}

// ---- reads -------------------------------------------------------------------------

/// The visible version of row `id`.
pub(crate) fn get<R: Record>(s: &Stmt<'_>, id: &RowId) -> StoreResult<Option<R>> {
    s.read(|conn, view| Ok(mvcc::visible_by_id::<R>(conn, view, id)?.map(|v| v.record)))
}

/// Visible rows matching `filter` (parameters from `?3`), then `tail`.
pub(crate) fn list<R: Record>(s: &Stmt<'_>, filter: &str, params: &[Value], tail: &str) -> StoreResult<Vec<R>> {
    s.read(|conn, view| {
        Ok(mvcc::select_visible::<R>(conn, view, filter, params, tail)?.into_iter().map(|v| v.record).collect())
    })
}

// ---- writes ------------------------------------------------------------------------

/// Apply step of a plain `INSERT` of `record`.
pub(crate) fn insert_step<R: Record>(cx: &mut ApplyCtx<'_>, record: &R) -> StoreResult<Option<TxId>> {
    if let Some(holder) = unique::check_insert(cx, record)? {
        return Ok(Some(holder));
    }
    mvcc::insert_version(cx.conn, cx.view.tx, record)?;
    cx.wrote(R::TABLE);
    Ok(None)
}

/// `INSERT`: waits for open holders of its keys; 23505 on a taken key.
pub(crate) async fn insert<R: Record + Sync>(s: &Stmt<'_>, record: &R) -> StoreResult<()> {
    s.run(|cx| Ok(insert_step(cx, record)?.map_or(Step::Done(()), Step::WaitTx))).await
}

/// `UPDATE … WHERE id = ?` writing `change(old)`: `NotFound` when the snapshot
/// has no such row; 40001 when a commit after the snapshot changed it (F3).
pub(crate) async fn modify<R: Record>(
    s: &Stmt<'_>,
    id: RowId,
    what: &str,
    mut change: impl FnMut(&R) -> R + Send,
) -> StoreResult<R> {
    let exists = s.read(|conn, view| Ok(mvcc::visible_by_id::<R>(conn, view, &id)?.is_some()))?;
    if !exists {
        return Err(StoreError::not_found(what));
    }
    s.lock(&key_of::<R>(id.clone()), LockMode::NoKeyUpdate).await?;
    s.run(|cx| {
        let Some(old) = mvcc::visible_by_id::<R>(cx.conn, cx.view, &id)? else {
            return Err(StoreError::not_found(what));
        };
        mvcc::check_not_replaced(&old)?;
        let new = change(&old.record);
        if let Some(holder) = unique::check_secondary(cx, &new, Some(&id))? {
            return Ok(Step::WaitTx(holder));
        }
        mvcc::replace_version(cx.conn, cx.view.tx, &old, &new)?;
        cx.wrote(R::TABLE);
        Ok(Step::Done(new))
    })
    .await
}

/// `UPDATE` of many rows picked by the snapshot (`filter`, parameters from
/// `?3`), locked in id order, each changed by `change`. No `WHERE` re-check
/// after a wait (REPEATABLE READ): a row changed meanwhile is 40001 (F3).
pub(crate) async fn modify_many<R: Record>(
    s: &Stmt<'_>,
    filter: &str,
    params: &[Value],
    mut change: impl FnMut(&R) -> R + Send,
) -> StoreResult<u64> {
    let targets: Vec<RowId> = s.read(|conn, view| {
        Ok(mvcc::select_visible::<R>(conn, view, filter, params, "ORDER BY id")?
            .into_iter()
            .map(|v| v.record.row_id())
            .collect())
    })?;
    if targets.is_empty() {
        return Ok(0);
    }
    for id in &targets {
        s.lock(&key_of::<R>(id.clone()), LockMode::NoKeyUpdate).await?;
    }
    s.run(|cx| {
        let mut changed = 0u64;
        for id in &targets {
            let Some(old) = mvcc::visible_by_id::<R>(cx.conn, cx.view, id)? else { continue };
            mvcc::check_not_replaced(&old)?;
            let new = change(&old.record);
            if let Some(holder) = unique::check_secondary(cx, &new, Some(id))? {
                return Ok(Step::WaitTx(holder));
            }
            mvcc::replace_version(cx.conn, cx.view.tx, &old, &new)?;
            changed += 1;
        }
        cx.wrote(R::TABLE);
        Ok(Step::Done(changed))
    })
    .await
}

/// `SELECT … FOR UPDATE` of one row: the lock (maybe waiting), then 40001 if
/// a commit after the snapshot changed the row (F4; a lock alone does not count).
pub(crate) async fn lock_for_update<R: Record>(s: &Stmt<'_>, id: RowId) -> StoreResult<Option<R>> {
    if get::<R>(s, &id)?.is_none() {
        return Ok(None);
    }
    s.lock(&key_of::<R>(id.clone()), LockMode::Update).await?;
    s.read(|conn, view| {
        let version = mvcc::visible_by_id::<R>(conn, view, &id)?
            .ok_or_else(|| StoreError::Backend { detail: "locked row vanished from the snapshot".into() })?;
        mvcc::check_not_replaced(&version)?;
        Ok(Some(version.record))
    })
}

/// `INSERT … ON CONFLICT (id) DO UPDATE SET … = merge(old, new)` under
/// REPEATABLE READ (F10): an open holder of the key: wait, retry; a committed
/// row the snapshot cannot see: 40001; a visible one: `FOR NO KEY UPDATE`
/// lock, then updated as by `UPDATE` (40001 if changed since the snapshot).
pub(crate) async fn upsert<R: Record + Sync>(
    s: &Stmt<'_>,
    record: &R,
    merge: impl Fn(&R, &R) -> R + Send + Sync,
) -> StoreResult<()> {
    let id = record.row_id();
    let key = key_of::<R>(id.clone());
    s.run(|cx| match unique::probe_pkey(cx, record)? {
        Found::Nothing => Ok(insert_step(cx, record)?.map_or(Step::Done(()), Step::WaitTx)),
        Found::WaitFor(holder) => Ok(Step::WaitTx(holder)),
        Found::Committed { visible: false, .. } => Err(concurrent_update::<R>()),
        found @ (Found::Own { .. } | Found::Committed { visible: true, .. }) => {
            let own_insert = matches!(found, Found::Own { .. });
            if !own_insert && !cx.reg.holds_row(cx.view.tx, &key, LockMode::NoKeyUpdate) {
                return Ok(Step::Lock(key.clone(), LockMode::NoKeyUpdate));
            }
            let old = mvcc::visible_by_id::<R>(cx.conn, cx.view, &id)?
                .ok_or_else(|| StoreError::Backend { detail: "conflicting row not visible".into() })?;
            mvcc::check_not_replaced(&old)?;
            let new = merge(&old.record, record);
            if let Some(holder) = unique::check_secondary(cx, &new, Some(&id))? {
                return Ok(Step::WaitTx(holder));
            }
            mvcc::replace_version(cx.conn, cx.view.tx, &old, &new)?;
            cx.wrote(R::TABLE);
            Ok(Step::Done(()))
        }
    })
    .await
}

/// Apply step of `SELECT … ORDER BY order FOR UPDATE SKIP LOCKED LIMIT limit`
/// over visible rows matching `filter` (parameters from `?3`): rows an open
/// transaction locks are skipped without waiting (F5); a row a transaction
/// committed a change to after the snapshot is 40001 (F6). Rows stay locked.
pub(crate) fn claim<R: Record>(
    cx: &mut ApplyCtx<'_>,
    filter: &str,
    params: &[Value],
    order: &str,
    limit: u32,
) -> StoreResult<Vec<Version<R>>> {
    let mut claimed = Vec::new();
    if limit == 0 {
        return Ok(claimed);
    }
    let first = params.len() + 3;
    let tail = format!("ORDER BY {order} LIMIT ?{first} OFFSET ?{}", first + 1);
    let mut offset = 0i64;
    loop {
        let mut page_params = params.to_vec();
        page_params.push(Value::Integer(CLAIM_PAGE_ROWS));
        page_params.push(Value::Integer(offset));
        let page = mvcc::select_visible::<R>(cx.conn, cx.view, filter, &page_params, &tail)?;
        let page_len = page.len();
        for version in page {
            let key = key_of::<R>(version.record.row_id());
            if !cx.reg.try_lock_row(cx.view.tx, &key, LockMode::Update) {
                continue;
            }
            mvcc::check_not_replaced(&version)?;
            claimed.push(version);
            if claimed.len() >= limit as usize {
                return Ok(claimed);
            }
        }
        if (page_len as i64) < CLAIM_PAGE_ROWS {
            return Ok(claimed);
        }
        offset += CLAIM_PAGE_ROWS;
    }
}

/// `id IN (…)` over a JSON array of hex ids, bound as one parameter.
pub(crate) fn ids_json(ids: &[[u8; 16]]) -> Value {
    let hex: Vec<String> = ids.iter().map(|id| id.iter().map(|b| format!("{b:02x}")).collect()).collect();
    Value::Text(serde_json::Value::from(hex).to_string())
}

/// Apply step of `INSERT … ON CONFLICT (kind, dedupe_key, user_id) DO NOTHING`
/// under REPEATABLE READ (F10): an open inserter of the key: wait, retry; our
/// own row or a committed one the snapshot sees: nothing written (false); a
/// committed one it cannot see: 40001. Other keys (the id) are plain 23505s.
pub(crate) fn enqueue_step(cx: &mut ApplyCtx<'_>, record: &Notification) -> StoreResult<Step<bool>> {
    let Some(key) = Notification::UNIQUE.first() else {
        return Err(StoreError::Backend { detail: "notifications have no dedupe key".into() });
    };
    let values = (key.values)(record).unwrap_or_default();
    match unique::probe(cx, Notification::TABLE, key.matches, values, None)? {
        Found::WaitFor(holder) => Ok(Step::WaitTx(holder)),
        Found::Own { .. } | Found::Committed { visible: true, .. } => Ok(Step::Done(false)),
        Found::Committed { visible: false, .. } => Err(concurrent_update::<Notification>()),
        Found::Nothing => Ok(insert_step(cx, record)?.map_or(Step::Done(true), Step::WaitTx)),
    }
}
