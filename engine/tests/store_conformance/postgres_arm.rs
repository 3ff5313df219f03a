//! The PostgreSQL arm: a fresh database per case on a real server
//! (`ENGINE_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`),
//! migrated, with one pool per client under its own `application_name`; and
//! the cases only a real server can state (pool accounting, session
//! termination, migrations racing, undecodable rows, query plans at scale).
//!
//! An unreachable server fails every case when `CI=true`; elsewhere each
//! case returns at once after one loud `SKIPPED:` line on stderr. Databases
//! are named `conformance_<unix seconds>_<pid>_<n>`, dropped when their
//! harness is (even after a panic), and ones left by a killed run are dropped
//! by the next run once they are an hour old.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use engine::hash::LockKey;
use engine::model::Transition;
use engine::runtime::{SharedClock, SystemClock};
use engine::store::postgres::{sql, PgPoolConfig, PgStore, SqlTimestamp};
use engine::store::{SessionId, Store, StoreError, Subsystem, Tx, TxOptions};
use engine::time::{Span, Timestamp};
use tokio_postgres::NoTls;

use crate::fixtures::{self, at, seed, t0, with_ttl};
use crate::harness::{bounded, Harness, HarnessOptions};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const DB_PREFIX: &str = "conformance_";
/// Databases a killed run left behind are dropped once this old.
const STALE_AFTER_SECS: u64 = 3_600;
/// The tables `vacuum` and the plan tests name.
const TABLES: &[&str] = &[
    "users",
    "templates",
    "template_versions",
    "presets",
    "workspaces",
    "workspace_builds",
    "provisioner_jobs",
    "provisioner_daemons",
    "notifications",
    "chats",
    "settings",
];

fn server_url() -> String {
    std::env::var("ENGINE_TEST_PG_URL").ok().filter(|u| !u.trim().is_empty()).unwrap_or_else(|| DEFAULT_URL.to_owned())
}

fn server_config() -> tokio_postgres::Config {
    let url = server_url();
    let mut config: tokio_postgres::Config =
        url.parse().unwrap_or_else(|e| panic!("ENGINE_TEST_PG_URL `{url}` is not a postgresql url: {e}"));
    config.connect_timeout(std::time::Duration::from_secs(5));
    config
}

/// A plain client (for what the store does not offer: creating databases,
/// terminating sessions, vacuum, seeding, EXPLAIN), its connection driven by
/// a task of the current runtime.
async fn admin_client(config: &tokio_postgres::Config) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    #[allow(clippy::disallowed_methods)] // a test's own connection task
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

async fn admin_on(db: &str) -> tokio_postgres::Client {
    let mut config = server_config();
    config.dbname(db);
    admin_client(&config).await.unwrap_or_else(|e| panic!("connect to {db}: {e}"))
}

#[allow(clippy::disallowed_methods)] // names and ages test databases, not engine time
fn unix_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Whether the server answers. Unreachable: a failure under `CI=true`, else
/// one loud line (once per process) and `false`, so the case returns.
pub async fn server_available() -> bool {
    static REACHABLE: OnceLock<bool> = OnceLock::new();
    if let Some(reachable) = REACHABLE.get() {
        return *reachable;
    }
    let reachable = match admin_client(&server_config()).await {
        Ok(_) => true,
        Err(error) => {
            let url = server_url();
            let error = match std::error::Error::source(&error) {
                Some(cause) => format!("{error}: {cause}"),
                None => error.to_string(),
            };
            if std::env::var("CI").is_ok_and(|ci| ci == "true") {
                panic!("PostgreSQL unreachable at {url} and CI=true: {error}");
            }
            if REACHABLE.get().is_none() {
                // Straight to stderr: the test harness captures `eprintln!` of passing tests.
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: PostgreSQL unreachable at {url} ({error}); the postgres conformance cases did not run"
                );
            }
            false
        }
    };
    *REACHABLE.get_or_init(|| reachable)
}

/// Drops `conformance_*` databases older than [`STALE_AFTER_SECS`] (left by
/// killed runs), once per process.
async fn drop_stale_databases(admin: &tokio_postgres::Client) {
    static DONE: OnceLock<()> = OnceLock::new();
    if DONE.set(()).is_err() {
        return;
    }
    let now = unix_secs();
    let rows = admin
        .query("SELECT datname FROM pg_database WHERE datname LIKE 'conformance\\_%'", &[])
        .await
        .expect("list test databases");
    for row in rows {
        let name: String = row.get(0);
        let created: Option<u64> = name.strip_prefix(DB_PREFIX).and_then(|rest| rest.split('_').next()?.parse().ok());
        if created.is_some_and(|secs| now.saturating_sub(secs) > STALE_AFTER_SECS) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await;
        }
    }
}

pub struct PgHarness {
    db: String,
    clock: SharedClock,
    stores: Vec<PgStore>,
}

fn application_name(db: &str, index: usize) -> String {
    format!("{db}_client{index}")
}

