//! Row codecs: how each record of `model.rs` maps to the columns of its table
//! (the SQLite store's columns, in the same order), and the SQL text built
//! from those column lists once.
//!
//! Ids are `uuid`, instants `timestamptz` (microseconds, [`SqlTimestamp`]),
//! spans `bigint` microseconds, enums their `as_str()` names, bit sets
//! `smallint`, maps, specs, payloads and schedules `jsonb`. Decoding never
//! panics: a value the engine cannot read back is
//! [`StoreError::InvalidData`] naming the table and column.

use std::error::Error as StdError;
use std::str::FromStr;

use bytes::{BufMut, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_postgres::types::{accepts, to_sql_checked, FromSql, IsNull, Json, ToSql, Type};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::model::{
    AutostopRequirement, Build, Chat, DedupeKey, Job, Notification, Preset, ProvisionerDaemon, Roles, Template,
    TemplateVersion, User, WeekdaySet, Workspace,
};
use crate::store::{StoreError, StoreResult};
use crate::time::{Span, Timestamp};

type BoxError = Box<dyn StdError + Sync + Send>;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01T00:00:00Z).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;
/// PostgreSQL's timestamp range in its own microseconds: 4713 BC to 294276 AD
/// (`MIN_TIMESTAMP`, `END_TIMESTAMP` in its `datatype/timestamp.h`).
const PG_TIMESTAMP_MIN: i64 = -211_813_488_000_000_000;
const PG_TIMESTAMP_END: i64 = 9_223_371_331_200_000_000;

/// A [`Timestamp`] as a `timestamptz` parameter or column, in the binary
/// format (microseconds since 2000-01-01), so no calendar library is involved.
/// An instant outside PostgreSQL's range is an encoding error, and
/// `±infinity` (which the engine never writes) a decoding error.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct SqlTimestamp(pub Timestamp);

impl ToSql for SqlTimestamp {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let micros = self.0.as_micros();
        match micros.checked_sub(PG_EPOCH_OFFSET_MICROS) {
            Some(pg) if (PG_TIMESTAMP_MIN..PG_TIMESTAMP_END).contains(&pg) => {
                out.put_i64(pg);
                Ok(IsNull::No)
            }
            _ => Err(format!("instant {micros}us since the epoch is outside postgresql's timestamp range").into()),
        }
    }

    accepts!(TIMESTAMPTZ);
    to_sql_checked!();
}

impl<'a> FromSql<'a> for SqlTimestamp {
    fn from_sql(_ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let bytes: [u8; 8] = raw.try_into().map_err(|_| format!("timestamptz of {} bytes", raw.len()))?;
        let pg = i64::from_be_bytes(bytes);
        if pg == i64::MAX || pg == i64::MIN {
            return Err("infinite timestamptz".into());
        }
        pg.checked_add(PG_EPOCH_OFFSET_MICROS)
            .map(|micros| SqlTimestamp(Timestamp::from_micros(micros)))
            .ok_or_else(|| "timestamptz out of range".into())
    }

    accepts!(TIMESTAMPTZ);
}

/// One bound parameter.
pub(crate) type Param = Box<dyn ToSql + Sync + Send>;

pub(crate) fn ts(value: Timestamp) -> Param {
    Box::new(SqlTimestamp(value))
}
fn opt_ts(value: Option<Timestamp>) -> Param {
    Box::new(value.map(SqlTimestamp))
}
pub(crate) fn uuid(value: &Uuid) -> Param {
    Box::new(*value)
}
fn opt_uuid(value: Option<&Uuid>) -> Param {
    Box::new(value.copied())
}
pub(crate) fn text(value: &str) -> Param {
    Box::new(value.to_owned())
}
fn opt_text(value: Option<&str>) -> Param {
    Box::new(value.map(str::to_owned))
}
fn span(value: Span) -> Param {
    Box::new(value.as_micros())
}
fn opt_span(value: Option<Span>) -> Param {
    Box::new(value.map(Span::as_micros))
}
fn boolean(value: bool) -> Param {
    Box::new(value)
}
fn small(value: u8) -> Param {
    Box::new(i16::from(value))
}
fn json<T: Serialize>(value: &T) -> Param {
    // Serializing plain data (maps, vectors, enums with string tags) cannot fail.
    Box::new(Json(serde_json::to_value(value).unwrap_or(serde_json::Value::Null)))
}
fn opt_json<T: Serialize>(value: Option<&T>) -> Param {
    Box::new(value.map(|v| Json(serde_json::to_value(v).unwrap_or(serde_json::Value::Null))))
}

