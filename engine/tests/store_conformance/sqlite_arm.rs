//! The SQLite arm: a fresh in-memory database per case with one client per
//! replica, and the cases only the SQLite backend can state (pool accounting
//! by subsystem, the statement hook, reopening a file, physical vacuum).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use engine::hash::LockKey;
use engine::runtime::{SharedClock, SystemClock};
use engine::store::sqlite::{
    HookDecision, OpClass, PoolConfig, SqliteServer, SqliteStore, StatementHook, StatementInfo,
};
use engine::store::{Store, StoreError, Subsystem, Tx, TxOptions};
use engine::time::{Span, Timestamp};

use crate::fixtures::{self, seed, with_ttl};
use crate::harness::{bounded, Harness, HarnessOptions};

pub struct SqliteHarness {
    server: Arc<SqliteServer>,
    clock: SharedClock,
    stores: Vec<SqliteStore>,
}

fn pool(options: &HarnessOptions, index: usize) -> PoolConfig {
    PoolConfig { size: options.pool_size, acquire_timeout: options.acquire_timeout, label: format!("client-{index}") }
}

#[async_trait]
impl Harness for SqliteHarness {
    type S = SqliteStore;

    async fn start(options: HarnessOptions) -> Self {
        let clock: SharedClock = Arc::new(SystemClock);
        let server = SqliteServer::open_in_memory(clock.clone()).expect("open in-memory database");
        let stores = (0..options.clients.max(2)).map(|index| server.client(pool(&options, index))).collect();
        SqliteHarness { server, clock, stores }
    }

    fn store(&self, index: usize) -> &SqliteStore {
        &self.stores[index]
    }

    fn clock(&self) -> SharedClock {
        self.clock.clone()
    }

    fn connections_in_use(&self, index: usize) -> u32 {
        self.stores[index].pool_stats().in_use
    }

    async fn disconnect(&self, index: usize) {
        self.server.disconnect_client(self.stores[index].client_id());
    }

    async fn vacuum(&self) {
        self.server.vacuum().expect("vacuum");
    }
}

async fn harness() -> SqliteHarness {
    SqliteHarness::start(HarnessOptions::default()).await
}

#[tokio::test]
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

#[tokio::test]
async fn pool_counts_waiters_until_they_get_a_connection() {
    let h =
        SqliteHarness::start(HarnessOptions { clients: 2, pool_size: 1, acquire_timeout: Span::from_secs(30) }).await;
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
    drop(second);
}

#[tokio::test]
async fn disconnected_client_cannot_begin_and_its_handles_have_no_effect() {
    let h = harness().await;
    let w = seed(h.store(0), 1).await;
    let mut a = h.store(0).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
    a.update_workspace(&with_ttl(w.ws(0), 1)).await.unwrap();
    h.disconnect(0).await;
    assert!(matches!(a.commit().await, Err(StoreError::ConnectionLost { .. })));
    assert!(matches!(h.store(0).begin(TxOptions::new(Subsystem::Api)).await, Err(StoreError::ConnectionLost { .. })));
    assert_eq!(h.connections_in_use(0), 0, "the permit came back when the handle dropped");
    let mut b = h.store(1).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
    assert_eq!(b.workspace(w.ws_id(0)).await.unwrap().unwrap().ttl, None, "the commit did not land");
    b.rollback().await.unwrap();
}

/// Records what the hook saw and answers with a scripted decision.
struct Script {
    seen: Mutex<Vec<(String, OpClass, u32)>>,
    decide: Box<dyn Fn(&StatementInfo) -> HookDecision + Send + Sync>,
}

impl StatementHook for Script {
    fn on_statement(&self, info: &StatementInfo) -> HookDecision {
        self.seen.lock().unwrap().push((info.op.to_owned(), info.class, info.index_in_tx));
        (self.decide)(info)
    }
}

fn script(decide: impl Fn(&StatementInfo) -> HookDecision + Send + Sync + 'static) -> Arc<Script> {
    Arc::new(Script { seen: Mutex::new(Vec::new()), decide: Box::new(decide) })
}

