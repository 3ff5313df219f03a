//! What a backend arm provides: independent clients (pools) of one fresh
//! database, and the few hooks a portable script cannot express (disconnect a
//! client, vacuum); plus the probes every case uses.

use std::future::Future;

use async_trait::async_trait;
use engine::runtime::SharedClock;
use engine::store::{SessionId, Store, StoreError, Subsystem, TxOptions};
use engine::time::Span;

/// How to build a harness.
#[derive(Clone, Debug)]
pub struct HarnessOptions {
    /// Independent clients of the one database (at least 2).
    pub clients: usize,
    pub pool_size: u32,
    pub acquire_timeout: Span,
}

impl Default for HarnessOptions {
    fn default() -> Self {
        HarnessOptions { clients: 2, pool_size: 5, acquire_timeout: Span::from_secs(5) }
    }
}

/// A fresh database with several clients.
#[async_trait]
pub trait Harness: Send + Sync + Sized + 'static {
    type S: Store;

    async fn start(options: HarnessOptions) -> Self;
    /// Client `index` (0-based).
    fn store(&self, index: usize) -> &Self::S;
    /// The clock the backend measures pool timeouts with.
    fn clock(&self) -> SharedClock;
    /// Connections client `index` holds right now.
    fn connections_in_use(&self, index: usize) -> u32;
    /// Client `index` is gone (crash, lost network): the server ends its sessions.
    async fn disconnect(&self, index: usize);
    /// Removes row versions no open snapshot needs.
    async fn vacuum(&self);
}

pub fn opts(subsystem: Subsystem) -> TxOptions {
    TxOptions::new(subsystem)
}

/// Begins a transaction on client `index`, or panics.
pub async fn begin<H: Harness>(h: &H, index: usize) -> <H::S as Store>::Tx {
    h.store(index).begin(opts(Subsystem::Api)).await.expect("begin")
}

/// Polls `sessions_waiting` until `session` is blocked (yielding, then short
/// clock sleeps); panics if it never blocks.
pub async fn wait_until_blocked<H: Harness>(h: &H, session: SessionId) {
    let clock = h.clock();
    for round in 0..10_000u32 {
        let waiting = h.store(0).sessions_waiting().await.expect("sessions_waiting");
        if waiting.contains(&session) {
            return;
        }
        if round < 100 {
            tokio::task::yield_now().await;
        } else {
            clock.sleep_until(clock.now() + Span::from_millis(1)).await;
        }
    }
    panic!("session {session:?} never blocked");
}

/// Whether an error is the serialization failure (40001).
pub fn is_serialization(result: &Result<impl std::fmt::Debug, StoreError>) -> bool {
    matches!(result, Err(StoreError::SerializationFailure { .. }))
}

/// Runs a case with an upper bound on its duration, so a lost wake-up fails
/// the test instead of hanging the suite.
#[allow(clippy::disallowed_methods)] // a test-only guard, not engine time
pub async fn bounded(name: &str, case: impl Future<Output = ()>) {
    if tokio::time::timeout(std::time::Duration::from_secs(60), case).await.is_err() {
        panic!("{name} did not finish within 60s");
    }
}
