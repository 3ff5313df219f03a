//! `engined serve` and `engined migrate`: open the database, start the engine
//! with the daemon's sink and metrics, serve HTTP, and shut down gracefully on
//! SIGTERM or SIGINT within `shutdown_timeout`.
//!
//! Shutdown order: stop accepting HTTP requests (long-polling acquires answer
//! at once) and, at the same time, shut the engine down ([`Engine::shutdown`]:
//! no new work, in-flight work ends or is cancelled at the budget, usage
//! flushed once); HTTP requests still running at the budget are dropped; then
//! the pool closes, the pubsub's tasks end, and `serve` returns.

use std::future::IntoFuture;
use std::io::IsTerminal;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::daemon::config::{DaemonConfig, LogFormat};
use crate::daemon::database::{DaemonPubSub, DaemonStore, Database};
use crate::daemon::http::{self, AppState};
use crate::daemon::metrics::{Metrics, MetricsError, MetricsEvents};
use crate::daemon::sinks;
use crate::engine::{Engine, EngineConfig};
use crate::events::SharedEvents;
use crate::notify::DeliveryError;
use crate::runtime::{SharedClock, SystemClock, TokioSpawner};
use crate::settings::SettingError;
use crate::store::StoreError;

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Setting(#[from] SettingError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("notification sink: {0}")]
    Sink(#[from] DeliveryError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("http server: {0}")]
    Http(std::io::Error),
    #[error("installing signal handlers: {0}")]
    Signal(std::io::Error),
    #[error("invalid log filter `{filter}`: {detail}")]
    LogFilter { filter: String, detail: String },
}

/// Installs the global `tracing` subscriber: text or JSON lines on stderr.
pub fn init_logging(format: LogFormat, filter: &str) -> Result<(), DaemonError> {
    let env_filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| DaemonError::LogFilter { filter: filter.to_owned(), detail: e.to_string() })?;
    let builder = tracing_subscriber::fmt().with_env_filter(env_filter).with_writer(std::io::stderr);
    // A second call (tests that run the daemon in-process) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
    };
    Ok(())
}

/// `engined migrate`: applies missing migrations and returns their versions.
pub async fn migrate(config: &DaemonConfig) -> Result<Vec<i32>, DaemonError> {
    let clock: SharedClock = Arc::new(SystemClock);
    let database = Database::open(config, clock).await?;
    let applied = database.migrate().await?;
    if let Database::Postgres(store) = &database {
        store.close();
    }
    Ok(applied)
}

/// `engined serve`: runs until SIGTERM or SIGINT, then shuts down within
/// `shutdown_timeout` and returns `Ok`.
pub async fn serve(config: DaemonConfig) -> Result<(), DaemonError> {
    let clock: SharedClock = Arc::new(SystemClock);
    let database = Database::open(&config, clock.clone()).await?;
    tracing::info!(database = %config.database, "connected");
    if config.migrate_on_start {
        let applied = database.migrate().await?;
        if !applied.is_empty() {
            tracing::info!(?applied, "migrations applied");
        }
    }
    let pubsub = DaemonPubSub::open(&database, &TokioSpawner, clock.clone()).await?;
    let result = match database {
        Database::Postgres(store) => run(store, &config, clock, &pubsub).await,
        Database::Sqlite { server, store } => {
            let result = run(store, &config, clock, &pubsub).await;
            drop(server);
            result
        }
    };
    pubsub.close().await;
    result
}

/// Seeds the replica's id generator: distinct per process and start instant,
/// so replicas never draw the same ids (the engine's ids are v4 UUIDs).
fn derive_id_seed(config: &DaemonConfig, clock: &SharedClock) -> u64 {
    if let Some(seed) = config.id_seed {
        return seed;
    }
    let mut bytes = Vec::with_capacity(64);
    bytes.extend_from_slice(&std::process::id().to_le_bytes());
    bytes.extend_from_slice(&clock.now().as_micros().to_le_bytes());
    bytes.extend_from_slice(config.listen.to_string().as_bytes());
    bytes.extend_from_slice(config.application_name.as_bytes());
    crate::hash::fnv1_64(&bytes)
}

/// What ended the serving phase.
enum Stop {
    Signal(&'static str),
    ServerEnded(std::io::Result<()>),
}

async fn run<S: DaemonStore>(
    store: Arc<S>,
    config: &DaemonConfig,
    clock: SharedClock,
    pubsub: &DaemonPubSub,
) -> Result<(), DaemonError> {
    let settings = config.settings.clone();
    let metrics = Arc::new(Metrics::new()?);
    let events: SharedEvents = Arc::new(MetricsEvents::new(metrics.clone(), clock.clone()));
    let sink = sinks::from_config(config.webhook.as_ref(), config.failpoint)?;
    // Listen first: a taken port leaves nothing running.
    let listener =
        TcpListener::bind(config.listen).await.map_err(|source| DaemonError::Bind { addr: config.listen, source })?;
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut interrupt =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).map_err(DaemonError::Signal)?;

    let engine = Engine::start(EngineConfig {
        store: store.clone(),
        clock: clock.clone(),
        spawner: Arc::new(TokioSpawner),
        settings: settings.clone(),
        sink,
        events,
        publisher: pubsub.publisher(),
        id_seed: derive_id_seed(config, &clock),
    })?;
    let (stop_http, mut http_stopping) = tokio::sync::watch::channel(false);
    let state = Arc::new(AppState {
        api: engine.api().clone(),
        store: store.clone(),
        clock: clock.clone(),
        metrics,
        subscriber: pubsub.subscriber(),
        stopping: stop_http.subscribe(),
    });
    let server = axum::serve(listener, http::router(state))
        .with_graceful_shutdown(async move {
            let _ = http_stopping.wait_for(|stopping| *stopping).await;
        })
        .into_future();
    let mut server = std::pin::pin!(server);
    tracing::info!(
        listen = %config.listen,
        lifecycle_interval = %settings.lifecycle_interval,
        db_pool_size = settings.db_pool_size,
        "serving"
    );

    let stop = tokio::select! {
        biased;
        _ = terminate.recv() => Stop::Signal("SIGTERM"),
        _ = interrupt.recv() => Stop::Signal("SIGINT"),
        result = &mut server => Stop::ServerEnded(result),
    };
    let deadline = clock.now() + settings.shutdown_timeout;
    let _ = stop_http.send(true);
    let server_error = match stop {
        Stop::Signal(name) => {
            tracing::info!(signal = name, shutdown_timeout = %settings.shutdown_timeout, "shutting down");
            let http = async {
                tokio::select! {
                    biased;
                    result = &mut server => result.err(),
                    _ = clock.sleep_until(deadline) => {
                        tracing::warn!("http requests still running at the shutdown timeout were dropped");
                        None
                    }
                }
            };
            let (report, http_error) = tokio::join!(engine.shutdown(), http);
            tracing::info!(cancelled = report.cancelled, "engine stopped");
            http_error
        }
        Stop::ServerEnded(result) => {
            tracing::error!(?result, "http server ended; shutting down");
            let report = engine.shutdown().await;
            tracing::info!(cancelled = report.cancelled, "engine stopped");
            Some(result.err().unwrap_or_else(|| std::io::Error::other("the http server ended")))
        }
    };
    store.close();
    match server_error {
        Some(error) => Err(DaemonError::Http(error)),
        None => {
            tracing::info!("stopped");
            Ok(())
        }
    }
}
