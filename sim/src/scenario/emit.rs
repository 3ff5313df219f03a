//! Writing a scenario back out as YAML ([`to_yaml`]), through `serde_yaml`.
//!
//! The output is the scenario as loaded: defaults that were derived at load
//! (a workspace's `ttl`, `version`, `created`, a fault's `for`) are written out,
//! settings, provisioner and chaos values equal to their defaults are left
//! out, and values left to the engine ([`Derived::Computed`]) stay unwritten.
//! Loading the output under the same path gives an equal [`Scenario`] (tested);
//! `--shrink` relies on that.

use engine::model::{Roles, WeekdaySet};
use engine::time::Span;
use serde_yaml::{Mapping, Value};

use super::model::{
    Action, Chaos, ChatOwnerExpect, Checkable, Count, Derived, DurationRange, Expect, Expectation, Named, Point,
    PointExpect, Preset, Provisioners, ReplicaRef, ReplicaTarget, Scenario, Settings, TemplateChanges,
    TemplateSettings, TimelineEntry, Version,
};

/// The scenario as YAML text that loads back to an equal scenario.
pub fn to_yaml(scenario: &Scenario) -> String {
    let value = Value::Mapping(scenario_map(scenario));
    // Serialising a `Value` of strings, numbers, lists and mappings cannot fail.
    serde_yaml::to_string(&value).unwrap_or_default()
}

fn text(value: impl Into<String>) -> Value {
    Value::String(value.into())
}

fn span(value: Span) -> Value {
    text(value.to_string())
}

fn point(value: Point) -> Value {
    text(value.to_string())
}

fn range(value: DurationRange) -> Value {
    text(value.to_string())
}

fn number(value: u64) -> Value {
    Value::Number(value.into())
}

fn rate(value: f64) -> Value {
    Value::Number(value.into())
}

fn list(items: impl IntoIterator<Item = Value>) -> Value {
    Value::Sequence(items.into_iter().collect())
}

fn checkable<T>(value: &Checkable<T>, write: impl Fn(&T) -> Value) -> Value {
    if value.unchecked {
        let mut map = Mapping::new();
        map.insert(text("unchecked"), write(&value.value));
        Value::Mapping(map)
    } else {
        write(&value.value)
    }
}

fn weekdays(days: WeekdaySet) -> Value {
    list(days.iter().map(|d| text(d.as_str())))
}

fn roles(roles: Roles) -> Value {
    let mut out = Vec::new();
    if roles.admin {
        out.push(text("admin"));
    }
    if roles.template_admin {
        out.push(text("template_admin"));
    }
    list(out)
}

fn parameters(params: &super::model::Parameters) -> Value {
    let mut map = Mapping::new();
    for (k, v) in params {
        map.insert(text(k.clone()), text(v.clone()));
    }
    Value::Mapping(map)
}

fn replica(value: &ReplicaRef) -> Value {
    match &value.value {
        ReplicaTarget::Index(i) => number(u64::from(*i)),
        ReplicaTarget::ChatOwner(chat) => text(format!("owner:{chat}")),
    }
}

/// A mapping builder that keeps insertion order.
struct Map(Mapping);

impl Map {
    fn new() -> Map {
        Map(Mapping::new())
    }
    fn set(&mut self, key: &str, value: Value) -> &mut Map {
        self.0.insert(text(key), value);
        self
    }
    fn opt(&mut self, key: &str, value: Option<Value>) -> &mut Map {
        if let Some(value) = value {
            self.set(key, value);
        }
        self
    }
    fn done(&mut self) -> Value {
        Value::Mapping(std::mem::take(&mut self.0))
    }
}

