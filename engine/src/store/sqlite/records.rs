//! Row codecs: how each record of `model.rs` maps to the columns of its
//! versioned table, and the unique keys the emulation enforces on it.
//!
//! Ids are 16-byte BLOBs, instants and spans INTEGER microseconds, enums their
//! `as_str()` names, bit sets INTEGERs, and parameter maps, specs, payloads and
//! schedules JSON text. Decoding never panics: anything the engine cannot read
//! back is [`StoreError::InvalidData`] naming the table and column.

use std::str::FromStr;

use rusqlite::types::{Value, ValueRef};
use rusqlite::Row;
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use super::mvcc::{RowId, Table};
use crate::model::{
    AutostopRequirement, Build, Chat, Job, Notification, Preset, ProvisionerDaemon, Roles, Template, TemplateVersion,
    User, WeekdaySet, Workspace,
};
use crate::store::{StoreError, StoreResult};
use crate::time::{Span, Timestamp};

/// A unique key (PostgreSQL: a unique index, maybe partial) over a table.
pub struct UniqueKey<R> {
    /// The constraint name reported in [`StoreError::UniqueViolation`].
    pub constraint: &'static str,
    /// SQL matching rows with the key; parameters from `?1`, in `values` order.
    pub matches: &'static str,
    /// The key of a record, `None` when the record is outside a partial index.
    pub values: fn(&R) -> Option<Vec<Value>>,
}

/// A record stored in a versioned table.
pub trait Record: Sized + Clone + Send + 'static {
    const TABLE: Table;
    /// The record's columns in storage order, `id` first.
    const COLUMNS: &'static [&'static str];
    /// Unique keys besides the primary key (`id`).
    const UNIQUE: &'static [UniqueKey<Self>];

    fn row_id(&self) -> RowId;
    /// Column values in [`Record::COLUMNS`] order.
    fn values(&self) -> Vec<Value>;
    /// Decodes the record from `row`, its columns starting at index `base`.
    fn decode(row: &Row<'_>, base: usize) -> StoreResult<Self>;
}

/// The primary-key constraint name of a table.
pub fn pkey_constraint(table: Table) -> &'static str {
    match table {
        Table::Users => "users_pkey",
        Table::Templates => "templates_pkey",
        Table::TemplateVersions => "template_versions_pkey",
        Table::Presets => "presets_pkey",
        Table::Workspaces => "workspaces_pkey",
        Table::WorkspaceBuilds => "workspace_builds_pkey",
        Table::ProvisionerJobs => "provisioner_jobs_pkey",
        Table::ProvisionerDaemons => "provisioner_daemons_pkey",
        Table::Notifications => "notifications_pkey",
        Table::Chats => "chats_pkey",
        Table::Settings => "settings_pkey",
    }
}

// ---- encoding ------------------------------------------------------------------

pub fn uuid_value(uuid: &Uuid) -> Value {
    Value::Blob(uuid.as_bytes().to_vec())
}
fn opt_uuid_value(uuid: Option<&Uuid>) -> Value {
    uuid.map_or(Value::Null, uuid_value)
}
pub fn ts_value(ts: Timestamp) -> Value {
    Value::Integer(ts.as_micros())
}
fn opt_ts_value(ts: Option<Timestamp>) -> Value {
    ts.map_or(Value::Null, ts_value)
}
fn span_value(span: Span) -> Value {
    Value::Integer(span.as_micros())
}
fn opt_span_value(span: Option<Span>) -> Value {
    span.map_or(Value::Null, span_value)
}
fn bool_value(b: bool) -> Value {
    Value::Integer(i64::from(b))
}
pub fn text_value(text: &str) -> Value {
    Value::Text(text.to_owned())
}
fn opt_text_value(text: Option<&str>) -> Value {
    text.map_or(Value::Null, text_value)
}
fn json_value<T: Serialize>(value: &T) -> Value {
    // Serializing plain data (maps, vectors, enums with string tags) cannot fail.
    Value::Text(serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned()))
}

// ---- decoding ------------------------------------------------------------------

/// Reads a record's columns in order, naming the column in every error.
struct Decoder<'a, 'r> {
    row: &'a Row<'r>,
    base: usize,
    next: usize,
    table: Table,
    columns: &'static [&'static str],
}

impl<'a, 'r> Decoder<'a, 'r> {
    fn new<R: Record>(row: &'a Row<'r>, base: usize) -> Self {
        Decoder { row, base, next: 0, table: R::TABLE, columns: R::COLUMNS }
    }

