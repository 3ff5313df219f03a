//! `sim/SCENARIO_REFERENCE.md` and the parser agree: every field path the
//! parser accepts is documented, every documented path is accepted, and the
//! rich fixture writes every path (so each is read by the parser, not only
//! listed in the schema).

use std::path::Path;

use sim::scenario::{self, schema};

fn read(relative: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)).unwrap()
}

/// The paths of the page: the first cell of table rows, when backticked
/// (the values table writes its first cells plain).
fn documented_paths(page: &str) -> Vec<String> {
    page.lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(path, _)| path.to_owned())
        .collect()
}

#[test]
fn every_accepted_path_is_documented_and_every_documented_path_accepted() {
    let page = read("SCENARIO_REFERENCE.md");
    let documented = documented_paths(&page);
    let missing: Vec<&String> = schema().iter().filter(|p| !documented.contains(p)).collect();
    assert!(missing.is_empty(), "accepted by the parser but not documented in SCENARIO_REFERENCE.md: {missing:#?}");
    let unknown: Vec<&String> = documented.iter().filter(|p| !schema::accepts(p)).collect();
    assert!(unknown.is_empty(), "documented in SCENARIO_REFERENCE.md but not accepted by the parser: {unknown:#?}");
    let mut seen = Vec::new();
    for path in &documented {
        assert!(!seen.contains(&path), "documented twice: {path}");
        seen.push(path);
    }
}

#[test]
fn the_rich_fixture_uses_every_path_and_loads() {
    let text = read("tests/fixtures/rich.yaml");
    let used = schema::paths_in(&text).unwrap();
    let unused: Vec<&String> = schema().iter().filter(|p| !used.contains(p)).collect();
    assert!(unused.is_empty(), "schema paths the rich fixture never writes: {unused:#?}");
    scenario::load_str("tests/fixtures/rich.yaml", &text).unwrap();
}
