//! Reading the YAML tree into typed values while collecting errors.
//!
//! [`Fields`] reads one mapping through the schema: every key the parser takes
//! must be a schema path (checked in debug builds), and `finish` rejects the
//! keys nobody took, suggesting the closest accepted one. The value readers
//! below turn a node into a typed value or record an error with the node's
//! position and return `None`, so parsing goes on and reports every mistake.

use engine::model::{Roles, WeekdaySet};
use engine::time::{Span, Timestamp};

use super::error::{LoadError, Origin, Spanned};
use super::model::{Checkable, DurationRange, Named, Parameters, Point, PointExpect, Role, Window};
use super::schema;
use super::values;
use super::yaml::{shorten, Node, NodeKind};

/// The parsing context: the file (for messages), `start` (for RFC 3339
/// points) and the errors found so far.
pub(crate) struct Cx<'f> {
    pub file: &'f str,
    pub start: Timestamp,
    pub errors: Vec<LoadError>,
}

impl<'f> Cx<'f> {
    pub fn new(file: &'f str) -> Self {
        Cx { file, start: super::model::START_DEFAULT, errors: Vec::new() }
    }

    pub fn error(&mut self, origin: Origin, message: impl Into<String>) {
        self.errors.push(LoadError::at(self.file, origin, message));
    }
}

struct Entry<'n> {
    key: &'n str,
    key_origin: Origin,
    value: &'n Node,
    taken: bool,
}

/// One mapping being read; its schema path names the accepted keys.
pub(crate) struct Fields<'n> {
    path: String,
    origin: Origin,
    entries: Vec<Entry<'n>>,
}

impl<'n> Fields<'n> {
    /// Reads `node` as a mapping at schema path `path`. No content at all is
    /// an empty mapping; anything else is an error (then `None`).
    pub fn open(cx: &mut Cx, node: &'n Node, path: impl Into<String>, what: &str) -> Option<Fields<'n>> {
        let path = path.into();
        match &node.kind {
            NodeKind::Map(entries) => Some(Fields {
                path,
                origin: node.origin,
                entries: entries
                    .iter()
                    .map(|(k, v)| Entry { key: k.scalar().unwrap_or(""), key_origin: k.origin, value: v, taken: false })
                    .collect(),
            }),
            _ if node.is_null() => Some(Fields { path, origin: node.origin, entries: Vec::new() }),
            _ => {
                cx.error(node.origin, format!("invalid `{what}`: expected a mapping, found {}", node.describe()));
                None
            }
        }
    }

    pub fn origin(&self) -> Origin {
        self.origin
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    fn full_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The value of `key`, marking it read. `None` when absent.
    pub fn take(&mut self, key: &str) -> Option<&'n Node> {
        debug_assert!(
            {
                let full = self.full_path(key);
                schema::accepts(&full) || schema::accepts(&format!("{full}[]"))
            },
            "parser reads `{}` which is not in the schema",
            self.full_path(key)
        );
        let entry = self.entries.iter_mut().find(|e| e.key == key)?;
        entry.taken = true;
        Some(entry.value)
    }

    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|e| e.key == key)
    }

    pub fn key_origin(&self, key: &str) -> Option<Origin> {
        self.entries.iter().find(|e| e.key == key).map(|e| e.key_origin)
    }

    /// The keys present, in file order, with their positions.
    pub fn keys(&self) -> Vec<(&'n str, Origin)> {
        self.entries.iter().map(|e| (e.key, e.key_origin)).collect()
    }

    /// Marks `key` read without using it (its error was reported otherwise).
    pub fn skip(&mut self, key: &str) {
        if let Some(entry) = self.entries.iter_mut().find(|e| e.key == key) {
            entry.taken = true;
        }
    }

    /// `key` must be present: else "missing field" at the mapping.
    pub fn required<T>(
        &mut self,
        cx: &mut Cx,
        key: &str,
        read: impl FnOnce(&mut Cx, &'n Node, &str) -> Option<T>,
    ) -> Option<T> {
        match self.take(key) {
            Some(node) => read(cx, node, key),
            None => {
                cx.error(self.origin, format!("missing field `{key}`{}", self.context()));
                None
            }
        }
    }

    /// `key` if present (`None` when absent or bad; a bad one is reported).
    pub fn optional<T>(
        &mut self,
        cx: &mut Cx,
        key: &str,
        read: impl FnOnce(&mut Cx, &'n Node, &str) -> Option<T>,
    ) -> Option<T> {
        let node = self.take(key)?;
        read(cx, node, key)
    }

    /// " in `latest_build`" for nested mappings, for messages.
    fn context(&self) -> String {
        let last = self.path.rsplit('.').next().unwrap_or("");
        let last = last.strip_suffix("[]").unwrap_or(last);
        if last.is_empty() {
            String::new()
        } else {
            format!(" in `{last}`")
        }
    }

    /// Rejects every key not read: unknown ones with a suggestion, accepted
    /// ones that do not apply here as such.
    pub fn finish(self, cx: &mut Cx) {
        let accepted = schema::children(&self.path);
        for entry in self.entries.iter().filter(|e| !e.taken) {
            if accepted.contains(&entry.key) {
                cx.error(entry.key_origin, format!("field `{}` does not apply here", entry.key));
            } else if let Some(hint) = misplaced(&self.path, entry.key) {
                cx.error(entry.key_origin, hint);
            } else {
                cx.error(
                    entry.key_origin,
                    format!(
                        "unknown field `{}`, {}",
                        shorten(entry.key),
                        schema::expected_one_of(entry.key, &accepted)
                    ),
                );
            }
        }
    }
}

/// A message for a field written one level too high.
fn misplaced(path: &str, key: &str) -> Option<String> {
    match (path, key) {
        ("expect[]", "at") => {
            Some("field `at` goes inside the expectation's kind, like `builds: {at: 2h, count: 1}`".to_owned())
        }
        ("timeline[]", "for") => {
            Some("field `for` goes inside the fault, like `store_fault: {kind: error, for: 5m}`".to_owned())
        }
        _ => None,
    }
}

/// The node's text, or an error naming what was expected.
pub(crate) fn scalar<'n>(cx: &mut Cx, node: &'n Node, key: &str, expected: &str) -> Option<&'n str> {
    match &node.kind {
        NodeKind::Scalar { .. } if node.is_null() => {
            cx.error(node.origin, format!("invalid `{key}`: expected {expected}, found nothing"));
            None
        }
        NodeKind::Scalar { text, .. } => Some(text),
        NodeKind::Map(entries) if entries.iter().any(|(k, _)| k.scalar() == Some("unchecked")) => {
            cx.error(
                node.origin,
                format!("invalid `{key}`: `{{unchecked: VALUE}}` is not accepted here, expected {expected}"),
            );
            None
        }
        _ => {
            cx.error(node.origin, format!("invalid `{key}`: expected {expected}, found {}", node.describe()));
            None
        }
    }
}

