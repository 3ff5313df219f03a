//! The invariants of SCENARIOS.md, judged on every run from the checkers' own
//! model: the database's commit log, the pools' timeout logs, the provisioners'
//! job records and the sink's deliveries. Invariants judge only what was
//! written during the run (not the seeded world). The engine's pure rules
//! decide what was *due* (for `reminder_when_due` and `liveness`), never what
//! happened.

use std::collections::{BTreeMap, BTreeSet};

use engine::ids::{BuildId, WorkspaceId};
use engine::model::{Build, BuildReason, JobStatus, NotificationKind, NotificationPayload, Transition};
use engine::rules::lifecycle::{evaluate, Action, LifecycleView};
use engine::rules::reminder::ReminderDecision;
use engine::store::sqlite::{AuditRow, ClientId};
use engine::store::Subsystem;
use engine::time::{Span, Timestamp};

use super::observe::{as_of, Model, Versioned};
use super::world::{lock, Violation, World};

pub(crate) fn check(world: &World, model: &Model) {
    let mut found = Vec::new();
    one_build_per_trigger(world, model, &mut found);
    no_concurrent_jobs(world, model, &mut found);
    reminder_once(world, model, &mut found);
    reminder_when_due(world, model, &mut found);
    notifications_delivered(world, model, &mut found);
    deadline_within_max(world, model, &mut found);
    last_used_monotonic(world, model, &mut found);
    pool_reserve(world, &mut found);
    liveness(world, model, &mut found);
    for violation in found {
        world.violation(violation);
    }
}

fn replica_of(world: &World, client: ClientId) -> Option<u32> {
    lock(&world.clients).get(&client).copied()
}

fn name_of(world: &World, workspace: WorkspaceId) -> String {
    lock(&world.names).workspaces.get(&workspace).cloned().unwrap_or_else(|| workspace.to_string())
}

fn violation(
    world: &World,
    invariant: &'static str,
    at: Timestamp,
    client: Option<ClientId>,
    objects: Vec<String>,
    message: String,
) -> Violation {
    Violation { invariant, at: at - world.start, replica: client.and_then(|c| replica_of(world, c)), objects, message }
}

/// Builds inserted during the run by the engine (not seeded, not provisioners).
fn engine_builds(model: &Model) -> Vec<&Versioned<Build>> {
    let mut builds: Vec<&Versioned<Build>> = model
        .builds
        .values()
        .filter_map(|v| v.first())
        .filter(|v| !model.seeded(v.client) && Some(v.client) != model.provisioner)
        .collect();
    builds.sort_by_key(|v| (v.seq, v.value.number));
    builds
}

fn one_build_per_trigger(world: &World, model: &Model, out: &mut Vec<Violation>) {
    let mut triggers: BTreeMap<String, BuildId> = BTreeMap::new();
    for created in engine_builds(model) {
        let build = &created.value;
        let ws = build.workspace_id;
        // Every build of the workspace, as committed at the end, by number.
        let mut all: Vec<&Build> =
            model.builds.values().filter_map(|v| v.last()).map(|v| &v.value).filter(|b| b.workspace_id == ws).collect();
        all.sort_by_key(|b| b.number);
        let before =
            |pred: &dyn Fn(&Build) -> bool| all.iter().rev().find(|b| b.number < build.number && pred(b)).map(|b| b.id);
        let workspace_before = model.workspaces.get(&ws).and_then(|v| v.iter().rev().find(|w| w.seq < created.seq));
        let workspace_with = model.workspaces.get(&ws).and_then(|v| v.iter().find(|w| w.seq == created.seq));
        let trigger = match build.reason {
            BuildReason::Autostart => {
                let instant = workspace_before.and_then(|w| w.value.next_start_at);
                format!("autostart {ws} {instant:?}")
            }
            BuildReason::Autostop => format!("autostop {:?}", before(&|b| b.transition == Transition::Start)),
            BuildReason::Failedstop => {
                let failed = before(&|b| {
                    model
                        .jobs
                        .get(&b.job_id)
                        .and_then(|v| v.last())
                        .is_some_and(|j| j.value.status == JobStatus::Failed)
                });
                format!("failedstop {failed:?}")
            }
            BuildReason::Dormancy => {
                let dormant_at = workspace_with.or(workspace_before).and_then(|w| w.value.dormant_at);
                format!("dormancy {ws} {dormant_at:?}")
            }
            BuildReason::Autodelete => {
                let deleting_at = workspace_before.and_then(|w| w.value.deleting_at);
                // A new attempt is legitimate only after the previous one failed.
                let attempt = all
                    .iter()
                    .filter(|b| b.number < build.number && b.reason == BuildReason::Autodelete)
                    .filter(|b| {
                        model
                            .jobs
                            .get(&b.job_id)
                            .and_then(|v| as_of(v, created.at))
                            .is_some_and(|j| matches!(j.value.status, JobStatus::Failed | JobStatus::Canceled))
                    })
                    .count();
                format!("autodelete {ws} {deleting_at:?} attempt {attempt}")
            }
            BuildReason::Initiator | BuildReason::Prebuild | BuildReason::Claim => continue,
        };
        if let Some(first) = triggers.insert(trigger.clone(), build.id) {
            out.push(violation(
                world,
                "one_build_per_trigger",
                created.at,
                Some(created.client),
                vec![name_of(world, ws)],
                format!("two {} builds for one trigger ({trigger}): {first} and {}", build.reason, build.id),
            ));
        }
    }
}

