//! Project automation, one small binary (`cargo xtask <command>`):
//! `ci` (everything CI runs, stage by stage, timed), `test`, `bench`,
//! `simulate` (the scenario runner; see SCENARIOS.md and `sim/README.md`).

use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

mod simulate;
mod stages;

#[derive(Parser)]
#[command(name = "xtask", about = "project automation")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Everything CI runs: format, lints, tests (PostgreSQL included), snapshots,
    /// the scenario library (default seeds, determinism checked) and a short sweep.
    Ci,
    /// The test suites (`cargo test --workspace`), with snapshots checked.
    Test {
        /// Extra arguments for `cargo test`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The criterion benchmarks.
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run scenarios in the deterministic simulator (see SCENARIOS.md, "Running").
    Simulate(Box<simulate::Args>),
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let root = stages::workspace_root()?;
    std::env::set_current_dir(&root).context("entering the workspace root")?;
    match cli.command {
        Cmd::Ci => stages::ci().map(|()| ExitCode::SUCCESS),
        Cmd::Test { args } => {
            let mut cmd = cargo(&["test", "--workspace"]);
            cmd.args(&args).env("INSTA_UPDATE", "no");
            stages::run_cmd(&mut cmd)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench { args } => {
            let mut cmd = cargo(&["bench", "-p", "benches"]);
            cmd.args(&args);
            stages::run_cmd(&mut cmd)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Simulate(args) => simulate::run(*args, &cwd, &root),
    }
}

pub(crate) fn cargo(args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    cmd.args(args);
    cmd
}

pub(crate) fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

pub(crate) fn ensure(ok: bool, what: &str) -> Result<()> {
    if !ok {
        bail!("{what} failed");
    }
    Ok(())
}
