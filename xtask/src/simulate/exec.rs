//! Running the simulator: building the madsim `sim` binary once (release, its
//! own target dir `target/sim`, `--cfg madsim` through `--config` so the
//! project's other rustflags stay), then one fresh process per (scenario,
//! seed) run, `jobs` at a time, with a progress bar on stderr (plain lines
//! when stderr is not a terminal or under `CI=true`).
//!
//! Each process prints one JSON [`RunReport`] line; a process that prints none
//! (a panic, a signal) becomes a failed report of kind `crash` carrying its
//! stderr, so it is counted, shown and replayed like any other failure.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sim::report::{Failure, RunReport, Status};

use crate::format_duration;

/// The environment variable naming a `sim` binary to use instead of building one.
pub const SIM_BIN_ENV: &str = "SIM_BIN";

/// Lines of a crashed process's stderr kept as its report's tail.
const CRASH_TAIL_LINES: usize = 20;

/// The wall clock, for timing real processes (xtask is not simulated).
#[allow(clippy::disallowed_methods)] // xtask times real child processes with the wall clock
pub fn now() -> Instant {
    Instant::now()
}

/// The `sim` binary: `$SIM_BIN` if set (a path relative to `cwd`, or a
/// name looked up in `PATH`), else built (and the build timed).
pub fn sim_binary(root: &Path, cwd: &Path) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(SIM_BIN_ENV) {
        let path = PathBuf::from(path);
        let path = if path.components().count() > 1 { cwd.join(path) } else { path };
        eprintln!("using {SIM_BIN_ENV}={}", path.display());
        return Ok(path);
    }
    let target = root.join("target").join("sim");
    let mut cmd = crate::cargo(&[
        "build",
        "--release",
        "-p",
        "sim",
        "--bin",
        "sim",
        "--config",
        "target.'cfg(all())'.rustflags = ['--cfg', 'madsim']",
    ]);
    // An ambient RUSTFLAGS would replace the `--config` rustflags (no madsim).
    cmd.env("CARGO_TARGET_DIR", &target).env_remove("RUSTFLAGS");
    eprintln!("building the simulator: CARGO_TARGET_DIR=target/sim cargo build --release -p sim (--cfg madsim)");
    let started = now();
    let status = cmd.status().context("starting cargo build for the simulator")?;
    crate::ensure(status.success(), "building the simulator (cargo build --release -p sim with --cfg madsim)")?;
    eprintln!("built the simulator in {}", format_duration(started.elapsed()));
    Ok(target.join("release").join("sim"))
}

/// One process to start: `sim run FILE --seed N [...]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The scenario as the loader names it (the path passed to `sim`).
    pub file: String,
    pub scenario: String,
    pub seed: u64,
    pub mutation: Option<String>,
    /// `--trace`, `--html`, `--text` with their paths.
    pub outputs: Vec<(&'static str, PathBuf)>,
}

impl Job {
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["run".to_owned(), self.file.clone(), "--seed".to_owned(), self.seed.to_string()];
        if let Some(mutation) = &self.mutation {
            args.push("--mutation".to_owned());
            args.push(mutation.clone());
        }
        for (flag, path) in &self.outputs {
            args.push((*flag).to_owned());
            args.push(path.display().to_string());
        }
        args
    }
}

/// What one process gave.
#[derive(Clone, Debug)]
pub struct Ran {
    pub report: RunReport,
    pub wall: Duration,
    /// `sim` refused the input (exit 2): its message.
    pub bad_input: Option<String>,
}

