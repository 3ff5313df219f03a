-- The engine's tables, as the SQLite store has them (engine/src/store/sqlite/
-- schema.rs): the same columns, the same unique keys under the same names (the
-- names `StoreError::UniqueViolation` reports), plus an index for every lookup.
-- Ids are uuid, instants timestamptz, spans bigint microseconds, enums text
-- with CHECK constraints, maps, specs and payloads jsonb. No foreign keys: the
-- SQLite store cannot check them (its rows are versioned), and a behaviour one
-- backend has and the other lacks is a bug in one of them.

CREATE TABLE users (
    id uuid NOT NULL,
    name text NOT NULL,
    status text NOT NULL,
    roles smallint NOT NULL,
    quiet_hours text NOT NULL,
    created_at timestamptz NOT NULL,
    CONSTRAINT users_pkey PRIMARY KEY (id),
    CONSTRAINT users_name_key UNIQUE (name),
    CONSTRAINT users_status_check CHECK (status IN ('active', 'suspended', 'dormant')),
    CONSTRAINT users_roles_check CHECK (roles BETWEEN 0 AND 3)
);

CREATE TABLE templates (
    id uuid NOT NULL,
    name text NOT NULL,
    active_version_id uuid NOT NULL,
    default_ttl bigint NOT NULL,
    activity_bump bigint NOT NULL,
    autostop_notify bigint NOT NULL,
    failure_ttl bigint NOT NULL,
    time_til_dormant bigint NOT NULL,
    time_til_dormant_autodelete bigint NOT NULL,
    allow_user_autostart boolean NOT NULL,
    allow_user_autostop boolean NOT NULL,
    autostart_days smallint NOT NULL,
    autostop_requirement_days smallint NOT NULL,
    autostop_requirement_weeks smallint NOT NULL,
    require_active_version boolean NOT NULL,
    deprecated boolean NOT NULL,
    deleted boolean NOT NULL,
    created_at timestamptz NOT NULL,
    CONSTRAINT templates_pkey PRIMARY KEY (id),
    CONSTRAINT templates_autostart_days_check CHECK (autostart_days BETWEEN 0 AND 127),
    CONSTRAINT templates_autostop_requirement_days_check CHECK (autostop_requirement_days BETWEEN 0 AND 127),
    CONSTRAINT templates_autostop_requirement_weeks_check CHECK (autostop_requirement_weeks BETWEEN 0 AND 255)
);
-- Names are unique among non-deleted templates.
CREATE UNIQUE INDEX templates_name_key ON templates (name) WHERE NOT deleted;

CREATE TABLE template_versions (
    id uuid NOT NULL,
    template_id uuid NOT NULL,
    name text NOT NULL,
    parameters jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    CONSTRAINT template_versions_pkey PRIMARY KEY (id)
);
CREATE INDEX template_versions_template_id_idx ON template_versions (template_id, created_at, id);

CREATE TABLE presets (
    id uuid NOT NULL,
    version_id uuid NOT NULL,
    name text NOT NULL,
    parameters jsonb NOT NULL,
    instances bigint,
    expiration_ttl bigint NOT NULL,
    schedules jsonb,
    last_invalidated_at timestamptz,
    status text NOT NULL,
    CONSTRAINT presets_pkey PRIMARY KEY (id),
    CONSTRAINT presets_version_id_name_key UNIQUE (version_id, name),
    CONSTRAINT presets_instances_check CHECK (instances BETWEEN 0 AND 4294967295),
    CONSTRAINT presets_status_check CHECK (status IN ('healthy', 'hard_limited', 'validation_failed'))
);

CREATE TABLE workspaces (
    id uuid NOT NULL,
    owner_id uuid NOT NULL,
    template_id uuid NOT NULL,
    name text NOT NULL,
    ttl bigint,
    autostart text,
    automatic_updates text NOT NULL,
    last_used_at timestamptz NOT NULL,
    dormant_at timestamptz,
    deleting_at timestamptz,
    next_start_at timestamptz,
    deleted boolean NOT NULL,
    created_at timestamptz NOT NULL,
    CONSTRAINT workspaces_pkey PRIMARY KEY (id),
    CONSTRAINT workspaces_automatic_updates_check CHECK (automatic_updates IN ('never', 'always'))
);
-- Names are unique per owner, case-insensitively, among non-deleted workspaces.
CREATE UNIQUE INDEX workspaces_owner_id_lower_name_key ON workspaces (owner_id, lower(name)) WHERE NOT deleted;
CREATE INDEX workspaces_lower_name_idx ON workspaces (lower(name)) WHERE NOT deleted;
CREATE INDEX workspaces_template_id_idx ON workspaces (template_id, id) WHERE NOT deleted;