/// Borrows parameters the way the driver takes them.
pub(crate) fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect()
}

// ---- decoding ------------------------------------------------------------------

/// Reads a record's columns in order, naming the column in every error.
pub(crate) struct Decoder<'r> {
    row: &'r Row,
    base: usize,
    next: usize,
    table: &'static str,
    columns: &'static [&'static str],
}

impl<'r> Decoder<'r> {
    pub fn new<R: PgRecord>(row: &'r Row, base: usize) -> Self {
        Decoder { row, base, next: 0, table: R::TABLE, columns: R::COLUMNS }
    }

    fn err(&self, index: usize, detail: impl std::fmt::Display) -> StoreError {
        let column = self.columns.get(index).copied().unwrap_or("?");
        StoreError::invalid_data(format!("{}.{column}", self.table), detail.to_string())
    }

    fn get<T: FromSql<'r>>(&mut self) -> StoreResult<T> {
        let index = self.next;
        self.next += 1;
        self.row.try_get::<usize, T>(self.base + index).map_err(|e| self.err(index, describe_decode(&e)))
    }

    fn uuid<T: From<Uuid>>(&mut self) -> StoreResult<T> {
        self.get::<Uuid>().map(T::from)
    }
    fn opt_uuid<T: From<Uuid>>(&mut self) -> StoreResult<Option<T>> {
        Ok(self.get::<Option<Uuid>>()?.map(T::from))
    }
    fn text(&mut self) -> StoreResult<String> {
        self.get()
    }
    fn opt_text(&mut self) -> StoreResult<Option<String>> {
        self.get()
    }
    fn ts(&mut self) -> StoreResult<Timestamp> {
        Ok(self.get::<SqlTimestamp>()?.0)
    }
    fn opt_ts(&mut self) -> StoreResult<Option<Timestamp>> {
        Ok(self.get::<Option<SqlTimestamp>>()?.map(|t| t.0))
    }
    fn span(&mut self) -> StoreResult<Span> {
        self.get::<i64>().map(Span::from_micros)
    }
    fn opt_span(&mut self) -> StoreResult<Option<Span>> {
        Ok(self.get::<Option<i64>>()?.map(Span::from_micros))
    }
    fn boolean(&mut self) -> StoreResult<bool> {
        self.get()
    }
    fn int<S: FromSql<'r> + Into<i64>, T: TryFrom<i64>>(&mut self) -> StoreResult<T> {
        let index = self.next;
        let value: i64 = self.get::<S>()?.into();
        T::try_from(value).map_err(|_| self.err(index, format!("{value} out of range")))
    }
    fn opt_int<S: FromSql<'r> + Into<i64>, T: TryFrom<i64>>(&mut self) -> StoreResult<Option<T>> {
        let index = self.next;
        match self.get::<Option<S>>()? {
            None => Ok(None),
            Some(value) => {
                let value: i64 = value.into();
                T::try_from(value).map(Some).map_err(|_| self.err(index, format!("{value} out of range")))
            }
        }
    }
    fn name<E: FromStr>(&mut self) -> StoreResult<E>
    where
        E::Err: std::fmt::Display,
    {
        let index = self.next;
        let text = self.text()?;
        text.parse::<E>().map_err(|e| self.err(index, e))
    }
    fn json<T: DeserializeOwned>(&mut self) -> StoreResult<T> {
        let index = self.next;
        let value = self.get::<serde_json::Value>()?;
        serde_json::from_value(value).map_err(|e| self.err(index, e))
    }
    fn opt_json<T: DeserializeOwned>(&mut self) -> StoreResult<Option<T>> {
        let index = self.next;
        match self.get::<Option<serde_json::Value>>()? {
            None => Ok(None),
            Some(value) => serde_json::from_value(value).map(Some).map_err(|e| self.err(index, e)),
        }
    }
}

