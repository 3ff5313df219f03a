//! The engine's loops end to end on the SQLite store under tokio's paused time:
//! fixed-rate ticks, reminders delivered through the outbox, the usage flush at
//! graceful shutdown, and shutdown within its budget leaving no task alive.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use engine::events::{Event, RecordedEvents};
use engine::ids::{IdGen, SharedIds, WorkspaceId};
use engine::model::*;
use engine::notify::{DeliveryError, NotificationSink};
use engine::pubsub::NoPubSub;
use engine::runtime::{Clock, MonotonicClock, Spawner, TaskHandle, TokioSpawner};
use engine::settings::Settings;
use engine::store::sqlite::{HookDecision, PoolConfig, SqliteServer, SqliteStore, StatementHook, StatementInfo};
use engine::store::{Store, Subsystem, Tx, TxOptions};
use engine::time::{Span, Timestamp};
use engine::{Engine, EngineConfig};

fn at(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).expect("instant")
}

/// Counts the engine's live tasks: the simulator's `no_task_after_shutdown`
/// in miniature.
#[derive(Default)]
struct CountingSpawner {
    live: Arc<AtomicUsize>,
}

struct LiveGuard(Arc<AtomicUsize>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Spawner for CountingSpawner {
    fn spawn(&self, name: &'static str, task: Pin<Box<dyn Future<Output = ()> + Send + 'static>>) -> TaskHandle {
        self.live.fetch_add(1, Ordering::SeqCst);
        let guard = LiveGuard(self.live.clone());
        TokioSpawner.spawn(
            name,
            Box::pin(async move {
                let _guard = guard;
                task.await;
            }),
        )
    }
}

#[derive(Default)]
struct Sink {
    delivered: Mutex<Vec<Notification>>,
}

#[async_trait::async_trait]
impl NotificationSink for Sink {
    async fn deliver(&self, notification: &Notification) -> Result<(), DeliveryError> {
        self.delivered.lock().unwrap().push(notification.clone());
        Ok(())
    }
}

struct Fixture {
    clock: Arc<MonotonicClock>,
    server: Arc<SqliteServer>,
    store: Arc<SqliteStore>,
    workspace: WorkspaceId,
}

/// One running workspace with a 17:00 deadline and a 30m reminder lead.
async fn fixture(start: Timestamp) -> Fixture {
    let clock = Arc::new(MonotonicClock::new(start));
    let server = SqliteServer::open_in_memory(clock.clone()).unwrap();
    let store =
        Arc::new(server.client(PoolConfig { size: 10, acquire_timeout: Span::from_secs(5), label: "replica".into() }));
    let ids = SharedIds::new(IdGen::from_seed(5));
    let mut tx = store.begin(TxOptions::new(Subsystem::Admin)).await.unwrap();
    let alice = User::new(ids.next(), "alice", start);
    tx.insert_user(&alice).await.unwrap();
    let template_id = ids.next();
    let version =
        TemplateVersion { id: ids.next(), template_id, name: "v1".into(), parameters: Vec::new(), created_at: start };
    let template =
        Template { autostop_notify: Span::from_mins(30), ..Template::new(template_id, "dev", version.id, start) };
    tx.insert_template(&template).await.unwrap();
    tx.insert_version(&version).await.unwrap();
    let workspace = Workspace {
        id: ids.next(),
        owner_id: alice.id,
        template_id,
        name: "w1".into(),
        ttl: Some(Span::from_hours(8)),
        autostart: None,
        automatic_updates: AutomaticUpdates::Never,
        last_used_at: at("2026-01-05T09:00:00Z"),
        dormant_at: None,
        deleting_at: None,
        next_start_at: None,
        deleted: false,
        created_at: at("2026-01-05T09:00:00Z"),
    };
    tx.insert_workspace(&workspace).await.unwrap();
    let build = Build {
        id: ids.next(),
        workspace_id: workspace.id,
        number: 1,
        transition: Transition::Start,
        reason: BuildReason::Initiator,
        initiator_id: alice.id,
        version_id: version.id,
        job_id: ids.next(),
        preset_id: None,
        parameters: Parameters::new(),
        created_at: at("2026-01-05T09:00:00Z"),
        deadline: Some(at("2026-01-05T17:00:00Z")),
        max_deadline: None,
        notified_autostop_deadline: None,
        agent_ready_at: None,
    };
    let job = Job {
        id: build.job_id,
        build_id: build.id,
        workspace_id: workspace.id,
        template_id,
        version_id: version.id,
        status: JobStatus::Succeeded,
        is_prebuild: false,
        created_at: build.created_at,
        started_at: Some(build.created_at),
        completed_at: Some(build.created_at),
        canceled_at: None,
        worker_id: None,
        error: None,
    };
    tx.insert_build(&build, &job).await.unwrap();
    tx.commit().await.unwrap();
    Fixture { clock, server, store, workspace: workspace.id }
}

fn start_engine(
    fixture: &Fixture,
    spawner: Arc<CountingSpawner>,
    sink: Arc<Sink>,
    events: Arc<RecordedEvents>,
) -> Engine<SqliteStore> {
    Engine::start(EngineConfig {
        store: fixture.store.clone(),
        clock: fixture.clock.clone(),
        spawner,
        settings: Settings::default(),
        sink,
        events,
        publisher: Arc::new(NoPubSub),
        id_seed: 1,
    })
    .expect("valid settings")
}

#[tokio::test(start_paused = true)]
async fn loops_remind_deliver_and_flush_usage_at_shutdown() {
    let start = at("2026-01-05T16:20:00.400Z");
    let fixture = fixture(start).await;
    let spawner = Arc::new(CountingSpawner::default());
    let sink = Arc::new(Sink::default());
    let events = Arc::new(RecordedEvents::default());
    let engine = start_engine(&fixture, spawner.clone(), sink.clone(), events.clone());
    assert_eq!(spawner.live.load(Ordering::SeqCst), 3, "lifecycle, usage flush, delivery");

    // Ticks at 16:21:00.4, 16:22:00.4, …: the one at 16:30:00.4 reminds.
    fixture.clock.sleep_until(at("2026-01-05T16:31:00Z")).await;
    let delivered = sink.delivered.lock().unwrap().clone();
    assert_eq!(delivered.len(), 1, "one reminder delivered");
    assert_eq!(delivered[0].kind, NotificationKind::AutostopReminder);
    let ticks: Vec<Timestamp> = events
        .snapshot()
        .into_iter()
        .filter_map(|e| match e {
            Event::TickStarted { now, .. } => Some(now),
            _ => None,
        })
        .collect();
    assert_eq!(ticks.first(), Some(&at("2026-01-05T16:21:00.400Z")), "first tick one interval after start");
    assert!(ticks.windows(2).all(|w| w[1] - w[0] == Span::from_mins(1)), "fixed rate: {ticks:?}");

    // Usage marked between flushes is written once more at shutdown.
    fixture.clock.sleep_until(at("2026-01-05T16:31:10Z")).await;
    engine.usage().mark(fixture.workspace);
    let report = engine.shutdown().await;
    assert!(!report.cancelled);
    assert_eq!(spawner.live.load(Ordering::SeqCst), 0, "no task outlives shutdown");
    let mut tx = fixture.store.begin(TxOptions::new(Subsystem::Admin)).await.unwrap();
    let ws = tx.workspace(fixture.workspace).await.unwrap().unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(ws.last_used_at, at("2026-01-05T16:31:10Z"));
}

/// Hangs every lifecycle statement after the lock for an hour.
struct HangLifecycle;

impl StatementHook for HangLifecycle {
    fn on_statement(&self, info: &StatementInfo) -> HookDecision {
        if info.subsystem == Subsystem::Lifecycle && info.op == "workspace" {
            return HookDecision::Hang { until: at("2026-01-05T18:00:00Z") };
        }
        HookDecision::Proceed { latency: Span::ZERO }
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_cancels_in_flight_work_at_the_timeout() {
    let start = at("2026-01-05T16:29:30Z");
    let fixture = fixture(start).await;
    fixture.server.set_hook(Some(Arc::new(HangLifecycle)));
    let spawner = Arc::new(CountingSpawner::default());
    let sink = Arc::new(Sink::default());
    let events = Arc::new(RecordedEvents::default());
    let engine = start_engine(&fixture, spawner.clone(), sink, events.clone());
    // The tick at 16:30:30 hangs inside its workspace transaction.
    fixture.clock.sleep_until(at("2026-01-05T16:31:00Z")).await;
    let asked = fixture.clock.now();
    let report = engine.shutdown().await;
    let took = fixture.clock.now() - asked;
    assert!(report.cancelled, "the hung tick was cancelled");
    assert_eq!(took, Settings::default().shutdown_timeout, "shutdown returns at its budget");
    assert_eq!(spawner.live.load(Ordering::SeqCst), 0, "no task outlives shutdown");
    fixture.server.set_hook(None);
    // The cancelled transaction rolled back: nothing written, no lock held.
    let mut tx = fixture.store.begin(TxOptions::new(Subsystem::Admin)).await.unwrap();
    assert!(tx.try_advisory_xact_lock(engine::hash::LockKey::lifecycle(fixture.workspace)).await.unwrap());
    let latest = tx.latest_build(fixture.workspace).await.unwrap().unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(latest.build.notified_autostop_deadline, None);
    assert!(events.snapshot().iter().any(|e| matches!(e, Event::ShutdownFinished { cancelled: true })));
}
