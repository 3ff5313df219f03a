//! The deterministic simulator of the engine: the scenario loader
//! ([`scenario`]), the seeded world that runs a scenario on madsim ([`run`],
//! only in `--cfg madsim` builds), its trace ([`trace`], [`html`]) and the
//! per-run report ([`report`]) the `sim` binary prints for `cargo xtask simulate`.

pub mod html;
pub mod report;
#[cfg(madsim)]
pub mod run;
pub mod scenario;
pub mod trace;