/// A decoding error's message with its cause (the driver's own text says
/// only "error deserializing column N").
fn describe_decode(error: &tokio_postgres::Error) -> String {
    match StdError::source(error) {
        Some(source) => format!("{error}: {source}"),
        None => error.to_string(),
    }
}

// ---- records -------------------------------------------------------------------

/// A record stored in a table of its own.
pub(crate) trait PgRecord: Sized {
    const TABLE: &'static str;
    /// Columns in storage order, `id` first.
    const COLUMNS: &'static [&'static str];
    /// What `NotFound` names: "workspace", "build", ….
    const WHAT: &'static str;

    /// Parameters in [`PgRecord::COLUMNS`] order.
    fn params(&self) -> Vec<Param>;
    /// Decodes the record from `row`, its columns starting at index `base`.
    fn decode(row: &Row, base: usize) -> StoreResult<Self>;
    /// The record's id, for messages.
    fn id_text(&self) -> String;
    /// Statements built from the column list, once per record type.
    fn sql() -> &'static RecordSql;
}

/// The statements every record has, built from its columns.
#[derive(Debug)]
pub(crate) struct RecordSql {
    /// `c1, c2, …`
    pub columns: String,
    /// `INSERT INTO t (…) VALUES ($1, …)`
    pub insert: String,
    /// `UPDATE t SET c2 = $2, … WHERE id = $1` (every column but the id).
    pub update: String,
    /// `SELECT … FROM t WHERE id = $1`
    pub by_id: String,
}

/// `alias.c1, alias.c2, …` (no alias: bare names).
pub(crate) fn column_list(columns: &[&str], alias: Option<&str>) -> String {
    columns
        .iter()
        .map(|c| match alias {
            Some(a) => format!("{a}.{c}"),
            None => (*c).to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `INSERT INTO table (columns) VALUES ($first, …)`.
pub(crate) fn insert_statement(table: &str, columns: &[&str], first: usize) -> String {
    let placeholders = (first..first + columns.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
    format!("INSERT INTO {table} ({}) VALUES ({placeholders})", column_list(columns, None))
}

impl RecordSql {
    fn build(table: &str, columns: &[&str]) -> RecordSql {
        let list = column_list(columns, None);
        let sets =
            columns.iter().enumerate().skip(1).map(|(i, c)| format!("{c} = ${}", i + 1)).collect::<Vec<_>>().join(", ");
        RecordSql {
            insert: insert_statement(table, columns, 1),
            update: format!("UPDATE {table} SET {sets} WHERE id = $1"),
            by_id: format!("SELECT {list} FROM {table} WHERE id = $1"),
            columns: list,
        }
    }
}

/// Implements [`PgRecord::sql`] with a static of its own per record type.
macro_rules! record_sql {
    () => {
        fn sql() -> &'static RecordSql {
            static SQL: std::sync::OnceLock<RecordSql> = std::sync::OnceLock::new();
            SQL.get_or_init(|| RecordSql::build(Self::TABLE, Self::COLUMNS))
        }
    };
}

impl PgRecord for User {
    const TABLE: &'static str = "users";
    const COLUMNS: &'static [&'static str] = &["id", "name", "status", "roles", "quiet_hours", "created_at"];
    const WHAT: &'static str = "user";

    fn params(&self) -> Vec<Param> {
        vec![
            uuid(&self.id.0),
            text(&self.name),
            text(self.status.as_str()),
            small(self.roles.bits()),
            text(&self.quiet_hours),
            ts(self.created_at),
        ]
    }
    fn decode(row: &Row, base: usize) -> StoreResult<Self> {
        let mut d = Decoder::new::<Self>(row, base);
        Ok(User {
            id: d.uuid()?,
            name: d.text()?,
            status: d.name()?,
            roles: Roles::from_bits(d.int::<i16, u8>()?),
            quiet_hours: d.text()?,
            created_at: d.ts()?,
        })
    }
    fn id_text(&self) -> String {
        self.id.to_string()
    }
    record_sql!();
}

impl PgRecord for Template {
    const TABLE: &'static str = "templates";
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
    const WHAT: &'static str = "template";

    fn params(&self) -> Vec<Param> {
        vec![
            uuid(&self.id.0),
            text(&self.name),
            uuid(&self.active_version_id.0),
            span(self.default_ttl),
            span(self.activity_bump),
            span(self.autostop_notify),
            span(self.failure_ttl),
            span(self.time_til_dormant),
            span(self.time_til_dormant_autodelete),
            boolean(self.allow_user_autostart),
            boolean(self.allow_user_autostop),
            small(self.autostart_days.bits()),
            small(self.autostop_requirement.days.bits()),
            small(self.autostop_requirement.weeks),
            boolean(self.require_active_version),
            boolean(self.deprecated),
            boolean(self.deleted),
            ts(self.created_at),
        ]
    }
    fn decode(row: &Row, base: usize) -> StoreResult<Self> {
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
            autostart_days: WeekdaySet::from_bits(d.int::<i16, u8>()?),
            autostop_requirement: AutostopRequirement {
                days: WeekdaySet::from_bits(d.int::<i16, u8>()?),
                weeks: d.int::<i16, u8>()?,
            },
            require_active_version: d.boolean()?,
            deprecated: d.boolean()?,
            deleted: d.boolean()?,
            created_at: d.ts()?,
        })
    }
    fn id_text(&self) -> String {
        self.id.to_string()
    }
    record_sql!();
}