    fn err(&self, index: usize, detail: impl Into<String>) -> StoreError {
        let column = self.columns.get(index).copied().unwrap_or("?");
        StoreError::invalid_data(format!("{}.{column}", self.table.name()), detail)
    }

    fn raw(&mut self) -> StoreResult<(usize, ValueRef<'a>)> {
        let index = self.next;
        self.next += 1;
        let value = self.row.get_ref(self.base + index).map_err(|e| self.err(index, e.to_string()))?;
        Ok((index, value))
    }

    fn opt_int(&mut self) -> StoreResult<Option<i64>> {
        match self.raw()? {
            (_, ValueRef::Null) => Ok(None),
            (_, ValueRef::Integer(v)) => Ok(Some(v)),
            (i, other) => Err(self.err(i, format!("expected an integer, found {:?}", other.data_type()))),
        }
    }
    fn int(&mut self) -> StoreResult<i64> {
        let index = self.next;
        self.opt_int()?.ok_or_else(|| self.err(index, "unexpected null"))
    }
    fn opt_text(&mut self) -> StoreResult<Option<String>> {
        match self.raw()? {
            (_, ValueRef::Null) => Ok(None),
            (i, ValueRef::Text(bytes)) => {
                String::from_utf8(bytes.to_vec()).map(Some).map_err(|e| self.err(i, e.to_string()))
            }
            (i, other) => Err(self.err(i, format!("expected text, found {:?}", other.data_type()))),
        }
    }
    fn text(&mut self) -> StoreResult<String> {
        let index = self.next;
        self.opt_text()?.ok_or_else(|| self.err(index, "unexpected null"))
    }
    fn opt_uuid<T: From<Uuid>>(&mut self) -> StoreResult<Option<T>> {
        match self.raw()? {
            (_, ValueRef::Null) => Ok(None),
            (i, ValueRef::Blob(bytes)) => {
                let array: [u8; 16] =
                    bytes.try_into().map_err(|_| self.err(i, format!("expected 16 bytes, found {}", bytes.len())))?;
                Ok(Some(T::from(Uuid::from_bytes(array))))
            }
            (i, other) => Err(self.err(i, format!("expected a uuid blob, found {:?}", other.data_type()))),
        }
    }
    fn uuid<T: From<Uuid>>(&mut self) -> StoreResult<T> {
        let index = self.next;
        self.opt_uuid()?.ok_or_else(|| self.err(index, "unexpected null"))
    }
    fn ts(&mut self) -> StoreResult<Timestamp> {
        self.int().map(Timestamp::from_micros)
    }
    fn opt_ts(&mut self) -> StoreResult<Option<Timestamp>> {
        Ok(self.opt_int()?.map(Timestamp::from_micros))
    }
    fn span(&mut self) -> StoreResult<Span> {
        self.int().map(Span::from_micros)
    }
    fn opt_span(&mut self) -> StoreResult<Option<Span>> {
        Ok(self.opt_int()?.map(Span::from_micros))
    }
    fn boolean(&mut self) -> StoreResult<bool> {
        let index = self.next;
        match self.int()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.err(index, format!("expected 0 or 1, found {other}"))),
        }
    }
    fn small<T: TryFrom<i64>>(&mut self) -> StoreResult<T> {
        let index = self.next;
        let value = self.int()?;
        T::try_from(value).map_err(|_| self.err(index, format!("{value} out of range")))
    }
    fn opt_small<T: TryFrom<i64>>(&mut self) -> StoreResult<Option<T>> {
        let index = self.next;
        match self.opt_int()? {
            None => Ok(None),
            Some(value) => T::try_from(value).map(Some).map_err(|_| self.err(index, format!("{value} out of range"))),
        }
    }
    fn name<E: FromStr>(&mut self) -> StoreResult<E>
    where
        E::Err: std::fmt::Display,
    {
        let index = self.next;
        let text = self.text()?;
        text.parse::<E>().map_err(|e| self.err(index, e.to_string()))
    }
    fn json<T: DeserializeOwned>(&mut self) -> StoreResult<T> {
        let index = self.next;
        let text = self.text()?;
        serde_json::from_str(&text).map_err(|e| self.err(index, e.to_string()))
    }
    fn opt_json<T: DeserializeOwned>(&mut self) -> StoreResult<Option<T>> {
        let index = self.next;
        match self.opt_text()? {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text).map(Some).map_err(|e| self.err(index, e.to_string())),
        }
    }
}

