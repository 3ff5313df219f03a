//! The lifecycle scan (`Tx::lifecycle_candidates`): one case per arm of
//! semantics/lifecycle.md §3, each with workspaces just inside and just
//! outside the arm, plus the scan's exclusions, its keyset paging, and its
//! equality with the pure statement of the arms (`rules::eligibility`) over
//! random fleets.

use std::collections::{BTreeMap, BTreeSet};

use engine::ids::{IdGen, TemplateId, UserId, VersionId, WorkspaceId, PREBUILDS_USER_ID};
use engine::model::{Build, BuildWithJob, Job, JobStatus, Template, Transition, User, UserStatus, Workspace};
use engine::rules::eligibility::{candidate_arms, Arm};
use engine::rules::lifecycle::LifecycleView;
use engine::store::{LifecycleCursor, Tx};
use engine::time::{Span, Timestamp};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

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

/// A random fleet: users (some suspended or dormant, some never stored),
/// templates (each arm's span on, off, negative or huge; some never stored),
/// workspaces (some deleted, owned by the prebuilds user, without builds),
/// and up to four builds each (numbers with gaps, any transition and job
/// status), every instant on or next to one of the ticks it is scanned at.
struct Fleet {
    users: Vec<User>,
    templates: Vec<Template>,
    workspaces: Vec<Workspace>,
    builds: Vec<(Build, Job)>,
    /// Users and templates the workspaces name but the store never got.
    missing_users: Vec<UserId>,
    missing_templates: Vec<TemplateId>,
}

/// The instants a random fleet is scanned at.
fn random_ticks() -> Vec<Timestamp> {
    let base = tick();
    vec![base - Span::from_days(1), base, base + Span::from_mins(37), base + Span::from_hours(1) + Span::from_micros(1)]
}

/// An instant on or next to a tick, at the spans the templates use.
fn near_a_tick(rng: &mut ChaCha8Rng, ticks: &[Timestamp]) -> Timestamp {
    let offsets = [
        -Span::from_days(3),
        -Span::from_days(1) - Span::from_micros(1),
        -Span::from_days(1),
        -Span::from_hours(1) - Span::from_micros(1),
        -Span::from_hours(1),
        -Span::from_mins(30),
        -Span::from_micros(1),
        Span::ZERO,
        Span::from_micros(1),
        Span::from_mins(10),
        Span::from_mins(30),
        Span::from_mins(30) + Span::from_micros(1),
        Span::from_hours(1),
        Span::from_days(2),
    ];
    let tick = *ticks.choose(rng).expect("ticks");
    tick + *offsets.choose(rng).expect("offsets")
}

fn maybe(rng: &mut ChaCha8Rng, ticks: &[Timestamp], probability: f64) -> Option<Timestamp> {
    rng.random_bool(probability).then(|| near_a_tick(rng, ticks))
}

fn span_of(rng: &mut ChaCha8Rng, choices: &[Span]) -> Span {
    *choices.choose(rng).expect("choices")
}

fn random_fleet(rng: &mut ChaCha8Rng, ids: &mut IdGen, workspaces: usize) -> Fleet {
    let ticks = random_ticks();
    let (hour, day, min) = (Span::from_hours(1), Span::from_days(1), Span::from_mins(1));
    let mut users: Vec<User> = (0..30)
        .map(|index| {
            let mut user = fixtures::user(ids, &format!("user-{index}"));
            user.status = *[UserStatus::Active, UserStatus::Active, UserStatus::Suspended, UserStatus::Dormant]
                .choose(rng)
                .expect("status");
            user
        })
        .collect();
    let mut prebuilds = fixtures::user(ids, "prebuilds");
    prebuilds.id = PREBUILDS_USER_ID;
    users.push(prebuilds);
    let missing_users: Vec<UserId> = (0..2).map(|_| ids.next_id()).collect();
    let versions: Vec<VersionId> = (0..5).map(|_| ids.next_id()).collect();
    let templates: Vec<Template> = (0..12)
        .map(|index| {
            let mut template = fixtures::template(ids, &format!("template-{index}"), versions[0]);
            template.time_til_dormant = span_of(rng, &[Span::ZERO, Span::ZERO, hour, day, -hour, Span::MAX]);
            template.time_til_dormant_autodelete = span_of(rng, &[Span::ZERO, day, hour]);
            template.failure_ttl = span_of(rng, &[Span::ZERO, min, hour, day]);
            template.autostop_notify = span_of(rng, &[Span::ZERO, Span::from_mins(30), hour, Span::MAX]);
            template
        })
        .collect();
    let missing_templates: Vec<TemplateId> = vec![ids.next_id()];
    let mut fleet_workspaces = Vec::new();
    let mut builds = Vec::new();
    for index in 0..workspaces {
        let owner = match rng.random_range(0..100) {
            0..=4 => PREBUILDS_USER_ID,
            5..=7 => *missing_users.choose(rng).expect("missing users"),
            _ => users[rng.random_range(0..30)].id,
        };
        let template = templates.choose(rng).expect("templates");
        let mut workspace = fixtures::workspace(ids, owner, template, &format!("ws-{index}"));
        if rng.random_range(0..100) < 3 {
            workspace.template_id = missing_templates[0];
        }
        workspace.autostart = rng.random_bool(0.5).then(|| "CRON_TZ=UTC 0 9 * * 1-5".to_owned());
        workspace.last_used_at = near_a_tick(rng, &ticks);
        workspace.dormant_at = maybe(rng, &ticks, 0.25);
        workspace.deleting_at = maybe(rng, &ticks, 0.4);
        workspace.next_start_at = maybe(rng, &ticks, 0.6);
        workspace.deleted = rng.random_range(0..100) < 5;
        let mut number = 0;
        for _ in 0..rng.random_range(0..=4) {
            number += rng.random_range(1..=2);
            let transition = *Transition::ALL.choose(rng).expect("transition");
            let version = *versions.choose(rng).expect("versions");
            let (mut build, mut job) = fixtures::build(ids, &workspace, number, transition, version);
            build.deadline = maybe(rng, &ticks, 0.7);
            build.max_deadline = maybe(rng, &ticks, 0.4);
            build.notified_autostop_deadline = match rng.random_range(0..4) {
                0 => build.deadline,
                1 => build.max_deadline,
                2 => maybe(rng, &ticks, 0.5),
                _ => None,
            };
            job.status = *JobStatus::ALL.choose(rng).expect("status");
            job.completed_at = maybe(rng, &ticks, 0.8);
            builds.push((build, job));
        }
        fleet_workspaces.push(workspace);
    }
    Fleet { users, templates, workspaces: fleet_workspaces, builds, missing_users, missing_templates }
}

