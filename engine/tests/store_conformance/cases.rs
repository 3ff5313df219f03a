//! The conformance cases: the 22 behaviours of the design note's §2 table
//! (`cNN_…`, in its order), then the `Store` contract's other promises.
//! Every case is generic over the harness and uses only `Store`/`Tx`, except
//! where a harness hook stands in for what a script cannot do (disconnect,
//! vacuum, pool accounting).

use engine::hash::LockKey;
use engine::ids::ProvisionerId;
use engine::model::{JobStatus, ProvisionerDaemon, Transition, Workspace};
use engine::store::{Store, StoreError, Subsystem, Tx, TxOptions};
use engine::time::Span;

use crate::fixtures::{self, at, build, commit_update, notification, seed, t0, with_ttl};
use crate::harness::{begin, is_serialization, wait_until_blocked, Harness, HarnessOptions};

async fn start<H: Harness>() -> H {
    H::start(HarnessOptions::default()).await
}

/// Case 1: The snapshot is taken by the first statement (any statement, a
/// try-lock too), not by `begin`.
pub async fn c01_snapshot_is_taken_by_the_first_statement_not_by_begin<H: Harness>() {
    let h = start::<H>().await;
    let w = seed(h.store(0), 1).await;
    let mut a = begin(&h, 0).await;
    commit_update(h.store(1), &with_ttl(w.ws(0), 60)).await;
    let seen = a.workspace(w.ws_id(0)).await.unwrap().unwrap();
    assert_eq!(seen.ttl, Some(Span::from_mins(60)), "a commit between begin and the first statement is seen");
    a.rollback().await.unwrap();

    let mut a = begin(&h, 0).await;
    assert!(a.try_advisory_xact_lock(LockKey(1)).await.unwrap());
    commit_update(h.store(1), &with_ttl(w.ws(0), 120)).await;
    let seen = a.workspace(w.ws_id(0)).await.unwrap().unwrap();
    assert_eq!(seen.ttl, Some(Span::from_mins(60)), "a first-statement try-lock fixed the snapshot");
    a.rollback().await.unwrap();
}

/// Case 2: Rereads within a transaction return the same rows: no later commit, no phantom.
pub async fn c02_repeated_reads_see_neither_later_commits_nor_phantoms<H: Harness>() {
    let h = start::<H>().await;
    let mut w = seed(h.store(0), 2).await;
    let mut a = begin(&h, 0).await;
    let before = a.workspaces_of_template(w.template.id, None, 100).await.unwrap();
    assert_eq!(before.len(), 2);

    let extra = fixtures::workspace(&mut w.ids, w.user.id, &w.template, "ws-extra");
    let mut b = begin(&h, 1).await;
    b.update_workspace(&with_ttl(w.ws(0), 5)).await.unwrap();
    b.insert_workspace(&extra).await.unwrap();
    b.commit().await.unwrap();

    let after = a.workspaces_of_template(w.template.id, None, 100).await.unwrap();
    assert_eq!(after, before, "the same rows, the same values");
    assert_eq!(a.workspace(extra.id).await.unwrap(), None, "no phantom");
    a.commit().await.unwrap();

    let mut c = begin(&h, 0).await;
    assert_eq!(c.workspaces_of_template(w.template.id, None, 100).await.unwrap().len(), 3);
    c.rollback().await.unwrap();
}

/// Case 3: A transaction sees its own writes in later statements; an open other does not.
pub async fn c03_own_writes_are_visible_to_later_statements_and_to_no_one_else<H: Harness>() {
    let h = start::<H>().await;
    let mut w = seed(h.store(0), 1).await;
    let mut b = begin(&h, 1).await;
    assert!(b.workspace(w.ws_id(0)).await.unwrap().is_some(), "b's snapshot is taken");

    let new = fixtures::workspace(&mut w.ids, w.user.id, &w.template, "mine");
    let mut a = begin(&h, 0).await;
    a.insert_workspace(&new).await.unwrap();
    a.update_workspace(&with_ttl(&new, 30)).await.unwrap();
    a.update_workspace(&with_ttl(w.ws(0), 45)).await.unwrap();
    assert_eq!(a.workspace(new.id).await.unwrap(), Some(with_ttl(&new, 30)));
    assert_eq!(a.workspace_by_name("mine").await.unwrap().map(|x| x.id), Some(new.id));
    assert_eq!(a.workspace(w.ws_id(0)).await.unwrap().unwrap().ttl, Some(Span::from_mins(45)));

    assert_eq!(b.workspace(new.id).await.unwrap(), None);
    assert_eq!(b.workspace_by_name("mine").await.unwrap(), None);
    assert_eq!(b.workspace(w.ws_id(0)).await.unwrap().unwrap().ttl, None);
    a.commit().await.unwrap();
    assert_eq!(b.workspace(new.id).await.unwrap(), None, "b's snapshot predates a's commit");
    b.commit().await.unwrap();
}

