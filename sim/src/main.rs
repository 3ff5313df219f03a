//! The `sim` binary: runs one scenario at one seed in the deterministic
//! simulator and prints its report as one JSON line. Built with `--cfg madsim`
//! by `cargo xtask simulate` (which runs one process per seed); a normal build
//! only validates scenario files.
//!
//! ```text
//! sim run FILE --seed N [--mutation NAME] [--trace OUT.jsonl] [--html OUT.html] [--text OUT.txt]
//! sim check FILE...            validate only (exit 2 on a bad file)
//! ```
//! Exit status: 0 passed, 1 failed, 2 bad input, 3 unsupported.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

struct RunArgs {
    file: PathBuf,
    seed: Option<u64>,
    mutation: Option<String>,
    trace: Option<PathBuf>,
    html: Option<PathBuf>,
    text: Option<PathBuf>,
}

fn parse_run(args: &[String]) -> Result<RunArgs> {
    let mut run = RunArgs { file: PathBuf::new(), seed: None, mutation: None, trace: None, html: None, text: None };
    let mut file = None;
    let mut i = 0;
    while i < args.len() {
        let value = |i: usize| args.get(i + 1).cloned().with_context(|| format!("{} needs a value", args[i]));
        match args[i].as_str() {
            "--seed" => {
                run.seed = Some(value(i)?.parse().context("--seed takes an integer")?);
                i += 1;
            }
            "--mutation" => {
                run.mutation = Some(value(i)?);
                i += 1;
            }
            "--trace" => {
                run.trace = Some(value(i)?.into());
                i += 1;
            }
            "--html" => {
                run.html = Some(value(i)?.into());
                i += 1;
            }
            "--text" => {
                run.text = Some(value(i)?.into());
                i += 1;
            }
            other if other.starts_with("--") => bail!("unknown option `{other}`"),
            other => {
                if file.is_some() {
                    bail!("one scenario file per run");
                }
                file = Some(PathBuf::from(other));
            }
        }
        i += 1;
    }
    run.file = file.context("a scenario file is required")?;
    Ok(run)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("check") => check(&args[1..]),
        Some("run") => match parse_run(&args[1..]) {
            Ok(run) => execute(run),
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::from(2)
            }
        },
        _ => {
            eprintln!(
                "usage: sim run FILE --seed N [--mutation NAME] [--trace F] [--html F] [--text F] | sim check FILE..."
            );
            ExitCode::from(2)
        }
    }
}

fn check(files: &[String]) -> ExitCode {
    let mut bad = false;
    for file in files {
        if let Err(errors) = sim::scenario::load_file(std::path::Path::new(file)) {
            eprintln!("{errors}");
            bad = true;
        }
    }
    if bad {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(not(madsim))]
fn execute(run: RunArgs) -> ExitCode {
    let _ = (run.seed, run.mutation, run.trace, run.html, run.text);
    if let Err(errors) = sim::scenario::load_file(&run.file) {
        eprintln!("{errors}");
        return ExitCode::from(2);
    }
    eprintln!("error: this `sim` was built without `--cfg madsim`; run scenarios with `cargo xtask simulate`");
    ExitCode::from(2)
}

#[cfg(madsim)]
fn execute(run: RunArgs) -> ExitCode {
    use sim::report::Status;
    let scenario = match sim::scenario::load_file(&run.file) {
        Ok(scenario) => scenario,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    let mutation = match run.mutation.as_deref().map(|name| (name, engine::mutations::Mutation::from_name(name))) {
        None => None,
        Some((_, Some(m))) => Some(m),
        Some((name, None)) => {
            let names: Vec<&str> = engine::mutations::Mutation::ALL.iter().map(|m| m.name()).collect();
            eprintln!("error: unknown mutation `{name}`, expected one of: {}", names.join(", "));
            return ExitCode::from(2);
        }
    };
    let seed = run.seed.unwrap_or(scenario.seed);
    let output = sim::run::run(scenario, seed, sim::run::RunOptions { mutation });
    let write = |path: &Option<PathBuf>, text: &str| -> Result<()> {
        if let Some(path) = path {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    };
    let written = write(&run.trace, &output.trace_jsonl)
        .and_then(|()| write(&run.html, &output.html))
        .and_then(|()| write(&run.text, &output.trace_text));
    if let Err(error) = written {
        eprintln!("error: {error:#}");
        return ExitCode::from(2);
    }
    match serde_json::to_string(&output.report) {
        Ok(line) => println!("{line}"),
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    }
    match output.report.status {
        Status::Passed => ExitCode::SUCCESS,
        Status::Failed => ExitCode::from(1),
        Status::Unsupported => ExitCode::from(3),
    }
}