// ---- records -------------------------------------------------------------------

impl Record for User {
    const TABLE: Table = Table::Users;
    const COLUMNS: &'static [&'static str] = &["id", "name", "status", "roles", "quiet_hours", "created_at"];
    const UNIQUE: &'static [UniqueKey<Self>] = &[UniqueKey {
        constraint: "users_name_key",
        matches: "name = ?1",
        values: |u| Some(vec![text_value(&u.name)]),
    }];

    fn row_id(&self) -> RowId {
        RowId::Uuid(*self.id.as_bytes())
    }
    fn values(&self) -> Vec<Value> {
        vec![
            uuid_value(&self.id.0),
            text_value(&self.name),
            text_value(self.status.as_str()),
            Value::Integer(i64::from(self.roles.bits())),
            text_value(&self.quiet_hours),
            ts_value(self.created_at),
        ]
    }
    fn decode(row: &Row<'_>, base: usize) -> StoreResult<Self> {
        let mut d = Decoder::new::<Self>(row, base);
        Ok(User {
            id: d.uuid()?,
            name: d.text()?,
            status: d.name()?,
            roles: Roles::from_bits(d.small::<u8>()?),
            quiet_hours: d.text()?,
            created_at: d.ts()?,
        })
    }
}

impl Record for Template {
    const TABLE: Table = Table::Templates;
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "name",
        "active_version_id",
        "default_ttl",
        "activity_bump",
        "autostop_notify",
        "failure_ttl",
        "time_til_dormant",
        "time_til_dormant_autodelete",
        "allow_user_autostart",
        "allow_user_autostop",
        "autostart_days",
        "autostop_requirement_days",
        "autostop_requirement_weeks",
        "require_active_version",
        "deprecated",
        "deleted",
        "created_at",
    ];
    const UNIQUE: &'static [UniqueKey<Self>] = &[UniqueKey {
        constraint: "templates_name_key",
        matches: "name = ?1 AND deleted = 0",
        values: |t| (!t.deleted).then(|| vec![text_value(&t.name)]),
    }];

    fn row_id(&self) -> RowId {
        RowId::Uuid(*self.id.as_bytes())
    }
    fn values(&self) -> Vec<Value> {
        vec![
            uuid_value(&self.id.0),
            text_value(&self.name),
            uuid_value(&self.active_version_id.0),
            span_value(self.default_ttl),
            span_value(self.activity_bump),
            span_value(self.autostop_notify),
            span_value(self.failure_ttl),
            span_value(self.time_til_dormant),
            span_value(self.time_til_dormant_autodelete),
            bool_value(self.allow_user_autostart),
            bool_value(self.allow_user_autostop),
            Value::Integer(i64::from(self.autostart_days.bits())),
            Value::Integer(i64::from(self.autostop_requirement.days.bits())),
            Value::Integer(i64::from(self.autostop_requirement.weeks)),
            bool_value(self.require_active_version),
            bool_value(self.deprecated),
            bool_value(self.deleted),
            ts_value(self.created_at),
        ]
    }
    fn decode(row: &Row<'_>, base: usize) -> StoreResult<Self> {
        let mut d = Decoder::new::<Self>(row, base);
        Ok(Template {
            id: d.uuid()?,
            name: d.text()?,
            active_version_id: d.uuid()?,
            default_ttl: d.span()?,
            activity_bump: d.span()?,
            autostop_notify: d.span()?,
            failure_ttl: d.span()?,
            time_til_dormant: d.span()?,
            time_til_dormant_autodelete: d.span()?,
            allow_user_autostart: d.boolean()?,
            allow_user_autostop: d.boolean()?,
            autostart_days: WeekdaySet::from_bits(d.small::<u8>()?),
            autostop_requirement: AutostopRequirement {
                days: WeekdaySet::from_bits(d.small::<u8>()?),
                weeks: d.small::<u8>()?,
            },
            require_active_version: d.boolean()?,
            deprecated: d.boolean()?,
            deleted: d.boolean()?,
            created_at: d.ts()?,
        })
    }
}

