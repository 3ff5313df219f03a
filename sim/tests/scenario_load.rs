//! Positive loading tests: the fixtures load, and the typed model holds the
//! values and defaults SCENARIOS.md gives.

use std::path::{Path, PathBuf};

use sim::scenario::{self, Scenario};

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn load(name: &str) -> Scenario {
    match scenario::load_file(&fixture_path(name)) {
        Ok(s) => s,
        Err(e) => panic!("{name} does not load:\n{e}"),
    }
}

#[test]
fn fixtures_load() {
    for name in ["minimal.yaml", "rich.yaml", "scenarios_md_example.yaml"] {
        load(name);
    }
}

use engine::model::{
    AutomaticUpdates, BuildReason, ChatStatus, JobStatus, NotificationKind, PresetStatus, Transition, UserStatus,
    Weekday, WeekdaySet,
};
use engine::time::{Span, Timestamp};
use scenario::{
    Action, AgentState, ChatOp, ChatOwnerExpect, Checkable, Count, Derived, DurationRange, Expect, Owner, Point,
    PointExpect, ReplicaTarget, StoreFaultKind, StoreOp, TurnOutcome, Window, WorkspaceStatus,
};

fn mins(m: i64) -> Span {
    Span::from_mins(m)
}
fn at(offset: Span) -> Point {
    Point::from_offset(offset)
}

#[test]
fn minimal_file_gets_every_default() {
    let s = load("minimal.yaml");
    assert_eq!(s.name.value, "minimal");
    assert_eq!(s.description, None);
    assert_eq!(s.seed, 0);
    assert_eq!(s.start, Timestamp::parse_rfc3339("2026-01-05T00:00:00Z").unwrap());
    assert_eq!(s.run_for, Span::from_hours(1));
    assert_eq!(s.settle, mins(10));
    assert_eq!(s.replicas, 1);
    assert_eq!(s.settings, scenario::Settings::default());
    let d = &s.settings;
    assert_eq!((d.lifecycle_interval, d.reconcile_interval, d.reconcile_paused), (mins(1), mins(1), false));
    assert_eq!(
        (d.prebuild_failure_hard_limit, d.prebuild_backoff, d.prebuild_backoff_lookback),
        (3, Span::from_secs(15), mins(60))
    );
    assert_eq!(
        (d.chat_heartbeat_interval, d.chat_stale_after, d.chat_acquire_batch),
        (Span::from_secs(30), mins(5), 10)
    );
    assert_eq!((d.chat_archive_after, d.chat_retention), (Span::ZERO, Span::from_days(30)));
    assert_eq!((d.db_pool_size, d.provisioner_stale_after), (10, Span::from_secs(90)));
    assert_eq!(d.db_latency, DurationRange::new(Span::from_millis(1), Span::from_millis(5)));
    assert_eq!(d.chat_turn_duration, DurationRange::new(Span::from_secs(5), mins(1)));
    assert_eq!(s.provisioners.count, 2);
    assert_eq!(s.provisioners.build_duration, DurationRange::new(Span::from_secs(10), mins(1)));
    assert_eq!(s.provisioners.failure_rate, 0.0);
    assert!(s.chaos.is_off());
    assert!(s.world.users.is_empty() && s.timeline.is_empty() && s.expect.is_empty());
    assert_eq!(s.capabilities(), scenario::Capabilities::default());
    // The engine's own settings come out of ours.
    assert_eq!(s.settings.engine(), engine::settings::Settings::default());
}

