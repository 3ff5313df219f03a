//! What the runs produced and what is made of it: one [`SeedResult`] per
//! (scenario, seed), the `--json` file that holds them ([`ResultsFile`], read
//! back by `--merge`), the per-seed lines, the summary table, the failure
//! reports with their replay commands, mutation detection, and the exit status.
//! Everything here is pure: it reads results and returns text or numbers.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use sim::report::{Failure, RunReport, Status};

/// The outcome of one (scenario, seed): the report of its first process,
/// its wall time, and the second process's hashes under `--check-determinism`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedResult {
    pub report: RunReport,
    /// Wall time of the first process, microseconds (start to exit).
    pub wall_us: u64,
    /// The run's input was refused at run time (the `sim` process exited 2):
    /// its message. Counts as bad input, not as a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad_input: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub determinism: Option<Determinism>,
}

/// Hashes of the second, fresh process of a seed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Determinism {
    pub trace_hash: String,
    pub order_hash: String,
}

impl SeedResult {
    /// The determinism check ran and found a different trace.
    pub fn nondeterministic(&self) -> bool {
        self.determinism.as_ref().is_some_and(|d| d.trace_hash != self.report.trace_hash)
    }

    pub fn verdict(&self) -> Verdict {
        if self.bad_input.is_some() {
            Verdict::BadInput
        } else if self.report.status == Status::Failed || self.nondeterministic() {
            Verdict::Failed
        } else if self.report.status == Status::Unsupported {
            Verdict::Unsupported
        } else {
            Verdict::Passed
        }
    }

    /// The scenario as shown: its path under `scenarios/` without extension
    /// (`lifecycle/autostop_deadline`), else its name.
    pub fn display_name(&self) -> String {
        display_name(&self.report.file, &self.report.scenario)
    }
}

pub fn display_name(file: &str, scenario: &str) -> String {
    let path = file.replace('\\', "/");
    let under = path.strip_prefix("./").unwrap_or(&path);
    match under.strip_prefix("scenarios/") {
        Some(rest) => rest.strip_suffix(".yaml").or_else(|| rest.strip_suffix(".yml")).unwrap_or(rest).to_owned(),
        None => scenario.to_owned(),
    }
}

/// How one seed ended, for counting and the exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Passed,
    Failed,
    Unsupported,
    BadInput,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "FAILED",
            Verdict::Unsupported => "unsupported",
            Verdict::BadInput => "bad input",
        }
    }
}

/// The exit status of a set of results: 2 bad input, else 1 any failure
/// (a determinism mismatch included), else 3 any unsupported, else 0.
pub fn exit_status(results: &[SeedResult]) -> u8 {
    let verdicts: BTreeSet<Verdict> = results.iter().map(SeedResult::verdict).collect();
    if verdicts.contains(&Verdict::BadInput) {
        2
    } else if verdicts.contains(&Verdict::Failed) {
        1
    } else if verdicts.contains(&Verdict::Unsupported) {
        3
    } else {
        0
    }
}

/// The `--json` file: every result of a run of `cargo xtask simulate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultsFile {
    /// Format version of this file.
    pub version: u32,
    pub mutation: Option<String>,
    /// `--seeds`/`--sweep` range, if one was given.
    pub seeds: Option<String>,
    pub shard: Option<String>,
    pub check_determinism: bool,
    pub results: Vec<SeedResult>,
}

pub const RESULTS_VERSION: u32 = 1;

/// Merges result files (of shards): results sorted by scenario and seed. A
/// seed present in several files is kept once; if two copies disagree on the
/// trace hash, the kept one records the other as a failed determinism check.
pub fn merge(files: Vec<ResultsFile>) -> Vec<SeedResult> {
    let mut by_key: BTreeMap<(String, u64), SeedResult> = BTreeMap::new();
    for result in files.into_iter().flat_map(|f| f.results) {
        let key = (result.report.file.clone(), result.report.seed);
        match by_key.get_mut(&key) {
            None => {
                by_key.insert(key, result);
            }
            Some(kept) => {
                if kept.report.trace_hash != result.report.trace_hash && !kept.nondeterministic() {
                    kept.determinism = Some(Determinism {
                        trace_hash: result.report.trace_hash,
                        order_hash: result.report.order_hash,
                    });
                }
            }
        }
    }
    by_key.into_values().collect()
}

/// Sorts results by scenario (display name), then seed.
pub fn sort(results: &mut [SeedResult]) {
    results.sort_by_key(|r| (r.display_name(), r.report.seed));
}

