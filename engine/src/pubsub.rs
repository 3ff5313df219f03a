//! Pubsub: the engine's notices to its neighbours (lifecycle.md §2 step 5:
//! after a build commits, "job available" goes out so provisioners take the
//! job at once instead of at their next poll).
//!
//! The contract is deliberately weak: **at most once, may drop**. A
//! [`Publisher`] never blocks its caller: production implementations hand the
//! message to a background task through a bounded queue
//! ([`limits::PUBSUB_PUBLISH_QUEUE_MAX`], "a queue of 10") and drop it when
//! the queue is full, when the database is unreachable, or when a subscriber
//! is reconnecting. Consumers must therefore also poll: a notice only makes
//! them look sooner, and a lost one only delays.
//!
//! Implementations: [`LocalPubSub`] (one process: the SQLite single-node
//! daemon, tests), [`NoPubSub`] (publishes nothing),
//! `store::postgres::pubsub::PgPubSub` (PostgreSQL `LISTEN`/`NOTIFY`, several
//! replicas) and the simulator's, which drops, delays and reorders.
//!
//! The engine publishes through `publish_committed`, called where drivers
//! report a committed transaction's events: never before the commit, never
//! for a transaction that rolled back.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::events::{Event, EventSink};
use crate::limits;

/// What a notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Topic {
    /// A build's provisioner job was committed pending; the payload is the
    /// job's id.
    JobAvailable,
}

impl Topic {
    pub const ALL: [Topic; 1] = [Topic::JobAvailable];

    /// The topic's name (PostgreSQL channels are `engine_<name>`).
    pub const fn name(self) -> &'static str {
        match self {
            Topic::JobAvailable => "job_available",
        }
    }

    pub fn from_name(name: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|topic| topic.name() == name)
    }
}

impl std::fmt::Display for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Sends notices. Implementations never block and may drop (see the module
/// documentation): the caller has already committed and moves on.
pub trait Publisher: Send + Sync + 'static {
    /// Hands `payload` on `topic` to the implementation. A payload longer
    /// than [`limits::PUBSUB_PAYLOAD_BYTES_MAX`] is dropped.
    fn publish(&self, topic: Topic, payload: &str);
}

pub type SharedPublisher = Arc<dyn Publisher>;

/// Receives notices: what a host's consumers (the daemon's long-polling
/// acquire) subscribe through.
pub trait Subscriber: Send + Sync + 'static {
    /// Notices on `topic` from now on (none from before the call).
    fn subscribe(&self, topic: Topic) -> Subscription;
}

pub type SharedSubscriber = Arc<dyn Subscriber>;

/// What a [`Subscription`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A message published on the subscribed topic.
    Message { topic: Topic, payload: String },
    /// Notices may have been lost just now: this subscriber fell more than
    /// [`limits::PUBSUB_SUBSCRIBER_BUFFER_MAX`] behind, or the listening
    /// connection was re-established after a break. Poll now.
    Gap,
}

/// One subscriber's notices, in the order received. Each subscription has
/// its own buffer; one that falls behind gets [`Notice::Gap`] and goes on
/// with newer notices.
#[derive(Debug)]
pub struct Subscription {
    topic: Topic,
    receiver: broadcast::Receiver<Notice>,
}

impl Subscription {
    /// A subscription to `topic` on a channel of [`Notice`]s (for
    /// implementations: gaps and every topic's messages go on one channel).
    pub fn new(topic: Topic, receiver: broadcast::Receiver<Notice>) -> Subscription {
        Subscription { topic, receiver }
    }

