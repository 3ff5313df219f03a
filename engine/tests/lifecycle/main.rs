//! Lifecycle catalogue items that need drivers, replicas, the API or crashes
//! (semantics/lifecycle.md §9), each named `lc_NN_…`; plus the crash sweep that
//! fails every store call of a tick in turn and shows a retried tick converges.

mod crash_sweep;
mod support;

use std::sync::Arc;

use engine::api::{JobResult, TemplateUpdate, WorkspaceUpdate};
use engine::events::WorkspaceOutcome;
use engine::model::*;
use engine::notify::{deliver_due, DeliveryError, NotificationSink};
use engine::pubsub::Topic;
use engine::rules::bump::ActivitySource;
use engine::runtime::Clock;
use engine::settings::Settings;
use engine::store::sqlite::{HookDecision, StatementHook, StatementInfo};
use engine::store::{StoreError, Subsystem, Tx};
use engine::time::{Span, Timestamp};

use support::*;

const MON: &str = "2026-01-05T";

fn t(hhmm: &str) -> Timestamp {
    at(&format!("{MON}{hhmm}:00Z"))
}

async fn world_at(start: Timestamp, replicas: usize) -> World {
    let world = World::new(start, replicas, Settings::default());
    world.seed_admin().await;
    world
}

fn errors(outcomes: &[(engine::ids::WorkspaceId, WorkspaceOutcome)]) -> Vec<String> {
    outcomes
        .iter()
        .filter_map(|(_, o)| match o {
            WorkspaceOutcome::Error { kind, detail } => Some(format!("{kind}: {detail}")),
            _ => None,
        })
        .collect()
}

// ---- §9 items 1-6: races, pools, the scan, the provisioner gate ----------------------

#[tokio::test(start_paused = true)]
async fn lc_01_two_replicas_tick_at_once_one_autostart() {
    let mut world = world_at(t("08:00"), 2).await;
    let alice = world.user("alice", UserStatus::Active).await;
    let (dev, _) = world.template("dev", |_| {}).await;
    let mut spec = WorkspaceSpec::new("w1", alice, dev).build(Transition::Stop, JobStatus::Succeeded, t("07:00"));
    spec.autostart = Some("CRON_TZ=UTC 0 9 * * *".into());
    spec.next_start_at = Some(t("09:00"));
    world.workspace(spec).await;
    world.advance_to(t("09:00")).await;
    world.provisioner_seen().await;
    world.interleave();

    let (a, b) = tokio::join!(world.replica(0).tick(), world.replica(1).tick());
    assert_eq!(a.transitions + b.transitions, 1, "exactly one replica builds: {a:?} {b:?}");
    assert_eq!(a.errors + b.errors, 0);
    // The other replica found the lock taken, or lost the race on the build number.
    assert_eq!(a.lock_busy + b.lock_busy + a.lost_races + b.lost_races, 1, "{a:?} {b:?}");
    let built = world.builds_with("w1", BuildReason::Autostart).await;
    assert_eq!(built.len(), 1);
    // §2 step 5: one "job available", after the commit, naming the build's job;
    // nothing from the replica that lost.
    let published = [world.replica(0).published(), world.replica(1).published()].concat();
    let expected = Published { topic: Topic::JobAvailable, job: built[0].job.id.to_string(), committed: true };
    assert_eq!(published, vec![expected]);
}

/// A counting hook that hangs one statement of one subsystem for a while, so a
/// test can interleave another transaction exactly there.
struct HangOnce {
    subsystem: Subsystem,
    op: &'static str,
    until: Timestamp,
    fired: std::sync::atomic::AtomicBool,
}

impl StatementHook for HangOnce {
    fn on_statement(&self, info: &StatementInfo) -> HookDecision {
        if info.subsystem == self.subsystem
            && info.op == self.op
            && !self.fired.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return HookDecision::Hang { until: self.until };
        }
        HookDecision::Proceed { latency: Span::ZERO }
    }
}

#[tokio::test(start_paused = true)]
async fn lc_02_user_start_takes_the_build_number_lost_race_without_notification() {
    let mut world = world_at(t("08:00"), 1).await;
    let alice = world.user("alice", UserStatus::Active).await;
    let (dev, _) = world.template("dev", |_| {}).await;
    let mut spec = WorkspaceSpec::new("w1", alice, dev).build(Transition::Stop, JobStatus::Succeeded, t("07:00"));
    spec.autostart = Some("CRON_TZ=UTC 0 9 * * *".into());
    spec.next_start_at = Some(t("09:00"));
    spec.automatic_updates = AutomaticUpdates::Always;
    world.workspace(spec).await;
    world.add_version(dev, "v2", Vec::new()).await; // autostart would notify an update
    world.advance_to(t("09:00")).await;
    world.provisioner_seen().await;

    // The tick stalls on its build insert while the user's start commits.
    world.server.set_hook(Some(Arc::new(HangOnce {
        subsystem: Subsystem::Lifecycle,
        op: "insert_build",
        until: t("09:00") + secs(1),
        fired: Default::default(),
    })));
    let w1 = world.id("w1");
    let (stats, user) = tokio::join!(world.replica(0).tick(), async {
        world.replica(0).api.build(w1, alice, Transition::Start, world.now()).await
    });
    world.server.set_hook(None);
    user.expect("the user's start succeeds");
    assert_eq!(stats.lost_races, 1, "{stats:?}");
    assert_eq!(stats.errors, 0, "a lost race is not an error: {stats:?}");
    let outcomes = world.replica(0).outcomes();
    assert!(outcomes.iter().any(|(_, o)| *o == WorkspaceOutcome::LostRace), "{outcomes:?}");
    assert!(world.notifications_of(NotificationKind::WorkspaceAutoUpdated).await.is_empty());
    assert_eq!(world.builds_with("w1", BuildReason::Autostart).await.len(), 0);
    let builds = world.builds("w1").await;
    assert_eq!(builds.len(), 2, "the seeded stop and the user's start");
    assert_eq!((builds[1].build.transition, builds[1].build.reason), (Transition::Start, BuildReason::Initiator));
    // The user's committed start is published; the tick's rolled-back insert is not.
    let expected = Published { topic: Topic::JobAvailable, job: builds[1].job.id.to_string(), committed: true };
    assert_eq!(world.replica(0).published(), vec![expected]);
}

