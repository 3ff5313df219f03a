-- The lifecycle scan as an index-driven statement (sql.rs, `lifecycle_scan`):
-- one index per arm's selective condition, each partial so that it holds only
-- the rows its arm can want. The scan reads these to find candidates, then
-- looks up each candidate's workspace, latest build, job, owner and template
-- by key. (0001's `workspace_builds_version_id_workspace_id_idx` served the
-- scan's earlier shape; the scan no longer reads it.)
--
-- Costs, on purpose: `last_used_at` (C) and a start build's `deadline` (A, F)
-- are now indexed, so the usage flush and the activity bump are no longer
-- HOT updates (each writes new entries in the table's indexes).

-- A (deadline passed) and F (deadline in the reminder window): start builds by
-- deadline. The included columns let the latest-build check run without the heap.
CREATE INDEX workspace_builds_start_deadline_idx ON workspace_builds (deadline)
    INCLUDE (workspace_id, number) WHERE transition = 'start';
-- F (max deadline in the reminder window).
CREATE INDEX workspace_builds_start_max_deadline_idx ON workspace_builds (max_deadline)
    INCLUDE (workspace_id, number) WHERE transition = 'start' AND max_deadline IS NOT NULL;
-- E: a failed job's build (the build names its job; the job's own build_id is not trusted).
CREATE INDEX workspace_builds_job_id_idx ON workspace_builds (job_id);
-- E: failed jobs by completion.
CREATE INDEX provisioner_jobs_failed_completed_at_idx ON provisioner_jobs (completed_at)
    WHERE status = 'failed';
-- A (owner suspended): the suspended users; their workspaces through
-- workspaces_owner_id_lower_name_key (owner_id first, non-deleted).
CREATE INDEX users_suspended_idx ON users (id) WHERE status = 'suspended';
-- B: workspaces with a schedule, not dormant, by next start (NULL included).
CREATE INDEX workspaces_autostart_next_start_at_idx ON workspaces (next_start_at)
    WHERE autostart IS NOT NULL AND dormant_at IS NULL AND NOT deleted;
-- C: per template, its live workspaces that are not dormant, by last use.
CREATE INDEX workspaces_template_id_last_used_at_idx ON workspaces (template_id, last_used_at)
    WHERE dormant_at IS NULL AND NOT deleted;
-- D: dormant workspaces by deletion time.
CREATE INDEX workspaces_dormant_deleting_at_idx ON workspaces (deleting_at)
    WHERE dormant_at IS NOT NULL AND NOT deleted;
