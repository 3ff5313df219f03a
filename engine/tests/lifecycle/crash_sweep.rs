//! The crash sweep: for a tick over a fleet that touches every rule, fail each
//! store call of the tick in turn (every index, not a sample), then retry the
//! tick at the same frozen `now`, and compare the database with an undisturbed
//! run's. A second sweep makes each commit "apply, but report the connection
//! lost". Both must converge to the same state: no lost or doubled build, mark,
//! marker or outbox row; and no "job available" may go out for a job not yet
//! committed (a commit reported lost publishes nothing: provisioners poll).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use engine::model::*;
use engine::settings::Settings;
use engine::store::sqlite::{HookDecision, StatementHook, StatementInfo};
use engine::store::{StoreError, Tx};
use engine::time::{Span, Timestamp};

use crate::support::*;

fn t(hhmm: &str) -> Timestamp {
    at(&format!("2026-01-05T{hhmm}:00Z"))
}

const TICK_AT: &str = "17:00";

/// Seeds the fleet: one workspace per rule and outcome kind.
async fn fleet() -> World {
    let mut world = World::new(t("16:00"), 1, Settings::default());
    world.seed_admin().await;
    let alice = world.user("alice", UserStatus::Active).await;
    let suspended = world.user("sam", UserStatus::Suspended).await;
    let (dev, _) = world
        .template("dev", |t| {
            t.autostop_notify = Span::from_mins(30);
            t.failure_ttl = Span::from_mins(1);
            t.time_til_dormant = Span::from_days(7);
            t.time_til_dormant_autodelete = Span::from_days(30);
        })
        .await;
    let day = Span::from_days(1);
    let long_ago = t("09:00") - Span::from_days(8);

    // Rule 1: deadline reached.
    let mut autostop = WorkspaceSpec::new("autostop", alice, dev)
        .build(Transition::Start, JobStatus::Succeeded, t("09:00"))
        .deadline(t("16:59"));
    autostop.last_used = Some(t("16:00"));
    world.workspace(autostop).await;
    // Rule 1: suspended owner, no deadline.
    let mut suspended_ws =
        WorkspaceSpec::new("suspended", suspended, dev).build(Transition::Start, JobStatus::Succeeded, t("09:00"));
    suspended_ws.last_used = Some(t("16:00"));
    world.workspace(suspended_ws).await;
    // Rule 2: autostart due, moving to the active version (notification).
    let mut autostart =
        WorkspaceSpec::new("autostart", alice, dev).build(Transition::Stop, JobStatus::Succeeded, t("09:00"));
    autostart.autostart = Some("CRON_TZ=UTC 0 17 * * *".into());
    autostart.next_start_at = Some(t("17:00"));
    autostart.automatic_updates = AutomaticUpdates::Always;
    autostart.last_used = Some(t("16:00"));
    world.workspace(autostart).await;
    // 4c: autostart set, next_start_at unset: written even if nothing else happens.
    let mut unset =
        WorkspaceSpec::new("next-unset", alice, dev).build(Transition::Stop, JobStatus::Succeeded, t("09:00"));
    unset.autostart = Some("CRON_TZ=UTC 0 9 * * 1-5".into());
    unset.last_used = Some(t("16:00"));
    world.workspace(unset).await;
    // Rule 3: failed start long enough ago.
    let mut failed = WorkspaceSpec::new("failed", alice, dev)
        .build(Transition::Start, JobStatus::Failed, t("16:50"))
        .completed(t("16:50"));
    failed.last_used = Some(t("16:00"));
    world.workspace(failed).await;
    // Rule 4 on a running workspace: stop and mark.
    let mut idle_running =
        WorkspaceSpec::new("idle-running", alice, dev).build(Transition::Start, JobStatus::Succeeded, long_ago);
    idle_running.last_used = Some(long_ago);
    world.workspace(idle_running).await;
    // Rule 4 on a stopped workspace: mark only.
    let mut idle_stopped =
        WorkspaceSpec::new("idle-stopped", alice, dev).build(Transition::Stop, JobStatus::Succeeded, long_ago);
    idle_stopped.last_used = Some(long_ago);
    world.workspace(idle_stopped).await;
    // Rule 5: dormant past deleting_at.
    let mut delete =
        WorkspaceSpec::new("autodelete", alice, dev).build(Transition::Stop, JobStatus::Succeeded, long_ago);
    delete.dormant_at = Some(t("16:00") - Span::from_days(31));
    delete.deleting_at = Some(t("16:00") - day);
    delete.last_used = Some(long_ago);
    world.workspace(delete).await;
    // Reminder due at 17:00 for 17:20.
    let mut remind = WorkspaceSpec::new("remind", alice, dev)
        .build(Transition::Start, JobStatus::Succeeded, t("09:00"))
        .deadline(t("17:20"));
    remind.last_used = Some(t("09:00"));
    world.workspace(remind).await;
    // Waiting: deadline passed but the job is still running.
    let mut waiting = WorkspaceSpec::new("waiting", alice, dev)
        .build(Transition::Start, JobStatus::Running, t("16:58"))
        .deadline(t("16:00"));
    waiting.last_used = Some(t("16:00"));
    world.workspace(waiting).await;
    // An invalid stored schedule: an error, nothing written.
    let mut invalid =
        WorkspaceSpec::new("invalid", alice, dev).build(Transition::Stop, JobStatus::Succeeded, t("09:00"));
    invalid.autostart = Some("CRON_TZ=Nowhere/Land 0 9 * * *".into());
    invalid.last_used = Some(t("16:00"));
    world.workspace(invalid).await;

    world.add_version(dev, "v2", Vec::new()).await;
    world.advance_to(t(TICK_AT)).await;
    world.provisioner_seen().await;
    world
}