#[tokio::test(start_paused = true)]
async fn lc_03_fifteen_dormant_workspaces_with_pool_five_no_deadlock() {
    let settings = Settings { db_pool_size: 5, ..Settings::default() };
    let mut world = World::new(t("10:00"), 1, settings);
    world.seed_admin().await;
    let alice = world.user("alice", UserStatus::Active).await;
    let (dev, _) = world.template("dev", |t| t.time_til_dormant = Span::from_days(7)).await;
    for i in 0..15 {
        let mut spec = WorkspaceSpec::new(&format!("w{i}"), alice, dev).build(
            Transition::Start,
            JobStatus::Succeeded,
            t("10:00") - Span::from_days(8),
        );
        spec.last_used = Some(t("10:00") - Span::from_days(8));
        world.workspace(spec).await;
    }
    world.advance_to(t("10:01")).await;
    world.provisioner_seen().await;
    world.interleave();
    let stats = world.replica(0).tick().await;
    assert_eq!(stats.transitions, 15, "{stats:?}");
    assert_eq!(stats.errors + stats.conflicts, 0, "{stats:?}");
    for i in 0..15 {
        let name = format!("w{i}");
        assert!(world.ws(&name).await.dormant_at.is_some());
        assert_eq!(world.builds_with(&name, BuildReason::Dormancy).await.len(), 1);
    }
    assert_eq!(world.notifications_of(NotificationKind::WorkspaceDormant).await.len(), 15);
}

/// Records the most lifecycle connections ever held at once.
struct PoolWatermark {
    store: Arc<engine::store::sqlite::SqliteStore>,
    max: std::sync::atomic::AtomicU32,
}

impl StatementHook for PoolWatermark {
    fn on_statement(&self, _info: &StatementInfo) -> HookDecision {
        let stats = self.store.pool_stats();
        let lifecycle = stats.in_use_by.get(&Subsystem::Lifecycle).copied().unwrap_or(0);
        self.max.fetch_max(lifecycle, std::sync::atomic::Ordering::SeqCst);
        HookDecision::Proceed { latency: Span::from_millis(1) }
    }
}

#[tokio::test(start_paused = true)]
async fn lc_04_ten_thousand_candidates_at_most_workers_transactions_open() {
    let world = world_at(t("10:00"), 1).await;
    let alice = world.user("alice", UserStatus::Active).await;
    let (dev, _) = world.template("dev", |_| {}).await;
    // Past their deadline but with a running job: every one is a candidate and
    // each waits (reads only).
    let mut tx = world.tx().await;
    let template = tx.template(dev).await.unwrap().unwrap();
    for i in 0..10_000u32 {
        let id = world.ids.next();
        let ws = Workspace {
            id,
            owner_id: alice,
            template_id: dev,
            name: format!("w{i}"),
            ttl: Some(hours(8)),
            autostart: None,
            automatic_updates: AutomaticUpdates::Never,
            last_used_at: t("09:00"),
            dormant_at: None,
            deleting_at: None,
            next_start_at: None,
            deleted: false,
            created_at: t("09:00"),
        };
        tx.insert_workspace(&ws).await.unwrap();
        let build = Build {
            id: world.ids.next(),
            workspace_id: id,
            number: 1,
            transition: Transition::Start,
            reason: BuildReason::Initiator,
            initiator_id: alice,
            version_id: template.active_version_id,
            job_id: world.ids.next(),
            preset_id: None,
            parameters: Parameters::new(),
            created_at: t("09:00"),
            deadline: Some(t("09:30")),
            max_deadline: None,
            notified_autostop_deadline: None,
            agent_ready_at: None,
        };
        let job = Job {
            id: build.job_id,
            build_id: build.id,
            workspace_id: id,
            template_id: dev,
            version_id: build.version_id,
            status: JobStatus::Running,
            is_prebuild: false,
            created_at: t("09:00"),
            started_at: Some(t("09:00")),
            completed_at: None,
            canceled_at: None,
            worker_id: None,
            error: None,
        };
        tx.insert_build(&build, &job).await.unwrap();
    }
    tx.commit().await.unwrap();
    let watermark =
        Arc::new(PoolWatermark { store: world.replica(0).store.clone(), max: std::sync::atomic::AtomicU32::new(0) });
    world.server.set_hook(Some(watermark.clone()));
    let stats = world.replica(0).tick().await;
    world.server.set_hook(None);
    assert_eq!(stats.candidates, 10_000);
    assert_eq!(stats.errors, 0);
    let workers = Settings::default().lifecycle_workers() as u32;
    let max = watermark.max.load(std::sync::atomic::Ordering::SeqCst);
    assert!(max >= 1 && max <= workers, "at most {workers} lifecycle transactions open, saw {max}");
}

