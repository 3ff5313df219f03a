//! Simulated provisioners and agents, on a node of their own with their own
//! connections (replica pools and store faults do not touch them).
//!
//! `count` workers poll for jobs every second (users' jobs first, oldest first,
//! through the engine's own acquire operation), run each for its drawn
//! `build_duration`, fail at `failure_rate`, and report the end through the
//! engine's job-completion operation at true time. Every 10s each reports
//! itself seen. After a start build succeeds, its agent reports ready
//! `agent_ready_after` later. Jobs seeded `running` are adopted at once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};

use engine::api::{Api, ApiError, JobResult};
use engine::events::NoEvents;
use engine::ids::{IdGen, JobId, ProvisionerId, SharedIds};
use engine::lifecycle::UsageTracker;
use engine::model::{Job, JobStatus, Transition};
use engine::pubsub::Topic;
use engine::runtime::Clock;
use engine::store::sqlite::{PoolConfig, SqliteStore};
use engine::store::{Store, Subsystem, Tx, TxOptions};
use engine::time::{Span, Timestamp};

use super::replica::ReplicaEvents;
use super::world::{lock, spawn_sim, JobRun, World};
use crate::scenario::DurationRange;
use crate::trace::{Source, Subject};

const POLL_INTERVAL: Span = Span::from_secs(1);
const SEEN_INTERVAL: Span = Span::from_secs(10);
/// Attempts to report a job's end before giving up (each a second apart).
const COMPLETE_ATTEMPTS_MAX: u32 = 120;

struct Shared {
    world: Weak<World>,
    /// One API per worker, so the trace names the worker that acted.
    apis: Vec<Arc<Api<SqliteStore>>>,
    store: Arc<SqliteStore>,
    adopt: Mutex<VecDeque<JobId>>,
}

fn daemon_id(index: u32) -> ProvisionerId {
    let mut bytes = [0u8; 16];
    bytes[0] = 0x70;
    bytes[12..16].copy_from_slice(&(index + 1).to_be_bytes());
    ProvisionerId::from_bytes(bytes)
}

/// Starts the provisioner node: workers and the seen heartbeat.
pub(crate) fn start(world: &Arc<World>, running_jobs: Vec<JobId>) {
    let count = world.scenario.provisioners.count;
    let store = Arc::new(world.server.client(PoolConfig {
        size: count.max(1) + 2,
        acquire_timeout: Span::from_secs(60),
        label: "provisioners".into(),
    }));
    world.faults.exempt(store.client_id());
    *lock(&world.provisioner_client) = Some(store.client_id());
    let ids = SharedIds::new(IdGen::for_purpose(world.seed, "provisioners"));
    let usage = Arc::new(UsageTracker::new(store.clone(), Arc::new(NoEvents)));
    let apis = (0..count.max(1))
        .map(|index| {
            let source = Source::Provisioner(index);
            let events = Arc::new(ReplicaEvents { world: Arc::downgrade(world), source });
            // Completing a job inserts no build; were it to, it would publish too.
            Arc::new(Api::new(store.clone(), ids.clone(), events, world.pubsub.publisher(source), usage.clone()))
        })
        .collect();
    let shared = Arc::new(Shared {
        world: Arc::downgrade(world),
        apis,
        store,
        adopt: Mutex::new(running_jobs.into_iter().collect()),
    });
    let handle = madsim::runtime::Handle::current();
    let node = handle.create_node().name("provisioners").build();
    if count == 0 {
        return;
    }
    node.spawn(seen_loop(shared.clone(), count));
    for index in 0..count {
        node.spawn(worker(shared.clone(), index));
    }
}

fn offline(world: &World) -> bool {
    world.provisioner_faults_now().iter().any(|f| f.offline)
}

async fn seen_loop(shared: Arc<Shared>, count: u32) {
    loop {
        let Some(world) = shared.world.upgrade() else { return };
        if !offline(&world) {
            for index in 0..count {
                let _ = shared.apis[0].provisioner_heartbeat(daemon_id(index), &format!("p{index}"), world.now()).await;
            }
        }
        let next = world.now() + SEEN_INTERVAL;
        let clock = world.clock.clone();
        drop(world);
        clock.sleep_until(next).await;
    }
}