/// Case 4: No dirty reads: another transaction's open write is invisible.
pub async fn c04_open_writes_of_others_are_not_visible<H: Harness>() {
    let h = start::<H>().await;
    let w = seed(h.store(0), 1).await;
    let mut b = begin(&h, 1).await;
    b.update_workspace(&with_ttl(w.ws(0), 10)).await.unwrap();
    let mut a = begin(&h, 0).await;
    assert_eq!(a.workspace(w.ws_id(0)).await.unwrap().unwrap().ttl, None);
    b.rollback().await.unwrap();
    a.commit().await.unwrap();
}

/// Case 5: First updater wins: an update of a row another transaction changed and
/// committed after the snapshot fails with 40001.
pub async fn c05_first_updater_wins_update_fails_after_concurrent_commit<H: Harness>() {
    let h = start::<H>().await;
    let w = seed(h.store(0), 1).await;
    let mut a = begin(&h, 0).await;
    let mine = a.workspace(w.ws_id(0)).await.unwrap().unwrap();
    commit_update(h.store(1), &with_ttl(w.ws(0), 10)).await;
    let result = a.update_workspace(&with_ttl(&mine, 20)).await;
    assert!(is_serialization(&result), "{result:?}");
    a.rollback().await.unwrap();
}

/// Case 6: `SELECT … FOR UPDATE` of a row changed after the snapshot fails with 40001.
pub async fn c06_locking_a_row_changed_after_the_snapshot_fails<H: Harness>() {
    let h = start::<H>().await;
    let w = seed(h.store(0), 1).await;
    let mut a = begin(&h, 0).await;
    a.workspace(w.ws_id(0)).await.unwrap();
    commit_update(h.store(1), &with_ttl(w.ws(0), 10)).await;
    let result = a.workspace_for_update(w.ws_id(0)).await;
    assert!(is_serialization(&result), "{result:?}");
    a.rollback().await.unwrap();

    let mut c = begin(&h, 0).await;
    let locked = c.workspace_for_update(w.ws_id(0)).await.unwrap().unwrap();
    assert_eq!(locked.ttl, Some(Span::from_mins(10)), "a fresh snapshot locks the row fine");
    c.commit().await.unwrap();
}

/// Case 7: An `UPDATE … WHERE` picks its rows by the snapshot, with no re-check:
/// a row the snapshot saw as due but a commit changed fails with 40001; a row
/// due only in the present is not touched.
pub async fn c07_update_predicate_is_the_snapshot_s_without_recheck<H: Harness>() {
    let h = start::<H>().await;
    let w = seed(h.store(0), 2).await;
    let late = Workspace { last_used_at: at(Span::from_hours(10)), ..w.ws(1).clone() };
    commit_update(h.store(0), &late).await;

    let mut a = begin(&h, 0).await;
    a.workspace(w.ws_id(0)).await.unwrap();
    let mut b = begin(&h, 1).await;
    assert_eq!(b.touch_last_used(&[w.ws_id(0)], at(Span::from_hours(5))).await.unwrap(), 1);
    b.update_workspace(&Workspace { last_used_at: at(Span::from_hours(1)), ..late.clone() }).await.unwrap();
    b.commit().await.unwrap();

    let untouched = a.touch_last_used(&[w.ws_id(1)], at(Span::from_hours(3))).await.unwrap();
    assert_eq!(untouched, 0, "ws-1 is due only in the present, not in the snapshot");
    let result = a.touch_last_used(&[w.ws_id(0)], at(Span::from_hours(3))).await;
    assert!(is_serialization(&result), "{result:?}");
    a.rollback().await.unwrap();

    let mut c = begin(&h, 0).await;
    assert_eq!(c.workspace(w.ws_id(0)).await.unwrap().unwrap().last_used_at, at(Span::from_hours(5)));
    assert_eq!(c.workspace(w.ws_id(1)).await.unwrap().unwrap().last_used_at, at(Span::from_hours(1)));
    c.rollback().await.unwrap();
}

/// Case 8: An update of a locked row waits, holding its connection, and shows as waiting.
pub async fn c08_lock_wait_holds_the_connection_and_shows_as_waiting<H: Harness>() {
    let h = start::<H>().await;
    let w = seed(h.store(0), 1).await;
    let mut b = begin(&h, 1).await;
    b.workspace_for_update(w.ws_id(0)).await.unwrap().unwrap();
    let mut a = begin(&h, 0).await;
    let session = a.session_id();
    let changed = with_ttl(w.ws(0), 7);
    let (result, ()) = tokio::join!(a.update_workspace(&changed), async {
        wait_until_blocked(&h, session).await;
        assert_eq!(h.connections_in_use(0), 1, "the waiter keeps its connection");
        assert!(h.store(1).sessions_waiting().await.unwrap().contains(&session));
        b.rollback().await.unwrap();
    });
    result.unwrap();
    assert!(!h.store(0).sessions_waiting().await.unwrap().contains(&session));
    a.commit().await.unwrap();
    let mut c = begin(&h, 0).await;
    assert_eq!(c.workspace(w.ws_id(0)).await.unwrap().unwrap().ttl, Some(Span::from_mins(7)));
    c.rollback().await.unwrap();
}

