//! Stage one for `world`: users, templates (settings, versions, presets),
//! workspaces (with their latest build) and chats. Everything here refers only
//! to the world itself, so its names are resolved here too; defaults that
//! depend on other objects (a workspace's `ttl`, `version`, `created`,
//! `last_used`, `agent`) are applied here.

use std::str::FromStr;

use engine::model::{
    AutomaticUpdates, BuildReason, ChatStatus, JobStatus, Roles, Transition, UserStatus, QUIET_HOURS_DEFAULT,
};
use engine::rules::schedule::CronSchedule;
use engine::time::Span;

use super::error::{Origin, Spanned};
use super::model::{
    AgentState, Chat, Checkable, Derived, Owner, ParameterSpec, Point, Preset, PresetSchedules, ScheduleRule,
    SeedBuild, Template, TemplateChanges, TemplateSettings, User, Version, Workspace, World,
};
use super::reader::{self, unknown_name, unknown_name_in, Cx, Fields};
use super::yaml::{shorten, Node, NodeKind};

pub(crate) fn parse_world(cx: &mut Cx, node: &Node) -> World {
    let mut world = World::default();
    let Some(mut f) = Fields::open(cx, node, "world", "world") else { return world };
    if let Some(node) = f.take("users") {
        world.users = reader::list(cx, node, "users").into_iter().filter_map(|n| parse_user(cx, n)).collect();
    }
    if let Some(node) = f.take("templates") {
        world.templates =
            reader::list(cx, node, "templates").into_iter().filter_map(|n| parse_template(cx, n)).collect();
    }
    if let Some(node) = f.take("workspaces") {
        let items = reader::list(cx, node, "workspaces");
        world.workspaces = items.into_iter().filter_map(|n| parse_workspace(cx, n, &world)).collect();
    }
    if let Some(node) = f.take("chats") {
        let items = reader::list(cx, node, "chats");
        world.chats = items.into_iter().filter_map(|n| parse_chat(cx, n, &world)).collect();
    }
    f.finish(cx);
    check_unique(cx, "user", world.users.iter().map(|u| &u.name));
    for user in &world.users {
        if user.name.value == super::model::PREBUILDS_OWNER {
            cx.error(user.name.origin, "user name `prebuilds` is reserved for the prebuilds system user");
        }
    }
    check_unique(cx, "template", world.templates.iter().map(|t| &t.name));
    check_unique_note(
        cx,
        "workspace",
        "; names are unique among workspaces not deleted",
        world.workspaces.iter().filter(|w| !w.is_deleted()).map(|w| &w.name),
    );
    check_unique(cx, "chat", world.chats.iter().map(|c| &c.name));
    world
}

/// Reports every name declared twice, at the second, naming the first.
pub(crate) fn check_unique<'a>(cx: &mut Cx, kind: &str, names: impl Iterator<Item = &'a Spanned<String>>) {
    check_unique_note(cx, kind, "", names);
}

/// [`check_unique`] with a note on the rule (`"; ..."`).
fn check_unique_note<'a>(cx: &mut Cx, kind: &str, note: &str, names: impl Iterator<Item = &'a Spanned<String>>) {
    let mut seen: Vec<&Spanned<String>> = Vec::new();
    for name in names {
        if let Some(first) = seen.iter().find(|s| s.value == name.value) {
            cx.error(
                name.origin,
                format!("duplicate {kind} `{}` (first declared at {}{note})", shorten(&name.value), first.origin),
            );
        } else {
            seen.push(name);
        }
    }
}

fn parse_user(cx: &mut Cx, node: &Node) -> Option<User> {
    let mut f = Fields::open(cx, node, "world.users[]", "users")?;
    let name = f.required(cx, "name", reader::name);
    let status = f.optional(cx, "status", reader::named::<UserStatus>).unwrap_or(UserStatus::Active);
    let roles = f.optional(cx, "roles", reader::roles).unwrap_or(Roles::default());
    let quiet_hours = f
        .optional(cx, "quiet_hours", |cx, n, k| reader::checkable_text(cx, n, k, |t| daily_cron(k, t)))
        .unwrap_or_else(|| Checkable::checked(QUIET_HOURS_DEFAULT.to_owned()));
    f.finish(cx);
    Some(User { origin: node.origin, name: name?, status, roles, quiet_hours })
}