async fn worker(shared: Arc<Shared>, index: u32) {
    let wake = match shared.world.upgrade() {
        Some(world) => world.pubsub.subscribe(Topic::JobAvailable),
        None => return,
    };
    // The last write to the jobs table when a poll found nothing: until the
    // table changes another poll would find nothing again, so it is skipped
    // (the result is the same; only the simulation's cost differs).
    let mut idle_at_seq = None;
    loop {
        let Some(world) = shared.world.upgrade() else { return };
        let clock = world.clock.clone();
        let adopted = if offline(&world) { None } else { lock(&shared.adopt).pop_front() };
        let seq = world.server.table_write_seq("provisioner_jobs");
        let job = if offline(&world) {
            None
        } else if let Some(adopted) = adopted {
            load_job(&shared, adopted).await
        } else if idle_at_seq == Some(seq) {
            None
        } else {
            match shared.apis[index as usize].acquire_job(daemon_id(index), world.now()).await {
                Ok(None) => {
                    idle_at_seq = Some(seq);
                    None
                }
                Ok(job) => job,
                Err(_) => None,
            }
        };
        match job {
            Some(job) => run_job(&shared, &world, index, job).await,
            None => {
                let next = world.now() + POLL_INTERVAL;
                drop(world);
                tokio::select! {
                    biased;
                    () = wake.notified() => {}
                    () = clock.sleep_until(next) => {}
                }
            }
        }
    }
}

async fn load_job(shared: &Shared, id: JobId) -> Option<Job> {
    let mut tx = shared.store.begin(TxOptions::read_only(Subsystem::Provisioner)).await.ok()?;
    let job = tx.job(id).await.ok().flatten();
    let _ = tx.rollback().await;
    job.filter(|j| !j.status.is_terminal())
}

/// The template's name of a job, for per-template overrides.
fn template_name(world: &World, job: &Job) -> Option<String> {
    lock(&world.registry).templates.iter().find(|(_, id)| **id == job.template_id).map(|(name, _)| name.clone())
}

fn job_shape(world: &World, job: &Job) -> (DurationRange, f64) {
    let provisioners = &world.scenario.provisioners;
    let template = template_name(world, job);
    let over = template.as_ref().and_then(|name| provisioners.templates.get(name));
    let mut duration = over.and_then(|o| o.build_duration).unwrap_or(provisioners.build_duration);
    let mut rate = over.and_then(|o| o.failure_rate).unwrap_or(provisioners.failure_rate);
    for fault in world.provisioner_faults_now() {
        if fault.template.is_none() || fault.template == template {
            if let Some(d) = fault.build_duration {
                duration = d;
            }
            if let Some(r) = fault.failure_rate {
                rate = r;
            }
        }
    }
    (duration, rate)
}

async fn run_job(shared: &Shared, world: &Arc<World>, index: u32, job: Job) {
    let (range, rate) = job_shape(world, &job);
    let duration = world.draw("build_duration", range);
    let fails = world.chance("build_failure", rate);
    let taken_at = world.now();
    lock(&world.jobs).push(JobRun { job: job.id, workspace: job.workspace_id, taken_at, duration, finished_at: None });
    world.record(
        Source::Provisioner(index),
        "run",
        vec![Subject::Workspace(job.workspace_id)],
        if fails { "will fail" } else { "will succeed" }.to_owned(),
        format!("for {duration}"),
    );
    world.clock.sleep_until(taken_at + duration).await;
    let result =
        if fails { JobResult::Failed { error: "simulated build failure".into() } } else { JobResult::Succeeded };
    let mut finished = None;
    for _ in 0..COMPLETE_ATTEMPTS_MAX {
        match shared.apis[index as usize].complete_job(job.id, result.clone(), world.now()).await {
            Ok(done) => {
                finished = Some(done);
                break;
            }
            Err(ApiError::Refused(_)) => break,
            Err(_) => world.clock.sleep_until(world.now() + POLL_INTERVAL).await,
        }
    }
    let now = world.now();
    if let Some(run) = lock(&world.jobs).iter_mut().rev().find(|r| r.job == job.id) {
        run.finished_at = Some(now);
    }
    let Some(done) = finished else { return };
    if done.status == JobStatus::Succeeded && !job.is_prebuild && is_start(shared, &done).await {
        let after = world.scenario.settings.agent_ready_after;
        let (world_ref, api, workspace) =
            (Arc::downgrade(world), shared.apis[index as usize].clone(), job.workspace_id);
        spawn_sim(async move {
            let Some(world) = world_ref.upgrade() else { return };
            let ready_at: Timestamp = world.now() + after;
            let clock = world.clock.clone();
            drop(world);
            clock.sleep_until(ready_at).await;
            for _ in 0..10 {
                let Some(world) = world_ref.upgrade() else { return };
                if api.report_agent_ready(workspace, world.now()).await.is_ok() {
                    world.record(
                        Source::Provisioner(index),
                        "agent",
                        vec![Subject::Workspace(workspace)],
                        "ready".into(),
                        String::new(),
                    );
                    return;
                }
                let next = world.now() + POLL_INTERVAL;
                drop(world);
                clock.sleep_until(next).await;
            }
        });
    }
}

async fn is_start(shared: &Shared, job: &Job) -> bool {
    let Ok(mut tx) = shared.store.begin(TxOptions::read_only(Subsystem::Provisioner)).await else { return false };
    let build = tx.build(job.build_id).await.ok().flatten();
    let _ = tx.rollback().await;
    build.is_some_and(|b| b.build.transition == Transition::Start)
}
