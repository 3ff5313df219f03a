//! Pubsub end to end. On a real PostgreSQL server (a fresh database per test;
//! unreachable: a failure under `CI=true`, else a loud `SKIPPED:` line):
//! `PgPubSub` carries a notice from one replica to another's subscriber, a
//! subscriber outlives its listening backend being terminated, a full publish
//! queue drops instead of blocking, and the engine announces a committed
//! build (never a refused one) to another replica.

mod daemon_support;

use std::future::Future;
use std::sync::Arc;

use daemon_support::pg::{admin_on, create_database, database_url, drop_database, server_available};
use daemon_support::*;
use engine::api::{Api, ApiError, NewWorkspace, Refusal};
use engine::events::NoEvents;
use engine::ids::{TemplateId, UserId, VersionId};
use engine::lifecycle::UsageTracker;
use engine::model::*;
use engine::pubsub::{Notice, Publisher, Subscriber, Subscription, Topic};
use engine::runtime::{SharedClock, SystemClock, TokioSpawner};
use engine::store::postgres::pubsub::{PgPubSub, PgPubSubStats};
use engine::store::postgres::{PgPoolConfig, PgStore};
use engine::store::{Store, Subsystem, Tx, TxOptions};
use engine::time::Span;

/// `future`, or a panic naming `what` after `timeout`.
async fn within<T>(what: &str, timeout: Span, future: impl Future<Output = T>) -> T {
    tokio::select! {
        biased;
        value = future => value,
        _ = pause(timeout) => panic!("timed out after {timeout} waiting for {what}"),
    }
}

/// The next notice that is a message (gaps skipped), within 10s.
async fn next_message(subscription: &mut Subscription, what: &str) -> String {
    within(what, Span::from_secs(10), async {
        loop {
            match subscription.recv().await {
                Some(Notice::Message { topic: Topic::JobAvailable, payload }) => return payload,
                Some(Notice::Gap) => continue,
                None => panic!("the subscription closed while waiting for {what}"),
            }
        }
    })
    .await
}

/// A replica's pool on `db` (its own `application_name`).
async fn replica_store(db: &str, name: &str, size: u32) -> PgStore {
    let pool = PgPoolConfig { size, acquire_timeout: Span::from_secs(30), application_name: format!("{db}_{name}") };
    PgStore::connect(&database_url(db), pool).await.unwrap_or_else(|e| panic!("connect {name}: {e}"))
}

async fn start_pubsub(store: &PgStore) -> PgPubSub {
    let clock: SharedClock = Arc::new(SystemClock);
    PgPubSub::start(store, &TokioSpawner, clock).await.expect("start pubsub")
}

/// Runs `body` on a fresh database named after `prefix`, dropping it after
/// (also when the body panics). Returns at once when the server is
/// unreachable outside CI.
async fn on_fresh_database<F, Fut>(prefix: &str, what: &str, body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    if !server_available(what).await {
        return;
    }
    let db = create_database(prefix).await;
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(body(db.clone()))).await;
    drop_database(&db).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// A user and a template (with its active version): what the API needs to
/// create a workspace.
async fn seed<S: Store>(store: &S, ids_seed: u64) -> (UserId, TemplateId) {
    let ids = seed_ids(ids_seed);
    let at = now();
    let alice = user(&ids, "alice", UserStatus::Active, false, at);
    let version_id: VersionId = ids.next();
    let template = template(&ids, "dev", version_id, at);
    let version = TemplateVersion { id: version_id, ..version(&ids, template.id, "v1", at) };
    let mut tx = store.begin(TxOptions::new(Subsystem::Admin)).await.expect("begin");
    tx.insert_user(&alice).await.expect("user");
    tx.insert_template(&template).await.expect("template");
    tx.insert_version(&version).await.expect("version");
    tx.commit().await.expect("commit the seed");
    (alice.id, template.id)
}

