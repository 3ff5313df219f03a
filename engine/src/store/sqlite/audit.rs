//! The commit log: every committed row version with its commit number, true
//! time and client, for observers outside the engine (the simulator's checkers
//! and expectations build their own model of the world from it, never from
//! what the engine reports). Off unless enabled; it only reads what a commit
//! just stamped.

use rusqlite::Connection;

use super::mvcc::{self, Seq, Table, MVCC_COLUMNS};
use super::records::{Record, Setting};
use super::ClientId;
use crate::model::{
    Build, Chat, Job, Notification, Preset, ProvisionerDaemon, Template, TemplateVersion, User, Workspace,
};
use crate::store::StoreResult;
use crate::time::Timestamp;

/// A row version a commit wrote (an insert or an update's new version).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditRow {
    User(User),
    Template(Template),
    Version(TemplateVersion),
    Preset(Preset),
    Workspace(Workspace),
    Build(Build),
    Job(Job),
    Provisioner(ProvisionerDaemon),
    Notification(Notification),
    Chat(Chat),
    Setting { key: String, value: String },
}

/// One commit that wrote something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitRecord {
    pub seq: u64,
    /// The server clock (true time) at the commit.
    pub at: Timestamp,
    pub client: ClientId,
    pub rows: Vec<AuditRow>,
}

fn versions<R: Record>(
    conn: &Connection,
    seq: Seq,
    wrap: fn(R) -> AuditRow,
    out: &mut Vec<AuditRow>,
) -> StoreResult<()> {
    let sql = format!(
        "SELECT {MVCC_COLUMNS}, {} FROM {} WHERE _xmin_seq = ?1 ORDER BY _vid",
        R::COLUMNS.join(", "),
        R::TABLE.name()
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(mvcc::backend)?;
    let mut rows = stmt.query([mvcc::to_sql_int(seq)]).map_err(mvcc::backend)?;
    while let Some(row) = rows.next().map_err(mvcc::backend)? {
        out.push(wrap(mvcc::decode_version::<R>(row)?.record));
    }
    Ok(())
}

/// The versions commit `seq` stamped in `tables`, in table then insertion order.
pub(crate) fn read_commit(conn: &Connection, tables: &[Table], seq: Seq) -> StoreResult<Vec<AuditRow>> {
    let mut out = Vec::new();
    for table in tables {
        match table {
            Table::Users => versions::<User>(conn, seq, AuditRow::User, &mut out)?,
            Table::Templates => versions::<Template>(conn, seq, AuditRow::Template, &mut out)?,
            Table::TemplateVersions => versions::<TemplateVersion>(conn, seq, AuditRow::Version, &mut out)?,
            Table::Presets => versions::<Preset>(conn, seq, AuditRow::Preset, &mut out)?,
            Table::Workspaces => versions::<Workspace>(conn, seq, AuditRow::Workspace, &mut out)?,
            Table::WorkspaceBuilds => versions::<Build>(conn, seq, AuditRow::Build, &mut out)?,
            Table::ProvisionerJobs => versions::<Job>(conn, seq, AuditRow::Job, &mut out)?,
            Table::ProvisionerDaemons => versions::<ProvisionerDaemon>(conn, seq, AuditRow::Provisioner, &mut out)?,
            Table::Notifications => versions::<Notification>(conn, seq, AuditRow::Notification, &mut out)?,
            Table::Chats => versions::<Chat>(conn, seq, AuditRow::Chat, &mut out)?,
            Table::Settings => {
                versions::<Setting>(conn, seq, |s| AuditRow::Setting { key: s.key, value: s.value }, &mut out)?
            }
        }
    }
    Ok(out)
}
