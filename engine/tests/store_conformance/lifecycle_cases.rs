//! The lifecycle scan (`Tx::lifecycle_candidates`): one case per arm of
//! semantics/lifecycle.md §3, each with workspaces just inside and just
//! outside the arm, plus the scan's exclusions and its keyset paging.

use std::collections::BTreeSet;

use engine::ids::{IdGen, VersionId, WorkspaceId, PREBUILDS_USER_ID};
use engine::model::{Build, Job, JobStatus, Template, Transition, User, UserStatus, Workspace};
use engine::store::Tx;
use engine::time::{Span, Timestamp};

use crate::fixtures::{self, at};
use crate::harness::{begin, Harness, HarnessOptions};

/// The tick every arm case scans at.
fn tick() -> Timestamp {
    at(Span::from_days(2))
}

/// One workspace's world, as the arm cases shape it.
struct Shape {
    user: User,
    template: Template,
    workspace: Workspace,
    build: Build,
    job: Job,
}

/// Seeds its own user, template, version, workspace, build 1 and job (a
/// succeeded stop, by default on no arm), shaped by `shape`; returns the workspace.
async fn seed_shaped<H: Harness>(h: &H, ids: &mut IdGen, shape: impl FnOnce(&mut Shape)) -> WorkspaceId {
    let name = format!("u{}", ids.next_uuid().simple());
    let user = fixtures::user(ids, &name);
    let version_id: VersionId = ids.next_id();
    let template = fixtures::template(ids, &name, version_id);
    let workspace = fixtures::workspace(ids, user.id, &template, &name);
    let (build, job) = fixtures::build(ids, &workspace, 1, Transition::Stop, version_id);
    let mut s = Shape { user, template, workspace, build, job };
    shape(&mut s);
    let mut tx = begin(h, 0).await;
    if s.user.id != PREBUILDS_USER_ID || tx.user(PREBUILDS_USER_ID).await.unwrap().is_none() {
        tx.insert_user(&s.user).await.unwrap();
    }
    tx.insert_template(&s.template).await.unwrap();
    tx.insert_version(&fixtures::version(version_id, &s.template)).await.unwrap();
    s.workspace.owner_id = s.user.id;
    tx.insert_workspace(&s.workspace).await.unwrap();
    tx.insert_build(&s.build, &s.job).await.unwrap();
    tx.commit().await.unwrap();
    s.workspace.id
}

async fn scan<H: Harness>(h: &H, tick_at: Timestamp) -> BTreeSet<WorkspaceId> {
    let mut tx = begin(h, 1).await;
    let found = tx.lifecycle_candidates(tick_at, None, 1_000).await.unwrap();
    tx.rollback().await.unwrap();
    found.into_iter().map(|(_, ws)| ws).collect()
}

fn start(s: &mut Shape) {
    s.build.transition = Transition::Start;
}

async fn harness<H: Harness>() -> (H, IdGen) {
    (H::start(HarnessOptions::default()).await, fixtures::ids())
}

/// Asserts the scan at `tick()` holds exactly `inside` among `inside` and `outside`.
async fn assert_scan<H: Harness>(h: &H, inside: &[WorkspaceId], outside: &[WorkspaceId]) {
    let found = scan(h, tick()).await;
    for ws in inside {
        assert!(found.contains(ws), "{ws} should be a candidate");
    }
    for ws in outside {
        assert!(!found.contains(ws), "{ws} should not be a candidate");
    }
}

/// A: transition start, job not failed, not dormant, and the owner suspended
/// or the deadline reached.
pub async fn arm_a_autostop_deadline_passed_or_owner_suspended<H: Harness>() {
    let (h, mut ids) = harness::<H>().await;
    let due = seed_shaped(&h, &mut ids, |s| {
        start(s);
        s.build.deadline = Some(tick());
    })
    .await;
    let suspended = seed_shaped(&h, &mut ids, |s| {
        start(s);
        s.user.status = UserStatus::Suspended;
    })
    .await;
    let early = seed_shaped(&h, &mut ids, |s| {
        start(s);
        s.build.deadline = Some(tick() + Span::from_micros(1));
    })
    .await;
    let failed = seed_shaped(&h, &mut ids, |s| {
        start(s);
        s.build.deadline = Some(tick() - Span::from_hours(1));
        s.job.status = JobStatus::Failed;
    })
    .await;
    let dormant = seed_shaped(&h, &mut ids, |s| {
        start(s);
        s.build.deadline = Some(tick() - Span::from_hours(1));
        s.workspace.dormant_at = Some(tick() - Span::from_hours(1));
    })
    .await;
    let stopped = seed_shaped(&h, &mut ids, |s| s.build.deadline = Some(tick() - Span::from_hours(1))).await;
    assert_scan(&h, &[due, suspended], &[early, failed, dormant, stopped]).await;
}