/// One compact line per seed:
/// `lifecycle/autostop_deadline seed=3 passed trace_hash=… order_hash=…`.
pub fn seed_line(result: &SeedResult) -> String {
    let report = &result.report;
    let mut line = format!(
        "{} seed={} {} trace_hash={} order_hash={}",
        result.display_name(),
        report.seed,
        result.verdict().as_str(),
        or_dash(&report.trace_hash),
        or_dash(&report.order_hash)
    );
    if let Some(d) = &result.determinism {
        if result.nondeterministic() {
            let _ = write!(line, " NONDETERMINISTIC second trace_hash={}", or_dash(&d.trace_hash));
        } else {
            line.push_str(" deterministic");
        }
    }
    if let Some(first) = report.failures.first() {
        let _ = write!(line, " ({} {})", first.kind, first.name);
    }
    line
}

fn or_dash(text: &str) -> &str {
    if text.is_empty() {
        "-"
    } else {
        text
    }
}

/// One row of the summary table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Row {
    pub scenario: String,
    pub seeds: u64,
    pub passed: u64,
    pub failed: u64,
    pub unsupported: u64,
    pub bad_input: u64,
    pub simulated_us: u64,
    pub wall_us: u64,
    /// Distinct order hashes among the seeds that ran.
    pub orders: u64,
    /// Seeds whose second process gave another trace.
    pub nondeterministic: u64,
}

impl Row {
    /// Simulated time over wall time.
    pub fn speedup(&self) -> Option<f64> {
        (self.wall_us > 0 && self.simulated_us > 0).then(|| self.simulated_us as f64 / self.wall_us as f64)
    }
}

/// One row per scenario (by display name), in name order.
pub fn rows(results: &[SeedResult]) -> Vec<Row> {
    let mut rows: BTreeMap<String, (Row, BTreeSet<String>)> = BTreeMap::new();
    for result in results {
        let name = result.display_name();
        let (row, orders) =
            rows.entry(name.clone()).or_insert_with(|| (Row { scenario: name, ..Row::default() }, BTreeSet::new()));
        row.seeds += 1;
        match result.verdict() {
            Verdict::Passed => row.passed += 1,
            Verdict::Failed => row.failed += 1,
            Verdict::Unsupported => row.unsupported += 1,
            Verdict::BadInput => row.bad_input += 1,
        }
        row.nondeterministic += u64::from(result.nondeterministic());
        row.simulated_us += u64::try_from(result.report.simulated_us).unwrap_or(0);
        row.wall_us += result.wall_us;
        if !result.report.order_hash.is_empty() {
            orders.insert(result.report.order_hash.clone());
        }
    }
    rows.into_values()
        .map(|(mut row, orders)| {
            row.orders = orders.len() as u64;
            row
        })
        .collect()
}

/// `52s`, `3h10m`, `2d4h`, `850ms`: a compact span for the table.
pub fn span_text(micros: u64) -> String {
    let secs = micros / 1_000_000;
    if secs == 0 {
        return format!("{}ms", micros / 1_000);
    }
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{:.1}s", micros as f64 / 1e6),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h}h"),
    }
}

fn speedup_text(row: &Row) -> String {
    match row.speedup() {
        Some(x) if x >= 100.0 => format!("{x:.0}x"),
        Some(x) => format!("{x:.1}x"),
        None => "-".to_owned(),
    }
}