#[tokio::test(start_paused = true)]
async fn lc_05_provisioner_gate_91s_stale_no_build_80s_builds() {
    for (seen_ago, builds) in [(secs(91), 0), (secs(80), 1)] {
        let mut world = world_at(t("08:00"), 1).await;
        let alice = world.user("alice", UserStatus::Active).await;
        let (dev, _) = world.template("dev", |_| {}).await;
        let mut spec = WorkspaceSpec::new("w1", alice, dev).build(Transition::Stop, JobStatus::Succeeded, t("07:00"));
        spec.autostart = Some("CRON_TZ=UTC 0 9 * * *".into());
        spec.next_start_at = Some(t("09:00"));
        world.workspace(spec).await;
        world.advance_to(t("09:00") - seen_ago).await;
        world.provisioner_seen().await;
        world.advance_to(t("09:00")).await;
        let stats = world.replica(0).tick().await;
        assert_eq!(stats.transitions, builds, "seen {seen_ago} ago: {stats:?}");
        assert_eq!(stats.errors, 0, "seen {seen_ago} ago: {stats:?}");
        assert_eq!(stats.no_provisioner, 1 - builds, "seen {seen_ago} ago: {stats:?}");
        if builds == 0 {
            // The missed instant stays due and fires once a provisioner is back.
            world.advance_to(t("09:00") + secs(30)).await;
            world.provisioner_seen().await;
            world.advance_to(t("09:01")).await;
            assert_eq!(world.replica(0).tick().await.transitions, 1);
        }
        assert_eq!(world.builds_with("w1", BuildReason::Autostart).await.len(), 1.min(builds as usize + 1));
    }
}

#[tokio::test(start_paused = true)]
async fn lc_06_invalid_stored_schedule_is_an_error_and_others_still_act() {
    let mut world = world_at(t("08:00"), 1).await;
    let alice = world.user("alice", UserStatus::Active).await;
    let (dev, _) = world.template("dev", |_| {}).await;
    let mut bad = WorkspaceSpec::new("bad", alice, dev).build(Transition::Stop, JobStatus::Succeeded, t("07:00"));
    bad.autostart = Some("CRON_TZ=Mars/Base 0 9 * * *".into());
    world.workspace(bad).await;
    let good = WorkspaceSpec::new("good", alice, dev)
        .build(Transition::Start, JobStatus::Succeeded, t("07:00"))
        .deadline(t("08:30"));
    world.workspace(good).await;
    world.advance_to(t("09:00")).await;
    world.provisioner_seen().await;
    let stats = world.replica(0).tick().await;
    let outcomes = world.replica(0).outcomes();
    let errs = errors(&outcomes);
    assert_eq!(errs.len(), 1, "{outcomes:?}");
    assert!(errs[0].starts_with("schedule_invalid"), "{errs:?}");
    assert_eq!(stats.transitions, 1);
    assert_eq!(world.builds_with("good", BuildReason::Autostop).await.len(), 1);
}

