//! A client's connection pool: a bounded number of connections, a FIFO of
//! callers waiting for one (at most the acquire timeout, on the server's
//! clock), and who holds what, by subsystem (the `reconciler_pool_share` and
//! `pool_reserve` invariants read it).
//!
//! A connection is a permit held by the transaction from `begin` to its end;
//! a transaction waiting for a row lock keeps it, as a PostgreSQL backend does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::runtime::SharedClock;
use crate::store::{StoreError, StoreResult, Subsystem};
use crate::time::{Span, Timestamp};

/// A pool's shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    pub size: u32,
    pub acquire_timeout: Span,
    /// A name for diagnostics (the replica's, say).
    pub label: String,
}

/// What a pool holds right now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub size: u32,
    pub in_use: u32,
    pub in_use_by: BTreeMap<Subsystem, u32>,
    /// Callers waiting for a connection.
    pub waiting: u32,
}

#[derive(Debug)]
pub(crate) struct Pool {
    config: PoolConfig,
    semaphore: Arc<Semaphore>,
    counts: Mutex<PoolStats>,
    /// When each caller gave up waiting, and for which subsystem.
    timeouts: Mutex<Vec<(Timestamp, Subsystem)>>,
}

impl Pool {
    pub fn new(config: PoolConfig) -> Arc<Pool> {
        let size = config.size;
        Arc::new(Pool {
            semaphore: Arc::new(Semaphore::new(size as usize)),
            counts: Mutex::new(PoolStats { size, ..PoolStats::default() }),
            timeouts: Mutex::new(Vec::new()),
            config,
        })
    }

    pub fn stats(&self) -> PoolStats {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The pool timeouts since the last call: when, and who was waiting.
    pub fn take_timeouts(&self) -> Vec<(Timestamp, Subsystem)> {
        std::mem::take(&mut *self.timeouts.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn update(&self, f: impl FnOnce(&mut PoolStats)) {
        f(&mut self.counts.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Takes a connection for `subsystem`, waiting at most the acquire timeout.
    pub async fn acquire(self: &Arc<Self>, clock: &SharedClock, subsystem: Subsystem) -> StoreResult<PoolPermit> {
        let permit = match Arc::clone(&self.semaphore).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let started_at = clock.now();
                let deadline = started_at + self.config.acquire_timeout;
                self.update(|c| c.waiting += 1);
                let _waiting = WaitingGuard(self);
                tokio::select! {
                    biased;
                    permit = Arc::clone(&self.semaphore).acquire_owned() => {
                        permit.map_err(|_| StoreError::connection_lost("pool closed"))?
                    }
                    () = clock.sleep_until(deadline) => {
                        let now = clock.now();
                        self.timeouts.lock().unwrap_or_else(PoisonError::into_inner).push((now, subsystem));
                        return Err(StoreError::PoolTimeout { waited_ms: now.since(started_at).as_millis() });
                    }
                }
            }
        };
        self.update(|c| {
            c.in_use += 1;
            *c.in_use_by.entry(subsystem).or_insert(0) += 1;
        });
        Ok(PoolPermit { pool: Arc::clone(self), subsystem, _permit: permit })
    }
}

struct WaitingGuard<'a>(&'a Pool);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.update(|c| c.waiting = c.waiting.saturating_sub(1));
    }
}

/// A held connection; dropping it returns the connection.
#[derive(Debug)]
pub(crate) struct PoolPermit {
    pool: Arc<Pool>,
    subsystem: Subsystem,
    _permit: OwnedSemaphorePermit,
}

impl Drop for PoolPermit {
    fn drop(&mut self) {
        let subsystem = self.subsystem;
        self.pool.update(|c| {
            c.in_use = c.in_use.saturating_sub(1);
            if let Some(n) = c.in_use_by.get_mut(&subsystem) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.in_use_by.remove(&subsystem);
                }
            }
        });
    }
}
