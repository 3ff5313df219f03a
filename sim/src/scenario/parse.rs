//! Stage one of loading: the YAML tree into the typed [`Scenario`], checking
//! each value on its own (type, syntax, range) and everything the world
//! declares against itself. Cross-references that depend on the timeline are
//! stage two ([`super::check`]).

use std::collections::BTreeMap;
use std::path::Path;

use engine::time::{Span, Timestamp};

use super::error::Origin;
use super::expect::parse_expectations;
use super::model::{
    Chaos, ProvisionerOverride, Provisioners, Scenario, Settings, World, SETTLE_DEFAULT, START_DEFAULT,
};
use super::reader::{self, Cx, Fields};
use super::timeline::parse_timeline;
use super::world::parse_world;
use super::yaml::{shorten, Node, NodeKind};

/// Where the top-level fields were written (stage two blames them).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TopOrigins {
    pub root: Origin,
    pub settle: Option<Origin>,
}

/// Stage one. `None` only when the document is not a mapping at all.
pub(crate) fn parse_scenario(cx: &mut Cx, root: &Node) -> Option<(Scenario, TopOrigins)> {
    if !matches!(root.kind, NodeKind::Map(_)) {
        cx.error(
            root.origin,
            format!("expected a scenario (a mapping with `name` and `run_for`), found {}", root.describe()),
        );
        return None;
    }
    let mut f = Fields::open(cx, root, "", "scenario")?;
    let origins = TopOrigins { root: root.origin, settle: f.key_origin("settle") };
    let name = f.required(cx, "name", reader::name);
    if let Some(name) = &name {
        let stem = Path::new(cx.file).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        if name.value != stem {
            cx.error(
                name.origin,
                format!("scenario name `{}` differs from the file name, expected `{stem}`", shorten(&name.value)),
            );
        }
    }
    let description = f.optional(cx, "description", reader::text);
    let seed = f.optional(cx, "seed", reader::unsigned).unwrap_or(0);
    let start = f.optional(cx, "start", timestamp).unwrap_or(START_DEFAULT);
    cx.start = start;
    let run_for = f.required(cx, "run_for", reader::duration);
    let settle = f.optional(cx, "settle", reader::duration).unwrap_or(SETTLE_DEFAULT);
    let replicas = f.optional(cx, "replicas", replica_count).unwrap_or(1);
    let settings = match f.take("settings") {
        Some(node) => parse_settings(cx, node),
        None => Settings::default(),
    };
    let world = match f.take("world") {
        Some(node) => parse_world(cx, node),
        None => World::default(),
    };
    let provisioners = match f.take("provisioners") {
        Some(node) => parse_provisioners(cx, node),
        None => Provisioners::default(),
    };
    let chaos = match f.take("chaos") {
        Some(node) => parse_chaos(cx, node),
        None => Chaos::default(),
    };
    let bounds = Bounds { run_for, settle, replicas, db_pool_size: settings.db_pool_size };
    let timeline = match f.take("timeline") {
        Some(node) => parse_timeline(cx, node, &bounds),
        None => Vec::new(),
    };
    let expect = match f.take("expect") {
        Some(node) => parse_expectations(cx, node, &bounds),
        None => Vec::new(),
    };
    f.finish(cx);
    let scenario = Scenario {
        file: cx.file.to_owned(),
        name: name.unwrap_or_else(|| super::error::Spanned::new(String::new(), root.origin)),
        description,
        seed,
        start,
        run_for: run_for.unwrap_or(Span::ZERO),
        settle,
        replicas,
        settings,
        world,
        provisioners,
        chaos,
        timeline,
        expect,
    };
    Some((scenario, origins))
}

/// What the timeline and expectations are checked against in stage one
/// (`None`: that value was bad, its own error is reported).
pub(crate) struct Bounds {
    pub run_for: Option<Span>,
    pub settle: Span,
    pub replicas: u32,
    pub db_pool_size: u32,
}

fn timestamp(cx: &mut Cx, node: &Node, key: &str) -> Option<Timestamp> {
    let text = reader::scalar(cx, node, key, "an RFC 3339 timestamp")?;
    let parsed = Timestamp::parse_rfc3339(text);
    if parsed.is_none() {
        cx.error(
            node.origin,
            format!(
                "invalid `{key}`: expected an RFC 3339 timestamp like `2026-01-05T09:00:00Z`, found `{}`",
                shorten(text)
            ),
        );
    }
    parsed
}

fn replica_count(cx: &mut Cx, node: &Node, key: &str) -> Option<u32> {
    let count = reader::count32(cx, node, key)?;
    if count == 0 {
        cx.error(node.origin, format!("`{key}` is 0, expected at least 1"));
        return None;
    }
    Some(count)
}

/// A duration within `[min, max]`.
fn interval_within(cx: &mut Cx, node: &Node, key: &str, min: Span, max: Span) -> Option<Span> {
    let span = reader::duration(cx, node, key)?;
    if span < min || span > max {
        cx.error(node.origin, format!("`{key}` is {span}, expected {min}..{max}"));
        return None;
    }
    Some(span)
}