#[test]
fn top_level_and_settings() {
    let s = load("rich.yaml");
    assert_eq!(s.seed, 42);
    assert_eq!(s.start, Timestamp::parse_rfc3339("2026-01-05T09:00:00Z").unwrap());
    assert_eq!((s.run_for, s.settle, s.replicas), (Span::from_hours(3), mins(30), 3));
    let d = &s.settings;
    assert_eq!((d.lifecycle_interval, d.reconcile_interval, d.reconcile_paused), (Span::from_secs(30), mins(2), true));
    assert_eq!(d.usage_flush_interval, Span::from_secs(90));
    assert_eq!(d.chat_archive_after, Span::from_days(2));
    assert_eq!(d.chat_retention, Span::ZERO);
    assert_eq!(d.db_pool_size, 8);
    assert_eq!(d.db_latency, DurationRange::new(Span::from_millis(2), Span::from_millis(10)));
    assert_eq!(d.chat_turn_duration, DurationRange::fixed(Span::from_secs(10)));
    assert_eq!(d.agent_ready_after, Span::ZERO);
}

#[test]
fn world_users_and_templates() {
    let s = load("rich.yaml");
    let [alice, bob, carol] = &s.world.users[..] else { panic!() };
    assert_eq!((alice.status, alice.roles.admin, alice.roles.template_admin), (UserStatus::Active, true, false));
    assert_eq!(alice.quiet_hours, Checkable::checked("CRON_TZ=Europe/Berlin 0 2 * * *".to_owned()));
    assert_eq!((bob.status, bob.roles.admin, bob.roles.template_admin), (UserStatus::Suspended, true, true));
    assert_eq!(bob.quiet_hours.value, "CRON_TZ=UTC 0 0 * * *");
    assert_eq!(carol.quiet_hours, Checkable::unchecked("CRON_TZ=Mars/Base 0 0 * * *".to_owned()));

    let dev = &s.world.templates[0];
    let t = &dev.settings;
    assert_eq!(t.default_ttl, Checkable::checked(mins(480)));
    assert_eq!(t.activity_bump.value, mins(30));
    assert_eq!(t.time_til_dormant.value, Span::from_days(7));
    assert!(!t.allow_user_autostart && !t.allow_user_autostop && t.require_active_version && !t.deprecated);
    let weekdays: WeekdaySet =
        [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri].into_iter().collect();
    assert_eq!(t.autostart_days, weekdays);
    assert_eq!(t.autostop_requirement.days, [Weekday::Sat, Weekday::Sun].into_iter().collect());
    assert_eq!(t.autostop_requirement.weeks, Checkable::checked(2));
    assert_eq!(dev.versions.iter().map(|v| v.name.value.as_str()).collect::<Vec<_>>(), ["v1", "v2"]);
    assert_eq!(dev.active_version().unwrap().name.value, "v2");
    let cpu = &dev.versions[1].parameters[0];
    assert_eq!((cpu.name.value.as_str(), cpu.required, cpu.default.as_deref()), ("cpu", true, Some("2")));
    let region = &dev.versions[1].parameters[1];
    assert_eq!((region.required, region.default.as_deref()), (false, None));
    let small_v1 = &dev.presets[0];
    assert_eq!((small_v1.version.value.as_str(), small_v1.instances), ("v1", 2));
    assert_eq!(small_v1.parameters.get("cpu").map(String::as_str), Some("1"));
    assert_eq!(small_v1.expiration_ttl.value, Span::from_days(1));
    let schedules = small_v1.schedules.as_ref().unwrap();
    assert_eq!(schedules.timezone.value, "America/Chicago");
    assert_eq!((schedules.rules[0].cron.value.as_str(), schedules.rules[0].instances), ("* 8-18 * * 1-5", 5));
    assert!(schedules.rules[1].cron.unchecked);
    // A preset's version defaults to the active one; other defaults.
    let small_v2 = &dev.presets[1];
    assert_eq!((small_v2.version.value.as_str(), small_v2.instances, small_v2.schedules.is_none()), ("v2", 0, true));
    assert_eq!(small_v2.expiration_ttl, Checkable::checked(Span::ZERO));
    // Template defaults.
    let ops = &s.world.templates[1].settings;
    assert_eq!(ops.default_ttl, Checkable::unchecked(Span::from_secs(30)));
    assert_eq!(ops.activity_bump.value, mins(60));
    assert!(ops.allow_user_autostart && ops.allow_user_autostop && !ops.require_active_version);
    assert_eq!(ops.autostart_days, WeekdaySet::ALL);
    assert_eq!(ops.autostop_requirement.days, WeekdaySet::EMPTY);
    assert_eq!(ops.autostop_requirement.weeks.value, 1);
}