#[tokio::test]
async fn hook_sees_every_statement_with_its_class_and_index() {
    let h = harness().await;
    let w = seed(h.store(0), 1).await;
    let hook = script(|_| HookDecision::Proceed { latency: Span::ZERO });
    h.server.set_hook(Some(hook.clone()));
    let mut a = h.store(0).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
    assert!(a.try_advisory_xact_lock(LockKey(1)).await.unwrap());
    a.workspace(w.ws_id(0)).await.unwrap();
    a.update_workspace(&with_ttl(w.ws(0), 1)).await.unwrap();
    a.commit().await.unwrap();
    let b = h.store(0).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
    b.rollback().await.unwrap();
    let seen = hook.seen.lock().unwrap().clone();
    let expected = [
        ("try_advisory_xact_lock", OpClass::Lock, 0),
        ("workspace", OpClass::Read, 1),
        ("update_workspace", OpClass::Write, 2),
        ("commit", OpClass::Commit, 3),
        ("rollback", OpClass::Commit, 0),
    ];
    let expected: Vec<(String, OpClass, u32)> = expected.iter().map(|(o, c, i)| ((*o).to_owned(), *c, *i)).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn hook_failure_aborts_the_transaction_as_the_error_would() {
    let h = harness().await;
    let w = seed(h.store(0), 1).await;
    h.server.set_hook(Some(script(|info| {
        if info.op == "update_workspace" {
            HookDecision::Fail(StoreError::connection_lost("injected"))
        } else {
            HookDecision::Proceed { latency: Span::ZERO }
        }
    })));
    let mut a = h.store(0).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
    assert!(a.try_advisory_xact_lock(LockKey(3)).await.unwrap());
    let result = a.update_workspace(&with_ttl(w.ws(0), 1)).await;
    assert!(matches!(result, Err(StoreError::ConnectionLost { .. })), "{result:?}");
    assert_eq!(a.workspace(w.ws_id(0)).await, Err(StoreError::TransactionAborted));
    let mut b = h.store(1).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
    assert!(b.try_advisory_xact_lock(LockKey(3)).await.unwrap(), "the abort freed the lock at once");
    b.rollback().await.unwrap();
    a.rollback().await.unwrap();
}

#[tokio::test]
async fn hook_commit_unknown_applies_the_commit_but_reports_a_lost_connection() {
    let h = harness().await;
    let w = seed(h.store(0), 1).await;
    h.server.set_hook(Some(script(|info| {
        if info.op == "commit" && info.subsystem == Subsystem::Lifecycle {
            HookDecision::CommitUnknown
        } else {
            HookDecision::Proceed { latency: Span::ZERO }
        }
    })));
    let mut a = h.store(0).begin(TxOptions::new(Subsystem::Lifecycle)).await.unwrap();
    a.update_workspace(&with_ttl(w.ws(0), 9)).await.unwrap();
    assert!(matches!(a.commit().await, Err(StoreError::ConnectionLost { .. })));
    let mut b = h.store(1).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
    assert_eq!(b.workspace(w.ws_id(0)).await.unwrap().unwrap().ttl, Some(Span::from_mins(9)), "it committed");
    b.rollback().await.unwrap();
}

#[tokio::test]
async fn hook_latency_delays_the_statement_after_the_snapshot() {
    let h = harness().await;
    let w = seed(h.store(0), 1).await;
    let latency = Span::from_millis(150);
    h.server.set_hook(Some(script(move |info| {
        if info.client.0 == 1 && info.op == "workspace" {
            HookDecision::Proceed { latency }
        } else {
            HookDecision::Proceed { latency: Span::ZERO }
        }
    })));
    let clock = h.clock();
    let mut a = h.store(0).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
    let started_at = clock.now();
    // The snapshot is taken before the latency: a commit during it is not seen.
    let (seen, ()) = tokio::join!(a.workspace(w.ws_id(0)), async {
        tokio::task::yield_now().await;
        fixtures::commit_update(h.store(1), &with_ttl(w.ws(0), 4)).await;
    });
    assert!(clock.now().since(started_at) >= latency);
    assert_eq!(seen.unwrap().unwrap().ttl, None);
    a.rollback().await.unwrap();
}

#[tokio::test]
async fn hook_hang_blocks_until_the_given_instant() {
    let h = harness().await;
    let w = seed(h.store(0), 1).await;
    let clock = h.clock();
    let until = clock.now() + Span::from_millis(100);
    h.server.set_hook(Some(script(move |info| {
        if info.op == "workspace" {
            HookDecision::Hang { until }
        } else {
            HookDecision::Proceed { latency: Span::ZERO }
        }
    })));
    let mut a = h.store(0).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
    assert!(a.workspace(w.ws_id(0)).await.unwrap().is_some());
    assert!(clock.now() >= until);
    a.rollback().await.unwrap();
}

#[tokio::test]
async fn constraint_names_are_stable() {
    let h = harness().await;
    let mut w = seed(h.store(0), 1).await;
    let (dup, dup_job) =
        fixtures::build(&mut w.ids, &w.workspaces[0], 1, engine::model::Transition::Stop, w.version.id);
    let mut a = h.store(0).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
    assert_eq!(
        a.insert_build(&dup, &dup_job).await,
        Err(StoreError::UniqueViolation { constraint: "workspace_builds_workspace_id_number_key".into() })
    );
    a.rollback().await.unwrap();
    let mut b = h.store(0).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
    let twin = fixtures::user(&mut w.ids, "alice");
    assert_eq!(b.insert_user(&twin).await, Err(StoreError::UniqueViolation { constraint: "users_name_key".into() }));
    b.rollback().await.unwrap();
}

#[tokio::test]
async fn read_only_transaction_refuses_writes() {
    let h = harness().await;
    let w = seed(h.store(0), 1).await;
    let mut a = h.store(0).begin(TxOptions::read_only(Subsystem::Api)).await.unwrap();
    assert!(a.workspace(w.ws_id(0)).await.unwrap().is_some());
    assert!(matches!(a.update_workspace(w.ws(0)).await, Err(StoreError::Unsupported { .. })));
    a.rollback().await.unwrap();
}

#[tokio::test]
async fn db_now_is_the_first_statement_time_fixed_throughout() {
    let h = harness().await;
    let clock = h.clock();
    let mut a = h.store(0).begin(TxOptions::new(Subsystem::Chat)).await.unwrap();
    let before = clock.now();
    let first = a.db_now().await.unwrap();
    clock.sleep_until(clock.now() + Span::from_millis(5)).await;
    assert_eq!(a.db_now().await.unwrap(), first);
    assert!(first >= before && first <= clock.now());
    assert_ne!(a.session_id(), h.store(0).begin(TxOptions::new(Subsystem::Chat)).await.unwrap().session_id());
    a.rollback().await.unwrap();
}

#[tokio::test]
async fn vacuum_removes_dead_versions_once_no_snapshot_needs_them() {
    let h = harness().await;
    let w = seed(h.store(0), 1).await;
    let baseline = h.server.version_count().unwrap();
    let mut reader = h.store(0).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
    reader.workspace(w.ws_id(0)).await.unwrap();
    for minutes in 1..=20 {
        fixtures::commit_update(h.store(1), &with_ttl(w.ws(0), minutes)).await;
    }
    assert_eq!(h.server.version_count().unwrap(), baseline + 20);
    h.server.vacuum().unwrap();
    assert_eq!(h.server.version_count().unwrap(), baseline + 20, "the reader's snapshot holds the horizon");
    reader.rollback().await.unwrap();
    h.server.vacuum().unwrap();
    assert_eq!(h.server.version_count().unwrap(), baseline, "one live version per row remains");
}

#[tokio::test]
async fn rolled_back_and_dropped_writes_leave_no_versions_behind() {
    let h = harness().await;
    let mut w = seed(h.store(0), 1).await;
    let baseline = h.server.version_count().unwrap();
    let mut a = h.store(0).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
    a.update_workspace(&with_ttl(w.ws(0), 1)).await.unwrap();
    a.insert_user(&fixtures::user(&mut w.ids, "temp")).await.unwrap();
    a.rollback().await.unwrap();
    assert_eq!(h.server.version_count().unwrap(), baseline, "rollback removes at once");

    let mut b = h.store(0).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
    b.update_workspace(&with_ttl(w.ws(0), 2)).await.unwrap();
    drop(b);
    assert_eq!(h.server.version_count().unwrap(), baseline + 1, "a drop writes nothing");
    fixtures::commit_update(h.store(1), &with_ttl(w.ws(0), 3)).await;
    assert_eq!(h.server.version_count().unwrap(), baseline + 1, "the next write removed the leftovers");
}

#[tokio::test]
async fn reopened_file_database_drops_writes_of_a_transaction_left_open() {
    let dir = std::env::temp_dir().join(format!("store-conformance-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("reopen.sqlite");
    let _ = std::fs::remove_file(&path);
    let clock: SharedClock = Arc::new(SystemClock);
    let config = || PoolConfig { size: 5, acquire_timeout: Span::from_secs(5), label: "file".into() };
    let (ghost, kept, ws_id, versions_before) = {
        let server = SqliteServer::open_file(&path, clock.clone()).unwrap();
        let store = server.client(config());
        let mut w = seed(&store, 1).await;
        let ghost = fixtures::user(&mut w.ids, "ghost");
        let kept = fixtures::user(&mut w.ids, "kept");
        let mut committed = store.begin(TxOptions::new(Subsystem::Api)).await.unwrap();
        committed.insert_user(&kept).await.unwrap();
        committed.commit().await.unwrap();
        let versions_before = server.version_count().unwrap();
        let mut open = store.begin(TxOptions::new(Subsystem::Api)).await.unwrap();
        open.insert_user(&ghost).await.unwrap();
        open.update_workspace(&with_ttl(w.ws(0), 1)).await.unwrap();
        // The process "dies": the handle is forgotten, nothing is rolled back.
        std::mem::forget(open);
        assert_eq!(server.version_count().unwrap(), versions_before + 2);
        (ghost, kept, w.ws_id(0), versions_before)
    };
    let server = SqliteServer::open_file(&path, clock).unwrap();
    assert_eq!(server.version_count().unwrap(), versions_before, "the open transaction's versions are gone");
    let store = server.client(config());
    let mut tx = store.begin(TxOptions::new(Subsystem::Api)).await.unwrap();
    assert_eq!(tx.user(ghost.id).await.unwrap(), None);
    assert_eq!(tx.user(kept.id).await.unwrap().map(|u| u.name), Some("kept".to_owned()));
    assert_eq!(tx.workspace(ws_id).await.unwrap().unwrap().ttl, None);
    let ws = tx.workspace(ws_id).await.unwrap().unwrap();
    tx.update_workspace(&with_ttl(&ws, 5)).await.unwrap();
    tx.insert_user(&ghost).await.unwrap();
    tx.commit().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn deadlock_victim_is_the_waiter_whose_timeout_fires_first() {
    bounded("deadlock", async {
        let h = harness().await;
        let w = seed(h.store(0), 2).await;
        let clock = h.clock();
        let mut a = h.store(0).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
        let mut b = h.store(1).begin(TxOptions::new(Subsystem::Api)).await.unwrap();
        a.update_workspace(&with_ttl(w.ws(0), 1)).await.unwrap();
        b.update_workspace(&with_ttl(w.ws(1), 2)).await.unwrap();
        let (a_second, b_second) = (with_ttl(w.ws(1), 1), with_ttl(w.ws(0), 2));
        let started_at: Timestamp = clock.now();
        let session_a = a.session_id();
        let (ra, rb) = tokio::join!(a.update_workspace(&a_second), async {
            crate::harness::wait_until_blocked(&h, session_a).await;
            // Well past timer granularity, so a's check comes strictly first.
            clock.sleep_until(clock.now() + Span::from_millis(50)).await;
            b.update_workspace(&b_second).await
        });
        assert!(matches!(ra, Err(StoreError::Deadlock { .. })), "a waited first, a is checked first: {ra:?}");
        assert!(clock.now().since(started_at) >= engine::limits::DEADLOCK_TIMEOUT);
        rb.unwrap();
        b.commit().await.unwrap();
    })
    .await;
}