impl Record for TemplateVersion {
    const TABLE: Table = Table::TemplateVersions;
    const COLUMNS: &'static [&'static str] = &["id", "template_id", "name", "parameters", "created_at"];
    const UNIQUE: &'static [UniqueKey<Self>] = &[];

    fn row_id(&self) -> RowId {
        RowId::Uuid(*self.id.as_bytes())
    }
    fn values(&self) -> Vec<Value> {
        vec![
            uuid_value(&self.id.0),
            uuid_value(&self.template_id.0),
            text_value(&self.name),
            json_value(&self.parameters),
            ts_value(self.created_at),
        ]
    }
    fn decode(row: &Row<'_>, base: usize) -> StoreResult<Self> {
        let mut d = Decoder::new::<Self>(row, base);
        Ok(TemplateVersion {
            id: d.uuid()?,
            template_id: d.uuid()?,
            name: d.text()?,
            parameters: d.json()?,
            created_at: d.ts()?,
        })
    }
}

impl Record for Preset {
    const TABLE: Table = Table::Presets;
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "version_id",
        "name",
        "parameters",
        "instances",
        "expiration_ttl",
        "schedules",
        "last_invalidated_at",
        "status",
    ];
    const UNIQUE: &'static [UniqueKey<Self>] = &[UniqueKey {
        constraint: "presets_version_id_name_key",
        matches: "version_id = ?1 AND name = ?2",
        values: |p| Some(vec![uuid_value(&p.version_id.0), text_value(&p.name)]),
    }];

    fn row_id(&self) -> RowId {
        RowId::Uuid(*self.id.as_bytes())
    }
    fn values(&self) -> Vec<Value> {
        vec![
            uuid_value(&self.id.0),
            uuid_value(&self.version_id.0),
            text_value(&self.name),
            json_value(&self.parameters),
            self.instances.map_or(Value::Null, |n| Value::Integer(i64::from(n))),
            span_value(self.expiration_ttl),
            self.schedules.as_ref().map_or(Value::Null, json_value),
            opt_ts_value(self.last_invalidated_at),
            text_value(self.status.as_str()),
        ]
    }
    fn decode(row: &Row<'_>, base: usize) -> StoreResult<Self> {
        let mut d = Decoder::new::<Self>(row, base);
        Ok(Preset {
            id: d.uuid()?,
            version_id: d.uuid()?,
            name: d.text()?,
            parameters: d.json()?,
            instances: d.opt_small::<u32>()?,
            expiration_ttl: d.span()?,
            schedules: d.opt_json()?,
            last_invalidated_at: d.opt_ts()?,
            status: d.name()?,
        })
    }
}

impl Record for Workspace {
    const TABLE: Table = Table::Workspaces;
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "owner_id",
        "template_id",
        "name",
        "ttl",
        "autostart",
        "automatic_updates",
        "last_used_at",
        "dormant_at",
        "deleting_at",
        "next_start_at",
        "deleted",
        "created_at",
    ];
    const UNIQUE: &'static [UniqueKey<Self>] = &[UniqueKey {
        constraint: "workspaces_owner_id_lower_name_key",
        matches: "owner_id = ?1 AND lower(name) = lower(?2) AND deleted = 0",
        values: |w| (!w.deleted).then(|| vec![uuid_value(&w.owner_id.0), text_value(&w.name)]),
    }];

    fn row_id(&self) -> RowId {
        RowId::Uuid(*self.id.as_bytes())
    }
    fn values(&self) -> Vec<Value> {
        vec![
            uuid_value(&self.id.0),
            uuid_value(&self.owner_id.0),
            uuid_value(&self.template_id.0),
            text_value(&self.name),
            opt_span_value(self.ttl),
            opt_text_value(self.autostart.as_deref()),
            text_value(self.automatic_updates.as_str()),
            ts_value(self.last_used_at),
            opt_ts_value(self.dormant_at),
            opt_ts_value(self.deleting_at),
            opt_ts_value(self.next_start_at),
            bool_value(self.deleted),
            ts_value(self.created_at),
        ]
    }
    fn decode(row: &Row<'_>, base: usize) -> StoreResult<Self> {
        let mut d = Decoder::new::<Self>(row, base);
        Ok(Workspace {
            id: d.uuid()?,
            owner_id: d.uuid()?,
            template_id: d.uuid()?,
            name: d.text()?,
            ttl: d.opt_span()?,
            autostart: d.opt_text()?,
            automatic_updates: d.name()?,
            last_used_at: d.ts()?,
            dormant_at: d.opt_ts()?,
            deleting_at: d.opt_ts()?,
            next_start_at: d.opt_ts()?,
            deleted: d.boolean()?,
            created_at: d.ts()?,
        })
    }
}