fn scenario_map(s: &Scenario) -> Mapping {
    let mut m = Map::new();
    m.set("name", text(s.name.value.clone()));
    m.opt("description", s.description.clone().map(text));
    m.set("seed", number(s.seed));
    m.set("start", text(s.start.to_string()));
    m.set("run_for", span(s.run_for));
    m.set("settle", span(s.settle));
    m.set("replicas", number(u64::from(s.replicas)));
    let settings = settings_map(&s.settings);
    if !settings.is_empty() {
        m.set("settings", Value::Mapping(settings));
    }
    m.set("world", world(s));
    let provisioners = provisioners_map(&s.provisioners);
    if !provisioners.is_empty() {
        m.set("provisioners", Value::Mapping(provisioners));
    }
    let chaos = chaos_map(&s.chaos);
    if !chaos.is_empty() {
        m.set("chaos", Value::Mapping(chaos));
    }
    m.set("timeline", list(s.timeline.iter().map(timeline_entry)));
    m.set("expect", list(s.expect.iter().map(expectation)));
    m.0
}

fn settings_map(s: &Settings) -> Mapping {
    let d = Settings::default();
    let mut m = Map::new();
    macro_rules! put {
        ($($field:ident => $write:expr),+ $(,)?) => {$(
            if s.$field != d.$field {
                m.set(stringify!($field), $write(s.$field));
            }
        )+};
    }
    let n32 = |v: u32| number(u64::from(v));
    put!(
        lifecycle_interval => span,
        reconcile_interval => span,
        reconcile_paused => Value::Bool,
        prebuild_failure_hard_limit => n32,
        prebuild_backoff => span,
        prebuild_backoff_lookback => span,
        usage_flush_interval => span,
        chat_heartbeat_interval => span,
        chat_stale_after => span,
        chat_acquire_interval => span,
        chat_acquire_batch => n32,
        chat_step_max => span,
        chat_archive_after => span,
        chat_retention => span,
        notification_poll_interval => span,
        notification_retry => span,
        shutdown_timeout => span,
        db_pool_size => n32,
        db_acquire_timeout => span,
        provisioner_stale_after => span,
        db_latency => range,
        chat_turn_duration => range,
        agent_ready_after => span,
    );
    m.0
}

fn template_settings(m: &mut Map, t: &TemplateSettings) {
    let changes = TemplateChanges {
        default_ttl: Some(t.default_ttl.clone()),
        activity_bump: Some(t.activity_bump.clone()),
        time_til_autostop_notify: Some(t.time_til_autostop_notify.clone()),
        failure_ttl: Some(t.failure_ttl.clone()),
        time_til_dormant: Some(t.time_til_dormant.clone()),
        time_til_dormant_autodelete: Some(t.time_til_dormant_autodelete.clone()),
        allow_user_autostart: Some(t.allow_user_autostart),
        allow_user_autostop: Some(t.allow_user_autostop),
        autostart_days: Some(t.autostart_days),
        autostop_requirement_days: Some(t.autostop_requirement.days),
        autostop_requirement_weeks: Some(t.autostop_requirement.weeks.clone()),
        require_active_version: Some(t.require_active_version),
        deprecated: Some(t.deprecated),
    };
    template_changes(m, &changes);
}

fn template_changes(m: &mut Map, c: &TemplateChanges) {
    let dur = |v: &Checkable<Span>| checkable(v, |s| span(*s));
    m.opt("default_ttl", c.default_ttl.as_ref().map(dur));
    m.opt("activity_bump", c.activity_bump.as_ref().map(dur));
    m.opt("time_til_autostop_notify", c.time_til_autostop_notify.as_ref().map(dur));
    m.opt("failure_ttl", c.failure_ttl.as_ref().map(dur));
    m.opt("time_til_dormant", c.time_til_dormant.as_ref().map(dur));
    m.opt("time_til_dormant_autodelete", c.time_til_dormant_autodelete.as_ref().map(dur));
    m.opt("allow_user_autostart", c.allow_user_autostart.map(Value::Bool));
    m.opt("allow_user_autostop", c.allow_user_autostop.map(Value::Bool));
    m.opt("autostart_days", c.autostart_days.map(weekdays));
    if c.autostop_requirement_days.is_some() || c.autostop_requirement_weeks.is_some() {
        let mut r = Map::new();
        r.opt("days", c.autostop_requirement_days.map(weekdays));
        r.opt("weeks", c.autostop_requirement_weeks.as_ref().map(|w| checkable(w, |v| number(u64::from(*v)))));
        m.set("autostop_requirement", r.done());
    }
    m.opt("require_active_version", c.require_active_version.map(Value::Bool));
    m.opt("deprecated", c.deprecated.map(Value::Bool));
}

