//! The production daemon's library half (`engined` is its thin `main`): a
//! host of the engine like any other, built from the host contract described
//! in the crate documentation.
//!
//! Module map:
//! - `config`: the TOML file and `ENGINE_*` environment overrides, checked,
//!   errors naming the setting and its source.
//! - `database`: PostgreSQL or the embedded SQLite store from the URL; pool
//!   readings and a health probe ([`DaemonStore`]); its pubsub
//!   ([`DaemonPubSub`]: `LISTEN`/`NOTIFY`, or in-process for SQLite).
//! - `serve`: `serve` (engine + HTTP + signals + graceful shutdown) and
//!   `migrate`; logging setup.
//! - `http`: the versioned JSON API, `/healthz`, `/metrics` (documented in
//!   `engine/API.md`).
//! - `metrics`: Prometheus counters fed by the engine's events, pool gauges.
//! - `sinks`: the log and webhook notification sinks, and the test failpoint.
//! - `provisioner`: `engined provision`, a simple provisioner over the API.
//!
//! **Boundary:** nothing here decides anything the engine decides; it only
//! translates HTTP, configuration and signals into calls of the host contract.
//! Built only with the `daemon` feature, never under `--cfg madsim`.

pub mod config;
pub mod database;
pub mod http;
pub mod metrics;
pub mod provisioner;
pub mod serve;
pub mod sinks;

pub use config::{DaemonConfig, DatabaseUrl, LogFormat};
pub use database::{DaemonPubSub, DaemonStore, Database};
pub use provisioner::{run_provisioner, ProvisionerOptions, ProvisionerStats};
pub use serve::{init_logging, migrate, serve, DaemonError};