/// Runs a text parser on a scalar; its message is prefixed with the field.
fn parsed<T>(
    cx: &mut Cx,
    node: &Node,
    key: &str,
    expected: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    let text = scalar(cx, node, key, expected)?;
    match parse(text) {
        Ok(value) => Some(value),
        Err(message) => {
            cx.error(node.origin, format!("invalid `{key}`: {message}"));
            None
        }
    }
}

/// A non-empty name.
pub(crate) fn name(cx: &mut Cx, node: &Node, key: &str) -> Option<Spanned<String>> {
    let text = scalar(cx, node, key, "a name")?;
    if text.trim().is_empty() {
        cx.error(node.origin, format!("invalid `{key}`: expected a name, found an empty string"));
        return None;
    }
    Some(Spanned::new(text.to_owned(), node.origin))
}

/// Any text.
pub(crate) fn text(cx: &mut Cx, node: &Node, key: &str) -> Option<String> {
    scalar(cx, node, key, "text").map(str::to_owned)
}

pub(crate) fn duration(cx: &mut Cx, node: &Node, key: &str) -> Option<Span> {
    parsed(cx, node, key, "a duration", values::parse_duration)
}

pub(crate) fn signed_duration(cx: &mut Cx, node: &Node, key: &str) -> Option<Span> {
    parsed(cx, node, key, "a signed duration", values::parse_signed_duration)
}

pub(crate) fn point(cx: &mut Cx, node: &Node, key: &str) -> Option<Point> {
    let start = cx.start;
    parsed(cx, node, key, "a point in time", |t| values::parse_point(t, start))
}

/// A point, or `none` (`Some(None)`).
pub(crate) fn point_or_none(cx: &mut Cx, node: &Node, key: &str) -> Option<Option<Point>> {
    if node.scalar() == Some("none") {
        return Some(None);
    }
    point(cx, node, key).map(Some)
}

pub(crate) fn range(cx: &mut Cx, node: &Node, key: &str) -> Option<DurationRange> {
    parsed(cx, node, key, "a duration or a range", |t| values::parse_range(t, values::parse_duration, "a duration"))
}

pub(crate) fn signed_range(cx: &mut Cx, node: &Node, key: &str) -> Option<DurationRange> {
    parsed(cx, node, key, "a signed duration or a range", |t| {
        values::parse_range(t, values::parse_signed_duration, "a signed duration")
    })
}