pub(crate) fn weekly_cron(key: &str, text: &str) -> Result<(), String> {
    CronSchedule::parse_weekly(text)
        .map(drop)
        .map_err(|e| format!("invalid `{key}`: {e}, expected a weekly cron like `CRON_TZ=UTC 0 9 * * 1-5`"))
}

fn daily_cron(key: &str, text: &str) -> Result<(), String> {
    CronSchedule::parse_daily(text)
        .map(drop)
        .map_err(|e| format!("invalid `{key}`: {e}, expected a daily cron like `CRON_TZ=UTC 0 0 * * *`"))
}

/// `0` (no autostop), or 1m..30d in whole minutes.
pub(crate) fn ttl_check(key: &str, span: Span) -> Result<(), String> {
    if span.is_zero() {
        return Ok(());
    }
    let (min, max) = (engine::limits::WORKSPACE_TTL_MIN, engine::limits::WORKSPACE_TTL_MAX);
    if span < min || span > max || span.as_micros() % Span::from_mins(1).as_micros() != 0 {
        return Err(format!("`{key}` is {span}, expected 0 (no autostop) or whole minutes within {min}..{max}"));
    }
    Ok(())
}

/// Reads the template settings present in `f` (world templates and `update_template`).
pub(crate) fn template_changes(cx: &mut Cx, f: &mut Fields) -> TemplateChanges {
    let any = |cx: &mut Cx, n: &Node, k: &str| reader::checkable_duration(cx, n, k, |_| Ok(()));
    let notify = |cx: &mut Cx, n: &Node, k: &str| {
        reader::checkable_duration(cx, n, k, |span| {
            if span.is_zero() || span >= engine::limits::AUTOSTOP_NOTIFY_MIN {
                Ok(())
            } else {
                Err(format!(
                    "`{k}` is {span}, expected 0 (no reminder) or at least {}",
                    engine::limits::AUTOSTOP_NOTIFY_MIN
                ))
            }
        })
    };
    let mut c = TemplateChanges {
        default_ttl: f.optional(cx, "default_ttl", any),
        activity_bump: f.optional(cx, "activity_bump", any),
        time_til_autostop_notify: f.optional(cx, "time_til_autostop_notify", notify),
        failure_ttl: f.optional(cx, "failure_ttl", any),
        time_til_dormant: f.optional(cx, "time_til_dormant", any),
        time_til_dormant_autodelete: f.optional(cx, "time_til_dormant_autodelete", any),
        allow_user_autostart: f.optional(cx, "allow_user_autostart", reader::boolean),
        allow_user_autostop: f.optional(cx, "allow_user_autostop", reader::boolean),
        autostart_days: f.optional(cx, "autostart_days", reader::weekdays),
        require_active_version: f.optional(cx, "require_active_version", reader::boolean),
        deprecated: f.optional(cx, "deprecated", reader::boolean),
        ..TemplateChanges::default()
    };
    if let Some(node) = f.take("autostop_requirement") {
        let path = format!("{}.autostop_requirement", f.path());
        if let Some(mut r) = Fields::open(cx, node, path, "autostop_requirement") {
            c.autostop_requirement_days = r.optional(cx, "days", reader::weekdays);
            c.autostop_requirement_weeks = r.optional(cx, "weeks", weeks);
            r.finish(cx);
        }
    }
    c
}

fn weeks(cx: &mut Cx, node: &Node, key: &str) -> Option<Checkable<u8>> {
    let max = engine::limits::AUTOSTOP_REQUIREMENT_WEEKS_MAX;
    match reader::unchecked_inner(cx, node).ok()? {
        Some(inner) => {
            let value = reader::unsigned(cx, inner, key)?;
            match u8::try_from(value) {
                Ok(v) => Some(Checkable::unchecked(v)),
                Err(_) => {
                    cx.error(inner.origin, format!("`{key}` is {value}, expected at most 255 even unchecked"));
                    None
                }
            }
        }
        None => {
            let value = reader::unsigned(cx, node, key)?;
            if value > u64::from(max) {
                cx.error(node.origin, format!("`{key}` is {value}, expected 0..{max} (0 is read as 1)"));
                return None;
            }
            Some(Checkable::checked(value as u8))
        }
    }
}