// ---- autostart and versions ------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn lc_12_new_required_parameter_blocks_autostart_with_an_error_each_tick() {
    let mut world = world_at(t("08:00"), 1).await;
    let alice = world.user("alice", UserStatus::Active).await;
    let (dev, _) = world.template("dev", |_| {}).await;
    let mut spec = WorkspaceSpec::new("w1", alice, dev).build(Transition::Stop, JobStatus::Succeeded, t("07:00"));
    spec.autostart = Some("CRON_TZ=UTC 0 9 * * *".into());
    spec.next_start_at = Some(t("09:00"));
    spec.automatic_updates = AutomaticUpdates::Always;
    world.workspace(spec).await;
    world.add_version(dev, "v2", vec![ParameterSpec { name: "cpu".into(), required: true, default: None }]).await;
    world.provisioner_seen().await;
    for minute in ["09:00", "09:01"] {
        world.advance_to(t(minute)).await;
        world.provisioner_seen().await;
        let stats = world.replica(0).tick().await;
        assert_eq!((stats.transitions, stats.errors), (0, 1), "{minute}: {stats:?}");
    }
    let errs = errors(&world.replica(0).outcomes());
    assert_eq!(errs.len(), 2);
    assert!(errs.iter().all(|e| e.starts_with("build_invalid")), "{errs:?}");
    assert!(world.builds_with("w1", BuildReason::Autostart).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn lc_13_require_active_version_autostarts_on_v2_keeping_parameters() {
    let mut world = world_at(t("08:00"), 1).await;
    let alice = world.user("alice", UserStatus::Active).await;
    let (dev, v1) = world.template("dev", |t| t.require_active_version = true).await;
    let mut spec = WorkspaceSpec::new("w1", alice, dev).build(Transition::Stop, JobStatus::Succeeded, t("07:00"));
    spec.autostart = Some("CRON_TZ=UTC 0 9 * * *".into());
    spec.next_start_at = Some(t("09:00"));
    spec.build.as_mut().unwrap().parameters.insert("region".into(), "eu".into());
    world.workspace(spec).await;
    let v2 = world.add_version(dev, "v2", Vec::new()).await;
    world.advance_to(t("09:00")).await;
    world.provisioner_seen().await;
    world.replica(0).tick().await;
    let started = world.builds_with("w1", BuildReason::Autostart).await;
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].build.version_id, v2);
    assert_ne!(v1, v2);
    assert_eq!(started[0].build.parameters.get("region").map(String::as_str), Some("eu"));
    let updated = world.notifications_of(NotificationKind::WorkspaceAutoUpdated).await;
    assert_eq!(updated.len(), 1);
    match &updated[0].payload {
        NotificationPayload::WorkspaceAutoUpdated { old_version, new_version, reason, .. } => {
            assert_eq!((old_version.as_str(), new_version.as_str()), ("v1", "v2"));
            assert_eq!(*reason, BuildReason::Autostart);
        }
        other => panic!("unexpected payload {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn lc_18_replicas_down_through_the_autostart_instant_start_once_when_back() {
    for downtime in [hours(3), Span::from_days(3)] {
        let mut world = world_at(t("08:00"), 1).await;
        let alice = world.user("alice", UserStatus::Active).await;
        let (dev, _) = world.template("dev", |_| {}).await;
        let mut spec = WorkspaceSpec::new("w1", alice, dev).build(Transition::Stop, JobStatus::Succeeded, t("07:00"));
        spec.autostart = Some("CRON_TZ=UTC 0 9 * * *".into());
        spec.next_start_at = Some(t("09:00"));
        world.workspace(spec).await;
        let back = t("09:00") + downtime;
        world.advance_to(back).await;
        world.provisioner_seen().await;
        world.replica(0).tick().await;
        world.advance_to(back + mins(1)).await;
        world.replica(0).tick().await;
        assert_eq!(world.builds_with("w1", BuildReason::Autostart).await.len(), 1, "after {downtime}");
        assert!(world.ws("w1").await.next_start_at.unwrap() > back, "next_start_at moves past the build");
    }
}

// ---- deadlines through the API ---------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn lc_22_extended_deadline_stops_at_the_new_time() {
    let mut world = world_at(t("09:00"), 1).await;
    let alice = world.user("alice", UserStatus::Active).await;
    let (dev, _) = world.template("dev", |_| {}).await;
    let spec = WorkspaceSpec::new("w1", alice, dev)
        .build(Transition::Start, JobStatus::Succeeded, t("09:00"))
        .deadline(t("17:00"));
    world.workspace(spec).await;
    world.provisioner_seen().await;
    world.advance_to(t("16:55")).await;
    let w1 = world.id("w1");
    world.replica(0).api.extend(w1, alice, t("17:30"), world.now()).await.unwrap();
    world.advance_to(t("17:01")).await;
    world.provisioner_seen().await;
    assert_eq!(world.replica(0).tick().await.transitions, 0);
    world.advance_to(t("17:30")).await;
    world.provisioner_seen().await;
    assert_eq!(world.replica(0).tick().await.transitions, 1);
    assert_eq!(world.builds_with("w1", BuildReason::Autostop).await.len(), 1);
}

async fn running_from_ten(
    world: &mut World,
    edit: impl FnOnce(&mut Template),
) -> (engine::ids::UserId, engine::ids::TemplateId) {
    let alice = world.user("alice", UserStatus::Active).await;
    let (dev, _) = world.template("dev", edit).await;
    let mut spec = WorkspaceSpec::new("w1", alice, dev);
    spec.ttl = Some(hours(8));
    world.workspace(spec).await;
    // A real start, completed through the engine so §5.1 sets the deadline.
    let w1 = world.id("w1");
    world.replica(0).api.build(w1, alice, Transition::Start, world.now()).await.unwrap();
    world.provisioner_seen().await;
    assert_eq!(world.run_jobs(JobResult::Succeeded).await, 1);
    (alice, dev)
}

#[tokio::test(start_paused = true)]
async fn lc_25_shorter_ttl_leaves_the_running_deadline() {
    let mut world = world_at(t("10:00"), 1).await;
    let (alice, _) = running_from_ten(&mut world, |_| {}).await;
    assert_eq!(world.latest("w1").await.build.deadline, Some(t("18:00")));
    world.advance_to(t("12:00")).await;
    let update = WorkspaceUpdate { ttl: Some(Some(hours(2))), ..Default::default() };
    world.replica(0).api.update_workspace(world.id("w1"), alice, update, world.now()).await.unwrap();
    assert_eq!(world.latest("w1").await.build.deadline, Some(t("18:00")));
    assert_eq!(world.ws("w1").await.ttl, Some(hours(2)));
}

