//! The scenario's expectations, each checked against the state at its `at`
//! (everything committed before `t`, nothing at `t`), from the checkers' model
//! and the sink's deliveries.

use std::collections::BTreeSet;

use engine::ids::{UserId, WorkspaceId, PREBUILDS_USER_ID};
use engine::model::BuildWithJob;
use engine::time::{Span, Timestamp};

use super::observe::{as_of, status_of, Model};
use super::world::{lock, World};
use crate::report::Failure;
use crate::scenario::{
    AgentState, BuildsExpect, Expect, Expectation, NotificationsExpect, Owner, Point, PointExpect, WorkspaceExpect,
};
use crate::trace::format_offset;

pub(crate) fn check(world: &World, model: &Model) -> Vec<Failure> {
    let mut failures = Vec::new();
    let no_violations = lock(&world.violations).is_empty();
    for expectation in &world.scenario.expect {
        let at = expectation.at.unwrap_or(world.scenario.run_end());
        let t = world.start + at;
        let result = match &expectation.kind {
            Expect::Builds(b) => builds(world, model, b, t),
            Expect::Notifications(n) => notifications(world, model, n, t),
            Expect::Workspace(w) => workspace(world, model, w, t),
            Expect::Violations => {
                if no_violations {
                    Ok(())
                } else {
                    Err("expected no invariant violations".to_owned())
                }
            }
            Expect::Prebuilds(_) | Expect::Preset(_) | Expect::Chat(_) => {
                Err("unsupported: this subsystem is not built yet".to_owned())
            }
        };
        if let Err(message) = result {
            failures.push(failure(world, expectation, at, message));
        }
    }
    failures
}

fn failure(world: &World, expectation: &Expectation, at: Span, message: String) -> Failure {
    Failure {
        kind: "expectation".into(),
        name: expectation.kind.name().into(),
        at_us: at.as_micros(),
        at: format_offset(at),
        replica: None,
        objects: Vec::new(),
        message,
        location: world.scenario.locate(expectation.origin),
    }
}

/// The workspace a name means at `t`: the non-deleted one with that name,
/// else the last deleted one.
fn resolve(model: &Model, name: &str, t: Timestamp) -> Option<WorkspaceId> {
    let mut deleted = None;
    for (id, versions) in &model.workspaces {
        let Some(v) = as_of(versions, t) else { continue };
        if v.value.name == name {
            if !v.value.deleted {
                return Some(*id);
            }
            deleted = Some(*id);
        }
    }
    deleted
}

fn name_at(model: &Model, id: WorkspaceId, t: Timestamp) -> Option<String> {
    model.workspace_at(id, t).map(|w| w.name.clone())
}

fn user_name(model: &Model, id: UserId, t: Timestamp) -> String {
    if id == PREBUILDS_USER_ID {
        return "prebuilds".to_owned();
    }
    model.user_at(id, t).map(|u| u.name.clone()).unwrap_or_else(|| id.to_string())
}

fn count_message(what: &str, count: &crate::scenario::Count, got: u64) -> String {
    let wanted = match count {
        crate::scenario::Count::Exactly(n) => format!("{n}"),
        crate::scenario::Count::Within { at_least, at_most } => match (at_least, at_most) {
            (Some(min), Some(max)) => format!("{min}..={max}"),
            (Some(min), None) => format!("at least {min}"),
            (None, Some(max)) => format!("at most {max}"),
            (None, None) => "any".to_owned(),
        },
    };
    format!("expected {wanted} {what}, found {got}")
}

fn builds(world: &World, model: &Model, expect: &BuildsExpect, t: Timestamp) -> Result<(), String> {
    let mut matched = Vec::new();
    for versions in model.builds.values() {
        let Some(created) = versions.first() else { continue };
        if model.seeded(created.client) || created.at >= t {
            continue;
        }
        let Some(now) = as_of(versions, t) else { continue };
        let build = &now.value;
        if let Some(name) = &expect.workspace {
            if name_at(model, build.workspace_id, t).as_deref() != Some(name.value.as_str()) {
                continue;
            }
        }
        if expect.transition.is_some_and(|x| x != build.transition) || expect.reason.is_some_and(|x| x != build.reason)
        {
            continue;
        }
        if let Some(status) = expect.status {
            if model.job_at(build.job_id, t).map(|j| j.status) != Some(status) {
                continue;
            }
        }
        if let Some(version) = &expect.version {
            if model.version(build.version_id).map(|v| v.name.as_str()) != Some(version.value.as_str()) {
                continue;
            }
        }
        if let Some(window) = &expect.between {
            if !window.contains(Point::from_offset(created.at - world.start)) {
                continue;
            }
        }
        matched.push(format!(
            "{} #{} {} {} at {}",
            name_at(model, build.workspace_id, t).unwrap_or_default(),
            build.number,
            build.transition,
            build.reason,
            format_offset(created.at - world.start)
        ));
    }
    let got = matched.len() as u64;
    if expect.count.accepts(got) {
        Ok(())
    } else {
        Err(format!("{} ({})", count_message("builds", &expect.count, got), matched.join(", ")))
    }
}

