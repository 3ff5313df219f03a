//! The scenario library through the simulator binary (built with `--cfg
//! madsim`; `SIM_BIN` names it, else `target/sim/release/sim`): every
//! scenario's text trace at its default seed is an insta snapshot in
//! `snapshots/`; runs are deterministic across processes; seeds change the
//! interleaving of multi-replica scenarios; and every mutation of the engine is
//! still caught by the scenario and seed recorded for it.

use std::path::{Path, PathBuf};
use std::process::Command;

use sim::report::{RunReport, Status};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("sim has a parent").to_path_buf()
}

/// The madsim build of `sim`, or `None` (a loud skip locally; a failure in CI).
/// A relative `SIM_BIN` is read from the workspace root, as `cargo xtask`
/// reads it (tests run in `sim/`).
fn sim_bin() -> Option<PathBuf> {
    let path =
        std::env::var_os("SIM_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target/sim/release/sim"));
    let path = if path.is_relative() { root().join(path) } else { path };
    if path.exists() {
        return Some(path);
    }
    let message = format!(
        "the simulator binary {} is missing: build it with `cargo xtask simulate` (or set SIM_BIN)",
        path.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message}");
    }
    eprintln!("SKIPPED: {message}");
    None
}

struct Run {
    report: RunReport,
    text: String,
}

fn run(bin: &Path, scenario: &Path, seed: Option<u64>, mutation: Option<&str>) -> Run {
    let text_file = tempfile(scenario, seed, mutation);
    let mut cmd = Command::new(bin);
    cmd.current_dir(root()).arg("run").arg(scenario).arg("--text").arg(&text_file);
    if let Some(seed) = seed {
        cmd.arg("--seed").arg(seed.to_string());
    }
    if let Some(mutation) = mutation {
        cmd.arg("--mutation").arg(mutation);
    }
    let output = cmd.output().expect("running the simulator");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: RunReport = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "{}: no report ({e}); exit {:?}; stderr: {}",
            scenario.display(),
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let text = std::fs::read_to_string(&text_file).unwrap_or_default();
    let _ = std::fs::remove_file(&text_file);
    Run { report, text }
}

fn tempfile(scenario: &Path, seed: Option<u64>, mutation: Option<&str>) -> PathBuf {
    let stem = scenario.file_stem().and_then(|s| s.to_str()).unwrap_or("scenario");
    std::env::temp_dir().join(format!(
        "sim-{}-{stem}-{}-{}.txt",
        std::process::id(),
        seed.map_or("default".to_owned(), |s| s.to_string()),
        mutation.unwrap_or("none")
    ))
}

fn library() -> Vec<PathBuf> {
    let paths = sim::scenario::discover(&root().join("scenarios")).expect("the library is discoverable");
    assert!(!paths.is_empty(), "the scenario library is empty");
    paths.into_iter().map(|p| p.strip_prefix(root()).map(Path::to_path_buf).unwrap_or(p)).collect()
}

fn snapshot_name(scenario: &Path) -> String {
    let relative = scenario.strip_prefix("scenarios").unwrap_or(scenario);
    relative.with_extension("").to_string_lossy().replace(['/', '\\'], "__")
}

#[test]
fn every_scenario_passes_and_matches_its_trace_snapshot() {
    let Some(bin) = sim_bin() else { return };
    let mut failures = Vec::new();
    for scenario in library() {
        let run = run(&bin, &scenario, None, None);
        match run.report.status {
            Status::Passed | Status::Unsupported => {}
            Status::Failed => failures.push(format!("{}: {:?}", scenario.display(), run.report.failures)),
        }
        insta::with_settings!({
            snapshot_path => root().join("snapshots"),
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => format!("{} at seed {}", scenario.display(), run.report.seed),
        }, {
            insta::assert_snapshot!(snapshot_name(&scenario), run.text);
        });
    }
    assert!(failures.is_empty(), "scenarios failed at their default seeds:\n{}", failures.join("\n"));
}

#[test]
fn same_seed_gives_the_same_trace_in_fresh_processes() {
    let Some(bin) = sim_bin() else { return };
    for scenario in library() {
        for seed in [None, Some(17)] {
            let a = run(&bin, &scenario, seed, None);
            let b = run(&bin, &scenario, seed, None);
            assert_eq!(a.report.trace_hash, b.report.trace_hash, "{} seed {seed:?}", scenario.display());
            assert_eq!(a.text, b.text, "{} seed {seed:?}", scenario.display());
        }
    }
}

#[test]
fn seeds_change_the_interleaving_of_multi_replica_scenarios() {
    let Some(bin) = sim_bin() else { return };
    for scenario in library() {
        let loaded = sim::scenario::load_file(&root().join(&scenario)).expect("loads");
        if loaded.replicas < 2 {
            continue;
        }
        let hashes: std::collections::BTreeSet<String> =
            (0..8).map(|seed| run(&bin, &scenario, Some(seed), None).report.order_hash).collect();
        assert!(hashes.len() > 1, "{}: eight seeds interleaved identically", scenario.display());
    }
}

/// For each mutation, a scenario and seed that catch it, and the failures
/// they show (the invariant that notices first).
const CAUGHT_BY: &[(&str, &str, u64, &str)] = &[
    (
        "reminder_enqueued_after_commit",
        "scenarios/races/shutdown_during_reminder.yaml",
        0,
        "invariant reminder_when_due",
    ),
    ("reminder_no_dedupe", "scenarios/lifecycle/autostop_reminder_once.yaml", 0, "invariant reminder_once"),
    ("bump_ignores_max_deadline", "scenarios/lifecycle/activity_bump_and_cap.yaml", 0, "invariant deadline_within_max"),
    (
        "usage_flush_overwrites_newer",
        "scenarios/races/usage_flush_never_moves_back.yaml",
        0,
        "invariant last_used_monotonic",
    ),
    (
        "no_workspace_lock_no_unique_build",
        "scenarios/races/ha_three_replicas_chaos.yaml",
        0,
        "invariant one_build_per_trigger",
    ),
];

#[test]
fn every_mutation_is_caught_by_its_recorded_scenario_and_seed() {
    let Some(bin) = sim_bin() else { return };
    let names: Vec<&str> = engine::mutations::Mutation::ALL.iter().map(|m| m.name()).collect();
    for name in &names {
        assert!(CAUGHT_BY.iter().any(|(m, ..)| m == name), "mutation {name} has no recorded scenario");
    }
    for (mutation, scenario, seed, key) in CAUGHT_BY {
        let clean = run(&bin, Path::new(scenario), Some(*seed), None);
        assert_eq!(clean.report.status, Status::Passed, "{scenario} seed {seed} must pass without {mutation}");
        let mutated = run(&bin, Path::new(scenario), Some(*seed), Some(mutation));
        assert_eq!(mutated.report.status, Status::Failed, "{mutation} escaped {scenario} at seed {seed}");
        assert!(
            mutated.report.failure_keys().iter().any(|k| k == key),
            "{mutation} on {scenario} seed {seed}: expected `{key}`, got {:?}",
            mutated.report.failure_keys()
        );
    }
}
