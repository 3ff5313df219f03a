//! Stage one for `timeline`: each entry's `at` (within `run_for`), its one
//! action and the action's fields, with the rules that concern one action on
//! its own (which fields go together, ranges, replica indexes, `for` defaults).

use std::collections::BTreeSet;

use engine::model::{AutomaticUpdates, UserStatus};
use engine::time::Span;

use super::error::{Origin, Spanned};
use super::model::{
    Action, BuildAction, ChatAction, ChatOp, CreateWorkspace, Named, ProvisionerFault, PublishVersion, PubsubFaultKind,
    ReplicaRef, ReplicaTarget, SetUser, StoreFault, StoreFaultKind, StoreOp, TimelineEntry, Turn, TurnOutcome,
    UpdateTemplate, UpdateWorkspace,
};
use super::parse::Bounds;
use super::reader::{self, Cx, Fields};
use super::world::{check_presets_unique, parse_preset, parse_version, template_changes, ttl_value, weekly_cron};
use super::yaml::{shorten, Node};

pub(crate) fn parse_timeline(cx: &mut Cx, node: &Node, bounds: &Bounds) -> Vec<TimelineEntry> {
    reader::list(cx, node, "timeline").into_iter().filter_map(|n| parse_entry(cx, n, bounds)).collect()
}

