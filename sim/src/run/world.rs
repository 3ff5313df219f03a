//! The shared state of one simulated run: the true clock, the database, the
//! seeded random streams, the trace, the name registry, the replicas' slots,
//! and what the simulated neighbours record for the checkers.
//!
//! Everything runs on madsim's one thread; locks here are never held across an
//! `.await`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use engine::api::Api;
use engine::ids::{JobId, TemplateId, UserId, VersionId, WorkspaceId};
use engine::runtime::{Clock, MonotonicClock};
use engine::store::sqlite::{ClientId, SqliteServer, SqliteStore};
use engine::time::{Span, Timestamp};
use tokio::sync::oneshot;

use super::faults::FaultLayer;
use super::rng::Rngs;
use super::sink::SimSink;
use crate::scenario::{DurationRange, Scenario};
use crate::trace::{Names, Source, Subject, Trace, TraceEvent};

/// Starts a task of the simulator itself (timeline, chaos, agents) on the
/// current madsim node. The engine's tasks never come here: they go through
/// the replica's counting spawner.
#[allow(clippy::disallowed_methods)] // the simulator's runtime edge
pub(crate) fn spawn_sim<F>(future: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    drop(madsim::task::spawn(future));
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A violation of an invariant (SCENARIOS.md's table).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    pub invariant: &'static str,
    /// True simulated time since `start`.
    pub at: Span,
    pub replica: Option<u32>,
    pub objects: Vec<String>,
    pub message: String,
}

/// A running incarnation of a replica.
pub(crate) struct Incarnation {
    pub store: Arc<SqliteStore>,
    pub api: Arc<Api<SqliteStore>>,
    pub stop: Option<oneshot::Sender<()>>,
}

pub(crate) enum ReplicaState {
    /// Not started yet (waiting for its start offset), or restarting.
    Starting,
    Up(Incarnation),
    /// Graceful shutdown in progress.
    Stopping,
    /// Stopped gracefully (`shutdown`) or crashed.
    Down,
}

pub(crate) struct ReplicaSlot {
    pub index: u32,
    /// The replica's own clock (true time plus its skew); kept across restarts.
    pub clock: Arc<MonotonicClock>,
    pub node: Mutex<Option<madsim::runtime::NodeHandle>>,
    pub state: Mutex<ReplicaState>,
    pub incarnations: Mutex<u32>,
}

impl ReplicaSlot {
    pub fn is_up(&self) -> bool {
        matches!(*lock(&self.state), ReplicaState::Up(_))
    }

    /// The running incarnation's API and client, if up.
    pub fn api(&self) -> Option<(Arc<Api<SqliteStore>>, Arc<SqliteStore>)> {
        match &*lock(&self.state) {
            ReplicaState::Up(inc) => Some((inc.api.clone(), inc.store.clone())),
            _ => None,
        }
    }
}

/// Names in the scenario → ids in the database (names resolve at their instant).
#[derive(Debug, Default)]
pub(crate) struct Registry {
    pub users: BTreeMap<String, UserId>,
    pub templates: BTreeMap<String, TemplateId>,
    /// (template name, version name) → id.
    pub versions: BTreeMap<(String, String), VersionId>,
    /// Non-deleted workspaces by name.
    pub workspaces: BTreeMap<String, WorkspaceId>,
    /// The hidden admin that performs admin actions of the timeline.
    pub admin: Option<UserId>,
}

/// A `provisioner_fault` with its window in true time.
#[derive(Clone, Debug)]
pub(crate) struct ProvisionerFaultWindow {
    /// `None`: every template.
    pub template: Option<String>,
    pub failure_rate: Option<f64>,
    pub build_duration: Option<DurationRange>,
    pub offline: bool,
    pub from: Timestamp,
    pub until: Timestamp,
}

/// A job a simulated provisioner ran: what the `liveness` check reads.
#[derive(Clone, Debug)]
pub(crate) struct JobRun {
    pub job: JobId,
    pub workspace: WorkspaceId,
    /// True time it was taken, and the duration it was assigned.
    pub taken_at: Timestamp,
    pub duration: Span,
    pub finished_at: Option<Timestamp>,
}

pub(crate) struct World {
    pub scenario: Arc<Scenario>,
    pub seed: u64,
    pub start: Timestamp,
    /// True simulated time (no skew): the database's clock.
    pub clock: Arc<MonotonicClock>,
    pub server: Arc<SqliteServer>,
    pub rngs: Mutex<Rngs>,
    pub trace: Mutex<Trace>,
    pub names: Mutex<Names>,
    pub registry: Mutex<Registry>,
    pub faults: Arc<FaultLayer>,
    pub sink: Arc<SimSink>,
    pub pubsub: Arc<super::pubsub::SimPubSub>,
    pub replicas: Vec<Arc<ReplicaSlot>>,
    pub violations: Mutex<Vec<Violation>>,
    pub jobs: Mutex<Vec<JobRun>>,
    pub provisioner_faults: Mutex<Vec<ProvisionerFaultWindow>>,
    /// Clients that seeded the world or observe it (their commits are not the engine's).
    pub loader_client: Mutex<Option<ClientId>>,
    /// The loader's client, kept for the simulator's own reads.
    pub observer: Mutex<Option<Arc<SqliteStore>>>,
    /// Clients of the simulated provisioners and agents.
    pub provisioner_client: Mutex<Option<ClientId>>,
    /// Where each engine client belongs: client → replica.
    pub clients: Mutex<BTreeMap<ClientId, u32>>,
    /// Every incarnation's client, for its pool's timeout log.
    pub stores: Mutex<Vec<(u32, Arc<SqliteStore>)>>,
    /// Windows during which a `pool_hog` or store fault was active (true time).
    pub pool_excuses: Mutex<Vec<(Timestamp, Timestamp)>>,
    /// End of `run_for` (faults and chaos stop) and of the whole run.
    pub settle_at: Timestamp,
    pub end_at: Timestamp,
}

impl World {
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn offset(&self) -> Span {
        self.now() - self.start
    }

    pub fn in_chaos(&self) -> bool {
        self.now() < self.settle_at
    }

    pub fn draw(&self, purpose: &str, range: DurationRange) -> Span {
        lock(&self.rngs).span(purpose, range)
    }

    pub fn chance(&self, purpose: &str, rate: f64) -> bool {
        lock(&self.rngs).chance(purpose, rate)
    }

    /// Appends a trace event at the current true time.
    pub fn record(&self, source: Source, kind: &'static str, subject: Vec<Subject>, stable: String, detail: String) {
        let event = TraceEvent { at: self.offset(), source, kind, subject, detail, stable };
        lock(&self.trace).push(event);
    }

    pub fn note(&self, source: Source, kind: &'static str, stable: impl Into<String>, detail: impl Into<String>) {
        self.record(source, kind, Vec::new(), stable.into(), detail.into());
    }

    /// Records a violation, in the trace at the instant it happened (after
    /// the events of that instant), even when a checker finds it at the end.
    pub fn violation(&self, violation: Violation) {
        let source = violation.replica.map_or(Source::World, Source::Replica);
        let event = TraceEvent {
            at: violation.at,
            source,
            kind: "violation",
            subject: violation.objects.iter().map(|o| Subject::Name(o.clone())).collect(),
            detail: violation.message.clone(),
            stable: violation.invariant.to_owned(),
        };
        {
            let mut trace = lock(&self.trace);
            let position = trace.events.partition_point(|e| e.at <= violation.at);
            trace.events.insert(position, event);
        }
        lock(&self.violations).push(violation);
    }

    /// The lowest replica that is up.
    pub fn lowest_live(&self) -> Option<u32> {
        self.replicas.iter().find(|r| r.is_up()).map(|r| r.index)
    }

    pub fn workspace_id(&self, name: &str) -> Option<WorkspaceId> {
        lock(&self.registry).workspaces.get(name).copied()
    }

    pub fn user_id(&self, name: &str) -> Option<UserId> {
        lock(&self.registry).users.get(name).copied()
    }

    /// The `provisioner_fault` windows active now.
    pub fn provisioner_faults_now(&self) -> Vec<ProvisionerFaultWindow> {
        let now = self.now();
        lock(&self.provisioner_faults).iter().filter(|f| f.from <= now && now < f.until).cloned().collect()
    }

    /// Whether a `pool_hog` or store fault covered `at`.
    pub fn pool_excused(&self, at: Timestamp) -> bool {
        lock(&self.pool_excuses).iter().any(|(from, to)| *from <= at && at <= *to)
    }
}
