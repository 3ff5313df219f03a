//! A small world for driver tests: one in-memory database, replicas with their
//! own clocks and pools, seeding helpers, and a provisioner that runs jobs on
//! command. Time is tokio's paused test time, so sleeps are instant and exact.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use engine::api::{Api, JobResult};
use engine::events::{Event, RecordedEvents, SharedEvents, TickStats, WorkspaceOutcome};
use engine::ids::{IdGen, JobId, ProvisionerId, SharedIds, TemplateId, UserId, VersionId, WorkspaceId};
use engine::lifecycle::{LifecycleExecutor, UsageTracker};
use engine::model::*;
use engine::pubsub::{Publisher, Topic};
use engine::runtime::{Clock, MonotonicClock, ShutdownSignal};
use engine::settings::Settings;
use engine::store::sqlite::{AuditRow, PoolConfig, SqliteServer, SqliteStore};
use engine::store::{Store, Subsystem, Tx, TxOptions};
use engine::time::{Span, Timestamp};

pub fn at(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap_or_else(|| panic!("bad instant {text}"))
}

pub fn mins(n: i64) -> Span {
    Span::from_mins(n)
}
pub fn hours(n: i64) -> Span {
    Span::from_hours(n)
}
pub fn secs(n: i64) -> Span {
    Span::from_secs(n)
}

/// What one replica published, checked against the server's commit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub topic: Topic,
    pub job: String,
    /// The job's row was committed when the notice went out.
    pub committed: bool,
}

/// Every replica's notices, in order, each judged when published: the commit
/// log (drained here, so one log serves all replicas) must already hold the
/// job it names.
pub struct PublishLog {
    server: Arc<SqliteServer>,
    committed_jobs: Mutex<BTreeSet<JobId>>,
    published: Mutex<Vec<(usize, Published)>>,
}

impl PublishLog {
    fn record(&self, replica: usize, topic: Topic, payload: &str) {
        let mut committed_jobs = self.committed_jobs.lock().unwrap();
        for commit in self.server.take_commits() {
            for row in commit.rows {
                if let AuditRow::Job(job) = row {
                    committed_jobs.insert(job.id);
                }
            }
        }
        let committed = committed_jobs.iter().any(|job| job.to_string() == payload);
        self.published.lock().unwrap().push((replica, Published { topic, job: payload.to_owned(), committed }));
    }
}

/// One replica's [`Publisher`]: into the world's [`PublishLog`].
struct ReplicaPublisher {
    index: usize,
    log: Arc<PublishLog>,
}

impl Publisher for ReplicaPublisher {
    fn publish(&self, topic: Topic, payload: &str) {
        self.log.record(self.index, topic, payload);
    }
}

/// One engine replica: its clock, pool, executor, API and recorded events.
pub struct Replica {
    pub index: usize,
    pub clock: Arc<MonotonicClock>,
    pub store: Arc<SqliteStore>,
    pub executor: LifecycleExecutor<SqliteStore>,
    pub api: Api<SqliteStore>,
    pub usage: Arc<UsageTracker<SqliteStore>>,
    pub events: Arc<RecordedEvents>,
    log: Arc<PublishLog>,
}

impl Replica {
    /// What this replica published, oldest first.
    pub fn published(&self) -> Vec<Published> {
        let log = self.log.published.lock().unwrap();
        log.iter().filter(|(replica, _)| *replica == self.index).map(|(_, published)| published.clone()).collect()
    }

    pub async fn tick(&self) -> TickStats {
        self.executor.tick(self.clock.now(), &ShutdownSignal::never()).await
    }

    /// A tick as of a given `now` (a retried tick at the same frozen instant).
    pub async fn tick_at(&self, now: Timestamp) -> TickStats {
        self.executor.tick(now, &ShutdownSignal::never()).await
    }

    pub fn outcomes(&self) -> Vec<(WorkspaceId, WorkspaceOutcome)> {
        self.events
            .snapshot()
            .into_iter()
            .filter_map(|e| match e {
                Event::Workspace { workspace, outcome, .. } => Some((workspace, outcome)),
                _ => None,
            })
            .collect()
    }
}

