//! The engine of one replica: starts its loops (lifecycle tick, usage flush,
//! notification delivery) on the host's spawner, serves its API, and shuts
//! down within `shutdown_timeout` leaving no task behind.

use std::future::Future;
use std::sync::Arc;

use crate::api::Api;
use crate::events::{Event, SharedEvents};
use crate::ids::{IdGen, SharedIds};
use crate::lifecycle::{LifecycleExecutor, UsageTracker};
use crate::notify::{self, NotificationSink};
use crate::pubsub::SharedPublisher;
use crate::runtime::{FixedRate, SharedClock, SharedSpawner, Shutdown, ShutdownSignal, TaskHandle};
use crate::settings::{SettingError, Settings};
use crate::store::Store;
use crate::time::{Span, Timestamp};

/// What the host gives the engine (see the crate documentation's host contract).
pub struct EngineConfig<S: Store> {
    /// This replica's handle on the database (its pool).
    pub store: Arc<S>,
    /// The replica's only view of time.
    pub clock: SharedClock,
    /// Starts the engine's loops; every task has ended when `shutdown` returns.
    pub spawner: SharedSpawner,
    /// Checked by [`Settings::validate`] in [`Engine::start`].
    pub settings: Settings,
    /// Where outbox rows are delivered (at least once).
    pub sink: Arc<dyn NotificationSink>,
    /// Where the engine reports its decisions and effects.
    pub events: SharedEvents,
    /// Where "job available" goes after each committed build insert (at most
    /// once, may drop: provisioners also poll). [`crate::pubsub::NoPubSub`]
    /// when nobody listens, [`crate::pubsub::LocalPubSub`] in one process,
    /// `PgPubSub` across replicas.
    pub publisher: SharedPublisher,
    /// Seeds the replica's id generator (the simulator derives it from its
    /// seed). Ids are v4 UUIDs either way, but replicas sharing a database
    /// must use distinct seeds, or they draw the same ids (the daemon derives
    /// one from its process id and start instant).
    pub id_seed: u64,
}

/// How shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// The budget ran out and in-flight work was cancelled.
    pub cancelled: bool,
}

/// A running engine replica.
pub struct Engine<S: Store> {
    api: Arc<Api<S>>,
    executor: Arc<LifecycleExecutor<S>>,
    usage: Arc<UsageTracker<S>>,
    clock: SharedClock,
    settings: Settings,
    events: SharedEvents,
    shutdown: Shutdown,
    tasks: Vec<TaskHandle>,
    started_at: Timestamp,
}

impl<S: Store> Engine<S> {
    /// Validates the settings and starts every loop.
    pub fn start(config: EngineConfig<S>) -> Result<Engine<S>, SettingError> {
        config.settings.validate()?;
        let EngineConfig { store, clock, spawner, settings, sink, events, publisher, id_seed } = config;
        let ids = SharedIds::new(IdGen::for_purpose(id_seed, "engine"));
        let usage = Arc::new(UsageTracker::new(store.clone(), events.clone()));
        let executor = Arc::new(LifecycleExecutor::new(
            store.clone(),
            settings.clone(),
            ids.clone(),
            events.clone(),
            publisher.clone(),
        ));
        let api = Arc::new(Api::new(store.clone(), ids, events.clone(), publisher, usage.clone()));
        let shutdown = Shutdown::new();
        let started_at = clock.now();
        let mut engine =
            Engine { api, executor, usage, clock, settings, events, shutdown, tasks: Vec::new(), started_at };
        engine.spawn_lifecycle_loop(&spawner);
        engine.spawn_usage_loop(&spawner);
        engine.spawn_delivery_loop(&spawner, store, sink);
        Ok(engine)
    }

    pub fn api(&self) -> &Arc<Api<S>> {
        &self.api
    }

    pub fn executor(&self) -> &Arc<LifecycleExecutor<S>> {
        &self.executor
    }

    pub fn usage(&self) -> &Arc<UsageTracker<S>> {
        &self.usage
    }

    pub fn started_at(&self) -> Timestamp {
        self.started_at
    }