CREATE TABLE workspace_builds (
    id uuid NOT NULL,
    workspace_id uuid NOT NULL,
    number integer NOT NULL,
    transition text NOT NULL,
    reason text NOT NULL,
    initiator_id uuid NOT NULL,
    version_id uuid NOT NULL,
    job_id uuid NOT NULL,
    preset_id uuid,
    parameters jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    deadline timestamptz,
    max_deadline timestamptz,
    notified_autostop_deadline timestamptz,
    agent_ready_at timestamptz,
    CONSTRAINT workspace_builds_pkey PRIMARY KEY (id),
    -- Also the latest-build lookup: (workspace_id, number DESC).
    CONSTRAINT workspace_builds_workspace_id_number_key UNIQUE (workspace_id, number),
    CONSTRAINT workspace_builds_transition_check CHECK (transition IN ('start', 'stop', 'delete')),
    CONSTRAINT workspace_builds_reason_check CHECK (reason IN (
        'initiator', 'autostart', 'autostop', 'failedstop', 'dormancy', 'autodelete', 'prebuild', 'claim'))
);
-- The lifecycle scan walks builds in its keyset order (version, workspace).
CREATE INDEX workspace_builds_version_id_workspace_id_idx ON workspace_builds (version_id, workspace_id);

CREATE TABLE provisioner_jobs (
    id uuid NOT NULL,
    build_id uuid NOT NULL,
    workspace_id uuid NOT NULL,
    template_id uuid NOT NULL,
    version_id uuid NOT NULL,
    status text NOT NULL,
    is_prebuild boolean NOT NULL,
    created_at timestamptz NOT NULL,
    started_at timestamptz,
    completed_at timestamptz,
    canceled_at timestamptz,
    worker_id uuid,
    error text,
    CONSTRAINT provisioner_jobs_pkey PRIMARY KEY (id),
    CONSTRAINT provisioner_jobs_status_check CHECK (status IN (
        'pending', 'running', 'canceling', 'succeeded', 'failed', 'canceled'))
);
-- The queue, in claim order: users' jobs before prebuilds', oldest first.
CREATE INDEX provisioner_jobs_pending_idx ON provisioner_jobs (is_prebuild, created_at, id)
    WHERE status = 'pending';
CREATE INDEX provisioner_jobs_unfinished_idx ON provisioner_jobs (created_at, id)
    WHERE status IN ('pending', 'running', 'canceling');

CREATE TABLE provisioner_daemons (
    id uuid NOT NULL,
    name text NOT NULL,
    last_seen_at timestamptz NOT NULL,
    CONSTRAINT provisioner_daemons_pkey PRIMARY KEY (id)
);
CREATE INDEX provisioner_daemons_last_seen_at_idx ON provisioner_daemons (last_seen_at);

CREATE TABLE notifications (
    id uuid NOT NULL,
    kind text NOT NULL,
    user_id uuid NOT NULL,
    dedupe_key text NOT NULL,
    workspace_id uuid,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    attempts bigint NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    delivered_at timestamptz,
    CONSTRAINT notifications_pkey PRIMARY KEY (id),
    -- The outbox's dedupe key (`ON CONFLICT (kind, dedupe_key, user_id)`).
    CONSTRAINT notifications_kind_dedupe_key_user_id_key UNIQUE (kind, dedupe_key, user_id),
    CONSTRAINT notifications_attempts_check CHECK (attempts BETWEEN 0 AND 4294967295),
    CONSTRAINT notifications_kind_check CHECK (kind IN (
        'autostop_reminder', 'workspace_dormant', 'workspace_marked_for_deletion', 'workspace_deleted',
        'autobuild_failed', 'workspace_auto_updated', 'prebuild_failure_limit', 'prebuild_resource_replaced',
        'chat_archive_digest'))
);
-- Undelivered rows in claim order.
CREATE INDEX notifications_undelivered_idx ON notifications (created_at, id) WHERE delivered_at IS NULL;

CREATE TABLE chats (
    id uuid NOT NULL,
    owner_id uuid NOT NULL,
    name text NOT NULL,
    workspace_id uuid,
    status text NOT NULL,
    created_at timestamptz NOT NULL,
    last_activity_at timestamptz NOT NULL,
    CONSTRAINT chats_pkey PRIMARY KEY (id),
    CONSTRAINT chats_status_check CHECK (status IN (
        'pending', 'running', 'waiting', 'completed', 'error', 'archived'))
);
CREATE INDEX chats_live_workspace_id_idx ON chats (workspace_id) WHERE status <> 'archived';

CREATE TABLE settings (
    id text NOT NULL,
    value text NOT NULL,
    CONSTRAINT settings_pkey PRIMARY KEY (id)
);
