//! The store conformance suite: one set of test bodies, generic over
//! [`engine::store::Store`], run against every backend.
//!
//! Each case is a two-session script from the table in
//! `shared/notes/postgres-semantics-on-sqlite.md` §2 (or a contract of the
//! `Store` trait), written with the domain operations of `Tx`. A backend arm
//! supplies a [`harness::Harness`] and one line, `conformance_cases!(name,
//! HarnessType)`; the PostgreSQL arm's line also names the guard that skips
//! its cases when no server is reachable (outside CI). Every case body runs
//! unchanged on every backend: none is skipped or replaced per arm. Tests run
//! in real time on the normal tokio runtime, so the same bodies run unchanged
//! against a real server.

mod cases;
mod fixtures;
mod harness;
mod lifecycle_cases;
#[cfg(all(feature = "postgres", not(madsim)))]
mod postgres_arm;
mod sqlite_arm;

/// The default guard of an arm: its backend is always there.
async fn always() -> bool {
    true
}

/// Instantiates every conformance case for one backend: `conformance_cases!(arm, Harness)`,
/// or `conformance_cases!(arm, Harness, if guard)` where the async fn
/// `guard()` says whether the backend is there (when it is not, every case
/// returns at once, and the guard says so loudly).
macro_rules! conformance_cases {
    ($arm:ident, $harness:ty) => {
        conformance_cases!($arm, $harness, if $crate::always);
    };
    ($arm:ident, $harness:ty, if $guard:path) => {
        conformance_cases!(@cases $arm, $harness, $guard;
            cases::c01_snapshot_is_taken_by_the_first_statement_not_by_begin,
            cases::c02_repeated_reads_see_neither_later_commits_nor_phantoms,
            cases::c03_own_writes_are_visible_to_later_statements_and_to_no_one_else,
            cases::c04_open_writes_of_others_are_not_visible,
            cases::c05_first_updater_wins_update_fails_after_concurrent_commit,
            cases::c06_locking_a_row_changed_after_the_snapshot_fails,
            cases::c07_update_predicate_is_the_snapshot_s_without_recheck,
            cases::c08_lock_wait_holds_the_connection_and_shows_as_waiting,
            cases::c09_waiter_fails_when_the_holder_commits_a_change,
            cases::c10_waiter_proceeds_when_the_holder_rolls_back,
            cases::c11_waiter_proceeds_when_the_holder_only_locked,
            cases::c12_opposite_order_updates_deadlock_and_one_is_aborted,
            cases::c13_unique_insert_waits_for_the_open_inserter,
            cases::c14_write_skew_is_allowed_both_commit,
            cases::c15_on_conflict_do_nothing_fails_when_the_hidden_inserter_commits,
            cases::c16_upsert_of_a_row_changed_after_the_snapshot_fails,
            cases::c17_skip_locked_claims_skip_rows_locked_by_others,
            cases::c18_skip_locked_claim_of_a_row_changed_after_the_snapshot_fails,
            cases::c19_advisory_try_lock_is_instant_reentrant_and_freed_at_end,
            cases::c20_aborted_transaction_rejects_statements_until_rollback,
            cases::c21_disconnect_rolls_back_and_frees_locks_at_once,
            cases::c22_vacuum_keeps_versions_an_open_snapshot_needs,
            cases::pool_times_out_after_acquire_timeout_when_all_connections_are_held,
            cases::dropped_transaction_rolls_back_and_frees_its_locks,
            cases::touch_last_used_never_moves_backwards,
            cases::unique_workspace_name_per_owner_among_non_deleted,
            cases::upserts_insert_then_update_and_keep_last_seen_monotonic,
            cases::reads_are_ordered_and_paged,
            cases::notification_delivery_marks_and_retries,
            lifecycle_cases::arm_a_autostop_deadline_passed_or_owner_suspended,
            lifecycle_cases::arm_b_autostart_due_for_stopped_workspaces,
            lifecycle_cases::arm_c_dormancy_after_inactivity,
            lifecycle_cases::arm_d_autodelete_of_dormant_workspaces,
            lifecycle_cases::arm_e_failed_build_stop_after_failure_ttl,
            lifecycle_cases::arm_f_reminder_window_before_deadline,
            lifecycle_cases::scan_excludes_prebuilds_deleted_and_uses_latest_build_only,
            lifecycle_cases::scan_pages_by_version_then_workspace,
            lifecycle_cases::scan_equals_the_pure_arms_on_random_fleets,
        );
    };
    (@cases $arm:ident, $harness:ty, $guard:path; $($module:ident :: $case:ident),* $(,)?) => {
        mod $arm {
            $(
                #[tokio::test]
                async fn $case() {
                    if !$guard().await {
                        return;
                    }
                    $crate::harness::bounded(stringify!($case), $crate::$module::$case::<$harness>()).await;
                }
            )*
        }
    };
}

conformance_cases!(sqlite, crate::sqlite_arm::SqliteHarness);
#[cfg(all(feature = "postgres", not(madsim)))]
conformance_cases!(postgres, crate::postgres_arm::PgHarness, if crate::postgres_arm::server_available);