    /// Graceful shutdown: stop dispatching, let in-flight work end, flush usage
    /// once; after `shutdown_timeout`, cancel what is still in flight (its
    /// transactions roll back). Returns once every task has ended.
    pub async fn shutdown(self) -> ShutdownReport {
        self.events.emit(Event::ShutdownStarted);
        self.shutdown.stop();
        let deadline = self.clock.now() + self.settings.shutdown_timeout;
        let mut all = Box::pin(join_all(self.tasks));
        let cancelled = tokio::select! {
            biased;
            _ = &mut all => false,
            _ = self.clock.sleep_until(deadline) => true,
        };
        if cancelled {
            self.shutdown.cancel();
            all.await;
        }
        self.events.emit(Event::ShutdownFinished { cancelled });
        ShutdownReport { cancelled }
    }

    fn spawn_lifecycle_loop(&mut self, spawner: &SharedSpawner) {
        let executor = self.executor.clone();
        let task = fixed_rate_loop(
            self.clock.clone(),
            self.started_at,
            self.settings.lifecycle_interval,
            self.shutdown.subscribe(),
            move |now, signal| {
                let executor = executor.clone();
                async move {
                    executor.tick(now, &signal).await;
                }
            },
            |_| async {},
        );
        self.tasks.push(spawner.spawn("lifecycle", Box::pin(task)));
    }

    fn spawn_usage_loop(&mut self, spawner: &SharedSpawner) {
        let usage = self.usage.clone();
        let final_usage = self.usage.clone();
        let clock = self.clock.clone();
        let final_clock = self.clock.clone();
        let task = fixed_rate_loop(
            self.clock.clone(),
            self.started_at,
            self.settings.usage_flush_interval,
            self.shutdown.subscribe(),
            move |now, mut signal| {
                let usage = usage.clone();
                let clock = clock.clone();
                async move {
                    tokio::select! {
                        biased;
                        _ = signal.cancelled() => {}
                        _ = usage.flush(now, clock.as_ref()) => {}
                    }
                }
            },
            // Once more at graceful shutdown (§7), within the budget.
            move |mut signal| {
                let usage = final_usage.clone();
                let clock = final_clock.clone();
                async move {
                    let now = clock.now();
                    tokio::select! {
                        biased;
                        _ = signal.cancelled() => {}
                        _ = usage.flush(now, clock.as_ref()) => {}
                    }
                }
            },
        );
        self.tasks.push(spawner.spawn("usage_flush", Box::pin(task)));
    }

    fn spawn_delivery_loop(&mut self, spawner: &SharedSpawner, store: Arc<S>, sink: Arc<dyn NotificationSink>) {
        let events = self.events.clone();
        let retry = self.settings.notification_retry;
        let task = fixed_rate_loop(
            self.clock.clone(),
            self.started_at,
            self.settings.notification_poll_interval,
            self.shutdown.subscribe(),
            move |now, mut signal| {
                let store = store.clone();
                let sink = sink.clone();
                let events = events.clone();
                async move {
                    let pass = notify::deliver_due(store.as_ref(), sink.as_ref(), now, retry, events.as_ref());
                    tokio::select! {
                        biased;
                        _ = signal.cancelled() => {}
                        result = pass => {
                            if let Err(error) = result {
                                events.emit(Event::LoopError { loop_name: "notification_delivery", error: error.to_string() });
                            }
                        }
                    }
                }
            },
            |_| async {},
        );
        self.tasks.push(spawner.spawn("notification_delivery", Box::pin(task)));
    }
}

/// Runs `body` at the instants of a [`FixedRate`] schedule until shutdown
/// stops it, then `on_stop` once.
async fn fixed_rate_loop<B, BF, F, FF>(
    clock: SharedClock,
    anchor: Timestamp,
    interval: Span,
    mut signal: ShutdownSignal,
    mut body: B,
    on_stop: F,
) where
    B: FnMut(Timestamp, ShutdownSignal) -> BF,
    BF: Future<Output = ()>,
    F: FnOnce(ShutdownSignal) -> FF,
    FF: Future<Output = ()>,
{
    let mut rate = FixedRate::new(anchor, interval);
    loop {
        let at = rate.next(clock.now());
        tokio::select! {
            biased;
            _ = signal.stopped() => break,
            _ = clock.sleep_until(at) => {}
        }
        if signal.is_stopping() {
            break;
        }
        body(clock.now(), signal.clone()).await;
    }
    on_stop(signal).await;
}

async fn join_all(tasks: Vec<TaskHandle>) {
    for task in tasks {
        task.join().await;
    }
}
