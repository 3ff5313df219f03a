//! The store fault layer: the statement hook the simulated database calls for
//! every statement. It adds the seeded statement latency (`db_latency`, or
//! chaos `store_latency`), and injects the timeline's `store_fault`s and the
//! chaos rates (connection lost, serialization failures, commits whose outcome
//! the caller never learns, hangs, disconnects, a database restart), all drawn
//! from the seed. Simulated provisioners and the world loader are exempt from
//! everything but a database restart.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use engine::runtime::{Clock, MonotonicClock};
use engine::store::sqlite::{ClientId, HookDecision, OpClass, StatementHook, StatementInfo};
use engine::store::StoreError;
use engine::time::{Span, Timestamp};

use super::rng::Rngs;
use super::world::{lock, World};
use crate::scenario::{Chaos, DurationRange, StoreFaultKind, StoreOp};
use crate::trace::Source;

/// A timeline `store_fault` with its window in true time.
#[derive(Clone, Debug)]
pub(crate) struct ActiveFault {
    pub kind: StoreFaultKind,
    pub ops: BTreeSet<StoreOp>,
    pub rate: f64,
    pub latency: Option<DurationRange>,
    /// `None`: every replica.
    pub replica: Option<u32>,
    pub from: Timestamp,
    pub until: Timestamp,
}

struct State {
    rngs: Rngs,
    db_latency: DurationRange,
    chaos: Chaos,
    chaos_until: Timestamp,
    faults: Vec<ActiveFault>,
    exempt: BTreeSet<ClientId>,
    client_replica: BTreeMap<ClientId, u32>,
    /// A database restart: every statement fails until then.
    unreachable_until: Option<Timestamp>,
}

pub(crate) struct FaultLayer {
    clock: Arc<MonotonicClock>,
    state: Mutex<State>,
    world: OnceLock<Weak<World>>,
}

fn class_op(class: OpClass) -> StoreOp {
    match class {
        OpClass::Lease => StoreOp::Lease,
        OpClass::Lock => StoreOp::Lock,
        OpClass::Commit => StoreOp::Commit,
        OpClass::Write => StoreOp::Write,
        OpClass::Read => StoreOp::Read,
    }
}

impl FaultLayer {
    pub fn new(
        seed: u64,
        clock: Arc<MonotonicClock>,
        db_latency: DurationRange,
        chaos: Chaos,
        chaos_until: Timestamp,
    ) -> Self {
        FaultLayer {
            clock,
            state: Mutex::new(State {
                rngs: Rngs::new(seed ^ 0x5354_4f52_4546_4c54),
                db_latency,
                chaos,
                chaos_until,
                faults: Vec::new(),
                exempt: BTreeSet::new(),
                client_replica: BTreeMap::new(),
                unreachable_until: None,
            }),
            world: OnceLock::new(),
        }
    }

    pub fn attach(&self, world: &Arc<World>) {
        let _ = self.world.set(Arc::downgrade(world));
    }

    pub fn exempt(&self, client: ClientId) {
        lock(&self.state).exempt.insert(client);
    }

    pub fn register(&self, client: ClientId, replica: u32) {
        lock(&self.state).client_replica.insert(client, replica);
    }

    pub fn add(&self, fault: ActiveFault) {
        lock(&self.state).faults.push(fault);
    }

    /// The database restarts: unreachable until `until`.
    pub fn restart_database(&self, until: Timestamp) {
        let mut state = lock(&self.state);
        state.unreachable_until = Some(state.unreachable_until.map_or(until, |u| u.max(until)));
    }

    /// `settle`: every timeline fault and chaos knob is removed.
    pub fn clear(&self) {
        let mut state = lock(&self.state);
        state.faults.clear();
        state.unreachable_until = None;
        state.chaos_until = Timestamp::UNIX_EPOCH;
    }

