//! Positive loading tests: the fixtures load, and the typed model holds the
//! values and defaults SCENARIOS.md gives.

use std::path::{Path, PathBuf};

use sim::scenario::{self, Scenario};

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn load(name: &str) -> Scenario {
    match scenario::load_file(&fixture_path(name)) {
        Ok(s) => s,
        Err(e) => panic!("{name} does not load:\n{e}"),
    }
}

#[test]
fn fixtures_load() {
    for name in ["minimal.yaml", "rich.yaml", "scenarios_md_example.yaml"] {
        load(name);
    }
}
