//! Scenario files: loading, validating and writing back the YAML format of
//! `shared/SCENARIOS.md` (field by field in `sim/SCENARIO_REFERENCE.md`).
//!
//! Loading has two stages. Stage one ([`parse`], [`world`], [`timeline`],
//! [`expect`]) reads the YAML tree ([`yaml`], positions kept) into the typed
//! [`Scenario`] through the schema ([`schema`]): unknown fields, wrong types,
//! bad durations and crons, values out of range, and names the world declares
//! against itself. Stage two ([`check`]) runs only on a file without stage-one
//! errors (so one mistake does not cascade) and follows the timeline to resolve
//! every reference at its instant, and checks `settle`. Every error names
//! `file:line:col`; all are reported, sorted by position, and nothing runs on a
//! file with any.
//!
//! ```text
//! load_file / load_str ── yaml::parse ── parse::parse_scenario ── check::check ── Scenario
//! discover ── load_library (+ scenario names unique) ── Vec<Scenario>
//! to_yaml (emit) ── text that loads back to an equal Scenario
//! ```

mod check;
mod emit;
pub mod error;
mod expect;
pub mod model;
mod parse;
mod reader;
pub mod schema;
mod timeline;
pub mod values;
mod world;
pub(crate) mod yaml;

use std::path::{Path, PathBuf};

pub use emit::to_yaml;
pub use error::{LoadError, LoadErrors, Origin, Spanned};
pub use model::*;
pub use schema::schema;

use reader::Cx;

/// Loads and validates one scenario from text; `path_for_messages` is the
/// file name errors cite (its stem must equal the scenario's `name`).
pub fn load_str(path_for_messages: &str, text: &str) -> Result<Scenario, LoadErrors> {
    let mut cx = Cx::new(path_for_messages);
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let root = match yaml::parse(text) {
        Ok(Some(root)) => root,
        Ok(None) => {
            cx.error(Origin::new(1, 1), "empty file, expected a scenario (a mapping with `name` and `run_for`)");
            return Err(LoadErrors::new(cx.errors));
        }
        Err(error) => {
            cx.error(error.origin, error.message);
            return Err(LoadErrors::new(cx.errors));
        }
    };
    let parsed = parse::parse_scenario(&mut cx, &root);
    if cx.errors.is_empty() {
        if let Some((scenario, top)) = &parsed {
            check::check(&mut cx, scenario, top);
        }
    }
    match parsed {
        Some((scenario, _)) if cx.errors.is_empty() => Ok(scenario),
        _ => Err(LoadErrors::new(cx.errors)),
    }
}

/// Reads and loads one scenario file.
pub fn load_file(path: &Path) -> Result<Scenario, LoadErrors> {
    let shown = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(&shown, &text),
        Err(error) => Err(LoadErrors::single(LoadError::whole_file(
            &shown,
            format!("cannot read the file: {}", io_message(&error)),
        ))),
    }
}

/// An io error in the house style: lowercase, no trailing period.
fn io_message(error: &std::io::Error) -> String {
    let text = error.to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect::<String>().trim_end_matches('.').to_owned(),
        None => text,
    }
}

fn is_scenario_file(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

/// The scenario files at `path`: the file itself, or every `*.yaml` / `*.yml`
/// under a directory, recursively, sorted by path. Symbolic links to
/// directories are not followed.
pub fn discover(path: &Path) -> Result<Vec<PathBuf>, LoadErrors> {
    let shown = path.display().to_string();
    let metadata = std::fs::metadata(path)
        .map_err(|e| LoadErrors::single(LoadError::whole_file(&shown, format!("cannot read: {}", io_message(&e)))))?;
    if !metadata.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut found = Vec::new();
    let mut errors = Vec::new();
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                errors.push(LoadError::whole_file(
                    &dir.display().to_string(),
                    format!("cannot read the directory: {}", io_message(&e)),
                ));
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    errors.push(LoadError::whole_file(
                        &dir.display().to_string(),
                        format!("cannot read the directory: {}", io_message(&e)),
                    ));
                    continue;
                }
            };
            let child = entry.path();
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if is_dir {
                pending.push(child);
            } else if is_scenario_file(&child) && std::fs::metadata(&child).map(|m| m.is_file()).unwrap_or(false) {
                found.push(child);
            }
        }
    }
    if !errors.is_empty() {
        return Err(LoadErrors::new(errors));
    }
    found.sort();
    Ok(found)
}

/// Loads every file (all errors of all files are reported together) and
/// checks that scenario names are unique across the library.
pub fn load_library(paths: &[PathBuf]) -> Result<Vec<Scenario>, LoadErrors> {
    let mut scenarios: Vec<Scenario> = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match load_file(path) {
            Ok(scenario) => {
                if let Some(first) = scenarios.iter().find(|s| s.name.value == scenario.name.value) {
                    errors.push(LoadError::at(
                        &scenario.file,
                        scenario.name.origin,
                        format!(
                            "duplicate scenario name `{}`, also in {} (scenario names are unique across the library)",
                            scenario.name.value,
                            first.locate(first.name.origin)
                        ),
                    ));
                } else {
                    scenarios.push(scenario);
                }
            }
            Err(e) => errors.extend(e.errors),
        }
    }
    if errors.is_empty() {
        Ok(scenarios)
    } else {
        Err(LoadErrors::new(errors))
    }
}
