//! Batched `last_used_at` tracking (lifecycle.md §7): usage marks collect in a
//! per-replica set; each flush writes them in one statement as of the flush
//! instant, never backwards; a failed batch is queued again (the reference
//! dropped it), and the engine flushes once more at graceful shutdown.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use crate::events::{Event, SharedEvents};
use crate::ids::WorkspaceId;
use crate::limits;
use crate::runtime::Clock;
use crate::store::{Store, StoreError, Subsystem, Tx, TxOptions};
use crate::time::Timestamp;

/// The result of one flush.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlushOutcome {
    /// Workspaces in the batch.
    pub workspaces: u32,
    /// Rows whose `last_used_at` moved.
    pub written: u64,
    /// Workspaces queued again after a failure.
    pub requeued: u32,
}

/// Serialization failures retried inside one flush before the batch is queued again.
const FLUSH_ATTEMPTS_MAX: u32 = 3;

pub struct UsageTracker<S: Store> {
    store: Arc<S>,
    pending: Mutex<BTreeSet<WorkspaceId>>,
    events: SharedEvents,
}

impl<S: Store> UsageTracker<S> {
    pub fn new(store: Arc<S>, events: SharedEvents) -> Self {
        UsageTracker { store, pending: Mutex::new(BTreeSet::new()), events }
    }

    /// Records that the workspace was used (written at the next flush).
    pub fn mark(&self, workspace: WorkspaceId) {
        self.lock().insert(workspace);
    }

    pub fn pending_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<WorkspaceId>> {
        self.pending.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Takes every mark and writes `last_used_at = now` where it is older,
    /// within the flush timeout; what fails is queued again.
    pub async fn flush(&self, now: Timestamp, clock: &dyn Clock) -> FlushOutcome {
        let batch: Vec<WorkspaceId> = std::mem::take(&mut *self.lock()).into_iter().collect();
        let mut outcome =
            FlushOutcome { workspaces: u32::try_from(batch.len()).unwrap_or(u32::MAX), ..Default::default() };
        if batch.is_empty() {
            return outcome;
        }
        for (index, chunk) in batch.chunks(limits::USAGE_FLUSH_BATCH_MAX).enumerate() {
            let deadline = clock.now() + limits::USAGE_FLUSH_TIMEOUT;
            let result = tokio::select! {
                biased;
                result = self.write(chunk, now) => result,
                _ = clock.sleep_until(deadline) => Err(StoreError::Cancelled),
            };
            match result {
                Ok(written) => outcome.written += written,
                Err(error) => {
                    // Queue this chunk and every later one again.
                    let rest = &batch[index * limits::USAGE_FLUSH_BATCH_MAX..];
                    self.lock().extend(rest.iter().copied());
                    outcome.requeued = u32::try_from(rest.len()).unwrap_or(u32::MAX);
                    self.events
                        .emit(Event::UsageFlushFailed { workspaces: outcome.requeued, error: error.to_string() });
                    return outcome;
                }
            }
        }
        self.events.emit(Event::UsageFlushed { workspaces: outcome.workspaces, written: outcome.written, at: now });
        outcome
    }

    async fn write(&self, ids: &[WorkspaceId], now: Timestamp) -> Result<u64, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = async {
                let mut tx = self.store.begin(TxOptions::new(Subsystem::Usage)).await?;
                match tx.touch_last_used(ids, now).await {
                    Ok(written) => {
                        tx.commit().await?;
                        Ok(written)
                    }
                    Err(error) => {
                        let _ = tx.rollback().await;
                        Err(error)
                    }
                }
            }
            .await;
            match result {
                Err(StoreError::SerializationFailure { .. } | StoreError::Deadlock { .. })
                    if attempt < FLUSH_ATTEMPTS_MAX => {}
                other => return other,
            }
        }
    }
}
