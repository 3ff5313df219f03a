//! Pubsub on PostgreSQL `LISTEN`/`NOTIFY`: how replicas sharing a database
//! tell each other's provisioners "job available" (the contract, at most
//! once and may drop, is [`crate::pubsub`]'s).
//!
//! - **Publishing**: [`Publisher::publish`] only queues (bounded by
//!   [`limits::PUBSUB_PUBLISH_QUEUE_MAX`], dropped when full); one task takes
//!   each message and runs `SELECT pg_notify($1, $2)` on a connection of the
//!   store's pool (subsystem `pubsub`), outside any transaction, so the server
//!   delivers it at once. A failed statement loses the message.
//! - **Listening**: one dedicated connection (not pooled, named
//!   `<application_name>-listen` in `pg_stat_activity`) runs `LISTEN` on
//!   every topic's channel (`engine_<topic>`), and a task forwards its
//!   notifications to every [`Subscription`]. When the connection breaks (the
//!   server restarts, the backend is terminated, keepalives find the peer
//!   dead) the task reconnects with a doubling backoff
//!   ([`limits::PUBSUB_RECONNECT_BACKOFF_MIN`] up to the max) and sends
//!   subscribers a [`Notice::Gap`]: notices published during the break are
//!   lost, and consumers poll.
//!
//! Both tasks start through the host's [`Spawner`] and end at
//! [`PgPubSub::close`] (or once every handle is dropped).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{broadcast, mpsc, watch};
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{AsyncMessage, Client, Connection, NoTls, Notification, Socket};

use super::error::map_error;
use super::tx::Held;
use super::PgStore;
use crate::limits;
use crate::pubsub::{payload_fits, Notice, Publisher, Subscriber, Subscription, Topic};
use crate::runtime::{SharedClock, Spawner, TaskHandle};
use crate::store::{StoreError, StoreResult, Subsystem};
use crate::time::Span;

/// Every channel is `engine_<topic>`, so the engine's notices never mix with
/// another application's on the same database.
pub const CHANNEL_PREFIX: &str = "engine_";

const NOTIFY_SQL: &str = "SELECT pg_notify($1, $2)";

/// The PostgreSQL channel of a topic.
pub fn channel_of(topic: Topic) -> String {
    format!("{CHANNEL_PREFIX}{}", topic.name())
}

fn topic_of(channel: &str) -> Option<Topic> {
    channel.strip_prefix(CHANNEL_PREFIX).and_then(Topic::from_name)
}

/// What a [`PgPubSub`] did since it started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PgPubSubStats {
    /// Messages the server accepted (`pg_notify` succeeded).
    pub published: u64,
    /// Messages dropped before sending: the queue was full, the payload too
    /// long, or the publisher closed.
    pub dropped: u64,
    /// Messages lost to a failed `pg_notify` (no connection, an error).
    pub failed: u64,
    /// Notifications the listening connection received.
    pub received: u64,
    /// Times the listening connection was re-established after a break.
    pub reconnects: u64,
}

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    received: AtomicU64,
    reconnects: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// One replica's pubsub on its database (cheap to clone; clones share it).
#[derive(Clone, Debug)]
pub struct PgPubSub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    queue: mpsc::Sender<(Topic, String)>,
    notices: broadcast::Sender<Notice>,
    counters: Arc<Counters>,
    /// `true` asks the tasks to end; dropped (every handle gone), it does too.
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<TaskHandle>>,
    listen_application_name: String,
}

impl PgPubSub {
    /// Connects the listening session and runs `LISTEN` (an unreachable
    /// server fails here, as [`PgStore::connect`] does), then starts the
    /// publishing and listening tasks on `spawner`. Publishing uses `store`'s
    /// pool; `clock` paces reconnection.
    pub async fn start(store: &PgStore, spawner: &dyn Spawner, clock: SharedClock) -> StoreResult<PgPubSub> {
        let listen_application_name = format!("{}-listen", store.inner.config.application_name);
        let mut config = store.inner.pool.manager().config.clone();
        config
            .application_name(&listen_application_name)
            .keepalives(true)
            .keepalives_idle(limits::PUBSUB_LISTEN_KEEPALIVE_AFTER.to_std())
            .keepalives_interval(limits::PUBSUB_LISTEN_KEEPALIVE_INTERVAL.to_std())
            .keepalives_retries(limits::PUBSUB_LISTEN_KEEPALIVE_RETRIES_COUNT);
        let channels: Vec<String> = Topic::ALL.into_iter().map(channel_of).collect();
        let first = listen(&config, &channels).await?;

        let (queue, queued) = mpsc::channel(limits::PUBSUB_PUBLISH_QUEUE_MAX);
        let (notices, _) = broadcast::channel(limits::PUBSUB_SUBSCRIBER_BUFFER_MAX);
        let (stop, stopping) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let publishing = spawner
            .spawn("pubsub_publish", Box::pin(publish_loop(store.clone(), queued, counters.clone(), stopping.clone())));
        let listener = Listener { config, channels, notices: notices.clone(), counters: counters.clone(), clock };
        let listening = spawner.spawn("pubsub_listen", Box::pin(listener.run(first, stopping)));
        let inner = Inner {
            queue,
            notices,
            counters,
            stop,
            tasks: Mutex::new(vec![publishing, listening]),
            listen_application_name,
        };
        Ok(PgPubSub { inner: Arc::new(inner) })
    }