fn no_concurrent_jobs(world: &World, model: &Model, out: &mut Vec<Violation>) {
    let mut unfinished: BTreeMap<WorkspaceId, BTreeSet<engine::ids::JobId>> = BTreeMap::new();
    let mut reported = BTreeSet::new();
    for commit in &model.commits {
        for row in &commit.rows {
            if let AuditRow::Job(job) = row {
                let set = unfinished.entry(job.workspace_id).or_default();
                if job.status.is_terminal() {
                    set.remove(&job.id);
                } else {
                    set.insert(job.id);
                }
            }
        }
        for (ws, jobs) in &unfinished {
            if jobs.len() > 1 && !model.seeded(commit.client) && reported.insert(*ws) {
                out.push(violation(
                    world,
                    "no_concurrent_jobs",
                    commit.at,
                    Some(commit.client),
                    vec![name_of(world, *ws)],
                    format!("{} unfinished build jobs at once", jobs.len()),
                ));
            }
        }
    }
}

fn reminder_key(payload: &NotificationPayload) -> Option<Timestamp> {
    match payload {
        NotificationPayload::AutostopReminder { stop_at, .. } => Some(*stop_at),
        _ => None,
    }
}

fn reminder_once(world: &World, model: &Model, out: &mut Vec<Violation>) {
    let mut seen: BTreeMap<(Option<WorkspaceId>, Timestamp), u32> = BTreeMap::new();
    for versions in model.notifications.values() {
        let Some(first) = versions.first() else { continue };
        if first.value.kind != NotificationKind::AutostopReminder || model.seeded(first.client) {
            continue;
        }
        let Some(stop_at) = reminder_key(&first.value.payload) else { continue };
        let count = seen.entry((first.value.workspace_id, stop_at)).or_insert(0);
        *count += 1;
        if *count == 2 {
            let ws = first.value.workspace_id.map(|w| name_of(world, w)).unwrap_or_default();
            out.push(violation(
                world,
                "reminder_once",
                first.at,
                Some(first.client),
                vec![ws],
                format!("a second autostop reminder row for the stop at {stop_at}"),
            ));
        }
    }
}

fn lifecycle_view(model: &Model, ws: WorkspaceId, t: Timestamp) -> Option<LifecycleView> {
    let workspace = model.workspace_at(ws, t)?.clone();
    if workspace.deleted || workspace.is_prebuild() {
        return None;
    }
    let owner = model.user_at(workspace.owner_id, t)?.clone();
    let template = model.template_at(workspace.template_id, t)?.clone();
    let latest = model.latest_build_at(ws, t);
    let active_version = model.version(template.active_version_id).cloned();
    let has_live_chat = model.has_live_chat_at(ws, t);
    Some(LifecycleView { workspace, owner, template, latest, active_version, has_live_chat })
}

