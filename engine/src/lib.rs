//! The background engine of a cloud development environment control plane:
//! workspace lifecycle (autostart, autostop, activity bumps, reminders, failed
//! build stop, dormancy, auto-delete, auto-update, usage tracking), behind
//! typed contracts for time ([`runtime::Clock`]), tasks ([`runtime::Spawner`])
//! and storage ([`store::Store`]), so the same code runs in production against
//! PostgreSQL and in the deterministic simulator against the embedded SQLite
//! store. See `ARCHITECTURE.md` for the code map.
//!
//! # The host contract
//!
//! A host program (the shipped daemon `engined`, a control plane embedding the
//! engine, the simulator) runs one [`Engine`] per replica. `examples/embed.rs`
//! runs the whole contract on a temporary SQLite file.
//!
//! **The host implements or chooses:**
//! - a [`store::Store`]: [`store::postgres::PgStore`] in production (several
//!   replicas on one database; migrate it with `PgStore::migrate`), or the
//!   embedded [`store::sqlite`] store (one process). Users, templates and
//!   versions are the host's data: it writes them through the store's
//!   [`store::Tx`]; the engine reads them.
//! - a [`notify::NotificationSink`]: delivers outbox rows (e-mail, a webhook,
//!   a log). Delivery is at least once: the dedupe key is the idempotency key.
//! - optionally an [`events::EventSink`]: every decision and effect (the
//!   daemon counts them into metrics and logs them; [`events::TracingEvents`]
//!   only logs).
//! - a [`runtime::Clock`] and a [`runtime::Spawner`]:
//!   [`runtime::SystemClock`] and [`runtime::TokioSpawner`] in production.
//! - a [`pubsub::Publisher`]: where "job available" goes after each committed
//!   build (at most once, may drop: provisioners must also poll).
//!   `store::postgres::pubsub::PgPubSub` across replicas (`LISTEN`/`NOTIFY`),
//!   [`pubsub::LocalPubSub`] in one process, [`pubsub::NoPubSub`] when nobody
//!   listens. Its [`pubsub::Subscriber`] side is the host's, to wake its
//!   provisioners (the daemon's long-polling acquire).
//!
//! **The host calls:**
//! - [`Engine::start`] with an [`EngineConfig`] (settings checked by
//!   [`settings::Settings::validate`]; replicas on one database need distinct
//!   `id_seed`s), and [`Engine::shutdown`] on its way out: no new work,
//!   in-flight work ends or is cancelled at `shutdown_timeout`, no task left.
//! - [`Engine::api`]: the [`api::Api`] operations, each one transaction:
//!   users' actions ([`api::Api::build`] to start, stop or delete,
//!   [`api::Api::extend`], [`api::Api::update_workspace`],
//!   [`api::Api::create_workspace`]), reads ([`api::Api::workspace`]),
//!   agents ([`api::Api::report_activity`], [`api::Api::report_agent_ready`])
//!   and provisioner daemons ([`api::Api::provisioner_heartbeat`],
//!   [`api::Api::acquire_job`], [`api::Api::complete_job`]). A refusal is
//!   [`api::ApiError::Refused`] and changes nothing; [`api::ApiError::Store`]
//!   is a database error (retryable ones were already retried a few times).
//!
//! A provisioner must report itself alive at least every
//! `provisioner_stale_after`: the lifecycle tick inserts no build while none
//! was seen. The engine's own loops (lifecycle tick, usage flush, outbox
//! delivery) need nothing else from the host.

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
pub mod pubsub;
pub mod rules;
pub mod runtime;
pub mod settings;
pub mod store;
pub mod time;

pub use engine::{Engine, EngineConfig, ShutdownReport};