impl Record for Build {
    const TABLE: Table = Table::WorkspaceBuilds;
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "workspace_id",
        "number",
        "transition",
        "reason",
        "initiator_id",
        "version_id",
        "job_id",
        "preset_id",
        "parameters",
        "created_at",
        "deadline",
        "max_deadline",
        "notified_autostop_deadline",
        "agent_ready_at",
    ];
    const UNIQUE: &'static [UniqueKey<Self>] = &[UniqueKey {
        constraint: "workspace_builds_workspace_id_number_key",
        matches: "workspace_id = ?1 AND number = ?2",
        values: |b| Some(vec![uuid_value(&b.workspace_id.0), Value::Integer(i64::from(b.number))]),
    }];

    fn row_id(&self) -> RowId {
        RowId::Uuid(*self.id.as_bytes())
    }
    fn values(&self) -> Vec<Value> {
        vec![
            uuid_value(&self.id.0),
            uuid_value(&self.workspace_id.0),
            Value::Integer(i64::from(self.number)),
            text_value(self.transition.as_str()),
            text_value(self.reason.as_str()),
            uuid_value(&self.initiator_id.0),
            uuid_value(&self.version_id.0),
            uuid_value(&self.job_id.0),
            opt_uuid_value(self.preset_id.as_ref().map(|p| &p.0)),
            json_value(&self.parameters),
            ts_value(self.created_at),
            opt_ts_value(self.deadline),
            opt_ts_value(self.max_deadline),
            opt_ts_value(self.notified_autostop_deadline),
            opt_ts_value(self.agent_ready_at),
        ]
    }
    fn decode(row: &Row<'_>, base: usize) -> StoreResult<Self> {
        let mut d = Decoder::new::<Self>(row, base);
        Ok(Build {
            id: d.uuid()?,
            workspace_id: d.uuid()?,
            number: d.small::<i32>()?,
            transition: d.name()?,
            reason: d.name()?,
            initiator_id: d.uuid()?,
            version_id: d.uuid()?,
            job_id: d.uuid()?,
            preset_id: d.opt_uuid()?,
            parameters: d.json()?,
            created_at: d.ts()?,
            deadline: d.opt_ts()?,
            max_deadline: d.opt_ts()?,
            notified_autostop_deadline: d.opt_ts()?,
            agent_ready_at: d.opt_ts()?,
        })
    }
}

impl Record for Job {
    const TABLE: Table = Table::ProvisionerJobs;
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "build_id",
        "workspace_id",
        "template_id",
        "version_id",
        "status",
        "is_prebuild",
        "created_at",
        "started_at",
        "completed_at",
        "canceled_at",
        "worker_id",
        "error",
    ];
    const UNIQUE: &'static [UniqueKey<Self>] = &[];

    fn row_id(&self) -> RowId {
        RowId::Uuid(*self.id.as_bytes())
    }
    fn values(&self) -> Vec<Value> {
        vec![
            uuid_value(&self.id.0),
            uuid_value(&self.build_id.0),
            uuid_value(&self.workspace_id.0),
            uuid_value(&self.template_id.0),
            uuid_value(&self.version_id.0),
            text_value(self.status.as_str()),
            bool_value(self.is_prebuild),
            ts_value(self.created_at),
            opt_ts_value(self.started_at),
            opt_ts_value(self.completed_at),
            opt_ts_value(self.canceled_at),
            opt_uuid_value(self.worker_id.as_ref().map(|w| &w.0)),
            opt_text_value(self.error.as_deref()),
        ]
    }
    fn decode(row: &Row<'_>, base: usize) -> StoreResult<Self> {
        let mut d = Decoder::new::<Self>(row, base);
        Ok(Job {
            id: d.uuid()?,
            build_id: d.uuid()?,
            workspace_id: d.uuid()?,
            template_id: d.uuid()?,
            version_id: d.uuid()?,
            status: d.name()?,
            is_prebuild: d.boolean()?,
            created_at: d.ts()?,
            started_at: d.opt_ts()?,
            completed_at: d.opt_ts()?,
            canceled_at: d.opt_ts()?,
            worker_id: d.opt_uuid()?,
            error: d.opt_text()?,
        })
    }
}

