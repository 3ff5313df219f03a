//! Notifications: the transactional outbox and its delivery.
//!
//! A notification is written to the outbox in the same transaction as the
//! state change that causes it, keyed by the event it reports (insert if the
//! key is absent), so no crash point loses or doubles one. Delivery is a
//! separate, at-least-once pass: claim due rows (`SKIP LOCKED`), hand each to
//! the host's [`NotificationSink`], mark it delivered or schedule a retry, and
//! commit. A row is marked delivered only after the sink accepted it.

use async_trait::async_trait;

use crate::events::{Event, EventSink};
use crate::ids::SharedIds;
use crate::limits;
use crate::model::{NewNotification, Notification};
use crate::store::{Store, StoreError, StoreResult, Subsystem, Tx, TxOptions};
use crate::time::{Span, Timestamp};

/// Where delivered notifications go (email, webhook, a log; the simulator's
/// recording sink). `deliver` may be called more than once for one row: the
/// dedupe key is the idempotency key.
#[async_trait]
pub trait NotificationSink: Send + Sync + 'static {
    async fn deliver(&self, notification: &Notification) -> Result<(), DeliveryError>;
}

/// A failed delivery; the row is retried after `notification_retry`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("delivery failed: {0}")]
pub struct DeliveryError(pub String);

/// Writes `notification` to the outbox in `tx` unless its key is there already.
/// The event describing it goes to `events`, for the caller to emit once the
/// transaction committed (a rolled-back row was never written).
pub async fn enqueue<T: Tx>(
    tx: &mut T,
    ids: &SharedIds,
    notification: &NewNotification,
    now: Timestamp,
    events: &mut Vec<Event>,
) -> StoreResult<bool> {
    let inserted = tx.enqueue_notification(ids.next(), notification, now).await?;
    events.push(Event::NotificationEnqueued {
        kind: notification.kind,
        workspace: notification.workspace_id,
        inserted,
    });
    Ok(inserted)
}

/// Counters of one delivery pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryStats {
    pub delivered: u32,
    pub failed: u32,
}

/// One delivery pass at `now`.
pub async fn deliver_due<S: Store>(
    store: &S,
    sink: &dyn NotificationSink,
    now: Timestamp,
    retry_after: Span,
    events: &dyn EventSink,
) -> Result<DeliveryStats, StoreError> {
    let mut tx = store.begin(TxOptions::new(Subsystem::Notifications)).await?;
    let result = deliver_in(&mut tx, sink, now, retry_after).await;
    match result {
        Ok((stats, done)) => {
            tx.commit().await?;
            // Report only what committed.
            for (id, kind, retry_at) in done {
                events.emit(match retry_at {
                    None => Event::NotificationDelivered { id, kind },
                    Some(retry_at) => Event::NotificationDeliveryFailed { id, kind, retry_at },
                });
            }
            Ok(stats)
        }
        Err(error) => {
            let _ = tx.rollback().await;
            Err(error)
        }
    }
}

type Delivered = Vec<(crate::ids::NotificationId, crate::model::NotificationKind, Option<Timestamp>)>;

async fn deliver_in<T: Tx>(
    tx: &mut T,
    sink: &dyn NotificationSink,
    now: Timestamp,
    retry_after: Span,
) -> Result<(DeliveryStats, Delivered), StoreError> {
    let due = tx.claim_due_notifications(now, limits::NOTIFICATIONS_PER_POLL_MAX).await?;
    let mut stats = DeliveryStats::default();
    let mut done = Vec::with_capacity(due.len());
    for notification in due {
        match sink.deliver(&notification).await {
            Ok(()) => {
                tx.mark_notification_delivered(notification.id, now).await?;
                stats.delivered += 1;
                done.push((notification.id, notification.kind, None));
            }
            Err(_) => {
                let retry_at = now + retry_after;
                tx.mark_notification_failed(notification.id, retry_at).await?;
                stats.failed += 1;
                done.push((notification.id, notification.kind, Some(retry_at)));
            }
        }
    }
    Ok((stats, done))
}
