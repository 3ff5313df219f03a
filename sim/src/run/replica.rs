//! Engine replicas as madsim nodes: each incarnation draws its start offset,
//! opens its own pool on the shared database, starts the engine with a
//! counting spawner, and lives until a graceful shutdown (then proves no task
//! outlived it) or a crash (its node is killed: futures dropped, its client
//! cut off so none of its store calls lands afterwards).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use engine::events::{Event, EventSink, WorkspaceOutcome};
use engine::hash::fnv1_64;
use engine::runtime::{Clock, Spawner, TaskHandle, TokioSpawner};
use engine::store::sqlite::PoolConfig;
use engine::time::Span;
use engine::{Engine, EngineConfig};
use tokio::sync::oneshot;

use super::world::{lock, Incarnation, ReplicaSlot, ReplicaState, Violation, World};
use crate::trace::{Source, Subject};

/// The engine's spawner, counting live tasks (`no_task_after_shutdown`).
struct CountingSpawner {
    live: Arc<AtomicUsize>,
}

/// Decrements the live count when a task ends or is dropped (an in-memory
/// counter of the simulator, not a write).
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Spawner for CountingSpawner {
    fn spawn(&self, name: &'static str, task: Pin<Box<dyn Future<Output = ()> + Send + 'static>>) -> TaskHandle {
        self.live.fetch_add(1, Ordering::SeqCst);
        let live = Live(self.live.clone());
        TokioSpawner.spawn(
            name,
            Box::pin(async move {
                let _live = live;
                task.await;
            }),
        )
    }
}

/// Creates the replica's node; its init runs an incarnation (again on restart).
pub(crate) fn create(world: &Arc<World>, slot: &Arc<ReplicaSlot>) {
    let handle = madsim::runtime::Handle::current();
    let (world_for_init, slot_for_init) = (Arc::downgrade(world), slot.clone());
    let node = handle
        .create_node()
        .name(format!("replica-{}", slot.index))
        .init(move || {
            let (world, slot) = (world_for_init.clone(), slot_for_init.clone());
            async move {
                if let Some(world) = world.upgrade() {
                    incarnation(world, slot).await;
                }
            }
        })
        .build();
    *lock(&slot.node) = Some(node);
}

async fn incarnation(world: Arc<World>, slot: Arc<ReplicaSlot>) {
    let index = slot.index;
    let number = {
        let mut n = lock(&slot.incarnations);
        *n += 1;
        *n
    };
    *lock(&slot.state) = ReplicaState::Starting;
    let offset = lock(&world.rngs).below("replica_start", Span::from_secs(1));
    world.clock.sleep_until(world.now() + offset).await;

    let settings = world.scenario.settings.engine();
    let store = Arc::new(world.server.client(PoolConfig {
        size: settings.db_pool_size,
        acquire_timeout: settings.db_acquire_timeout,
        label: format!("r{index}.{number}"),
    }));
    world.faults.register(store.client_id(), index);
    lock(&world.clients).insert(store.client_id(), index);
    lock(&world.stores).push((index, store.clone()));
    let live = Arc::new(AtomicUsize::new(0));
    let events = Arc::new(ReplicaEvents { world: Arc::downgrade(&world), source: Source::Replica(index) });
    let id_seed = world.seed ^ fnv1_64(format!("replica-{index}-{number}").as_bytes());
    let engine = Engine::start(EngineConfig {
        store: store.clone(),
        clock: slot.clock.clone(),
        spawner: Arc::new(CountingSpawner { live: live.clone() }),
        settings,
        sink: world.sink.clone(),
        events,
        // "Job available" after each committed build, through the pubsub's faults.
        publisher: world.pubsub.publisher(Source::Replica(index)),
        id_seed,
    });
    let engine = match engine {
        Ok(engine) => engine,
        Err(error) => {
            world.note(Source::Replica(index), "refused", "engine did not start", error.to_string());
            *lock(&slot.state) = ReplicaState::Down;
            return;
        }
    };
    let (stop, stopped) = oneshot::channel();
    *lock(&slot.state) = ReplicaState::Up(Incarnation { store, api: engine.api().clone(), stop: Some(stop) });
    world.note(Source::Replica(index), "up", format!("incarnation {number}"), format!("skew {}", slot.clock.skew()));

    // Until a graceful shutdown is asked for (a crash drops this future).
    let _ = stopped.await;
    *lock(&slot.state) = ReplicaState::Stopping;
    let report = engine.shutdown().await;
    let left = live.load(Ordering::SeqCst);
    if left > 0 {
        world.violation(Violation {
            invariant: "no_task_after_shutdown",
            at: world.offset(),
            replica: Some(index),
            objects: vec![format!("r{index}")],
            message: format!("{left} task(s) of replica {index} still alive after its graceful shutdown returned"),
        });
    }
    *lock(&slot.state) = ReplicaState::Down;
    let how = if report.cancelled { "cancelled at the timeout" } else { "clean" };
    world.note(Source::Replica(index), "down", "graceful shutdown", how.to_owned());
}