/// Case 9: The lock holder commits a change: the waiter fails with 40001.
pub async fn c09_waiter_fails_when_the_holder_commits_a_change<H: Harness>() {
    let h = start::<H>().await;
    let w = seed(h.store(0), 1).await;
    let mut b = begin(&h, 1).await;
    b.update_workspace(&with_ttl(w.ws(0), 1)).await.unwrap();
    let mut a = begin(&h, 0).await;
    a.workspace(w.ws_id(0)).await.unwrap();
    let session = a.session_id();
    let changed = with_ttl(w.ws(0), 2);
    let (result, ()) = tokio::join!(a.update_workspace(&changed), async {
        wait_until_blocked(&h, session).await;
        b.commit().await.unwrap();
    });
    assert!(is_serialization(&result), "{result:?}");
    a.rollback().await.unwrap();
}

/// Case 10: The lock holder rolls back: the waiter's update applies.
pub async fn c10_waiter_proceeds_when_the_holder_rolls_back<H: Harness>() {
    let h = start::<H>().await;
    let w = seed(h.store(0), 1).await;
    let mut b = begin(&h, 1).await;
    b.update_workspace(&with_ttl(w.ws(0), 1)).await.unwrap();
    let mut a = begin(&h, 0).await;
    a.workspace(w.ws_id(0)).await.unwrap();
    let session = a.session_id();
    let changed = with_ttl(w.ws(0), 2);
    let (result, ()) = tokio::join!(a.update_workspace(&changed), async {
        wait_until_blocked(&h, session).await;
        b.rollback().await.unwrap();
    });
    result.unwrap();
    a.commit().await.unwrap();
    let mut c = begin(&h, 0).await;
    assert_eq!(c.workspace(w.ws_id(0)).await.unwrap().unwrap().ttl, Some(Span::from_mins(2)));
    c.rollback().await.unwrap();
}

/// Case 11: The holder only locked the row (`FOR UPDATE`) and commits: a lock is no
/// change, the waiter's update applies.
pub async fn c11_waiter_proceeds_when_the_holder_only_locked<H: Harness>() {
    let h = start::<H>().await;
    let w = seed(h.store(0), 1).await;
    let mut b = begin(&h, 1).await;
    b.workspace_for_update(w.ws_id(0)).await.unwrap();
    let mut a = begin(&h, 0).await;
    a.workspace(w.ws_id(0)).await.unwrap();
    let session = a.session_id();
    let changed = with_ttl(w.ws(0), 3);
    let (result, ()) = tokio::join!(a.update_workspace(&changed), async {
        wait_until_blocked(&h, session).await;
        b.commit().await.unwrap();
    });
    result.unwrap();
    a.commit().await.unwrap();
}

/// Case 12: Two transactions update two rows in opposite orders: after the
/// deadlock timeout one fails with 40P01 and the other commits.
pub async fn c12_opposite_order_updates_deadlock_and_one_is_aborted<H: Harness>() {
    let h = start::<H>().await;
    let w = seed(h.store(0), 2).await;
    let mut a = begin(&h, 0).await;
    let mut b = begin(&h, 1).await;
    a.update_workspace(&with_ttl(w.ws(0), 1)).await.unwrap();
    b.update_workspace(&with_ttl(w.ws(1), 2)).await.unwrap();
    let (second_a, second_b) = (with_ttl(w.ws(1), 1), with_ttl(w.ws(0), 2));
    let (ra, rb) = tokio::join!(
        async move {
            a.update_workspace(&second_a).await?;
            a.commit().await
        },
        async move {
            b.update_workspace(&second_b).await?;
            b.commit().await
        }
    );
    let deadlocks = [&ra, &rb].iter().filter(|r| matches!(r, Err(StoreError::Deadlock { .. }))).count();
    assert_eq!(deadlocks, 1, "exactly one victim: {ra:?} {rb:?}");
    assert!(ra.is_ok() || rb.is_ok(), "the other commits: {ra:?} {rb:?}");
}

/// Case 13: Two inserts of one unique key: the second waits for the first; the
/// first commits → 23505; the first rolls back → the second succeeds.
pub async fn c13_unique_insert_waits_for_the_open_inserter<H: Harness>() {
    let h = start::<H>().await;
    let mut w = seed(h.store(0), 1).await;
    let version = w.version.id;
    let ws = w.ws(0).clone();

    let (first, first_job) = build(&mut w.ids, &ws, 2, Transition::Stop, version);
    let (second, second_job) = build(&mut w.ids, &ws, 2, Transition::Stop, version);
    let mut a = begin(&h, 0).await;
    a.insert_build(&first, &first_job).await.unwrap();
    let mut b = begin(&h, 1).await;
    let session = b.session_id();
    let (result, ()) = tokio::join!(b.insert_build(&second, &second_job), async {
        wait_until_blocked(&h, session).await;
        a.commit().await.unwrap();
    });
    assert!(matches!(result, Err(StoreError::UniqueViolation { .. })), "{result:?}");
    b.rollback().await.unwrap();

    let (third, third_job) = build(&mut w.ids, &ws, 3, Transition::Start, version);
    let (fourth, fourth_job) = build(&mut w.ids, &ws, 3, Transition::Start, version);
    let mut a = begin(&h, 0).await;
    a.insert_build(&third, &third_job).await.unwrap();
    let mut b = begin(&h, 1).await;
    let session = b.session_id();
    let (result, ()) = tokio::join!(b.insert_build(&fourth, &fourth_job), async {
        wait_until_blocked(&h, session).await;
        a.rollback().await.unwrap();
    });
    result.unwrap();
    b.commit().await.unwrap();
    let mut c = begin(&h, 0).await;
    let latest = c.latest_build(ws.id).await.unwrap().unwrap();
    assert_eq!((latest.build.id, latest.build.number, latest.job.id), (fourth.id, 3, fourth_job.id));
    c.rollback().await.unwrap();
}

