//! `cargo xtask simulate`: the front door of the simulator (SCENARIOS.md,
//! "Running"). It loads and validates every selected scenario first (a bad
//! file: every `file:line:col: message`, exit 2, nothing runs), builds the
//! madsim `sim` binary once, runs one fresh process per (scenario, seed) in
//! parallel, prints each seed's hashes, a summary table and, for each failure,
//! what failed, the last trace lines and the one command that replays it.
//!
//! ```text
//! args ── select (loader) ── plan (scenario × seeds [× 2]) ── exec (build, processes)
//!      ── results (lines, table, failures, --json, exit status) ── shrink (--shrink)
//! --merge FILES ── results (no run)
//! ```

pub mod args;
pub mod exec;
pub mod results;
pub mod shrink;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use sim::report::Status;
use sim::scenario::Scenario;

pub use args::Args;
use exec::{Job, Progress};
use results::{ResultsFile, SeedResult, RESULTS_VERSION};

/// Above this many runs, seed lines are printed only for failures (unless `--verbose`).
const SEED_LINES_MAX: usize = 200;
/// Failures shown in full; the rest get one line each, up to [`FAILURE_LINES_MAX`].
const FAILURES_FULL_MAX: usize = 10;
const FAILURE_LINES_MAX: usize = 100;

/// Exit status of bad input.
const EXIT_BAD_INPUT: u8 = 2;

