//! Unit tests of the SQLite store that need its internals: raw rows the
//! engine cannot decode, cancelled waits, automatic vacuum, query plans.

use std::sync::Arc;

use super::{PoolConfig, SqliteServer, SqliteStore};
use crate::ids::IdGen;
use crate::limits::VACUUM_EVERY_COMMITS;
use crate::model::{AutomaticUpdates, Roles, User, UserStatus, Workspace};
use crate::runtime::{SharedClock, SystemClock};
use crate::store::{Store, StoreError, Subsystem, Tx, TxOptions};
use crate::time::{Span, Timestamp};

fn server() -> (Arc<SqliteServer>, SqliteStore, SqliteStore) {
    let clock: SharedClock = Arc::new(SystemClock);
    let server = SqliteServer::open_in_memory(clock).unwrap();
    let config = || PoolConfig { size: 4, acquire_timeout: Span::from_secs(5), label: "unit".into() };
    let (a, b) = (server.client(config()), server.client(config()));
    (server, a, b)
}

fn t0() -> Timestamp {
    Timestamp::from_micros(1_767_600_000_000_000)
}

/// Commits a user and one workspace of theirs; returns the workspace.
async fn seed(store: &SqliteStore) -> Workspace {
    let mut ids = IdGen::from_seed(1);
    let user = User {
        id: ids.next_id(),
        name: "u".into(),
        status: UserStatus::Active,
        roles: Roles::default(),
        quiet_hours: String::new(),
        created_at: t0(),
    };
    let workspace = Workspace {
        id: ids.next_id(),
        owner_id: user.id,
        template_id: ids.next_id(),
        name: "w".into(),
        ttl: None,
        autostart: None,
        automatic_updates: AutomaticUpdates::Never,
        last_used_at: t0(),
        dormant_at: None,
        deleting_at: None,
        next_start_at: None,
        deleted: false,
        created_at: t0(),
    };
    let mut tx = store.begin(TxOptions::new(Subsystem::Admin)).await.unwrap();
    tx.insert_user(&user).await.unwrap();
    tx.insert_workspace(&workspace).await.unwrap();
    tx.commit().await.unwrap();
    workspace
}

#[tokio::test]
async fn undecodable_rows_are_invalid_data_and_do_not_abort() {
    let (server, store, _) = server();
    let ws = seed(&store).await;
    server.lock().conn.execute("UPDATE workspaces SET automatic_updates = 'sometimes'", []).unwrap();
    let mut tx = store.begin(TxOptions::new(Subsystem::Api)).await.unwrap();
    let error = tx.workspace(ws.id).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::InvalidData { what, .. } if what == "workspaces.automatic_updates"),
        "{error:?}"
    );
    assert!(tx.user_by_name("u").await.unwrap().is_some(), "domain errors leave the transaction usable");
    tx.rollback().await.unwrap();

    server.lock().conn.execute("UPDATE workspaces SET automatic_updates = 'never', owner_id = x'0102'", []).unwrap();
    let mut tx = store.begin(TxOptions::new(Subsystem::Api)).await.unwrap();
    assert!(matches!(tx.workspace(ws.id).await, Err(StoreError::InvalidData { .. })));
    tx.rollback().await.unwrap();

    server.lock().conn.execute("UPDATE workspaces SET owner_id = id, last_used_at = 'soon'", []).unwrap();
    let mut tx = store.begin(TxOptions::new(Subsystem::Api)).await.unwrap();
    assert!(matches!(tx.workspace(ws.id).await, Err(StoreError::InvalidData { .. })));
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn cancelled_lock_wait_leaves_the_queue_and_aborts_the_transaction() {
    let (_server, store_a, store_b) = server();
    let ws = seed(&store_a).await;
    let mut holder = store_b.begin(TxOptions::new(Subsystem::Api)).await.unwrap();
    holder.workspace_for_update(ws.id).await.unwrap().unwrap();

    let mut a = store_a.begin(TxOptions::new(Subsystem::Api)).await.unwrap();
    let session = a.session_id();
    let changed = Workspace { ttl: Some(Span::from_mins(1)), ..ws.clone() };
    let mut waited = false;
    {
        let update = a.update_workspace(&changed);
        tokio::pin!(update);
        for _ in 0..100 {
            tokio::select! {
                biased;
                result = &mut update => panic!("the update should wait, got {result:?}"),
                () = tokio::task::yield_now() => {}
            }
            if store_a.sessions_waiting().await.unwrap() == vec![session] {
                waited = true;
                break;
            }
        }
    }
    assert!(waited, "the update never queued");
    assert!(store_a.sessions_waiting().await.unwrap().is_empty(), "the dropped wait left the queue");
    assert_eq!(a.workspace(ws.id).await, Err(StoreError::TransactionAborted), "a cancelled statement aborts");

    let mut c = store_a.begin(TxOptions::new(Subsystem::Api)).await.unwrap();
    holder.commit().await.unwrap();
    c.update_workspace(&changed).await.unwrap();
    c.commit().await.unwrap();
    a.rollback().await.unwrap();
}