#[test]
fn world_workspaces_and_chats() {
    let s = load("rich.yaml");
    let [w1, w2, w3, w4_deleted, w4] = &s.world.workspaces[..] else { panic!() };
    assert_eq!(w1.owner.value, Owner::User("alice".into()));
    assert_eq!((w1.version.value.as_str(), w1.preset.as_ref().unwrap().value.as_str()), ("v1", "small"));
    assert_eq!(w1.created, at(-Span::from_days(30)));
    assert_eq!(w1.autostart, Some(Checkable::checked("CRON_TZ=UTC 0 9 * * 1-5".to_owned())));
    assert_eq!(w1.ttl, Checkable::checked(mins(240)));
    assert_eq!(w1.automatic_updates, AutomaticUpdates::Always);
    assert_eq!((w1.last_used, w1.dormant_at, w1.deleting_at), (at(-mins(60)), None, None));
    assert_eq!(w1.next_start_at, Derived::Given(Some(at(Span::from_days(1)))));
    assert_eq!(w1.agent, AgentState::NotReady);
    let b = w1.latest_build.as_ref().unwrap();
    assert_eq!((b.transition, b.status, b.reason), (Transition::Start, JobStatus::Succeeded, BuildReason::Autostart));
    assert_eq!((b.created, b.completed), (at(-mins(120)), Some(at(-mins(119)))));
    assert_eq!(b.deadline, Derived::Given(Checkable::checked(Some(at(mins(360))))));
    assert_eq!(b.max_deadline, Derived::Given(Checkable::checked(Some(at(mins(600))))));

    // Defaults: ttl copied from the template's default_ttl, version the active
    // one, created/last_used from the build, next_start_at and deadlines left
    // to the engine, agent ready after a succeeded start.
    assert_eq!(w2.ttl, Checkable::checked(mins(480)));
    assert_eq!(w2.version.value, "v2");
    assert_eq!((w2.created, w2.last_used), (at(-mins(180)), at(-mins(180))));
    assert_eq!(w2.automatic_updates, AutomaticUpdates::Never);
    assert_eq!(w2.next_start_at, Derived::Computed);
    assert_eq!(w2.agent, AgentState::Ready);
    let b2 = w2.latest_build.as_ref().unwrap();
    assert_eq!(
        (b2.status, b2.reason, b2.completed),
        (JobStatus::Succeeded, BuildReason::Initiator, Some(at(-mins(180))))
    );
    assert_eq!((b2.deadline.clone(), b2.max_deadline.clone()), (Derived::Computed, Derived::Computed));

    // A prebuild with an unchecked schedule: next_start_at none; an unfinished job.
    assert!(w3.is_prebuild());
    assert_eq!(w3.autostart, Some(Checkable::unchecked("bad cron".to_owned())));
    assert_eq!(w3.next_start_at, Derived::Given(None));
    assert_eq!(w3.agent, AgentState::NotReady);
    let b3 = w3.latest_build.as_ref().unwrap();
    assert_eq!((b3.status, b3.completed), (JobStatus::Running, None));
    assert_eq!(b3.deadline, Derived::Given(Checkable::checked(None)));
    // A deleted workspace frees its name; RFC 3339 points become offsets.
    assert!(w4_deleted.is_deleted() && !w4.is_deleted());
    assert_eq!(w4_deleted.deleting_at, Some(at(-Span::from_days(1))));
    assert_eq!(w4_deleted.dormant_at, Some(at(-Span::from_days(10))));
    assert_eq!(w4.ttl, Checkable::unchecked(Span::from_secs(30)));
    assert_eq!((w4.created, w4.last_used, w4.latest_build.is_none()), (Point::START, Point::START, true));

    let [c1, c2] = &s.world.chats[..] else { panic!() };
    assert_eq!((c1.status, c1.workspace.as_ref().unwrap().value.as_str()), (ChatStatus::Running, "w1"));
    assert_eq!(
        (c1.last_activity, c1.created, c1.heartbeat),
        (at(-Span::from_days(1)), at(-Span::from_days(3)), Some(at(-mins(10))))
    );
    assert_eq!(
        (c2.status, c2.last_activity, c2.created, c2.heartbeat),
        (ChatStatus::Completed, Point::START, Point::START, None)
    );
}