/// Reads one process's output into a report (see the module docs).
pub fn interpret(job: &Job, output: &Output) -> (RunReport, Option<String>) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let code = output.status.code();
    let parsed = stdout.lines().rev().find_map(|line| serde_json::from_str::<RunReport>(line.trim()).ok());
    match (code, parsed) {
        (Some(0 | 1 | 3), Some(report)) => (report, None),
        (Some(2), _) => {
            let message = stderr.trim().to_owned();
            let message =
                if message.is_empty() { "the simulator refused the input (exit 2)".to_owned() } else { message };
            (crashed(job, "bad_input", &message, &stderr), Some(message))
        }
        (code, parsed) => {
            let how = match code {
                Some(code) => format!("exit {code}"),
                None => exit_signal(output).map_or_else(|| "killed".to_owned(), |s| format!("signal {s}")),
            };
            let what = if parsed.is_some() { "a report with an unexpected exit status" } else { "no report" };
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
            let message = format!("the simulator process ended with {how} and {what}: {last}");
            (crashed(job, &how, &message, &stderr), None)
        }
    }
}

#[cfg(unix)]
fn exit_signal(output: &Output) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt as _;
    output.status.signal()
}

#[cfg(not(unix))]
fn exit_signal(_output: &Output) -> Option<i32> {
    None
}

/// A failed report for a process that gave none.
fn crashed(job: &Job, name: &str, message: &str, stderr: &str) -> RunReport {
    let lines: Vec<&str> = stderr.lines().collect();
    let tail = lines[lines.len().saturating_sub(CRASH_TAIL_LINES)..].iter().map(|l| (*l).to_owned()).collect();
    RunReport {
        scenario: job.scenario.clone(),
        file: job.file.clone(),
        seed: job.seed,
        status: Status::Failed,
        mutation: job.mutation.clone(),
        trace_hash: String::new(),
        order_hash: String::new(),
        simulated_us: 0,
        failures: vec![Failure {
            kind: "crash".to_owned(),
            name: name.to_owned(),
            at_us: 0,
            at: String::new(),
            replica: None,
            objects: Vec::new(),
            message: message.to_owned(),
            location: String::new(),
        }],
        unsupported: Vec::new(),
        tail,
    }
}

/// Runs one job to completion.
pub fn run_one(sim: &Path, root: &Path, job: &Job) -> Ran {
    let started = now();
    let output = Command::new(sim).args(job.args()).current_dir(root).output();
    let wall = started.elapsed();
    match output {
        Ok(output) => {
            let (report, bad_input) = interpret(job, &output);
            Ran { report, wall, bad_input }
        }
        Err(error) => {
            let message = format!("cannot start the simulator {}: {error}", sim.display());
            Ran { report: crashed(job, "start", &message, ""), wall, bad_input: None }
        }
    }
}

/// How progress is shown.
pub struct Progress {
    bar: ProgressBar,
    /// Plain lines instead of a bar: the total and the last step printed.
    plain: Option<(u64, u64)>,
    failed: u64,
    started: Instant,
}

impl Progress {
    pub fn new(total: u64, what: &str) -> Progress {
        let plain = !std::io::stderr().is_terminal() || std::env::var("CI").as_deref() == Ok("true");
        let bar = if plain {
            ProgressBar::hidden()
        } else {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style =
                ProgressStyle::with_template("{elapsed_precise} [{bar:40.cyan/blue}] {pos}/{len} {prefix} {msg}")
                    .map(|s| s.progress_chars("=> "))
                    .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_prefix(what.to_owned());
            bar
        };
        if plain {
            eprintln!("running {total} simulator process{}", if total == 1 { "" } else { "es" });
        }
        Progress { bar, plain: plain.then_some((total, 0)), failed: 0, started: now() }
    }

