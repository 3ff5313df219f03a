//! World load: the scenario's `world` written into the database, with what the
//! file leaves out derived as the engine would have written it (lifecycle.md
//! §5.5): ttls copied from the template, deadlines and max deadlines of
//! succeeded starts by §5.1-5.2 from `completed`, `next_start_at` from the
//! latest build's `created`.

use std::collections::BTreeMap;

use engine::ids::{IdGen, JobId, UserId, VersionId, WorkspaceId, PREBUILDS_USER_ID, PREBUILDS_USER_NAME};
use engine::model::{
    AutostopRequirement, Build, Chat, Job, JobStatus, ParameterSpec, Preset, PresetScheduleRule, PresetSchedules,
    PresetStatus, Roles, Template, TemplateVersion, Transition, User, UserStatus, Workspace,
};
use engine::rules::deadline::{deadlines_at_completion, CompletionDeadlines, CompletionInput};
use engine::rules::lifecycle::next_start_at_after_build;
use engine::store::sqlite::SqliteStore;
use engine::store::{Store, StoreError, Subsystem, Tx, TxOptions};
use engine::time::{Span, Timestamp};

use super::world::{lock, World};
use crate::scenario::{self, AgentState, Derived, Owner};

/// The hidden admin that performs the timeline's admin actions.
pub(crate) const SIM_ADMIN: &str = "_sim_admin";

/// What the load leaves for the neighbours: jobs seeded as running, which a
/// simulated provisioner adopts at once.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub running_jobs: Vec<JobId>,
}

fn ts(world: &World, point: scenario::Point) -> Timestamp {
    point.at(world.start)
}

fn ttl_of(value: Span) -> Option<Span> {
    (!value.is_zero()).then_some(value)
}

pub(crate) fn template_record(
    id: engine::ids::TemplateId,
    name: &str,
    settings: &scenario::TemplateSettings,
    active_version_id: VersionId,
    created_at: Timestamp,
) -> Template {
    Template {
        id,
        name: name.to_owned(),
        active_version_id,
        default_ttl: settings.default_ttl.value,
        activity_bump: settings.activity_bump.value,
        autostop_notify: settings.time_til_autostop_notify.value,
        failure_ttl: settings.failure_ttl.value,
        time_til_dormant: settings.time_til_dormant.value,
        time_til_dormant_autodelete: settings.time_til_dormant_autodelete.value,
        allow_user_autostart: settings.allow_user_autostart,
        allow_user_autostop: settings.allow_user_autostop,
        autostart_days: settings.autostart_days,
        autostop_requirement: AutostopRequirement {
            days: settings.autostop_requirement.days,
            weeks: settings.autostop_requirement.weeks.value,
        },
        require_active_version: settings.require_active_version,
        deprecated: settings.deprecated,
        deleted: false,
        created_at,
    }
}

pub(crate) fn parameter_specs(specs: &[scenario::ParameterSpec]) -> Vec<ParameterSpec> {
    specs
        .iter()
        .map(|p| ParameterSpec { name: p.name.value.clone(), required: p.required, default: p.default.clone() })
        .collect()
}

pub(crate) fn preset_record(preset: &scenario::Preset, id: engine::ids::PresetId, version_id: VersionId) -> Preset {
    Preset {
        id,
        version_id,
        name: preset.name.value.clone(),
        parameters: preset.parameters.clone(),
        instances: Some(preset.instances),
        expiration_ttl: preset.expiration_ttl.value,
        schedules: preset.schedules.as_ref().map(|s| PresetSchedules {
            timezone: s.timezone.value.clone(),
            rules: s
                .rules
                .iter()
                .map(|r| PresetScheduleRule { cron: r.cron.value.clone(), instances: r.instances })
                .collect(),
        }),
        last_invalidated_at: None,
        status: PresetStatus::Healthy,
    }
}