/// Case 14: Write skew is allowed: both read the same state, both write disjoint
/// rows decided from it, both commit (no read tracking, no global lock).
pub async fn c14_write_skew_is_allowed_both_commit<H: Harness>() {
    let h = start::<H>().await;
    let mut w = seed(h.store(0), 2).await;
    let version = w.version.id;
    let mut a = begin(&h, 0).await;
    let mut b = begin(&h, 1).await;
    for tx in [&mut a, &mut b] {
        for index in 0..2 {
            let latest = tx.latest_build(w.ws_id(index)).await.unwrap().unwrap();
            assert_eq!(latest.build.number, 1, "both see both workspaces as due");
        }
    }
    let (stop0, job0) = build(&mut w.ids, &w.workspaces[0], 2, Transition::Stop, version);
    let (stop1, job1) = build(&mut w.ids, &w.workspaces[1], 2, Transition::Stop, version);
    a.insert_build(&stop0, &job0).await.unwrap();
    b.insert_build(&stop1, &job1).await.unwrap();
    a.commit().await.unwrap();
    b.commit().await.unwrap();
    let mut c = begin(&h, 0).await;
    assert_eq!(c.latest_build(w.ws_id(0)).await.unwrap().unwrap().build.id, stop0.id);
    assert_eq!(c.latest_build(w.ws_id(1)).await.unwrap().unwrap().build.id, stop1.id);
    c.rollback().await.unwrap();
}

/// Case 15: `ON CONFLICT DO NOTHING` against an open insert of the key waits, and
/// fails with 40001 when that insert commits (the row is invisible to its
/// snapshot); against a row committed before its snapshot it does nothing.
pub async fn c15_on_conflict_do_nothing_fails_when_the_hidden_inserter_commits<H: Harness>() {
    let h = start::<H>().await;
    let mut w = seed(h.store(0), 1).await;
    let note = notification(w.user.id, "k");
    let mut a = begin(&h, 0).await;
    assert!(a.enqueue_notification(fixtures::notification_id(&mut w.ids), &note, t0()).await.unwrap());
    let mut b = begin(&h, 1).await;
    let session = b.session_id();
    let second = fixtures::notification_id(&mut w.ids);
    let (result, ()) = tokio::join!(b.enqueue_notification(second, &note, t0()), async {
        wait_until_blocked(&h, session).await;
        a.commit().await.unwrap();
    });
    assert!(is_serialization(&result), "{result:?}");
    b.rollback().await.unwrap();

    let mut c = begin(&h, 1).await;
    let third = fixtures::notification_id(&mut w.ids);
    assert!(!c.enqueue_notification(third, &note, t0()).await.unwrap(), "serial order: nothing written");
    c.commit().await.unwrap();
    let mut d = begin(&h, 0).await;
    assert_eq!(d.notifications(None, 10).await.unwrap().len(), 1);
    d.rollback().await.unwrap();
}

/// Case 16: An upsert (`ON CONFLICT DO UPDATE`) of a row changed after the snapshot fails with 40001.
pub async fn c16_upsert_of_a_row_changed_after_the_snapshot_fails<H: Harness>() {
    let h = start::<H>().await;
    let mut setup = begin(&h, 0).await;
    setup.set_setting("k", "v1").await.unwrap();
    setup.commit().await.unwrap();

    let mut a = begin(&h, 0).await;
    assert_eq!(a.setting("k").await.unwrap().as_deref(), Some("v1"));
    let mut b = begin(&h, 1).await;
    b.set_setting("k", "v2").await.unwrap();
    b.commit().await.unwrap();
    let result = a.set_setting("k", "v3").await;
    assert!(is_serialization(&result), "{result:?}");
    a.rollback().await.unwrap();

    let mut c = begin(&h, 0).await;
    c.set_setting("k", "v4").await.unwrap();
    assert_eq!(c.setting("k").await.unwrap().as_deref(), Some("v4"));
    c.commit().await.unwrap();
}