pub struct World {
    pub clock: Arc<MonotonicClock>,
    pub server: Arc<SqliteServer>,
    pub publish_log: Arc<PublishLog>,
    pub settings: Settings,
    pub replicas: Vec<Replica>,
    pub admin: UserId,
    pub ids: SharedIds,
    pub provisioner: ProvisionerId,
    names: BTreeMap<String, WorkspaceId>,
}

impl World {
    /// A world whose true time starts at `start`.
    pub fn new(start: Timestamp, replicas: usize, settings: Settings) -> World {
        let clock = Arc::new(MonotonicClock::new(start));
        let server = SqliteServer::open_in_memory(clock.clone()).expect("open database");
        server.enable_commit_log();
        let publish_log = Arc::new(PublishLog {
            server: server.clone(),
            committed_jobs: Mutex::default(),
            published: Mutex::default(),
        });
        let ids = SharedIds::new(IdGen::from_seed(99));
        let mut world = World {
            clock,
            server,
            publish_log,
            settings,
            replicas: Vec::new(),
            admin: ids.next(),
            ids,
            provisioner: ProvisionerId::from_bytes([7; 16]),
            names: BTreeMap::new(),
        };
        for index in 0..replicas {
            world.add_replica(index as u64);
        }
        world
    }

    pub fn add_replica(&mut self, seed: u64) {
        let clock = Arc::new(self.clock.sibling(Span::ZERO));
        let store = Arc::new(self.server.client(PoolConfig {
            size: self.settings.db_pool_size,
            acquire_timeout: self.settings.db_acquire_timeout,
            label: format!("replica-{seed}"),
        }));
        let events = Arc::new(RecordedEvents::default());
        let shared: SharedEvents = events.clone();
        let ids = SharedIds::new(IdGen::from_seed(1000 + seed));
        let usage = Arc::new(UsageTracker::new(store.clone(), shared.clone()));
        let index = self.replicas.len();
        let publisher = Arc::new(ReplicaPublisher { index, log: self.publish_log.clone() });
        let executor = LifecycleExecutor::new(
            store.clone(),
            self.settings.clone(),
            ids.clone(),
            shared.clone(),
            publisher.clone(),
        );
        let api = Api::new(store.clone(), ids, shared, publisher, usage.clone());
        let log = self.publish_log.clone();
        self.replicas.push(Replica { index, clock, store, executor, api, usage, events, log });
    }