fn parse_template(cx: &mut Cx, node: &Node) -> Option<Template> {
    let mut f = Fields::open(cx, node, "world.templates[]", "templates")?;
    let name = f.required(cx, "name", reader::name);
    let mut settings = TemplateSettings::default();
    template_changes(cx, &mut f).apply(&mut settings);
    let versions = match f.take("versions").filter(|node| !node.is_null()) {
        Some(node) => {
            let items = reader::list(cx, node, "versions");
            if items.is_empty() && matches!(node.kind, NodeKind::Seq(_)) {
                cx.error(
                    node.origin,
                    "invalid `versions`: expected at least one version (the last one is the active version)",
                );
            }
            items.into_iter().filter_map(|n| parse_version(cx, n, "world.templates[].versions[]")).collect()
        }
        // Left out (or written with no value): one version, `v1`, as SCENARIOS.md shows.
        None => vec![Version {
            origin: f.origin(),
            name: Spanned::new("v1".to_owned(), f.origin()),
            parameters: Vec::new(),
        }],
    };
    check_unique(cx, "version", versions.iter().map(|v| &v.name));
    let presets = match f.take("presets") {
        Some(node) => reader::list(cx, node, "presets")
            .into_iter()
            .filter_map(|n| parse_preset(cx, n, "world.templates[].presets[]", &versions, None))
            .collect(),
        None => Vec::new(),
    };
    check_presets_unique(cx, &presets);
    f.finish(cx);
    Some(Template { origin: node.origin, name: name?, settings, versions, presets })
}

pub(crate) fn check_presets_unique(cx: &mut Cx, presets: &[Preset]) {
    for (i, preset) in presets.iter().enumerate() {
        if let Some(first) =
            presets[..i].iter().find(|p| p.name.value == preset.name.value && p.version.value == preset.version.value)
        {
            cx.error(
                preset.name.origin,
                format!(
                    "duplicate preset `{}` in version `{}` (first declared at {})",
                    shorten(&preset.name.value),
                    shorten(&preset.version.value),
                    first.name.origin
                ),
            );
        }
    }
}

/// A version entry: `v1` or `{name: v2, parameters: [...]}`; `path` is its schema path.
pub(crate) fn parse_version(cx: &mut Cx, node: &Node, path: &str) -> Option<Version> {
    if let NodeKind::Scalar { .. } = node.kind {
        let name = reader::name(cx, node, "version")?;
        return Some(Version { origin: node.origin, name, parameters: Vec::new() });
    }
    let mut f = Fields::open(cx, node, path, "version")?;
    let name = f.required(cx, "name", reader::name);
    let parameters: Vec<ParameterSpec> = match f.take("parameters") {
        Some(list) => reader::list(cx, list, "parameters")
            .into_iter()
            .filter_map(|n| {
                let mut p = Fields::open(cx, n, format!("{path}.parameters[]"), "parameters")?;
                let name = p.required(cx, "name", reader::name);
                let required = p.optional(cx, "required", reader::boolean).unwrap_or(false);
                let default = p.optional(cx, "default", reader::text);
                p.finish(cx);
                Some(ParameterSpec { name: name?, required, default })
            })
            .collect(),
        None => Vec::new(),
    };
    check_unique(cx, "parameter", parameters.iter().map(|p| &p.name));
    f.finish(cx);
    Some(Version { origin: node.origin, name: name?, parameters })
}

