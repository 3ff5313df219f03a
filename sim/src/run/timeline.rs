//! The timeline: at each entry's instant (entries with equal `at` in file
//! order) the action starts as its own task. Users act through a replica's API
//! (on that replica's node, so a crash kills the request too) with the
//! replica's clock as `now`; faults and replica operations act on the world.
//! What the API refuses, or what names a replica that is down, is refused and
//! the trace says why.

use std::sync::Arc;

use engine::api::{ApiError, NewPreset, NewVersion, NewWorkspace, TemplateUpdate, WorkspaceUpdate};
use engine::ids::{UserId, WorkspaceId};
use engine::model::{AutostopRequirement, Transition, Workspace};
use engine::rules::bump::ActivitySource;
use engine::runtime::Clock;
use engine::store::{Store, Subsystem, Tx, TxOptions};
use engine::time::{Span, Timestamp};

use super::faults::ActiveFault;
use super::load::{parameter_specs, SIM_ADMIN};
use super::pubsub::PubsubFault;
use super::replica;
use super::sink::SinkFault;
use super::world::{lock, spawn_sim, ProvisionerFaultWindow, ReplicaSlot, World};
use crate::scenario::{Action, ReplicaRef, ReplicaTarget, StoreFaultKind, TimelineEntry};
use crate::trace::{Source, Subject};

/// One supervisor task walks the timeline and starts each entry's task.
pub(crate) fn start(world: &Arc<World>) {
    let mut entries: Vec<(usize, TimelineEntry)> = world.scenario.timeline.iter().cloned().enumerate().collect();
    entries.sort_by_key(|(index, entry)| (entry.at, *index));
    let weak = Arc::downgrade(world);
    spawn_sim(async move {
        for (_, entry) in entries {
            let Some(world) = weak.upgrade() else { return };
            let at = world.start + entry.at;
            let clock = world.clock.clone();
            drop(world);
            if clock.now() < at {
                clock.sleep_until(at).await;
            }
            let Some(world) = weak.upgrade() else { return };
            let weak_world = Arc::downgrade(&world);
            spawn_sim(async move {
                if let Some(world) = weak_world.upgrade() {
                    execute(world, entry).await;
                }
            });
        }
    });
}

fn refuse(world: &World, source: Source, action: &str, why: String) {
    world.note(source, "refused", action.to_owned(), why);
}

/// The replica an action goes through: the named one (it must be up), or the
/// lowest live one.
fn pick(world: &World, replica: Option<&ReplicaRef>, action: &str) -> Option<Arc<ReplicaSlot>> {
    match replica.map(|r| &r.value) {
        Some(ReplicaTarget::Index(index)) => match replica::live(world, *index) {
            Some(slot) => Some(slot),
            None => {
                refuse(world, Source::World, action, format!("replica {index} is down"));
                None
            }
        },
        Some(ReplicaTarget::ChatOwner(chat)) => {
            refuse(world, Source::World, action, format!("no replica holds chat {chat}'s lease"));
            None
        }
        None => match world.lowest_live() {
            Some(index) => replica::live(world, index),
            None => {
                refuse(world, Source::World, action, "no replica is live".to_owned());
                None
            }
        },
    }
}

fn slot_of(world: &World, replica: &ReplicaRef, action: &str) -> Option<Arc<ReplicaSlot>> {
    match &replica.value {
        ReplicaTarget::Index(index) => world.replicas.get(*index as usize).cloned(),
        ReplicaTarget::ChatOwner(chat) => {
            refuse(world, Source::World, action, format!("no replica holds chat {chat}'s lease"));
            None
        }
    }
}

async fn read_workspace(world: &World, id: WorkspaceId) -> Option<Workspace> {
    let observer = lock(&world.observer).clone()?;
    let mut tx = observer.begin(TxOptions::read_only(Subsystem::Admin)).await.ok()?;
    let workspace = tx.workspace(id).await.ok().flatten();
    let _ = tx.rollback().await;
    workspace
}

fn admin(world: &World) -> Option<UserId> {
    lock(&world.registry).admin.or_else(|| world.user_id(SIM_ADMIN))
}

