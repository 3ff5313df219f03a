//! The daemon's notification sinks: a log sink (every notification as one
//! `tracing` line), a webhook sink (one JSON `POST` per notification, with the
//! dedupe key as `Idempotency-Key`), and a test-only failpoint wrapper.
//!
//! Delivery is at least once: the engine may hand the same outbox row to a
//! sink again (after a crash between the send and the commit that marks it
//! delivered), so a receiver drops a repeated `Idempotency-Key`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use crate::daemon::config::{Failpoint, WebhookConfig};
use crate::model::{Notification, NotificationPayload};
use crate::notify::{DeliveryError, NotificationSink};

/// The JSON body a webhook receives (and what the log sink prints).
#[derive(Debug, Clone, Serialize)]
pub struct NotificationBody<'a> {
    pub id: String,
    pub kind: &'static str,
    pub user_id: String,
    pub workspace_id: Option<String>,
    /// Identifies the event: the same key is the same notification.
    pub dedupe_key: &'a str,
    pub created_at: String,
    /// Earlier failed attempts.
    pub attempts: u32,
    pub payload: &'a NotificationPayload,
}

impl<'a> NotificationBody<'a> {
    pub fn of(notification: &'a Notification) -> Self {
        NotificationBody {
            id: notification.id.to_string(),
            kind: notification.kind.as_str(),
            user_id: notification.user_id.to_string(),
            workspace_id: notification.workspace_id.map(|w| w.to_string()),
            dedupe_key: &notification.dedupe_key.0,
            created_at: notification.created_at.to_string(),
            attempts: notification.attempts,
            payload: &notification.payload,
        }
    }
}

/// Logs each notification (target `engine::notifications`) and accepts it.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogSink;

#[async_trait]
impl NotificationSink for LogSink {
    async fn deliver(&self, notification: &Notification) -> Result<(), DeliveryError> {
        let body = serde_json::to_string(&NotificationBody::of(notification))
            .map_err(|e| DeliveryError(format!("encoding notification: {e}")))?;
        tracing::info!(
            target: "engine::notifications",
            kind = notification.kind.as_str(),
            user = %notification.user_id,
            dedupe_key = %notification.dedupe_key.0,
            %body,
            "notification"
        );
        Ok(())
    }
}

/// POSTs each notification as JSON; any 2xx answer is a delivery, anything
/// else (or no answer within the timeout) a failure retried later.
#[derive(Debug, Clone)]
pub struct WebhookSink {
    client: reqwest::Client,
    url: String,
}

impl WebhookSink {
    pub fn new(config: &WebhookConfig) -> Result<WebhookSink, DeliveryError> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout.to_std())
            .build()
            .map_err(|e| DeliveryError(format!("building the webhook client: {e}")))?;
        Ok(WebhookSink { client, url: config.url.clone() })
    }
}

#[async_trait]
impl NotificationSink for WebhookSink {
    async fn deliver(&self, notification: &Notification) -> Result<(), DeliveryError> {
        let response = self
            .client
            .post(&self.url)
            .header("Idempotency-Key", &notification.dedupe_key.0)
            .json(&NotificationBody::of(notification))
            .send()
            .await
            .map_err(|e| DeliveryError(format!("webhook {}: {e}", self.url)))?;
        let status = response.status();
        if status.is_success() {
            tracing::debug!(kind = notification.kind.as_str(), key = %notification.dedupe_key.0, "notification posted");
            Ok(())
        } else {
            Err(DeliveryError(format!("webhook {} answered {status}", self.url)))
        }
    }
}

/// Wraps a sink with a [`Failpoint`]. With `hold_first_delivery`, the first
/// call never returns: the delivery pass that claimed the row keeps its
/// transaction (and the claimed rows' locks) open until the process is killed.
/// Tests use it to catch a replica inside a transaction; production never sets it.
pub struct FailpointSink {
    inner: Arc<dyn NotificationSink>,
    failpoint: Failpoint,
    fired: AtomicBool,
}

impl FailpointSink {
    pub fn wrap(inner: Arc<dyn NotificationSink>, failpoint: Failpoint) -> Arc<dyn NotificationSink> {
        match failpoint {
            Failpoint::None => inner,
            Failpoint::HoldFirstDelivery => Arc::new(FailpointSink { inner, failpoint, fired: AtomicBool::new(false) }),
        }
    }
}

#[async_trait]
impl NotificationSink for FailpointSink {
    async fn deliver(&self, notification: &Notification) -> Result<(), DeliveryError> {
        if self.failpoint == Failpoint::HoldFirstDelivery && !self.fired.swap(true, Ordering::SeqCst) {
            tracing::warn!(
                key = %notification.dedupe_key.0,
                "failpoint hold_first_delivery: holding the delivery transaction open until killed"
            );
            std::future::pending::<()>().await;
        }
        self.inner.deliver(notification).await
    }
}

/// The sink the configuration asks for: the webhook if set (it logs at debug),
/// else the log sink; wrapped by the failpoint.
pub fn from_config(
    webhook: Option<&WebhookConfig>,
    failpoint: Failpoint,
) -> Result<Arc<dyn NotificationSink>, DeliveryError> {
    let sink: Arc<dyn NotificationSink> = match webhook {
        Some(config) => Arc::new(WebhookSink::new(config)?),
        None => Arc::new(LogSink),
    };
    Ok(FailpointSink::wrap(sink, failpoint))
}