/// The summary table, a total row last.
pub fn table(rows: &[Row]) -> String {
    let header = ["scenario", "seeds", "passed", "failed", "unsupported", "orders", "simulated", "wall", "speed-up"];
    let mut total = Row { scenario: "total".to_owned(), ..Row::default() };
    for row in rows {
        total.seeds += row.seeds;
        total.passed += row.passed;
        total.failed += row.failed;
        total.unsupported += row.unsupported;
        total.bad_input += row.bad_input;
        total.simulated_us += row.simulated_us;
        total.wall_us += row.wall_us;
        total.orders += row.orders;
        total.nondeterministic += row.nondeterministic;
    }
    let cells = |row: &Row| -> Vec<String> {
        let mut failed = row.failed.to_string();
        if row.nondeterministic > 0 {
            let _ = write!(failed, " ({} nondet.)", row.nondeterministic);
        }
        if row.bad_input > 0 {
            let _ = write!(failed, " (+{} bad input)", row.bad_input);
        }
        vec![
            row.scenario.clone(),
            row.seeds.to_string(),
            row.passed.to_string(),
            failed,
            row.unsupported.to_string(),
            row.orders.to_string(),
            span_text(row.simulated_us),
            span_text(row.wall_us),
            speedup_text(row),
        ]
    };
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    lines.extend(rows.iter().map(cells));
    let with_total = rows.len() > 1;
    if with_total {
        lines.push(cells(&total));
    }
    let widths: Vec<usize> =
        (0..header.len()).map(|c| lines.iter().map(|l| l[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        if with_total && i == lines.len() - 1 || i == 1 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "{}", rule.join("  "));
        }
        let mut text = String::new();
        for (c, cell) in line.iter().enumerate() {
            if c > 0 {
                text.push_str("  ");
            }
            let pad = widths[c] - cell.chars().count();
            if c == 0 {
                text.push_str(cell);
                text.push_str(&" ".repeat(pad));
            } else {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    }
    out
}

/// The first line naming a failure: `invariant violated: reminder_once (seed 8123)`.
fn failure_headline(failure: &Failure, seed: u64) -> String {
    match failure.kind.as_str() {
        "invariant" => format!("invariant violated: {} (seed {seed})", failure.name),
        "expectation" => format!("expectation failed: {} (seed {seed})", failure.name),
        kind => format!("{kind}: {} (seed {seed})", failure.name),
    }
}

/// Everything a person needs about one failing seed: each failure with its
/// message, time, replica, objects and location, the last trace lines, and
/// the one command that replays it.
pub fn failure_report(result: &SeedResult) -> String {
    let report = &result.report;
    let mut out = String::new();
    let _ = writeln!(out, "{} seed={}", result.display_name(), report.seed);
    if let Some(mutation) = &report.mutation {
        let _ = writeln!(out, "  mutation: {mutation}");
    }
    for failure in &report.failures {
        let _ = writeln!(out, "  {}", failure_headline(failure, report.seed));
        let mut facts = Vec::new();
        if !failure.at.is_empty() {
            facts.push(format!("at {}", failure.at));
        }
        if let Some(replica) = failure.replica {
            facts.push(format!("replica r{replica}"));
        }
        if !failure.objects.is_empty() {
            facts.push(format!("objects {}", failure.objects.join(", ")));
        }
        if !failure.location.is_empty() {
            facts.push(failure.location.clone());
        }
        if !facts.is_empty() {
            let _ = writeln!(out, "    {}", facts.join("; "));
        }
        for line in failure.message.lines() {
            let _ = writeln!(out, "    {line}");
        }
    }
    if let Some(d) = result.determinism.as_ref().filter(|_| result.nondeterministic()) {
        let _ = writeln!(out, "  nondeterministic: the same seed gave two traces in fresh processes");
        let _ = writeln!(out, "    first  trace_hash={} order_hash={}", report.trace_hash, report.order_hash);
        let _ = writeln!(out, "    second trace_hash={} order_hash={}", d.trace_hash, d.order_hash);
    }
    if !report.tail.is_empty() {
        let _ = writeln!(out, "  last trace lines:");
        for line in &report.tail {
            let _ = writeln!(out, "    {line}");
        }
    }
    let _ = writeln!(out, "replay: {}", report.replay_command());
    out
}

/// Per scenario under a mutation: the first seed (in seed order) whose run
/// failed, and how many seeds ran up to and including it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detection {
    pub scenario: String,
    pub seeds_run: u64,
    /// `(seed, seeds to detection)`.
    pub first: Option<(u64, u64)>,
}

pub fn detections(results: &[SeedResult]) -> Vec<Detection> {
    let mut by_scenario: BTreeMap<String, Vec<&SeedResult>> = BTreeMap::new();
    for result in results {
        by_scenario.entry(result.display_name()).or_default().push(result);
    }
    by_scenario
        .into_iter()
        .map(|(scenario, mut seeds)| {
            seeds.sort_by_key(|r| r.report.seed);
            let first = seeds
                .iter()
                .position(|r| r.report.status == Status::Failed)
                .map(|i| (seeds[i].report.seed, i as u64 + 1));
            Detection { scenario, seeds_run: seeds.len() as u64, first }
        })
        .collect()
}

pub fn detections_text(mutation: &str, detections: &[Detection]) -> String {
    let mut out = format!("mutation {mutation}:\n");
    for d in detections {
        let _ = match d.first {
            Some((seed, count)) => {
                writeln!(
                    out,
                    "  detected by {} at seed {seed} ({count} seed{} to detection)",
                    d.scenario,
                    plural(count)
                )
            }
            None => writeln!(out, "  not detected by {} ({} seed{})", d.scenario, d.seeds_run, plural(d.seeds_run)),
        };
    }
    out
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Reports for tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    pub fn report(file: &str, seed: u64, status: Status) -> RunReport {
        RunReport {
            scenario: file.rsplit('/').next().unwrap_or(file).trim_end_matches(".yaml").to_owned(),
            file: file.to_owned(),
            seed,
            status,
            mutation: None,
            trace_hash: format!("{:016x}", seed * 7 + 1),
            order_hash: format!("{:016x}", seed % 2),
            simulated_us: 3_600_000_000,
            failures: if status == Status::Failed {
                vec![Failure {
                    kind: "invariant".into(),
                    name: "reminder_once".into(),
                    at_us: 60_000_000,
                    at: "+0h01m00.000s".into(),
                    replica: Some(1),
                    objects: vec!["w1".into()],
                    message: "two reminders for one stop time".into(),
                    location: String::new(),
                }]
            } else {
                Vec::new()
            },
            unsupported: Vec::new(),
            tail: vec!["+0h00m59.000s r1    notify     w1".into()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::report;
    use super::*;

    fn result(file: &str, seed: u64, status: Status) -> SeedResult {
        SeedResult { report: report(file, seed, status), wall_us: 500_000, bad_input: None, determinism: None }
    }

    #[test]
    fn names_lines_and_verdicts() {
        let r = result("scenarios/lifecycle/autostop_deadline.yaml", 3, Status::Passed);
        assert_eq!(r.display_name(), "lifecycle/autostop_deadline");
        assert_eq!(display_name("/tmp/x/other.yaml", "other"), "other");
        assert_eq!(
            seed_line(&r),
            "lifecycle/autostop_deadline seed=3 passed trace_hash=0000000000000016 order_hash=0000000000000001"
        );
        let f = result("scenarios/a.yaml", 4, Status::Failed);
        assert_eq!(
            seed_line(&f),
            "a seed=4 FAILED trace_hash=000000000000001d order_hash=0000000000000000 (invariant reminder_once)"
        );
        let mut d = result("scenarios/a.yaml", 5, Status::Passed);
        d.determinism = Some(Determinism { trace_hash: "ffff".into(), order_hash: "0".into() });
        assert_eq!(d.verdict(), Verdict::Failed);
        assert!(seed_line(&d).ends_with("NONDETERMINISTIC second trace_hash=ffff"));
        d.determinism = Some(Determinism { trace_hash: d.report.trace_hash.clone(), order_hash: "0".into() });
        assert_eq!(d.verdict(), Verdict::Passed);
        assert!(seed_line(&d).ends_with(" deterministic"));
    }

    #[test]
    fn exit_statuses() {
        let passed = result("scenarios/a.yaml", 0, Status::Passed);
        let failed = result("scenarios/a.yaml", 1, Status::Failed);
        let unsupported = result("scenarios/b.yaml", 0, Status::Unsupported);
        let mut bad = result("scenarios/c.yaml", 0, Status::Failed);
        bad.bad_input = Some("scenarios/c.yaml:3:5: no workspace `w9` at +1h".into());
        assert_eq!(exit_status(&[]), 0);
        assert_eq!(exit_status(std::slice::from_ref(&passed)), 0);
        assert_eq!(exit_status(&[passed.clone(), unsupported.clone()]), 3);
        assert_eq!(exit_status(&[unsupported.clone(), failed.clone(), passed.clone()]), 1);
        assert_eq!(exit_status(&[failed, bad, unsupported]), 2);
    }

    #[test]
    fn rows_and_table() {
        let mut results = vec![
            result("scenarios/a.yaml", 0, Status::Passed),
            result("scenarios/a.yaml", 1, Status::Failed),
            result("scenarios/a.yaml", 2, Status::Passed),
            result("scenarios/b.yaml", 0, Status::Unsupported),
        ];
        results[3].report.simulated_us = 0;
        let rows = rows(&results);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].seeds, rows[0].passed, rows[0].failed, rows[0].orders), (3, 2, 1, 2));
        assert_eq!(rows[0].simulated_us, 3 * 3_600_000_000);
        assert_eq!(rows[0].speedup(), Some(7200.0));
        assert_eq!(rows[1].speedup(), None);
        let table = table(&rows);
        let expected = "\
scenario  seeds  passed  failed  unsupported  orders  simulated   wall  speed-up
--------  -----  ------  ------  -----------  ------  ---------  -----  --------
a             3       2       1            0       2      3h00m   1.5s     7200x
b             1       0       0            1       1        0ms  500ms         -
--------  -----  ------  ------  -----------  ------  ---------  -----  --------
total         4       2       1            1       3      3h00m   2.0s     5400x
";
        assert_eq!(table, expected);
    }

    #[test]
    fn spans() {
        assert_eq!(span_text(850_000), "850ms");
        assert_eq!(span_text(52_300_000), "52.3s");
        assert_eq!(span_text(190_000_000), "3m10s");
        assert_eq!(span_text(11_400_000_000), "3h10m");
        assert_eq!(span_text(187_200_000_000), "2d4h");
    }

    #[test]
    fn failure_reports_end_with_the_replay() {
        let f = result("scenarios/lifecycle/x.yaml", 8123, Status::Failed);
        let text = failure_report(&f);
        assert_eq!(
            text,
            "\
lifecycle/x seed=8123
  invariant violated: reminder_once (seed 8123)
    at +0h01m00.000s; replica r1; objects w1
    two reminders for one stop time
  last trace lines:
    +0h00m59.000s r1    notify     w1
replay: cargo xtask simulate --scenario scenarios/lifecycle/x.yaml --seed 8123
"
        );
        let mut m = result("scenarios/x.yaml", 2, Status::Failed);
        m.report.mutation = Some("reminder_no_dedupe".into());
        m.report.failures[0].kind = "expectation".into();
        m.report.failures[0].name = "builds".into();
        m.report.failures[0].location = "scenarios/x.yaml:14:5".into();
        let text = failure_report(&m);
        assert!(text.contains("  expectation failed: builds (seed 2)\n    at +0h01m00.000s; replica r1; objects w1; scenarios/x.yaml:14:5\n"));
        assert!(text.ends_with(
            "replay: cargo xtask simulate --scenario scenarios/x.yaml --seed 2 --mutation reminder_no_dedupe\n"
        ));
        let mut d = result("scenarios/x.yaml", 2, Status::Passed);
        d.determinism = Some(Determinism { trace_hash: "aaaa".into(), order_hash: "bbbb".into() });
        let text = failure_report(&d);
        assert!(text.contains("    first  trace_hash=000000000000000f order_hash=0000000000000000\n    second trace_hash=aaaa order_hash=bbbb\n"));
    }

    #[test]
    fn merging_shards() {
        let file = |results: Vec<SeedResult>| ResultsFile {
            version: RESULTS_VERSION,
            mutation: None,
            seeds: Some("0..4".into()),
            shard: None,
            check_determinism: false,
            results,
        };
        let a =
            file(vec![result("scenarios/b.yaml", 2, Status::Passed), result("scenarios/a.yaml", 0, Status::Passed)]);
        let mut odd = result("scenarios/a.yaml", 0, Status::Passed);
        odd.report.trace_hash = "different".into();
        let b = file(vec![
            result("scenarios/a.yaml", 1, Status::Failed),
            odd,
            result("scenarios/b.yaml", 3, Status::Passed),
        ]);
        // Round trip through JSON, as --json writes and --merge reads.
        let b: ResultsFile = serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
        let merged = merge(vec![a, b]);
        let keys: Vec<(String, u64)> = merged.iter().map(|r| (r.display_name(), r.report.seed)).collect();
        assert_eq!(keys, [("a".into(), 0), ("a".into(), 1), ("b".into(), 2), ("b".into(), 3)]);
        assert!(merged[0].nondeterministic());
        assert_eq!(exit_status(&merged), 1);
    }

    #[test]
    fn mutation_detection() {
        let mut results = vec![
            result("scenarios/a.yaml", 2, Status::Failed),
            result("scenarios/a.yaml", 0, Status::Passed),
            result("scenarios/a.yaml", 1, Status::Passed),
            result("scenarios/a.yaml", 3, Status::Failed),
            result("scenarios/b.yaml", 0, Status::Passed),
        ];
        sort(&mut results);
        let found = detections(&results);
        assert_eq!(found[0], Detection { scenario: "a".into(), seeds_run: 4, first: Some((2, 3)) });
        assert_eq!(found[1], Detection { scenario: "b".into(), seeds_run: 1, first: None });
        assert_eq!(
            detections_text("reminder_no_dedupe", &found),
            "mutation reminder_no_dedupe:\n  detected by a at seed 2 (3 seeds to detection)\n  not detected by b (1 seed)\n"
        );
    }
}
