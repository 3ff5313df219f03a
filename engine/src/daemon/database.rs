//! The daemon's database: PostgreSQL (production, several replicas) or the
//! embedded SQLite store (one daemon), opened from the configured URL, with
//! what the daemon needs beyond [`Store`]: pool readings for `/metrics`, a
//! health probe for `/healthz`, closing at shutdown, and the pubsub that
//! goes with it ([`PgPubSub`] across replicas, [`LocalPubSub`] in one process).

use std::sync::Arc;

use async_trait::async_trait;

use crate::daemon::config::{DaemonConfig, DatabaseUrl};
use crate::pubsub::{LocalPubSub, SharedPublisher, SharedSubscriber};
use crate::runtime::{SharedClock, Spawner};
use crate::store::postgres::pubsub::PgPubSub;
use crate::store::postgres::{PgPoolConfig, PgStore};
use crate::store::sqlite::{PoolConfig, PoolStats, SqliteServer, SqliteStore};
use crate::store::{Store, StoreError, StoreResult, Subsystem, Tx, TxOptions};

/// A [`Store`] the daemon can serve: it reports its pool and answers a probe.
#[async_trait]
pub trait DaemonStore: Store {
    /// Who holds the pool's connections now.
    fn pool_stats(&self) -> PoolStats;

    /// Closes the pool at shutdown (PostgreSQL says goodbye to the server).
    fn close(&self) {}

    /// One read-only round trip to the database (`/healthz`).
    async fn ping(&self) -> StoreResult<()> {
        let mut tx = self.begin(TxOptions::read_only(Subsystem::Admin)).await?;
        let result = tx.db_now().await;
        let _ = tx.rollback().await;
        result.map(|_| ())
    }
}

impl DaemonStore for PgStore {
    fn pool_stats(&self) -> PoolStats {
        PgStore::pool_stats(self)
    }

    fn close(&self) {
        PgStore::close(self);
    }
}

impl DaemonStore for SqliteStore {
    fn pool_stats(&self) -> PoolStats {
        SqliteStore::pool_stats(self)
    }
}

/// An opened database.
pub enum Database {
    Postgres(Arc<PgStore>),
    /// The server is kept with its client: the file stays open while either lives.
    Sqlite {
        server: Arc<SqliteServer>,
        store: Arc<SqliteStore>,
    },
}

impl Database {
    /// Connects with the replica's pool (`db_pool_size`, `db_acquire_timeout`,
    /// `application_name`). A SQLite file is created and migrated on open.
    pub async fn open(config: &DaemonConfig, clock: SharedClock) -> Result<Database, StoreError> {
        match &config.database {
            DatabaseUrl::Postgres(url) => {
                let pool = PgPoolConfig {
                    size: config.settings.db_pool_size,
                    acquire_timeout: config.settings.db_acquire_timeout,
                    application_name: config.application_name.clone(),
                };
                Ok(Database::Postgres(Arc::new(PgStore::connect(url, pool).await?)))
            }
            DatabaseUrl::Sqlite(path) => {
                let server = SqliteServer::open_file(path, clock)?;
                let store = Arc::new(server.client(PoolConfig {
                    size: config.settings.db_pool_size,
                    acquire_timeout: config.settings.db_acquire_timeout,
                    label: config.application_name.clone(),
                }));
                Ok(Database::Sqlite { server, store })
            }
        }
    }

    /// Applies missing migrations; returns the versions applied now (SQLite
    /// migrates when opened, so it reports none).
    pub async fn migrate(&self) -> Result<Vec<i32>, StoreError> {
        match self {
            Database::Postgres(store) => store.migrate().await,
            Database::Sqlite { .. } => Ok(Vec::new()),
        }
    }
}

/// The daemon's pubsub: what the engine publishes through and the long-polling
/// acquire subscribes to.
pub enum DaemonPubSub {
    /// `LISTEN`/`NOTIFY`: a notice of any replica reaches every replica.
    Postgres(PgPubSub),
    /// One process (the SQLite single node).
    Local(LocalPubSub),
}

impl DaemonPubSub {
    /// PostgreSQL: connects the listening session (failing like the store
    /// when the server is unreachable) and starts its tasks on `spawner`.
    pub async fn open(database: &Database, spawner: &dyn Spawner, clock: SharedClock) -> Result<Self, StoreError> {
        match database {
            Database::Postgres(store) => Ok(DaemonPubSub::Postgres(PgPubSub::start(store, spawner, clock).await?)),
            Database::Sqlite { .. } => Ok(DaemonPubSub::Local(LocalPubSub::new())),
        }
    }

    pub fn publisher(&self) -> SharedPublisher {
        match self {
            DaemonPubSub::Postgres(pubsub) => Arc::new(pubsub.clone()),
            DaemonPubSub::Local(pubsub) => Arc::new(pubsub.clone()),
        }
    }

    pub fn subscriber(&self) -> SharedSubscriber {
        match self {
            DaemonPubSub::Postgres(pubsub) => Arc::new(pubsub.clone()),
            DaemonPubSub::Local(pubsub) => Arc::new(pubsub.clone()),
        }
    }

    /// Stops the PostgreSQL tasks (before the pool closes).
    pub async fn close(&self) {
        if let DaemonPubSub::Postgres(pubsub) = self {
            pubsub.close().await;
        }
    }
}