impl PgHarness {
    /// A fresh database with `options.clients` pools on it, migrated or not.
    pub async fn create(options: HarnessOptions, migrate: bool) -> PgHarness {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let db =
            format!("{DB_PREFIX}{}_{}_{}", unix_secs(), std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let admin = admin_client(&server_config()).await.expect("connect to the postgresql server");
        drop_stale_databases(&admin).await;
        admin.batch_execute(&format!("CREATE DATABASE \"{db}\"")).await.expect("create the test database");
        // From here on, dropping the harness drops the database.
        let mut harness = PgHarness { db: db.clone(), clock: Arc::new(SystemClock), stores: Vec::new() };
        let mut config = server_config();
        config.dbname(&db);
        for index in 0..options.clients.max(2) {
            let pool = PgPoolConfig {
                size: options.pool_size,
                acquire_timeout: options.acquire_timeout,
                application_name: application_name(&db, index),
            };
            harness.stores.push(PgStore::connect_config(config.clone(), pool).await.expect("connect a client"));
        }
        if migrate {
            harness.stores[0].migrate().await.expect("migrate the test database");
        }
        harness
    }

    pub fn db(&self) -> &str {
        &self.db
    }
}

#[async_trait]
impl Harness for PgHarness {
    type S = PgStore;

    async fn start(options: HarnessOptions) -> Self {
        PgHarness::create(options, true).await
    }

    fn store(&self, index: usize) -> &PgStore {
        &self.stores[index]
    }

    fn clock(&self) -> SharedClock {
        self.clock.clone()
    }

    fn connections_in_use(&self, index: usize) -> u32 {
        self.stores[index].pool_stats().in_use
    }

    async fn disconnect(&self, index: usize) {
        // The server ends the client's sessions (rolling back, freeing their
        // locks), and the client's pool refuses every later call.
        self.stores[index].close();
        let admin = admin_on("postgres").await;
        admin
            .query(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
                 WHERE datname = $1 AND application_name = $2",
                &[&self.db, &application_name(&self.db, index)],
            )
            .await
            .expect("terminate the client's sessions");
    }

    async fn vacuum(&self) {
        let admin = admin_on(&self.db).await;
        admin.batch_execute(&format!("VACUUM {}", TABLES.join(", "))).await.expect("vacuum");
    }
}

impl Drop for PgHarness {
    fn drop(&mut self) {
        for store in &self.stores {
            store.close();
        }
        let db = std::mem::take(&mut self.db);
        // Off the test's runtime (a Drop cannot await): a thread with a runtime
        // of its own terminates what is left on the database and drops it.
        #[allow(clippy::disallowed_methods)] // test cleanup, not engine code
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let Ok(admin) = admin_client(&server_config()).await else { return };
                let _ = admin
                    .query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                        &[&db],
                    )
                    .await;
                if let Err(error) = admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")).await {
                    let _ = writeln!(std::io::stderr(), "could not drop test database {db}: {error}");
                }
            });
        });
        let _ = cleanup.join();
    }
}

// ---- cases only a real server states ------------------------------------------------