// ---- PgPubSub on a real server --------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_notice_published_by_one_replica_reaches_another_replicas_subscriber() {
    on_fresh_database("pubsub_cross_", "the cross-replica pubsub test", |db| async move {
        let (store_a, store_b) = (replica_store(&db, "a", 2).await, replica_store(&db, "b", 2).await);
        let (a, b) = (start_pubsub(&store_a).await, start_pubsub(&store_b).await);
        let mut on_b = b.subscribe(Topic::JobAvailable);
        let mut on_a = a.subscribe(Topic::JobAvailable);

        a.publish(Topic::JobAvailable, "job-1");
        assert_eq!(next_message(&mut on_b, "A's notice on B").await, "job-1");
        // The publisher's own listening session hears it too.
        assert_eq!(next_message(&mut on_a, "A's notice on A").await, "job-1");
        b.publish(Topic::JobAvailable, "job-2");
        assert_eq!(next_message(&mut on_a, "B's notice on A").await, "job-2");
        let counted = &a;
        poll_until("A's counters", Span::from_secs(10), || async move {
            let stats = counted.stats();
            if stats == (PgPubSubStats { published: 1, received: 2, ..PgPubSubStats::default() }) {
                Ok(())
            } else {
                Err(format!("{stats:?}"))
            }
        })
        .await;

        // Closed: later publishes are dropped, the tasks are gone.
        a.close().await;
        a.publish(Topic::JobAvailable, "job-3");
        assert_eq!(a.stats().dropped, 1);
        b.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_subscriber_survives_its_listening_backend_being_terminated() {
    on_fresh_database("pubsub_term_", "the pubsub reconnection test", |db| async move {
        let (store_a, store_b) = (replica_store(&db, "a", 2).await, replica_store(&db, "b", 2).await);
        let (a, b) = (start_pubsub(&store_a).await, start_pubsub(&store_b).await);
        let mut on_b = b.subscribe(Topic::JobAvailable);
        a.publish(Topic::JobAvailable, "before");
        assert_eq!(next_message(&mut on_b, "the first notice").await, "before");

        let admin = admin_on(&db).await;
        let terminated = admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                &[&b.listen_application_name()],
            )
            .await
            .expect("terminate B's listening backend");
        assert_eq!(terminated.len(), 1, "one listening session named {}", b.listen_application_name());

        // B listens again and says notices may have been lost meanwhile.
        let gap = within("the gap after reconnecting", Span::from_secs(15), on_b.recv()).await;
        assert_eq!(gap, Some(Notice::Gap));
        assert_eq!(b.stats().reconnects, 1);
        a.publish(Topic::JobAvailable, "after");
        assert_eq!(next_message(&mut on_b, "a notice after the reconnection").await, "after");
        a.close().await;
        b.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_full_publish_queue_drops_instead_of_blocking() {
    on_fresh_database("pubsub_full_", "the pubsub queue test", |db| async move {
        // One connection, held by an open transaction: the publishing task
        // waits for it with the first notice in hand.
        let store = replica_store(&db, "a", 1).await;
        let pubsub = start_pubsub(&store).await;
        let mut notices = pubsub.subscribe(Topic::JobAvailable);
        let tx = store.begin(TxOptions::read_only(Subsystem::Admin)).await.expect("hold the only connection");
        pubsub.publish(Topic::JobAvailable, "0");
        let pool = &store;
        poll_until("the publishing task waiting for a connection", Span::from_secs(10), || async move {
            let stats = pool.pool_stats();
            if stats.waiting == 1 {
                Ok(())
            } else {
                Err(format!("{stats:?}"))
            }
        })
        .await;
        // The queue takes ten more; the rest are dropped, and no call blocks.
        within("publishing into a full queue", Span::from_secs(1), async {
            for n in 1..=15 {
                pubsub.publish(Topic::JobAvailable, &n.to_string());
            }
        })
        .await;
        assert_eq!(pubsub.stats().dropped, 5);

        tx.rollback().await.expect("release the connection");
        // Once the queue is sent, a last notice marks the end of what arrives.
        let sender = &pubsub;
        poll_until("the queue sent", Span::from_secs(10), || async move {
            let stats = sender.stats();
            if stats.published == 11 {
                Ok(())
            } else {
                Err(format!("{stats:?}"))
            }
        })
        .await;
        pubsub.publish(Topic::JobAvailable, "end");
        let mut received = Vec::new();
        loop {
            let payload = next_message(&mut notices, "the queued notices").await;
            if payload == "end" {
                break;
            }
            received.push(payload);
        }
        let expected: Vec<String> = (0..=10).map(|n| n.to_string()).collect();
        assert_eq!(received, expected, "the one in hand and the ten queued, in order");
        // (The listener may hear "end" before the sender reads its answer.)
        poll_until("\"end\" counted", Span::from_secs(10), || async move {
            let stats = sender.stats();
            if stats == (PgPubSubStats { published: 12, dropped: 5, received: 12, ..PgPubSubStats::default() }) {
                Ok(())
            } else {
                Err(format!("{stats:?}"))
            }
        })
        .await;
        pubsub.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_engine_announces_a_committed_build_to_another_replica_and_not_a_refused_one() {
    on_fresh_database("pubsub_api_", "the engine pubsub test", |db| async move {
        let store_a = Arc::new(replica_store(&db, "a", 3).await);
        store_a.migrate().await.expect("migrate");
        let store_b = replica_store(&db, "b", 2).await;
        let (a, b) = (start_pubsub(&store_a).await, start_pubsub(&store_b).await);
        let (alice, dev) = seed(store_a.as_ref(), 5).await;
        let usage = Arc::new(UsageTracker::new(store_a.clone(), Arc::new(NoEvents)));
        let api = Api::new(store_a.clone(), seed_ids(6), Arc::new(NoEvents), Arc::new(a.clone()), usage);
        let mut on_b = b.subscribe(Topic::JobAvailable);

        let new = NewWorkspace {
            name: "alice-dev".into(),
            owner: alice,
            template: dev,
            version: None,
            preset: None,
            parameters: Parameters::new(),
            ttl: None,
            autostart: None,
            automatic_updates: AutomaticUpdates::Never,
        };
        let workspace = api.create_workspace(alice, new, now()).await.expect("create");
        let job = api.workspace(workspace.id).await.expect("read").latest.expect("a start build").job.id;
        assert_eq!(next_message(&mut on_b, "the start build's notice").await, job.to_string());

        // Its job is unfinished: a stop is refused, rolls back, and announces nothing.
        let refused = api.build(workspace.id, alice, Transition::Stop, now()).await;
        assert!(matches!(refused, Err(ApiError::Refused(Refusal::JobUnfinished { .. }))), "{refused:?}");
        a.publish(Topic::JobAvailable, "sentinel");
        assert_eq!(next_message(&mut on_b, "the sentinel").await, "sentinel");
        a.close().await;
        b.close().await;
    })
    .await;
}
