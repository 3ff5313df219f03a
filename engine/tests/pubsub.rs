//! Pubsub end to end. On a real PostgreSQL server (a fresh database per test;
//! unreachable: a failure under `CI=true`, else a loud `SKIPPED:` line):
//! `PgPubSub` carries a notice from one replica to another's subscriber, a
//! subscriber outlives its listening backend being terminated, a full publish
//! queue drops instead of blocking, and the engine announces a committed
//! build (never a refused one) to another replica. Through `engined`: the
//! long-polling acquire wakes for a new job on a SQLite single node
//! (`LocalPubSub`) and across two PostgreSQL replicas (`NOTIFY`), refuses a
//! bad `wait`, and answers at once when the daemon shuts down.

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
use engine::store::sqlite::{PoolConfig, SqliteServer};
use engine::store::{Store, Subsystem, Tx, TxOptions};
use engine::time::Span;
use reqwest::Method;
use serde_json::json;

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

// ---- the daemon's long-polling acquire ----------------------------------------------------

const PROVISIONER: &str = "70000000-0000-4000-8000-000000000001";
const OTHER_PROVISIONER: &str = "70000000-0000-4000-8000-000000000002";

/// Creates a workspace through `daemon`; returns its id.
async fn create_workspace(client: &reqwest::Client, daemon: &Daemon, alice: UserId, dev: TemplateId) -> String {
    let body = json!({ "actor": alice, "owner": alice, "template": dev, "name": "alice-dev" });
    let (status, body) = call(client, Method::POST, &daemon.url("/api/v1/workspaces"), Some(body)).await.unwrap();
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().expect("an id").to_owned()
}