/// A preset at schema path `path`. World presets name their version (default:
/// the last of `versions`); published ones belong to `fixed_version`.
pub(crate) fn parse_preset(
    cx: &mut Cx,
    node: &Node,
    path: &str,
    versions: &[Version],
    fixed_version: Option<&Spanned<String>>,
) -> Option<Preset> {
    let mut f = Fields::open(cx, node, path, "presets")?;
    let name = f.required(cx, "name", reader::name);
    let version = match fixed_version {
        Some(version) => Some(version.clone()),
        None => match f.optional(cx, "version", reader::name) {
            Some(version) => {
                if !versions.iter().any(|v| v.name.value == version.value) {
                    let known: Vec<&str> = versions.iter().map(|v| v.name.as_str()).collect();
                    cx.error(version.origin, unknown_name("version", &version.value, &known));
                }
                Some(version)
            }
            None => versions.last().map(|v| Spanned::new(v.name.value.clone(), f.origin())),
        },
    };
    let parameters = f.optional(cx, "parameters", reader::parameters).unwrap_or_default();
    let instances = f.optional(cx, "instances", reader::count32).unwrap_or(0);
    let expiration_ttl = f
        .optional(cx, "expiration_ttl", |cx, n, k| reader::checkable_duration(cx, n, k, |_| Ok(())))
        .unwrap_or(Checkable::checked(Span::ZERO));
    let schedules = f.take("schedules").and_then(|n| parse_schedules(cx, n, &format!("{path}.schedules")));
    f.finish(cx);
    Some(Preset {
        origin: node.origin,
        name: name?,
        version: version?,
        parameters,
        instances,
        expiration_ttl,
        schedules,
    })
}

fn parse_schedules(cx: &mut Cx, node: &Node, path: &str) -> Option<PresetSchedules> {
    let mut f = Fields::open(cx, node, path, "schedules")?;
    let timezone = f
        .optional(cx, "timezone", |cx, n, k| {
            reader::checkable_text(cx, n, k, |t| {
                chrono_tz::Tz::from_str(t).map(drop).map_err(|_| {
                    format!(
                        "unknown time zone `{}` in `{k}`, expected an IANA name like `UTC` or `America/Chicago`",
                        shorten(t)
                    )
                })
            })
        })
        .unwrap_or_else(|| Checkable::checked("UTC".to_owned()));
    let rules = match f.take("rules") {
        Some(list) => reader::list(cx, list, "rules")
            .into_iter()
            .filter_map(|n| {
                let mut r = Fields::open(cx, n, format!("{path}.rules[]"), "rules")?;
                let cron = r.required(cx, "cron", |cx, n, k| reader::checkable_text(cx, n, k, |t| preset_cron(k, t)));
                let instances = r.required(cx, "instances", reader::count32);
                r.finish(cx);
                Some(ScheduleRule { cron: cron?, instances: instances? })
            })
            .collect(),
        None => Vec::new(),
    };
    f.finish(cx);
    Some(PresetSchedules { timezone, rules })
}

/// A preset schedule cron: `* HOUR DOM MONTH DOW` (prebuilds.md §3.1).
pub(crate) fn preset_cron(key: &str, text: &str) -> Result<(), String> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let bad = |detail: String| {
        format!("invalid `{key}` `{}`: {detail}, expected `* HOUR DOM MONTH DOW` like `* 8-18 * * 1-5`", shorten(text))
    };
    let [minute, hour, dom, month, dow] = fields[..] else {
        return Err(bad(format!("expected 5 fields, found {}", fields.len())));
    };
    if minute != "*" {
        return Err(bad(format!("minute must be `*`, found `{}`", shorten(minute))));
    }
    for (name, value, min, max) in
        [("hour", hour, 0, 23), ("day-of-month", dom, 1, 31), ("month", month, 1, 12), ("day-of-week", dow, 0, 6)]
    {
        cron_field(value, min, max).map_err(|detail| bad(format!("{name} `{}` {detail}", shorten(value))))?;
    }
    Ok(())
}