impl Record for ProvisionerDaemon {
    const TABLE: Table = Table::ProvisionerDaemons;
    const COLUMNS: &'static [&'static str] = &["id", "name", "last_seen_at"];
    const UNIQUE: &'static [UniqueKey<Self>] = &[];

    fn row_id(&self) -> RowId {
        RowId::Uuid(*self.id.as_bytes())
    }
    fn values(&self) -> Vec<Value> {
        vec![uuid_value(&self.id.0), text_value(&self.name), ts_value(self.last_seen_at)]
    }
    fn decode(row: &Row<'_>, base: usize) -> StoreResult<Self> {
        let mut d = Decoder::new::<Self>(row, base);
        Ok(ProvisionerDaemon { id: d.uuid()?, name: d.text()?, last_seen_at: d.ts()? })
    }
}

impl Record for Notification {
    const TABLE: Table = Table::Notifications;
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "kind",
        "user_id",
        "dedupe_key",
        "workspace_id",
        "payload",
        "created_at",
        "attempts",
        "next_attempt_at",
        "delivered_at",
    ];
    const UNIQUE: &'static [UniqueKey<Self>] = &[UniqueKey {
        constraint: "notifications_kind_dedupe_key_user_id_key",
        matches: "kind = ?1 AND dedupe_key = ?2 AND user_id = ?3",
        values: |n| Some(vec![text_value(n.kind.as_str()), text_value(&n.dedupe_key.0), uuid_value(&n.user_id.0)]),
    }];

    fn row_id(&self) -> RowId {
        RowId::Uuid(*self.id.as_bytes())
    }
    fn values(&self) -> Vec<Value> {
        vec![
            uuid_value(&self.id.0),
            text_value(self.kind.as_str()),
            uuid_value(&self.user_id.0),
            text_value(&self.dedupe_key.0),
            opt_uuid_value(self.workspace_id.as_ref().map(|w| &w.0)),
            json_value(&self.payload),
            ts_value(self.created_at),
            Value::Integer(i64::from(self.attempts)),
            ts_value(self.next_attempt_at),
            opt_ts_value(self.delivered_at),
        ]
    }
    fn decode(row: &Row<'_>, base: usize) -> StoreResult<Self> {
        let mut d = Decoder::new::<Self>(row, base);
        Ok(Notification {
            id: d.uuid()?,
            kind: d.name()?,
            user_id: d.uuid()?,
            dedupe_key: crate::model::DedupeKey(d.text()?),
            workspace_id: d.opt_uuid()?,
            payload: d.json()?,
            created_at: d.ts()?,
            attempts: d.small::<u32>()?,
            next_attempt_at: d.ts()?,
            delivered_at: d.opt_ts()?,
        })
    }
}

impl Record for Chat {
    const TABLE: Table = Table::Chats;
    const COLUMNS: &'static [&'static str] =
        &["id", "owner_id", "name", "workspace_id", "status", "created_at", "last_activity_at"];
    const UNIQUE: &'static [UniqueKey<Self>] = &[];

    fn row_id(&self) -> RowId {
        RowId::Uuid(*self.id.as_bytes())
    }
    fn values(&self) -> Vec<Value> {
        vec![
            uuid_value(&self.id.0),
            uuid_value(&self.owner_id.0),
            text_value(&self.name),
            opt_uuid_value(self.workspace_id.as_ref().map(|w| &w.0)),
            text_value(self.status.as_str()),
            ts_value(self.created_at),
            ts_value(self.last_activity_at),
        ]
    }
    fn decode(row: &Row<'_>, base: usize) -> StoreResult<Self> {
        let mut d = Decoder::new::<Self>(row, base);
        Ok(Chat {
            id: d.uuid()?,
            owner_id: d.uuid()?,
            name: d.text()?,
            workspace_id: d.opt_uuid()?,
            status: d.name()?,
            created_at: d.ts()?,
            last_activity_at: d.ts()?,
        })
    }
}

/// A setting stored in the database: key (the row id) and value.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Setting {
    pub key: String,
    pub value: String,
}

impl Record for Setting {
    const TABLE: Table = Table::Settings;
    const COLUMNS: &'static [&'static str] = &["id", "value"];
    const UNIQUE: &'static [UniqueKey<Self>] = &[];

    fn row_id(&self) -> RowId {
        RowId::Text(self.key.clone())
    }
    fn values(&self) -> Vec<Value> {
        vec![text_value(&self.key), text_value(&self.value)]
    }
    fn decode(row: &Row<'_>, base: usize) -> StoreResult<Self> {
        let mut d = Decoder::new::<Self>(row, base);
        Ok(Setting { key: d.text()?, value: d.text()? })
    }
}
