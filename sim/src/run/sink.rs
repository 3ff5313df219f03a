//! The simulated notification service the engine's delivery loops send to.
//! It fails on command (`notification_fault`, chaos `notification_failure_rate`)
//! and records every delivery it accepted with its outbox row; it does not
//! dedupe (the checkers count distinct keys themselves).

use std::sync::{Mutex, OnceLock, Weak};

use async_trait::async_trait;
use engine::model::Notification;
use engine::notify::{DeliveryError, NotificationSink};
use engine::time::Timestamp;

use super::world::{lock, World};
use crate::trace::{Source, Subject};

/// One accepted delivery.
#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    /// True simulated time.
    pub at: Timestamp,
    pub notification: Notification,
}

/// A `notification_fault` window.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SinkFault {
    pub rate: f64,
    pub from: Timestamp,
    pub until: Timestamp,
}

#[derive(Default)]
pub(crate) struct SimSink {
    pub deliveries: Mutex<Vec<Delivery>>,
    faults: Mutex<Vec<SinkFault>>,
    chaos_rate: Mutex<f64>,
    world: OnceLock<Weak<World>>,
}

impl SimSink {
    pub fn new(chaos_rate: f64) -> Self {
        SimSink { chaos_rate: Mutex::new(chaos_rate), ..Default::default() }
    }

    pub fn attach(&self, world: &std::sync::Arc<World>) {
        let _ = self.world.set(std::sync::Arc::downgrade(world));
    }

    pub fn add_fault(&self, fault: SinkFault) {
        lock(&self.faults).push(fault);
    }

    /// `settle`: deliveries stop failing.
    pub fn clear(&self) {
        lock(&self.faults).clear();
        *lock(&self.chaos_rate) = 0.0;
    }
}

#[async_trait]
impl NotificationSink for SimSink {
    async fn deliver(&self, notification: &Notification) -> Result<(), DeliveryError> {
        let Some(world) = self.world.get().and_then(Weak::upgrade) else {
            return Err(DeliveryError("the simulation is over".into()));
        };
        let now = world.now();
        let rate = lock(&self.faults)
            .iter()
            .filter(|f| f.from <= now && now < f.until)
            .map(|f| f.rate)
            .fold(0.0_f64, f64::max);
        let chaos = if world.in_chaos() { *lock(&self.chaos_rate) } else { 0.0 };
        let subject: Vec<Subject> = notification.workspace_id.map(Subject::Workspace).into_iter().collect();
        if world.chance("sink_fault", rate) || world.chance("sink_chaos", chaos) {
            world.record(Source::Sink, "undelivered", subject, notification.kind.to_string(), "sink failed".into());
            return Err(DeliveryError("injected delivery failure".into()));
        }
        lock(&self.deliveries).push(Delivery { at: now, notification: notification.clone() });
        world.record(Source::Sink, "delivered", subject, notification.kind.to_string(), String::new());
        Ok(())
    }
}
