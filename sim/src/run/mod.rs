//! Running one scenario at one seed on madsim (only in `--cfg madsim` builds).
//!
//! ```text
//! run ── world load (load.rs) ── replicas as nodes (replica.rs)
//!     ── provisioners, agents (provisioner.rs), sink (sink.rs), faults (faults.rs)
//!     ── timeline (timeline.rs), chaos (chaos.rs)
//!     ── at run_for: settle (faults off, replicas back) ── at the end:
//!        the commit log → observed model (observe.rs) → invariants.rs, expect.rs
//! ```
//! Checkers build their own model from what the database committed (its
//! commit log), what the pool, spawner, provisioners and sink recorded; never
//! from the engine's events, which only feed the trace.

mod chaos;
mod expect;
mod faults;
mod invariants;
mod load;
mod observe;
mod provisioner;
mod pubsub;
mod replica;
mod rng;
mod sink;
mod timeline;
mod world;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use engine::mutations::Mutation;
use engine::runtime::{Clock, MonotonicClock};
use engine::store::sqlite::{PoolConfig, SqliteServer};
use engine::time::Span;

use crate::report::{hex, Failure, RunReport, Status};
use crate::scenario::Scenario;
use crate::trace::{format_offset, Names, Source, Trace};

pub use world::Violation;

/// Knobs of one run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub mutation: Option<Mutation>,
}

/// What a run produced.
pub struct RunOutput {
    pub report: RunReport,
    pub trace_text: String,
    pub trace_jsonl: String,
    pub html: String,
}

/// Lines of trace shown before a failure.
const TAIL_LINES: usize = 20;

/// Runs `scenario` at `seed` in a fresh madsim runtime.
pub fn run(scenario: Scenario, seed: u64, options: RunOptions) -> RunOutput {
    let scenario = Arc::new(scenario);
    let unsupported = unsupported(&scenario);
    let config = madsim::Config::default();
    let runtime = madsim::runtime::Runtime::with_seed_and_config(seed, config);
    if let Some(mutation) = options.mutation {
        engine::mutations::set(mutation, true);
    }
    let scenario_for_run = scenario.clone();
    let outcome = if unsupported.is_empty() {
        runtime.block_on(async move { simulate(scenario_for_run, seed).await })
    } else {
        Outcome::default()
    };
    if let Some(mutation) = options.mutation {
        engine::mutations::set(mutation, false);
    }
    finish(&scenario, seed, options.mutation, unsupported, outcome)
}

/// Capabilities the scenario needs that the engine has not built yet.
fn unsupported(scenario: &Scenario) -> Vec<String> {
    let capabilities = scenario.capabilities();
    let mut missing = Vec::new();
    if capabilities.prebuilds {
        missing.push("prebuilds".to_owned());
    }
    if capabilities.chats {
        missing.push("chats".to_owned());
    }
    missing
}

/// What the simulation hands to the report.
#[derive(Default)]
struct Outcome {
    trace: Trace,
    names: Names,
    violations: Vec<Violation>,
    expectation_failures: Vec<Failure>,
    /// Index of the first trace event at or after the first failure.
    first_failure_at: Option<Span>,
}