/// Case 17: `SKIP LOCKED` claims skip rows another transaction holds, without waiting.
pub async fn c17_skip_locked_claims_skip_rows_locked_by_others<H: Harness>() {
    let h = start::<H>().await;
    let mut w = seed(h.store(0), 1).await;
    let mut setup = begin(&h, 0).await;
    let mut ids = Vec::new();
    for index in 0..5 {
        let id = fixtures::notification_id(&mut w.ids);
        let note = notification(w.user.id, &format!("k{index}"));
        assert!(setup.enqueue_notification(id, &note, at(Span::from_secs(index))).await.unwrap());
        ids.push(id);
    }
    setup.commit().await.unwrap();

    let now = at(Span::from_hours(1));
    let mut a = begin(&h, 0).await;
    let mine: Vec<_> = a.claim_due_notifications(now, 2).await.unwrap().into_iter().map(|n| n.id).collect();
    assert_eq!(mine, ids[0..2]);
    let mut b = begin(&h, 1).await;
    let theirs: Vec<_> = b.claim_due_notifications(now, 2).await.unwrap().into_iter().map(|n| n.id).collect();
    assert_eq!(theirs, ids[2..4], "the next two, at once");
    let rest: Vec<_> = b.claim_due_notifications(now, 5).await.unwrap().into_iter().map(|n| n.id).collect();
    assert_eq!(rest, ids[2..5], "its own locks are no obstacle; a's rows are skipped");
    a.mark_notification_delivered(ids[0], now).await.unwrap();
    a.commit().await.unwrap();
    b.rollback().await.unwrap();
}

/// Case 18: A `SKIP LOCKED` claim of a row a transaction changed and committed
/// after the snapshot fails with 40001 instead of skipping it.
pub async fn c18_skip_locked_claim_of_a_row_changed_after_the_snapshot_fails<H: Harness>() {
    let h = start::<H>().await;
    let mut w = seed(h.store(0), 1).await;
    let (b2, mut job) = build(&mut w.ids, &w.workspaces[0], 2, Transition::Stop, w.version.id);
    job.status = JobStatus::Pending;
    job.started_at = None;
    job.completed_at = None;
    let mut setup = begin(&h, 0).await;
    setup.insert_build(&b2, &job).await.unwrap();
    setup.commit().await.unwrap();

    let mut a = begin(&h, 0).await;
    assert_eq!(a.job(job.id).await.unwrap().unwrap().status, JobStatus::Pending);
    let worker = ProvisionerId::from_bytes([9; 16]);
    let mut b = begin(&h, 1).await;
    let taken = b.acquire_job(worker, at(Span::from_mins(1))).await.unwrap().unwrap();
    assert_eq!((taken.id, taken.status, taken.worker_id), (job.id, JobStatus::Running, Some(worker)));
    b.commit().await.unwrap();
    let result = a.acquire_job(worker, at(Span::from_mins(2))).await;
    assert!(is_serialization(&result), "{result:?}");
    a.rollback().await.unwrap();

    let mut c = begin(&h, 0).await;
    assert_eq!(c.acquire_job(worker, at(Span::from_mins(3))).await.unwrap(), None, "nothing pending");
    c.rollback().await.unwrap();
}

/// Case 19: `pg_try_advisory_xact_lock`: true at once, false at once for another,
/// re-entrant, freed when the transaction ends.
pub async fn c19_advisory_try_lock_is_instant_reentrant_and_freed_at_end<H: Harness>() {
    let h = start::<H>().await;
    let key = LockKey::named("conformance");
    let mut a = begin(&h, 0).await;
    let mut b = begin(&h, 1).await;
    assert!(a.try_advisory_xact_lock(key).await.unwrap());
    assert!(!b.try_advisory_xact_lock(key).await.unwrap());
    assert!(a.try_advisory_xact_lock(key).await.unwrap(), "re-entrant");
    assert!(b.try_advisory_xact_lock(LockKey(key.0 ^ 1)).await.unwrap(), "other keys are free");
    a.rollback().await.unwrap();
    assert!(b.try_advisory_xact_lock(key).await.unwrap());
    b.commit().await.unwrap();
    let mut c = begin(&h, 0).await;
    assert!(c.try_advisory_xact_lock(key).await.unwrap(), "freed at commit too");
    c.rollback().await.unwrap();
}

/// Case 20: After an error the transaction is aborted: later statements fail
/// (25P02) until rollback, which works.
pub async fn c20_aborted_transaction_rejects_statements_until_rollback<H: Harness>() {
    let h = start::<H>().await;
    let w = seed(h.store(0), 1).await;
    let mut a = begin(&h, 0).await;
    a.workspace(w.ws_id(0)).await.unwrap();
    commit_update(h.store(1), &with_ttl(w.ws(0), 10)).await;
    assert!(is_serialization(&a.update_workspace(&with_ttl(w.ws(0), 20)).await));
    assert_eq!(a.workspace(w.ws_id(0)).await, Err(StoreError::TransactionAborted));
    assert_eq!(a.try_advisory_xact_lock(LockKey(5)).await, Err(StoreError::TransactionAborted));
    a.rollback().await.unwrap();
}