#[test]
fn provisioners_and_chaos() {
    let s = load("rich.yaml");
    let p = &s.provisioners;
    assert_eq!((p.count, p.failure_rate), (3, 0.1));
    assert_eq!(p.build_duration, DurationRange::new(Span::from_secs(20), mins(2)));
    assert_eq!(p.templates["dev"].failure_rate, Some(1.0));
    assert_eq!(p.templates["dev"].build_duration, Some(DurationRange::fixed(mins(5))));
    assert_eq!(p.templates["ops"].failure_rate, None);
    let c = &s.chaos;
    assert_eq!((c.store_error_rate, c.serialization_failure_rate, c.commit_unknown_rate), (0.01, 0.02, 0.001));
    assert_eq!(c.store_latency, Some(DurationRange::new(Span::from_millis(1), Span::from_millis(200))));
    assert_eq!(c.pubsub_delay, Some(DurationRange::new(Span::ZERO, Span::from_secs(2))));
    assert_eq!(c.replica_crash_rate.per_hour, 0.5);
    assert_eq!(c.replica_restart_after, DurationRange::new(Span::from_secs(10), mins(5)));
    assert_eq!(c.clock_skew, Some(DurationRange::new(-Span::from_secs(2), Span::from_secs(2))));
    assert!(!c.is_off());
    // The longest build duration any provisioner may be assigned: the dev override.
    assert_eq!(s.build_duration_max(), mins(5));
    assert_eq!(s.settle_min(), mins(10));
}