fn version(v: &Version) -> Value {
    if v.parameters.is_empty() {
        return text(v.name.value.clone());
    }
    let params = v.parameters.iter().map(|p| {
        let mut m = Map::new();
        m.set("name", text(p.name.value.clone()));
        m.set("required", Value::Bool(p.required));
        m.opt("default", p.default.clone().map(text));
        m.done()
    });
    Map::new().set("name", text(v.name.value.clone())).set("parameters", list(params)).done()
}

fn preset(p: &Preset, with_version: bool) -> Value {
    let mut m = Map::new();
    m.set("name", text(p.name.value.clone()));
    if with_version {
        m.set("version", text(p.version.value.clone()));
    }
    if !p.parameters.is_empty() {
        m.set("parameters", parameters(&p.parameters));
    }
    m.set("instances", number(u64::from(p.instances)));
    m.set("expiration_ttl", checkable(&p.expiration_ttl, |s| span(*s)));
    if let Some(schedules) = &p.schedules {
        let rules = schedules.rules.iter().map(|r| {
            Map::new()
                .set("cron", checkable(&r.cron, |c| text(c.clone())))
                .set("instances", number(u64::from(r.instances)))
                .done()
        });
        let mut s = Map::new();
        s.set("timezone", checkable(&schedules.timezone, |z| text(z.clone())));
        s.set("rules", list(rules));
        m.set("schedules", s.done());
    }
    m.done()
}

fn world(s: &Scenario) -> Value {
    let w = &s.world;
    let users = w.users.iter().map(|u| {
        Map::new()
            .set("name", text(u.name.value.clone()))
            .set("status", text(u.status.as_str()))
            .set("roles", roles(u.roles))
            .set("quiet_hours", checkable(&u.quiet_hours, |q| text(q.clone())))
            .done()
    });
    let templates = w.templates.iter().map(|t| {
        let mut m = Map::new();
        m.set("name", text(t.name.value.clone()));
        template_settings(&mut m, &t.settings);
        m.set("versions", list(t.versions.iter().map(version)));
        m.set("presets", list(t.presets.iter().map(|p| preset(p, true))));
        m.done()
    });
    let optional_point = |p: Option<Point>| p.map_or(text("none"), point);
    let workspaces = w.workspaces.iter().map(|ws| {
        let mut m = Map::new();
        m.set("name", text(ws.name.value.clone()));
        m.set("owner", text(ws.owner.value.as_str()));
        m.set("template", text(ws.template.value.clone()));
        m.set("version", text(ws.version.value.clone()));
        m.opt("preset", ws.preset.as_ref().map(|p| text(p.value.clone())));
        if !ws.parameters.is_empty() {
            m.set("parameters", parameters(&ws.parameters));
        }
        m.set("created", point(ws.created));
        m.opt("autostart", ws.autostart.as_ref().map(|a| checkable(a, |c| text(c.clone()))));
        m.set("ttl", checkable(&ws.ttl, |t| span(*t)));
        m.set("automatic_updates", text(ws.automatic_updates.as_str()));
        m.set("last_used", point(ws.last_used));
        m.set("dormant_at", optional_point(ws.dormant_at));
        m.set("deleting_at", optional_point(ws.deleting_at));
        if let Derived::Given(at) = ws.next_start_at {
            m.set("next_start_at", optional_point(at));
        }
        m.set("agent", text(ws.agent.as_str()));
        if let Some(b) = &ws.latest_build {
            let mut lb = Map::new();
            lb.set("transition", text(b.transition.as_str()));
            lb.set("status", text(b.status.as_str()));
            lb.set("reason", text(b.reason.as_str()));
            lb.set("created", point(b.created));
            lb.opt("completed", b.completed.map(point));
            for (key, value) in [("deadline", &b.deadline), ("max_deadline", &b.max_deadline)] {
                if let Derived::Given(v) = value {
                    if b.is_succeeded_start() || v.unchecked || v.value.is_some() {
                        lb.set(key, checkable(v, |p| optional_point(*p)));
                    }
                }
            }
            m.set("latest_build", lb.done());
        }
        m.done()
    });
    let chats = w.chats.iter().map(|c| {
        let mut m = Map::new();
        m.set("name", text(c.name.value.clone()));
        m.set("owner", text(c.owner.value.clone()));
        m.opt("workspace", c.workspace.as_ref().map(|ws| text(ws.value.clone())));
        m.set("status", text(c.status.as_str()));
        m.set("last_activity", point(c.last_activity));
        m.set("created", point(c.created));
        m.opt("heartbeat", c.heartbeat.map(point));
        m.done()
    });
    Map::new()
        .set("users", list(users))
        .set("templates", list(templates))
        .set("workspaces", list(workspaces))
        .set("chats", list(chats))
        .done()
}

