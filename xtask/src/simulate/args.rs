//! The flags of `cargo xtask simulate` (SCENARIOS.md, "Running") and their
//! value syntaxes: seed ranges (`1000`, `100..200`) and shards (`3/8`).
//! Conflicts clap can see are declared here, so a bad combination is a clap
//! error (exit 2) before anything is loaded.

use std::fmt;
use std::path::PathBuf;

use clap::builder::PossibleValuesParser;

/// `cargo xtask simulate [FLAGS]`.
#[derive(clap::Args, Debug, Clone, Default)]
#[command(
    group(clap::ArgGroup::new("many_seeds").args(["seeds", "sweep"])),
    after_help = "Exit status: 0 all passed, 1 an expectation or invariant failed (or a determinism check \
                  found two hashes), 2 bad input (nothing ran), 3 a scenario is unsupported.\n\
                  SIM_BIN=PATH runs that `sim` binary instead of building one."
)]
pub struct Args {
    /// A scenario file, or a directory searched recursively (repeatable; default: scenarios/).
    #[arg(long, value_name = "PATH", conflicts_with = "merge")]
    pub scenario: Vec<PathBuf>,

    /// Run one seed (default: each scenario's own `seed`).
    #[arg(long, value_name = "N", conflicts_with_all = ["seeds", "sweep", "merge"])]
    pub seed: Option<u64>,

    /// Run seeds `0..N` (`N`) or `A..B` (half-open), one process each.
    #[arg(long, value_name = "N|A..B", value_parser = parse_seeds, conflicts_with_all = ["sweep", "merge"])]
    pub seeds: Option<SeedRange>,

    /// Every selected scenario (default: the whole library) over seeds `0..N` or `A..B`.
    #[arg(long, value_name = "N|A..B", value_parser = parse_seeds, conflicts_with = "merge")]
    pub sweep: Option<SeedRange>,

    /// Only the seeds `s` with `s % N == K - 1` of `--seeds` or `--sweep` (K in 1..=N).
    #[arg(long, value_name = "K/N", value_parser = parse_shard, requires = "many_seeds", conflicts_with = "merge")]
    pub shard: Option<Shard>,

    /// Read `--json` result files (of shards) and print one summary; runs nothing.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub merge: Vec<PathBuf>,

    /// Run each seed twice, in fresh processes, and compare the trace hashes.
    #[arg(long, conflicts_with = "merge")]
    pub check_determinism: bool,

    /// Write the trace as JSON lines (one scenario, one seed).
    #[arg(long, value_name = "FILE", conflicts_with = "merge")]
    pub trace: Option<PathBuf>,

    /// Write the HTML timeline (one scenario, one seed).
    #[arg(long, value_name = "FILE", conflicts_with = "merge")]
    pub html: Option<PathBuf>,

    /// Write the text trace (one scenario, one seed).
    #[arg(long, value_name = "FILE", conflicts_with = "merge")]
    pub text: Option<PathBuf>,

    /// Write every report (and determinism result) as JSON, for `--merge`.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Minimise a failing run (one scenario, one seed) into a smaller scenario that fails the same way.
    #[arg(long, conflicts_with_all = ["merge", "check_determinism"])]
    pub shrink: bool,

    /// Where `--shrink` writes the smaller scenario (default: `<name>.shrunk.yaml`).
    #[arg(long, value_name = "FILE", requires = "shrink")]
    pub shrink_out: Option<PathBuf>,

    /// Most simulator runs `--shrink` may spend.
    #[arg(long, value_name = "N", default_value_t = 500, requires = "shrink")]
    pub shrink_runs_max: u32,

    /// Switch a named bug on (engine/src/mutations.rs).
    #[arg(long, value_name = "NAME", value_parser = mutation_names(), conflicts_with = "merge")]
    pub mutation: Option<String>,

    /// Processes at once (default: the available cores).
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "merge")]
    pub jobs: Option<u32>,

    /// Print every seed's line even in big runs (default: up to 200 runs).
    #[arg(long, short = 'v')]
    pub verbose: bool,
}