    /// The next notice, or `None` once the pubsub is closed (then never
    /// anything again: a consumer falls back to polling alone).
    pub async fn recv(&mut self) -> Option<Notice> {
        loop {
            match self.receiver.recv().await {
                Ok(Notice::Message { topic, .. }) if topic != self.topic => continue,
                Ok(notice) => return Some(notice),
                Err(broadcast::error::RecvError::Lagged(_)) => return Some(Notice::Gap),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    pub fn topic(&self) -> Topic {
        self.topic
    }
}

/// Whether a payload may be published anywhere (PostgreSQL's `NOTIFY`
/// refuses 8000 bytes and more).
pub fn payload_fits(payload: &str) -> bool {
    payload.len() <= limits::PUBSUB_PAYLOAD_BYTES_MAX
}

/// In one process: every subscriber of this value receives what is published
/// on it, at once (a subscriber more than
/// [`limits::PUBSUB_SUBSCRIBER_BUFFER_MAX`] behind loses the oldest and gets
/// [`Notice::Gap`]). For the SQLite single-node daemon and tests; replicas
/// on one database need `PgPubSub`.
#[derive(Debug, Clone)]
pub struct LocalPubSub {
    sender: broadcast::Sender<Notice>,
}

impl Default for LocalPubSub {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalPubSub {
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(limits::PUBSUB_SUBSCRIBER_BUFFER_MAX);
        LocalPubSub { sender }
    }
}

impl Publisher for LocalPubSub {
    fn publish(&self, topic: Topic, payload: &str) {
        if !payload_fits(payload) {
            return;
        }
        // No subscriber: nobody to tell, nothing to keep.
        let _ = self.sender.send(Notice::Message { topic, payload: payload.to_owned() });
    }
}

impl Subscriber for LocalPubSub {
    fn subscribe(&self, topic: Topic) -> Subscription {
        Subscription::new(topic, self.sender.subscribe())
    }
}

/// Publishes nothing; its subscriptions are closed at once.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoPubSub;

impl Publisher for NoPubSub {
    fn publish(&self, _topic: Topic, _payload: &str) {}
}

impl Subscriber for NoPubSub {
    fn subscribe(&self, topic: Topic) -> Subscription {
        let (_, receiver) = broadcast::channel(1);
        Subscription::new(topic, receiver)
    }
}

/// After a commit: reports the transaction's events in order, and publishes
/// [`Topic::JobAvailable`] (payload: the job's id) for each build it inserted.
/// Drivers call this only once their commit succeeded.
pub(crate) fn publish_committed(events: Vec<Event>, sink: &dyn EventSink, publisher: &dyn Publisher) {
    for event in events {
        let job = match &event {
            Event::BuildInserted { job, .. } => Some(*job),
            _ => None,
        };
        sink.emit(event);
        if let Some(job) = job {
            publisher.publish(Topic::JobAvailable, &job.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_subscribers_each_receive_their_topic_after_subscribing() {
        let pubsub = LocalPubSub::new();
        pubsub.publish(Topic::JobAvailable, "before");
        let mut a = pubsub.subscribe(Topic::JobAvailable);
        let mut b = pubsub.subscribe(Topic::JobAvailable);
        pubsub.publish(Topic::JobAvailable, "j1");
        let expected = Notice::Message { topic: Topic::JobAvailable, payload: "j1".into() };
        assert_eq!(a.recv().await, Some(expected.clone()));
        assert_eq!(b.recv().await, Some(expected));
    }

    #[tokio::test]
    async fn local_subscriber_that_falls_behind_gets_a_gap_then_newer_notices() {
        let pubsub = LocalPubSub::new();
        let mut slow = pubsub.subscribe(Topic::JobAvailable);
        let count = limits::PUBSUB_SUBSCRIBER_BUFFER_MAX + 5;
        for n in 0..count {
            pubsub.publish(Topic::JobAvailable, &n.to_string());
        }
        assert_eq!(slow.recv().await, Some(Notice::Gap));
        let oldest_kept = count - limits::PUBSUB_SUBSCRIBER_BUFFER_MAX;
        let next = Notice::Message { topic: Topic::JobAvailable, payload: oldest_kept.to_string() };
        assert_eq!(slow.recv().await, Some(next));
    }

    #[tokio::test]
    async fn too_long_payloads_are_dropped_and_no_pubsub_subscriptions_are_closed() {
        let pubsub = LocalPubSub::new();
        let mut sub = pubsub.subscribe(Topic::JobAvailable);
        pubsub.publish(Topic::JobAvailable, &"x".repeat(limits::PUBSUB_PAYLOAD_BYTES_MAX + 1));
        pubsub.publish(Topic::JobAvailable, "short");
        let expected = Notice::Message { topic: Topic::JobAvailable, payload: "short".into() };
        assert_eq!(sub.recv().await, Some(expected));

        NoPubSub.publish(Topic::JobAvailable, "ignored");
        assert_eq!(NoPubSub.subscribe(Topic::JobAvailable).recv().await, None);
    }

    #[test]
    fn topics_round_trip_their_names() {
        for topic in Topic::ALL {
            assert_eq!(Topic::from_name(topic.name()), Some(topic));
        }
        assert_eq!(Topic::from_name("nope"), None);
    }
}
