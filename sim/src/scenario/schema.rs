//! The schema of the scenario format: every field path the loader accepts, in
//! one list. The parser reads mappings only through it (an unknown key is
//! rejected with the closest accepted one as a suggestion), and a test checks
//! it against `sim/SCENARIO_REFERENCE.md` both ways.
//!
//! Paths use `.` between fields, `[]` for list items and `<template>` for the
//! free keys of `provisioners.templates`: `world.workspaces[].latest_build.deadline`,
//! `timeline[].store_fault.ops`, `expect[].builds.between`.

use std::sync::OnceLock;

const TOP: &[&str] = &[
    "name",
    "description",
    "seed",
    "start",
    "run_for",
    "settle",
    "replicas",
    "settings",
    "world",
    "provisioners",
    "chaos",
    "timeline",
    "expect",
];

pub(crate) const SETTINGS: &[&str] = &[
    "lifecycle_interval",
    "reconcile_interval",
    "reconcile_paused",
    "prebuild_failure_hard_limit",
    "prebuild_backoff",
    "prebuild_backoff_lookback",
    "usage_flush_interval",
    "chat_heartbeat_interval",
    "chat_stale_after",
    "chat_acquire_interval",
    "chat_acquire_batch",
    "chat_step_max",
    "chat_archive_after",
    "chat_retention",
    "notification_poll_interval",
    "notification_retry",
    "shutdown_timeout",
    "db_pool_size",
    "db_acquire_timeout",
    "provisioner_stale_after",
    "db_latency",
    "chat_turn_duration",
    "agent_ready_after",
];

/// Template settings: in `world.templates[]` and `timeline[].update_template`.
const TEMPLATE_SETTINGS: &[&str] = &[
    "default_ttl",
    "activity_bump",
    "time_til_autostop_notify",
    "failure_ttl",
    "time_til_dormant",
    "time_til_dormant_autodelete",
    "allow_user_autostart",
    "allow_user_autostop",
    "autostart_days",
    "autostop_requirement",
    "autostop_requirement.days",
    "autostop_requirement.weeks",
    "require_active_version",
    "deprecated",
];

/// A version entry: a name, or `{name, parameters}`.
const VERSION: &[&str] =
    &["", ".name", ".parameters", ".parameters[].name", ".parameters[].required", ".parameters[].default"];

/// A preset, less its `version` (world presets add it).
const PRESET: &[&str] = &[
    "name",
    "parameters",
    "instances",
    "expiration_ttl",
    "schedules",
    "schedules.timezone",
    "schedules.rules",
    "schedules.rules[].cron",
    "schedules.rules[].instances",
];

const USER: &[&str] = &["name", "status", "roles", "quiet_hours"];

const WORKSPACE: &[&str] = &[
    "name",
    "owner",
    "template",
    "version",
    "preset",
    "parameters",
    "created",
    "autostart",
    "ttl",
    "automatic_updates",
    "last_used",
    "dormant_at",
    "deleting_at",
    "next_start_at",
    "agent",
    "latest_build",
    "latest_build.transition",
    "latest_build.status",
    "latest_build.reason",
    "latest_build.created",
    "latest_build.completed",
    "latest_build.deadline",
    "latest_build.max_deadline",
];

const CHAT: &[&str] = &["name", "owner", "workspace", "status", "last_activity", "created", "heartbeat"];

const PROVISIONERS: &[&str] = &[
    "count",
    "build_duration",
    "failure_rate",
    "templates",
    "templates.<template>.failure_rate",
    "templates.<template>.build_duration",
];

pub(crate) const CHAOS: &[&str] = &[
    "store_error_rate",
    "serialization_failure_rate",
    "commit_unknown_rate",
    "store_latency",
    "pubsub_drop_rate",
    "pubsub_delay",
    "notification_failure_rate",
    "replica_crash_rate",
    "replica_restart_after",
    "clock_skew",
];