#[test]
fn timeline_actions() {
    let s = load("rich.yaml");
    let action = |i: usize| &s.timeline[i].action;
    assert_eq!(s.timeline.len(), 30);
    assert_eq!(s.timeline[0].at, mins(10));
    let Action::Activity { workspace, replica } = action(0) else { panic!() };
    assert_eq!((workspace.value.as_str(), replica.as_ref().unwrap().value.clone()), ("w1", ReplicaTarget::Index(1)));
    let Action::Start(start) = action(1) else { panic!() };
    assert_eq!(start.replica.as_ref().unwrap().value, ReplicaTarget::ChatOwner("c1".into()));
    assert_eq!(start.user.as_ref().unwrap().value, "alice");
    let Action::Extend { deadline, .. } = action(4) else { panic!() };
    assert_eq!(*deadline, at(mins(300)));
    let Action::CreateWorkspace(c) = action(5) else { panic!() };
    assert_eq!(
        (c.name.value.as_str(), c.ttl.clone(), c.automatic_updates),
        ("w2", Some(Checkable::checked(mins(120))), Some(AutomaticUpdates::Never))
    );
    let Action::UpdateWorkspace(u) = action(6) else { panic!() };
    assert_eq!(
        (u.ttl.clone(), u.autostart.clone(), u.dormant),
        (Some(Checkable::checked(Span::ZERO)), Some(None), Some(true))
    );
    let Action::UpdateTemplate(ut) = action(7) else { panic!() };
    assert_eq!(ut.changes.default_ttl, Some(Checkable::checked(mins(60))));
    assert_eq!(ut.changes.time_til_dormant_autodelete, Some(Checkable::unchecked(-mins(60))));
    assert_eq!(ut.changes.autostop_requirement_weeks, Some(Checkable::unchecked(20)));
    assert_eq!(ut.changes.autostop_requirement_days, Some(WeekdaySet::EMPTY));
    assert!(!ut.deleted);
    let Action::UpdateTemplate(deleted) = action(8) else { panic!() };
    assert!(deleted.deleted && deleted.changes.is_empty());
    let Action::PublishVersion(p) = action(9) else { panic!() };
    assert_eq!((p.version.name.value.as_str(), p.presets[0].version.value.as_str()), ("v3", "v3"));
    assert_eq!(p.version.parameters[0].default.as_deref(), Some("4"));
    let Action::Chat(chat) = action(13) else { panic!() };
    assert_eq!((chat.op, chat.owner.as_ref().unwrap().value.as_str()), (ChatOp::Create, "alice"));
    let turn = chat.turn.as_ref().unwrap();
    assert_eq!((turn.duration, turn.outcome), (Some(DurationRange::fixed(mins(5))), TurnOutcome::Error));
    let Action::Chat(message) = action(14) else { panic!() };
    assert_eq!(message.turn.as_ref().unwrap().outcome, TurnOutcome::Finish);
    let Action::StoreFault(latency) = action(18) else { panic!() };
    assert_eq!((latency.kind, latency.rate, latency.duration), (StoreFaultKind::Latency, 0.5, mins(5)));
    assert_eq!(latency.ops.iter().copied().collect::<Vec<_>>(), [StoreOp::Write, StoreOp::Read]);
    assert_eq!(latency.latency, Some(DurationRange::new(Span::from_millis(10), Span::from_secs(1))));
    // `for` defaults: 1s for a database restart, else until the end of run_for.
    let Action::StoreFault(restart) = action(19) else { panic!() };
    assert_eq!(
        (restart.kind, restart.duration, restart.replica.is_none()),
        (StoreFaultKind::Restart, Span::from_secs(1), true)
    );
    let Action::StoreFault(hang) = action(20) else { panic!() };
    assert_eq!((hang.rate, hang.duration, hang.ops.len()), (1.0, Span::from_hours(3) - mins(32), 5));
    let Action::PoolHog { connections, duration, .. } = action(21) else { panic!() };
    assert_eq!((*connections, *duration), (8, mins(2)));
    let Action::ProvisionerFault(offline) = action(25) else { panic!() };
    assert!(offline.offline && offline.template.is_none());
    let Action::Crash { restart_after, .. } = action(27) else { panic!() };
    assert_eq!(*restart_after, Some(DurationRange::new(Span::from_secs(30), mins(1))));
    // An RFC 3339 `at` is an offset from start; a skew is a signed duration.
    assert_eq!(s.timeline[29].at, mins(41));
    let Action::ClockSkew { offset, .. } = action(29) else { panic!() };
    assert_eq!(*offset, -Span::from_secs(40));
    assert!(s.timeline.iter().filter(|e| e.action.is_fault()).count() == 8);
}

