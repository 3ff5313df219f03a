//! The statements whose plans matter at scale, as the backend issues them:
//! the lifecycle scan, the usage flush, and the activity path's reads and
//! write. Public so the plan tests can `EXPLAIN` exactly this text with the
//! same parameters (see each function for them).

use std::sync::OnceLock;

use super::records::{column_list, PgRecord};
use crate::ids::PREBUILDS_USER_ID;
use crate::model::{Build, Job, Template, Workspace};

/// Microseconds since the Unix epoch of a `timestamptz`, as `numeric`: the
/// scan adds spans (bigint microseconds) to instants in this form, exactly
/// and without overflow for any stored values (as SQLite's integers do, where
/// `timestamptz + interval` would fail on far-out values).
macro_rules! us {
    ($column:literal) => {
        concat!("(extract(epoch FROM ", $column, ") * 1000000)")
    };
}

/// The arms A–F of the lifecycle scan (semantics/lifecycle.md §3), the same
/// predicates as the SQLite scan (`sqlite/lifecycle.rs`) and
/// `rules::eligibility`. `$1` tick (timestamptz), `$2` tick (bigint micros).
const SCAN_ARMS: &str = concat!(
    "(
    -- A: autostop (rule 1)
    (b.transition = 'start' AND j.status <> 'failed' AND w.dormant_at IS NULL
      AND (u.status = 'suspended' OR (b.deadline IS NOT NULL AND b.deadline <= $1)))
    -- B: autostart (rule 2 without permission and schedule validity)
    OR (b.transition = 'stop' AND j.status <> 'failed' AND w.dormant_at IS NULL AND u.status = 'active'
      AND w.autostart IS NOT NULL AND (w.next_start_at IS NULL OR w.next_start_at <= $1))
    -- C: dormancy (rule 4)
    OR (w.dormant_at IS NULL AND t.time_til_dormant > 0
      AND ",
    us!("w.last_used_at"),
    " + t.time_til_dormant < $2::bigint)
    -- D: auto-delete (rule 5 without the failed-delete delay)
    OR (w.dormant_at IS NOT NULL AND w.deleting_at IS NOT NULL AND t.time_til_dormant_autodelete > 0
      AND w.deleting_at < $1)
    -- E: failed-build stop (rule 3)
    OR (t.failure_ttl > 0 AND j.status = 'failed' AND b.transition IN ('start', 'stop')
      AND j.completed_at IS NOT NULL AND ",
    us!("j.completed_at"),
    " + t.failure_ttl < $2::bigint)
    -- F: the reminder window
    OR (t.autostop_notify > 0 AND b.transition = 'start' AND j.status = 'succeeded' AND (
      (b.deadline > $1 AND ",
    us!("b.deadline"),
    " <= $2::bigint::numeric + t.autostop_notify
        AND b.notified_autostop_deadline IS DISTINCT FROM b.deadline)
      OR (b.max_deadline > $1 AND ",
    us!("b.max_deadline"),
    " <= $2::bigint::numeric + t.autostop_notify
        AND b.notified_autostop_deadline IS DISTINCT FROM b.max_deadline)))
  )"
);

fn build_scan(after: bool) -> String {
    let cursor = if after { "\n  AND (b.version_id, w.id) > ($4::uuid, $5::uuid)" } else { "" };
    // One pass over live workspaces (arm A needs every running workspace's
    // latest build: its deadline lives on the build, which no index can find
    // among a workspace's older builds); per workspace, the latest build is
    // one backward step of the (workspace_id, number) index, and the job,
    // owner and template are key lookups. The build history is never scanned.
    format!(
        "SELECT b.version_id, w.id
FROM workspaces w
CROSS JOIN LATERAL (
  SELECT lb.version_id, lb.job_id, lb.transition, lb.deadline, lb.max_deadline, lb.notified_autostop_deadline
  FROM workspace_builds lb
  WHERE lb.workspace_id = w.id
  ORDER BY lb.number DESC
  LIMIT 1
) b
JOIN provisioner_jobs j ON j.id = b.job_id
JOIN users u ON u.id = w.owner_id
JOIN templates t ON t.id = w.template_id
WHERE NOT w.deleted AND w.owner_id <> '{prebuilds}'::uuid{cursor}
  AND {SCAN_ARMS}
ORDER BY b.version_id, w.id
LIMIT $3",
        prebuilds = PREBUILDS_USER_ID.0.hyphenated(),
    )
}

/// The lifecycle scan. Parameters: `$1` tick (timestamptz), `$2` tick
/// (bigint microseconds since the epoch), `$3` limit (bigint); with
/// `after`, `$4`/`$5` the cursor's version and workspace (uuid).
pub fn lifecycle_scan(after: bool) -> &'static str {
    static FIRST: OnceLock<String> = OnceLock::new();
    static AFTER: OnceLock<String> = OnceLock::new();
    if after {
        AFTER.get_or_init(|| build_scan(true))
    } else {
        FIRST.get_or_init(|| build_scan(false))
    }
}

/// The usage flush: `$1` workspace ids (uuid[]), `$2` now (timestamptz).
/// The predicate keeps it monotonic (`last_used_monotonic`).
pub const TOUCH_LAST_USED: &str = "UPDATE workspaces SET last_used_at = $2 WHERE id = ANY($1) AND last_used_at < $2";

/// The flush without its predicate: the `usage_flush_overwrites_newer`
/// mutation (the reference's bug), honoured as the SQLite store does.
pub(crate) const TOUCH_LAST_USED_UNGUARDED: &str =
    "UPDATE workspaces SET last_used_at = $2 WHERE id = ANY($1) AND $2 IS NOT NULL";

/// A workspace by id: `$1` id.
pub fn workspace_by_id() -> &'static str {
    &Workspace::sql().by_id
}

/// A template by id: `$1` id.
pub fn template_by_id() -> &'static str {
    &Template::sql().by_id
}

/// Every column of a build, then every column of its job (`LEFT JOIN`: a
/// build without its job is reported as invalid data, not skipped).
pub(crate) fn build_with_job_select() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "SELECT {}, {} FROM workspace_builds b LEFT JOIN provisioner_jobs j ON j.id = b.job_id",
            column_list(Build::COLUMNS, Some("b")),
            column_list(Job::COLUMNS, Some("j")),
        )
    })
}

/// The latest build of a workspace with its job: `$1` workspace id.
pub fn latest_build() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| format!("{} WHERE b.workspace_id = $1 ORDER BY b.number DESC LIMIT 1", build_with_job_select()))
}

/// Writes every field of a build: `$1`…`$15` its columns in order.
pub fn update_build() -> &'static str {
    &Build::sql().update
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_variants_differ_only_by_the_cursor() {
        let (first, after) = (lifecycle_scan(false), lifecycle_scan(true));
        assert!(!first.contains("$4") && after.contains("($4::uuid, $5::uuid)"));
        assert_eq!(after.replace("\n  AND (b.version_id, w.id) > ($4::uuid, $5::uuid)", ""), first);
        assert!(first.contains("c42fdf75-3097-471c-8c33-fb52454d81c0"), "the prebuilds user is excluded");
        assert!(!first.contains("now()"), "the tick is passed in");
    }
}