/// Runs a PostgreSQL-only case when the server is there (see [`server_available`]).
macro_rules! pg_case {
    ($(#[$meta:meta])* async fn $name:ident() $body:block) => {
        $(#[$meta])*
        #[tokio::test]
        async fn $name() {
            if !server_available().await {
                return;
            }
            bounded(stringify!($name), async $body).await;
        }
    };
}

async fn harness() -> PgHarness {
    PgHarness::create(HarnessOptions::default(), true).await
}

pg_case! {
    async fn pool_accounting_counts_holders_by_subsystem() {
        let h = harness().await;
        let store = h.store(0);
        let a = store.begin(TxOptions::new(Subsystem::Reconciler)).await.unwrap();
        let b = store.begin(TxOptions::new(Subsystem::Reconciler)).await.unwrap();
        let c = store.begin(TxOptions::new(Subsystem::ChatLease)).await.unwrap();
        let stats = store.pool_stats();
        assert_eq!((stats.size, stats.in_use, stats.waiting), (5, 3, 0));
        assert_eq!(stats.in_use_by.get(&Subsystem::Reconciler), Some(&2));
        assert_eq!(stats.in_use_by.get(&Subsystem::ChatLease), Some(&1));
        assert_eq!(h.store(1).pool_stats().in_use, 0, "pools are per client");
        a.commit().await.unwrap();
        b.rollback().await.unwrap();
        drop(c);
        let stats = store.pool_stats();
        assert_eq!(stats.in_use, 0);
        assert!(stats.in_use_by.is_empty(), "{stats:?}");
    }
}

pg_case! {
    async fn pool_counts_waiters_until_they_get_a_connection() {
        let h = PgHarness::create(
            HarnessOptions { clients: 2, pool_size: 1, acquire_timeout: Span::from_secs(30) },
            true,
        )
        .await;
        let store = h.store(0).clone();
        let held = store.begin(TxOptions::new(Subsystem::Lifecycle)).await.unwrap();
        let (second, ()) = tokio::join!(store.begin(TxOptions::new(Subsystem::Usage)), async {
            for _ in 0..1_000 {
                if store.pool_stats().waiting == 1 {
                    break;
                }
                tokio::task::yield_now().await;
            }
            assert_eq!(store.pool_stats().waiting, 1);
            held.rollback().await.unwrap();
        });
        let second = second.unwrap();
        let stats = store.pool_stats();
        assert_eq!((stats.in_use, stats.waiting), (1, 0));
        assert_eq!(stats.in_use_by.get(&Subsystem::Usage), Some(&1));
        second.rollback().await.unwrap();
    }
}

pg_case! {
    async fn disconnected_client_cannot_begin_and_its_handles_fail() {
        let h = harness().await;
        let w = seed(h.store(0), 1).await;
        let mut a = h.store(0).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
        a.update_workspace(&with_ttl(w.ws(0), 1)).await.unwrap();
        h.disconnect(0).await;
        assert!(matches!(a.workspace(w.ws_id(0)).await, Err(StoreError::ConnectionLost { .. })));
        assert!(matches!(a.commit().await, Err(StoreError::ConnectionLost { .. })));
        assert!(matches!(
            h.store(0).begin(TxOptions::new(Subsystem::Api)).await,
            Err(StoreError::ConnectionLost { .. })
        ));
        assert_eq!(h.connections_in_use(0), 0, "the connection was let go");
        let mut b = h.store(1).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
        assert_eq!(b.workspace(w.ws_id(0)).await.unwrap().unwrap().ttl, None, "the commit did not land");
        b.rollback().await.unwrap();
    }
}

pg_case! {
    async fn constraint_names_are_those_of_the_sqlite_store() {
        let h = harness().await;
        let mut w = seed(h.store(0), 1).await;
        let unique = |name: &str| Err::<(), _>(StoreError::UniqueViolation { constraint: name.to_owned() });
        let (dup, dup_job) = fixtures::build(&mut w.ids, &w.workspaces[0], 1, Transition::Stop, w.version.id);
        let mut a = h.store(0).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
        assert_eq!(a.insert_build(&dup, &dup_job).await, unique("workspace_builds_workspace_id_number_key"));
        a.rollback().await.unwrap();

        let twin_template = fixtures::template(&mut w.ids, "base", w.version.id);
        let twin_workspace = fixtures::workspace(&mut w.ids, w.user.id, &w.template, "WS-0");
        let cases = vec![
            ("users_name_key", Op::User(fixtures::user(&mut w.ids, "alice"))),
            ("users_pkey", Op::User(engine::model::User { name: "bob".into(), ..w.user.clone() })),
            ("templates_name_key", Op::Template(twin_template)),
            ("workspaces_owner_id_lower_name_key", Op::Workspace(twin_workspace)),
        ];
        for (constraint, op) in cases {
            let mut tx = h.store(0).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
            let result = match &op {
                Op::User(user) => tx.insert_user(user).await,
                Op::Template(template) => tx.insert_template(template).await,
                Op::Workspace(workspace) => tx.insert_workspace(workspace).await,
            };
            assert_eq!(result, unique(constraint));
            tx.rollback().await.unwrap();
        }

        let mut b = h.store(0).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
        let id = fixtures::notification_id(&mut w.ids);
        assert!(b.enqueue_notification(id, &fixtures::notification(w.user.id, "x"), t0()).await.unwrap());
        let result = b.enqueue_notification(id, &fixtures::notification(w.user.id, "y"), t0()).await;
        assert_eq!(result.map(|_| ()), unique("notifications_pkey"), "only the dedupe key is the conflict target");
        b.rollback().await.unwrap();
    }
}

enum Op {
    User(engine::model::User),
    Template(engine::model::Template),
    Workspace(engine::model::Workspace),
}

pg_case! {
    async fn read_only_transaction_refuses_writes() {
        let h = harness().await;
        let w = seed(h.store(0), 1).await;
        let mut a = h.store(0).begin(TxOptions::read_only(Subsystem::Api)).await.unwrap();
        assert!(a.workspace(w.ws_id(0)).await.unwrap().is_some());
        assert!(a.lifecycle_candidates(at(Span::from_days(1)), None, 10).await.is_ok());
        assert!(matches!(a.update_workspace(w.ws(0)).await, Err(StoreError::Unsupported { .. })));
        assert_eq!(a.workspace(w.ws_id(0)).await, Err(StoreError::TransactionAborted));
        a.rollback().await.unwrap();
        let mut b = h.store(0).begin(TxOptions::read_only(Subsystem::Api)).await.unwrap();
        assert!(matches!(b.touch_last_used(&[], t0()).await, Err(StoreError::Unsupported { .. })), "even for no ids");
        b.rollback().await.unwrap();
    }
}

pg_case! {
    async fn db_now_is_the_transaction_start_fixed_throughout() {
        let h = harness().await;
        let clock = h.clock();
        let before: Timestamp = clock.now();
        let mut a = h.store(0).begin(TxOptions::new(Subsystem::Chat)).await.unwrap();
        let first = a.db_now().await.unwrap();
        let after = clock.now();
        clock.sleep_until(clock.now() + Span::from_millis(5)).await;
        assert_eq!(a.db_now().await.unwrap(), first);
        // PostgreSQL's `now()` is the time of BEGIN, which `begin` sends.
        let skew = Span::from_millis(50);
        assert!(first >= before - skew && first <= after + skew, "{before} <= {first} <= {after}");
        let b = h.store(0).begin(TxOptions::new(Subsystem::Chat)).await.unwrap();
        assert_ne!(a.session_id(), b.session_id(), "sessions are backend pids, one per connection");
        b.rollback().await.unwrap();
        a.rollback().await.unwrap();
    }
}

pg_case! {
    async fn commit_of_an_aborted_transaction_reports_it_and_commits_nothing() {
        let h = harness().await;
        let mut w = seed(h.store(0), 1).await;
        let ghost = fixtures::user(&mut w.ids, "ghost");
        let mut a = h.store(0).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
        a.insert_user(&ghost).await.unwrap();
        assert!(matches!(a.insert_user(&ghost).await, Err(StoreError::UniqueViolation { .. })));
        assert_eq!(a.commit().await, Err(StoreError::TransactionAborted));
        let mut b = h.store(0).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
        assert_eq!(b.user(ghost.id).await.unwrap(), None);
        b.rollback().await.unwrap();
        assert_eq!(h.connections_in_use(0), 0);
    }
}

pg_case! {
    async fn dropped_transaction_closes_its_connection_instead_of_pooling_it() {
        let h = harness().await;
        let w = seed(h.store(0), 1).await;
        let mut a = h.store(0).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
        a.update_workspace(&with_ttl(w.ws(0), 1)).await.unwrap();
        let dropped = a.session_id();
        drop(a);
        let admin = admin_on(h.db()).await;
        let mut gone = false;
        for _ in 0..500 {
            let rows = admin
                .query("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&i32::try_from(dropped.0).unwrap()])
                .await
                .unwrap();
            if rows.is_empty() {
                gone = true;
                break;
            }
            let clock = h.clock();
            clock.sleep_until(clock.now() + Span::from_millis(10)).await;
        }
        assert!(gone, "the dropped transaction's backend ended");
        for _ in 0..6 {
            let tx = h.store(0).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
            assert_ne!(tx.session_id(), dropped, "its connection never came back to the pool");
            tx.rollback().await.unwrap();
        }
    }
}

pg_case! {
    async fn cancelled_statement_aborts_the_transaction_and_rollback_frees_its_locks() {
        let h = harness().await;
        let w = seed(h.store(0), 1).await;
        let mut holder = h.store(1).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
        holder.workspace_for_update(w.ws_id(0)).await.unwrap();
        let mut a = h.store(0).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
        assert!(a.try_advisory_xact_lock(LockKey(42)).await.unwrap());
        let session = a.session_id();
        {
            let changed = with_ttl(w.ws(0), 2);
            let update = a.update_workspace(&changed);
            tokio::pin!(update);
            // Poll the update until the server shows it waiting, then drop it.
            let waited = tokio::select! {
                biased;
                _ = &mut update => false,
                () = crate::harness::wait_until_blocked(&h, session) => true,
            };
            assert!(waited, "the update waited for the row lock");
        }
        assert_eq!(a.workspace(w.ws_id(0)).await, Err(StoreError::TransactionAborted), "cancelled: aborted");
        a.rollback().await.unwrap();
        let mut b = h.store(1).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
        let mut freed = false;
        for _ in 0..500 {
            if b.try_advisory_xact_lock(LockKey(42)).await.unwrap() {
                freed = true;
                break;
            }
            let clock = h.clock();
            clock.sleep_until(clock.now() + Span::from_millis(10)).await;
        }
        assert!(freed, "the cancelled transaction's locks went");
        b.rollback().await.unwrap();
        holder.commit().await.unwrap();
        let mut c = h.store(0).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
        assert_eq!(c.workspace(w.ws_id(0)).await.unwrap().unwrap().ttl, None, "the cancelled update did not land");
        c.rollback().await.unwrap();
    }
}

pg_case! {
    async fn statement_cancelled_by_the_server_is_cancelled_and_aborts() {
        let h = harness().await;
        let w = seed(h.store(0), 1).await;
        let mut holder = h.store(1).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
        holder.workspace_for_update(w.ws_id(0)).await.unwrap();
        let mut a = h.store(0).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
        let session = a.session_id();
        let changed = with_ttl(w.ws(0), 3);
        let (result, ()) = tokio::join!(a.update_workspace(&changed), async {
            crate::harness::wait_until_blocked(&h, session).await;
            let admin = admin_on("postgres").await;
            admin.query("SELECT pg_cancel_backend($1)", &[&i32::try_from(session.0).unwrap()]).await.unwrap();
        });
        assert_eq!(result, Err(StoreError::Cancelled), "57014");
        assert_eq!(a.workspace(w.ws_id(0)).await, Err(StoreError::TransactionAborted));
        a.rollback().await.unwrap();
        holder.rollback().await.unwrap();
        assert_eq!(h.connections_in_use(0), 0);
    }
}

pg_case! {
    async fn migrations_run_once_even_when_processes_race() {
        let h = PgHarness::create(HarnessOptions { clients: 3, ..HarnessOptions::default() }, false).await;
        let (a, b, c) = tokio::join!(h.store(0).migrate(), h.store(1).migrate(), h.store(2).migrate());
        let mut applied: Vec<Vec<i32>> = vec![a.unwrap(), b.unwrap(), c.unwrap()];
        applied.sort();
        assert_eq!(applied, vec![vec![], vec![], vec![1, 2]], "one applied, the others found it done");
        assert_eq!(h.store(0).migrate().await.unwrap(), Vec::<i32>::new());
        let admin = admin_on(h.db()).await;
        let count: i64 = admin.query_one("SELECT count(*) FROM schema_migrations", &[]).await.unwrap().get(0);
        assert_eq!(count, 2);
        // An edited migration is refused, not skipped.
        admin.batch_execute("UPDATE schema_migrations SET checksum = checksum + 1").await.unwrap();
        assert!(matches!(h.store(0).migrate().await, Err(StoreError::Backend { .. })));
        let _ = seed(h.store(1), 1).await;
    }
}

pg_case! {
    async fn undecodable_rows_are_invalid_data_and_abort_nothing() {
        let h = harness().await;
        let w = seed(h.store(0), 2).await;
        let admin = admin_on(h.db()).await;
        admin
            .execute("UPDATE workspaces SET last_used_at = 'infinity' WHERE id = $1", &[&w.ws_id(0).0])
            .await
            .unwrap();
        admin
            .execute("UPDATE template_versions SET parameters = '{\"not\": \"a list\"}' WHERE id = $1", &[&w.version.id.0])
            .await
            .unwrap();
        admin.batch_execute("ALTER TABLE users DROP CONSTRAINT users_status_check").await.unwrap();
        admin.execute("UPDATE users SET status = 'banished' WHERE id = $1", &[&w.user.id.0]).await.unwrap();

        let mut a = h.store(0).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
        fn invalid<T>(r: &Result<T, StoreError>, column: &str) -> bool {
            matches!(r, Err(StoreError::InvalidData { what, .. }) if what == column)
        }
        let ws = a.workspace(w.ws_id(0)).await;
        assert!(invalid(&ws, "workspaces.last_used_at"), "{ws:?}");
        let version = a.version(w.version.id).await;
        assert!(invalid(&version, "template_versions.parameters"), "{version:?}");
        let user = a.user(w.user.id).await;
        assert!(invalid(&user, "users.status"), "{user:?}");
        assert!(a.workspace(w.ws_id(1)).await.unwrap().is_some(), "the transaction goes on");
        a.commit().await.unwrap();
    }
}

pg_case! {
    async fn sessions_waiting_lists_lock_waiters_only() {
        let h = harness().await;
        let w = seed(h.store(0), 1).await;
        let mut holder = h.store(1).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
        holder.workspace_for_update(w.ws_id(0)).await.unwrap();
        let mut idle = h.store(0).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
        idle.workspace(w.ws_id(0)).await.unwrap();
        let mut waiter = h.store(0).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
        let session = waiter.session_id();
        let (result, ()) = tokio::join!(waiter.workspace_for_update(w.ws_id(0)), async {
            crate::harness::wait_until_blocked(&h, session).await;
            let waiting: Vec<SessionId> = h.store(1).sessions_waiting().await.unwrap();
            assert_eq!(waiting, vec![session], "the holder and the idle reader do not wait");
            holder.rollback().await.unwrap();
        });
        assert!(result.unwrap().is_some());
        waiter.rollback().await.unwrap();
        idle.rollback().await.unwrap();
    }
}

// ---- plans at scale ---------------------------------------------------------------------

/// 50,000 workspaces (2% deleted) of 1,000 owners (1% suspended) on 20
/// templates, each with 4 builds and their jobs: a third with an autostart
/// schedule, latest builds alternating start and stop, a few due (about 500:
/// suspended owners, deadlines passed, failed latest jobs). Plus 2,000 deleted
/// templates no workspace uses (an installation's history): with only 20 the
/// table is one page, and the planner rightly reads a template by scanning it.
const SEED_LARGE: &str = r#"
INSERT INTO users (id, name, status, roles, quiet_hours, created_at)
SELECT md5('user' || u)::uuid, 'user' || u, CASE WHEN u % 100 = 0 THEN 'suspended' ELSE 'active' END, 0, '',
  timestamptz '2026-01-01 00:00Z'
FROM generate_series(1, 1000) u;
INSERT INTO templates (id, name, active_version_id, default_ttl, activity_bump, autostop_notify, failure_ttl,
  time_til_dormant, time_til_dormant_autodelete, allow_user_autostart, allow_user_autostop, autostart_days,
  autostop_requirement_days, autostop_requirement_weeks, require_active_version, deprecated, deleted, created_at)
SELECT md5('template' || t)::uuid, 'template' || t, md5('version' || t || '-1')::uuid, 28800000000, 3600000000,
  CASE WHEN t % 2 = 0 THEN 1800000000 ELSE 0 END, 86400000000, 30 * 86400000000::bigint,
  7 * 86400000000::bigint, true, true, 127, 0, 1, false, false, false, timestamptz '2026-01-01 00:00Z'
FROM generate_series(1, 20) t;
INSERT INTO templates (id, name, active_version_id, default_ttl, activity_bump, autostop_notify, failure_ttl,
  time_til_dormant, time_til_dormant_autodelete, allow_user_autostart, allow_user_autostop, autostart_days,
  autostop_requirement_days, autostop_requirement_weeks, require_active_version, deprecated, deleted, created_at)
SELECT md5('template' || t)::uuid, 'template' || t, md5('version' || t || '-1')::uuid, 0, 0, 0, 0, 0, 0, true,
  true, 127, 0, 1, false, true, true, timestamptz '2025-01-01 00:00Z'
FROM generate_series(21, 2020) t;
INSERT INTO template_versions (id, template_id, name, parameters, created_at)
SELECT md5('version' || t || '-' || v)::uuid, md5('template' || t)::uuid, 'v' || v, '[]',
  timestamptz '2026-01-01 00:00Z'
FROM generate_series(1, 20) t, generate_series(0, 1) v;
INSERT INTO workspaces (id, owner_id, template_id, name, ttl, autostart, automatic_updates, last_used_at,
  dormant_at, deleting_at, next_start_at, deleted, created_at)
SELECT md5('ws' || w)::uuid, md5('user' || (w % 1000 + 1))::uuid, md5('template' || (w % 20 + 1))::uuid,
  'ws' || w, 28800000000, CASE WHEN w % 3 = 0 THEN 'CRON_TZ=UTC 0 9 * * 1-5' END, 'never',
  timestamptz '2026-01-05 09:00Z' - (w % 1000) * interval '1 minute', NULL, NULL,
  CASE WHEN w % 3 = 0 THEN timestamptz '2026-01-06 09:00Z' END, w % 50 = 0, timestamptz '2026-01-01 00:00Z'
FROM generate_series(1, 50000) w;
INSERT INTO workspace_builds (id, workspace_id, number, transition, reason, initiator_id, version_id, job_id,
  preset_id, parameters, created_at, deadline, max_deadline, notified_autostop_deadline, agent_ready_at)
SELECT md5('build' || w || '-' || n)::uuid, md5('ws' || w)::uuid, n,
  CASE WHEN (w + n) % 2 = 0 THEN 'start' ELSE 'stop' END, 'initiator', md5('user' || (w % 1000 + 1))::uuid,
  md5('version' || (w % 20 + 1) || '-' || (n % 2))::uuid, md5('job' || w || '-' || n)::uuid, NULL, '{}',
  timestamptz '2026-01-01 00:00Z' + n * interval '1 hour',
  CASE WHEN (w + n) % 2 = 0 THEN timestamptz '2026-01-05 09:00Z' + CASE WHEN n = 4 AND w % 200 = 0
    THEN interval '-1 hour' ELSE (w % 480) * interval '1 minute' + interval '1 hour' END END,
  NULL, NULL, NULL
FROM generate_series(1, 50000) w, generate_series(1, 4) n;
INSERT INTO provisioner_jobs (id, build_id, workspace_id, template_id, version_id, status, is_prebuild,
  created_at, started_at, completed_at, canceled_at, worker_id, error)
SELECT md5('job' || w || '-' || n)::uuid, md5('build' || w || '-' || n)::uuid, md5('ws' || w)::uuid,
  md5('template' || (w % 20 + 1))::uuid, md5('version' || (w % 20 + 1) || '-' || (n % 2))::uuid,
  CASE WHEN n = 4 AND w % 97 = 0 THEN 'failed' ELSE 'succeeded' END, false,
  timestamptz '2026-01-01 00:00Z' + n * interval '1 hour', timestamptz '2026-01-01 00:00Z' + n * interval '1 hour',
  timestamptz '2026-01-01 00:00Z' + n * interval '1 hour', NULL, NULL, NULL
FROM generate_series(1, 50000) w, generate_series(1, 4) n;
ANALYZE;
"#;

/// Every `(node type, relation)` of a JSON plan, depth first.
fn plan_nodes(plan: &serde_json::Value, out: &mut Vec<(String, String)>) {
    let node = plan.get("Node Type").and_then(|v| v.as_str()).unwrap_or_default().to_owned();
    let relation = plan.get("Relation Name").and_then(|v| v.as_str()).unwrap_or_default().to_owned();
    out.push((node, relation));
    if let Some(children) = plan.get("Plans").and_then(|v| v.as_array()) {
        for child in children {
            plan_nodes(child, out);
        }
    }
}

const INDEX_NODES: &[&str] = &["Index Scan", "Index Only Scan", "Bitmap Heap Scan"];

/// `EXPLAIN (FORMAT JSON)` of a prepared statement executed with `args`
/// (SQL literals), as a custom plan and as a generic one; the nodes of each.
async fn plans(
    admin: &tokio_postgres::Client,
    name: &str,
    statement: &str,
    types: &str,
    args: &str,
) -> Vec<(String, Vec<(String, String)>)> {
    admin.batch_execute(&format!("PREPARE {name} ({types}) AS {statement}")).await.unwrap();
    let mut out = Vec::new();
    for mode in ["force_custom_plan", "force_generic_plan"] {
        admin.batch_execute(&format!("SET plan_cache_mode = {mode}")).await.unwrap();
        let row = admin.query_one(&format!("EXPLAIN (FORMAT JSON) EXECUTE {name} ({args})"), &[]).await.unwrap();
        let json: serde_json::Value = row.get(0);
        let mut nodes = Vec::new();
        plan_nodes(&json[0]["Plan"], &mut nodes);
        let _ = writeln!(std::io::stderr(), "plan of {name} ({mode}): {nodes:?}");
        out.push((mode.to_owned(), nodes));
    }
    out
}

fn scans_of<'a>(nodes: &'a [(String, String)], table: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    nodes.iter().filter(move |(_, relation)| relation == table).map(|(node, _)| node.as_str())
}

fn assert_indexed(label: &str, nodes: &[(String, String)], tables: &[&str]) {
    for table in tables {
        let scans: Vec<&str> = scans_of(nodes, table).collect();
        assert!(!scans.contains(&"Seq Scan"), "{label}: sequential scan of {table}: {nodes:?}");
        assert!(scans.iter().any(|s| INDEX_NODES.contains(s)), "{label}: no index scan of {table}: {nodes:?}");
    }
}

/// The tables the lifecycle scan must never read sequentially: they grow
/// with the fleet and its history. (`templates` and `users` are small; the
/// scan may read the templates with a dormancy or a reminder span whole.)
const LARGE_TABLES: &[&str] = &["workspaces", "workspace_builds", "provisioner_jobs"];

/// The fastest of `runs` executions of `statement` through `admin`, in
/// milliseconds, and the rows of the last.
async fn time_statement(
    clock: &SharedClock,
    admin: &tokio_postgres::Client,
    statement: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    runs: usize,
) -> (f64, Vec<tokio_postgres::Row>) {
    let prepared = admin.prepare(statement).await.unwrap();
    let mut best = f64::MAX;
    let mut rows = Vec::new();
    for _ in 0..runs {
        let started = clock.now();
        rows = admin.query(&prepared, params).await.unwrap();
        best = best.min(clock.now().since(started).as_micros() as f64 / 1000.0);
    }
    (best, rows)
}

fn cursors(rows: &[tokio_postgres::Row]) -> Vec<(uuid::Uuid, uuid::Uuid)> {
    rows.iter().map(|row| (row.get(0), row.get(1))).collect()
}

pg_case! {
    async fn eligibility_and_activity_statements_use_indexes_on_a_large_table() {
        let h = harness().await;
        let admin = admin_on(h.db()).await;
        admin.batch_execute(SEED_LARGE).await.expect("seed 50,000 workspaces");
        // As the store's connections run (`PgStore::connect_config`).
        admin.batch_execute("SET jit = off").await.unwrap();
        let tick_at = Timestamp::parse_rfc3339("2026-01-05T09:00:00Z").unwrap();
        let tick = "'2026-01-05 09:00:00+00'";
        let tick_us = tick_at.as_micros();
        let clock = h.clock();

        // The definition, one pass over every live workspace (the scan's
        // earlier shape): what the scan must return, and the time to beat.
        let (reference_ms, reference) =
            time_statement(&clock, &admin, sql::lifecycle_scan_reference(), &[&SqlTimestamp(tick_at), &tick_us], 3)
                .await;
        let reference = cursors(&reference);
        assert!(reference.len() > 500, "more than one page is due: {}", reference.len());
        // A cursor inside the result: the second page's plan.
        let (version, workspace) = reference[249];
        let cursor = format!("'{version}', '{workspace}'");

        // The scan: no sequential scan of a large table on the first page and
        // after a cursor, in custom and generic plans.
        for (name, after) in [("scan_first", false), ("scan_after", true)] {
            let (types, args) = if after {
                ("timestamptz, bigint, bigint, uuid, uuid", format!("{tick}, {tick_us}, 500, {cursor}"))
            } else {
                ("timestamptz, bigint, bigint", format!("{tick}, {tick_us}, 500"))
            };
            for (mode, nodes) in plans(&admin, name, sql::lifecycle_scan(after), types, &args).await {
                assert_indexed(&format!("{name} ({mode})"), &nodes, LARGE_TABLES);
            }
        }
        admin.batch_execute("SET plan_cache_mode = auto").await.unwrap();
        let explained = admin
            .query(&format!("EXPLAIN (ANALYZE, BUFFERS) EXECUTE scan_first ({tick}, {tick_us}, 500)"), &[])
            .await
            .unwrap();
        let text: Vec<String> = explained.iter().map(|row| row.get::<usize, String>(0)).collect();
        let _ = writeln!(std::io::stderr(), "plan of the scan's first page:\n{}", text.join("\n"));

        // The scan pages through the store to exactly the reference (timed
        // the second time, once the connection has prepared both statements).
        let mut tx = h.store(0).begin(TxOptions::read_only(Subsystem::Lifecycle)).await.unwrap();
        let mut store_ms = 0.0;
        for _ in 0..2 {
            let started = clock.now();
            let mut paged = Vec::new();
            let mut after = None;
            loop {
                let page = tx.lifecycle_candidates(tick_at, after, 500).await.unwrap();
                paged.extend(page.iter().map(|(v, w)| (v.0, w.0)));
                after = page.last().copied();
                if page.len() < 500 {
                    break;
                }
            }
            store_ms = clock.now().since(started).as_micros() as f64 / 1000.0;
            assert_eq!(paged, reference, "the paged scan is the reference");
        }
        tx.commit().await.unwrap();
        let (page_ms, page) = time_statement(
            &clock,
            &admin,
            sql::lifecycle_scan(false),
            &[&SqlTimestamp(tick_at), &tick_us, &500i64],
            3,
        )
        .await;
        assert_eq!(cursors(&page), reference[..500]);
        let _ = writeln!(
            std::io::stderr(),
            "lifecycle scan over 50,000 workspaces, {} due: one page of 500 {page_ms:.1} ms (fastest of 3); \
             every page through the store {store_ms:.1} ms; the one-pass reference {reference_ms:.1} ms",
            reference.len(),
        );

        // History: a fleet that has run a while has a passed deadline on
        // every superseded start build (this seed's are in the future). Arm
        // A's branch reads those too, one key probe each, so its cost grows
        // with the history: printed, next to the one pass, with the same
        // (unchanged) result asserted.
        admin
            .batch_execute(
                "UPDATE workspace_builds SET deadline = deadline - interval '30 days' \
                 WHERE number < 4 AND transition = 'start'; ANALYZE workspace_builds",
            )
            .await
            .unwrap();
        let scan_params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
            [&SqlTimestamp(tick_at), &tick_us, &10_000i64];
        let (aged_ms, aged) = time_statement(&clock, &admin, sql::lifecycle_scan(false), &scan_params, 3).await;
        let (aged_reference_ms, aged_reference) =
            time_statement(&clock, &admin, sql::lifecycle_scan_reference(), &scan_params[..2], 3).await;
        assert_eq!(cursors(&aged), reference, "superseded builds are never candidates");
        assert_eq!(cursors(&aged_reference), reference);
        let superseded: i64 = admin
            .query_one("SELECT count(*) FROM workspace_builds WHERE number < 4 AND transition = 'start'", &[])
            .await
            .unwrap()
            .get(0);
        let _ = writeln!(
            std::io::stderr(),
            "with {superseded} superseded start builds past their deadline: the scan {aged_ms:.1} ms, \
             the one-pass reference {aged_reference_ms:.1} ms"
        );

        // The usage flush. The backend's statements are prepared once per
        // connection, so after five runs the server may keep a generic plan:
        // index probes for any batch. A custom plan probes the index for a
        // typical batch (100); for a full batch of 1,000 (2% of this table)
        // the planner may price a sequential scan lower, which is printed, not
        // asserted (see the report of the backend's tests).
        let flush_args = |count: usize| {
            let ids: Vec<String> = (1..=count).map(|w| format!("md5('ws{}')::uuid", w * 37)).collect();
            format!("ARRAY[{}], {tick}", ids.join(", "))
        };
        for (mode, nodes) in plans(&admin, "flush_100", sql::TOUCH_LAST_USED, "uuid[], timestamptz", &flush_args(100)).await {
            assert_indexed(&format!("touch_last_used of 100 ({mode})"), &nodes, &["workspaces"]);
        }
        for (mode, nodes) in plans(&admin, "flush_1000", sql::TOUCH_LAST_USED, "uuid[], timestamptz", &flush_args(1000)).await {
            if mode == "force_generic_plan" {
                assert_indexed(&format!("touch_last_used of 1000 ({mode})"), &nodes, &["workspaces"]);
            }
        }

        // The activity bump (`Api::report_activity`): the workspace, its
        // template, its latest build and job, then the build's update, each
        // by key.
        let ws = "md5('ws4242')::uuid";
        for (mode, nodes) in plans(&admin, "ws_by_id", sql::workspace_by_id(), "uuid", ws).await {
            assert_indexed(&format!("workspace ({mode})"), &nodes, &["workspaces"]);
        }
        for (mode, nodes) in plans(&admin, "template", sql::template_by_id(), "uuid", "md5('template3')::uuid").await {
            assert_indexed(&format!("template ({mode})"), &nodes, &["templates"]);
        }
        for (mode, nodes) in plans(&admin, "latest", sql::latest_build(), "uuid", ws).await {
            assert_indexed(&format!("latest_build ({mode})"), &nodes, &["workspace_builds", "provisioner_jobs"]);
        }
        let update_types = "uuid, uuid, integer, text, text, uuid, uuid, uuid, uuid, jsonb, timestamptz, \
                            timestamptz, timestamptz, timestamptz, timestamptz";
        let update_args = format!(
            "md5('build4242-4')::uuid, {ws}, 4, 'start', 'initiator', md5('user243')::uuid, \
             md5('version3-0')::uuid, md5('job4242-4')::uuid, NULL, '{{}}', {tick}, {tick}, NULL, NULL, NULL"
        );
        for (mode, nodes) in plans(&admin, "bump", sql::update_build(), update_types, &update_args).await {
            assert_indexed(&format!("update_build ({mode})"), &nodes, &["workspace_builds"]);
        }
    }
}