/// Graceful shutdown; false if the replica is not up.
pub(crate) fn shutdown(world: &World, slot: &ReplicaSlot) -> bool {
    let stop = match &mut *lock(&slot.state) {
        ReplicaState::Up(incarnation) => incarnation.stop.take(),
        _ => None,
    };
    match stop {
        Some(stop) => {
            world.note(Source::Replica(slot.index), "shutdown", "stop signal", String::new());
            let _ = stop.send(());
            true
        }
        None => false,
    }
}

/// Crash: the node dies at once and its client is cut off.
pub(crate) fn crash(world: &World, slot: &ReplicaSlot) -> bool {
    let client = match &*lock(&slot.state) {
        ReplicaState::Up(incarnation) => Some(incarnation.store.client_id()),
        ReplicaState::Starting | ReplicaState::Stopping => None,
        ReplicaState::Down => return false,
    };
    if let Some(node) = lock(&slot.node).as_ref() {
        madsim::runtime::Handle::current().kill(node.id());
    }
    if let Some(client) = client {
        world.server.disconnect_client(client);
    }
    *lock(&slot.state) = ReplicaState::Down;
    world.note(Source::Replica(slot.index), "crash", "killed", String::new());
    true
}

/// Starts a stopped replica again (a fresh incarnation, fresh offset).
pub(crate) fn restart(world: &World, slot: &ReplicaSlot, why: &str) -> bool {
    if !matches!(*lock(&slot.state), ReplicaState::Down) {
        return false;
    }
    *lock(&slot.state) = ReplicaState::Starting;
    world.note(Source::Replica(slot.index), "restart", why.to_owned(), String::new());
    if let Some(node) = lock(&slot.node).as_ref() {
        madsim::runtime::Handle::current().restart(node.id());
    }
    true
}

/// Engine events into the trace (decisions and effects; idle polls left out).
pub(crate) struct ReplicaEvents {
    pub world: Weak<World>,
    pub source: Source,
}

impl EventSink for ReplicaEvents {
    fn emit(&self, event: Event) {
        let Some(world) = self.world.upgrade() else { return };
        if let Some((kind, subject, stable, detail)) = describe(&event) {
            world.record(self.source, kind, subject, stable, detail);
        }
    }
}