/// Runs a user action on the replica's node; the trace gets its outcome.
fn on_replica<F>(world: &Arc<World>, slot: Arc<ReplicaSlot>, action: &'static str, subject: Vec<Subject>, work: F)
where
    F: FnOnce(
            Arc<World>,
            Arc<ReplicaSlot>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, ApiError>> + Send>>
        + Send
        + 'static,
{
    let Some(node) = lock(&slot.node).clone() else { return };
    let weak = Arc::downgrade(world);
    let source = Source::Replica(slot.index);
    world.record(source, "action", subject.clone(), action.to_owned(), String::new());
    node.spawn(async move {
        let Some(world) = weak.upgrade() else { return };
        let result = work(world.clone(), slot).await;
        match result {
            Ok(detail) => world.record(source, "done", subject, action.to_owned(), detail),
            Err(ApiError::Refused(refusal)) => {
                world.record(source, "refused", subject, action.to_owned(), refusal.to_string())
            }
            Err(ApiError::Store(error)) => {
                world.record(source, "failed", subject, action.to_owned(), error.to_string())
            }
        }
    });
}

async fn execute(world: Arc<World>, entry: TimelineEntry) {
    let name = entry.action.name();
    match entry.action {
        Action::Activity { workspace, replica } => {
            let Some(id) = world.workspace_id(&workspace.value) else {
                return refuse(&world, Source::World, name, format!("no workspace {}", workspace.value));
            };
            let Some(slot) = pick(&world, replica.as_ref(), name) else { return };
            on_replica(&world, slot, "activity", vec![Subject::Workspace(id)], move |_, slot| {
                Box::pin(async move {
                    let (api, _) = slot.api().ok_or_else(down)?;
                    let now = replica::now_of(&slot);
                    let bumped = api.report_activity(id, ActivitySource::AgentUsage { sessions: 1 }, now).await?;
                    Ok(bumped.map(|d| format!("deadline {d}")).unwrap_or_default())
                })
            });
        }
        Action::Start(b) | Action::Stop(b) | Action::Delete(b) => {
            let transition = match name {
                "start" => Transition::Start,
                "stop" => Transition::Stop,
                _ => Transition::Delete,
            };
            let Some(id) = world.workspace_id(&b.workspace.value) else {
                return refuse(&world, Source::World, name, format!("no workspace {}", b.workspace.value));
            };
            let actor = match &b.user {
                Some(user) => world.user_id(&user.value),
                None => read_workspace(&world, id).await.map(|w| w.owner_id),
            };
            let Some(actor) = actor else { return refuse(&world, Source::World, name, "no such user".into()) };
            let Some(slot) = pick(&world, b.replica.as_ref(), name) else { return };
            let label: &'static str = match transition {
                Transition::Start => "start",
                Transition::Stop => "stop",
                Transition::Delete => "delete",
            };
            on_replica(&world, slot, label, vec![Subject::Workspace(id)], move |_, slot| {
                Box::pin(async move {
                    let (api, _) = slot.api().ok_or_else(down)?;
                    let build = api.build(id, actor, transition, replica::now_of(&slot)).await?;
                    Ok(format!("build #{}", build.number))
                })
            });
        }
        Action::Extend { workspace, deadline, user, replica } => {
            let Some(id) = world.workspace_id(&workspace.value) else {
                return refuse(&world, Source::World, name, format!("no workspace {}", workspace.value));
            };
            let actor = match &user {
                Some(user) => world.user_id(&user.value),
                None => read_workspace(&world, id).await.map(|w| w.owner_id),
            };
            let Some(actor) = actor else { return refuse(&world, Source::World, name, "no such user".into()) };
            let Some(slot) = pick(&world, replica.as_ref(), name) else { return };
            let deadline = deadline.at(world.start);
            on_replica(&world, slot, "extend", vec![Subject::Workspace(id)], move |_, slot| {
                Box::pin(async move {
                    let (api, _) = slot.api().ok_or_else(down)?;
                    let set = api.extend(id, actor, deadline, replica::now_of(&slot)).await?;
                    Ok(format!("deadline {set}"))
                })
            });
        }
        Action::CreateWorkspace(create) => {
            let registry_lookup = {
                let registry = lock(&world.registry);
                let owner = registry.users.get(&create.owner.value).copied();
                let template = registry.templates.get(&create.template.value).copied();
                let version = create
                    .version
                    .as_ref()
                    .and_then(|v| registry.versions.get(&(create.template.value.clone(), v.value.clone())).copied());
                (owner, template, version)
            };
            let (Some(owner), Some(template)) = (registry_lookup.0, registry_lookup.1) else {
                return refuse(&world, Source::World, name, "unknown owner or template".into());
            };
            let Some(slot) = pick(&world, create.replica.as_ref(), name) else { return };
            let new = NewWorkspace {
                name: create.name.value.clone(),
                owner,
                template,
                version: registry_lookup.2,
                preset: None,
                parameters: create.parameters.clone(),
                ttl: create.ttl.as_ref().map(|t| (!t.value.is_zero()).then_some(t.value)),
                autostart: create.autostart.as_ref().map(|a| a.value.clone()),
                automatic_updates: create.automatic_updates.unwrap_or(engine::model::AutomaticUpdates::Never),
            };
            let ws_name = create.name.value.clone();
            on_replica(&world, slot, "create_workspace", vec![Subject::Name(ws_name.clone())], move |world, slot| {
                Box::pin(async move {
                    let (api, _) = slot.api().ok_or_else(down)?;
                    let created = api.create_workspace(owner, new, replica::now_of(&slot)).await?;
                    lock(&world.registry).workspaces.insert(ws_name.clone(), created.id);
                    lock(&world.names).workspaces.insert(created.id, ws_name);
                    Ok(String::new())
                })
            });
        }
        Action::UpdateWorkspace(update) => {
            let Some(id) = world.workspace_id(&update.name.value) else {
                return refuse(&world, Source::World, name, format!("no workspace {}", update.name.value));
            };
            let actor = match (&update.user, update.dormant) {
                (Some(user), _) => world.user_id(&user.value),
                (None, Some(_)) => admin(&world),
                (None, None) => read_workspace(&world, id).await.map(|w| w.owner_id),
            };
            let Some(actor) = actor else { return refuse(&world, Source::World, name, "no such user".into()) };
            let Some(slot) = pick(&world, update.replica.as_ref(), name) else { return };
            let change = WorkspaceUpdate {
                ttl: update.ttl.as_ref().map(|t| (!t.value.is_zero()).then_some(t.value)),
                autostart: update.autostart.as_ref().map(|a| a.as_ref().map(|c| c.value.clone())),
                automatic_updates: update.automatic_updates,
                dormant: update.dormant,
            };
            on_replica(&world, slot, "update_workspace", vec![Subject::Workspace(id)], move |_, slot| {
                Box::pin(async move {
                    let (api, _) = slot.api().ok_or_else(down)?;
                    api.update_workspace(id, actor, change, replica::now_of(&slot)).await?;
                    Ok(String::new())
                })
            });
        }
        Action::UpdateTemplate(update) => {
            let template = lock(&world.registry).templates.get(&update.name.value).copied();
            let (Some(template), Some(actor)) = (template, admin(&world)) else {
                return refuse(&world, Source::World, name, format!("no template {}", update.name.value));
            };
            let Some(slot) = pick(&world, update.replica.as_ref(), name) else { return };
            let c = &update.changes;
            let requirement = if c.autostop_requirement_days.is_some() || c.autostop_requirement_weeks.is_some() {
                Some((c.autostop_requirement_days, c.autostop_requirement_weeks.as_ref().map(|w| w.value)))
            } else {
                None
            };
            let mut change = TemplateUpdate {
                default_ttl: c.default_ttl.as_ref().map(|v| v.value),
                activity_bump: c.activity_bump.as_ref().map(|v| v.value),
                autostop_notify: c.time_til_autostop_notify.as_ref().map(|v| v.value),
                failure_ttl: c.failure_ttl.as_ref().map(|v| v.value),
                time_til_dormant: c.time_til_dormant.as_ref().map(|v| v.value),
                time_til_dormant_autodelete: c.time_til_dormant_autodelete.as_ref().map(|v| v.value),
                allow_user_autostart: c.allow_user_autostart,
                allow_user_autostop: c.allow_user_autostop,
                autostart_days: c.autostart_days,
                autostop_requirement: None,
                require_active_version: c.require_active_version,
                deprecated: c.deprecated,
                deleted: update.deleted.then_some(true),
            };
            on_replica(
                &world,
                slot,
                "update_template",
                vec![Subject::Name(update.name.value.clone())],
                move |_, slot| {
                    Box::pin(async move {
                        let (api, store) = slot.api().ok_or_else(down)?;
                        if let Some((days, weeks)) = requirement {
                            // Days and weeks may change separately: merge with the stored one.
                            let mut tx = store.begin(TxOptions::read_only(Subsystem::Api)).await?;
                            let current = tx.template(template).await?;
                            let _ = tx.rollback().await;
                            let base = current.map(|t| t.autostop_requirement).unwrap_or_default();
                            change.autostop_requirement = Some(AutostopRequirement {
                                days: days.unwrap_or(base.days),
                                weeks: weeks.unwrap_or(base.weeks),
                            });
                        }
                        api.update_template(template, actor, change, replica::now_of(&slot)).await?;
                        Ok(String::new())
                    })
                },
            );
        }
        Action::PublishVersion(publish) => {
            let template = lock(&world.registry).templates.get(&publish.template.value).copied();
            let (Some(template), Some(actor)) = (template, admin(&world)) else {
                return refuse(&world, Source::World, name, format!("no template {}", publish.template.value));
            };
            let Some(slot) = pick(&world, publish.replica.as_ref(), name) else { return };
            let version = NewVersion {
                name: publish.version.name.value.clone(),
                parameters: parameter_specs(&publish.version.parameters),
                presets: publish
                    .presets
                    .iter()
                    .map(|p| NewPreset {
                        name: p.name.value.clone(),
                        parameters: p.parameters.clone(),
                        instances: Some(p.instances),
                        expiration_ttl: p.expiration_ttl.value,
                        schedules: None,
                    })
                    .collect(),
            };
            let key = (publish.template.value.clone(), publish.version.name.value.clone());
            on_replica(&world, slot, "publish_version", vec![Subject::Name(key.0.clone())], move |world, slot| {
                Box::pin(async move {
                    let (api, _) = slot.api().ok_or_else(down)?;
                    let published = api.publish_version(template, actor, version, replica::now_of(&slot)).await?;
                    lock(&world.registry).versions.insert(key, published.id);
                    Ok(published.name)
                })
            });
        }
        Action::SetUser(set) => {
            let (Some(user), Some(actor)) = (world.user_id(&set.name.value), admin(&world)) else {
                return refuse(&world, Source::World, name, format!("no user {}", set.name.value));
            };
            let Some(slot) = pick(&world, set.replica.as_ref(), name) else { return };
            let (status, roles) = (set.status, set.roles);
            on_replica(&world, slot, "set_user", vec![Subject::User(user)], move |_, slot| {
                Box::pin(async move {
                    let (api, _) = slot.api().ok_or_else(down)?;
                    let updated = api.set_user(user, actor, status, roles).await?;
                    Ok(format!("status {}", updated.status))
                })
            });
        }
        Action::SetSetting { .. } | Action::Chat(_) => {
            refuse(&world, Source::World, name, "unsupported: this subsystem is not built yet".into());
        }
        Action::StoreFault(fault) => {
            let now = world.now();
            let until = now + fault.duration;
            lock(&world.pool_excuses).push((now, until));
            if fault.kind == StoreFaultKind::Restart {
                world.server.restart_sessions();
                world.faults.restart_database(until);
                world.note(Source::World, "fault", "database restart".to_owned(), format!("for {}", fault.duration));
                return;
            }
            let replica = fault.replica.as_ref().and_then(|r| match r.value {
                ReplicaTarget::Index(i) => Some(i),
                ReplicaTarget::ChatOwner(_) => None,
            });
            world.note(
                Source::World,
                "fault",
                format!("store {} on {:?}", fault.kind, fault.ops.iter().map(|o| o.as_str()).collect::<Vec<_>>()),
                format!(
                    "rate {} for {}{}",
                    fault.rate,
                    fault.duration,
                    replica.map(|r| format!(" r{r}")).unwrap_or_default()
                ),
            );
            world.faults.add(ActiveFault {
                kind: fault.kind,
                ops: fault.ops.clone(),
                rate: fault.rate,
                latency: fault.latency,
                replica,
                from: now,
                until,
            });
        }
        Action::PoolHog { replica, connections, duration } => {
            let Some(slot) = slot_of(&world, &replica, name) else { return };
            let until = world.now() + duration;
            lock(&world.pool_excuses).push((world.now(), until));
            world.note(
                Source::Replica(slot.index),
                "fault",
                "pool hog".to_owned(),
                format!("{connections} for {duration}"),
            );
            hog(&world, slot, connections, until);
        }
        Action::PubsubFault { kind, rate, delay, duration } => {
            let now = world.now();
            world.pubsub.add_fault(PubsubFault { kind, rate, delay, from: now, until: now + duration });
            world.note(Source::World, "fault", format!("pubsub {kind}"), format!("rate {rate} for {duration}"));
        }
        Action::NotificationFault { rate, duration } => {
            let now = world.now();
            world.sink.add_fault(SinkFault { rate, from: now, until: now + duration });
            world.note(
                Source::World,
                "fault",
                "notification delivery".to_owned(),
                format!("rate {rate} for {duration}"),
            );
        }
        Action::ProvisionerFault(fault) => {
            let now = world.now();
            lock(&world.provisioner_faults).push(ProvisionerFaultWindow {
                template: fault.template.as_ref().map(|t| t.value.clone()),
                failure_rate: fault.failure_rate,
                build_duration: fault.build_duration,
                offline: fault.offline,
                from: now,
                until: now + fault.duration,
            });
            let what = if fault.offline { "provisioners offline".to_owned() } else { "provisioner".to_owned() };
            world.note(Source::World, "fault", what, format!("for {}", fault.duration));
        }
        Action::Shutdown { replica } => {
            let Some(slot) = slot_of(&world, &replica, name) else { return };
            if !replica::shutdown(&world, &slot) {
                refuse(&world, Source::Replica(slot.index), name, "the replica is not running".into());
            }
        }
        Action::Crash { replica, restart_after } => {
            let Some(slot) = slot_of(&world, &replica, name) else { return };
            if !replica::crash(&world, &slot) {
                return refuse(&world, Source::Replica(slot.index), name, "the replica is down".into());
            }
            if let Some(range) = restart_after {
                let after = world.draw("restart_after", range);
                let back = world.now() + after;
                let clock = world.clock.clone();
                let weak = Arc::downgrade(&world);
                drop(world);
                clock.sleep_until(back).await;
                if let Some(world) = weak.upgrade() {
                    replica::restart(&world, &slot, "restart_after");
                }
            }
        }
        Action::Restart { replica } => {
            let Some(slot) = slot_of(&world, &replica, name) else { return };
            if !replica::restart(&world, &slot, "timeline restart") {
                refuse(&world, Source::Replica(slot.index), name, "the replica is live".into());
            }
        }
        Action::ClockSkew { replica, offset } => {
            let Some(slot) = slot_of(&world, &replica, name) else { return };
            slot.clock.set_skew(offset);
            world.note(Source::Replica(slot.index), "skew", "clock skew".to_owned(), format!("{offset}"));
        }
    }
}

fn down() -> ApiError {
    ApiError::Store(engine::store::StoreError::connection_lost("the replica went down"))
}

/// Another user of the database takes connections from a replica's pool as
/// they come free (at most `connections`) and holds them until `until`.
fn hog(world: &Arc<World>, slot: Arc<ReplicaSlot>, connections: u32, until: Timestamp) {
    let weak = Arc::downgrade(world);
    spawn_sim(async move {
        let mut held = Vec::new();
        loop {
            let Some(world) = weak.upgrade() else { return };
            let now = world.now();
            if now >= until {
                break;
            }
            let clock = world.clock.clone();
            drop(world);
            if held.len() as u32 >= connections {
                clock.sleep_until(until).await;
                continue;
            }
            match slot.api() {
                Some((_, store)) => match store.begin(TxOptions::new(Subsystem::Admin)).await {
                    Ok(tx) => held.push(tx),
                    Err(_) => clock.sleep_until(clock.now() + Span::from_millis(100)).await,
                },
                None => clock.sleep_until(clock.now() + Span::from_secs(1)).await,
            }
        }
        drop(held);
    });
}
