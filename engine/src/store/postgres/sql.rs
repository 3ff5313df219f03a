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

/// A build `b` that is its workspace's latest: no build of the workspace has
/// a higher number (one probe of the `(workspace_id, number)` key). `OFFSET 0`
/// keeps the probe per row: without it a generic plan, which guesses a third
/// of the builds for `deadline <= $1`, turns it into a hash anti-join over
/// every build.
const LATEST_ONLY: &str = "NOT EXISTS (SELECT 1 FROM workspace_builds n \
     WHERE n.workspace_id = b.workspace_id AND n.number > b.number OFFSET 0)";

/// The end of the widest reminder window: `$1` plus the longest
/// `autostop_notify`, plus one second (the float conversion is not exact, and
/// the bound only has to be at or after every arm F instant), `infinity`
/// beyond the last representable instant, NULL when no template notifies.
const REMINDER_WINDOW_END: &str = "(SELECT CASE WHEN m.v >= 9200000000000 THEN 'infinity'::timestamptz \
     ELSE to_timestamp(m.v::float8) END \
     FROM (SELECT ($2::bigint::numeric + max(autostop_notify)) / 1000000 + 1 AS v \
       FROM templates WHERE autostop_notify > 0) m)";

/// Arm C's threshold for template `t` as an instant at or after the exact
/// one (`$2 - time_til_dormant` microseconds): one second later for the float
/// conversion, and never before 4686 BC (the earliest instant is 4714 BC).
const DORMANCY_THRESHOLD: &str =
    "to_timestamp(greatest(($2::bigint::numeric - t.time_til_dormant) / 1000000 + 1, -210000000000)::float8)";

/// The candidate generators: one branch per arm, each driven by an index on
/// the arm's selective condition (migration 0002), each yielding a superset
/// of the workspaces its arm admits; the scan re-checks the exact arms on the
/// joined rows, so a generator only has to miss nothing.
///
/// What a branch reads is the rows in its index range, not only the due ones:
/// B, C and D read workspaces (which leave the range once acted on: started,
/// marked dormant, deleted), F reads builds whose deadline is in the next
/// window. A and E read *history*: every start build whose deadline has
/// passed, every failed job, latest or not (an older build carries nothing
/// that says it was superseded, so no index can leave it out), each dropped
/// by one key probe. Their cost grows with the build history, not the fleet:
/// on 50,000 workspaces, about even with the single pass over live
/// workspaces this replaced at 3.5 superseded start builds with a passed
/// deadline per workspace, three times slower at 7.5 (the plan test prints
/// a smaller case). Bounding it needs a stored "latest" marker that both
/// backends keep.
fn candidates() -> String {
    format!(
        "  -- A (deadline passed): start builds by deadline, latest only
  SELECT b.workspace_id FROM workspace_builds b
  WHERE b.transition = 'start' AND b.deadline <= $1 AND {LATEST_ONLY}
  UNION
  -- A (owner suspended): suspended users, then their workspaces
  SELECT w.id FROM users u
  CROSS JOIN LATERAL (SELECT w.id FROM workspaces w WHERE w.owner_id = u.id AND NOT w.deleted OFFSET 0) w
  WHERE u.status = 'suspended'
  UNION
  -- B: autostart set, not dormant, next start due or unset
  SELECT w.id FROM workspaces w
  WHERE w.autostart IS NOT NULL AND w.dormant_at IS NULL AND NOT w.deleted AND w.next_start_at <= $1
  UNION
  SELECT w.id FROM workspaces w
  WHERE w.autostart IS NOT NULL AND w.dormant_at IS NULL AND NOT w.deleted AND w.next_start_at IS NULL
  UNION
  -- C: per template with dormancy on, its live workspaces unused since the threshold
  SELECT w.id FROM templates t
  CROSS JOIN LATERAL (
    SELECT w.id FROM workspaces w
    WHERE w.template_id = t.id AND w.dormant_at IS NULL AND NOT w.deleted
      AND w.last_used_at < {DORMANCY_THRESHOLD}
    OFFSET 0) w
  WHERE t.time_til_dormant > 0
  UNION
  -- D: dormant workspaces by deletion time
  SELECT w.id FROM workspaces w
  WHERE w.dormant_at IS NOT NULL AND NOT w.deleted AND w.deleting_at < $1
  UNION
  -- E: failed jobs by completion, then their builds, latest only
  SELECT b.workspace_id FROM provisioner_jobs j
  JOIN workspace_builds b ON b.job_id = j.id
  WHERE j.status = 'failed' AND j.completed_at < $1 AND b.transition IN ('start', 'stop') AND {LATEST_ONLY}
  UNION
  -- F: start builds whose deadline or max deadline is in the widest reminder window, latest only
  SELECT b.workspace_id FROM workspace_builds b
  WHERE b.transition = 'start' AND b.deadline > $1 AND b.deadline <= {REMINDER_WINDOW_END} AND {LATEST_ONLY}
  UNION
  SELECT b.workspace_id FROM workspace_builds b
  WHERE b.transition = 'start' AND b.max_deadline > $1 AND b.max_deadline <= {REMINDER_WINDOW_END}
    AND {LATEST_ONLY}"
    )
}