#[tokio::test(start_paused = true)]
async fn lc_26_clearing_the_ttl_moves_the_deadline_to_the_max() {
    // With a max deadline (quiet hours 20:00 UTC, every day required).
    let mut world = world_at(t("10:00"), 1).await;
    let alice = world.user("alice", UserStatus::Active).await;
    {
        let mut tx = world.tx().await;
        let mut user = tx.user(alice).await.unwrap().unwrap();
        user.quiet_hours = "CRON_TZ=UTC 0 20 * * *".into();
        tx.update_user(&user).await.unwrap();
        tx.commit().await.unwrap();
    }
    let (dev, _) = world
        .template("dev", |t| t.autostop_requirement = AutostopRequirement { days: WeekdaySet::ALL, weeks: 1 })
        .await;
    let mut spec = WorkspaceSpec::new("w1", alice, dev);
    spec.ttl = Some(hours(8));
    world.workspace(spec).await;
    let w1 = world.id("w1");
    world.replica(0).api.build(w1, alice, Transition::Start, world.now()).await.unwrap();
    world.provisioner_seen().await;
    world.run_jobs(JobResult::Succeeded).await;
    let running = world.latest("w1").await.build;
    assert_eq!((running.deadline, running.max_deadline), (Some(t("18:00")), Some(t("20:00"))));
    let clear = WorkspaceUpdate { ttl: Some(None), ..Default::default() };
    world.replica(0).api.update_workspace(w1, alice, clear.clone(), world.now()).await.unwrap();
    assert_eq!(world.latest("w1").await.build.deadline, Some(t("20:00")));

    // Without a max deadline: unset.
    let mut world = world_at(t("10:00"), 1).await;
    let (alice, _) = running_from_ten(&mut world, |_| {}).await;
    world.replica(0).api.update_workspace(world.id("w1"), alice, clear, world.now()).await.unwrap();
    assert_eq!(world.latest("w1").await.build.deadline, None);
}

#[tokio::test(start_paused = true)]
async fn lc_29_default_ttl_change_with_user_autostop_off_resets_every_ttl() {
    let mut world = world_at(t("10:00"), 1).await;
    let alice = world.user("alice", UserStatus::Active).await;
    let (dev, _) = world
        .template("dev", |t| {
            t.allow_user_autostop = false;
            t.default_ttl = hours(24);
        })
        .await;
    for name in ["a", "b"] {
        let mut spec = WorkspaceSpec::new(name, alice, dev);
        spec.ttl = Some(hours(24));
        world.workspace(spec).await;
    }
    let update = TemplateUpdate { default_ttl: Some(hours(72)), ..Default::default() };
    world.replica(0).api.update_template(dev, world.admin, update, world.now()).await.unwrap();
    for name in ["a", "b"] {
        assert_eq!(world.ws(name).await.ttl, Some(hours(72)), "{name}");
    }
}

