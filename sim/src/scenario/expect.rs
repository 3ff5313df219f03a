//! Stage one for `expect`: each entry's one kind, its filters, `at` (within
//! the run), counts and expected fields.

use engine::model::{BuildReason, ChatStatus, JobStatus, NotificationKind, PresetStatus, Transition};
use engine::time::Span;

use super::error::Spanned;
use super::model::{
    AgentState, BuildsExpect, ChatExpect, ChatOwnerExpect, Count, Expect, Expectation, NotificationsExpect, Owner,
    PointExpect, PrebuildsExpect, PresetExpect, WorkspaceExpect, WorkspaceStatus,
};
use super::parse::Bounds;
use super::reader::{self, Cx, Fields};
use super::timeline::single_kind;
use super::yaml::{shorten, Node};

pub(crate) fn parse_expectations(cx: &mut Cx, node: &Node, bounds: &Bounds) -> Vec<Expectation> {
    reader::list(cx, node, "expect").into_iter().filter_map(|n| parse_expectation(cx, n, bounds)).collect()
}

fn parse_expectation(cx: &mut Cx, node: &Node, bounds: &Bounds) -> Option<Expectation> {
    let mut f = Fields::open(cx, node, "expect[]", "expectation")?;
    let kind = single_kind(cx, &mut f, Expect::NAMES, "expectation", "kind");
    let parsed = kind.and_then(|(name, origin)| {
        let value = f.take(name)?;
        parse_kind(cx, name, value, bounds).map(|(at, kind)| Expectation { origin, at, kind })
    });
    f.finish(cx);
    parsed
}