#[tokio::test]
async fn vacuum_runs_by_itself_every_few_hundred_commits() {
    let (server, store, _) = server();
    let ws = seed(&store).await;
    let baseline = server.version_count().unwrap();
    for minutes in 0..VACUUM_EVERY_COMMITS as i64 {
        let mut tx = store.begin(TxOptions::new(Subsystem::Api)).await.unwrap();
        tx.update_workspace(&Workspace { ttl: Some(Span::from_mins(minutes + 1)), ..ws.clone() }).await.unwrap();
        tx.commit().await.unwrap();
    }
    assert!(server.commit_seq() > VACUUM_EVERY_COMMITS);
    assert!(server.version_count().unwrap() < baseline + 8, "dead versions were collected");
}

#[test]
fn lookups_by_id_and_stamping_use_indexes() {
    let (server, _, _) = server();
    let inner = server.lock();
    let plan = |sql: &str| -> String {
        let mut stmt = inner.conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let nulls = std::iter::repeat_n(rusqlite::types::Value::Null, stmt.parameter_count());
        let rows = stmt.query_map(rusqlite::params_from_iter(nulls), |r| r.get::<_, String>(3)).unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
    };
    let by_id = plan(&format!("SELECT * FROM workspaces WHERE {} AND (id = ?3)", super::mvcc::visible_sql("")));
    assert!(by_id.contains("USING INDEX workspaces_id"), "{by_id}");
    let stamp = plan("UPDATE workspaces SET _xmin_seq = 1 WHERE _xmin = 5 AND _xmin_seq IS NULL");
    assert!(stamp.contains("workspaces_open_xmin"), "{stamp}");
    let claim = plan("SELECT * FROM provisioner_jobs WHERE status = 'pending' ORDER BY is_prebuild, created_at, id");
    assert!(claim.contains("provisioner_jobs_queue"), "{claim}");
}

#[tokio::test]
async fn commit_log_records_each_committed_version_with_its_client() {
    let (server, a, b) = server();
    server.enable_commit_log();
    let workspace = seed(&a).await;
    // A rolled-back change and a read-only transaction leave no record.
    let mut tx = b.begin(TxOptions::new(Subsystem::Usage)).await.unwrap();
    assert_eq!(tx.touch_last_used(&[workspace.id], t0() + Span::from_secs(1)).await.unwrap(), 1);
    tx.rollback().await.unwrap();
    let mut tx = b.begin(TxOptions::new(Subsystem::Api)).await.unwrap();
    tx.workspace(workspace.id).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = b.begin(TxOptions::new(Subsystem::Usage)).await.unwrap();
    tx.touch_last_used(&[workspace.id], t0() + Span::from_secs(2)).await.unwrap();
    tx.commit().await.unwrap();

    let log = server.take_commits();
    assert_eq!(log.len(), 2, "{log:#?}");
    assert_eq!((log[0].client, log[1].client), (a.client_id(), b.client_id()));
    assert!(log[0].seq < log[1].seq);
    assert_eq!(log[0].rows.len(), 2, "the user and the workspace");
    match &log[1].rows[..] {
        [super::AuditRow::Workspace(w)] => assert_eq!(w.last_used_at, t0() + Span::from_secs(2)),
        other => panic!("unexpected rows {other:?}"),
    }
    assert!(server.take_commits().is_empty(), "taking drains the log");
}