#[test]
fn expectations() {
    let s = load("rich.yaml");
    let Expect::Builds(b) = &s.expect[0].kind else { panic!() };
    assert_eq!(s.expect[0].at, None);
    assert_eq!(
        (b.transition, b.reason, b.status),
        (Some(Transition::Stop), Some(BuildReason::Autostop), Some(JobStatus::Succeeded))
    );
    assert_eq!(b.between, Some(Window { from: at(mins(120)), to: at(mins(120) + Span::from_secs(30)) }));
    assert_eq!(b.count, Count::Exactly(1));
    let Expect::Builds(b2) = &s.expect[1].kind else { panic!() };
    assert_eq!((s.expect[1].at, b2.count), (Some(mins(120)), Count::Within { at_least: Some(1), at_most: Some(5) }));
    assert!(b2.count.accepts(3) && !b2.count.accepts(6));
    let Expect::Notifications(n) = &s.expect[2].kind else { panic!() };
    assert_eq!(
        (n.kind, n.count),
        (Some(NotificationKind::AutostopReminder), Count::Within { at_least: Some(1), at_most: None })
    );
    assert_eq!(n.between.unwrap().from, at(-mins(60)));
    let Expect::Workspace(w) = &s.expect[5].kind else { panic!() };
    assert_eq!((w.status, w.agent), (Some(WorkspaceStatus::Running), Some(AgentState::Ready)));
    assert_eq!(w.owner.as_ref().unwrap().value, Owner::User("alice".into()));
    assert_eq!(w.deadline, Some(PointExpect::Within(Window { from: at(mins(300)), to: at(mins(360)) })));
    assert_eq!(w.max_deadline, Some(PointExpect::None));
    assert_eq!(w.dormant_at, Some(PointExpect::None)); // `dormant: false`
    assert_eq!(w.last_used, Some(PointExpect::At(at(mins(10)))));
    assert_eq!(w.next_start_at, Some(PointExpect::At(at(Span::from_hours(24)))));
    let Expect::Prebuilds(p) = &s.expect[7].kind else { panic!() };
    assert_eq!((p.ready, p.building, p.total), (Some(2), Some(0), Some(2)));
    let Expect::Preset(preset) = &s.expect[8].kind else { panic!() };
    assert_eq!(preset.status, PresetStatus::Healthy);
    let Expect::Chat(c) = &s.expect[9].kind else { panic!() };
    assert_eq!((c.status, c.owner, c.turns), (Some(ChatStatus::Running), Some(ChatOwnerExpect::Replica(1)), Some(0)));
    let Expect::Chat(c3) = &s.expect[10].kind else { panic!() };
    assert_eq!(c3.owner, Some(ChatOwnerExpect::None));
    assert_eq!(s.expect[11].kind, Expect::Violations);
}

#[test]
fn positions_are_kept_for_blame() {
    let s = load("rich.yaml");
    let entry = &s.timeline[0];
    assert_eq!(s.locate(entry.origin), format!("{}:155:5", s.file));
    assert_eq!(s.locate(entry.action_origin), format!("{}:155:15", s.file));
    let Action::Activity { workspace, .. } = &entry.action else { panic!() };
    assert_eq!(workspace.origin.key(), (155, 37));
    assert_eq!(s.expect[0].origin.key(), (223, 5));
    assert_eq!(s.world.workspaces[0].name.origin.key(), (82, 13));
}

#[test]
fn capabilities() {
    let rich = load("rich.yaml").capabilities();
    assert!(rich.presets && rich.prebuilds && rich.chats);
    let example = load("scenarios_md_example.yaml").capabilities();
    assert!(example.presets && example.prebuilds && example.chats);
    let plain = scenario::load_str(
        "x/plain.yaml",
        "name: plain\nrun_for: 1h\nworld:\n  users: [{name: a}]\n  templates: [{name: t, presets: [{name: p}]}]\n",
    )
    .unwrap()
    .capabilities();
    // A preset with no instances or schedules: the reconciler starts, but nothing exercises prebuilds.
    assert_eq!(plain, scenario::Capabilities { presets: true, prebuilds: false, chats: false });
}

#[test]
fn scenarios_md_example_means_what_the_document_says() {
    let s = load("scenarios_md_example.yaml");
    assert_eq!((s.seed, s.replicas), (7, 2));
    let w1 = &s.world.workspaces[0];
    assert_eq!((w1.ttl.value, w1.agent), (mins(480), AgentState::Ready));
    assert_eq!(s.world.chats[0].heartbeat, Some(at(-mins(10))));
    let Action::StoreFault(f) = &s.timeline[1].action else { panic!() };
    assert_eq!((f.kind, f.rate, f.duration), (StoreFaultKind::Error, 0.5, mins(5)));
    assert_eq!(f.ops.iter().copied().collect::<Vec<_>>(), [StoreOp::Write]);
    assert_eq!(s.expect[0].at, Some(mins(550)));
    assert_eq!(s.chaos.clock_skew, Some(DurationRange::new(Span::ZERO, Span::from_secs(2))));
}