/// Case 21: A client's crash or disconnect rolls back its transaction at once and
/// frees its row and advisory locks; a waiter proceeds; its writes are gone.
pub async fn c21_disconnect_rolls_back_and_frees_locks_at_once<H: Harness>() {
    let h = start::<H>().await;
    let mut w = seed(h.store(0), 1).await;
    let ghost = fixtures::user(&mut w.ids, "ghost");
    let key = LockKey::lifecycle(w.ws_id(0));
    let mut a = begin(&h, 0).await;
    a.update_workspace(&with_ttl(w.ws(0), 1)).await.unwrap();
    assert!(a.try_advisory_xact_lock(key).await.unwrap());
    a.insert_user(&ghost).await.unwrap();

    let mut b = begin(&h, 1).await;
    let session = b.session_id();
    let changed = with_ttl(w.ws(0), 2);
    let (result, ()) = tokio::join!(b.update_workspace(&changed), async {
        wait_until_blocked(&h, session).await;
        h.disconnect(0).await;
    });
    result.unwrap();
    assert!(b.try_advisory_xact_lock(key).await.unwrap(), "the advisory lock went with the session");
    assert_eq!(b.user(ghost.id).await.unwrap(), None);
    assert_eq!(b.user_by_name("ghost").await.unwrap(), None);
    b.commit().await.unwrap();
    assert!(a.workspace(w.ws_id(0)).await.is_err(), "the lost session answers nothing");
    drop(a);

    let mut c = begin(&h, 1).await;
    assert_eq!(c.workspace(w.ws_id(0)).await.unwrap().unwrap().ttl, Some(Span::from_mins(2)));
    c.insert_user(&ghost).await.unwrap();
    c.commit().await.unwrap();
}

/// Case 22: Vacuum keeps what an open snapshot still needs.
pub async fn c22_vacuum_keeps_versions_an_open_snapshot_needs<H: Harness>() {
    let h = start::<H>().await;
    let w = seed(h.store(0), 1).await;
    let mut a = begin(&h, 0).await;
    assert_eq!(a.workspace(w.ws_id(0)).await.unwrap().unwrap().ttl, None);
    for minutes in 1..=100 {
        commit_update(h.store(1), &with_ttl(w.ws(0), minutes)).await;
    }
    h.vacuum().await;
    assert_eq!(a.workspace(w.ws_id(0)).await.unwrap().unwrap().ttl, None, "the first value survives vacuum");
    a.commit().await.unwrap();
    h.vacuum().await;
    let mut c = begin(&h, 0).await;
    assert_eq!(c.workspace(w.ws_id(0)).await.unwrap().unwrap().ttl, Some(Span::from_mins(100)));
    c.rollback().await.unwrap();
}

// ---- the rest of the Store contract ---------------------------------------------------

/// With every connection held, `begin` fails with a pool timeout after the
/// acquire timeout, and succeeds again once a connection is returned.
pub async fn pool_times_out_after_acquire_timeout_when_all_connections_are_held<H: Harness>() {
    let timeout = Span::from_millis(200);
    let h = H::start(HarnessOptions { clients: 2, pool_size: 2, acquire_timeout: timeout }).await;
    let first = begin(&h, 0).await;
    let second = begin(&h, 0).await;
    assert_eq!(h.connections_in_use(0), 2);
    let clock = h.clock();
    let started_at = clock.now();
    let result = h.store(0).begin(TxOptions::new(Subsystem::Lifecycle)).await;
    let waited = clock.now().since(started_at);
    assert!(matches!(result, Err(StoreError::PoolTimeout { .. })), "{:?}", result.err());
    assert!(waited >= timeout, "gave up after {waited}, before {timeout}");
    assert!(begin(&h, 1).await.rollback().await.is_ok(), "another client's pool is its own");
    drop(first);
    let third = begin(&h, 0).await;
    assert_eq!(h.connections_in_use(0), 2);
    drop((second, third));
    assert_eq!(h.connections_in_use(0), 0);
}