/// `POST acquire?wait=…` on `daemon` in a task of its own; returns
/// `(status, body, seconds it took)`.
fn long_poll(
    daemon: &Daemon,
    provisioner: &str,
    wait: &str,
) -> tokio::sync::oneshot::Receiver<(u16, serde_json::Value, f64)> {
    let url = daemon.url(&format!("/api/v1/provisioners/{provisioner}/acquire?wait={wait}"));
    let (answer, answered) = tokio::sync::oneshot::channel();
    let _task = engine::runtime::Spawner::spawn(
        &TokioSpawner,
        "test-long-poll",
        Box::pin(async move {
            let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(60)).build().unwrap();
            let started = now();
            let (status, body) = call(&client, Method::POST, &url, Some(json!({}))).await.expect("long poll");
            let _ = answer.send((status, body, now().since(started).as_millis() as f64 / 1000.0));
        }),
    );
    answered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_daemon_long_poll_wakes_for_a_new_job_and_answers_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.db");
    let clock: SharedClock = Arc::new(SystemClock);
    let (alice, dev) = {
        let server = SqliteServer::open_file(&path, clock).expect("open the file");
        let store = server.client(PoolConfig { size: 5, acquire_timeout: Span::from_secs(5), label: "seed".into() });
        seed(&store, 5).await
    };
    let port = free_port();
    let env = [
        ("ENGINE_DATABASE_URL", format!("sqlite://{}", path.display())),
        ("ENGINE_LISTEN", format!("127.0.0.1:{port}")),
        ("ENGINE_SHUTDOWN_TIMEOUT", "5s".to_owned()),
    ];
    let mut daemon = Daemon::spawn("engined", dir.path(), &["serve"], &env, port);
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(async {
        let client = client();
        daemon.wait_healthy(&client, Span::from_secs(30)).await;
        let acquire = |query: &str| daemon.url(&format!("/api/v1/provisioners/{PROVISIONER}/acquire{query}"));

        // Bounded and checked.
        let (status, body) = call(&client, Method::POST, &acquire("?wait=31s"), None).await.unwrap();
        assert_eq!(status, 400, "{body}");
        assert!(body["error"].as_str().unwrap_or_default().contains("maximum 30s"), "{body}");
        let (status, body) = call(&client, Method::POST, &acquire("?wiat=1s"), None).await.unwrap();
        assert_eq!(status, 400, "{body}");
        // No wait, no job: answered at once.
        let (status, body) = call(&client, Method::POST, &acquire(""), None).await.unwrap();
        assert_eq!((status, body["job"].is_null()), (200, true), "{body}");

        // Waiting (20s) when the user creates a workspace: the notice of its
        // start build wakes the poll long before its timeout.
        let answered = long_poll(&daemon, PROVISIONER, "20s");
        pause(Span::from_secs(1)).await;
        let workspace = create_workspace(&client, &daemon, alice, dev).await;
        let (status, body, seconds) = within("the long poll", Span::from_secs(30), answered).await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["job"]["workspace_id"].as_str(), Some(workspace.as_str()), "{body}");
        assert_eq!(body["job"]["transition"].as_str(), Some("start"), "{body}");
        assert!(seconds < 10.0, "woken by the notice, not the 20s timeout: {seconds}s");

        // A poll waiting when the daemon is told to stop answers `null` at
        // once, and the daemon exits 0 well within its shutdown timeout.
        let answered = long_poll(&daemon, OTHER_PROVISIONER, "30s");
        pause(Span::from_millis(500)).await;
        daemon.signal("TERM");
        let (status, body, seconds) = within("the long poll at shutdown", Span::from_secs(10), answered).await.unwrap();
        assert_eq!((status, body["job"].is_null()), (200, true), "{body}");
        assert!(seconds < 5.0, "answered at shutdown, not at its 30s: {seconds}s");
        let status = daemon.wait_exit(Span::from_secs(8)).await.expect("exits within its shutdown timeout");
        assert!(status.success(), "exit {status}:\n{}", daemon.log_tail(20));
    }))
    .await;
    daemon.kill_quietly();
    if let Err(panic) = outcome {
        eprintln!("--- engined log ---\n{}", daemon.log_tail(40));
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_daemons_long_poll_on_one_replica_wakes_for_a_build_on_another() {
    on_fresh_database("pubsub_daemons_", "the two-replica long-poll test", |db| async move {
        let store = replica_store(&db, "seed", 2).await;
        store.migrate().await.expect("migrate");
        let (alice, dev) = seed(&store, 5).await;
        store.close();
        let dir = tempfile::tempdir().unwrap();
        let mut daemons: Vec<Daemon> = ["a", "b"]
            .iter()
            .map(|name| {
                let port = free_port();
                let env = [
                    ("ENGINE_DATABASE_URL", database_url(&db)),
                    ("ENGINE_LISTEN", format!("127.0.0.1:{port}")),
                    ("ENGINE_APPLICATION_NAME", format!("{db}_{name}")),
                ];
                Daemon::spawn(&format!("replica-{name}"), dir.path(), &["serve"], &env, port)
            })
            .collect();
        let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(async {
            let client = client();
            for daemon in &mut daemons {
                daemon.wait_healthy(&client, Span::from_secs(30)).await;
            }
            // A provisioner waits on A; the user creates the workspace on B.
            let answered = long_poll(&daemons[0], PROVISIONER, "20s");
            pause(Span::from_secs(1)).await;
            let workspace = create_workspace(&client, &daemons[1], alice, dev).await;
            let (status, body, seconds) = within("the long poll on A", Span::from_secs(30), answered).await.unwrap();
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["job"]["workspace_id"].as_str(), Some(workspace.as_str()), "{body}");
            assert!(seconds < 10.0, "woken by B's NOTIFY, not the 20s timeout: {seconds}s");
            for daemon in &mut daemons {
                daemon.signal("TERM");
                let status = daemon.wait_exit(Span::from_secs(12)).await.expect("exits on SIGTERM");
                assert!(status.success(), "exit {status}:\n{}", daemon.log_tail(20));
            }
        }))
        .await;
        for daemon in &mut daemons {
            daemon.kill_quietly();
        }
        if let Err(panic) = outcome {
            for daemon in &daemons {
                eprintln!("--- {} log ---\n{}", daemon.name, daemon.log_tail(40));
            }
            std::panic::resume_unwind(panic);
        }
    })
    .await;
}