fn reminder_when_due(world: &World, model: &Model, out: &mut Vec<Violation>) {
    // (a) A marker set by a replica commits with its outbox row (unless a chat
    // drives the workspace, or the row was already there).
    for commit in &model.commits {
        if model.seeded(commit.client) || Some(commit.client) == model.provisioner {
            continue;
        }
        for row in &commit.rows {
            let AuditRow::Build(build) = row else { continue };
            let Some(marker) = build.notified_autostop_deadline else { continue };
            let previous = model.builds.get(&build.id).and_then(|v| v.iter().rev().find(|b| b.seq < commit.seq));
            if previous.is_some_and(|p| p.value.notified_autostop_deadline == Some(marker)) {
                continue;
            }
            let ws = build.workspace_id;
            let with_row = |n: &engine::model::Notification| {
                n.kind == NotificationKind::AutostopReminder
                    && n.workspace_id == Some(ws)
                    && reminder_key(&n.payload) == Some(marker)
            };
            let in_commit = commit.rows.iter().any(|r| matches!(r, AuditRow::Notification(n) if with_row(n)));
            let earlier = model
                .notifications
                .values()
                .filter_map(|v| v.first())
                .any(|n| n.seq < commit.seq && with_row(&n.value));
            if !in_commit && !earlier && !model.has_live_chat_at(ws, commit.at) {
                out.push(violation(
                    world,
                    "reminder_when_due",
                    commit.at,
                    Some(commit.client),
                    vec![name_of(world, ws)],
                    format!("reminder marker {marker} committed without its outbox row"),
                ));
            }
        }
    }
    // (b) Every reminder the rules make due at a tick during settle is delivered.
    let settings = &world.scenario.settings;
    let interval = settings.lifecycle_interval;
    let slack = interval.saturating_mul(2)
        + settings.notification_poll_interval
        + settings.notification_retry
        + Span::from_mins(1);
    let delivered: BTreeSet<(Option<WorkspaceId>, Timestamp)> = lock(&world.sink.deliveries)
        .iter()
        .filter(|d| d.notification.kind == NotificationKind::AutostopReminder)
        .filter_map(|d| reminder_key(&d.notification.payload).map(|s| (d.notification.workspace_id, s)))
        .collect();
    let mut tick_at = world.settle_at.truncate(interval) + interval;
    let mut reported = BTreeSet::new();
    while tick_at + slack <= world.end_at {
        for ws in model.workspaces.keys() {
            let Some(view) = lifecycle_view(model, *ws, tick_at) else { continue };
            let outcome = evaluate(&view, tick_at, tick_at);
            if let Action::Reminder(ReminderDecision::Remind { stop_at, notify: true }) = outcome.action {
                if !delivered.contains(&(Some(*ws), stop_at)) && reported.insert((*ws, stop_at)) {
                    out.push(violation(
                        world,
                        "reminder_when_due",
                        tick_at,
                        None,
                        vec![name_of(world, *ws)],
                        format!(
                            "a reminder for the stop at {stop_at}, due at the tick of {tick_at}, was never delivered"
                        ),
                    ));
                }
            }
        }
        tick_at += interval;
    }
}

fn notifications_delivered(world: &World, model: &Model, out: &mut Vec<Violation>) {
    let deliveries = lock(&world.sink.deliveries);
    for versions in model.notifications.values() {
        let Some(marked) = versions.iter().find(|v| v.value.delivered_at.is_some()) else { continue };
        if model.seeded(marked.client) {
            continue;
        }
        let received = deliveries.iter().any(|d| d.notification.id == marked.value.id && d.at <= marked.at);
        if !received {
            out.push(violation(
                world,
                "notifications_delivered",
                marked.at,
                Some(marked.client),
                vec![marked.value.kind.to_string()],
                format!("outbox row {} marked delivered but the sink never received it", marked.value.id),
            ));
        }
    }
}

fn deadline_within_max(world: &World, model: &Model, out: &mut Vec<Violation>) {
    for versions in model.builds.values() {
        for (index, version) in versions.iter().enumerate() {
            if model.seeded(version.client) {
                continue;
            }
            let build = &version.value;
            // Judge only what the engine wrote: a version carrying a seeded
            // deadline and max unchanged (a marker update, say) is not judged.
            let previous = index.checked_sub(1).map(|i| &versions[i].value);
            if previous.is_some_and(|p| p.deadline == build.deadline && p.max_deadline == build.max_deadline) {
                continue;
            }
            if let (Some(deadline), Some(max)) = (build.deadline, build.max_deadline) {
                if deadline > max {
                    out.push(violation(
                        world,
                        "deadline_within_max",
                        version.at,
                        Some(version.client),
                        vec![name_of(world, build.workspace_id)],
                        format!("deadline {deadline} is past the max deadline {max} (build #{})", build.number),
                    ));
                    break;
                }
            }
        }
    }
}