pub(crate) fn rate(cx: &mut Cx, node: &Node, key: &str) -> Option<f64> {
    parsed(cx, node, key, "a rate between 0 and 1", values::parse_rate)
}

pub(crate) fn crash_rate(cx: &mut Cx, node: &Node, key: &str) -> Option<values::CrashRate> {
    parsed(cx, node, key, "a rate like `0.5/h`", values::parse_crash_rate)
}

pub(crate) fn boolean(cx: &mut Cx, node: &Node, key: &str) -> Option<bool> {
    parsed(cx, node, key, "`true` or `false`", |t| {
        values::parse_bool(t).ok_or_else(|| format!("expected `true` or `false`, found `{}`", shorten(t)))
    })
}

pub(crate) fn unsigned(cx: &mut Cx, node: &Node, key: &str) -> Option<u64> {
    parsed(cx, node, key, "a whole number", |t| {
        values::parse_unsigned(t)
            .ok_or_else(|| format!("expected a whole number of at least 0, found `{}`", shorten(t)))
    })
}

/// A whole number that fits `u32`.
pub(crate) fn count32(cx: &mut Cx, node: &Node, key: &str) -> Option<u32> {
    let value = unsigned(cx, node, key)?;
    match u32::try_from(value) {
        Ok(v) => Some(v),
        Err(_) => {
            cx.error(node.origin, format!("`{key}` is {value}, expected at most {}", u32::MAX));
            None
        }
    }
}

/// One of an enum's names.
pub(crate) fn named<T: Named>(cx: &mut Cx, node: &Node, key: &str) -> Option<T> {
    let text = scalar(cx, node, key, "a name")?;
    match T::from_name(text) {
        Some(value) => Some(value),
        None => {
            cx.error(
                node.origin,
                format!("unknown {key} `{}`, {}", shorten(text), schema::expected_one_of(text, T::NAMES)),
            );
            None
        }
    }
}

/// A list; no content is an empty list.
pub(crate) fn list<'n>(cx: &mut Cx, node: &'n Node, key: &str) -> Vec<&'n Node> {
    match &node.kind {
        NodeKind::Seq(items) => items.iter().collect(),
        _ if node.is_null() => Vec::new(),
        _ => {
            cx.error(node.origin, format!("invalid `{key}`: expected a list, found {}", node.describe()));
            Vec::new()
        }
    }
}

/// `[mon, tue, ...]`.
pub(crate) fn weekdays(cx: &mut Cx, node: &Node, key: &str) -> Option<WeekdaySet> {
    let mut set = WeekdaySet::EMPTY;
    let mut ok = matches!(node.kind, NodeKind::Seq(_)) || node.is_null();
    for item in list(cx, node, key) {
        match named::<engine::model::Weekday>(cx, item, "day") {
            Some(day) => set.insert(day),
            None => ok = false,
        }
    }
    ok.then_some(set)
}

/// `[admin, template_admin]`.
pub(crate) fn roles(cx: &mut Cx, node: &Node, key: &str) -> Option<Roles> {
    let mut roles = Roles::default();
    let mut ok = matches!(node.kind, NodeKind::Seq(_)) || node.is_null();
    for item in list(cx, node, key) {
        match named::<Role>(cx, item, "role") {
            Some(Role::Admin) => roles.admin = true,
            Some(Role::TemplateAdmin) => roles.template_admin = true,
            None => ok = false,
        }
    }
    ok.then_some(roles)
}

/// `{name: value}`, values as written.
pub(crate) fn parameters(cx: &mut Cx, node: &Node, key: &str) -> Option<Parameters> {
    let mut out = Parameters::new();
    match &node.kind {
        NodeKind::Map(entries) => {
            let mut ok = true;
            for (k, v) in entries {
                let Some(name) = k.scalar() else { continue };
                match &v.kind {
                    NodeKind::Scalar { text, .. } if !v.is_null() => {
                        out.insert(name.to_owned(), text.clone());
                    }
                    _ => {
                        cx.error(
                            v.origin,
                            format!("invalid parameter `{}`: expected a value, found {}", shorten(name), v.describe()),
                        );
                        ok = false;
                    }
                }
            }
            ok.then_some(out)
        }
        _ if node.is_null() => Some(out),
        _ => {
            cx.error(
                node.origin,
                format!("invalid `{key}`: expected a mapping of parameter values, found {}", node.describe()),
            );
            None
        }
    }
}