/// Each action with its fields (`template settings`, `version` and `presets`
/// are expanded below).
const ACTIONS: &[(&str, &[&str])] = &[
    ("activity", &["workspace", "replica"]),
    ("start", &["workspace", "user", "replica"]),
    ("stop", &["workspace", "user", "replica"]),
    ("delete", &["workspace", "user", "replica"]),
    ("extend", &["workspace", "deadline", "user", "replica"]),
    (
        "create_workspace",
        &[
            "name",
            "owner",
            "template",
            "version",
            "preset",
            "parameters",
            "ttl",
            "autostart",
            "automatic_updates",
            "replica",
        ],
    ),
    ("update_workspace", &["name", "ttl", "autostart", "automatic_updates", "dormant", "user", "replica"]),
    ("update_template", &["name", "deleted", "replica"]),
    ("publish_version", &["template", "presets", "replica"]),
    ("set_user", &["name", "status", "roles", "replica"]),
    ("set_setting", &["reconcile_paused", "replica"]),
    ("chat", &["name", "op", "owner", "workspace", "turn", "turn.duration", "turn.outcome", "replica"]),
    ("store_fault", &["kind", "ops", "rate", "latency", "replica", "for"]),
    ("pool_hog", &["replica", "connections", "for"]),
    ("pubsub_fault", &["kind", "rate", "delay", "for"]),
    ("notification_fault", &["rate", "for"]),
    ("provisioner_fault", &["template", "failure_rate", "build_duration", "offline", "for"]),
    ("shutdown", &["replica"]),
    ("crash", &["replica", "restart_after"]),
    ("restart", &["replica"]),
    ("clock_skew", &["replica", "offset"]),
];

const COUNTS: &[&str] = &["count", "at_least", "at_most"];

/// Each expectation kind with its filters and fields (`at` and, for `builds`
/// and `notifications`, the counts are added below).
const EXPECTATIONS: &[(&str, &[&str])] = &[
    ("builds", &["workspace", "transition", "reason", "status", "version", "between"]),
    ("notifications", &["kind", "workspace", "user", "between"]),
    (
        "workspace",
        &[
            "name",
            "status",
            "owner",
            "version",
            "deadline",
            "max_deadline",
            "dormant",
            "dormant_at",
            "deleting_at",
            "last_used",
            "next_start_at",
            "agent",
        ],
    ),
    ("prebuilds", &["template", "version", "preset", "ready", "building", "total"]),
    ("preset", &["template", "version", "name", "status"]),
    ("chat", &["name", "status", "owner", "turns"]),
];

fn build() -> Vec<String> {
    let mut paths: Vec<String> = Vec::new();
    fn add_to(paths: &mut Vec<String>, prefix: &str, names: &[&str]) {
        for name in names {
            paths.push(if prefix.is_empty() { (*name).to_owned() } else { format!("{prefix}.{name}") });
        }
    }
    add_to(&mut paths, "", TOP);
    add_to(&mut paths, "settings", SETTINGS);
    add_to(&mut paths, "world", &["users", "templates", "workspaces", "chats"]);
    add_to(&mut paths, "world.users[]", USER);
    add_to(&mut paths, "world.templates[]", &["name"]);
    add_to(&mut paths, "world.templates[]", TEMPLATE_SETTINGS);
    add_to(&mut paths, "world.templates[]", &["versions"]);
    for suffix in VERSION {
        paths.push(format!("world.templates[].versions[]{suffix}"));
    }
    add_to(&mut paths, "world.templates[]", &["presets"]);
    add_to(&mut paths, "world.templates[].presets[]", &["name", "version"]);
    add_to(&mut paths, "world.templates[].presets[]", &PRESET[1..]);
    add_to(&mut paths, "world.workspaces[]", WORKSPACE);
    add_to(&mut paths, "world.chats[]", CHAT);
    add_to(&mut paths, "provisioners", PROVISIONERS);
    add_to(&mut paths, "chaos", CHAOS);
    paths.push("timeline[].at".to_owned());
    for (action, fields) in ACTIONS {
        paths.push(format!("timeline[].{action}"));
        let prefix = format!("timeline[].{action}");
        match *action {
            "update_template" => add_to(&mut paths, &prefix, TEMPLATE_SETTINGS),
            "publish_version" => {
                for suffix in VERSION {
                    paths.push(format!("{prefix}.version{suffix}"));
                }
                add_to(&mut paths, &format!("{prefix}.presets[]"), PRESET);
            }
            _ => {}
        }
        add_to(&mut paths, &prefix, fields);
    }
    for (kind, fields) in EXPECTATIONS {
        let prefix = format!("expect[].{kind}");
        paths.push(prefix.clone());
        add_to(&mut paths, &prefix, fields);
        add_to(&mut paths, &prefix, &["at"]);
        if matches!(*kind, "builds" | "notifications") {
            add_to(&mut paths, &prefix, COUNTS);
        }
    }
    paths.push("expect[].violations".to_owned());
    let mut seen = std::collections::BTreeSet::new();
    paths.retain(|p| seen.insert(p.clone()));
    paths
}

/// Every field path the loader accepts, in the order of SCENARIOS.md.
pub fn schema() -> &'static [String] {
    static SCHEMA: OnceLock<Vec<String>> = OnceLock::new();
    SCHEMA.get_or_init(build)
}

