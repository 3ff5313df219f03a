//! Embedding the engine in a host program: the host contract end to end.
//!
//! The host picks a store (here the embedded SQLite store in a temporary
//! file, so this runs anywhere), implements a [`NotificationSink`] (here it
//! prints) and optionally an [`EventSink`], picks a pubsub for "job
//! available" notices (here [`LocalPubSub`]: one process), starts the [`Engine`], and calls
//! its [`Api`](engine::api::Api) as users, agents and provisioners would. The
//! example seeds a user and a template, creates a workspace, runs a
//! provisioner for its start job, waits for the autostop reminder to be
//! delivered, reports agent activity (flushed into `last_used_at`), stops the
//! workspace, runs the provisioner again, and shuts down.
//!
//! Run it with `cargo run -p engine --example embed` (a few seconds).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use engine::api::{JobResult, NewWorkspace};
use engine::events::{Event, EventSink, WorkspaceOutcome};
use engine::ids::{IdGen, ProvisionerId, SharedIds, TemplateId, UserId, WorkspaceId};
use engine::model::*;
use engine::notify::{DeliveryError, NotificationSink};
use engine::pubsub::{LocalPubSub, Subscriber, Topic};
use engine::rules::bump::ActivitySource;
use engine::runtime::{SharedClock, SystemClock, TokioSpawner};
use engine::settings::Settings;
use engine::store::sqlite::{PoolConfig, SqliteServer, SqliteStore};
use engine::store::{Store, Subsystem, Tx, TxOptions};
use engine::time::{Span, Timestamp};
use engine::{Engine, EngineConfig};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The host's delivery channel: here, standard output. A real host sends
/// e-mail or calls a webhook, using the dedupe key as the idempotency key
/// (delivery is at least once).
#[derive(Default)]
struct PrintSink {
    delivered: AtomicUsize,
}

