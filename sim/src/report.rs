//! The result of one run (one scenario at one seed), as the `sim` binary
//! prints it: one JSON object per run on stdout. `cargo xtask simulate` reads
//! these to build its summary, replay commands, `--json` files and `--merge`.

use serde::{Deserialize, Serialize};

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Passed,
    /// An expectation or invariant failed.
    Failed,
    /// The scenario uses a capability the engine has not built yet.
    Unsupported,
}

/// A failed expectation or invariant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// `invariant` or `expectation`.
    pub kind: String,
    /// The invariant's name, or the expectation's kind (`builds`, `workspace`, …).
    pub name: String,
    /// True simulated time since `start`, microseconds, and formatted.
    pub at_us: i64,
    pub at: String,
    pub replica: Option<u32>,
    pub objects: Vec<String>,
    pub message: String,
    /// `file:line:col` of the expectation (empty for invariants).
    pub location: String,
}

/// One run's report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    pub scenario: String,
    pub file: String,
    pub seed: u64,
    pub status: Status,
    /// Mutation switched on, if any.
    pub mutation: Option<String>,
    /// Hex hash of the text trace.
    pub trace_hash: String,
    /// Hex hash of the events' order with drawn values left out.
    pub order_hash: String,
    /// Simulated time covered (`run_for + settle`), microseconds.
    pub simulated_us: i64,
    pub failures: Vec<Failure>,
    /// Capabilities the scenario needs that are not built.
    pub unsupported: Vec<String>,
    /// The last trace lines before the first failure (or the end).
    pub tail: Vec<String>,
}

impl RunReport {
    /// The command that replays exactly this run.
    pub fn replay_command(&self) -> String {
        let mut command = format!("cargo xtask simulate --scenario {} --seed {}", self.file, self.seed);
        if let Some(mutation) = &self.mutation {
            command.push_str(&format!(" --mutation {mutation}"));
        }
        command
    }

    /// `invariant reminder_once` / `expectation builds at file:line:col`: how
    /// a failure is identified when shrinking ("fails the same way").
    pub fn failure_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.failures.iter().map(|f| format!("{} {}", f.kind, f.name)).collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

pub fn hex(hash: u64) -> String {
    format!("{hash:016x}")
}