impl PgRecord for TemplateVersion {
    const TABLE: &'static str = "template_versions";
    const COLUMNS: &'static [&'static str] = &["id", "template_id", "name", "parameters", "created_at"];
    const WHAT: &'static str = "template version";

    fn params(&self) -> Vec<Param> {
        vec![uuid(&self.id.0), uuid(&self.template_id.0), text(&self.name), json(&self.parameters), ts(self.created_at)]
    }
    fn decode(row: &Row, base: usize) -> StoreResult<Self> {
        let mut d = Decoder::new::<Self>(row, base);
        Ok(TemplateVersion {
            id: d.uuid()?,
            template_id: d.uuid()?,
            name: d.text()?,
            parameters: d.json()?,
            created_at: d.ts()?,
        })
    }
    fn id_text(&self) -> String {
        self.id.to_string()
    }
    record_sql!();
}

impl PgRecord for Preset {
    const TABLE: &'static str = "presets";
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
    const WHAT: &'static str = "preset";

    fn params(&self) -> Vec<Param> {
        vec![
            uuid(&self.id.0),
            uuid(&self.version_id.0),
            text(&self.name),
            json(&self.parameters),
            Box::new(self.instances.map(i64::from)),
            span(self.expiration_ttl),
            opt_json(self.schedules.as_ref()),
            opt_ts(self.last_invalidated_at),
            text(self.status.as_str()),
        ]
    }
    fn decode(row: &Row, base: usize) -> StoreResult<Self> {
        let mut d = Decoder::new::<Self>(row, base);
        Ok(Preset {
            id: d.uuid()?,
            version_id: d.uuid()?,
            name: d.text()?,
            parameters: d.json()?,
            instances: d.opt_int::<i64, u32>()?,
            expiration_ttl: d.span()?,
            schedules: d.opt_json()?,
            last_invalidated_at: d.opt_ts()?,
            status: d.name()?,
        })
    }
    fn id_text(&self) -> String {
        self.id.to_string()
    }
    record_sql!();
}

