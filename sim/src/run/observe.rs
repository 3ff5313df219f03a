//! The checkers' own model of the world, rebuilt from the database's commit
//! log: every committed version of every row with its commit number, true time
//! and client. "The state at `t`" is, for each row, its last version committed
//! strictly before `t`.

use std::collections::BTreeMap;

use engine::ids::{BuildId, ChatId, JobId, NotificationId, TemplateId, UserId, VersionId, WorkspaceId};
use engine::model::{
    Build, BuildWithJob, Chat, Job, JobStatus, Notification, Template, TemplateVersion, Transition, User, Workspace,
};
use engine::store::sqlite::{AuditRow, ClientId, CommitRecord};
use engine::time::Timestamp;

use super::world::{lock, World};
use crate::scenario::WorkspaceStatus;

/// A committed version of a row.
#[derive(Clone, Debug)]
pub(crate) struct Versioned<T> {
    pub seq: u64,
    pub at: Timestamp,
    pub client: ClientId,
    pub value: T,
}

type History<K, T> = BTreeMap<K, Vec<Versioned<T>>>;

#[derive(Default)]
pub(crate) struct Model {
    pub users: History<UserId, User>,
    pub templates: History<TemplateId, Template>,
    pub versions: History<VersionId, TemplateVersion>,
    pub workspaces: History<WorkspaceId, Workspace>,
    pub builds: History<BuildId, Build>,
    pub jobs: History<JobId, Job>,
    pub notifications: History<NotificationId, Notification>,
    pub chats: History<ChatId, Chat>,
    /// Each commit's rows, by kind, for same-transaction checks.
    pub commits: Vec<CommitRecord>,
    pub loader: Option<ClientId>,
    pub provisioner: Option<ClientId>,
}

fn push<K: Ord, T>(history: &mut History<K, T>, key: K, record: &CommitRecord, value: T) {
    history.entry(key).or_default().push(Versioned { seq: record.seq, at: record.at, client: record.client, value });
}

/// The last version committed strictly before `t`.
pub(crate) fn as_of<T>(versions: &[Versioned<T>], t: Timestamp) -> Option<&Versioned<T>> {
    versions.iter().rev().find(|v| v.at < t)
}

impl Model {
    pub fn build(world: &World, commits: Vec<CommitRecord>) -> Model {
        let mut model = Model {
            loader: *lock(&world.loader_client),
            provisioner: *lock(&world.provisioner_client),
            ..Model::default()
        };
        for record in &commits {
            for row in &record.rows {
                match row {
                    AuditRow::User(u) => push(&mut model.users, u.id, record, u.clone()),
                    AuditRow::Template(t) => push(&mut model.templates, t.id, record, t.clone()),
                    AuditRow::Version(v) => push(&mut model.versions, v.id, record, v.clone()),
                    AuditRow::Workspace(w) => push(&mut model.workspaces, w.id, record, w.clone()),
                    AuditRow::Build(b) => push(&mut model.builds, b.id, record, b.clone()),
                    AuditRow::Job(j) => push(&mut model.jobs, j.id, record, j.clone()),
                    AuditRow::Notification(n) => push(&mut model.notifications, n.id, record, n.clone()),
                    AuditRow::Chat(c) => push(&mut model.chats, c.id, record, c.clone()),
                    AuditRow::Preset(_) | AuditRow::Provisioner(_) | AuditRow::Setting { .. } => {}
                }
            }
        }
        model.commits = commits;
        model
    }

    /// Whether a commit came from the world loader (seeded, not the engine's).
    pub fn seeded(&self, client: ClientId) -> bool {
        Some(client) == self.loader
    }

    pub fn workspace_at(&self, id: WorkspaceId, t: Timestamp) -> Option<&Workspace> {
        self.workspaces.get(&id).and_then(|v| as_of(v, t)).map(|v| &v.value)
    }

    pub fn user_at(&self, id: engine::ids::UserId, t: Timestamp) -> Option<&User> {
        self.users.get(&id).and_then(|v| as_of(v, t)).map(|v| &v.value)
    }

    pub fn template_at(&self, id: TemplateId, t: Timestamp) -> Option<&Template> {
        self.templates.get(&id).and_then(|v| as_of(v, t)).map(|v| &v.value)
    }

    pub fn version(&self, id: VersionId) -> Option<&TemplateVersion> {
        self.versions.get(&id).and_then(|v| v.last()).map(|v| &v.value)
    }

    pub fn job_at(&self, id: JobId, t: Timestamp) -> Option<&Job> {
        self.jobs.get(&id).and_then(|v| as_of(v, t)).map(|v| &v.value)
    }

    /// Every build of a workspace that exists at `t`, by number.
    pub fn builds_of_at(&self, workspace: WorkspaceId, t: Timestamp) -> Vec<BuildWithJob> {
        let mut builds: Vec<BuildWithJob> = self
            .builds
            .values()
            .filter_map(|versions| as_of(versions, t))
            .filter(|v| v.value.workspace_id == workspace)
            .filter_map(|v| {
                let job = self.job_at(v.value.job_id, t)?;
                Some(BuildWithJob { build: v.value.clone(), job: job.clone() })
            })
            .collect();
        builds.sort_by_key(|b| (b.build.number, b.build.id));
        builds
    }

    pub fn latest_build_at(&self, workspace: WorkspaceId, t: Timestamp) -> Option<BuildWithJob> {
        self.builds_of_at(workspace, t).pop()
    }

    /// A non-archived chat names the workspace at `t`.
    pub fn has_live_chat_at(&self, workspace: WorkspaceId, t: Timestamp) -> bool {
        self.chats
            .values()
            .filter_map(|v| as_of(v, t))
            .any(|c| c.value.workspace_id == Some(workspace) && c.value.status != engine::model::ChatStatus::Archived)
    }
}

/// A workspace's status from its latest build (SCENARIOS.md, expect).
pub(crate) fn status_of(latest: Option<&BuildWithJob>) -> WorkspaceStatus {
    let Some(latest) = latest else { return WorkspaceStatus::New };
    match latest.job.status {
        JobStatus::Pending => WorkspaceStatus::Pending,
        JobStatus::Running => match latest.build.transition {
            Transition::Start => WorkspaceStatus::Starting,
            Transition::Stop => WorkspaceStatus::Stopping,
            Transition::Delete => WorkspaceStatus::Deleting,
        },
        JobStatus::Succeeded => match latest.build.transition {
            Transition::Start => WorkspaceStatus::Running,
            Transition::Stop => WorkspaceStatus::Stopped,
            Transition::Delete => WorkspaceStatus::Deleted,
        },
        JobStatus::Failed => WorkspaceStatus::Failed,
        JobStatus::Canceling => WorkspaceStatus::Canceling,
        JobStatus::Canceled => WorkspaceStatus::Canceled,
    }
}