fn build_scan(after: bool) -> String {
    let cursor = if after { "\n  AND (b.version_id, w.id) > ($4::uuid, $5::uuid)" } else { "" };
    // The candidates (a few per due workspace), deduplicated; then per
    // candidate its workspace, latest build (one backward step of the
    // (workspace_id, number) key), job, owner and template by key, and the
    // exact arms. `OFFSET 0` keeps each of those a per-candidate key lookup:
    // a generic plan guesses thousands of candidates and would otherwise
    // hash-join whole tables. Every page re-derives the candidates (the
    // keyset applies after the arms): a page costs the due set, not the fleet.
    format!(
        "WITH candidates (workspace_id) AS (
{candidates}
)
SELECT b.version_id, w.id
FROM candidates c
CROSS JOIN LATERAL (
  SELECT w.id, w.owner_id, w.template_id, w.deleted, w.autostart, w.last_used_at, w.dormant_at, w.deleting_at,
    w.next_start_at
  FROM workspaces w WHERE w.id = c.workspace_id OFFSET 0
) w
CROSS JOIN LATERAL (
  SELECT lb.version_id, lb.job_id, lb.transition, lb.deadline, lb.max_deadline, lb.notified_autostop_deadline
  FROM workspace_builds lb
  WHERE lb.workspace_id = w.id
  ORDER BY lb.number DESC
  LIMIT 1
) b
CROSS JOIN LATERAL (SELECT j.status, j.completed_at FROM provisioner_jobs j WHERE j.id = b.job_id OFFSET 0) j
CROSS JOIN LATERAL (SELECT u.status FROM users u WHERE u.id = w.owner_id OFFSET 0) u
CROSS JOIN LATERAL (
  SELECT t.time_til_dormant, t.time_til_dormant_autodelete, t.failure_ttl, t.autostop_notify
  FROM templates t WHERE t.id = w.template_id OFFSET 0
) t
WHERE NOT w.deleted AND w.owner_id <> '{prebuilds}'::uuid{cursor}
  AND {SCAN_ARMS}
ORDER BY b.version_id, w.id
LIMIT $3",
        candidates = candidates(),
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

/// The definition the scan is tested against, and its earlier shape: the arms
/// over every live workspace in one pass (a sequential scan of `workspaces`,
/// a latest-build probe each), all of them in the scan's order, unpaged.
/// Not used by the store. Parameters: `$1` tick (timestamptz), `$2` tick
/// (bigint microseconds).
pub fn lifecycle_scan_reference() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
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
WHERE NOT w.deleted AND w.owner_id <> '{prebuilds}'::uuid
  AND {SCAN_ARMS}
ORDER BY b.version_id, w.id",
            prebuilds = PREBUILDS_USER_ID.0.hyphenated(),
        )
    })
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

    #[test]
    fn scan_rechecks_the_arms_of_its_reference() {
        let (scan, reference) = (lifecycle_scan(false), lifecycle_scan_reference());
        assert!(scan.contains(SCAN_ARMS) && reference.contains(SCAN_ARMS));
        assert!(scan.starts_with("WITH candidates") && !reference.contains("candidates"));
        assert_eq!(scan.matches("UNION").count(), 8, "nine generators");
    }
}