/// Everything the tick can change, by name, without ids.
async fn dump(world: &World) -> Vec<String> {
    let mut lines = Vec::new();
    let mut tx = world.tx().await;
    let workspaces = tx.workspaces(None, 1000).await.unwrap();
    let mut names = std::collections::BTreeMap::new();
    for ws in &workspaces {
        names.insert(ws.id, ws.name.clone());
    }
    for ws in &workspaces {
        lines.push(format!(
            "workspace {} next_start_at={:?} dormant_at={:?} deleting_at={:?} last_used={:?} deleted={}",
            ws.name, ws.next_start_at, ws.dormant_at, ws.deleting_at, ws.last_used_at, ws.deleted
        ));
        let mut builds = tx.builds_of_workspace(ws.id, 100).await.unwrap();
        builds.reverse();
        for b in builds {
            let version = tx.version(b.build.version_id).await.unwrap().map(|v| v.name).unwrap_or_default();
            lines.push(format!(
                "  build {} #{} {} {} {} {} deadline={:?} max={:?} marker={:?} params={:?}",
                ws.name,
                b.build.number,
                b.build.transition,
                b.build.reason,
                b.job.status,
                version,
                b.build.deadline,
                b.build.max_deadline,
                b.build.notified_autostop_deadline,
                b.build.parameters,
            ));
        }
    }
    for n in tx.notifications(None, 1000).await.unwrap() {
        let workspace = n.workspace_id.and_then(|id| names.get(&id).cloned()).unwrap_or_default();
        lines.push(format!("notification {} {} {:?}", n.kind, workspace, n.payload));
    }
    tx.rollback().await.unwrap();
    lines.sort();
    lines
}

/// Fails (or commit-unknowns) the statement with a given index, counting every
/// statement the tick makes.
struct FailNth {
    seen: AtomicU32,
    target: u32,
    commit_unknown: bool,
}

impl StatementHook for FailNth {
    fn on_statement(&self, info: &StatementInfo) -> HookDecision {
        let index = self.seen.fetch_add(1, Ordering::SeqCst);
        if index == self.target {
            if self.commit_unknown {
                if info.op == "commit" {
                    return HookDecision::CommitUnknown;
                }
            } else {
                return HookDecision::Fail(StoreError::connection_lost(format!("injected at statement {index}")));
            }
        }
        HookDecision::Proceed { latency: Span::from_millis(1) }
    }
}

/// Runs the sweep; returns the number of statements of the undisturbed tick,
/// or the first divergence found.
async fn sweep() -> Result<u32, String> {
    // The undisturbed run, counting the tick's statements.
    let world = fleet().await;
    let counter = Arc::new(FailNth { seen: AtomicU32::new(0), target: u32::MAX, commit_unknown: false });
    world.server.set_hook(Some(counter.clone()));
    let stats = world.replica(0).tick_at(t(TICK_AT)).await;
    world.server.set_hook(None);
    let statements = counter.seen.load(Ordering::SeqCst);
    // Every rule acted: 6 builds (autostop, suspended, autostart, failedstop,
    // dormancy stop, autodelete), one mark, one reminder, one error.
    assert_eq!((stats.transitions, stats.marks, stats.reminders, stats.errors), (6, 1, 1, 1), "{stats:?}");
    let published = world.replica(0).published();
    assert_eq!(published.len(), 6, "one \"job available\" per build: {published:?}");
    assert!(published.iter().all(|p| p.committed), "{published:?}");
    let expected = dump(&world).await;

    for commit_unknown in [false, true] {
        for target in 0..statements {
            let world = fleet().await;
            let hook = Arc::new(FailNth { seen: AtomicU32::new(0), target, commit_unknown });
            world.server.set_hook(Some(hook.clone()));
            world.replica(0).tick_at(t(TICK_AT)).await;
            world.server.set_hook(None);
            // The retried tick, at the same frozen now.
            world.replica(0).tick_at(t(TICK_AT)).await;
            let kind = if commit_unknown { "commit unknown" } else { "failure" };
            if let Some(early) = world.replica(0).published().into_iter().find(|p| !p.committed) {
                return Err(format!("{kind} at statement {target}: published before its commit: {early:?}"));
            }
            let got = dump(&world).await;
            if got != expected {
                let missing: Vec<&String> = expected.iter().filter(|l| !got.contains(l)).collect();
                let extra: Vec<&String> = got.iter().filter(|l| !expected.contains(l)).collect();
                return Err(format!(
                    "{kind} at statement {target} of {statements}: missing {missing:#?}, extra {extra:#?}"
                ));
            }
        }
    }
    Ok(statements)
}

#[tokio::test(start_paused = true)]
async fn crash_at_every_store_call_of_a_tick_converges_on_retry() {
    let statements = sweep().await.unwrap_or_else(|divergence| panic!("{divergence}"));
    assert!(statements > 50, "the fleet's tick makes {statements} statements");
}

/// The sweep can fail: with the reference's old reminder design switched back
/// on, some crash point loses the reminder.
#[cfg(feature = "mutations")]
#[tokio::test(start_paused = true)]
async fn crash_sweep_catches_reminder_enqueued_after_commit() {
    use engine::mutations::{self, Mutation};
    mutations::set(Mutation::ReminderEnqueuedAfterCommit, true);
    let result = sweep().await;
    mutations::set(Mutation::ReminderEnqueuedAfterCommit, false);
    let divergence = result.expect_err("the mutation must be caught");
    assert!(divergence.contains("autostop_reminder"), "{divergence}");
}