#[async_trait::async_trait]
impl NotificationSink for PrintSink {
    async fn deliver(&self, notification: &Notification) -> Result<(), DeliveryError> {
        println!("notification  {} (key {}): {:?}", notification.kind, notification.dedupe_key.0, notification.payload);
        self.delivered.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// What the engine decided, as the host sees it (the daemon counts these
/// into Prometheus metrics and logs them).
struct PrintEvents;

impl EventSink for PrintEvents {
    fn emit(&self, event: Event) {
        match event {
            Event::BuildInserted { number, transition, reason, .. } => {
                println!("build         #{number} {transition} ({reason})")
            }
            Event::Workspace { outcome: WorkspaceOutcome::Reminded { stop_at, .. }, .. } => {
                println!("tick          reminder committed for a stop at {stop_at}")
            }
            Event::ActivityBumped { from, to, .. } => println!("activity      deadline {from} -> {to}"),
            Event::ShutdownFinished { cancelled } => println!("shutdown      finished (cancelled: {cancelled})"),
            _ => {}
        }
    }
}

/// Seeds what the engine's API does not create: a user and a template.
async fn seed(store: &SqliteStore, ids: &SharedIds, now: Timestamp) -> Result<(UserId, TemplateId), Error> {
    let mut tx = store.begin(TxOptions::new(Subsystem::Admin)).await?;
    let alice = User {
        id: ids.next(),
        name: "alice".into(),
        status: UserStatus::Active,
        roles: Roles::default(),
        quiet_hours: String::new(),
        created_at: now,
    };
    tx.insert_user(&alice).await?;
    let template_id: TemplateId = ids.next();
    let version =
        TemplateVersion { id: ids.next(), template_id, name: "v1".into(), parameters: Vec::new(), created_at: now };
    let template = Template {
        id: template_id,
        name: "dev".into(),
        active_version_id: version.id,
        default_ttl: Span::from_hours(8),
        // An owner counts as active (and is not reminded: activity moves the
        // deadline) for min(15m, activity_bump / 2) after using the workspace;
        // a 2s bump makes the example's owner idle after a second.
        activity_bump: Span::from_secs(2),
        // Remind an hour before autostop: the one-hour workspace below is due at once.
        autostop_notify: Span::from_hours(1),
        failure_ttl: Span::ZERO,
        time_til_dormant: Span::ZERO,
        time_til_dormant_autodelete: Span::ZERO,
        allow_user_autostart: true,
        allow_user_autostop: true,
        autostart_days: WeekdaySet::ALL,
        autostop_requirement: AutostopRequirement::default(),
        require_active_version: false,
        deprecated: false,
        deleted: false,
        created_at: now,
    };
    tx.insert_template(&template).await?;
    tx.insert_version(&version).await?;
    tx.commit().await?;
    Ok((alice.id, template_id))
}

/// A provisioner's loop for one job: acquire, "build", complete. It wakes on
/// a "job available" notice, and also polls every second: notices may be
/// dropped (subscribed first, so a job committed meanwhile still wakes it).
async fn provision_one(
    engine: &Engine<SqliteStore>,
    clock: &SharedClock,
    pubsub: &LocalPubSub,
    provisioner: ProvisionerId,
) -> Result<(), Error> {
    let api = engine.api();
    let mut notices = pubsub.subscribe(Topic::JobAvailable);
    api.provisioner_heartbeat(provisioner, "example-provisioner", clock.now()).await?;
    let deadline = clock.now() + Span::from_secs(10);
    loop {
        if let Some(job) = api.acquire_job(provisioner, clock.now()).await? {
            let done = api.complete_job(job.id, JobResult::Succeeded, clock.now()).await?;
            println!("provisioner   job {} {}", done.id, done.status);
            return Ok(());
        }
        if clock.now() > deadline {
            return Err("no job to acquire".into());
        }
        tokio::select! {
            biased;
            _ = notices.recv() => {}
            _ = clock.sleep_until(clock.now() + Span::from_secs(1)) => {}
        }
    }
}

async fn latest_deadline(engine: &Engine<SqliteStore>, workspace: WorkspaceId) -> Result<Option<Timestamp>, Error> {
    let state = engine.api().workspace(workspace).await?;
    Ok(state.latest.and_then(|latest| latest.build.deadline))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let clock: SharedClock = Arc::new(SystemClock);
    let server = SqliteServer::open_file(&dir.path().join("engine.db"), clock.clone())?;
    let store =
        Arc::new(server.client(PoolConfig { size: 10, acquire_timeout: Span::from_secs(5), label: "example".into() }));
    let ids = SharedIds::new(IdGen::from_seed(7));
    let (alice, template) = seed(&store, &ids, clock.now()).await?;

    let sink = Arc::new(PrintSink::default());
    let settings = Settings {
        lifecycle_interval: Span::from_secs(1),
        usage_flush_interval: Span::from_secs(1),
        notification_poll_interval: Span::from_secs(1),
        shutdown_timeout: Span::from_secs(5),
        ..Settings::default()
    };
    let pubsub = LocalPubSub::new();
    let engine = Engine::start(EngineConfig {
        store: store.clone(),
        clock: clock.clone(),
        spawner: Arc::new(TokioSpawner),
        settings,
        sink: sink.clone(),
        events: Arc::new(PrintEvents),
        publisher: Arc::new(pubsub.clone()),
        id_seed: 1,
    })?;
    let provisioner: ProvisionerId = ids.next();

    // A user creates a workspace that stops after an hour: its start build
    // waits for a provisioner.
    let new = NewWorkspace {
        name: "alice-dev".into(),
        owner: alice,
        template,
        version: None,
        preset: None,
        parameters: Parameters::new(),
        ttl: Some(Some(Span::from_hours(1))),
        autostart: None,
        automatic_updates: AutomaticUpdates::Never,
    };
    let workspace = engine.api().create_workspace(alice, new, clock.now()).await?;
    provision_one(&engine, &clock, &pubsub, provisioner).await?;
    println!("workspace     {} running until {:?}", workspace.name, latest_deadline(&engine, workspace.id).await?);

    // The next tick finds the stop within the reminder window; the delivery
    // loop hands the reminder to the sink.
    let give_up_at = clock.now() + Span::from_secs(15);
    while sink.delivered.load(Ordering::SeqCst) == 0 {
        if clock.now() > give_up_at {
            return Err("the reminder was not delivered".into());
        }
        clock.sleep_until(clock.now() + Span::from_millis(100)).await;
    }

    // The agent reports a session: usage is marked (the next usage flush
    // writes `last_used_at`) and the deadline would move if it were within
    // the bump of now.
    let used_before = engine.api().workspace(workspace.id).await?.workspace.last_used_at;
    let source = ActivitySource::AgentUsage { sessions: 1 };
    let bumped = engine.api().report_activity(workspace.id, source, clock.now()).await?;
    println!("activity      reported (deadline moved: {bumped:?})");
    let give_up_at = clock.now() + Span::from_secs(10);
    loop {
        let used = engine.api().workspace(workspace.id).await?.workspace.last_used_at;
        if used > used_before {
            println!("usage         last_used_at {used_before} -> {used}");
            break;
        }
        if clock.now() > give_up_at {
            return Err("the usage mark was not flushed".into());
        }
        clock.sleep_until(clock.now() + Span::from_millis(100)).await;
    }

    // The user stops the workspace; the provisioner runs the stop.
    engine.api().build(workspace.id, alice, Transition::Stop, clock.now()).await?;
    provision_one(&engine, &clock, &pubsub, provisioner).await?;

    let report = engine.shutdown().await;
    println!("done          (shutdown cancelled in-flight work: {})", report.cancelled);
    drop(server);
    Ok(())
}