fn provisioners_map(p: &Provisioners) -> Mapping {
    let d = Provisioners::default();
    let mut m = Map::new();
    if p.count != d.count {
        m.set("count", number(u64::from(p.count)));
    }
    if p.build_duration != d.build_duration {
        m.set("build_duration", range(p.build_duration));
    }
    if p.failure_rate != d.failure_rate {
        m.set("failure_rate", rate(p.failure_rate));
    }
    if !p.templates.is_empty() {
        let mut templates = Mapping::new();
        for (name, o) in &p.templates {
            let mut entry = Map::new();
            entry.opt("failure_rate", o.failure_rate.map(rate));
            entry.opt("build_duration", o.build_duration.map(range));
            templates.insert(text(name.clone()), entry.done());
        }
        m.set("templates", Value::Mapping(templates));
    }
    m.0
}

fn chaos_map(c: &Chaos) -> Mapping {
    let d = Chaos::default();
    let mut m = Map::new();
    macro_rules! put {
        ($($field:ident => $write:expr),+ $(,)?) => {$(
            if c.$field != d.$field {
                m.set(stringify!($field), $write(c.$field));
            }
        )+};
    }
    put!(
        store_error_rate => rate,
        serialization_failure_rate => rate,
        commit_unknown_rate => rate,
        pubsub_drop_rate => rate,
        notification_failure_rate => rate,
        replica_restart_after => range,
    );
    if c.replica_crash_rate != d.replica_crash_rate {
        m.set("replica_crash_rate", text(format!("{}/h", c.replica_crash_rate.per_hour)));
    }
    m.opt("store_latency", c.store_latency.map(range));
    m.opt("pubsub_delay", c.pubsub_delay.map(range));
    m.opt("clock_skew", c.clock_skew.map(range));
    m.0
}

