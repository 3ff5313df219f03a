//! Tidy checks over the source tree, as ordinary tests: catalogue coverage,
//! module docs, and the determinism hazards clippy cannot see.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("engine has a parent").to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn all_rust_files() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in ["engine", "sim", "benches", "xtask"] {
        rust_files(&root.join(dir), &mut files);
    }
    files
}

/// The catalogue sizes of `shared/semantics/` (lifecycle.md §9 has 57 items).
/// When the shared documents are next to the checkout, the count is checked
/// against them too.
const LIFECYCLE_CATALOGUE_ITEMS: u32 = 57;

fn catalogue_numbers_in_doc(path: &Path) -> Option<BTreeSet<u32>> {
    let text = fs::read_to_string(path).ok()?;
    let section = text.split("## 9. Behaviour catalogue").nth(1)?.split("\n## ").next()?;
    let numbers = section
        .lines()
        .filter_map(|line| line.split_once(". ").and_then(|(n, _)| n.trim().parse::<u32>().ok()))
        .collect();
    Some(numbers)
}

/// Test functions named `<prefix>NN_…` anywhere in the tree.
fn tested_numbers(prefix: &str) -> BTreeSet<u32> {
    let mut found = BTreeSet::new();
    for file in all_rust_files() {
        let text = fs::read_to_string(&file).unwrap_or_default();
        for (index, _) in text.match_indices(&format!("fn {prefix}")) {
            let rest = &text[index + 3 + prefix.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(n) = digits.parse::<u32>() {
                if rest[digits.len()..].starts_with('_') {
                    found.insert(n);
                }
            }
        }
    }
    found
}

#[test]
fn every_lifecycle_catalogue_item_has_a_test() {
    let doc = workspace_root().join("../shared/semantics/lifecycle.md");
    if let Some(numbers) = catalogue_numbers_in_doc(&doc) {
        let expected: BTreeSet<u32> = (1..=LIFECYCLE_CATALOGUE_ITEMS).collect();
        assert_eq!(numbers, expected, "lifecycle.md's catalogue changed: update LIFECYCLE_CATALOGUE_ITEMS");
    }
    let tested = tested_numbers("lc_");
    let missing: Vec<u32> = (1..=LIFECYCLE_CATALOGUE_ITEMS).filter(|n| !tested.contains(n)).collect();
    assert!(missing.is_empty(), "lifecycle catalogue items without a test named lc_NN_…: {missing:?}");
}

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let offenders: Vec<String> = all_rust_files()
        .into_iter()
        .filter(|file| {
            let text = fs::read_to_string(file).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(offenders.is_empty(), "files without a leading //! paragraph: {offenders:#?}");
}

#[test]
fn every_select_is_biased() {
    let mut offenders = Vec::new();
    for file in all_rust_files() {
        let text = fs::read_to_string(&file).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        for (index, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let needle = concat!("select", "!");
            if code.contains(&format!("{needle} {{")) || code.trim_end().ends_with(&format!("{needle}{{")) {
                let next = lines.get(index + 1).map(|l| l.trim()).unwrap_or("");
                if next != "biased;" {
                    offenders.push(format!("{}:{}", file.display(), index + 1));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "a tokio select without `biased;` as its first line: {offenders:#?}");
}

#[test]
fn no_drop_impl_writes() {
    // A crash drops a replica's futures: no Drop may touch the store or send.
    // Drop impls are allowed only where listed here, each with its reason.
    let allowed = [
        // The emulated server noticing a dropped connection (in memory only).
        "engine/src/store/sqlite/",
        // PostgreSQL: pool usage counters (in memory), and an open transaction's
        // connection detached from the pool and closed, never reused or written
        // to (the server rolls back when the socket closes).
        "engine/src/store/postgres/pool.rs",
        "engine/src/store/postgres/tx.rs",
        // The PostgreSQL test harness drops its database (test cleanup).
        "engine/tests/store_conformance/postgres_arm.rs",
        // Live-task counters of test and simulator spawners (in memory).
        "engine/tests/engine_loops.rs",
        "sim/src/run/replica.rs",
    ];
    let mut offenders = Vec::new();
    for file in all_rust_files() {
        let text = fs::read_to_string(&file).unwrap_or_default();
        let relative = file.strip_prefix(workspace_root()).unwrap_or(&file).display().to_string();
        if text.contains(concat!("impl ", "Drop for")) && !allowed.iter().any(|a| relative.starts_with(a)) {
            offenders.push(relative);
        }
    }
    assert!(offenders.is_empty(), "Drop impls outside the allowed list: {offenders:#?}");
}
