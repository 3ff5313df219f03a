//! `--shrink`: from a failing run (one scenario, one seed) to a strictly
//! smaller scenario that still fails the same way: its run's failure keys
//! ([`RunReport::failure_keys`]) still hold the original first failure's key.
//!
//! [`candidates`] is pure: every one-step reduction of a scenario, biggest
//! first (halves of the timeline, then single timeline entries, expectations
//! other than the failing one, world objects, replicas, chaos knobs,
//! provisioner overrides, then shorter `run_for`, `settle` and fault
//! durations). [`shrink`] writes each candidate with `to_yaml`, loads it back
//! with the loader (an invalid candidate, e.g. one whose timeline names a
//! removed workspace, is skipped without running), runs the valid ones at the
//! same seed, `jobs` at a time, and takes the first in candidate order that
//! still fails the same way (so the result does not depend on timing), until
//! no candidate does or the run budget is spent.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use engine::time::Span;
use sim::report::RunReport;
use sim::scenario::{self, Action, Chaos, Scenario};

use super::exec::{self, Job};

/// One reduction of a scenario, with what it removed or shortened.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub what: String,
    pub scenario: Scenario,
}

/// Shortest span a duration is halved to.
const SPAN_MIN: Span = Span::from_secs(1);

/// Every one-step reduction of `s`, biggest first. `keep` holds the indexes
/// of expectations that must stay (the failing ones).
pub fn candidates(s: &Scenario, keep: &BTreeSet<usize>) -> Vec<Candidate> {
    let mut out = Vec::new();
    let mut push = |what: String, change: &dyn Fn(&mut Scenario)| {
        let mut scenario = s.clone();
        change(&mut scenario);
        out.push(Candidate { what, scenario });
    };

    // The timeline: halves first (fast on long timelines), then each entry, last first.
    let entries = s.timeline.len();
    if entries >= 4 {
        let half = entries / 2;
        push(format!("timeline entries {}..={entries} (the second half)", half + 1), &|c| c.timeline.truncate(half));
        push(format!("timeline entries 1..={half} (the first half)"), &|c| {
            c.timeline.drain(..half);
        });
    }
    for i in (0..entries).rev() {
        let entry = &s.timeline[i];
        push(format!("timeline entry {} (`{}` at {})", i + 1, entry.action.name(), entry.at), &|c| {
            c.timeline.remove(i);
        });
    }

    // Expectations that are not failing.
    for i in (0..s.expect.len()).rev().filter(|i| !keep.contains(i)) {
        let expectation = &s.expect[i];
        push(format!("expectation {} (`{}`)", i + 1, expectation.kind.name()), &|c| {
            c.expect.remove(i);
        });
    }

    // World objects: the loader refuses a candidate that still refers to one.
    for i in (0..s.world.chats.len()).rev() {
        push(format!("chat `{}`", s.world.chats[i].name.value), &|c| {
            c.world.chats.remove(i);
        });
    }
    for i in (0..s.world.workspaces.len()).rev() {
        push(format!("workspace `{}`", s.world.workspaces[i].name.value), &|c| {
            c.world.workspaces.remove(i);
        });
    }
    for i in (0..s.world.templates.len()).rev() {
        push(format!("template `{}`", s.world.templates[i].name.value), &|c| {
            c.world.templates.remove(i);
        });
    }
    for i in (0..s.world.users.len()).rev() {
        push(format!("user `{}`", s.world.users[i].name.value), &|c| {
            c.world.users.remove(i);
        });
    }

    // Replicas: down to one, or one fewer.
    if s.replicas > 2 {
        push(format!("replicas {} -> 1", s.replicas), &|c| c.replicas = 1);
    }
    if s.replicas > 1 {
        push(format!("replicas {} -> {}", s.replicas, s.replicas - 1), &|c| c.replicas -= 1);
    }

    // Chaos knobs, each back to its default.
    let off = Chaos::default();
    macro_rules! knob {
        ($($field:ident),+) => {$(
            if s.chaos.$field != off.$field {
                push(format!("chaos `{}`", stringify!($field)), &|c| c.chaos.$field = off.$field.clone());
            }
        )+};
    }
    knob!(
        store_error_rate,
        serialization_failure_rate,
        commit_unknown_rate,
        store_latency,
        pubsub_drop_rate,
        pubsub_delay,
        notification_failure_rate,
        replica_crash_rate,
        replica_restart_after,
        clock_skew
    );

    // Provisioner overrides.
    for template in s.provisioners.templates.keys().rev() {
        push(format!("provisioner override for `{template}`"), &|c| {
            c.provisioners.templates.remove(template);
        });
    }

    // Shorter times: run_for to the last timeline entry, or half; settle to its minimum; fault durations halved.
    let last_at = s.timeline.iter().map(|e| e.at).max().unwrap_or(Span::ZERO).max(SPAN_MIN);
    if last_at < s.run_for {
        push(format!("run_for {} -> {last_at}", s.run_for), &|c| c.run_for = last_at);
    }
    let half = halve(s.run_for);
    if half > last_at && half < s.run_for {
        push(format!("run_for {} -> {half}", s.run_for), &|c| c.run_for = half);
    }
    let settle_min = s.settle_min();
    if settle_min < s.settle {
        push(format!("settle {} -> {settle_min}", s.settle), &|c| c.settle = settle_min);
    }
    for i in 0..entries {
        let Some(duration) = fault_duration(&s.timeline[i].action) else { continue };
        let shorter = halve(duration);
        if shorter < duration {
            let what = format!(
                "`for` of timeline entry {} (`{}`) {duration} -> {shorter}",
                i + 1,
                s.timeline[i].action.name()
            );
            push(what, &|c| {
                if let Some(d) = fault_duration_mut(&mut c.timeline[i].action) {
                    *d = shorter;
                }
            });
        }
    }
    out
}