    fn report(&self, replica: Option<u32>, what: &str, info: &StatementInfo) {
        if let Some(world) = self.world.get().and_then(Weak::upgrade) {
            let source = replica.map_or(Source::World, Source::Replica);
            world.note(source, "fault", what.to_owned(), format!("on {} ({})", info.op, info.subsystem.as_str()));
        }
    }

    fn decide(&self, info: &StatementInfo) -> (HookDecision, Option<&'static str>, Option<u32>) {
        let now = self.clock.now();
        let mut state = lock(&self.state);
        let replica = state.client_replica.get(&info.client).copied();
        if state.unreachable_until.is_some_and(|until| now < until) {
            return (
                HookDecision::Fail(StoreError::connection_lost("database restarting")),
                Some("database unreachable"),
                replica,
            );
        }
        let exempt = state.exempt.contains(&info.client);
        let op = class_op(info.class);
        let chaos_on = now < state.chaos_until;
        let mut latency = match (&state.chaos.store_latency, chaos_on) {
            (Some(range), true) => *range,
            _ => state.db_latency,
        };
        if exempt {
            let range = state.db_latency;
            let latency = state.rngs.span("latency", range);
            return (HookDecision::Proceed { latency }, None, replica);
        }
        let mut extra = Span::ZERO;
        let faults: Vec<ActiveFault> = state
            .faults
            .iter()
            .filter(|f| f.from <= now && now < f.until)
            .filter(|f| f.replica.is_none() || f.replica == replica)
            .filter(|f| f.ops.contains(&op))
            .cloned()
            .collect();
        for fault in faults {
            let hit = state.rngs.chance("store_fault", fault.rate);
            if !hit {
                continue;
            }
            match fault.kind {
                StoreFaultKind::Error => {
                    return (
                        HookDecision::Fail(StoreError::connection_lost("injected store error")),
                        Some("store error"),
                        replica,
                    )
                }
                StoreFaultKind::Serialization => {
                    return (
                        HookDecision::Fail(StoreError::serialization("injected serialization failure")),
                        Some("serialization failure"),
                        replica,
                    )
                }
                StoreFaultKind::Disconnect => {
                    return (
                        HookDecision::Fail(StoreError::connection_lost("replica cut off from the database")),
                        Some("disconnected"),
                        replica,
                    )
                }
                StoreFaultKind::Hang => return (HookDecision::Hang { until: fault.until }, Some("hang"), replica),
                StoreFaultKind::CommitUnknown if info.class == OpClass::Commit => {
                    return (HookDecision::CommitUnknown, Some("commit outcome unknown"), replica)
                }
                StoreFaultKind::CommitUnknown | StoreFaultKind::Restart => {}
                StoreFaultKind::Latency => {
                    if let Some(range) = fault.latency {
                        extra = extra + state.rngs.span("fault_latency", range);
                    }
                }
            }
        }
        if chaos_on {
            let chaos = state.chaos.clone();
            if state.rngs.chance("chaos_error", chaos.store_error_rate) {
                return (
                    HookDecision::Fail(StoreError::connection_lost("chaos store error")),
                    Some("chaos store error"),
                    replica,
                );
            }
            if state.rngs.chance("chaos_serialization", chaos.serialization_failure_rate) {
                return (
                    HookDecision::Fail(StoreError::serialization("chaos serialization failure")),
                    Some("chaos serialization failure"),
                    replica,
                );
            }
            if info.class == OpClass::Commit && state.rngs.chance("chaos_commit_unknown", chaos.commit_unknown_rate) {
                return (HookDecision::CommitUnknown, Some("chaos commit outcome unknown"), replica);
            }
        } else {
            latency = state.db_latency;
        }
        let base = state.rngs.span("latency", latency);
        (HookDecision::Proceed { latency: base + extra }, None, replica)
    }
}

impl StatementHook for FaultLayer {
    fn on_statement(&self, info: &StatementInfo) -> HookDecision {
        let (decision, what, replica) = self.decide(info);
        if let Some(what) = what {
            self.report(replica, what, info);
        }
        decision
    }
}