    /// Prints above the bar.
    pub fn println(&self, line: &str) {
        if self.plain.is_some() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    pub fn advance(&mut self, failed: bool) {
        self.failed += u64::from(failed);
        self.bar.inc(1);
        if self.failed > 0 {
            self.bar.set_message(format!("({} failed)", self.failed));
        }
        if let Some((total, last)) = &mut self.plain {
            let done = self.bar.position();
            // Every tenth of the way, and the end.
            let step = (*total / 10).max(1);
            if done == *total || done >= *last + step {
                *last = done;
                eprintln!(
                    "progress: {done}/{total} runs, {} failed, {}",
                    self.failed,
                    format_duration(self.started.elapsed())
                );
            }
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Runs every job, `jobs` processes at a time; calls `done` on this thread as
/// each finishes (in completion order) and returns the results in job order.
pub fn run_all(sim: &Path, root: &Path, jobs: &[Job], parallel: usize, mut done: impl FnMut(usize, &Ran)) -> Vec<Ran> {
    let next = AtomicUsize::new(0);
    let (sender, receiver) = mpsc::channel::<(usize, Ran)>();
    let mut results: Vec<Option<Ran>> = vec![None; jobs.len()];
    // Worker threads only wait on child processes: the host side of the
    // simulator, never simulated code.
    std::thread::scope(|scope| {
        for _ in 0..parallel.clamp(1, jobs.len().max(1)) {
            let sender = sender.clone();
            let next = &next;
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                if sender.send((i, run_one(sim, root, job))).is_err() {
                    break;
                }
            });
        }
        drop(sender);
        for (i, ran) in receiver {
            done(i, &ran);
            results[i] = Some(ran);
        }
    });
    results
        .into_iter()
        .zip(jobs)
        .map(|(ran, job)| {
            ran.unwrap_or_else(|| Ran {
                report: crashed(job, "lost", "the run's worker stopped before reporting", ""),
                wall: Duration::ZERO,
                bad_input: None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt as _;
    use std::process::ExitStatus;

    use super::*;

    fn job() -> Job {
        Job {
            file: "scenarios/a.yaml".into(),
            scenario: "a".into(),
            seed: 9,
            mutation: Some("reminder_no_dedupe".into()),
            outputs: vec![("--html", PathBuf::from("/tmp/a.html"))],
        }
    }

    fn output(code: i32, stdout: &str, stderr: &str) -> Output {
        Output { status: ExitStatus::from_raw(code << 8), stdout: stdout.into(), stderr: stderr.into() }
    }

    #[test]
    fn job_arguments() {
        assert_eq!(
            job().args(),
            ["run", "scenarios/a.yaml", "--seed", "9", "--mutation", "reminder_no_dedupe", "--html", "/tmp/a.html"]
        );
    }

    #[test]
    fn reports_and_crashes() {
        let mut report = crate::simulate::results::tests_support::report("scenarios/a.yaml", 9, Status::Passed);
        let line = serde_json::to_string(&report).unwrap();
        let (got, bad) = interpret(&job(), &output(0, &format!("noise\n{line}\n"), ""));
        assert_eq!((got, bad), (report.clone(), None));

        report.status = Status::Failed;
        let line = serde_json::to_string(&report).unwrap();
        assert_eq!(interpret(&job(), &output(1, &line, "")).0, report);

        let (got, bad) = interpret(&job(), &output(101, "", "thread 'main' panicked at engine/src/x.rs:3:5:\nboom\n"));
        assert_eq!(got.status, Status::Failed);
        assert_eq!(got.failure_keys(), ["crash exit 101"]);
        assert!(got.failures[0].message.ends_with("exit 101 and no report: boom"), "{}", got.failures[0].message);
        assert_eq!(got.tail.len(), 2);
        assert_eq!(
            got.replay_command(),
            "cargo xtask simulate --scenario scenarios/a.yaml --seed 9 --mutation reminder_no_dedupe"
        );
        assert_eq!(bad, None);

        let killed = Output { status: ExitStatus::from_raw(9), stdout: Vec::new(), stderr: Vec::new() };
        assert_eq!(interpret(&job(), &killed).0.failure_keys(), ["crash signal 9"]);

        let (got, bad) = interpret(&job(), &output(2, "", "scenarios/a.yaml:4:7: no workspace `w9` at +1h\n"));
        assert_eq!(bad.as_deref(), Some("scenarios/a.yaml:4:7: no workspace `w9` at +1h"));
        assert_eq!(got.status, Status::Failed);
    }
}