impl Args {
    /// Flags that write one run's outputs (`--trace`, `--html`, `--text`), by name.
    pub fn single_run_outputs(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.trace.is_some() {
            out.push("--trace");
        }
        if self.html.is_some() {
            out.push("--html");
        }
        if self.text.is_some() {
            out.push("--text");
        }
        out
    }

    /// The seeds asked for many at a time, if any.
    pub fn seed_range(&self) -> Option<SeedRange> {
        self.seeds.or(self.sweep)
    }
}

fn mutation_names() -> PossibleValuesParser {
    PossibleValuesParser::new(engine::mutations::Mutation::ALL.iter().map(|m| m.name()))
}

/// Seeds `start..end` (half-open).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedRange {
    pub start: u64,
    pub end: u64,
}

impl SeedRange {
    /// The seeds of this range in `shard` (all without one), ascending.
    pub fn seeds(self, shard: Option<Shard>) -> Vec<u64> {
        (self.start..self.end).filter(|&seed| shard.is_none_or(|shard| shard.contains(seed))).collect()
    }
}

impl fmt::Display for SeedRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

/// `N` is `0..N`; `A..B` is half-open. Empty ranges are refused.
pub fn parse_seeds(text: &str) -> Result<SeedRange, String> {
    let number =
        |part: &str| part.trim().parse::<u64>().map_err(|_| format!("`{part}` is not a seed (a whole number ≥ 0)"));
    let range = match text.split_once("..") {
        Some((start, end)) => {
            let end =
                end.strip_prefix('=').map_or_else(|| number(end), |inclusive| number(inclusive).map(|n| n + 1))?;
            SeedRange { start: number(start)?, end }
        }
        None => SeedRange { start: 0, end: number(text)? },
    };
    if range.end <= range.start {
        return Err(format!("`{text}` holds no seed: expected `N` (seeds 0..N) or `A..B` with A < B"));
    }
    Ok(range)
}

/// Shard `index` of `count`, 1-based as written (`3/8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    pub fn contains(self, seed: u64) -> bool {
        seed % self.count == self.index - 1
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