/// Half of `span`, whole seconds, not below [`SPAN_MIN`] (`span` itself if it is not longer).
fn halve(span: Span) -> Span {
    if span <= SPAN_MIN {
        return span;
    }
    let half = Span::from_secs((span.as_secs() / 2).max(1));
    half.max(SPAN_MIN)
}

fn fault_duration(action: &Action) -> Option<Span> {
    match action {
        Action::StoreFault(f) => Some(f.duration),
        Action::ProvisionerFault(f) => Some(f.duration),
        Action::PoolHog { duration, .. }
        | Action::PubsubFault { duration, .. }
        | Action::NotificationFault { duration, .. } => Some(*duration),
        _ => None,
    }
}

fn fault_duration_mut(action: &mut Action) -> Option<&mut Span> {
    match action {
        Action::StoreFault(f) => Some(&mut f.duration),
        Action::ProvisionerFault(f) => Some(&mut f.duration),
        Action::PoolHog { duration, .. }
        | Action::PubsubFault { duration, .. }
        | Action::NotificationFault { duration, .. } => Some(duration),
        _ => None,
    }
}

/// `kind name` of a failure, as [`RunReport::failure_keys`] writes it.
pub fn first_key(report: &RunReport) -> Option<String> {
    report.failures.first().map(|f| format!("{} {}", f.kind, f.name))
}

/// The expectations that failed with `key`: by location, else (if no
/// location matches) every expectation of that kind.
pub fn failing_expectations(s: &Scenario, report: &RunReport, key: &str) -> BTreeSet<usize> {
    let failing: Vec<&sim::report::Failure> =
        report.failures.iter().filter(|f| f.kind == "expectation" && format!("{} {}", f.kind, f.name) == key).collect();
    let by_location: BTreeSet<usize> = s
        .expect
        .iter()
        .enumerate()
        .filter(|(_, e)| failing.iter().any(|f| f.location == s.locate(e.origin)))
        .map(|(i, _)| i)
        .collect();
    if !by_location.is_empty() || failing.is_empty() {
        return by_location;
    }
    s.expect
        .iter()
        .enumerate()
        .filter(|(_, e)| failing.iter().any(|f| f.name == e.kind.name()))
        .map(|(i, _)| i)
        .collect()
}

