//! The trace of a run: every decision and effect with its true simulated time
//! and source, rendered as text (snapshots), JSON lines (tools) and an HTML
//! timeline (people), and hashed.
//!
//! Events hold ids and structured values; names are resolved when rendering,
//! from the registry the run kept (a workspace's final name). `trace_hash` is
//! over the rendered text; `order_hash` over each event's *shape* (source,
//! kind and subject, no instants or drawn values), so two seeds that
//! interleave alike hash alike.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use engine::hash::fnv1_64;
use engine::ids::{UserId, WorkspaceId};
use engine::time::Span;
use serde::Serialize;

/// Who did something.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "index")]
pub enum Source {
    /// The simulator itself: world load, timeline, faults, checks.
    World,
    Replica(u32),
    Provisioner(u32),
    /// The notification sink.
    Sink,
}

impl Source {
    pub fn label(self) -> String {
        match self {
            Source::World => "world".to_owned(),
            Source::Replica(i) => format!("r{i}"),
            Source::Provisioner(i) => format!("p{i}"),
            Source::Sink => "sink".to_owned(),
        }
    }
}

/// One line of the trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TraceEvent {
    /// True simulated time since `start`.
    pub at: Span,
    pub source: Source,
    /// A short category: `tick`, `build`, `notify`, `deliver`, `fault`, …
    pub kind: &'static str,
    /// The objects it concerns, as names (resolved at render time).
    pub subject: Vec<Subject>,
    /// Values, drawn or not (instants, counts, reasons).
    pub detail: String,
    /// Values that do not depend on the seed (reasons, outcomes): part of the shape.
    pub stable: String,
}

/// An object an event concerns.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "id")]
pub enum Subject {
    Workspace(WorkspaceId),
    User(UserId),
    Name(String),
}

/// Names of the objects ids refer to.
#[derive(Clone, Debug, Default)]
pub struct Names {
    pub workspaces: BTreeMap<WorkspaceId, String>,
    pub users: BTreeMap<UserId, String>,
}

impl Names {
    pub fn subject(&self, subject: &Subject) -> String {
        match subject {
            Subject::Workspace(id) => self.workspaces.get(id).cloned().unwrap_or_else(|| format!("ws:{id}")),
            Subject::User(id) => self.users.get(id).cloned().unwrap_or_else(|| format!("user:{id}")),
            Subject::Name(name) => name.clone(),
        }
    }
}

/// Formats an offset from `start` as `+1h02m03.400s`, fixed width friendly.
pub fn format_offset(at: Span) -> String {
    let negative = at.is_negative();
    let micros = at.as_micros().unsigned_abs();
    let total_ms = micros / 1_000;
    let ms = total_ms % 1_000;
    let secs = (total_ms / 1_000) % 60;
    let mins = (total_ms / 60_000) % 60;
    let hours = total_ms / 3_600_000;
    let sign = if negative { "-" } else { "+" };
    format!("{sign}{hours}h{mins:02}m{secs:02}.{ms:03}s")
}

/// The recorded events of one run.
#[derive(Debug, Default, Clone)]
pub struct Trace {
    pub events: Vec<TraceEvent>,
}

impl Trace {
    pub fn push(&mut self, event: TraceEvent) {
        self.events.push(event);
    }

    fn subjects(&self, event: &TraceEvent, names: &Names) -> String {
        event.subject.iter().map(|s| names.subject(s)).collect::<Vec<_>>().join(" ")
    }

    /// One line per event.
    pub fn render_text(&self, names: &Names) -> String {
        let mut out = String::new();
        for event in &self.events {
            let _ = writeln!(out, "{}", self.render_line(event, names));
        }
        out
    }

    pub fn render_line(&self, event: &TraceEvent, names: &Names) -> String {
        let subjects = self.subjects(event, names);
        let mut line = format!("{} {:<5} {:<10}", format_offset(event.at), event.source.label(), event.kind);
        for part in [subjects.as_str(), event.stable.as_str(), event.detail.as_str()] {
            if !part.is_empty() {
                line.push(' ');
                line.push_str(part);
            }
        }
        line.trim_end().to_owned()
    }

    /// JSON lines: one object per event, names resolved.
    pub fn render_jsonl(&self, names: &Names) -> String {
        let mut out = String::new();
        for event in &self.events {
            let value = serde_json::json!({
                "at_us": event.at.as_micros(),
                "at": format_offset(event.at),
                "source": event.source.label(),
                "kind": event.kind,
                "subject": event.subject.iter().map(|s| names.subject(s)).collect::<Vec<_>>(),
                "stable": event.stable,
                "detail": event.detail,
            });
            let _ = writeln!(out, "{value}");
        }
        out
    }

    /// The hash of the text trace.
    pub fn trace_hash(&self, names: &Names) -> u64 {
        fnv1_64(self.render_text(names).as_bytes())
    }

    /// The hash of the events' shapes, in order: source, kind, subjects and
    /// stable values; no instants, no drawn values.
    pub fn order_hash(&self, names: &Names) -> u64 {
        let mut shapes = String::new();
        for event in &self.events {
            let _ = writeln!(
                shapes,
                "{} {} {} {}",
                event.source.label(),
                event.kind,
                self.subjects(event, names),
                event.stable
            );
        }
        fnv1_64(shapes.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(at: Span, source: Source, kind: &'static str, stable: &str, detail: &str) -> TraceEvent {
        TraceEvent {
            at,
            source,
            kind,
            subject: vec![Subject::Name("w1".into())],
            detail: detail.into(),
            stable: stable.into(),
        }
    }

    #[test]
    fn offsets_render_fixed() {
        assert_eq!(format_offset(Span::from_millis(3_723_400)), "+1h02m03.400s");
        assert_eq!(format_offset(Span::ZERO), "+0h00m00.000s");
        assert_eq!(format_offset(-Span::from_secs(1)), "-0h00m01.000s");
    }

    #[test]
    fn order_hash_ignores_times_and_details_trace_hash_does_not() {
        let names = Names::default();
        let a = Trace { events: vec![event(Span::from_secs(1), Source::Replica(0), "build", "autostart", "at 09:00")] };
        let b = Trace { events: vec![event(Span::from_secs(2), Source::Replica(0), "build", "autostart", "at 09:01")] };
        let c = Trace { events: vec![event(Span::from_secs(1), Source::Replica(1), "build", "autostart", "at 09:00")] };
        assert_eq!(a.order_hash(&names), b.order_hash(&names));
        assert_ne!(a.trace_hash(&names), b.trace_hash(&names));
        assert_ne!(a.order_hash(&names), c.order_hash(&names));
        assert_eq!(a.render_text(&names), "+0h00m01.000s r0    build      w1 autostart at 09:00\n");
    }
}
