//! The background engine of a cloud development environment control plane:
//! workspace lifecycle (autostart, autostop, activity bumps, reminders, failed
//! build stop, dormancy, auto-delete, auto-update, usage tracking), behind
//! typed contracts for time ([`runtime::Clock`]), tasks ([`runtime::Spawner`])
//! and storage ([`store::Store`]), so the same code runs in production against
//! PostgreSQL and in the deterministic simulator against the embedded SQLite
//! store. See `ARCHITECTURE.md` for the code map.

pub mod api;
pub mod builds;
#[cfg(all(feature = "daemon", not(madsim)))]
pub mod daemon;
pub mod engine;
pub mod events;
pub mod hash;
pub mod ids;
pub mod lifecycle;
pub mod limits;
pub mod model;
pub mod mutations;
pub mod notify;
pub mod rules;
pub mod runtime;
pub mod settings;
pub mod store;
pub mod time;

pub use engine::{Engine, EngineConfig, ShutdownReport};