/// Writes the world in one transaction of the loader's client.
pub(crate) async fn load(world: &World, store: &SqliteStore) -> Result<Loaded, StoreError> {
    let scenario = world.scenario.clone();
    let mut ids = IdGen::for_purpose(world.seed, "world");
    let at0 = world.start;
    let mut tx = store.begin(TxOptions::new(Subsystem::Admin)).await?;
    let mut loaded = Loaded::default();
    let mut users: BTreeMap<String, User> = BTreeMap::new();

    let system = [
        User {
            id: PREBUILDS_USER_ID,
            name: PREBUILDS_USER_NAME.to_owned(),
            status: UserStatus::Active,
            roles: Roles::default(),
            quiet_hours: String::new(),
            created_at: at0,
        },
        User {
            id: ids.next_id(),
            name: SIM_ADMIN.to_owned(),
            status: UserStatus::Active,
            roles: Roles { admin: true, template_admin: false },
            quiet_hours: String::new(),
            created_at: at0,
        },
    ];
    for user in &system {
        tx.insert_user(user).await?;
    }
    lock(&world.registry).admin = Some(system[1].id);
    for user in &scenario.world.users {
        let record = User {
            id: ids.next_id(),
            name: user.name.value.clone(),
            status: user.status,
            roles: user.roles,
            quiet_hours: user.quiet_hours.value.clone(),
            created_at: at0,
        };
        tx.insert_user(&record).await?;
        lock(&world.registry).users.insert(record.name.clone(), record.id);
        lock(&world.names).users.insert(record.id, record.name.clone());
        users.insert(record.name.clone(), record);
    }

    let mut templates: BTreeMap<String, (Template, BTreeMap<String, VersionId>)> = BTreeMap::new();
    for template in &scenario.world.templates {
        let template_id = ids.next_id();
        let mut versions = BTreeMap::new();
        let mut active = None;
        for version in &template.versions {
            let record = TemplateVersion {
                id: ids.next_id(),
                template_id,
                name: version.name.value.clone(),
                parameters: parameter_specs(&version.parameters),
                created_at: at0,
            };
            tx.insert_version(&record).await?;
            versions.insert(record.name.clone(), record.id);
            lock(&world.registry).versions.insert((template.name.value.clone(), record.name.clone()), record.id);
            active = Some(record.id);
        }
        let Some(active) = active else { continue };
        let record = template_record(template_id, &template.name.value, &template.settings, active, at0);
        tx.insert_template(&record).await?;
        for preset in &template.presets {
            let Some(version_id) = versions.get(&preset.version.value).copied() else { continue };
            tx.insert_preset(&preset_record(preset, ids.next_id(), version_id)).await?;
        }
        lock(&world.registry).templates.insert(record.name.clone(), record.id);
        templates.insert(record.name.clone(), (record, versions));
    }

    for seeded in &scenario.world.workspaces {
        let Some((template, versions)) = templates.get(&seeded.template.value) else { continue };
        let owner_id: UserId = match &seeded.owner.value {
            Owner::Prebuilds => PREBUILDS_USER_ID,
            Owner::User(name) => match users.get(name) {
                Some(user) => user.id,
                None => continue,
            },
        };
        let quiet_hours = match &seeded.owner.value {
            Owner::User(name) => users.get(name).map(|u| u.quiet_hours_or_default().to_owned()).unwrap_or_default(),
            Owner::Prebuilds => String::new(),
        };
        let version_id = versions.get(&seeded.version.value).copied().unwrap_or(template.active_version_id);
        let id: WorkspaceId = ids.next_id();
        let mut workspace = Workspace {
            id,
            owner_id,
            template_id: template.id,
            name: seeded.name.value.clone(),
            ttl: ttl_of(seeded.ttl.value),
            autostart: seeded.autostart.as_ref().map(|a| a.value.clone()),
            automatic_updates: seeded.automatic_updates,
            last_used_at: ts(world, seeded.last_used),
            dormant_at: seeded.dormant_at.map(|p| ts(world, p)),
            deleting_at: seeded.deleting_at.map(|p| ts(world, p)),
            next_start_at: None,
            deleted: seeded.is_deleted(),
            created_at: ts(world, seeded.created),
        };
        let anchor = seeded.latest_build.as_ref().map_or(workspace.created_at, |b| ts(world, b.created));
        workspace.next_start_at = match &seeded.next_start_at {
            Derived::Given(point) => point.map(|p| ts(world, p)),
            Derived::Computed => next_start_at_after_build(&workspace, template, anchor),
        };
        tx.insert_workspace(&workspace).await?;
        lock(&world.names).workspaces.insert(id, workspace.name.clone());
        if !workspace.deleted {
            lock(&world.registry).workspaces.insert(workspace.name.clone(), id);
        }

        let Some(seed_build) = &seeded.latest_build else { continue };
        let created = ts(world, seed_build.created);
        let completed = seed_build.completed.map(|p| ts(world, p));
        let mut build = Build {
            id: ids.next_id(),
            workspace_id: id,
            number: 1,
            transition: seed_build.transition,
            reason: seed_build.reason,
            initiator_id: owner_id,
            version_id,
            job_id: ids.next_id(),
            preset_id: None,
            parameters: seeded.parameters.clone(),
            created_at: created,
            deadline: None,
            max_deadline: None,
            notified_autostop_deadline: None,
            agent_ready_at: None,
        };
        if seed_build.is_succeeded_start() {
            let computed = match (completed, workspace.is_prebuild()) {
                (Some(completed_at), false) => {
                    let input =
                        CompletionInput { template, workspace: &workspace, quiet_hours: &quiet_hours, completed_at };
                    match deadlines_at_completion(&input) {
                        CompletionDeadlines::Set(d) => (d.deadline, d.max_deadline),
                        CompletionDeadlines::Invalid { .. } => (None, None),
                    }
                }
                _ => (None, None),
            };
            build.deadline = match &seed_build.deadline {
                Derived::Given(value) => value.value.map(|p| ts(world, p)),
                Derived::Computed => computed.0,
            };
            build.max_deadline = match &seed_build.max_deadline {
                Derived::Given(value) => value.value.map(|p| ts(world, p)),
                Derived::Computed => computed.1,
            };
            if seeded.agent == AgentState::Ready {
                build.agent_ready_at = completed.or(Some(created));
            }
        }
        let terminal = seed_build.status.is_terminal();
        let job = Job {
            id: build.job_id,
            build_id: build.id,
            workspace_id: id,
            template_id: template.id,
            version_id,
            status: seed_build.status,
            is_prebuild: workspace.is_prebuild(),
            created_at: created,
            started_at: (seed_build.status != JobStatus::Pending).then_some(created),
            completed_at: if terminal && seed_build.status != JobStatus::Canceled {
                completed.or(Some(created))
            } else {
                None
            },
            canceled_at: if seed_build.status == JobStatus::Canceled { completed.or(Some(created)) } else { None },
            worker_id: None,
            error: (seed_build.status == JobStatus::Failed).then(|| "seeded failure".to_owned()),
        };
        if seed_build.status == JobStatus::Running {
            loaded.running_jobs.push(job.id);
        }
        let _ = Transition::Start;
        tx.insert_build(&build, &job).await?;
    }

    for chat in &scenario.world.chats {
        let Some(owner) = users.get(&chat.owner.value) else { continue };
        let record = Chat {
            id: ids.next_id(),
            owner_id: owner.id,
            name: chat.name.value.clone(),
            workspace_id: chat.workspace.as_ref().and_then(|w| world.workspace_id(&w.value)),
            status: chat.status,
            created_at: ts(world, chat.created),
            last_activity_at: ts(world, chat.last_activity),
        };
        tx.insert_chat(&record).await?;
    }
    tx.commit().await?;
    Ok(loaded)
}