pub fn parse_shard(text: &str) -> Result<Shard, String> {
    let (index, count) =
        text.split_once('/').ok_or_else(|| format!("`{text}` is not a shard: expected `K/N`, e.g. `3/8`"))?;
    let number = |part: &str| {
        part.trim().parse::<u64>().map_err(|_| format!("`{part}` is not a whole number in shard `{text}`"))
    };
    let shard = Shard { index: number(index)?, count: number(count)? };
    if shard.count == 0 {
        return Err(format!("shard `{text}` has no shards: N must be at least 1"));
    }
    if shard.index == 0 || shard.index > shard.count {
        return Err(format!("shard `{text}` does not exist: K runs from 1 to {}", shard.count));
    }
    Ok(shard)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches, Parser};

    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(line: &[&str]) -> Result<Args, clap::Error> {
        let command = Cli::command().no_binary_name(true);
        let matches = command.try_get_matches_from(line)?;
        Cli::from_arg_matches(&matches).map(|cli| cli.args)
    }

    fn error(line: &[&str]) -> String {
        match parse(line) {
            Ok(args) => panic!("{line:?} parsed: {args:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn seed_ranges() {
        assert_eq!(parse_seeds("1000"), Ok(SeedRange { start: 0, end: 1000 }));
        assert_eq!(parse_seeds("100..200"), Ok(SeedRange { start: 100, end: 200 }));
        assert_eq!(parse_seeds("100..=199"), Ok(SeedRange { start: 100, end: 200 }));
        assert!(parse_seeds("0").unwrap_err().contains("holds no seed"));
        assert!(parse_seeds("200..100").unwrap_err().contains("holds no seed"));
        assert!(parse_seeds("5..5").unwrap_err().contains("holds no seed"));
        assert!(parse_seeds("x").unwrap_err().contains("`x` is not a seed"));
        assert!(parse_seeds("-3").is_err());
        assert!(parse_seeds("1..b").unwrap_err().contains("`b` is not a seed"));
    }

    #[test]
    fn shards() {
        let shard = parse_shard("3/8").unwrap();
        assert_eq!(shard, Shard { index: 3, count: 8 });
        assert_eq!(SeedRange { start: 0, end: 20 }.seeds(Some(shard)), [2, 10, 18]);
        assert_eq!(SeedRange { start: 0, end: 3 }.seeds(None), [0, 1, 2]);
        assert!(parse_shard("0/8").unwrap_err().contains("K runs from 1 to 8"));
        assert!(parse_shard("9/8").unwrap_err().contains("K runs from 1 to 8"));
        assert!(parse_shard("1/0").unwrap_err().contains("N must be at least 1"));
        assert!(parse_shard("3").unwrap_err().contains("expected `K/N`"));
        assert!(parse_shard("a/8").is_err());
        // Every seed in exactly one shard.
        let all: Vec<u64> = (1..=4)
            .flat_map(|k| SeedRange { start: 5, end: 25 }.seeds(Some(Shard { index: k, count: 4 })))
            .collect::<std::collections::BTreeSet<u64>>()
            .into_iter()
            .collect();
        assert_eq!(all, (5..25).collect::<Vec<u64>>());
    }

    #[test]
    fn flags_parse() {
        let args =
            parse(&["--scenario", "scenarios/lifecycle", "--seeds", "100..200", "--shard", "2/4", "-j", "3"]).unwrap();
        assert_eq!(args.scenario, [PathBuf::from("scenarios/lifecycle")]);
        assert_eq!(args.seed_range(), Some(SeedRange { start: 100, end: 200 }));
        assert_eq!(args.shard, Some(Shard { index: 2, count: 4 }));
        assert_eq!(args.jobs, Some(3));
        let args = parse(&["--sweep", "1000", "--mutation", "reminder_no_dedupe", "--json", "out.json"]).unwrap();
        assert_eq!(args.sweep, Some(SeedRange { start: 0, end: 1000 }));
        assert_eq!(args.mutation.as_deref(), Some("reminder_no_dedupe"));
        let args = parse(&["--merge", "a.json", "b.json"]).unwrap();
        assert_eq!(args.merge.len(), 2);
        let args = parse(&["--scenario", "f.yaml", "--seed", "3", "--trace", "t.jsonl", "--html", "t.html"]).unwrap();
        assert_eq!(args.single_run_outputs(), ["--trace", "--html"]);
        let args = parse(&["--scenario", "f.yaml", "--seed", "3", "--shrink", "--shrink-out", "small.yaml"]).unwrap();
        assert!(args.shrink);
        assert_eq!(args.shrink_runs_max, 500);
    }

    #[test]
    fn conflicting_flags_are_clap_errors() {
        assert!(error(&["--seed", "1", "--seeds", "10"]).contains("cannot be used with"));
        assert!(error(&["--seed", "1", "--sweep", "10"]).contains("cannot be used with"));
        assert!(error(&["--seeds", "5", "--sweep", "10"]).contains("cannot be used with"));
        assert!(error(&["--merge", "a.json", "--scenario", "x"]).contains("cannot be used with"));
        assert!(error(&["--merge", "a.json", "--seeds", "4"]).contains("cannot be used with"));
        assert!(error(&["--merge", "a.json", "--check-determinism"]).contains("cannot be used with"));
        assert!(error(&["--merge", "a.json", "--mutation", "reminder_no_dedupe"]).contains("cannot be used with"));
        assert!(error(&["--shard", "3/8"]).contains("required arguments were not provided"));
        assert!(error(&["--seed", "2", "--shard", "3/8"]).contains("--seeds"));
        assert!(error(&["--sweep", "10", "--shard", "0/8"]).contains("K runs from 1 to 8"));
        assert!(error(&["--sweep", "10", "--shard", "9/8"]).contains("K runs from 1 to 8"));
        assert!(error(&["--seeds", "200..100"]).contains("holds no seed"));
        assert!(error(&["--mutation", "no_such_bug"]).contains("reminder_no_dedupe"));
        assert!(error(&["--shrink-out", "x.yaml"]).contains("--shrink"));
        assert!(error(&["-j", "0"]).contains("0"));
    }
}