/// What the shrink made.
pub struct Shrunk {
    pub scenario: Scenario,
    pub report: RunReport,
    pub removed: Vec<String>,
    pub runs: u32,
}

/// Everything [`shrink`] needs to run candidates.
pub struct Runner<'a> {
    pub sim: &'a Path,
    pub root: &'a Path,
    pub seed: u64,
    pub mutation: Option<String>,
    pub jobs: usize,
    pub runs_max: u32,
}

/// Greedy shrinking (see the module docs). `report` is the failing report of
/// `original` at `runner.seed`.
pub fn shrink(runner: &Runner, original: Scenario, report: RunReport) -> Result<Shrunk> {
    let Some(key) = first_key(&report) else { bail!("the run of {} did not fail: nothing to shrink", original.file) };
    let dir = tempfile::Builder::new().prefix("xtask-shrink-").tempdir().context("creating a temporary directory")?;
    let mut current = Shrunk { scenario: original, report, removed: Vec::new(), runs: 0 };
    let mut written = 0usize;
    'shrinking: loop {
        let keep = failing_expectations(&current.scenario, &current.report, &key);
        let mut pending = candidates(&current.scenario, &keep).into_iter().peekable();
        while pending.peek().is_some() {
            // The next batch of valid candidates.
            let mut batch: Vec<(Candidate, Scenario)> = Vec::new();
            while batch.len() < runner.jobs.max(1) {
                let Some(candidate) = pending.next() else { break };
                written += 1;
                let path =
                    dir.path().join(format!("c{written}")).join(format!("{}.yaml", candidate.scenario.name.value));
                if let Some(loaded) = write_and_load(&path, &candidate.scenario)? {
                    batch.push((candidate, loaded));
                }
            }
            if batch.is_empty() {
                continue;
            }
            let budget = runner.runs_max.saturating_sub(current.runs) as usize;
            if budget == 0 {
                eprintln!("shrink: stopped at the budget of {} runs (--shrink-runs-max)", runner.runs_max);
                break 'shrinking;
            }
            batch.truncate(budget);
            let jobs: Vec<Job> = batch
                .iter()
                .map(|(_, loaded)| Job {
                    file: loaded.file.clone(),
                    scenario: loaded.name.value.clone(),
                    seed: runner.seed,
                    mutation: runner.mutation.clone(),
                    outputs: Vec::new(),
                })
                .collect();
            let ran = exec::run_all(runner.sim, runner.root, &jobs, runner.jobs, |_, _| {});
            current.runs += ran.len() as u32;
            let accepted = batch
                .into_iter()
                .zip(ran)
                .find(|(_, ran)| ran.bad_input.is_none() && ran.report.failure_keys().contains(&key));
            if let Some(((candidate, loaded), ran)) = accepted {
                eprintln!("shrink: removed {} (still fails: {key})", candidate.what);
                current.removed.push(candidate.what);
                current.scenario = loaded;
                current.report = ran.report;
                continue 'shrinking;
            }
        }
        break;
    }
    Ok(current)
}

/// Writes `scenario` as YAML to `path` and loads it back; `None` when the
/// loader refuses it.
pub fn write_and_load(path: &Path, scenario: &Scenario) -> Result<Option<Scenario>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, scenario::to_yaml(scenario)).with_context(|| format!("writing {}", path.display()))?;
    Ok(scenario::load_file(path).ok())
}