// ---- dormancy and deletion ----------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn lc_36_stopped_idle_workspace_is_marked_without_a_provisioner() {
    let mut world = world_at(t("10:00"), 1).await;
    let alice = world.user("alice", UserStatus::Active).await;
    let (dev, _) = world.template("dev", |t| t.time_til_dormant = Span::from_days(7)).await;
    let mut spec = WorkspaceSpec::new("w1", alice, dev).build(Transition::Stop, JobStatus::Succeeded, t("10:00"));
    spec.last_used = Some(t("10:00"));
    world.workspace(spec).await;
    // No provisioner was ever seen.
    world.advance_to(t("10:01") + Span::from_days(7)).await;
    let stats = world.replica(0).tick().await;
    assert_eq!((stats.marks, stats.transitions), (1, 0), "{stats:?}");
    let ws = world.ws("w1").await;
    assert_eq!(ws.dormant_at, Some(world.now()));
    assert_eq!(world.builds("w1").await.len(), 1);
    assert_eq!(world.notifications_of(NotificationKind::WorkspaceDormant).await.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn lc_38_dormancy_notification_carries_deleting_at_and_none_without_autodelete() {
    for (autodelete, expected) in [(Span::from_days(35), true), (Span::ZERO, false)] {
        let mut world = world_at(t("10:00"), 1).await;
        let alice = world.user("alice", UserStatus::Active).await;
        let (dev, _) = world
            .template("dev", |t| {
                t.time_til_dormant = Span::from_days(7);
                t.time_til_dormant_autodelete = autodelete;
            })
            .await;
        let mut spec = WorkspaceSpec::new("w1", alice, dev).build(Transition::Stop, JobStatus::Succeeded, t("10:00"));
        spec.last_used = Some(t("10:00"));
        world.workspace(spec).await;
        world.advance_to(t("10:01") + Span::from_days(7)).await;
        world.replica(0).tick().await;
        let ws = world.ws("w1").await;
        let notified = world.notifications_of(NotificationKind::WorkspaceDormant).await;
        assert_eq!(notified.len(), 1);
        let NotificationPayload::WorkspaceDormant { deleting_at, .. } = &notified[0].payload else {
            panic!("payload {:?}", notified[0].payload)
        };
        if expected {
            assert_eq!(ws.deleting_at, Some(world.now() + Span::from_days(35)));
            assert_eq!(*deleting_at, ws.deleting_at);
        } else {
            assert_eq!((ws.deleting_at, *deleting_at), (None, None));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn lc_41_autodelete_enabled_later_sets_deleting_at_and_notifies_once() {
    let jan1 = at("2026-01-01T00:00:00Z");
    let mut world = world_at(at("2026-01-05T10:00:00Z"), 1).await;
    let alice = world.user("alice", UserStatus::Active).await;
    let (dev, _) = world.template("dev", |t| t.time_til_dormant = Span::from_days(7)).await;
    let mut spec = WorkspaceSpec::new("w1", alice, dev).build(Transition::Stop, JobStatus::Succeeded, jan1);
    spec.dormant_at = Some(jan1);
    world.workspace(spec).await;
    let update = TemplateUpdate { time_til_dormant_autodelete: Some(Span::from_days(7)), ..Default::default() };
    world.replica(0).api.update_template(dev, world.admin, update, world.now()).await.unwrap();
    assert_eq!(world.ws("w1").await.deleting_at, Some(at("2026-01-08T00:00:00Z")));
    assert_eq!(world.notifications_of(NotificationKind::WorkspaceMarkedForDeletion).await.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn lc_42_unclaimed_prebuild_is_never_touched() {
    let mut world = world_at(t("08:00"), 1).await;
    let (dev, _) = world
        .template("dev", |t| {
            t.failure_ttl = mins(1);
            t.time_til_dormant = Span::from_days(1);
            t.autostop_notify = mins(30);
        })
        .await;
    {
        let mut tx = world.tx().await;
        let prebuilds = User {
            id: engine::ids::PREBUILDS_USER_ID,
            name: engine::ids::PREBUILDS_USER_NAME.into(),
            status: UserStatus::Active,
            roles: Roles::default(),
            quiet_hours: String::new(),
            created_at: world.now(),
        };
        tx.insert_user(&prebuilds).await.unwrap();
        tx.commit().await.unwrap();
    }
    let owner = engine::ids::PREBUILDS_USER_ID;
    let mut running = WorkspaceSpec::new("prebuild-running", owner, dev)
        .build(Transition::Start, JobStatus::Succeeded, t("07:00"))
        .deadline(t("08:30"));
    running.autostart = Some("CRON_TZ=UTC 0 9 * * *".into());
    running.last_used = Some(t("07:00") - Span::from_days(3));
    world.workspace(running).await;
    let failed =
        WorkspaceSpec::new("prebuild-failed", owner, dev).build(Transition::Start, JobStatus::Failed, t("07:00"));
    world.workspace(failed).await;
    let before = (world.builds("prebuild-running").await, world.builds("prebuild-failed").await);
    for day in 0..3 {
        for minute in [0, 30, 60, 61] {
            world.advance_to(t("08:00") + Span::from_days(day) + mins(minute + 1)).await;
            world.provisioner_seen().await;
            let stats = world.replica(0).tick().await;
            assert_eq!(stats.transitions + stats.marks + stats.reminders, 0, "{stats:?}");
        }
        // Activity on a prebuild never bumps it.
        let id = world.id("prebuild-running");
        let bumped = world
            .replica(0)
            .api
            .report_activity(id, ActivitySource::AgentUsage { sessions: 1 }, world.now())
            .await
            .unwrap();
        assert_eq!(bumped, None);
    }
    assert_eq!((world.builds("prebuild-running").await, world.builds("prebuild-failed").await), before);
    assert!(world.notifications().await.is_empty());
    assert_eq!(world.ws("prebuild-running").await.dormant_at, None);
}

// ---- activity -------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn lc_44_no_bump_without_sessions_deadline_or_bump() {
    let mut world = world_at(t("11:00"), 1).await;
    let alice = world.user("alice", UserStatus::Active).await;
    let (dev, _) = world.template("dev", |_| {}).await;
    let spec = WorkspaceSpec::new("w1", alice, dev)
        .build(Transition::Start, JobStatus::Succeeded, t("09:00"))
        .deadline(t("11:30"));
    world.workspace(spec).await;
    let w1 = world.id("w1");
    let api = &world.replica(0).api;
    let none = api.report_activity(w1, ActivitySource::AgentUsage { sessions: 0 }, world.now()).await.unwrap();
    assert_eq!(none, None, "an empty report marks nothing and bumps nothing");
    assert_eq!(world.replica(0).usage.pending_count(), 0);
    let bumped = api.report_activity(w1, ActivitySource::AgentUsage { sessions: 1 }, world.now()).await.unwrap();
    assert_eq!(bumped, Some(t("12:00")));
    assert_eq!(world.replica(0).usage.pending_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn lc_46_chat_heartbeats_keep_the_workspace_running() {
    let mut world = world_at(t("09:00"), 1).await;
    let alice = world.user("alice", UserStatus::Active).await;
    let (dev, _) = world.template("dev", |_| {}).await;
    let spec = WorkspaceSpec::new("w1", alice, dev)
        .build(Transition::Start, JobStatus::Succeeded, t("08:00"))
        .deadline(t("10:00"));
    world.workspace(spec).await;
    let w1 = world.id("w1");
    let mut next_tick = t("09:01");
    let mut beat = t("09:00");
    while beat < t("12:00") {
        if beat >= next_tick {
            world.advance_to(next_tick).await;
            world.provisioner_seen().await;
            let stats = world.replica(0).tick().await;
            assert_eq!(stats.transitions, 0, "stopped at {next_tick}: {stats:?}");
            next_tick += mins(1);
        }
        world.advance_to(beat).await;
        world.replica(0).api.report_activity(w1, ActivitySource::ChatHeartbeat, beat).await.unwrap();
        beat += secs(30);
    }
    assert!(world.builds_with("w1", BuildReason::Autostop).await.is_empty());
    assert!(world.latest("w1").await.build.deadline.unwrap() > t("12:00"));
}

// ---- reminders, delivery, usage -------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn lc_50_chat_bound_workspace_gets_the_marker_but_no_reminder() {
    let mut world = world_at(t("16:00"), 1).await;
    let alice = world.user("alice", UserStatus::Active).await;
    let (dev, _) = world.template("dev", |t| t.autostop_notify = mins(30)).await;
    let mut spec = WorkspaceSpec::new("w1", alice, dev)
        .build(Transition::Start, JobStatus::Succeeded, t("09:00"))
        .deadline(t("17:00"));
    spec.last_used = Some(t("09:00"));
    let w1 = world.workspace(spec).await;
    {
        let mut tx = world.tx().await;
        let chat = Chat {
            id: world.ids.next(),
            owner_id: alice,
            name: "c1".into(),
            workspace_id: Some(w1),
            status: ChatStatus::Running,
            created_at: t("09:00"),
            last_activity_at: t("09:00"),
        };
        tx.insert_chat(&chat).await.unwrap();
        tx.commit().await.unwrap();
    }
    world.advance_to(t("16:30")).await;
    world.replica(0).tick().await;
    assert_eq!(world.latest("w1").await.build.notified_autostop_deadline, Some(t("17:00")));
    assert!(world.notifications_of(NotificationKind::AutostopReminder).await.is_empty());
}

/// Records deliveries; fails the first `fail_first` attempts.
#[derive(Default)]
struct RecordingSink {
    delivered: std::sync::Mutex<Vec<Notification>>,
    fail_first: std::sync::atomic::AtomicU32,
}

#[async_trait::async_trait]
impl NotificationSink for RecordingSink {
    async fn deliver(&self, notification: &Notification) -> Result<(), DeliveryError> {
        let left = self.fail_first.load(std::sync::atomic::Ordering::SeqCst);
        if left > 0 {
            self.fail_first.store(left - 1, std::sync::atomic::Ordering::SeqCst);
            return Err(DeliveryError("sink down".into()));
        }
        self.delivered.lock().unwrap().push(notification.clone());
        Ok(())
    }
}

async fn reminder_world() -> World {
    let mut world = world_at(t("16:00"), 1).await;
    let alice = world.user("alice", UserStatus::Active).await;
    let (dev, _) = world.template("dev", |t| t.autostop_notify = mins(30)).await;
    let mut spec = WorkspaceSpec::new("w1", alice, dev)
        .build(Transition::Start, JobStatus::Succeeded, t("09:00"))
        .deadline(t("17:00"));
    spec.last_used = Some(t("09:00"));
    world.workspace(spec).await;
    world
}

/// Turns the commit of the first lifecycle transaction that wrote an outbox
/// row into "applied, but the caller saw the connection drop".
struct CommitUnknownAfterEnqueue {
    armed: std::sync::Mutex<std::collections::BTreeSet<engine::store::SessionId>>,
    fired: std::sync::atomic::AtomicBool,
}

impl StatementHook for CommitUnknownAfterEnqueue {
    fn on_statement(&self, info: &StatementInfo) -> HookDecision {
        if info.subsystem == Subsystem::Lifecycle {
            let mut armed = self.armed.lock().unwrap();
            if info.op == "enqueue_notification" {
                armed.insert(info.session);
            } else if info.op == "commit"
                && armed.contains(&info.session)
                && !self.fired.swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                return HookDecision::CommitUnknown;
            }
        }
        HookDecision::Proceed { latency: Span::ZERO }
    }
}

#[tokio::test(start_paused = true)]
async fn lc_54_crash_right_after_the_reminder_commits_still_delivers_once() {
    // A: the replica crashes after the commit, before delivering.
    let mut world = reminder_world().await;
    world.advance_to(t("16:30")).await;
    assert_eq!(world.replica(0).tick().await.reminders, 1);
    let crashed = world.replica(0).store.client_id();
    world.server.disconnect_client(crashed);
    world.add_replica(1);
    let sink = RecordingSink::default();
    world.advance_to(t("16:31")).await;
    world.replica(1).tick().await; // nothing new: the marker is set
    deliver_due(world.replica(1).store.as_ref(), &sink, world.now(), mins(1), &engine::events::NoEvents).await.unwrap();
    assert_eq!(sink.delivered.lock().unwrap().len(), 1);

    // B: the commit applies but the replica sees the connection drop.
    let world = reminder_world().await;
    world
        .server
        .set_hook(Some(Arc::new(CommitUnknownAfterEnqueue { armed: Default::default(), fired: Default::default() })));
    world.advance_to(t("16:30")).await;
    let stats = world.replica(0).tick().await;
    world.server.set_hook(None);
    assert_eq!(stats.reminders, 0, "the caller saw the commit fail: {stats:?}");
    world.advance_to(t("16:31")).await;
    world.replica(0).tick().await;
    let sink = RecordingSink::default();
    deliver_due(world.replica(0).store.as_ref(), &sink, world.now(), mins(1), &engine::events::NoEvents).await.unwrap();
    assert_eq!(sink.delivered.lock().unwrap().len(), 1);
    assert_eq!(world.notifications_of(NotificationKind::AutostopReminder).await.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn lc_55_failed_delivery_is_retried_a_minute_later() {
    let world = reminder_world().await;
    world.advance_to(t("16:30")).await;
    world.replica(0).tick().await;
    let sink = RecordingSink { fail_first: 1.into(), ..Default::default() };
    let store = world.replica(0).store.clone();
    let first = deliver_due(store.as_ref(), &sink, world.now(), mins(1), &engine::events::NoEvents).await.unwrap();
    assert_eq!((first.delivered, first.failed), (0, 1));
    world.advance_to(t("16:30") + secs(30)).await;
    let early = deliver_due(store.as_ref(), &sink, world.now(), mins(1), &engine::events::NoEvents).await.unwrap();
    assert_eq!((early.delivered, early.failed), (0, 0), "not before the retry delay");
    world.advance_to(t("16:31")).await;
    let second = deliver_due(store.as_ref(), &sink, world.now(), mins(1), &engine::events::NoEvents).await.unwrap();
    assert_eq!(second.delivered, 1);
    let rows = world.notifications_of(NotificationKind::AutostopReminder).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].delivered_at, Some(t("16:31")));
    assert_eq!(sink.delivered.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn lc_56_a_slow_replica_flush_never_moves_last_used_back() {
    let mut world = world_at(t("10:00"), 2).await;
    let alice = world.user("alice", UserStatus::Active).await;
    let (dev, _) = world.template("dev", |_| {}).await;
    let mut spec = WorkspaceSpec::new("w1", alice, dev).build(Transition::Start, JobStatus::Succeeded, t("09:00"));
    spec.last_used = Some(t("09:00"));
    let w1 = world.workspace(spec).await;
    // Replica 1 runs two minutes slow.
    world.replica(1).clock.set_skew(-mins(2));
    world.advance_to(t("10:05")).await;
    world.replica(0).usage.mark(w1);
    world.replica(1).usage.mark(w1);
    let a = world.replica(0).usage.flush(world.replica(0).clock.now(), world.replica(0).clock.as_ref()).await;
    assert_eq!(a.written, 1);
    world.advance_to(t("10:06")).await;
    let b_now = world.replica(1).clock.now();
    assert_eq!(b_now, t("10:04"));
    let b = world.replica(1).usage.flush(b_now, world.replica(1).clock.as_ref()).await;
    assert_eq!((b.workspaces, b.written, b.requeued), (1, 0, 0));
    assert_eq!(world.ws("w1").await.last_used_at, t("10:05"));
}

/// Fails every usage-flush statement until `until`.
struct FailUsageUntil {
    until: Timestamp,
    clock: Arc<engine::runtime::MonotonicClock>,
}

impl StatementHook for FailUsageUntil {
    fn on_statement(&self, info: &StatementInfo) -> HookDecision {
        if info.subsystem == Subsystem::Usage && self.clock.now() < self.until {
            return HookDecision::Fail(StoreError::connection_lost("injected"));
        }
        HookDecision::Proceed { latency: Span::ZERO }
    }
}

#[tokio::test(start_paused = true)]
async fn lc_57_a_failed_flush_is_written_by_the_next_flush() {
    let mut world = world_at(t("10:00"), 1).await;
    let alice = world.user("alice", UserStatus::Active).await;
    let (dev, _) = world.template("dev", |_| {}).await;
    let mut spec = WorkspaceSpec::new("w1", alice, dev).build(Transition::Start, JobStatus::Succeeded, t("09:00"));
    spec.last_used = Some(t("09:00"));
    let w1 = world.workspace(spec).await;
    world.server.set_hook(Some(Arc::new(FailUsageUntil { until: t("10:06"), clock: world.clock.clone() })));
    world.advance_to(t("10:04") + secs(30)).await;
    world.replica(0).usage.mark(w1);
    world.advance_to(t("10:05")).await;
    let clock = world.replica(0).clock.clone();
    let failed = world.replica(0).usage.flush(clock.now(), clock.as_ref()).await;
    assert_eq!((failed.written, failed.requeued), (0, 1));
    world.advance_to(t("10:06")).await;
    let flushed = world.replica(0).usage.flush(clock.now(), clock.as_ref()).await;
    world.server.set_hook(None);
    assert_eq!(flushed.written, 1);
    assert_eq!(world.ws("w1").await.last_used_at, t("10:06"));
}