/// A transaction dropped without commit or rollback rolls back and frees its
/// locks. "Frees" within a bounded time, not at once: a dropped handle closes
/// its connection and the server ends the session's transaction after that,
/// releasing its row locks first and its advisory locks a moment later
/// (PostgreSQL's `AbortTransaction`; SQLite frees both at once). So the
/// advisory try-lock is polled for up to a second, with short clock sleeps;
/// the row update, which waits for the row lock, must go through.
pub async fn dropped_transaction_rolls_back_and_frees_its_locks<H: Harness>() {
    let h = start::<H>().await;
    let mut w = seed(h.store(0), 1).await;
    let ghost = fixtures::user(&mut w.ids, "ghost");
    let mut a = begin(&h, 0).await;
    a.update_workspace(&with_ttl(w.ws(0), 1)).await.unwrap();
    a.insert_user(&ghost).await.unwrap();
    assert!(a.try_advisory_xact_lock(LockKey(77)).await.unwrap());
    drop(a);

    let mut b = begin(&h, 1).await;
    assert_eq!(b.workspace(w.ws_id(0)).await.unwrap().unwrap().ttl, None, "the dropped update never landed");
    b.update_workspace(&with_ttl(w.ws(0), 2)).await.unwrap();
    let clock = h.clock();
    let deadline = clock.now() + Span::from_secs(1);
    let mut locked = b.try_advisory_xact_lock(LockKey(77)).await.unwrap();
    while !locked && clock.now() < deadline {
        clock.sleep_until(clock.now() + Span::from_millis(1)).await;
        locked = b.try_advisory_xact_lock(LockKey(77)).await.unwrap();
    }
    assert!(locked, "the dropped transaction's advisory lock was freed within a second");
    assert_eq!(b.user(ghost.id).await.unwrap(), None, "the dropped insert never landed");
    b.insert_user(&ghost).await.unwrap();
    b.commit().await.unwrap();
    assert_eq!(h.connections_in_use(0), 0);

    let mut c = begin(&h, 1).await;
    assert_eq!(
        c.workspace(w.ws_id(0)).await.unwrap().unwrap().ttl,
        Some(Span::from_mins(2)),
        "b's update went through"
    );
    assert!(c.user(ghost.id).await.unwrap().is_some());
    c.rollback().await.unwrap();
}

/// `touch_last_used` only moves `last_used_at` forward and counts what it changed.
pub async fn touch_last_used_never_moves_backwards<H: Harness>() {
    let h = start::<H>().await;
    let mut w = seed(h.store(0), 2).await;
    let unknown = fixtures::workspace(&mut w.ids, w.user.id, &w.template, "nowhere").id;
    let mut a = begin(&h, 0).await;
    assert_eq!(a.touch_last_used(&[w.ws_id(0)], at(Span::from_hours(2))).await.unwrap(), 1);
    assert_eq!(a.touch_last_used(&[w.ws_id(0)], at(Span::from_hours(1))).await.unwrap(), 0, "never backwards");
    assert_eq!(a.touch_last_used(&[w.ws_id(0)], at(Span::from_hours(2))).await.unwrap(), 0, "equal is no change");
    let both = [w.ws_id(1), w.ws_id(0), w.ws_id(1), unknown];
    assert_eq!(a.touch_last_used(&both, at(Span::from_hours(3))).await.unwrap(), 2, "dedupes, ignores unknown ids");
    assert_eq!(a.touch_last_used(&[], at(Span::from_hours(4))).await.unwrap(), 0);
    a.commit().await.unwrap();
    let mut b = begin(&h, 1).await;
    for index in 0..2 {
        assert_eq!(b.workspace(w.ws_id(index)).await.unwrap().unwrap().last_used_at, at(Span::from_hours(3)));
    }
    b.rollback().await.unwrap();
}

/// Workspace names are unique per owner (case-insensitively) among non-deleted ones.
pub async fn unique_workspace_name_per_owner_among_non_deleted<H: Harness>() {
    let h = start::<H>().await;
    let mut w = seed(h.store(0), 1).await;
    let twin = fixtures::workspace(&mut w.ids, w.user.id, &w.template, "WS-0");
    let mut a = begin(&h, 0).await;
    assert!(matches!(a.insert_workspace(&twin).await, Err(StoreError::UniqueViolation { .. })));
    a.rollback().await.unwrap();

    let mut b = begin(&h, 0).await;
    b.update_workspace(&Workspace { deleted: true, ..w.ws(0).clone() }).await.unwrap();
    b.insert_workspace(&twin).await.unwrap();
    assert_eq!(b.workspace_by_name("ws-0").await.unwrap().map(|x| x.id), Some(twin.id));
    assert!(
        matches!(b.update_workspace(w.ws(0)).await, Err(StoreError::UniqueViolation { .. })),
        "undeleting would clash"
    );
    b.rollback().await.unwrap();

    let mut c = begin(&h, 0).await;
    assert!(matches!(c.insert_user(&w.user).await, Err(StoreError::UniqueViolation { .. })), "same id");
    c.rollback().await.unwrap();
}

/// Upserts insert, then update; a daemon's `last_seen_at` never moves backwards.
pub async fn upserts_insert_then_update_and_keep_last_seen_monotonic<H: Harness>() {
    let h = start::<H>().await;
    let daemon = ProvisionerDaemon {
        id: ProvisionerId::from_bytes([3; 16]),
        name: "d".into(),
        last_seen_at: at(Span::from_mins(5)),
    };
    let mut a = begin(&h, 0).await;
    assert!(!a.provisioner_seen_since(t0()).await.unwrap());
    a.upsert_provisioner(&daemon).await.unwrap();
    a.upsert_provisioner(&ProvisionerDaemon { last_seen_at: at(Span::from_mins(1)), ..daemon.clone() }).await.unwrap();
    assert!(a.provisioner_seen_since(at(Span::from_mins(5))).await.unwrap(), "own upsert, kept at the max");
    a.commit().await.unwrap();

    let mut b = begin(&h, 1).await;
    b.upsert_provisioner(&ProvisionerDaemon { last_seen_at: at(Span::from_mins(2)), ..daemon.clone() }).await.unwrap();
    assert!(b.provisioner_seen_since(at(Span::from_mins(5))).await.unwrap());
    assert!(!b.provisioner_seen_since(at(Span::from_mins(6))).await.unwrap());
    b.upsert_provisioner(&ProvisionerDaemon { last_seen_at: at(Span::from_mins(9)), ..daemon.clone() }).await.unwrap();
    assert!(b.provisioner_seen_since(at(Span::from_mins(9))).await.unwrap());
    b.set_setting("paused", "true").await.unwrap();
    b.commit().await.unwrap();

    let mut c = begin(&h, 0).await;
    assert_eq!(c.setting("paused").await.unwrap().as_deref(), Some("true"));
    assert_eq!(c.setting("absent").await.unwrap(), None);
    c.rollback().await.unwrap();
}

