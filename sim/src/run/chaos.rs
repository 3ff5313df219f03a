//! Random faults drawn from the seed while chaos is on (until `run_for`):
//! each replica's clock skew, drawn once, and replica crashes as a Poisson
//! process per replica with restarts after `replica_restart_after`. The store,
//! pubsub and sink rates live in `faults.rs` and `sink.rs`.

use std::sync::Arc;

use engine::runtime::Clock;

use super::replica;
use super::world::{lock, spawn_sim, World};
use crate::trace::Source;

/// Each replica's skew, when chaos `clock_skew` is set (either sign).
pub(crate) fn draw_skews(world: &World) {
    let Some(range) = world.scenario.chaos.clock_skew else { return };
    for slot in &world.replicas {
        let skew = if range.min.is_negative() {
            world.draw("clock_skew", range)
        } else {
            lock(&world.rngs).skew("clock_skew", range)
        };
        slot.clock.set_skew(skew);
        world.note(Source::Replica(slot.index), "skew", "chaos clock skew", format!("{skew}"));
    }
}

/// Crashes and restarts, one supervisor task per replica.
pub(crate) fn start(world: &Arc<World>) {
    let rate = world.scenario.chaos.replica_crash_rate.per_hour;
    if rate <= 0.0 {
        return;
    }
    for slot in world.replicas.clone() {
        let world = Arc::downgrade(world);
        spawn_sim(async move {
            loop {
                let Some(w) = world.upgrade() else { return };
                let purpose = format!("crash_{}", slot.index);
                let Some(wait) = lock(&w.rngs).exponential(&purpose, rate) else { return };
                let at = w.now() + wait;
                if at >= w.settle_at {
                    return;
                }
                let clock = w.clock.clone();
                drop(w);
                clock.sleep_until(at).await;
                let Some(w) = world.upgrade() else { return };
                if !replica::crash(&w, &slot) {
                    continue;
                }
                let after = w.draw("restart_after", w.scenario.chaos.replica_restart_after);
                let back = (w.now() + after).min(w.settle_at);
                drop(w);
                clock.sleep_until(back).await;
                let Some(w) = world.upgrade() else { return };
                replica::restart(&w, &slot, "chaos restart");
            }
        });
    }
}