fn parse_settings(cx: &mut Cx, node: &Node) -> Settings {
    let mut s = Settings::default();
    let Some(mut f) = Fields::open(cx, node, "settings", "settings") else { return s };
    let hour = Span::from_hours(1);
    let second = Span::from_secs(1);
    macro_rules! set {
        ($field:ident, $read:expr) => {
            if let Some(value) = f.optional(cx, stringify!($field), $read) {
                s.$field = value;
            }
        };
    }
    set!(lifecycle_interval, |cx: &mut Cx, n: &Node, k: &str| interval_within(cx, n, k, second, hour));
    set!(reconcile_interval, |cx: &mut Cx, n: &Node, k: &str| interval_within(cx, n, k, second, hour));
    set!(reconcile_paused, reader::boolean);
    set!(prebuild_failure_hard_limit, reader::count32);
    set!(prebuild_backoff, reader::duration);
    set!(prebuild_backoff_lookback, reader::duration);
    set!(usage_flush_interval, reader::positive_duration);
    set!(chat_heartbeat_interval, reader::positive_duration);
    set!(chat_stale_after, reader::positive_duration);
    set!(chat_acquire_interval, reader::positive_duration);
    set!(chat_acquire_batch, |cx: &mut Cx, n: &Node, k: &str| {
        let value = reader::count32(cx, n, k)?;
        if value == 0 {
            cx.error(n.origin, format!("`{k}` is 0, expected at least 1"));
            return None;
        }
        Some(value)
    });
    set!(chat_step_max, reader::positive_duration);
    set!(chat_archive_after, |cx: &mut Cx, n: &Node, k: &str| {
        let span = reader::duration(cx, n, k)?;
        if span.as_micros() % Span::from_days(1).as_micros() != 0 {
            cx.error(n.origin, format!("`{k}` is {span}, expected whole days (`0` = off)"));
            return None;
        }
        Some(span)
    });
    set!(chat_retention, reader::duration);
    set!(notification_poll_interval, reader::positive_duration);
    set!(notification_retry, reader::duration);
    set!(shutdown_timeout, reader::duration);
    set!(db_pool_size, |cx: &mut Cx, n: &Node, k: &str| {
        let value = reader::count32(cx, n, k)?;
        if value < engine::limits::DB_POOL_SIZE_MIN {
            cx.error(n.origin, format!("`{k}` is {value}, expected at least {}", engine::limits::DB_POOL_SIZE_MIN));
            return None;
        }
        Some(value)
    });
    set!(db_acquire_timeout, reader::duration);
    set!(provisioner_stale_after, reader::duration);
    set!(db_latency, reader::range);
    set!(chat_turn_duration, reader::range);
    set!(agent_ready_after, reader::duration);
    if s.chat_stale_after < s.chat_heartbeat_interval.saturating_mul(2) {
        let origin = f.key_origin("chat_stale_after").or(f.key_origin("chat_heartbeat_interval")).unwrap_or(f.origin());
        cx.error(
            origin,
            format!(
                "`chat_stale_after` is {}, expected at least twice `chat_heartbeat_interval` ({})",
                s.chat_stale_after,
                s.chat_heartbeat_interval.saturating_mul(2)
            ),
        );
    }
    f.finish(cx);
    s
}

fn parse_provisioners(cx: &mut Cx, node: &Node) -> Provisioners {
    let mut p = Provisioners::default();
    let Some(mut f) = Fields::open(cx, node, "provisioners", "provisioners") else { return p };
    if let Some(count) = f.optional(cx, "count", reader::count32) {
        p.count = count;
    }
    if let Some(range) = f.optional(cx, "build_duration", reader::range) {
        p.build_duration = range;
    }
    if let Some(rate) = f.optional(cx, "failure_rate", reader::rate) {
        p.failure_rate = rate;
    }
    if let Some(node) = f.take("templates") {
        p.templates = parse_overrides(cx, node);
    }
    f.finish(cx);
    p
}

fn parse_overrides(cx: &mut Cx, node: &Node) -> BTreeMap<String, ProvisionerOverride> {
    let mut out = BTreeMap::new();
    let NodeKind::Map(entries) = &node.kind else {
        if !node.is_null() {
            cx.error(
                node.origin,
                format!("invalid `templates`: expected a mapping of template names, found {}", node.describe()),
            );
        }
        return out;
    };
    for (key, value) in entries {
        let Some(name) = key.scalar() else { continue };
        let Some(mut f) = Fields::open(cx, value, "provisioners.templates.<template>", name) else { continue };
        let failure_rate = f.optional(cx, "failure_rate", reader::rate);
        let build_duration = f.optional(cx, "build_duration", reader::range);
        f.finish(cx);
        out.insert(name.to_owned(), ProvisionerOverride { origin: key.origin, failure_rate, build_duration });
    }
    out
}

fn parse_chaos(cx: &mut Cx, node: &Node) -> Chaos {
    let mut c = Chaos::default();
    let Some(mut f) = Fields::open(cx, node, "chaos", "chaos") else { return c };
    macro_rules! set {
        ($field:ident, $read:expr) => {
            if let Some(value) = f.optional(cx, stringify!($field), $read) {
                c.$field = value;
            }
        };
    }
    set!(store_error_rate, reader::rate);
    set!(serialization_failure_rate, reader::rate);
    set!(commit_unknown_rate, reader::rate);
    set!(pubsub_drop_rate, reader::rate);
    set!(notification_failure_rate, reader::rate);
    set!(replica_crash_rate, reader::crash_rate);
    set!(replica_restart_after, reader::range);
    if let Some(value) = f.optional(cx, "store_latency", reader::range) {
        c.store_latency = Some(value);
    }
    if let Some(value) = f.optional(cx, "pubsub_delay", reader::range) {
        c.pubsub_delay = Some(value);
    }
    if let Some(value) = f.optional(cx, "clock_skew", reader::signed_range) {
        c.clock_skew = Some(value);
    }
    f.finish(cx);
    c
}