fn timeline_entry(e: &TimelineEntry) -> Value {
    let name = |n: &super::error::Spanned<String>| text(n.value.clone());
    let mut a = Map::new();
    match &e.action {
        Action::Activity { workspace, replica: r } => {
            a.set("workspace", name(workspace));
            a.opt("replica", r.as_ref().map(replica));
        }
        Action::Start(b) | Action::Stop(b) | Action::Delete(b) => {
            a.set("workspace", name(&b.workspace));
            a.opt("user", b.user.as_ref().map(name));
            a.opt("replica", b.replica.as_ref().map(replica));
        }
        Action::Extend { workspace, deadline, user, replica: r } => {
            a.set("workspace", name(workspace));
            a.set("deadline", point(*deadline));
            a.opt("user", user.as_ref().map(name));
            a.opt("replica", r.as_ref().map(replica));
        }
        Action::CreateWorkspace(c) => {
            a.set("name", name(&c.name));
            a.set("owner", name(&c.owner));
            a.set("template", name(&c.template));
            a.opt("version", c.version.as_ref().map(name));
            a.opt("preset", c.preset.as_ref().map(name));
            if !c.parameters.is_empty() {
                a.set("parameters", parameters(&c.parameters));
            }
            a.opt("ttl", c.ttl.as_ref().map(|t| checkable(t, |s| span(*s))));
            a.opt("autostart", c.autostart.as_ref().map(|x| checkable(x, |t| text(t.clone()))));
            a.opt("automatic_updates", c.automatic_updates.map(|u| text(u.as_str())));
            a.opt("replica", c.replica.as_ref().map(replica));
        }
        Action::UpdateWorkspace(u) => {
            a.set("name", name(&u.name));
            a.opt("ttl", u.ttl.as_ref().map(|t| checkable(t, |s| span(*s))));
            a.opt(
                "autostart",
                u.autostart.as_ref().map(|x| match x {
                    Some(cron) => checkable(cron, |t| text(t.clone())),
                    None => text("none"),
                }),
            );
            a.opt("automatic_updates", u.automatic_updates.map(|v| text(v.as_str())));
            a.opt("dormant", u.dormant.map(Value::Bool));
            a.opt("user", u.user.as_ref().map(name));
            a.opt("replica", u.replica.as_ref().map(replica));
        }
        Action::UpdateTemplate(u) => {
            a.set("name", name(&u.name));
            template_changes(&mut a, &u.changes);
            if u.deleted {
                a.set("deleted", Value::Bool(true));
            }
            a.opt("replica", u.replica.as_ref().map(replica));
        }
        Action::PublishVersion(p) => {
            a.set("template", name(&p.template));
            a.set("version", version(&p.version));
            a.set("presets", list(p.presets.iter().map(|x| preset(x, false))));
            a.opt("replica", p.replica.as_ref().map(replica));
        }
        Action::SetUser(u) => {
            a.set("name", name(&u.name));
            a.opt("status", u.status.map(|s| text(s.as_str())));
            a.opt("roles", u.roles.map(roles));
            a.opt("replica", u.replica.as_ref().map(replica));
        }
        Action::SetSetting { reconcile_paused, replica: r } => {
            a.set("reconcile_paused", Value::Bool(*reconcile_paused));
            a.opt("replica", r.as_ref().map(replica));
        }
        Action::Chat(c) => {
            a.set("name", name(&c.name));
            a.set("op", text(c.op.name()));
            a.opt("owner", c.owner.as_ref().map(name));
            a.opt("workspace", c.workspace.as_ref().map(name));
            if let Some(turn) = &c.turn {
                let mut t = Map::new();
                t.opt("duration", turn.duration.map(range));
                t.set("outcome", text(turn.outcome.name()));
                a.set("turn", t.done());
            }
            a.opt("replica", c.replica.as_ref().map(replica));
        }
        Action::StoreFault(f) => {
            a.set("kind", text(f.kind.name()));
            if f.kind != super::model::StoreFaultKind::Restart {
                a.set("ops", list(f.ops.iter().map(|o| text(o.name()))));
                a.set("rate", rate(f.rate));
            }
            a.opt("latency", f.latency.map(range));
            a.opt("replica", f.replica.as_ref().map(replica));
            a.set("for", span(f.duration));
        }
        Action::PoolHog { replica: r, connections, duration } => {
            a.set("replica", replica(r));
            a.set("connections", number(u64::from(*connections)));
            a.set("for", span(*duration));
        }
        Action::PubsubFault { kind, rate: r, delay, duration } => {
            a.set("kind", text(kind.name()));
            a.set("rate", rate(*r));
            a.opt("delay", delay.map(range));
            a.set("for", span(*duration));
        }
        Action::NotificationFault { rate: r, duration } => {
            a.set("rate", rate(*r));
            a.set("for", span(*duration));
        }
        Action::ProvisionerFault(p) => {
            a.opt("template", p.template.as_ref().map(name));
            a.opt("failure_rate", p.failure_rate.map(rate));
            a.opt("build_duration", p.build_duration.map(range));
            if p.offline {
                a.set("offline", Value::Bool(true));
            }
            a.set("for", span(p.duration));
        }
        Action::Shutdown { replica: r } | Action::Restart { replica: r } => {
            a.set("replica", replica(r));
        }
        Action::Crash { replica: r, restart_after } => {
            a.set("replica", replica(r));
            a.opt("restart_after", restart_after.map(range));
        }
        Action::ClockSkew { replica: r, offset } => {
            a.set("replica", replica(r));
            a.set("offset", span(*offset));
        }
    }
    Map::new().set("at", point(Point::from_offset(e.at))).set(e.action.name(), a.done()).done()
}

