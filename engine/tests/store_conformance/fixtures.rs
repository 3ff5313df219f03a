//! Records for the conformance cases: fixed instants, seeded ids, and a seeding
//! helper that commits a small world through the store's own operations.

use engine::ids::{IdGen, JobId, NotificationId, UserId, VersionId, WorkspaceId};
use engine::model::{
    AutomaticUpdates, Build, BuildReason, DedupeKey, Job, JobStatus, NewNotification, NotificationKind,
    NotificationPayload, Roles, Template, TemplateVersion, Transition, User, UserStatus, Workspace,
};
use engine::store::{Store, Subsystem, Tx, TxOptions};
use engine::time::{Span, Timestamp};

/// The instant every fixture is relative to.
pub fn t0() -> Timestamp {
    Timestamp::parse_rfc3339("2026-01-05T09:00:00Z").expect("t0")
}

pub fn at(offset: Span) -> Timestamp {
    t0() + offset
}

pub fn ids() -> IdGen {
    IdGen::from_seed(0x5eed)
}

pub fn user(ids: &mut IdGen, name: &str) -> User {
    User {
        id: ids.next_id(),
        name: name.to_owned(),
        status: UserStatus::Active,
        roles: Roles::default(),
        quiet_hours: String::new(),
        created_at: t0(),
    }
}

pub fn template(ids: &mut IdGen, name: &str, active_version_id: VersionId) -> Template {
    Template { activity_bump: Span::ZERO, ..Template::new(ids.next_id(), name, active_version_id, t0()) }
}

pub fn version(id: VersionId, template: &Template) -> TemplateVersion {
    TemplateVersion { id, template_id: template.id, name: "v1".to_owned(), parameters: Vec::new(), created_at: t0() }
}

pub fn workspace(ids: &mut IdGen, owner: UserId, template: &Template, name: &str) -> Workspace {
    Workspace {
        id: ids.next_id(),
        owner_id: owner,
        template_id: template.id,
        name: name.to_owned(),
        ttl: None,
        autostart: None,
        automatic_updates: AutomaticUpdates::Never,
        last_used_at: t0(),
        dormant_at: None,
        deleting_at: None,
        next_start_at: None,
        deleted: false,
        created_at: t0(),
    }
}

/// A build of `workspace` and its job (succeeded, unless changed).
pub fn build(
    ids: &mut IdGen,
    workspace: &Workspace,
    number: i32,
    transition: Transition,
    version: VersionId,
) -> (Build, Job) {
    let build_id = ids.next_id();
    let job_id: JobId = ids.next_id();
    let created_at = t0() + Span::from_secs(i64::from(number));
    let build = Build {
        id: build_id,
        workspace_id: workspace.id,
        number,
        transition,
        reason: BuildReason::Initiator,
        initiator_id: workspace.owner_id,
        version_id: version,
        job_id,
        preset_id: None,
        parameters: Default::default(),
        created_at,
        deadline: None,
        max_deadline: None,
        notified_autostop_deadline: None,
        agent_ready_at: None,
    };
    let job = Job {
        id: job_id,
        build_id,
        workspace_id: workspace.id,
        template_id: workspace.template_id,
        version_id: version,
        status: JobStatus::Succeeded,
        is_prebuild: workspace.is_prebuild(),
        created_at,
        started_at: Some(created_at),
        completed_at: Some(created_at),
        canceled_at: None,
        worker_id: None,
        error: None,
    };
    (build, job)
}

pub fn notification(user: UserId, key: &str) -> NewNotification {
    NewNotification {
        kind: NotificationKind::WorkspaceDeleted,
        user_id: user,
        dedupe_key: DedupeKey(key.to_owned()),
        workspace_id: None,
        payload: NotificationPayload::WorkspaceDeleted { workspace: key.to_owned(), reason: "test".to_owned() },
    }
}

pub fn notification_id(ids: &mut IdGen) -> NotificationId {
    ids.next_id()
}

/// A committed world: one user, one template and version, `count` workspaces
/// (`ws-0`, `ws-1`, …) each with a succeeded start build number 1.
pub struct World {
    pub ids: IdGen,
    pub user: User,
    pub template: Template,
    pub version: TemplateVersion,
    pub workspaces: Vec<Workspace>,
}

impl World {
    pub fn ws(&self, index: usize) -> &Workspace {
        &self.workspaces[index]
    }
    pub fn ws_id(&self, index: usize) -> WorkspaceId {
        self.workspaces[index].id
    }
}

pub async fn seed<S: Store>(store: &S, count: usize) -> World {
    let mut ids = ids();
    let user = user(&mut ids, "alice");
    let version_id: VersionId = ids.next_id();
    let template = template(&mut ids, "base", version_id);
    let version = version(version_id, &template);
    let mut tx = store.begin(TxOptions::new(Subsystem::Admin)).await.expect("begin seed");
    tx.insert_user(&user).await.expect("seed user");
    tx.insert_template(&template).await.expect("seed template");
    tx.insert_version(&version).await.expect("seed version");
    let mut workspaces = Vec::new();
    for index in 0..count {
        let ws = workspace(&mut ids, user.id, &template, &format!("ws-{index}"));
        tx.insert_workspace(&ws).await.expect("seed workspace");
        let (b, j) = build(&mut ids, &ws, 1, Transition::Start, version.id);
        tx.insert_build(&b, &j).await.expect("seed build");
        workspaces.push(ws);
    }
    tx.commit().await.expect("commit seed");
    World { ids, user, template, version, workspaces }
}

/// Commits one change to a workspace on its own transaction.
pub async fn commit_update<S: Store>(store: &S, workspace: &Workspace) {
    let mut tx = store.begin(TxOptions::new(Subsystem::Api)).await.expect("begin");
    tx.update_workspace(workspace).await.expect("update");
    tx.commit().await.expect("commit");
}

pub fn with_ttl(workspace: &Workspace, minutes: i64) -> Workspace {
    Workspace { ttl: Some(Span::from_mins(minutes)), ..workspace.clone() }
}