/// `*`, numbers, ranges `a-b`, lists, steps `/n` on `*` or a range.
fn cron_field(value: &str, min: u32, max: u32) -> Result<(), String> {
    for item in value.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => (base, Some(step)),
            None => (item, None),
        };
        if let Some(step) = step {
            match step.parse::<u32>() {
                Ok(s) if s >= 1 => {}
                _ => return Err(format!("has a bad step `{step}`")),
            }
        }
        if base == "*" {
            continue;
        }
        let number = |t: &str| -> Result<u32, String> {
            let n: u32 = t.parse().map_err(|_| format!("is not a number, range or `*` (at `{t}`)"))?;
            if n < min || n > max {
                return Err(format!("is out of range {min}-{max}"));
            }
            Ok(n)
        };
        match base.split_once('-') {
            Some((a, b)) => {
                if number(a)? > number(b)? {
                    return Err("has a range that ends before it starts".to_owned());
                }
            }
            None => {
                number(base)?;
                if step.is_some() {
                    return Err("has a step on a single value".to_owned());
                }
            }
        }
    }
    Ok(())
}

fn parse_workspace(cx: &mut Cx, node: &Node, world: &World) -> Option<Workspace> {
    let mut f = Fields::open(cx, node, "world.workspaces[]", "workspaces")?;
    let name = f.required(cx, "name", reader::name);
    let owner = f.required(cx, "owner", reader::name).map(|o| Spanned::new(Owner::parse(&o.value), o.origin));
    if let Some(Spanned { value: Owner::User(user), origin }) = &owner {
        if !world.users.iter().any(|u| &u.name.value == user) {
            let mut known: Vec<&str> = world.users.iter().map(|u| u.name.as_str()).collect();
            known.push(super::model::PREBUILDS_OWNER);
            cx.error(*origin, unknown_name("user", user, &known));
        }
    }
    let template_name = f.required(cx, "template", reader::name);
    let template = template_name.as_ref().and_then(|t| world.templates.iter().find(|x| x.name.value == t.value));
    if let (Some(t), None) = (&template_name, template) {
        let known: Vec<&str> = world.templates.iter().map(|t| t.name.as_str()).collect();
        cx.error(t.origin, unknown_name("template", &t.value, &known));
    }
    let mut version_known = template.is_some();
    let version = match f.optional(cx, "version", reader::name) {
        Some(v) => {
            if let Some(t) = template {
                if !t.versions.iter().any(|x| x.name.value == v.value) {
                    let known: Vec<&str> = t.versions.iter().map(|x| x.name.as_str()).collect();
                    let scope = format!("of template `{}`", t.name.value);
                    cx.error(v.origin, unknown_name_in("version", &v.value, &scope, &known));
                    version_known = false;
                }
            }
            Some(v)
        }
        None => template.and_then(Template::active_version).map(|v| Spanned::new(v.name.value.clone(), node.origin)),
    };
    let preset = f.optional(cx, "preset", reader::name);
    if let (Some(p), Some(t), Some(v), true) = (&preset, template, &version, version_known) {
        let in_version: Vec<&str> =
            t.presets.iter().filter(|x| x.version.value == v.value).map(|x| x.name.as_str()).collect();
        if !in_version.contains(&p.value.as_str()) {
            let scope = format!("in version `{}` of template `{}`", v.value, t.name.value);
            cx.error(p.origin, unknown_name_in("preset", &p.value, &scope, &in_version));
        }
    }
    let parameters = f.optional(cx, "parameters", reader::parameters).unwrap_or_default();
    let latest_build = f.take("latest_build").and_then(|n| parse_seed_build(cx, n));
    let created =
        f.optional(cx, "created", reader::point).or(latest_build.as_ref().map(|b| b.created)).unwrap_or(Point::START);
    if let (Some(build), Some(origin)) = (&latest_build, f.key_origin("created")) {
        if created > build.created {
            cx.error(
                origin,
                format!(
                    "`created` is {created}, after its latest build's `created` ({}), expected it at or before",
                    build.created
                ),
            );
        }
    }
    let autostart = f.optional(cx, "autostart", |cx, n, k| {
        if n.scalar() == Some("none") {
            return Some(None);
        }
        reader::checkable_text(cx, n, k, |t| weekly_cron(k, t)).map(Some)
    });
    let autostart = autostart.flatten();
    let ttl = f
        .optional(cx, "ttl", ttl_value)
        .or_else(|| template.map(|t| t.settings.default_ttl.clone()))
        .unwrap_or(Checkable::checked(Span::ZERO));
    let automatic_updates =
        f.optional(cx, "automatic_updates", reader::named::<AutomaticUpdates>).unwrap_or(AutomaticUpdates::Never);
    let last_used = f
        .optional(cx, "last_used", reader::point)
        .or(latest_build.as_ref().and_then(|b| b.completed))
        .unwrap_or(created);
    let dormant_at = f.optional(cx, "dormant_at", reader::point_or_none).flatten();
    let deleting_at = f.optional(cx, "deleting_at", reader::point_or_none).flatten();
    let next_start_at = match f.optional(cx, "next_start_at", reader::point_or_none) {
        Some(point) => Derived::Given(point),
        None if autostart.as_ref().is_some_and(|a| !a.unchecked) => Derived::Computed,
        None => Derived::Given(None),
    };
    let agent_default = if latest_build.as_ref().is_some_and(SeedBuild::is_succeeded_start) {
        AgentState::Ready
    } else {
        AgentState::NotReady
    };
    let agent = f.optional(cx, "agent", reader::named::<AgentState>).unwrap_or(agent_default);
    f.finish(cx);
    Some(Workspace {
        origin: node.origin,
        name: name?,
        owner: owner?,
        template: template_name?,
        version: version.unwrap_or_else(|| Spanned::new(String::new(), node.origin)),
        preset,
        parameters,
        created,
        autostart,
        ttl,
        automatic_updates,
        last_used,
        dormant_at,
        deleting_at,
        next_start_at,
        agent,
        latest_build,
    })
}