async fn simulate(scenario: Arc<Scenario>, seed: u64) -> Outcome {
    let start = scenario.start;
    let clock = Arc::new(MonotonicClock::new(start));
    let server = match SqliteServer::open_in_memory(clock.clone()) {
        Ok(server) => server,
        Err(error) => {
            let mut outcome = Outcome::default();
            outcome.violations.push(Violation {
                invariant: "liveness",
                at: Span::ZERO,
                replica: None,
                objects: Vec::new(),
                message: format!("the simulated database did not open: {error}"),
            });
            return outcome;
        }
    };
    server.enable_commit_log();
    let settle_at = start + scenario.run_for;
    let end_at = start + scenario.run_end();
    let faults = Arc::new(faults::FaultLayer::new(
        seed,
        clock.clone(),
        scenario.settings.db_latency,
        scenario.chaos.clone(),
        settle_at,
    ));
    server.set_hook(Some(faults.clone()));
    let sink = Arc::new(sink::SimSink::new(scenario.chaos.notification_failure_rate));
    let pubsub = Arc::new(pubsub::SimPubSub::new(scenario.chaos.pubsub_drop_rate, scenario.chaos.pubsub_delay));
    let replicas = (0..scenario.replicas)
        .map(|index| {
            Arc::new(world::ReplicaSlot {
                index,
                clock: Arc::new(clock.sibling(Span::ZERO)),
                node: Mutex::new(None),
                state: Mutex::new(world::ReplicaState::Starting),
                incarnations: Mutex::new(0),
            })
        })
        .collect();
    let world = Arc::new(world::World {
        scenario: scenario.clone(),
        seed,
        start,
        clock: clock.clone(),
        server: server.clone(),
        rngs: Mutex::new(rng::Rngs::new(seed)),
        trace: Mutex::new(Trace::default()),
        names: Mutex::new(Names::default()),
        registry: Mutex::new(world::Registry::default()),
        faults: faults.clone(),
        sink: sink.clone(),
        pubsub: pubsub.clone(),
        replicas,
        violations: Mutex::new(Vec::new()),
        jobs: Mutex::new(Vec::new()),
        provisioner_faults: Mutex::new(Vec::new()),
        loader_client: Mutex::new(None),
        observer: Mutex::new(None),
        provisioner_client: Mutex::new(None),
        clients: Mutex::new(BTreeMap::new()),
        stores: Mutex::new(Vec::new()),
        pool_excuses: Mutex::new(Vec::new()),
        settle_at,
        end_at,
    });
    faults.attach(&world);
    sink.attach(&world);
    pubsub.attach(&world);

    // The world, written by a client of its own (exempt from faults).
    let loader =
        Arc::new(server.client(PoolConfig { size: 5, acquire_timeout: Span::from_secs(60), label: "loader".into() }));
    faults.exempt(loader.client_id());
    *world::lock(&world.loader_client) = Some(loader.client_id());
    *world::lock(&world.observer) = Some(loader.clone());
    let loaded = match load::load(&world, &loader).await {
        Ok(loaded) => loaded,
        Err(error) => {
            world.violation(Violation {
                invariant: "liveness",
                at: Span::ZERO,
                replica: None,
                objects: Vec::new(),
                message: format!("world load failed: {error}"),
            });
            load::Loaded::default()
        }
    };
    world.note(Source::World, "load", "world loaded", String::new());

    chaos::draw_skews(&world);
    for slot in world.replicas.clone() {
        replica::create(&world, &slot);
    }
    provisioner::start(&world, loaded.running_jobs);
    timeline::start(&world);
    chaos::start(&world);

    // run_for, then settle: faults and chaos off, every stopped replica back.
    clock.sleep_until(settle_at).await;
    faults.clear();
    sink.clear();
    pubsub.clear();
    world::lock(&world.provisioner_faults).clear();
    world.note(Source::World, "settle", "faults off", String::new());
    for slot in world.replicas.clone() {
        if !slot.is_up() && matches!(*world::lock(&slot.state), world::ReplicaState::Down) {
            replica::restart(&world, &slot, "settle");
        }
    }
    clock.sleep_until(end_at).await;
    world.note(Source::World, "end", "run over", String::new());

    // Judge: the commit log is the database's record of the run.
    let commits = server.take_commits();
    let model = observe::Model::build(&world, commits);
    invariants::check(&world, &model);
    let expectation_failures = expect::check(&world, &model);

    let trace = std::mem::take(&mut *world::lock(&world.trace));
    let names = world::lock(&world.names).clone();
    let violations = std::mem::take(&mut *world::lock(&world.violations));
    let first_failure_at =
        violations.iter().map(|v| v.at).chain(expectation_failures.iter().map(|f| Span::from_micros(f.at_us))).min();
    Outcome { trace, names, violations, expectation_failures, first_failure_at }
}

fn finish(
    scenario: &Scenario,
    seed: u64,
    mutation: Option<Mutation>,
    unsupported: Vec<String>,
    outcome: Outcome,
) -> RunOutput {
    let mut failures: Vec<Failure> = outcome
        .violations
        .iter()
        .map(|v| Failure {
            kind: "invariant".into(),
            name: v.invariant.into(),
            at_us: v.at.as_micros(),
            at: format_offset(v.at),
            replica: v.replica,
            objects: v.objects.clone(),
            message: v.message.clone(),
            location: String::new(),
        })
        .collect();
    failures.extend(outcome.expectation_failures.iter().cloned());
    let status = if !unsupported.is_empty() {
        Status::Unsupported
    } else if failures.is_empty() {
        Status::Passed
    } else {
        Status::Failed
    };
    let lines: Vec<String> =
        outcome.trace.events.iter().map(|event| outcome.trace.render_line(event, &outcome.names)).collect();
    let cut = match outcome.first_failure_at {
        Some(at) => outcome.trace.events.iter().position(|e| e.at > at).unwrap_or(lines.len()),
        None => lines.len(),
    };
    let tail = lines[cut.saturating_sub(TAIL_LINES)..cut].to_vec();
    let report = RunReport {
        scenario: scenario.name.value.clone(),
        file: scenario.file.clone(),
        seed,
        status,
        mutation: mutation.map(|m| m.name().to_owned()),
        trace_hash: hex(outcome.trace.trace_hash(&outcome.names)),
        order_hash: hex(outcome.trace.order_hash(&outcome.names)),
        simulated_us: scenario.run_end().as_micros(),
        failures,
        unsupported,
        tail,
    };
    RunOutput {
        trace_text: outcome.trace.render_text(&outcome.names),
        trace_jsonl: outcome.trace.render_jsonl(&outcome.names),
        html: crate::html::render(&outcome.trace, &outcome.names, &scenario.name.value, scenario.replicas),
        report,
    }
}
