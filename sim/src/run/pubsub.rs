//! Simulated pubsub: the engine's [`Publisher`]. The "job available" notice
//! a replica's engine publishes after committing a build (lifecycle.md §2
//! step 5) reaches the provisioners, who then poll at once instead of at their
//! next second. Notices can be dropped, delayed or reordered (`pubsub_fault`,
//! chaos `pubsub_drop_rate` and `pubsub_delay`); provisioners also poll every
//! second, so a lost notice only delays a build.
//!
//! One [`SimPubSub`] serves the world; each replica (and the provisioners'
//! API) publishes through its own [`SimPublisher`], so the trace names who
//! sent a dropped or delayed notice.

use std::sync::{Arc, Mutex, OnceLock, Weak};

use engine::pubsub::{Publisher, Topic};
use engine::runtime::Clock;
use engine::time::{Span, Timestamp};
use tokio::sync::Notify;

use super::world::{lock, spawn_sim, World};
use crate::scenario::{DurationRange, PubsubFaultKind};
use crate::trace::Source;

/// A `pubsub_fault` window.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PubsubFault {
    pub kind: PubsubFaultKind,
    pub rate: f64,
    pub delay: Option<DurationRange>,
    pub from: Timestamp,
    pub until: Timestamp,
}

#[derive(Default)]
pub(crate) struct SimPubSub {
    subscribers: Mutex<Vec<(Topic, Arc<Notify>)>>,
    faults: Mutex<Vec<PubsubFault>>,
    chaos_drop_rate: Mutex<f64>,
    chaos_delay: Mutex<Option<DurationRange>>,
    world: OnceLock<Weak<World>>,
}

/// Upper bound of the extra delay a `reorder` fault gives a notice.
const REORDER_SPREAD: Span = Span::from_millis(500);

impl SimPubSub {
    pub fn new(drop_rate: f64, delay: Option<DurationRange>) -> Self {
        SimPubSub { chaos_drop_rate: Mutex::new(drop_rate), chaos_delay: Mutex::new(delay), ..Default::default() }
    }

    pub fn attach(&self, world: &Arc<World>) {
        let _ = self.world.set(Arc::downgrade(world));
    }

    /// A subscriber's wake-up on `topic`.
    pub fn subscribe(&self, topic: Topic) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        lock(&self.subscribers).push((topic, notify.clone()));
        notify
    }

    /// The engine's publisher for `source` (a replica).
    pub fn publisher(self: &Arc<Self>, source: Source) -> Arc<SimPublisher> {
        Arc::new(SimPublisher { pubsub: self.clone(), source })
    }

    pub fn add_fault(&self, fault: PubsubFault) {
        lock(&self.faults).push(fault);
    }

    /// `settle`: notices flow again.
    pub fn clear(&self) {
        lock(&self.faults).clear();
        *lock(&self.chaos_drop_rate) = 0.0;
        *lock(&self.chaos_delay) = None;
    }

    /// Publishes a notice on `topic` from `source`, through the faults.
    fn publish(&self, source: Source, topic: Topic) {
        let Some(world) = self.world.get().and_then(Weak::upgrade) else { return };
        let now = world.now();
        let active: Vec<PubsubFault> =
            lock(&self.faults).iter().filter(|f| f.from <= now && now < f.until).copied().collect();
        let chaos_on = world.in_chaos();
        let mut delay = Span::ZERO;
        for fault in &active {
            if !world.chance("pubsub_fault", fault.rate) {
                continue;
            }
            match fault.kind {
                PubsubFaultKind::Drop => {
                    world.note(source, "pubsub", "job notice dropped", String::new());
                    return;
                }
                PubsubFaultKind::Delay => {
                    delay = delay + fault.delay.map_or(Span::ZERO, |d| world.draw("pubsub_delay", d));
                }
                PubsubFaultKind::Reorder => {
                    delay = delay + world.draw("pubsub_reorder", DurationRange::new(Span::ZERO, REORDER_SPREAD));
                }
            }
        }
        if chaos_on {
            if world.chance("pubsub_chaos_drop", *lock(&self.chaos_drop_rate)) {
                world.note(source, "pubsub", "job notice dropped", String::new());
                return;
            }
            if let Some(range) = *lock(&self.chaos_delay) {
                delay = delay + world.draw("pubsub_chaos_delay", range);
            }
        }
        let subscribers: Vec<Arc<Notify>> =
            lock(&self.subscribers).iter().filter(|(t, _)| *t == topic).map(|(_, n)| n.clone()).collect();
        if delay.is_zero() {
            for subscriber in &subscribers {
                subscriber.notify_one();
            }
            return;
        }
        world.note(source, "pubsub", "job notice delayed", format!("by {delay}"));
        let clock = world.clock.clone();
        spawn_sim(async move {
            clock.sleep_until(clock.now() + delay).await;
            for subscriber in &subscribers {
                subscriber.notify_one();
            }
        });
    }
}

/// What one replica's engine publishes through.
pub(crate) struct SimPublisher {
    pubsub: Arc<SimPubSub>,
    source: Source,
}

impl Publisher for SimPublisher {
    /// The payload (the job's id) is not needed: a woken provisioner polls.
    fn publish(&self, topic: Topic, _payload: &str) {
        self.pubsub.publish(self.source, topic);
    }
}