fn parse_kind(cx: &mut Cx, name: &str, node: &Node, bounds: &Bounds) -> Option<(Option<Span>, Expect)> {
    if name == "violations" {
        let text = reader::scalar(cx, node, "violations", "`0`")?;
        if text != "0" {
            cx.error(node.origin, format!("`violations` is always 0 (stated for readers), found `{}`", shorten(text)));
            return None;
        }
        return Some((None, Expect::Violations));
    }
    let mut f = Fields::open(cx, node, format!("expect[].{name}"), name)?;
    let at = f.optional(cx, "at", |cx, n, k| {
        let point = reader::point(cx, n, k)?;
        if let Some(run_for) = bounds.run_for {
            let end = run_for + bounds.settle;
            if point.offset.is_negative() || point.offset > end {
                cx.error(
                    n.origin,
                    format!("`at` is {point}, expected a point within the run (0 to {end}, `run_for` + `settle`)"),
                );
                return None;
            }
        }
        Some(point.offset)
    });
    let origin = f.origin();
    let kind = match name {
        "builds" => {
            let workspace = f.optional(cx, "workspace", reader::name);
            let transition = f.optional(cx, "transition", reader::named::<Transition>);
            let reason = f.optional(cx, "reason", reader::named::<BuildReason>);
            let status = f.optional(cx, "status", reader::named::<JobStatus>);
            let version = f.optional(cx, "version", reader::name);
            let between = f.optional(cx, "between", reader::window);
            let count = counts(cx, &mut f);
            count.map(|count| {
                Expect::Builds(BuildsExpect { workspace, transition, reason, status, version, between, count })
            })
        }
        "notifications" => {
            let kind = f.optional(cx, "kind", reader::named::<NotificationKind>);
            let workspace = f.optional(cx, "workspace", reader::name);
            let user = f.optional(cx, "user", reader::name);
            let between = f.optional(cx, "between", reader::window);
            let count = counts(cx, &mut f);
            count.map(|count| Expect::Notifications(NotificationsExpect { kind, workspace, user, between, count }))
        }
        "workspace" => {
            let name = f.required(cx, "name", reader::name);
            let fields = [
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
            ];
            let checks_something = fields.iter().any(|k| f.has(k));
            let status = f.optional(cx, "status", reader::named::<WorkspaceStatus>);
            let owner = f.optional(cx, "owner", reader::name).map(|o| Spanned::new(Owner::parse(&o.value), o.origin));
            let version = f.optional(cx, "version", reader::name);
            let deadline = f.optional(cx, "deadline", reader::point_expect);
            let max_deadline = f.optional(cx, "max_deadline", reader::point_expect);
            let dormant = f.optional(cx, "dormant", reader::boolean);
            let mut dormant_at = f.optional(cx, "dormant_at", reader::point_expect);
            if let Some(dormant) = dormant {
                if let Some(origin) = f.key_origin("dormant_at") {
                    cx.error(origin, "`dormant_at` and `dormant` say the same thing, expected only one of them");
                }
                dormant_at = Some(if dormant { PointExpect::Set } else { PointExpect::None });
            }
            let deleting_at = f.optional(cx, "deleting_at", reader::point_expect);
            let last_used = f.optional(cx, "last_used", reader::point_expect);
            let next_start_at = f.optional(cx, "next_start_at", reader::point_expect);
            let agent = f.optional(cx, "agent", reader::named::<AgentState>);
            if !checks_something {
                let list: Vec<String> = fields.iter().map(|k| format!("`{k}`")).collect();
                cx.error(
                    origin,
                    format!("expectation `workspace` checks nothing, expected at least one of {}", list.join(", ")),
                );
            }
            name.map(|name| {
                Expect::Workspace(WorkspaceExpect {
                    name,
                    status,
                    owner,
                    version,
                    deadline,
                    max_deadline,
                    dormant_at,
                    deleting_at,
                    last_used,
                    next_start_at,
                    agent,
                })
            })
        }
        "prebuilds" => {
            let template = f.optional(cx, "template", reader::name);
            let version = f.optional(cx, "version", reader::name);
            let preset = f.optional(cx, "preset", reader::name);
            let checks_something = ["ready", "building", "total"].iter().any(|k| f.has(k));
            let ready = f.optional(cx, "ready", reader::unsigned);
            let building = f.optional(cx, "building", reader::unsigned);
            let total = f.optional(cx, "total", reader::unsigned);
            if !checks_something {
                cx.error(
                    origin,
                    "expectation `prebuilds` checks nothing, expected at least one of `ready`, `building`, `total`",
                );
            }
            Some(Expect::Prebuilds(PrebuildsExpect { template, version, preset, ready, building, total }))
        }
        "preset" => {
            let template = f.optional(cx, "template", reader::name);
            let version = f.optional(cx, "version", reader::name);
            let name = f.optional(cx, "name", reader::name);
            let status = f.required(cx, "status", reader::named::<PresetStatus>);
            status.map(|status| Expect::Preset(PresetExpect { template, version, name, status }))
        }
        "chat" => {
            let name = f.required(cx, "name", reader::name);
            let checks_something = ["status", "owner", "turns"].iter().any(|k| f.has(k));
            let status = f.optional(cx, "status", reader::named::<ChatStatus>);
            let owner = f.optional(cx, "owner", |cx, n, k| {
                let text = reader::scalar(cx, n, k, "a replica index or `none`")?;
                if text == "none" {
                    return Some(ChatOwnerExpect::None);
                }
                match super::values::parse_unsigned(text) {
                    Some(index) if index < u64::from(bounds.replicas) => Some(ChatOwnerExpect::Replica(index as u32)),
                    Some(index) => {
                        let range =
                            if bounds.replicas == 1 { "0".to_owned() } else { format!("0 to {}", bounds.replicas - 1) };
                        cx.error(
                            n.origin,
                            format!(
                                "replica {index} is out of range, expected {range} or `none` (`replicas` is {})",
                                bounds.replicas
                            ),
                        );
                        None
                    }
                    None => {
                        cx.error(
                            n.origin,
                            format!("invalid `{k}`: expected a replica index or `none`, found `{}`", shorten(text)),
                        );
                        None
                    }
                }
            });
            let turns = f.optional(cx, "turns", reader::unsigned);
            if !checks_something {
                cx.error(
                    origin,
                    "expectation `chat` checks nothing, expected at least one of `status`, `owner`, `turns`",
                );
            }
            name.map(|name| Expect::Chat(ChatExpect { name, status, owner, turns }))
        }
        _ => None,
    };
    f.finish(cx);
    Some((at, kind?))
}

/// `count`, or `at_least` and/or `at_most`.
fn counts(cx: &mut Cx, f: &mut Fields) -> Option<Count> {
    let count = f.optional(cx, "count", reader::unsigned);
    let at_least = f.optional(cx, "at_least", reader::unsigned);
    let at_most = f.optional(cx, "at_most", reader::unsigned);
    if f.has("count") && (f.has("at_least") || f.has("at_most")) {
        let origin = f.key_origin("at_least").or(f.key_origin("at_most")).unwrap_or(f.origin());
        cx.error(origin, "`count` is exact, expected no `at_least` or `at_most` with it");
        return None;
    }
    if let Some(count) = count {
        return Some(Count::Exactly(count));
    }
    if !f.has("count") && !f.has("at_least") && !f.has("at_most") {
        cx.error(f.origin(), "missing count, expected `count`, `at_least` or `at_most`");
        return None;
    }
    if let (Some(min), Some(max)) = (at_least, at_most) {
        if min > max {
            let origin = f.key_origin("at_most").unwrap_or(f.origin());
            cx.error(origin, format!("`at_most` is {max}, below `at_least` ({min})"));
            return None;
        }
    }
    if at_least.is_none() && at_most.is_none() {
        return None;
    }
    Some(Count::Within { at_least, at_most })
}