/// The shrunk scenario ready to write at `out`: named after the file's stem
/// (so it loads on its own and does not clash with the original), described.
pub fn finished(shrunk: &Scenario, original: &Scenario, seed: u64, key: &str, out: &Path) -> Scenario {
    let mut scenario = shrunk.clone();
    let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    scenario.name.value = stem;
    let was = original.description.as_deref().map(|d| format!(" {d}")).unwrap_or_default();
    scenario.description = Some(format!("Shrunk from {} at seed {seed} (fails with {key}).{was}", original.file));
    scenario.seed = seed;
    scenario
}

/// `<name>.shrunk.yaml`.
pub fn default_out(original: &Scenario) -> PathBuf {
    PathBuf::from(format!("{}.shrunk.yaml", original.name.value))
}

/// Counts before and after, for the closing line.
pub fn sizes(s: &Scenario) -> String {
    format!(
        "{} timeline entries, {} expectations, {} users, {} templates, {} workspaces, {} chats, {} replicas, run_for {}",
        s.timeline.len(),
        s.expect.len(),
        s.world.users.len(),
        s.world.templates.len(),
        s.world.workspaces.len(),
        s.world.chats.len(),
        s.replicas,
        s.run_for
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCENARIO: &str = r#"
name: shrinkme
run_for: 3h
settle: 30m
replicas: 3
world:
  users: [{name: alice}, {name: bob}]
  templates:
    - {name: dev, default_ttl: 1h, time_til_autostop_notify: 10m}
    - {name: unused}
  workspaces:
    - {name: w1, owner: alice, template: dev, latest_build: {transition: start}}
    - {name: w2, owner: bob, template: dev, latest_build: {transition: start}}
chaos:
  store_error_rate: 0.01
  clock_skew: 0s..2s
provisioners:
  templates:
    dev: {build_duration: 2m}
timeline:
  - {at: 10m, activity: {workspace: w1}}
  - {at: 20m, crash: {replica: 2}}
  - {at: 30m, store_fault: {kind: error, for: 40m}}
  - {at: 1h, activity: {workspace: w2}}
expect:
  - builds: {workspace: w1, reason: autostop, count: 1}
  - notifications: {kind: autostop_reminder, count: 1}
  - violations: 0
"#;

    fn load() -> Scenario {
        sim::scenario::load_str("scenarios/shrinkme.yaml", SCENARIO).unwrap_or_else(|e| panic!("{e}"))
    }

    fn whats(list: &[Candidate]) -> Vec<&str> {
        list.iter().map(|c| c.what.as_str()).collect()
    }

    #[test]
    fn candidates_biggest_first_and_each_strictly_smaller() {
        let s = load();
        let keep = BTreeSet::from([0]);
        let list = candidates(&s, &keep);
        assert_eq!(
            whats(&list),
            [
                "timeline entries 3..=4 (the second half)",
                "timeline entries 1..=2 (the first half)",
                "timeline entry 4 (`activity` at 1h)",
                "timeline entry 3 (`store_fault` at 30m)",
                "timeline entry 2 (`crash` at 20m)",
                "timeline entry 1 (`activity` at 10m)",
                "expectation 3 (`violations`)",
                "expectation 2 (`notifications`)",
                "workspace `w2`",
                "workspace `w1`",
                "template `unused`",
                "template `dev`",
                "user `bob`",
                "user `alice`",
                "replicas 3 -> 1",
                "replicas 3 -> 2",
                "chaos `store_error_rate`",
                "chaos `clock_skew`",
                "provisioner override for `dev`",
                "run_for 3h -> 1h",
                "run_for 3h -> 1h30m",
                "settle 30m -> 5m",
                "`for` of timeline entry 3 (`store_fault`) 40m -> 20m",
            ]
        );
        for candidate in &list {
            assert_ne!(candidate.scenario, s, "{} changed nothing", candidate.what);
        }
        // The failing expectation is never a candidate for removal.
        assert!(list.iter().all(|c| c.scenario.expect.iter().any(|e| e.kind.name() == "builds")));
        let second_half = &list[0].scenario;
        assert_eq!(second_half.timeline.len(), 2);
        assert_eq!(second_half.timeline[1].action.name(), "crash");
    }

    #[test]
    fn candidates_of_a_minimal_scenario() {
        let s = sim::scenario::load_str("scenarios/minimal.yaml", "name: minimal\nrun_for: 1h\n").unwrap();
        // Only shorter times are left: run_for to 1s (no timeline) or half, settle to its minimum.
        assert_eq!(
            whats(&candidates(&s, &BTreeSet::new())),
            ["run_for 1h -> 1s", "run_for 1h -> 30m", "settle 10m -> 4m"]
        );
    }

    #[test]
    fn valid_candidates_load_invalid_ones_are_refused() {
        let s = load();
        let dir = tempfile::tempdir().unwrap();
        let list = candidates(&s, &BTreeSet::from([0]));
        let mut valid = Vec::new();
        for (i, candidate) in list.iter().enumerate() {
            let path = dir.path().join(format!("c{i}")).join("shrinkme.yaml");
            if let Some(mut loaded) = write_and_load(&path, &candidate.scenario).unwrap() {
                loaded.file.clone_from(&candidate.scenario.file);
                assert_eq!(loaded, candidate.scenario, "{} does not round trip", candidate.what);
                valid.push(candidate.what.as_str());
            }
        }
        // Removing w1, dev or alice leaves references behind; crash of replica 2 needs 3 replicas.
        for refused in ["workspace `w1`", "template `dev`", "user `alice`", "replicas 3 -> 1", "replicas 3 -> 2"] {
            assert!(!valid.contains(&refused), "{refused} was accepted");
        }
        for accepted in
            ["timeline entry 2 (`crash` at 20m)", "template `unused`", "chaos `clock_skew`", "settle 30m -> 5m"]
        {
            assert!(valid.contains(&accepted), "{accepted} was refused");
        }
    }

    #[test]
    fn failing_expectations_by_location_then_kind() {
        let s = load();
        let mut report =
            crate::simulate::results::tests_support::report("scenarios/shrinkme.yaml", 1, sim::report::Status::Failed);
        report.failures[0].kind = "expectation".into();
        report.failures[0].name = "builds".into();
        report.failures[0].location = s.locate(s.expect[0].origin);
        let key = first_key(&report).unwrap();
        assert_eq!(key, "expectation builds");
        assert_eq!(failing_expectations(&s, &report, &key), BTreeSet::from([0]));
        report.failures[0].location = "elsewhere:1:1".into();
        assert_eq!(failing_expectations(&s, &report, &key), BTreeSet::from([0]));
        report.failures[0].kind = "invariant".into();
        assert_eq!(failing_expectations(&s, &report, "invariant builds"), BTreeSet::new());
    }

    #[test]
    fn the_result_is_named_after_its_file() {
        let s = load();
        let out = default_out(&s);
        assert_eq!(out, PathBuf::from("shrinkme.shrunk.yaml"));
        let done = finished(&s, &s, 42, "invariant reminder_once", &out);
        assert_eq!(done.name.value, "shrinkme.shrunk");
        assert_eq!(done.seed, 42);
        let dir = tempfile::tempdir().unwrap();
        let loaded = write_and_load(&dir.path().join(&out), &done).unwrap().expect("the shrunk file loads on its own");
        assert_eq!(
            loaded.description.as_deref(),
            Some("Shrunk from scenarios/shrinkme.yaml at seed 42 (fails with invariant reminder_once).")
        );
    }

    #[test]
    fn halving() {
        assert_eq!(halve(Span::from_hours(1)), Span::from_mins(30));
        assert_eq!(halve(Span::from_secs(3)), Span::from_secs(1));
        assert_eq!(halve(Span::from_secs(1)), Span::from_secs(1));
        assert_eq!(halve(Span::from_millis(500)), Span::from_millis(500));
    }
}