impl PgRecord for Workspace {
    const TABLE: &'static str = "workspaces";
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
    const WHAT: &'static str = "workspace";

    fn params(&self) -> Vec<Param> {
        vec![
            uuid(&self.id.0),
            uuid(&self.owner_id.0),
            uuid(&self.template_id.0),
            text(&self.name),
            opt_span(self.ttl),
            opt_text(self.autostart.as_deref()),
            text(self.automatic_updates.as_str()),
            ts(self.last_used_at),
            opt_ts(self.dormant_at),
            opt_ts(self.deleting_at),
            opt_ts(self.next_start_at),
            boolean(self.deleted),
            ts(self.created_at),
        ]
    }
    fn decode(row: &Row, base: usize) -> StoreResult<Self> {
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
    fn id_text(&self) -> String {
        self.id.to_string()
    }
    record_sql!();
}

impl PgRecord for Build {
    const TABLE: &'static str = "workspace_builds";
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
    const WHAT: &'static str = "build";

    fn params(&self) -> Vec<Param> {
        vec![
            uuid(&self.id.0),
            uuid(&self.workspace_id.0),
            Box::new(self.number),
            text(self.transition.as_str()),
            text(self.reason.as_str()),
            uuid(&self.initiator_id.0),
            uuid(&self.version_id.0),
            uuid(&self.job_id.0),
            opt_uuid(self.preset_id.as_ref().map(|p| &p.0)),
            json(&self.parameters),
            ts(self.created_at),
            opt_ts(self.deadline),
            opt_ts(self.max_deadline),
            opt_ts(self.notified_autostop_deadline),
            opt_ts(self.agent_ready_at),
        ]
    }
    fn decode(row: &Row, base: usize) -> StoreResult<Self> {
        let mut d = Decoder::new::<Self>(row, base);
        Ok(Build {
            id: d.uuid()?,
            workspace_id: d.uuid()?,
            number: d.get::<i32>()?,
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
    fn id_text(&self) -> String {
        self.id.to_string()
    }
    record_sql!();
}

impl PgRecord for Job {
    const TABLE: &'static str = "provisioner_jobs";
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
    const WHAT: &'static str = "job";

    fn params(&self) -> Vec<Param> {
        vec![
            uuid(&self.id.0),
            uuid(&self.build_id.0),
            uuid(&self.workspace_id.0),
            uuid(&self.template_id.0),
            uuid(&self.version_id.0),
            text(self.status.as_str()),
            boolean(self.is_prebuild),
            ts(self.created_at),
            opt_ts(self.started_at),
            opt_ts(self.completed_at),
            opt_ts(self.canceled_at),
            opt_uuid(self.worker_id.as_ref().map(|w| &w.0)),
            opt_text(self.error.as_deref()),
        ]
    }
    fn decode(row: &Row, base: usize) -> StoreResult<Self> {
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
    fn id_text(&self) -> String {
        self.id.to_string()
    }
    record_sql!();
}

impl PgRecord for ProvisionerDaemon {
    const TABLE: &'static str = "provisioner_daemons";
    const COLUMNS: &'static [&'static str] = &["id", "name", "last_seen_at"];
    const WHAT: &'static str = "provisioner daemon";

    fn params(&self) -> Vec<Param> {
        vec![uuid(&self.id.0), text(&self.name), ts(self.last_seen_at)]
    }
    fn decode(row: &Row, base: usize) -> StoreResult<Self> {
        let mut d = Decoder::new::<Self>(row, base);
        Ok(ProvisionerDaemon { id: d.uuid()?, name: d.text()?, last_seen_at: d.ts()? })
    }
    fn id_text(&self) -> String {
        self.id.to_string()
    }
    record_sql!();
}

impl PgRecord for Notification {
    const TABLE: &'static str = "notifications";
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
    const WHAT: &'static str = "notification";

    fn params(&self) -> Vec<Param> {
        vec![
            uuid(&self.id.0),
            text(self.kind.as_str()),
            uuid(&self.user_id.0),
            text(&self.dedupe_key.0),
            opt_uuid(self.workspace_id.as_ref().map(|w| &w.0)),
            json(&self.payload),
            ts(self.created_at),
            Box::new(i64::from(self.attempts)),
            ts(self.next_attempt_at),
            opt_ts(self.delivered_at),
        ]
    }
    fn decode(row: &Row, base: usize) -> StoreResult<Self> {
        let mut d = Decoder::new::<Self>(row, base);
        Ok(Notification {
            id: d.uuid()?,
            kind: d.name()?,
            user_id: d.uuid()?,
            dedupe_key: DedupeKey(d.text()?),
            workspace_id: d.opt_uuid()?,
            payload: d.json()?,
            created_at: d.ts()?,
            attempts: d.int::<i64, u32>()?,
            next_attempt_at: d.ts()?,
            delivered_at: d.opt_ts()?,
        })
    }
    fn id_text(&self) -> String {
        self.id.to_string()
    }
    record_sql!();
}

impl PgRecord for Chat {
    const TABLE: &'static str = "chats";
    const COLUMNS: &'static [&'static str] =
        &["id", "owner_id", "name", "workspace_id", "status", "created_at", "last_activity_at"];
    const WHAT: &'static str = "chat";

    fn params(&self) -> Vec<Param> {
        vec![
            uuid(&self.id.0),
            uuid(&self.owner_id.0),
            text(&self.name),
            opt_uuid(self.workspace_id.as_ref().map(|w| &w.0)),
            text(self.status.as_str()),
            ts(self.created_at),
            ts(self.last_activity_at),
        ]
    }
    fn decode(row: &Row, base: usize) -> StoreResult<Self> {
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
    fn id_text(&self) -> String {
        self.id.to_string()
    }
    record_sql!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_through_the_binary_format() {
        for micros in [0, -1, 1_767_603_600_000_001, i64::MAX, -210_000_000_000_000_000] {
            let mut out = BytesMut::new();
            let value = SqlTimestamp(Timestamp::from_micros(micros));
            assert!(matches!(value.to_sql(&Type::TIMESTAMPTZ, &mut out), Ok(IsNull::No)), "{micros}");
            assert_eq!(SqlTimestamp::from_sql(&Type::TIMESTAMPTZ, &out).unwrap(), value);
        }
        // 2000-01-01T00:00:00Z is zero in PostgreSQL's binary format.
        let mut out = BytesMut::new();
        SqlTimestamp(Timestamp::from_micros(PG_EPOCH_OFFSET_MICROS)).to_sql(&Type::TIMESTAMPTZ, &mut out).unwrap();
        assert_eq!(&out[..], &[0u8; 8]);
    }

    #[test]
    fn out_of_range_instants_fail_to_encode_and_infinity_to_decode() {
        let mut out = BytesMut::new();
        assert!(SqlTimestamp(Timestamp::from_micros(i64::MIN)).to_sql(&Type::TIMESTAMPTZ, &mut out).is_err());
        assert!(SqlTimestamp::from_sql(&Type::TIMESTAMPTZ, &i64::MAX.to_be_bytes()).is_err());
        assert!(SqlTimestamp::from_sql(&Type::TIMESTAMPTZ, &[0, 1]).is_err());
    }

    #[test]
    fn record_statements_list_every_column_in_order() {
        let sql = Workspace::sql();
        assert!(sql.insert.starts_with("INSERT INTO workspaces (id, owner_id, template_id, name,"));
        assert!(sql.insert.ends_with("$12, $13)"));
        assert!(sql.update.starts_with("UPDATE workspaces SET owner_id = $2, template_id = $3,"));
        assert!(sql.update.ends_with("created_at = $13 WHERE id = $1"));
        assert_eq!(
            User::sql().by_id,
            "SELECT id, name, status, roles, quiet_hours, created_at FROM users WHERE id = $1"
        );
    }
}