async fn store_fleet<H: Harness>(h: &H, fleet: &Fleet) {
    let mut tx = begin(h, 0).await;
    for user in &fleet.users {
        if tx.user(user.id).await.unwrap().is_none() {
            tx.insert_user(user).await.unwrap();
        }
    }
    for template in &fleet.templates {
        tx.insert_template(template).await.unwrap();
    }
    for workspace in &fleet.workspaces {
        tx.insert_workspace(workspace).await.unwrap();
    }
    for (build, job) in &fleet.builds {
        tx.insert_build(build, job).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// What the pure arms admit at `tick_at`, in the scan's order, and which
/// arms admitted them. A workspace whose owner or template the store lacks
/// has no view: never a candidate.
fn expected_candidates(fleet: &Fleet, tick_at: Timestamp, arms: &mut BTreeSet<Arm>) -> Vec<LifecycleCursor> {
    let users: BTreeMap<UserId, &User> = fleet.users.iter().map(|u| (u.id, u)).collect();
    let templates: BTreeMap<TemplateId, &Template> = fleet.templates.iter().map(|t| (t.id, t)).collect();
    let mut latest: BTreeMap<WorkspaceId, &(Build, Job)> = BTreeMap::new();
    for entry in &fleet.builds {
        let newer = latest.get(&entry.0.workspace_id).is_none_or(|(b, _)| b.number < entry.0.number);
        if newer {
            latest.insert(entry.0.workspace_id, entry);
        }
    }
    let mut out = Vec::new();
    for workspace in &fleet.workspaces {
        let (Some(owner), Some(template)) = (users.get(&workspace.owner_id), templates.get(&workspace.template_id))
        else {
            continue;
        };
        let latest =
            latest.get(&workspace.id).map(|(build, job)| BuildWithJob { build: build.clone(), job: job.clone() });
        let version = latest.as_ref().map(|l| l.build.version_id);
        let view = LifecycleView {
            workspace: workspace.clone(),
            owner: (*owner).clone(),
            template: (*template).clone(),
            latest,
            active_version: None,
            has_live_chat: false,
        };
        let admitted_by = candidate_arms(&view, tick_at);
        if let (false, Some(version)) = (admitted_by.is_empty(), version) {
            arms.extend(admitted_by);
            out.push((version, workspace.id));
        }
    }
    out.sort();
    out
}

/// Equal lists, or a failure naming what the scan missed and what it added.
fn assert_same(scanned: &[LifecycleCursor], expected: &[LifecycleCursor], context: &str) {
    if scanned != expected {
        let missing: Vec<_> = expected.iter().filter(|c| !scanned.contains(c)).collect();
        let extra: Vec<_> = scanned.iter().filter(|c| !expected.contains(c)).collect();
        panic!("{context}: the scan missed {missing:?}, added {extra:?} (order or duplicates if both empty)");
    }
}

/// The scan equals `rules::eligibility::candidate_arms` over random fleets
/// (a few hundred workspaces each, several ticks), as one page and paged by
/// random page sizes.
pub async fn scan_equals_the_pure_arms_on_random_fleets<H: Harness>() {
    let mut admitted = 0usize;
    let mut arms = BTreeSet::new();
    for seed in [0x5ca1_u64, 0x5ca2, 0x5ca3] {
        let h = H::start(HarnessOptions::default()).await;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut ids = IdGen::from_seed(seed);
        let fleet = random_fleet(&mut rng, &mut ids, 300);
        assert!(!fleet.missing_users.is_empty() && !fleet.missing_templates.is_empty());
        store_fleet(&h, &fleet).await;
        let mut tx = begin(&h, 1).await;
        for tick_at in random_ticks() {
            let expected = expected_candidates(&fleet, tick_at, &mut arms);
            admitted += expected.len();
            let whole = tx.lifecycle_candidates(tick_at, None, 10_000).await.unwrap();
            assert_same(&whole, &expected, &format!("seed {seed:#x}, tick {tick_at}: one page"));
            let mut paged = Vec::new();
            let mut cursor = None;
            loop {
                let limit = rng.random_range(1..=17);
                let page = tx.lifecycle_candidates(tick_at, cursor, limit).await.unwrap();
                assert!(page.len() <= limit as usize);
                paged.extend(page.iter().copied());
                if page.len() < limit as usize {
                    break;
                }
                cursor = page.last().copied();
            }
            assert_same(&paged, &expected, &format!("seed {seed:#x}, tick {tick_at}: paged"));
        }
        tx.rollback().await.unwrap();
    }
    assert!(admitted > 100, "the fleets exercise the scan: {admitted} admitted");
    let every = [Arm::Autostop, Arm::Autostart, Arm::Dormancy, Arm::Autodelete, Arm::FailedStop, Arm::Reminder];
    assert_eq!(arms, every.into_iter().collect(), "the fleets exercise every arm");
}