/// B: transition stop, job not failed, not dormant, owner active, an
/// autostart schedule, and `next_start_at` unset or reached.
pub async fn arm_b_autostart_due_for_stopped_workspaces<H: Harness>() {
    let (h, mut ids) = harness::<H>().await;
    let schedule = Some("CRON_TZ=UTC 0 9 * * 1-5".to_owned());
    let due = seed_shaped(&h, &mut ids, |s| {
        s.workspace.autostart = schedule.clone();
        s.workspace.next_start_at = Some(tick());
    })
    .await;
    let unset = seed_shaped(&h, &mut ids, |s| s.workspace.autostart = schedule.clone()).await;
    let later = seed_shaped(&h, &mut ids, |s| {
        s.workspace.autostart = schedule.clone();
        s.workspace.next_start_at = Some(tick() + Span::from_mins(1));
    })
    .await;
    let no_schedule = seed_shaped(&h, &mut ids, |_| {}).await;
    let suspended = seed_shaped(&h, &mut ids, |s| {
        s.workspace.autostart = schedule.clone();
        s.user.status = UserStatus::Suspended;
    })
    .await;
    let failed = seed_shaped(&h, &mut ids, |s| {
        s.workspace.autostart = schedule.clone();
        s.job.status = JobStatus::Failed;
    })
    .await;
    assert_scan(&h, &[due, unset], &[later, no_schedule, suspended, failed]).await;
}

/// C: not dormant, `time_til_dormant > 0`, unused for longer than it.
pub async fn arm_c_dormancy_after_inactivity<H: Harness>() {
    let (h, mut ids) = harness::<H>().await;
    let idle = seed_shaped(&h, &mut ids, |s| {
        s.template.time_til_dormant = Span::from_hours(1);
        s.workspace.last_used_at = tick() - Span::from_hours(1) - Span::from_micros(1);
    })
    .await;
    let exactly = seed_shaped(&h, &mut ids, |s| {
        s.template.time_til_dormant = Span::from_hours(1);
        s.workspace.last_used_at = tick() - Span::from_hours(1);
    })
    .await;
    let off = seed_shaped(&h, &mut ids, |s| s.workspace.last_used_at = tick() - Span::from_days(1)).await;
    let already = seed_shaped(&h, &mut ids, |s| {
        s.template.time_til_dormant = Span::from_hours(1);
        s.workspace.last_used_at = tick() - Span::from_days(1);
        s.workspace.dormant_at = Some(tick() - Span::from_hours(2));
    })
    .await;
    assert_scan(&h, &[idle], &[exactly, off, already]).await;
}

/// D: dormant, `deleting_at` set and passed, auto-delete on.
pub async fn arm_d_autodelete_of_dormant_workspaces<H: Harness>() {
    let (h, mut ids) = harness::<H>().await;
    let dormant = |s: &mut Shape, deleting_at: Timestamp| {
        s.template.time_til_dormant_autodelete = Span::from_days(1);
        s.workspace.dormant_at = Some(tick() - Span::from_days(1));
        s.workspace.deleting_at = Some(deleting_at);
    };
    let due = seed_shaped(&h, &mut ids, |s| dormant(s, tick() - Span::from_micros(1))).await;
    let exactly = seed_shaped(&h, &mut ids, |s| dormant(s, tick())).await;
    let off = seed_shaped(&h, &mut ids, |s| {
        dormant(s, tick() - Span::from_hours(1));
        s.template.time_til_dormant_autodelete = Span::ZERO;
    })
    .await;
    let unmarked = seed_shaped(&h, &mut ids, |s| {
        dormant(s, tick() - Span::from_hours(1));
        s.workspace.deleting_at = None;
    })
    .await;
    assert_scan(&h, &[due], &[exactly, off, unmarked]).await;
}

/// E: failure TTL on, job failed, a start or stop, completed longer than the TTL ago.
pub async fn arm_e_failed_build_stop_after_failure_ttl<H: Harness>() {
    let (h, mut ids) = harness::<H>().await;
    let failed = |s: &mut Shape, transition: Transition, completed_at: Timestamp| {
        s.template.failure_ttl = Span::from_hours(1);
        s.build.transition = transition;
        s.job.status = JobStatus::Failed;
        s.job.completed_at = Some(completed_at);
    };
    let old = Span::from_hours(2);
    let start_due = seed_shaped(&h, &mut ids, |s| failed(s, Transition::Start, tick() - old)).await;
    let stop_due = seed_shaped(&h, &mut ids, |s| failed(s, Transition::Stop, tick() - old)).await;
    let recent = seed_shaped(&h, &mut ids, |s| failed(s, Transition::Start, tick() - Span::from_mins(30))).await;
    let delete = seed_shaped(&h, &mut ids, |s| failed(s, Transition::Delete, tick() - old)).await;
    let off = seed_shaped(&h, &mut ids, |s| {
        failed(s, Transition::Start, tick() - old);
        s.template.failure_ttl = Span::ZERO;
    })
    .await;
    assert_scan(&h, &[start_due, stop_due], &[recent, delete, off]).await;
}

