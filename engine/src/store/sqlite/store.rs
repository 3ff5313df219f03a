//! A client of the emulated server: one replica's pool of connections, and
//! the [`Store`] implementation that opens transactions on it.

use std::sync::Arc;

use async_trait::async_trait;

use super::pool::{Pool, PoolConfig, PoolStats};
use super::server::SqliteServer;
use super::tx::SqliteTx;
use super::ClientId;
use crate::store::{SessionId, Store, StoreError, StoreResult, TxOptions};

/// One replica's handle on the database (cheap to clone; clones share the pool).
#[derive(Clone, Debug)]
pub struct SqliteStore {
    server: Arc<SqliteServer>,
    client: ClientId,
    pool: Arc<Pool>,
}

impl SqliteStore {
    pub(crate) fn new(server: Arc<SqliteServer>, client: ClientId, pool: PoolConfig) -> Self {
        SqliteStore { server, client, pool: Pool::new(pool) }
    }

    pub fn client_id(&self) -> ClientId {
        self.client
    }

    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Every pool timeout since the last call (when, and which subsystem waited).
    pub fn take_pool_timeouts(&self) -> Vec<(crate::time::Timestamp, crate::store::Subsystem)> {
        self.pool.take_timeouts()
    }

    pub fn server(&self) -> &Arc<SqliteServer> {
        &self.server
    }
}

#[async_trait]
impl Store for SqliteStore {
    type Tx = SqliteTx;

    async fn begin(&self, options: TxOptions) -> StoreResult<SqliteTx> {
        if !self.server.lock().reg.is_connected(self.client) {
            return Err(StoreError::connection_lost("client disconnected"));
        }
        let permit = self.pool.acquire(self.server.clock(), options.subsystem).await?;
        let id = self.server.begin_tx(self.client)?;
        Ok(SqliteTx::new(Arc::clone(&self.server), self.client, id, options, permit))
    }

    async fn sessions_waiting(&self) -> StoreResult<Vec<SessionId>> {
        Ok(self.server.sessions_waiting())
    }
}