/// Runs `cargo xtask simulate`. `cwd` is where the user stood (their paths
/// are relative to it); the process itself runs in the workspace `root`.
pub fn run(args: Args, cwd: &Path, root: &Path) -> Result<ExitCode> {
    if !args.merge.is_empty() {
        return merge(&args, cwd);
    }
    let scenarios = match select(&args, cwd, root) {
        Ok(scenarios) => scenarios,
        Err(message) => {
            eprintln!("{message}");
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    let plan = match plan(&args, &scenarios, cwd) {
        Ok(plan) => plan,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    let sim = exec::sim_binary(root, cwd)?;
    let jobs = args.jobs.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), |n| n as usize);
    let started = exec::now();
    let mut progress = Progress::new(plan.len() as u64, "runs");
    let ran = exec::run_all(&sim, root, &plan, jobs, |i, ran| {
        let failed = ran.report.status == Status::Failed || ran.bad_input.is_some();
        progress.advance(failed);
        if failed {
            let first = ran.report.failures.first().map(|f| format!(" ({} {})", f.kind, f.name)).unwrap_or_default();
            let name = results::display_name(&plan[i].file, &plan[i].scenario);
            progress.println(&format!("failed: {name} seed={}{first}", plan[i].seed));
        }
    });
    progress.finish();
    let elapsed = started.elapsed();

    // Pair the determinism check's second processes with their first.
    let mut results: Vec<SeedResult> = Vec::new();
    let mut by_run: BTreeMap<(String, u64), usize> = BTreeMap::new();
    for (job, ran) in plan.iter().zip(ran) {
        let key = (job.file.clone(), job.seed);
        match by_run.get(&key) {
            Some(&first) => {
                results[first].determinism =
                    Some(results::Determinism { trace_hash: ran.report.trace_hash, order_hash: ran.report.order_hash });
            }
            None => {
                by_run.insert(key, results.len());
                results.push(SeedResult {
                    report: ran.report,
                    wall_us: u64::try_from(ran.wall.as_micros()).unwrap_or(u64::MAX),
                    bad_input: ran.bad_input,
                    determinism: None,
                });
            }
        }
    }
    results::sort(&mut results);

    if let Some(path) = &args.json {
        let file = ResultsFile {
            version: RESULTS_VERSION,
            mutation: args.mutation.clone(),
            seeds: args.seed_range().map(|r| r.to_string()),
            shard: args.shard.map(|s| s.to_string()),
            check_determinism: args.check_determinism,
            results: results.clone(),
        };
        write_json(&cwd.join(path), &file)?;
    }
    print_results(&results, args.verbose, args.mutation.as_deref(), args.check_determinism);
    let processes = if plan.len() == results.len() { String::new() } else { format!(", {} processes", plan.len()) };
    println!(
        "\n{} run{} in {} with {jobs} job{}{processes}",
        results.len(),
        plural(results.len()),
        crate::format_duration(elapsed),
        plural(jobs)
    );
    if let Some(path) = &args.json {
        println!("results: {}", path.display());
    }
    for (flag, path) in plan.first().map(|j| j.outputs.as_slice()).unwrap_or_default() {
        println!("{}: {}", flag.trim_start_matches('-'), path.display());
    }

    let status = results::exit_status(&results);
    if args.shrink {
        return shrink(&args, &scenarios[0], &results[0], &sim, root, cwd, jobs, status);
    }
    Ok(ExitCode::from(status))
}

/// The selected scenario files, loaded and validated; on bad input, the
/// message to print (every error, one per line).
fn select(args: &Args, cwd: &Path, root: &Path) -> std::result::Result<Vec<Scenario>, String> {
    let wanted: Vec<PathBuf> = if args.scenario.is_empty() {
        vec![PathBuf::from("scenarios")]
    } else {
        args.scenario.iter().map(|p| shown(&cwd.join(p), root)).collect()
    };
    let mut files: Vec<PathBuf> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    for path in &wanted {
        match sim::scenario::discover(path) {
            Ok(found) if found.is_empty() => {
                errors.push(format!("{}: no scenario files (*.yaml) found", path.display()))
            }
            Ok(found) => {
                for file in found {
                    if !files.contains(&file) {
                        files.push(file);
                    }
                }
            }
            Err(e) => errors.extend(e.lines()),
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    match sim::scenario::load_library(&files) {
        Ok(scenarios) => Ok(scenarios),
        Err(errors) => {
            let bad_files: std::collections::BTreeSet<&str> = errors.iter().map(|e| e.file.as_str()).collect();
            Err(format!(
                "{errors}\nerror: {} error{} in {} file{}; nothing ran",
                errors.len(),
                plural(errors.len()),
                bad_files.len(),
                plural(bad_files.len())
            ))
        }
    }
}

/// `path` relative to the workspace root when it lies under it (so messages
/// and replay commands read `scenarios/…`), else as it is.
fn shown(path: &Path, root: &Path) -> PathBuf {
    let normal: PathBuf = path.components().fold(PathBuf::new(), |mut out, part| {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
        out
    });
    normal.strip_prefix(root).map(Path::to_path_buf).unwrap_or(normal)
}

/// The processes to start, in order: each scenario, each of its seeds, each
/// seed twice under `--check-determinism`.
fn plan(args: &Args, scenarios: &[Scenario], cwd: &Path) -> std::result::Result<Vec<Job>, String> {
    let seeds_of = |scenario: &Scenario| -> Vec<u64> {
        match (args.seed, args.seed_range()) {
            (Some(seed), _) => vec![seed],
            (None, Some(range)) => range.seeds(args.shard),
            (None, None) => vec![scenario.seed],
        }
    };
    let runs: usize = scenarios.iter().map(|s| seeds_of(s).len()).sum();
    let outputs = args.single_run_outputs();
    if !outputs.is_empty() && (scenarios.len() != 1 || runs != 1) {
        return Err(format!(
            "{} write{} one run's output: select exactly one scenario and one seed (selected {} scenario{}, {runs} run{})",
            outputs.join(", "),
            if outputs.len() == 1 { "s" } else { "" },
            scenarios.len(),
            plural(scenarios.len()),
            plural(runs)
        ));
    }
    if args.shrink && (scenarios.len() != 1 || runs != 1) {
        return Err(format!(
            "--shrink minimises one failing run: select exactly one scenario and one seed (selected {} scenario{}, {runs} run{})",
            scenarios.len(),
            plural(scenarios.len()),
            plural(runs)
        ));
    }
    if runs == 0 {
        return Err("the selection holds no run (the shard has no seed in the range)".to_owned());
    }
    let mut single: Vec<(&'static str, PathBuf)> = Vec::new();
    for (flag, path) in [("--trace", &args.trace), ("--html", &args.html), ("--text", &args.text)] {
        if let Some(path) = path {
            single.push((flag, cwd.join(path)));
        }
    }
    let mut jobs = Vec::new();
    for scenario in scenarios {
        for seed in seeds_of(scenario) {
            let job = Job {
                file: scenario.file.clone(),
                scenario: scenario.name.value.clone(),
                seed,
                mutation: args.mutation.clone(),
                outputs: single.clone(),
            };
            // The first process of a seed writes the single-run outputs.
            let second = args.check_determinism.then(|| Job { outputs: Vec::new(), ..job.clone() });
            jobs.push(job);
            jobs.extend(second);
        }
    }
    Ok(jobs)
}

/// Seed lines, the table, unsupported scenarios, mutation detections and the
/// failures, on stdout.
fn print_results(results: &[SeedResult], verbose: bool, mutation: Option<&str>, determinism: bool) {
    let all_lines = verbose || results.len() <= SEED_LINES_MAX;
    let mut hidden = 0usize;
    for result in results {
        if all_lines || result.verdict() != results::Verdict::Passed {
            println!("{}", results::seed_line(result));
        } else {
            hidden += 1;
        }
    }
    if hidden > 0 {
        println!("({hidden} passing seed lines not shown: --verbose prints them, --json FILE keeps them)");
    }
    println!();
    print!("{}", results::table(&results::rows(results)));

    let mut unsupported: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for result in results.iter().filter(|r| r.report.status == Status::Unsupported) {
        unsupported.entry(result.display_name()).or_insert_with(|| result.report.unsupported.clone());
    }
    for (scenario, needs) in &unsupported {
        println!("unsupported: {scenario} needs {}", if needs.is_empty() { "?".to_owned() } else { needs.join(", ") });
    }
    if determinism {
        let bad = results.iter().filter(|r| r.nondeterministic()).count();
        println!(
            "determinism: {} of {} seeds gave the same trace hash in two fresh processes",
            results.len() - bad,
            results.len()
        );
    }
    if let Some(mutation) = mutation {
        print!("{}", results::detections_text(mutation, &results::detections(results)));
    }

    let bad_input: Vec<&SeedResult> = results.iter().filter(|r| r.bad_input.is_some()).collect();
    for result in &bad_input {
        println!("\nbad input: {} seed={}", result.display_name(), result.report.seed);
        println!("{}", result.bad_input.as_deref().unwrap_or_default());
    }
    let failures: Vec<&SeedResult> = results.iter().filter(|r| r.verdict() == results::Verdict::Failed).collect();
    if failures.is_empty() {
        return;
    }
    println!("\n{} failing run{}:", failures.len(), plural(failures.len()));
    for result in failures.iter().take(FAILURES_FULL_MAX) {
        println!();
        print!("{}", results::failure_report(result));
    }
    let rest = failures.iter().skip(FAILURES_FULL_MAX);
    if failures.len() > FAILURES_FULL_MAX {
        println!();
    }
    for result in rest.clone().take(FAILURE_LINES_MAX) {
        let first = result.report.failures.first().map(|f| format!("{} {}", f.kind, f.name)).unwrap_or_default();
        println!(
            "{} seed={} {first}: replay: {}",
            result.display_name(),
            result.report.seed,
            result.report.replay_command()
        );
    }
    let unshown = rest.count().saturating_sub(FAILURE_LINES_MAX);
    if unshown > 0 {
        println!("... and {unshown} more failing runs (--json FILE keeps them all)");
    }
}

fn write_json(path: &Path, file: &ResultsFile) -> Result<()> {
    let text = serde_json::to_string_pretty(file).context("encoding the results")?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// `--merge`: one summary (and exit status) from `--json` files.
fn merge(args: &Args, cwd: &Path) -> Result<ExitCode> {
    let mut files = Vec::new();
    for path in &args.merge {
        let path = cwd.join(path);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) => {
                eprintln!("error: cannot read {}: {error}", path.display());
                return Ok(ExitCode::from(EXIT_BAD_INPUT));
            }
        };
        match serde_json::from_str::<ResultsFile>(&text) {
            Ok(file) if file.version == RESULTS_VERSION => files.push(file),
            Ok(file) => {
                eprintln!(
                    "error: {}: results format version {}, expected {RESULTS_VERSION}",
                    path.display(),
                    file.version
                );
                return Ok(ExitCode::from(EXIT_BAD_INPUT));
            }
            Err(error) => {
                eprintln!("error: {}: not a results file of `cargo xtask simulate --json`: {error}", path.display());
                return Ok(ExitCode::from(EXIT_BAD_INPUT));
            }
        }
    }
    let mutations: std::collections::BTreeSet<Option<String>> = files.iter().map(|f| f.mutation.clone()).collect();
    if mutations.len() > 1 {
        eprintln!("error: the files were run with different mutations: {mutations:?}");
        return Ok(ExitCode::from(EXIT_BAD_INPUT));
    }
    let mutation = mutations.into_iter().next().flatten();
    let determinism = files.iter().any(|f| f.check_determinism);
    let shards: Vec<String> = files.iter().filter_map(|f| f.shard.clone()).collect();
    let results = results::merge(files);
    if let Some(path) = &args.json {
        let file = ResultsFile {
            version: RESULTS_VERSION,
            mutation: mutation.clone(),
            seeds: None,
            shard: None,
            check_determinism: determinism,
            results: results.clone(),
        };
        write_json(&cwd.join(path), &file)?;
    }
    print_results(&results, args.verbose, mutation.as_deref(), determinism);
    println!(
        "merged {} file{} ({} results{})",
        args.merge.len(),
        plural(args.merge.len()),
        results.len(),
        if shards.is_empty() { String::new() } else { format!("; shards {}", shards.join(", ")) }
    );
    Ok(ExitCode::from(results::exit_status(&results)))
}

/// `--shrink` after the one run: minimise it if it failed.
#[allow(clippy::too_many_arguments)]
fn shrink(
    args: &Args,
    scenario: &Scenario,
    result: &SeedResult,
    sim: &Path,
    root: &Path,
    cwd: &Path,
    jobs: usize,
    status: u8,
) -> Result<ExitCode> {
    let Some(key) = shrink::first_key(&result.report).filter(|_| result.report.status == Status::Failed) else {
        println!("shrink: the run did not fail, nothing to shrink");
        return Ok(ExitCode::from(status));
    };
    println!("\nshrinking {} at seed {} (fails with {key})", scenario.file, result.report.seed);
    let runner = shrink::Runner {
        sim,
        root,
        seed: result.report.seed,
        mutation: args.mutation.clone(),
        jobs,
        runs_max: args.shrink_runs_max,
    };
    let started = exec::now();
    let shrunk = shrink::shrink(&runner, scenario.clone(), result.report.clone())?;
    let out_arg = args.shrink_out.clone().unwrap_or_else(|| shrink::default_out(scenario));
    let out = cwd.join(&out_arg);
    let finished = shrink::finished(&shrunk.scenario, scenario, result.report.seed, &key, &out);
    let Some(loaded) = shrink::write_and_load(&out, &finished)? else {
        anyhow::bail!("the shrunk scenario written to {} does not load", out.display());
    };
    println!(
        "shrunk in {} step{} ({} run{}, {}):",
        shrunk.removed.len(),
        plural(shrunk.removed.len()),
        shrunk.runs,
        plural(shrunk.runs as usize),
        crate::format_duration(started.elapsed())
    );
    for what in &shrunk.removed {
        println!("  {what}");
    }
    println!("before: {}", shrink::sizes(scenario));
    println!("after:  {}", shrink::sizes(&loaded));
    // Confirm the written file fails the same way, and give its replay.
    let shown_out = shown(&out, root);
    let job = Job {
        file: shown_out.display().to_string(),
        scenario: loaded.name.value.clone(),
        seed: result.report.seed,
        mutation: args.mutation.clone(),
        outputs: Vec::new(),
    };
    let confirm = exec::run_one(sim, root, &job);
    let same = confirm.report.failure_keys().contains(&key);
    println!(
        "wrote {} ({})",
        shown_out.display(),
        if same {
            format!("still fails with {key}")
        } else {
            "WARNING: it no longer fails the same way when run under its own name".to_owned()
        }
    );
    println!("replay: {}", confirm.report.replay_command());
    Ok(ExitCode::from(status))
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