/// F: reminder on, a succeeded start, deadline or max deadline within
/// `(tick, tick + notify]` and not already announced.
pub async fn arm_f_reminder_window_before_deadline<H: Harness>() {
    let (h, mut ids) = harness::<H>().await;
    let notify = Span::from_mins(30);
    let running = |s: &mut Shape| {
        start(s);
        s.template.autostop_notify = notify;
    };
    let soon = seed_shaped(&h, &mut ids, |s| {
        running(s);
        s.build.deadline = Some(tick() + notify);
    })
    .await;
    let max_soon = seed_shaped(&h, &mut ids, |s| {
        running(s);
        s.build.max_deadline = Some(tick() + Span::from_mins(10));
        s.build.notified_autostop_deadline = Some(tick() + Span::from_hours(5));
    })
    .await;
    let announced = seed_shaped(&h, &mut ids, |s| {
        running(s);
        s.build.deadline = Some(tick() + Span::from_mins(10));
        s.build.notified_autostop_deadline = s.build.deadline;
    })
    .await;
    let far = seed_shaped(&h, &mut ids, |s| {
        running(s);
        s.build.deadline = Some(tick() + notify + Span::from_micros(1));
    })
    .await;
    let off = seed_shaped(&h, &mut ids, |s| {
        running(s);
        s.template.autostop_notify = Span::ZERO;
        s.build.deadline = Some(tick() + Span::from_mins(10));
    })
    .await;
    let pending = seed_shaped(&h, &mut ids, |s| {
        running(s);
        s.build.deadline = Some(tick() + Span::from_mins(10));
        s.job.status = JobStatus::Running;
    })
    .await;
    assert_scan(&h, &[soon, max_soon], &[announced, far, off, pending]).await;
}

/// Prebuilds and deleted workspaces are never candidates; only the latest
/// build counts; a transaction's snapshot bounds what it scans.
pub async fn scan_excludes_prebuilds_deleted_and_uses_latest_build_only<H: Harness>() {
    let (h, mut ids) = harness::<H>().await;
    let due = |s: &mut Shape| {
        start(s);
        s.build.deadline = Some(tick() - Span::from_hours(1));
    };
    let visible = seed_shaped(&h, &mut ids, due).await;
    let prebuild = seed_shaped(&h, &mut ids, |s| {
        due(s);
        s.user.id = PREBUILDS_USER_ID;
    })
    .await;
    let deleted = seed_shaped(&h, &mut ids, |s| {
        due(s);
        s.workspace.deleted = true;
    })
    .await;
    assert_scan(&h, &[visible], &[prebuild, deleted]).await;

    let mut reader = begin(&h, 1).await;
    assert!(reader.lifecycle_candidates(tick(), None, 100).await.unwrap().iter().any(|(_, ws)| *ws == visible));
    let mut tx = begin(&h, 0).await;
    let ws = tx.workspace(visible).await.unwrap().unwrap();
    let latest = tx.latest_build(visible).await.unwrap().unwrap();
    let (stop, stop_job) = fixtures::build(&mut ids, &ws, 2, Transition::Stop, latest.build.version_id);
    tx.insert_build(&stop, &stop_job).await.unwrap();
    tx.commit().await.unwrap();
    assert_scan(&h, &[], &[visible]).await;
    let still = reader.lifecycle_candidates(tick(), None, 100).await.unwrap();
    assert!(still.iter().any(|(_, ws)| *ws == visible), "the reader's snapshot still has build 1 as latest");
    reader.rollback().await.unwrap();
}

/// Pages are ordered by (latest build's version, workspace), strictly after the cursor.
pub async fn scan_pages_by_version_then_workspace<H: Harness>() {
    let (h, mut ids) = harness::<H>().await;
    for _ in 0..7 {
        seed_shaped(&h, &mut ids, |s| {
            start(s);
            s.build.deadline = Some(tick() - Span::from_hours(1));
        })
        .await;
    }
    let mut tx = begin(&h, 0).await;
    let all = tx.lifecycle_candidates(tick(), None, 100).await.unwrap();
    assert_eq!(all.len(), 7);
    assert!(all.windows(2).all(|p| p[0] < p[1]), "strictly ascending: {all:?}");
    let mut paged = Vec::new();
    let mut cursor = None;
    loop {
        let page = tx.lifecycle_candidates(tick(), cursor, 3).await.unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last().copied() else { break };
        paged.extend(page);
        cursor = Some(last);
    }
    assert_eq!(paged, all);
    tx.rollback().await.unwrap();
}