fn notifications(world: &World, model: &Model, expect: &NotificationsExpect, t: Timestamp) -> Result<(), String> {
    let deliveries = lock(&world.sink.deliveries);
    let mut keys = BTreeSet::new();
    for delivery in deliveries.iter().filter(|d| d.at < t) {
        let n = &delivery.notification;
        if expect.kind.is_some_and(|k| k != n.kind) {
            continue;
        }
        if let Some(name) = &expect.workspace {
            let current = n.workspace_id.and_then(|w| name_at(model, w, t));
            if current.as_deref() != Some(name.value.as_str()) {
                continue;
            }
        }
        if let Some(user) = &expect.user {
            if user_name(model, n.user_id, t) != user.value {
                continue;
            }
        }
        if let Some(window) = &expect.between {
            let created = model.notifications.get(&n.id).and_then(|v| v.first()).map(|v| v.at).unwrap_or(delivery.at);
            if !window.contains(Point::from_offset(created - world.start)) {
                continue;
            }
        }
        keys.insert((n.dedupe_key.clone(), n.user_id));
    }
    let got = keys.len() as u64;
    if expect.count.accepts(got) {
        Ok(())
    } else {
        Err(count_message("notifications delivered", &expect.count, got))
    }
}

fn point(world: &World, field: &str, expect: Option<PointExpect>, got: Option<Timestamp>) -> Result<(), String> {
    let Some(expect) = expect else { return Ok(()) };
    let shown = |v: Option<Timestamp>| {
        v.map_or("none".to_owned(), |v| format!("{v} ({})", Point::from_offset(v - world.start)))
    };
    let ok = match (expect, got) {
        (PointExpect::None, None) => true,
        (PointExpect::Set, Some(_)) => true,
        (PointExpect::At(p), Some(v)) => p.at(world.start) == v,
        (PointExpect::Within(w), Some(v)) => w.contains(Point::from_offset(v - world.start)),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        let wanted = match expect {
            PointExpect::None => "none".to_owned(),
            PointExpect::Set => "set".to_owned(),
            PointExpect::At(p) => format!("{} ({p})", p.at(world.start)),
            PointExpect::Within(w) => format!("within [{}, {}]", w.from, w.to),
        };
        Err(format!("{field}: expected {wanted}, found {}", shown(got)))
    }
}

fn workspace(world: &World, model: &Model, expect: &WorkspaceExpect, t: Timestamp) -> Result<(), String> {
    let Some(id) = resolve(model, &expect.name.value, t) else {
        return Err(format!("no workspace named {} at {}", expect.name.value, format_offset(t - world.start)));
    };
    let Some(ws) = model.workspace_at(id, t) else { return Err(format!("no workspace {}", expect.name.value)) };
    let latest: Option<BuildWithJob> = model.latest_build_at(id, t);
    let mut problems = Vec::new();
    if let Some(status) = expect.status {
        let got = status_of(latest.as_ref());
        if got != status {
            problems.push(format!("status: expected {status}, found {got}"));
        }
    }
    if let Some(owner) = &expect.owner {
        let got = user_name(model, ws.owner_id, t);
        let wanted = match &owner.value {
            Owner::Prebuilds => "prebuilds".to_owned(),
            Owner::User(name) => name.clone(),
        };
        if got != wanted {
            problems.push(format!("owner: expected {wanted}, found {got}"));
        }
    }
    if let Some(version) = &expect.version {
        let got = latest.as_ref().and_then(|l| model.version(l.build.version_id)).map(|v| v.name.clone());
        if got.as_deref() != Some(version.value.as_str()) {
            problems.push(format!(
                "version: expected {}, found {}",
                version.value,
                got.unwrap_or_else(|| "none".into())
            ));
        }
    }
    let build = latest.as_ref().map(|l| &l.build);
    let checks = [
        ("deadline", expect.deadline, build.and_then(|b| b.deadline)),
        ("max_deadline", expect.max_deadline, build.and_then(|b| b.max_deadline)),
        ("dormant_at", expect.dormant_at, ws.dormant_at),
        ("deleting_at", expect.deleting_at, ws.deleting_at),
        ("last_used", expect.last_used, Some(ws.last_used_at)),
        ("next_start_at", expect.next_start_at, ws.next_start_at),
    ];
    for (field, wanted, got) in checks {
        if let Err(problem) = point(world, field, wanted, got) {
            problems.push(problem);
        }
    }
    if let Some(agent) = expect.agent {
        let ready = latest.as_ref().is_some_and(|l| {
            l.build.transition == engine::model::Transition::Start
                && l.job.status == engine::model::JobStatus::Succeeded
                && l.build.agent_ready_at.is_some()
        });
        let got = if ready { AgentState::Ready } else { AgentState::NotReady };
        if got != agent {
            problems.push(format!("agent: expected {agent}, found {got}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("workspace {}: {}", expect.name.value, problems.join("; ")))
    }
}