    /// Every statement takes 1ms from now on, so concurrent transactions
    /// interleave statement by statement (instants written then drift by ms).
    pub fn interleave(&self) {
        self.server.set_hook(Some(Arc::new(Latency(Span::from_millis(1)))));
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Advances true time to `to` (paused tokio time jumps there).
    pub async fn advance_to(&self, to: Timestamp) {
        self.clock.sleep_until(to).await;
        assert_eq!(self.clock.now(), to, "clock did not land on {to}");
    }

    pub fn replica(&self, index: usize) -> &Replica {
        &self.replicas[index]
    }

    pub fn id(&self, name: &str) -> WorkspaceId {
        *self.names.get(name).unwrap_or_else(|| panic!("no workspace {name}"))
    }

    pub async fn tx(&self) -> <SqliteStore as Store>::Tx {
        self.replicas[0].store.begin(TxOptions::new(Subsystem::Admin)).await.expect("begin")
    }

    // ---- seeding -------------------------------------------------------------

    pub async fn seed_admin(&self) {
        let admin = User {
            id: self.admin,
            name: "admin".into(),
            status: UserStatus::Active,
            roles: Roles { admin: true, template_admin: true },
            quiet_hours: String::new(),
            created_at: self.now(),
        };
        let mut tx = self.tx().await;
        tx.insert_user(&admin).await.unwrap();
        tx.commit().await.unwrap();
    }

    pub async fn user(&self, name: &str, status: UserStatus) -> UserId {
        let user = User { status, ..User::new(self.ids.next(), name, self.now()) };
        let mut tx = self.tx().await;
        tx.insert_user(&user).await.unwrap();
        tx.commit().await.unwrap();
        user.id
    }

    /// A template with one version `v1` (and more if `extra_versions` name them);
    /// the last version is active.
    pub async fn template(&self, name: &str, edit: impl FnOnce(&mut Template)) -> (TemplateId, VersionId) {
        let id: TemplateId = self.ids.next();
        let version = TemplateVersion {
            id: self.ids.next(),
            template_id: id,
            name: "v1".into(),
            parameters: Vec::new(),
            created_at: self.now(),
        };
        let mut template = Template::new(id, name, version.id, self.now());
        edit(&mut template);
        let mut tx = self.tx().await;
        tx.insert_template(&template).await.unwrap();
        tx.insert_version(&version).await.unwrap();
        tx.commit().await.unwrap();
        (id, version.id)
    }

    pub async fn add_version(&self, template: TemplateId, name: &str, parameters: Vec<ParameterSpec>) -> VersionId {
        let version = TemplateVersion {
            id: self.ids.next(),
            template_id: template,
            name: name.into(),
            parameters,
            created_at: self.now(),
        };
        let mut tx = self.tx().await;
        tx.insert_version(&version).await.unwrap();
        let mut t = tx.template(template).await.unwrap().unwrap();
        t.active_version_id = version.id;
        tx.update_template(&t).await.unwrap();
        tx.commit().await.unwrap();
        version.id
    }

    /// A workspace whose latest build is `latest` (transition, job status,
    /// created, completed), with deadlines as given.
    pub async fn workspace(&mut self, spec: WorkspaceSpec) -> WorkspaceId {
        let id: WorkspaceId = self.ids.next();
        let mut tx = self.tx().await;
        let template = tx.template(spec.template).await.unwrap().unwrap();
        let workspace = Workspace {
            id,
            owner_id: spec.owner,
            template_id: spec.template,
            name: spec.name.clone(),
            ttl: spec.ttl,
            autostart: spec.autostart.clone(),
            automatic_updates: spec.automatic_updates,
            last_used_at: spec.last_used.unwrap_or(self.now()),
            dormant_at: spec.dormant_at,
            deleting_at: spec.deleting_at,
            next_start_at: spec.next_start_at,
            deleted: false,
            created_at: spec.created.unwrap_or(self.now()),
        };
        tx.insert_workspace(&workspace).await.unwrap();
        if let Some(build) = spec.build {
            let version_id = build.version.unwrap_or(template.active_version_id);
            let b = Build {
                id: self.ids.next(),
                workspace_id: id,
                number: 1,
                transition: build.transition,
                reason: BuildReason::Initiator,
                initiator_id: spec.owner,
                version_id,
                job_id: self.ids.next(),
                preset_id: None,
                parameters: build.parameters.clone(),
                created_at: build.created,
                deadline: build.deadline,
                max_deadline: build.max_deadline,
                notified_autostop_deadline: None,
                agent_ready_at: None,
            };
            let finished = build.status.is_terminal();
            let job = Job {
                id: b.job_id,
                build_id: b.id,
                workspace_id: id,
                template_id: spec.template,
                version_id,
                status: build.status,
                is_prebuild: spec.owner == engine::ids::PREBUILDS_USER_ID,
                created_at: build.created,
                started_at: Some(build.created),
                completed_at: if finished { Some(build.completed.unwrap_or(build.created)) } else { None },
                canceled_at: None,
                worker_id: None,
                error: None,
            };
            tx.insert_build(&b, &job).await.unwrap();
        }
        tx.commit().await.unwrap();
        self.names.insert(spec.name, id);
        id
    }

    // ---- provisioners ------------------------------------------------------------

    /// The provisioner reports itself seen now.
    pub async fn provisioner_seen(&self) {
        self.replicas[0].api.provisioner_heartbeat(self.provisioner, "prov", self.now()).await.unwrap();
    }

    /// Takes every pending job and completes it with `result` now.
    pub async fn run_jobs(&self, result: JobResult) -> usize {
        let api = &self.replicas[0].api;
        let mut done = 0;
        while let Some(job) = api.acquire_job(self.provisioner, self.now()).await.unwrap() {
            api.complete_job(job.id, result.clone(), self.now()).await.unwrap();
            done += 1;
        }
        done
    }

    // ---- reading -------------------------------------------------------------------

    pub async fn ws(&self, name: &str) -> Workspace {
        let mut tx = self.tx().await;
        let ws = tx.workspace(self.id(name)).await.unwrap().unwrap();
        tx.rollback().await.unwrap();
        ws
    }

    pub async fn builds(&self, name: &str) -> Vec<BuildWithJob> {
        let mut tx = self.tx().await;
        let mut builds = tx.builds_of_workspace(self.id(name), 1000).await.unwrap();
        tx.rollback().await.unwrap();
        builds.reverse();
        builds
    }

    pub async fn latest(&self, name: &str) -> BuildWithJob {
        self.builds(name).await.pop().expect("a build")
    }

    /// Builds of `name` with a given reason.
    pub async fn builds_with(&self, name: &str, reason: BuildReason) -> Vec<BuildWithJob> {
        self.builds(name).await.into_iter().filter(|b| b.build.reason == reason).collect()
    }

    pub async fn notifications(&self) -> Vec<Notification> {
        let mut tx = self.tx().await;
        let rows = tx.notifications(None, 10_000).await.unwrap();
        tx.rollback().await.unwrap();
        rows
    }

    pub async fn notifications_of(&self, kind: NotificationKind) -> Vec<Notification> {
        self.notifications().await.into_iter().filter(|n| n.kind == kind).collect()
    }
}

/// Every statement takes a little simulated time, so concurrent transactions
/// interleave statement by statement as they would against a server.
pub struct Latency(pub Span);

impl engine::store::sqlite::StatementHook for Latency {
    fn on_statement(&self, _info: &engine::store::sqlite::StatementInfo) -> engine::store::sqlite::HookDecision {
        engine::store::sqlite::HookDecision::Proceed { latency: self.0 }
    }
}

/// What a seeded workspace looks like.
#[derive(Clone)]
pub struct WorkspaceSpec {
    pub name: String,
    pub owner: UserId,
    pub template: TemplateId,
    pub ttl: Option<Span>,
    pub autostart: Option<String>,
    pub automatic_updates: AutomaticUpdates,
    pub last_used: Option<Timestamp>,
    pub created: Option<Timestamp>,
    pub dormant_at: Option<Timestamp>,
    pub deleting_at: Option<Timestamp>,
    pub next_start_at: Option<Timestamp>,
    pub build: Option<BuildSpec>,
}

#[derive(Clone)]
pub struct BuildSpec {
    pub transition: Transition,
    pub status: JobStatus,
    pub created: Timestamp,
    pub completed: Option<Timestamp>,
    pub deadline: Option<Timestamp>,
    pub max_deadline: Option<Timestamp>,
    pub version: Option<VersionId>,
    pub parameters: Parameters,
}

impl WorkspaceSpec {
    pub fn new(name: &str, owner: UserId, template: TemplateId) -> Self {
        WorkspaceSpec {
            name: name.into(),
            owner,
            template,
            ttl: Some(hours(8)),
            autostart: None,
            automatic_updates: AutomaticUpdates::Never,
            last_used: None,
            created: None,
            dormant_at: None,
            deleting_at: None,
            next_start_at: None,
            build: None,
        }
    }

    pub fn build(mut self, transition: Transition, status: JobStatus, created: Timestamp) -> Self {
        self.build = Some(BuildSpec {
            transition,
            status,
            created,
            completed: None,
            deadline: None,
            max_deadline: None,
            version: None,
            parameters: Parameters::new(),
        });
        self
    }

    pub fn deadline(mut self, deadline: Timestamp) -> Self {
        self.build.as_mut().expect("build first").deadline = Some(deadline);
        self
    }

    pub fn max_deadline(mut self, max: Timestamp) -> Self {
        self.build.as_mut().expect("build first").max_deadline = Some(max);
        self
    }

    pub fn completed(mut self, completed: Timestamp) -> Self {
        self.build.as_mut().expect("build first").completed = Some(completed);
        self
    }
}