fn point_expect(value: PointExpect) -> Value {
    match value {
        PointExpect::None => text("none"),
        PointExpect::Set => Value::Bool(true),
        PointExpect::At(p) => point(p),
        PointExpect::Within(w) => list([point(w.from), point(w.to)]),
    }
}

fn count(m: &mut Map, c: Count) {
    match c {
        Count::Exactly(n) => {
            m.set("count", number(n));
        }
        Count::Within { at_least, at_most } => {
            m.opt("at_least", at_least.map(number));
            m.opt("at_most", at_most.map(number));
        }
    }
}

fn expectation(e: &Expectation) -> Value {
    if let Expect::Violations = e.kind {
        return Map::new().set("violations", number(0)).done();
    }
    let name = |n: &super::error::Spanned<String>| text(n.value.clone());
    let window = |w: super::model::Window| list([point(w.from), point(w.to)]);
    let mut m = Map::new();
    m.opt("at", e.at.map(|at| point(Point::from_offset(at))));
    match &e.kind {
        Expect::Builds(b) => {
            m.opt("workspace", b.workspace.as_ref().map(name));
            m.opt("transition", b.transition.map(|t| text(t.as_str())));
            m.opt("reason", b.reason.map(|r| text(r.as_str())));
            m.opt("status", b.status.map(|s| text(s.as_str())));
            m.opt("version", b.version.as_ref().map(name));
            m.opt("between", b.between.map(window));
            count(&mut m, b.count);
        }
        Expect::Notifications(n) => {
            m.opt("kind", n.kind.map(|k| text(k.as_str())));
            m.opt("workspace", n.workspace.as_ref().map(name));
            m.opt("user", n.user.as_ref().map(name));
            m.opt("between", n.between.map(window));
            count(&mut m, n.count);
        }
        Expect::Workspace(w) => {
            m.set("name", name(&w.name));
            m.opt("status", w.status.map(|s| text(s.as_str())));
            m.opt("owner", w.owner.as_ref().map(|o| text(o.value.as_str())));
            m.opt("version", w.version.as_ref().map(name));
            m.opt("deadline", w.deadline.map(point_expect));
            m.opt("max_deadline", w.max_deadline.map(point_expect));
            match w.dormant_at {
                Some(PointExpect::Set) => {
                    m.set("dormant", Value::Bool(true));
                }
                other => {
                    m.opt("dormant_at", other.map(point_expect));
                }
            }
            m.opt("deleting_at", w.deleting_at.map(point_expect));
            m.opt("last_used", w.last_used.map(point_expect));
            m.opt("next_start_at", w.next_start_at.map(point_expect));
            m.opt("agent", w.agent.map(|a| text(a.as_str())));
        }
        Expect::Prebuilds(p) => {
            m.opt("template", p.template.as_ref().map(name));
            m.opt("version", p.version.as_ref().map(name));
            m.opt("preset", p.preset.as_ref().map(name));
            m.opt("ready", p.ready.map(number));
            m.opt("building", p.building.map(number));
            m.opt("total", p.total.map(number));
        }
        Expect::Preset(p) => {
            m.opt("template", p.template.as_ref().map(name));
            m.opt("version", p.version.as_ref().map(name));
            m.opt("name", p.name.as_ref().map(name));
            m.set("status", text(p.status.as_str()));
        }
        Expect::Chat(c) => {
            m.set("name", name(&c.name));
            m.opt("status", c.status.map(|s| text(s.as_str())));
            m.opt(
                "owner",
                c.owner.map(|o| match o {
                    ChatOwnerExpect::Replica(i) => number(u64::from(i)),
                    ChatOwnerExpect::None => text("none"),
                }),
            );
            m.opt("turns", c.turns.map(number));
        }
        Expect::Violations => {}
    }
    Map::new().set(e.kind.name(), m.done()).done()
}