/// A ttl: `0`/`none` (no autostop) or 1m..30d in whole minutes; `{unchecked: ...}` allowed.
pub(crate) fn ttl_value(cx: &mut Cx, node: &Node, key: &str) -> Option<Checkable<Span>> {
    if node.scalar() == Some("none") {
        return Some(Checkable::checked(Span::ZERO));
    }
    reader::checkable_duration(cx, node, key, |span| ttl_check(key, span))
}

/// The job statuses a seeded build may have.
const SEED_JOB_STATUSES: [&str; 5] = ["pending", "running", "succeeded", "failed", "canceled"];

fn parse_seed_build(cx: &mut Cx, node: &Node) -> Option<SeedBuild> {
    let mut f = Fields::open(cx, node, "world.workspaces[].latest_build", "latest_build")?;
    let transition = f.required(cx, "transition", reader::named::<Transition>);
    let status = f
        .optional(cx, "status", |cx, n, k| {
            let status = reader::named::<JobStatus>(cx, n, k)?;
            if !SEED_JOB_STATUSES.contains(&status.as_str()) {
                cx.error(
                    n.origin,
                    format!(
                        "unknown status `{status}` for a seeded build, {}",
                        super::schema::expected_one_of(status.as_str(), &SEED_JOB_STATUSES)
                    ),
                );
                return None;
            }
            Some(status)
        })
        .unwrap_or(JobStatus::Succeeded);
    let reason = f.optional(cx, "reason", reader::named::<BuildReason>).unwrap_or(BuildReason::Initiator);
    let created = f.optional(cx, "created", reader::point).unwrap_or(Point::START);
    let finished = status.is_terminal();
    let completed = match f.take("completed") {
        Some(n) if !finished => {
            let origin = f.key_origin("completed").unwrap_or(n.origin);
            cx.error(origin, format!("`completed` does not apply to a `{status}` job, which is unfinished"));
            None
        }
        Some(n) => {
            let completed = reader::point(cx, n, "completed");
            if let Some(point) = completed {
                if point < created {
                    cx.error(
                        n.origin,
                        format!(
                            "`completed` is {point}, before the build's `created` ({created}), expected at or after it"
                        ),
                    );
                }
            }
            completed.or(Some(created))
        }
        None => finished.then_some(created),
    };
    let succeeded_start = transition == Some(Transition::Start) && status == JobStatus::Succeeded;
    let deadline_at = |f: &mut Fields, cx: &mut Cx, key: &str| -> (Derived<Checkable<Option<Point>>>, Option<Origin>) {
        let Some(n) = f.take(key) else {
            return (if succeeded_start { Derived::Computed } else { Derived::Given(Checkable::checked(None)) }, None);
        };
        let key_origin = f.key_origin(key).unwrap_or(n.origin);
        let value = match reader::unchecked_inner(cx, n) {
            Err(()) => None,
            Ok(Some(inner)) => reader::point_or_none(cx, inner, key).map(Checkable::unchecked),
            Ok(None) => reader::point_or_none(cx, n, key).map(Checkable::checked),
        };
        match value {
            Some(v) if v.value.is_some() && !succeeded_start => {
                cx.error(
                    key_origin,
                    format!("`{key}` applies to succeeded start builds only (only they carry a deadline)"),
                );
                (Derived::Given(Checkable::checked(None)), None)
            }
            Some(v) => (Derived::Given(v), Some(n.origin)),
            None => (Derived::Computed, None),
        }
    };
    let (deadline, deadline_origin) = deadline_at(&mut f, cx, "deadline");
    let (max_deadline, max_origin) = deadline_at(&mut f, cx, "max_deadline");
    let checked_point = |d: &Derived<Checkable<Option<Point>>>| match d {
        Derived::Given(Checkable { value: Some(p), unchecked: false }) => Some(*p),
        _ => None,
    };
    if let Some(done) = completed {
        for (key, value, origin) in
            [("deadline", &deadline, deadline_origin), ("max_deadline", &max_deadline, max_origin)]
        {
            if let (Some(p), Some(origin)) = (checked_point(value), origin) {
                if p < done {
                    cx.error(
                        origin,
                        format!("`{key}` is {p}, before the build's `completed` ({done}), expected at or after it"),
                    );
                }
            }
        }
    }
    if let (Some(d), Some(m), Some(origin)) = (checked_point(&deadline), checked_point(&max_deadline), deadline_origin)
    {
        if d > m {
            cx.error(origin, format!("`deadline` is {d}, after `max_deadline` ({m}), expected at most it"));
        }
    }
    f.finish(cx);
    Some(SeedBuild {
        origin: node.origin,
        transition: transition?,
        status,
        reason,
        created,
        completed,
        deadline,
        max_deadline,
    })
}