fn sorted() -> &'static [String] {
    static SORTED: OnceLock<Vec<String>> = OnceLock::new();
    SORTED.get_or_init(|| {
        let mut paths = schema().to_vec();
        paths.sort();
        paths
    })
}

/// Whether `path` (as [`schema`] spells it) is accepted.
pub fn accepts(path: &str) -> bool {
    sorted().binary_search_by(|p| p.as_str().cmp(path)).is_ok()
}

/// The keys accepted directly under the mapping at `path` (`""` for the top
/// level), in schema order.
pub(crate) fn children(path: &str) -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = Vec::new();
    for full in schema() {
        let rest = if path.is_empty() {
            Some(full.as_str())
        } else {
            full.strip_prefix(path).and_then(|r| r.strip_prefix('.'))
        };
        let Some(rest) = rest else { continue };
        let segment = rest.split('.').next().unwrap_or(rest);
        let key = segment.strip_suffix("[]").unwrap_or(segment);
        if !key.is_empty() && !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

/// The accepted name closest to `wrong`, if exactly one is close enough to
/// be a typo.
pub(crate) fn suggest<'a>(wrong: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let close: Vec<(usize, &str)> = candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(wrong, c), *c))
        .filter(|(distance, candidate)| *distance <= (candidate.len().max(wrong.len()) / 3).clamp(1, 3))
        .collect();
    let best = close.iter().map(|(d, _)| *d).min()?;
    match close.iter().filter(|(d, _)| *d == best).collect::<Vec<_>>()[..] {
        [(_, only)] => Some(*only),
        _ => None,
    }
}

/// "expected `x`" for a typo, else "expected one of `a`, `b`".
pub(crate) fn expected_one_of(wrong: &str, candidates: &[&str]) -> String {
    match suggest(wrong, candidates) {
        Some(close) => format!("expected `{close}`"),
        None => {
            let list: Vec<String> = candidates.iter().map(|c| format!("`{c}`")).collect();
            format!("expected one of {}", list.join(", "))
        }
    }
}

/// The schema paths of every field written in a scenario text, in order of
/// appearance (repeats removed); `None` if the text is not YAML. Free-form
/// mappings (`parameters`) and `{unchecked: ...}` values are not entered.
pub fn paths_in(text: &str) -> Option<Vec<String>> {
    use super::yaml::{self, Node, NodeKind};
    fn walk(node: &Node, path: &str, out: &mut Vec<String>) {
        match &node.kind {
            NodeKind::Map(entries) => {
                if entries.len() == 1 && entries[0].0.scalar() == Some("unchecked") {
                    return;
                }
                for (key, value) in entries {
                    let Some(key) = key.scalar() else { continue };
                    let child = match path {
                        "" => key.to_owned(),
                        "provisioners.templates" => "provisioners.templates.<template>".to_owned(),
                        _ => format!("{path}.{key}"),
                    };
                    if !out.contains(&child) {
                        out.push(child.clone());
                    }
                    if !child.ends_with(".parameters") || !matches!(value.kind, NodeKind::Map(_)) {
                        walk(value, &child, out);
                    }
                }
            }
            NodeKind::Seq(items) => {
                let item_path = format!("{path}[]");
                for item in items {
                    if matches!(item.kind, NodeKind::Scalar { .. }) && accepts(&item_path) && !out.contains(&item_path)
                    {
                        out.push(item_path.clone());
                    }
                    walk(item, &item_path, out);
                }
            }
            NodeKind::Scalar { .. } => {}
        }
    }
    let root = yaml::parse(text).ok()??;
    let mut out = Vec::new();
    walk(&root, "", &mut out);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_and_suggestions() {
        assert!(children("").contains(&"run_for"));
        assert_eq!(children("world"), ["users", "templates", "workspaces", "chats"]);
        assert_eq!(suggest("v3", &["v1", "v2"]), None);
        assert!(children("world.templates[]").contains(&"autostop_requirement"));
        assert_eq!(children("world.templates[].autostop_requirement"), ["days", "weeks"]);
        assert_eq!(suggest("run_fro", &children("")), Some("run_for"));
        assert_eq!(suggest("zzz", &children("")), None);
        assert!(accepts("world.workspaces[].latest_build.deadline"));
        assert!(accepts("timeline[].store_fault.ops"));
        assert!(accepts("expect[].builds.between"));
        assert!(accepts("settings.lifecycle_interval"));
        assert!(accepts("timeline[].publish_version.presets[].schedules.rules[].cron"));
        assert!(!accepts("timeline[].publish_version.presets[].version"));
    }
}