    /// Counters since the start.
    pub fn stats(&self) -> PgPubSubStats {
        let c = &self.inner.counters;
        PgPubSubStats {
            published: c.published.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            received: c.received.load(Ordering::Relaxed),
            reconnects: c.reconnects.load(Ordering::Relaxed),
        }
    }

    /// The `application_name` of the listening session (`pg_stat_activity`).
    pub fn listen_application_name(&self) -> &str {
        &self.inner.listen_application_name
    }

    /// Stops both tasks and waits for them: queued messages are dropped, the
    /// listening session closes, subscriptions receive nothing more. Later
    /// publishes are dropped.
    pub async fn close(&self) {
        self.inner.stop.send_replace(true);
        let tasks = std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for task in tasks {
            task.join().await;
        }
    }
}

impl Publisher for PgPubSub {
    fn publish(&self, topic: Topic, payload: &str) {
        if !payload_fits(payload) || *self.inner.stop.borrow() {
            Counters::bump(&self.inner.counters.dropped);
            return;
        }
        if let Err(error) = self.inner.queue.try_send((topic, payload.to_owned())) {
            Counters::bump(&self.inner.counters.dropped);
            let why = match error {
                mpsc::error::TrySendError::Full(_) => "queue full",
                mpsc::error::TrySendError::Closed(_) => "publisher closed",
            };
            tracing::debug!(%topic, why, "pubsub notice dropped");
        }
    }
}

impl Subscriber for PgPubSub {
    fn subscribe(&self, topic: Topic) -> Subscription {
        Subscription::new(topic, self.inner.notices.subscribe())
    }
}

/// Completes once a stop is asked for or every handle is gone.
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

async fn publish_loop(
    store: PgStore,
    mut queued: mpsc::Receiver<(Topic, String)>,
    counters: Arc<Counters>,
    mut stopping: watch::Receiver<bool>,
) {
    loop {
        let next = tokio::select! {
            biased;
            _ = stopped(&mut stopping) => return,
            next = queued.recv() => next,
        };
        let Some((topic, payload)) = next else { return };
        let sent = tokio::select! {
            biased;
            _ = stopped(&mut stopping) => return,
            sent = notify(&store, topic, &payload) => sent,
        };
        match sent {
            Ok(()) => Counters::bump(&counters.published),
            Err(error) => {
                Counters::bump(&counters.failed);
                tracing::warn!(%topic, %error, "pubsub notice lost: pg_notify failed");
            }
        }
    }
}

/// One `pg_notify` on a pooled connection, outside any transaction.
async fn notify(store: &PgStore, topic: Topic, payload: &str) -> StoreResult<()> {
    let (conn, _usage) = store.acquire(Subsystem::Pubsub).await?;
    let mut held = Held::new(conn);
    let Some(connection) = held.get() else { return Err(StoreError::connection_lost("no connection")) };
    let statement = connection.statement(NOTIFY_SQL).await.map_err(|e| map_error(&e))?;
    let channel = channel_of(topic);
    connection.client.execute(&statement, &[&channel, &payload]).await.map_err(|e| map_error(&e))?;
    held.release();
    Ok(())
}

/// A session that runs `LISTEN` on every channel. The client must live as
/// long as the connection is read: dropping it closes the session.
struct Listening {
    _client: Client,
    connection: Connection<Socket, NoTlsStream>,
    /// Notifications that arrived while `LISTEN` was being answered.
    early: Vec<Notification>,
}

/// The next message of a connection (which this also drives). `None` or an
/// error ends the connection: it must not be read again.
async fn next_message(
    connection: &mut Connection<Socket, NoTlsStream>,
) -> Option<Result<AsyncMessage, tokio_postgres::Error>> {
    futures::future::poll_fn(|cx| connection.poll_message(cx)).await
}