fn parse_chat(cx: &mut Cx, node: &Node, world: &World) -> Option<Chat> {
    let mut f = Fields::open(cx, node, "world.chats[]", "chats")?;
    let name = f.required(cx, "name", reader::name);
    let owner = f.required(cx, "owner", reader::name);
    if let Some(owner) = &owner {
        if !world.users.iter().any(|u| u.name.value == owner.value) {
            let known: Vec<&str> = world.users.iter().map(|u| u.name.as_str()).collect();
            cx.error(owner.origin, unknown_name("user", &owner.value, &known));
        }
    }
    let workspace = f.optional(cx, "workspace", reader::name);
    if let Some(ws) = &workspace {
        if !world.workspaces.iter().any(|w| w.name.value == ws.value) {
            let known: Vec<&str> = world.workspaces.iter().map(|w| w.name.as_str()).collect();
            cx.error(ws.origin, unknown_name("workspace", &ws.value, &known));
        }
    }
    let status = f.optional(cx, "status", reader::named::<ChatStatus>).unwrap_or(ChatStatus::Running);
    let last_activity = f.optional(cx, "last_activity", reader::point).unwrap_or(Point::START);
    let created = f.optional(cx, "created", reader::point).unwrap_or(last_activity);
    if let Some(origin) = f.key_origin("created") {
        if created > last_activity {
            cx.error(
                origin,
                format!("`created` is {created}, after `last_activity` ({last_activity}), expected at or before it"),
            );
        }
    }
    let heartbeat = match f.take("heartbeat") {
        Some(n) if status != ChatStatus::Running => {
            let origin = f.key_origin("heartbeat").unwrap_or(n.origin);
            cx.error(origin, format!("`heartbeat` applies to `running` chats only, this one is `{status}`"));
            None
        }
        Some(n) => reader::point(cx, n, "heartbeat"),
        None => (status == ChatStatus::Running).then_some(Point::START),
    };
    f.finish(cx);
    Some(Chat { origin: node.origin, name: name?, owner: owner?, workspace, status, last_activity, created, heartbeat })
}