/// `[from, to]`, inclusive, `from <= to`.
pub(crate) fn window(cx: &mut Cx, node: &Node, key: &str) -> Option<Window> {
    let NodeKind::Seq(items) = &node.kind else {
        cx.error(node.origin, format!("invalid `{key}`: expected a window `[from, to]`, found {}", node.describe()));
        return None;
    };
    let [from, to] = &items[..] else {
        cx.error(
            node.origin,
            format!("invalid `{key}`: expected a window `[from, to]` of two points, found {} items", items.len()),
        );
        return None;
    };
    let from_point = point(cx, from, key);
    let to_point = point(cx, to, key);
    let (from_point, to_point) = (from_point?, to_point?);
    if from_point > to_point {
        cx.error(
            node.origin,
            format!("invalid `{key}`: window `[{from_point}, {to_point}]` is empty, expected `from` at most `to`"),
        );
        return None;
    }
    Some(Window { from: from_point, to: to_point })
}

/// A point, `none`, or a window.
pub(crate) fn point_expect(cx: &mut Cx, node: &Node, key: &str) -> Option<PointExpect> {
    match &node.kind {
        NodeKind::Seq(_) => window(cx, node, key).map(PointExpect::Within),
        _ if node.scalar() == Some("none") => Some(PointExpect::None),
        _ => point(cx, node, key).map(PointExpect::At),
    }
}

/// `{unchecked: VALUE}`: `Ok(Some(VALUE))`; another node: `Ok(None)`; a
/// mapping with `unchecked` and more: reported, `Err`.
pub(crate) fn unchecked_inner<'n>(cx: &mut Cx, node: &'n Node) -> Result<Option<&'n Node>, ()> {
    let NodeKind::Map(entries) = &node.kind else { return Ok(None) };
    let Some((_, inner)) = entries.iter().find(|(k, _)| k.scalar() == Some("unchecked")) else { return Ok(None) };
    if entries.len() != 1 {
        cx.error(node.origin, "`{unchecked: VALUE}` takes nothing else, expected one field `unchecked`");
        return Err(());
    }
    Ok(Some(inner))
}

/// A duration, checked by `check` unless written `{unchecked: ...}` (then any
/// signed duration is stored as is).
pub(crate) fn checkable_duration(
    cx: &mut Cx,
    node: &Node,
    key: &str,
    check: impl FnOnce(Span) -> Result<(), String>,
) -> Option<Checkable<Span>> {
    match unchecked_inner(cx, node).ok()? {
        Some(inner) => signed_duration(cx, inner, key).map(Checkable::unchecked),
        None => {
            let span = duration(cx, node, key)?;
            match check(span) {
                Ok(()) => Some(Checkable::checked(span)),
                Err(message) => {
                    cx.error(node.origin, message);
                    None
                }
            }
        }
    }
}

/// Text checked by `check` unless written `{unchecked: ...}`.
pub(crate) fn checkable_text(
    cx: &mut Cx,
    node: &Node,
    key: &str,
    check: impl FnOnce(&str) -> Result<(), String>,
) -> Option<Checkable<String>> {
    match unchecked_inner(cx, node).ok()? {
        Some(inner) => match &inner.kind {
            NodeKind::Scalar { text, .. } => Some(Checkable::unchecked(text.clone())),
            _ => {
                cx.error(inner.origin, format!("invalid `{key}`: expected text, found {}", inner.describe()));
                None
            }
        },
        None => {
            let text = scalar(cx, node, key, "text")?;
            match check(text) {
                Ok(()) => Some(Checkable::checked(text.to_owned())),
                Err(message) => {
                    cx.error(node.origin, message);
                    None
                }
            }
        }
    }
}

/// A duration that must be at least 0 (every duration is) and, when
/// `positive`, above 0.
pub(crate) fn positive_duration(cx: &mut Cx, node: &Node, key: &str) -> Option<Span> {
    let span = duration(cx, node, key)?;
    if span.is_zero() {
        cx.error(node.origin, format!("`{key}` is 0, expected a duration above 0"));
        return None;
    }
    Some(span)
}

/// "unknown user `bob`, expected `bo`" / "..., expected one of `a`, `b`" /
/// "unknown user `bob`: none is declared".
pub(crate) fn unknown_name(kind: &str, name: &str, known: &[&str]) -> String {
    unknown_name_in(kind, name, "", known)
}

/// Like [`unknown_name`], with where it was looked up: "unknown version `v3`
/// of template `dev`, expected one of `v1`, `v2`".
pub(crate) fn unknown_name_in(kind: &str, name: &str, scope: &str, known: &[&str]) -> String {
    let scope = if scope.is_empty() { String::new() } else { format!(" {scope}") };
    if known.is_empty() {
        format!("unknown {kind} `{}`{scope}: none is declared", shorten(name))
    } else {
        format!("unknown {kind} `{}`{scope}, {}", shorten(name), schema::expected_one_of(name, known))
    }
}