async fn listen(config: &tokio_postgres::Config, channels: &[String]) -> StoreResult<Listening> {
    let (client, mut connection) = config.connect(NoTls).await.map_err(|e| map_error(&e))?;
    let sql: String = channels.iter().map(|channel| format!("LISTEN \"{channel}\";")).collect();
    let mut early = Vec::new();
    {
        // The connection is read while the statement runs: it is what moves the bytes.
        let mut statement = std::pin::pin!(client.batch_execute(&sql));
        loop {
            tokio::select! {
                biased;
                done = &mut statement => {
                    done.map_err(|e| map_error(&e))?;
                    break;
                }
                message = next_message(&mut connection) => match message {
                    Some(Ok(AsyncMessage::Notification(notification))) => early.push(notification),
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Err(map_error(&error)),
                    None => return Err(StoreError::connection_lost("the listening session closed during LISTEN")),
                },
            }
        }
    }
    Ok(Listening { _client: client, connection, early })
}

/// The listening task's state.
struct Listener {
    config: tokio_postgres::Config,
    channels: Vec<String>,
    notices: broadcast::Sender<Notice>,
    counters: Arc<Counters>,
    clock: SharedClock,
}

impl Listener {
    /// Forwards notifications until stopped, reconnecting after each break.
    async fn run(self, first: Listening, mut stopping: watch::Receiver<bool>) {
        let mut session = Some(first);
        let mut backoff = limits::PUBSUB_RECONNECT_BACKOFF_MIN;
        loop {
            let listening = match session.take() {
                Some(listening) => listening,
                None => {
                    // Every attempt waits first: a server that accepts and
                    // at once drops sessions is not hammered.
                    let retry_at = self.clock.now() + backoff;
                    let attempt = async {
                        self.clock.sleep_until(retry_at).await;
                        listen(&self.config, &self.channels).await
                    };
                    let attempt = tokio::select! {
                        biased;
                        _ = stopped(&mut stopping) => return,
                        attempt = attempt => attempt,
                    };
                    match attempt {
                        Ok(listening) => {
                            backoff = limits::PUBSUB_RECONNECT_BACKOFF_MIN;
                            Counters::bump(&self.counters.reconnects);
                            tracing::info!("pubsub listening again; notices of the break are lost");
                            let _ = self.notices.send(Notice::Gap);
                            listening
                        }
                        Err(error) => {
                            backoff = doubled(backoff);
                            tracing::warn!(%error, retry_in = %backoff, "pubsub could not listen");
                            continue;
                        }
                    }
                }
            };
            let Listening { _client, mut connection, early } = listening;
            for notification in early {
                self.forward(&notification);
            }
            let ended = loop {
                let message = tokio::select! {
                    biased;
                    _ = stopped(&mut stopping) => return,
                    message = next_message(&mut connection) => message,
                };
                match message {
                    Some(Ok(AsyncMessage::Notification(notification))) => self.forward(&notification),
                    Some(Ok(_)) => {}
                    Some(Err(error)) => break error.to_string(),
                    None => break "closed by the server".to_owned(),
                }
            };
            tracing::warn!(error = %ended, "pubsub listening session lost; reconnecting");
        }
    }

    fn forward(&self, notification: &Notification) {
        Counters::bump(&self.counters.received);
        if let Some(topic) = topic_of(notification.channel()) {
            // No subscriber: nobody to tell.
            let _ = self.notices.send(Notice::Message { topic, payload: notification.payload().to_owned() });
        }
    }
}

fn doubled(backoff: Span) -> Span {
    Span::from_micros(backoff.as_micros().saturating_mul(2)).min(limits::PUBSUB_RECONNECT_BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_prefixed_and_map_back_to_topics() {
        assert_eq!(channel_of(Topic::JobAvailable), "engine_job_available");
        assert_eq!(topic_of("engine_job_available"), Some(Topic::JobAvailable));
        assert_eq!(topic_of("job_available"), None);
        assert_eq!(topic_of("engine_other"), None);
    }

    #[test]
    fn backoff_doubles_up_to_its_max() {
        let mut backoff = limits::PUBSUB_RECONNECT_BACKOFF_MIN;
        let mut seen = Vec::new();
        for _ in 0..10 {
            seen.push(backoff);
            backoff = doubled(backoff);
        }
        assert_eq!(seen[1], Span::from_millis(200));
        assert_eq!(*seen.last().unwrap(), limits::PUBSUB_RECONNECT_BACKOFF_MAX);
    }
}