type Described = (&'static str, Vec<Subject>, String, String);

fn describe(event: &Event) -> Option<Described> {
    let ws = |id| vec![Subject::Workspace(id)];
    Some(match event {
        Event::TickStarted { .. } => return None,
        Event::TickFinished { stats } => {
            let busy = stats.transitions
                + stats.marks
                + stats.reminders
                + stats.errors
                + stats.lock_busy
                + stats.lost_races
                + stats.conflicts
                + stats.no_provisioner
                + stats.cancelled;
            if busy == 0 && !stats.scan_failed {
                return None;
            }
            let mut stable = format!(
                "transitions={} marks={} reminders={} errors={} lock_busy={} lost_races={} conflicts={} no_provisioner={}",
                stats.transitions,
                stats.marks,
                stats.reminders,
                stats.errors,
                stats.lock_busy,
                stats.lost_races,
                stats.conflicts,
                stats.no_provisioner
            );
            if stats.scan_failed {
                stable.push_str(" scan_failed");
            }
            if stats.cancelled > 0 {
                stable.push_str(&format!(" cancelled={}", stats.cancelled));
            }
            let detail = stats.tick_at.map(|t| format!("tick_at {t}")).unwrap_or_default();
            ("tick", Vec::new(), stable, detail)
        }
        Event::Workspace { workspace, tick_at, outcome } => {
            let stable = match outcome {
                WorkspaceOutcome::Nothing | WorkspaceOutcome::Waiting | WorkspaceOutcome::Gone => return None,
                WorkspaceOutcome::Transition { transition, reason, .. } => format!("{transition} {reason}"),
                WorkspaceOutcome::Reminded { notified, .. } => {
                    if *notified {
                        "reminded".to_owned()
                    } else {
                        "reminder marker only (chat)".to_owned()
                    }
                }
                WorkspaceOutcome::Error { kind, .. } => format!("error {kind}"),
                other => other.name().to_owned(),
            };
            let detail = match outcome {
                WorkspaceOutcome::Reminded { stop_at, .. } => format!("stop_at {stop_at} tick_at {tick_at}"),
                WorkspaceOutcome::Error { detail, .. } => detail.clone(),
                _ => format!("tick_at {tick_at}"),
            };
            ("decide", ws(*workspace), stable, detail)
        }
        Event::BuildInserted { workspace, number, transition, reason, .. } => {
            ("build", ws(*workspace), format!("{transition} {reason}"), format!("#{number}"))
        }
        Event::NotificationEnqueued { kind, workspace, inserted } => (
            "notify",
            workspace.map(ws).unwrap_or_default(),
            format!("{kind}{}", if *inserted { "" } else { " (already there)" }),
            String::new(),
        ),
        Event::ActivityBumped { workspace, from, to } => {
            ("bump", ws(*workspace), String::new(), format!("{from} -> {to}"))
        }
        Event::UsageFlushed { workspaces, written, at } => {
            if *written == 0 {
                return None;
            }
            ("usage", Vec::new(), format!("flushed {workspaces} wrote {written}"), format!("at {at}"))
        }
        Event::UsageFlushFailed { workspaces, error } => {
            ("usage", Vec::new(), format!("flush failed, {workspaces} requeued"), error.clone())
        }
        Event::NotificationDelivered { kind, .. } => ("marked", Vec::new(), format!("{kind} delivered"), String::new()),
        Event::NotificationDeliveryFailed { kind, retry_at, .. } => {
            ("marked", Vec::new(), format!("{kind} retry"), format!("at {retry_at}"))
        }
        Event::JobAcquired { workspace, .. } => ("job", ws(*workspace), "acquired".to_owned(), String::new()),
        Event::JobCompleted { workspace, status, .. } => ("job", ws(*workspace), format!("{status}"), String::new()),
        Event::Refused { action, reason } => ("refused", Vec::new(), (*action).to_owned(), reason.clone()),
        Event::LoopError { loop_name, error } => ("error", Vec::new(), (*loop_name).to_owned(), error.clone()),
        Event::ShutdownStarted => ("shutdown", Vec::new(), "started".to_owned(), String::new()),
        Event::ShutdownFinished { cancelled } => (
            "shutdown",
            Vec::new(),
            if *cancelled { "finished (cancelled in-flight work)" } else { "finished" }.to_owned(),
            String::new(),
        ),
    })
}

/// Whether a replica's index names a live one.
pub(crate) fn live(world: &World, index: u32) -> Option<Arc<ReplicaSlot>> {
    world.replicas.get(index as usize).filter(|slot| slot.is_up()).cloned()
}

pub(crate) fn now_of(slot: &ReplicaSlot) -> engine::time::Timestamp {
    slot.clock.now()
}