/// Multi-row reads come in their documented order and pages.
pub async fn reads_are_ordered_and_paged<H: Harness>() {
    let h = start::<H>().await;
    let mut w = seed(h.store(0), 5).await;
    let version = w.version.id;
    let mut setup = begin(&h, 0).await;
    for number in 2..=4 {
        let (b, mut j) = build(&mut w.ids, &w.workspaces[0], number, Transition::Stop, version);
        j.status = JobStatus::Pending;
        setup.insert_build(&b, &j).await.unwrap();
    }
    setup.commit().await.unwrap();

    let mut a = begin(&h, 0).await;
    let mut sorted: Vec<_> = w.workspaces.iter().map(|x| x.id).collect();
    sorted.sort();
    let first: Vec<_> = a.workspaces(None, 2).await.unwrap().into_iter().map(|x| x.id).collect();
    let rest: Vec<_> = a.workspaces(Some(first[1]), 10).await.unwrap().into_iter().map(|x| x.id).collect();
    assert_eq!([first, rest].concat(), sorted);
    let numbers: Vec<i32> =
        a.builds_of_workspace(w.ws_id(0), 10).await.unwrap().into_iter().map(|b| b.build.number).collect();
    assert_eq!(numbers, vec![4, 3, 2, 1]);
    assert_eq!(a.latest_build(w.ws_id(0)).await.unwrap().unwrap().build.number, 4);
    assert_eq!(a.latest_build(w.ws_id(1)).await.unwrap().unwrap().build.number, 1);
    let unfinished: Vec<_> = a.unfinished_jobs(10).await.unwrap().into_iter().map(|j| j.created_at).collect();
    assert_eq!(unfinished.len(), 3);
    assert!(unfinished.windows(2).all(|p| p[0] <= p[1]), "oldest first");
    assert_eq!(a.users(None, 10).await.unwrap(), vec![w.user.clone()]);
    assert_eq!(a.templates(None, 10).await.unwrap(), vec![w.template.clone()]);
    assert_eq!(a.versions_of_template(w.template.id, 10).await.unwrap(), vec![w.version.clone()]);
    assert_eq!(a.template_by_name("base").await.unwrap().map(|t| t.id), Some(w.template.id));
    a.rollback().await.unwrap();
}

/// The outbox: delivery marks and failed attempts are recorded; claims see them.
pub async fn notification_delivery_marks_and_retries<H: Harness>() {
    let h = start::<H>().await;
    let mut w = seed(h.store(0), 1).await;
    let (n1, n2) = (fixtures::notification_id(&mut w.ids), fixtures::notification_id(&mut w.ids));
    let mut a = begin(&h, 0).await;
    assert!(a.enqueue_notification(n1, &notification(w.user.id, "one"), t0()).await.unwrap());
    assert!(a.enqueue_notification(n2, &notification(w.user.id, "two"), t0()).await.unwrap());
    assert!(!a.enqueue_notification(n2, &notification(w.user.id, "two"), t0()).await.unwrap(), "own row: nothing");
    a.commit().await.unwrap();

    let mut b = begin(&h, 0).await;
    let claimed = b.claim_due_notifications(t0(), 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    b.mark_notification_delivered(n1, at(Span::from_secs(1))).await.unwrap();
    b.mark_notification_failed(n2, at(Span::from_mins(1))).await.unwrap();
    b.commit().await.unwrap();

    let mut c = begin(&h, 0).await;
    assert!(c.claim_due_notifications(at(Span::from_secs(30)), 10).await.unwrap().is_empty());
    let due = c.claim_due_notifications(at(Span::from_mins(1)), 10).await.unwrap();
    assert_eq!(due.iter().map(|n| (n.id, n.attempts)).collect::<Vec<_>>(), vec![(n2, 1)]);
    let all = c.notifications(None, 10).await.unwrap();
    let delivered = all.iter().find(|n| n.id == n1).unwrap();
    assert_eq!(delivered.delivered_at, Some(at(Span::from_secs(1))));
    assert!(matches!(
        c.mark_notification_delivered(fixtures::notification_id(&mut w.ids), t0()).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(c.notifications(None, 10).await.is_ok(), "not found does not abort the transaction");
    c.rollback().await.unwrap();
}
