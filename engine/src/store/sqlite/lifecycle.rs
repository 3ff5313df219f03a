//! The lifecycle scan (semantics/lifecycle.md §3) as one snapshot query:
//! non-deleted workspaces not owned by the prebuilds user, joined to their
//! latest visible build (highest number), its job, owner and template, kept
//! when any arm A–F holds, keyset-paged by (latest build's version, workspace).
//! Every joined table carries the visibility predicate (F1).

use rusqlite::params_from_iter;
use rusqlite::types::Value;
use rusqlite::Connection;

use super::mvcc::{backend, visible_sql, View};
use super::records::{ts_value, uuid_value};
use crate::ids::{VersionId, WorkspaceId, PREBUILDS_USER_ID};
use crate::store::{LifecycleCursor, StoreError, StoreResult};
use crate::time::Timestamp;

fn build_scan_sql() -> String {
    let (w, b, b2, j, u, t) =
        (visible_sql("w"), visible_sql("b"), visible_sql("b2"), visible_sql("j"), visible_sql("u"), visible_sql("t"));
    // ?3 tick_at, ?4 prebuilds user, ?5/?6 cursor (NULL: from the start), ?7 limit,
    // ?8 1 only under the `reminder_no_dedupe` mutation (the marker ignored).
    format!(
        "SELECT b.version_id, w.id
FROM workspaces w
JOIN workspace_builds b ON b.workspace_id = w.id AND {b}
  AND b.number = (SELECT max(b2.number) FROM workspace_builds b2 WHERE b2.workspace_id = w.id AND {b2})
JOIN provisioner_jobs j ON j.id = b.job_id AND {j}
JOIN users u ON u.id = w.owner_id AND {u}
JOIN templates t ON t.id = w.template_id AND {t}
WHERE {w} AND w.deleted = 0 AND w.owner_id <> ?4
  AND (?5 IS NULL OR b.version_id > ?5 OR (b.version_id = ?5 AND w.id > ?6))
  AND (
    -- A: autostop (rule 1)
    (b.transition = 'start' AND j.status <> 'failed' AND w.dormant_at IS NULL
      AND (u.status = 'suspended' OR (b.deadline IS NOT NULL AND b.deadline <= ?3)))
    -- B: autostart (rule 2 without permission and schedule validity)
    OR (b.transition = 'stop' AND j.status <> 'failed' AND w.dormant_at IS NULL AND u.status = 'active'
      AND w.autostart IS NOT NULL AND (w.next_start_at IS NULL OR w.next_start_at <= ?3))
    -- C: dormancy (rule 4)
    OR (w.dormant_at IS NULL AND t.time_til_dormant > 0 AND w.last_used_at + t.time_til_dormant < ?3)
    -- D: auto-delete (rule 5 without the failed-delete delay)
    OR (w.dormant_at IS NOT NULL AND w.deleting_at IS NOT NULL AND t.time_til_dormant_autodelete > 0
      AND w.deleting_at < ?3)
    -- E: failed-build stop (rule 3)
    OR (t.failure_ttl > 0 AND j.status = 'failed' AND b.transition IN ('start', 'stop')
      AND j.completed_at IS NOT NULL AND j.completed_at + t.failure_ttl < ?3)
    -- F: the reminder window
    OR (t.autostop_notify > 0 AND b.transition = 'start' AND j.status = 'succeeded' AND (
      (b.deadline > ?3 AND b.deadline <= ?3 + t.autostop_notify
        AND (?8 = 1 OR b.notified_autostop_deadline IS NULL OR b.notified_autostop_deadline <> b.deadline))
      OR (b.max_deadline > ?3 AND b.max_deadline <= ?3 + t.autostop_notify
        AND (?8 = 1 OR b.notified_autostop_deadline IS NULL OR b.notified_autostop_deadline <> b.max_deadline))))
  )
ORDER BY b.version_id, w.id
LIMIT ?7"
    )
}

/// The scan's SQL, built once (it only depends on constants).
fn scan_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(build_scan_sql)
}

fn id16(bytes: Vec<u8>) -> StoreResult<[u8; 16]> {
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| StoreError::invalid_data("lifecycle scan", format!("id of {} bytes", b.len())))
}

pub(crate) fn candidates(
    conn: &Connection,
    view: View,
    tick_at: Timestamp,
    after: Option<LifecycleCursor>,
    limit: u32,
) -> StoreResult<Vec<LifecycleCursor>> {
    let mut stmt = conn.prepare_cached(scan_sql()).map_err(backend)?;
    let (after_version, after_workspace) = match after {
        Some((version, workspace)) => (uuid_value(&version.0), uuid_value(&workspace.0)),
        None => (Value::Null, Value::Null),
    };
    let params = view.params().into_iter().chain([
        ts_value(tick_at),
        uuid_value(&PREBUILDS_USER_ID.0),
        after_version,
        after_workspace,
        Value::Integer(i64::from(limit)),
        Value::Integer(i64::from(crate::mutations::is_on(crate::mutations::Mutation::ReminderNoDedupe))),
    ]);
    let mut rows = stmt.query(params_from_iter(params)).map_err(backend)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(backend)? {
        let version: Vec<u8> = row.get(0).map_err(|e| StoreError::invalid_data("lifecycle scan", e.to_string()))?;
        let workspace: Vec<u8> = row.get(1).map_err(|e| StoreError::invalid_data("lifecycle scan", e.to_string()))?;
        out.push((VersionId::from_bytes(id16(version)?), WorkspaceId::from_bytes(id16(workspace)?)));
    }
    Ok(out)
}