fn last_used_monotonic(world: &World, model: &Model, out: &mut Vec<Violation>) {
    for versions in model.workspaces.values() {
        for pair in versions.windows(2) {
            let (before, after) = (&pair[0], &pair[1]);
            if model.seeded(after.client) {
                continue;
            }
            if after.value.last_used_at < before.value.last_used_at {
                out.push(violation(
                    world,
                    "last_used_monotonic",
                    after.at,
                    Some(after.client),
                    vec![after.value.name.clone()],
                    format!(
                        "last_used_at moved back from {} to {}",
                        before.value.last_used_at, after.value.last_used_at
                    ),
                ));
                break;
            }
        }
    }
}

fn pool_reserve(world: &World, out: &mut Vec<Violation>) {
    for (replica, store) in lock(&world.stores).iter() {
        for (at, subsystem) in store.take_pool_timeouts() {
            let guarded = matches!(subsystem, Subsystem::Usage | Subsystem::ChatLease);
            if guarded && !world.pool_excused(at) {
                out.push(Violation {
                    invariant: "pool_reserve",
                    at: at - world.start,
                    replica: Some(*replica),
                    objects: vec![format!("r{replica}")],
                    message: format!(
                        "a {} call found no connection while no pool hog or store fault was active",
                        subsystem.as_str()
                    ),
                });
            }
        }
    }
}

fn liveness(world: &World, model: &Model, out: &mut Vec<Violation>) {
    let end = world.end_at;
    let settle = world.settle_at;
    let minute = Span::from_mins(1);
    for run in lock(&world.jobs).iter() {
        if run.finished_at.is_none() && (run.taken_at + run.duration).max(settle) + minute < end {
            out.push(violation(
                world,
                "liveness",
                end,
                None,
                vec![name_of(world, run.workspace)],
                format!("job {} taken at {} for {} is still unfinished", run.job, run.taken_at, run.duration),
            ));
        }
    }
    let settings = &world.scenario.settings;
    let outbox_bound = settings.notification_poll_interval + settings.notification_retry + minute;
    for versions in model.notifications.values() {
        let (Some(first), Some(last)) = (versions.first(), versions.last()) else { continue };
        if last.value.delivered_at.is_none() && first.at.max(settle) + outbox_bound < end {
            out.push(violation(
                world,
                "liveness",
                end,
                None,
                vec![last.value.kind.to_string()],
                format!("outbox row {} written at {} was never delivered", last.value.id, first.at),
            ));
        }
    }
    // Transitions due well before the end were done.
    let interval = settings.lifecycle_interval;
    let check_at = end - (interval.saturating_mul(2) + world.scenario.build_duration_max());
    if check_at < settle || world.scenario.provisioners.count == 0 {
        return;
    }
    let tick_at = check_at.truncate(interval);
    for ws in model.workspaces.keys() {
        let Some(view) = lifecycle_view(model, *ws, check_at) else { continue };
        let outcome = evaluate(&view, tick_at, check_at);
        let due = match &outcome.action {
            Action::Build { build, .. } => format!("{} {}", build.transition, build.reason),
            Action::Mark(_) => "dormancy mark".to_owned(),
            _ => continue,
        };
        let built_after =
            model.builds.values().filter_map(|v| v.first()).any(|b| b.value.workspace_id == *ws && b.at >= check_at);
        let marked = model.workspace_at(*ws, end).is_some_and(|w| w.dormant_at.is_some());
        let done = match outcome.action {
            Action::Mark(_) => marked,
            _ => built_after,
        };
        if !done {
            out.push(violation(
                world,
                "liveness",
                end,
                None,
                vec![name_of(world, *ws)],
                format!("{due} was due at {check_at} and never happened"),
            ));
        }
    }
}