fn backticked(names: &[&str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// The one kind key of a timeline entry or expectation, or `None` (reported).
pub(crate) fn single_kind<'n>(
    cx: &mut Cx,
    f: &mut Fields<'n>,
    kinds: &[&str],
    what: &str,
    plural: &str,
) -> Option<(&'n str, Origin)> {
    let keys = f.keys();
    let found: Vec<(&str, Origin)> = keys.iter().copied().filter(|(k, _)| kinds.contains(k)).collect();
    match found[..] {
        [] => {
            let all_known = keys.iter().all(|(k, _)| *k == "at");
            if all_known {
                cx.error(f.origin(), format!("{what} has no {plural}, expected one of {}", backticked(kinds)));
            }
            None
        }
        [one] => Some(one),
        [(first, _), (second, origin), ..] => {
            cx.error(
                origin,
                format!("{what} has more than one {plural} (`{first}` and `{second}`), expected exactly one"),
            );
            for (key, _) in &found {
                f.skip(key);
            }
            None
        }
    }
}

fn parse_entry(cx: &mut Cx, node: &Node, bounds: &Bounds) -> Option<TimelineEntry> {
    let mut f = Fields::open(cx, node, "timeline[]", "timeline entry")?;
    let at_node = f.take("at");
    let at = match at_node {
        Some(n) => reader::point(cx, n, "at").map(|p| (p.offset, n.origin)),
        None => {
            cx.error(f.origin(), "missing field `at` in timeline entry (every action states when it happens)");
            None
        }
    };
    if let (Some((at, origin)), Some(run_for)) = (at, bounds.run_for) {
        if at.is_negative() || at > run_for {
            cx.error(
                origin,
                format!(
                    "`at` is {}, expected a point within `run_for` (0 to {run_for})",
                    super::model::Point::from_offset(at)
                ),
            );
        }
    }
    let kind = single_kind(cx, &mut f, Action::NAMES, "timeline entry", "action");
    let action = kind.and_then(|(name, origin)| {
        let value = f.take(name)?;
        let at = at.map(|(at, _)| at).unwrap_or(Span::ZERO);
        parse_action(cx, name, value, at, bounds).map(|action| (action, origin))
    });
    f.finish(cx);
    let (at, _) = at?;
    let (action, action_origin) = action?;
    Some(TimelineEntry { origin: node.origin, at, action_origin, action })
}

/// `0 .. replicas-1` or `owner:CHAT`.
fn replica(cx: &mut Cx, node: &Node, key: &str, replicas: u32) -> Option<ReplicaRef> {
    let text = reader::scalar(cx, node, key, "a replica index or `owner:CHAT`")?;
    if let Some(chat) = text.strip_prefix("owner:") {
        let chat = chat.trim();
        if chat.is_empty() {
            cx.error(node.origin, format!("invalid `{key}`: `owner:` needs a chat name, like `owner:c1`"));
            return None;
        }
        return Some(Spanned::new(ReplicaTarget::ChatOwner(chat.to_owned()), node.origin));
    }
    let Some(index) = super::values::parse_unsigned(text) else {
        cx.error(
            node.origin,
            format!("invalid `{key}`: expected a replica index or `owner:CHAT`, found `{}`", shorten(text)),
        );
        return None;
    };
    if index >= u64::from(replicas) {
        let range = if replicas == 1 { "0".to_owned() } else { format!("0 to {}", replicas - 1) };
        cx.error(node.origin, format!("replica {index} is out of range, expected {range} (`replicas` is {replicas})"));
        return None;
    }
    Some(Spanned::new(ReplicaTarget::Index(index as u32), node.origin))
}

fn parse_action(cx: &mut Cx, name: &str, node: &Node, at: Span, bounds: &Bounds) -> Option<Action> {
    let path = format!("timeline[].{name}");
    let mut f = Fields::open(cx, node, path.clone(), name)?;
    let replicas = bounds.replicas;
    let opt_replica = |f: &mut Fields, cx: &mut Cx| f.optional(cx, "replica", |cx, n, k| replica(cx, n, k, replicas));
    let req_replica = |f: &mut Fields, cx: &mut Cx| f.required(cx, "replica", |cx, n, k| replica(cx, n, k, replicas));
    let until_end = bounds.run_for.map(|r| r - at).unwrap_or(Span::ZERO).max(Span::ZERO);
    let lasting = |f: &mut Fields, cx: &mut Cx, default: Span| {
        f.optional(cx, "for", reader::positive_duration).unwrap_or(default)
    };
    let action_origin = f.origin();
    let action = match name {
        "activity" => {
            let workspace = f.required(cx, "workspace", reader::name);
            let replica = opt_replica(&mut f, cx);
            Some(Action::Activity { workspace: workspace?, replica })
        }
        "start" | "stop" | "delete" => {
            let workspace = f.required(cx, "workspace", reader::name);
            let user = f.optional(cx, "user", reader::name);
            let replica = opt_replica(&mut f, cx);
            workspace.map(|workspace| {
                let build = BuildAction { workspace, user, replica };
                match name {
                    "start" => Action::Start(build),
                    "stop" => Action::Stop(build),
                    _ => Action::Delete(build),
                }
            })
        }
        "extend" => {
            let workspace = f.required(cx, "workspace", reader::name);
            let deadline = f.required(cx, "deadline", reader::point);
            let user = f.optional(cx, "user", reader::name);
            let replica = opt_replica(&mut f, cx);
            Some(Action::Extend { workspace: workspace?, deadline: deadline?, user, replica })
        }
        "create_workspace" => {
            let name = f.required(cx, "name", reader::name);
            let owner = f.required(cx, "owner", reader::name);
            let template = f.required(cx, "template", reader::name);
            let version = f.optional(cx, "version", reader::name);
            let preset = f.optional(cx, "preset", reader::name);
            let parameters = f.optional(cx, "parameters", reader::parameters).unwrap_or_default();
            let ttl = f.optional(cx, "ttl", ttl_value);
            let autostart = f.optional(cx, "autostart", autostart_value).flatten();
            let automatic_updates = f.optional(cx, "automatic_updates", reader::named::<AutomaticUpdates>);
            let replica = opt_replica(&mut f, cx);
            Some(Action::CreateWorkspace(CreateWorkspace {
                name: name?,
                owner: owner?,
                template: template?,
                version,
                preset,
                parameters,
                ttl,
                autostart,
                automatic_updates,
                replica,
            }))
        }
        "update_workspace" => {
            let name = f.required(cx, "name", reader::name);
            let changes = ["ttl", "autostart", "automatic_updates", "dormant"];
            let any_change = changes.iter().any(|k| f.has(k));
            let ttl = f.optional(cx, "ttl", ttl_value);
            let autostart = f.optional(cx, "autostart", autostart_value);
            let automatic_updates = f.optional(cx, "automatic_updates", reader::named::<AutomaticUpdates>);
            let dormant = f.optional(cx, "dormant", reader::boolean);
            let user = f.optional(cx, "user", reader::name);
            let replica = opt_replica(&mut f, cx);
            if !any_change {
                cx.error(
                    action_origin,
                    format!("`update_workspace` changes nothing, expected at least one of {}", backticked(&changes)),
                );
            }
            Some(Action::UpdateWorkspace(UpdateWorkspace {
                name: name?,
                ttl,
                autostart,
                automatic_updates,
                dormant,
                user,
                replica,
            }))
        }
        "update_template" => {
            let name = f.required(cx, "name", reader::name);
            let changes = template_changes(cx, &mut f);
            let deleted = f.optional(cx, "deleted", |cx, n, k| {
                let value = reader::boolean(cx, n, k)?;
                if !value {
                    cx.error(n.origin, "`deleted` only takes `true` (a deleted template cannot come back)");
                    return None;
                }
                Some(value)
            });
            let replica = opt_replica(&mut f, cx);
            if changes.is_empty()
                && deleted.is_none()
                && !f.has("deleted")
                && f.keys().iter().all(|(k, _)| matches!(*k, "name" | "replica"))
            {
                cx.error(
                    action_origin,
                    "`update_template` changes nothing, expected a template setting or `deleted: true`",
                );
            }
            Some(Action::UpdateTemplate(UpdateTemplate {
                name: name?,
                changes,
                deleted: deleted.unwrap_or(false),
                replica,
            }))
        }
        "publish_version" => {
            let template = f.required(cx, "template", reader::name);
            let version =
                f.required(cx, "version", |cx, n, _| parse_version(cx, n, "timeline[].publish_version.version"));
            let presets = match (f.take("presets"), &version) {
                (Some(list), Some(version)) => reader::list(cx, list, "presets")
                    .into_iter()
                    .filter_map(|n| {
                        parse_preset(cx, n, "timeline[].publish_version.presets[]", &[], Some(&version.name))
                    })
                    .collect(),
                _ => Vec::new(),
            };
            check_presets_unique(cx, &presets);
            let replica = opt_replica(&mut f, cx);
            Some(Action::PublishVersion(PublishVersion { template: template?, version: version?, presets, replica }))
        }
        "set_user" => {
            let name = f.required(cx, "name", reader::name);
            let any_change = f.has("status") || f.has("roles");
            let status = f.optional(cx, "status", reader::named::<UserStatus>);
            let roles = f.optional(cx, "roles", reader::roles);
            let replica = opt_replica(&mut f, cx);
            if !any_change {
                cx.error(action_origin, "`set_user` changes nothing, expected `status` or `roles`");
            }
            Some(Action::SetUser(SetUser { name: name?, status, roles, replica }))
        }
        "set_setting" => {
            let paused = f.required(cx, "reconcile_paused", reader::boolean);
            let replica = opt_replica(&mut f, cx);
            Some(Action::SetSetting { reconcile_paused: paused?, replica })
        }
        "chat" => parse_chat_action(cx, &mut f, replicas).map(Action::Chat),
        "store_fault" => parse_store_fault(cx, &mut f, until_end, replicas).map(Action::StoreFault),
        "pool_hog" => {
            let replica = req_replica(&mut f, cx);
            let pool = bounds.db_pool_size;
            let connections = f
                .optional(cx, "connections", |cx, n, k| {
                    let value = reader::count32(cx, n, k)?;
                    if value == 0 || value > pool {
                        cx.error(n.origin, format!("`{k}` is {value}, expected 1 to {pool} (`db_pool_size`)"));
                        return None;
                    }
                    Some(value)
                })
                .unwrap_or(pool);
            let duration = lasting(&mut f, cx, until_end);
            Some(Action::PoolHog { replica: replica?, connections, duration })
        }
        "pubsub_fault" => {
            let kind = f.required(cx, "kind", reader::named::<PubsubFaultKind>);
            let rate = f.optional(cx, "rate", reader::rate).unwrap_or(1.0);
            let delay_origin = f.key_origin("delay");
            let delay = match (kind, f.take("delay")) {
                (Some(PubsubFaultKind::Drop), Some(n)) => {
                    cx.error(delay_origin.unwrap_or(n.origin), "`delay` does not apply to kind `drop`");
                    None
                }
                (_, Some(n)) => reader::range(cx, n, "delay"),
                (Some(PubsubFaultKind::Delay), None) => {
                    cx.error(action_origin, "missing field `delay` in `pubsub_fault` of kind `delay`");
                    None
                }
                (_, None) => None,
            };
            let duration = lasting(&mut f, cx, until_end);
            Some(Action::PubsubFault { kind: kind?, rate, delay, duration })
        }
        "notification_fault" => {
            let rate = f.optional(cx, "rate", reader::rate).unwrap_or(1.0);
            let duration = lasting(&mut f, cx, until_end);
            Some(Action::NotificationFault { rate, duration })
        }
        "provisioner_fault" => {
            let offline = f.optional(cx, "offline", reader::boolean).unwrap_or(false);
            let mut template = None;
            let mut failure_rate = None;
            let mut build_duration = None;
            if offline {
                for key in ["template", "failure_rate", "build_duration"] {
                    if let Some(origin) = f.key_origin(key) {
                        f.skip(key);
                        cx.error(
                            origin,
                            format!("`{key}` does not apply with `offline: true`, which concerns every template"),
                        );
                    }
                }
            } else {
                template = f.optional(cx, "template", reader::name);
                let any = f.has("failure_rate") || f.has("build_duration");
                failure_rate = f.optional(cx, "failure_rate", reader::rate);
                build_duration = f.optional(cx, "build_duration", reader::range);
                if !any {
                    cx.error(action_origin, "`provisioner_fault` changes nothing, expected `failure_rate`, `build_duration` or `offline: true`");
                }
            }
            let duration = lasting(&mut f, cx, until_end);
            Some(Action::ProvisionerFault(ProvisionerFault {
                template,
                failure_rate,
                build_duration,
                offline,
                duration,
            }))
        }
        "shutdown" => req_replica(&mut f, cx).map(|replica| Action::Shutdown { replica }),
        "crash" => {
            let replica = req_replica(&mut f, cx);
            let restart_after = f.optional(cx, "restart_after", reader::range);
            Some(Action::Crash { replica: replica?, restart_after })
        }
        "restart" => req_replica(&mut f, cx).map(|replica| Action::Restart { replica }),
        "clock_skew" => {
            let replica = req_replica(&mut f, cx);
            let offset = f.required(cx, "offset", reader::signed_duration);
            Some(Action::ClockSkew { replica: replica?, offset: offset? })
        }
        _ => None,
    };
    f.finish(cx);
    action
}

/// A weekly cron or `none` (`Some(None)`); `{unchecked: ...}` allowed.
fn autostart_value(cx: &mut Cx, node: &Node, key: &str) -> Option<Option<super::model::Checkable<String>>> {
    if node.scalar() == Some("none") {
        return Some(None);
    }
    reader::checkable_text(cx, node, key, |t| weekly_cron(key, t)).map(Some)
}

fn parse_chat_action(cx: &mut Cx, f: &mut Fields, replicas: u32) -> Option<ChatAction> {
    let name = f.required(cx, "name", reader::name);
    let op = f.required(cx, "op", reader::named::<ChatOp>);
    let (mut owner, mut workspace, mut turn) = (None, None, None);
    if let Some(op) = op {
        let takes_owner = op == ChatOp::Create;
        let takes_turn = matches!(op, ChatOp::Create | ChatOp::Message);
        for (key, applies) in [("owner", takes_owner), ("workspace", takes_owner), ("turn", takes_turn)] {
            if !applies {
                if let Some(origin) = f.key_origin(key) {
                    f.skip(key);
                    cx.error(origin, format!("`{key}` does not apply to chat op `{}`", op.name()));
                }
            }
        }
        if takes_owner {
            owner = f.required(cx, "owner", reader::name);
            workspace = f.optional(cx, "workspace", reader::name);
        }
        if takes_turn {
            turn = f.take("turn").and_then(|n| {
                let mut t = Fields::open(cx, n, "timeline[].chat.turn", "turn")?;
                let duration = t.optional(cx, "duration", reader::range);
                let outcome = t.optional(cx, "outcome", reader::named::<TurnOutcome>).unwrap_or(TurnOutcome::Finish);
                t.finish(cx);
                Some(Turn { duration, outcome })
            });
        }
    } else {
        for key in ["owner", "workspace", "turn"] {
            f.skip(key);
        }
    }
    let replica = f.optional(cx, "replica", |cx, n, k| replica(cx, n, k, replicas));
    if op == Some(ChatOp::Create) && owner.is_none() {
        return None;
    }
    Some(ChatAction { name: name?, op: op?, owner, workspace, turn, replica })
}

fn parse_store_fault(cx: &mut Cx, f: &mut Fields, until_end: Span, replicas: u32) -> Option<StoreFault> {
    let kind = f.required(cx, "kind", reader::named::<StoreFaultKind>);
    let all_ops: BTreeSet<StoreOp> = StoreOp::ALL.iter().copied().collect();
    if kind == Some(StoreFaultKind::Restart) {
        for key in ["replica", "ops", "rate", "latency"] {
            if let Some(origin) = f.key_origin(key) {
                f.skip(key);
                cx.error(
                    origin,
                    format!("`{key}` does not apply to kind `restart`, which concerns the whole database"),
                );
            }
        }
    }
    let ops = f
        .optional(cx, "ops", |cx, n, k| {
            let items = reader::list(cx, n, k);
            if items.is_empty() {
                cx.error(n.origin, format!("invalid `{k}`: expected at least one of `lease`, `lock`, `commit`, `write`, `read` (leave `ops` out for all)"));
                return None;
            }
            let mut ops = BTreeSet::new();
            let mut ok = true;
            for item in items {
                match reader::named::<StoreOp>(cx, item, "op") {
                    Some(op) => {
                        ops.insert(op);
                    }
                    None => ok = false,
                }
            }
            ok.then_some(ops)
        })
        .unwrap_or(all_ops);
    let rate = f.optional(cx, "rate", reader::rate).unwrap_or(1.0);
    let latency_origin = f.key_origin("latency");
    let latency = match (kind, f.take("latency")) {
        (Some(StoreFaultKind::Latency), Some(n)) => reader::range(cx, n, "latency"),
        (Some(StoreFaultKind::Latency), None) => {
            cx.error(f.origin(), "missing field `latency` in `store_fault` of kind `latency`");
            None
        }
        (Some(kind), Some(n)) => {
            let message = format!("`latency` does not apply to kind `{kind}` (only to kind `latency`)");
            cx.error(latency_origin.unwrap_or(n.origin), message);
            None
        }
        (_, None) | (None, Some(_)) => None,
    };
    let replica = f.optional(cx, "replica", |cx, n, k| replica(cx, n, k, replicas));
    let default_for = if kind == Some(StoreFaultKind::Restart) { Span::from_secs(1) } else { until_end };
    let duration = f.optional(cx, "for", reader::positive_duration).unwrap_or(default_for);
    Some(StoreFault { kind: kind?, ops, rate, latency, replica, duration })
}
