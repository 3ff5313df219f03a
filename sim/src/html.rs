//! The HTML timeline of a trace: one self-contained page (inline CSS and
//! JavaScript, nothing fetched) that a person reads to see what happened when.
//!
//! A time axis runs across the top; below it one lane per replica
//! ([`Source::Replica`]), one per workspace (every event whose subjects name
//! it), then the provisioners, the notification sink and the world (the
//! simulator itself). Each event is a mark in its source's lane and in the lane
//! of every workspace it concerns, coloured by category: builds, notifications,
//! faults (including crashes, restarts and shutdowns) and violations, which are
//! drawn large and red with a rule across every lane and listed in a banner.
//! Hovering a mark shows its full trace line (also as the native tooltip);
//! clicking it selects the line in the full trace listed below the lanes. All
//! text is escaped. The page works without its script; the script adds zoom,
//! a filter, selection, and marks the body `data-ready="1"` once it has run
//! (the browser test reads that).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use engine::time::Span;

use crate::trace::{format_offset, Names, Source, Subject, Trace, TraceEvent};

/// How an event is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    Build,
    Notify,
    Fault,
    Violation,
    Other,
}

impl Category {
    /// The category of a trace event kind.
    pub fn of(kind: &str) -> Category {
        match kind {
            "build" => Category::Build,
            "notify" | "delivered" | "deliver" => Category::Notify,
            "fault" | "crash" | "restart" | "shutdown" => Category::Fault,
            "violation" => Category::Violation,
            _ => Category::Other,
        }
    }

    /// The CSS class suffix.
    pub fn class(self) -> &'static str {
        match self {
            Category::Build => "build",
            Category::Notify => "notify",
            Category::Fault => "fault",
            Category::Violation => "violation",
            Category::Other => "other",
        }
    }
}

/// One horizontal lane of the timeline.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum LaneKey {
    Replica(u32),
    /// By first appearance in the trace, then name.
    Workspace(usize, String),
    Provisioner(u32),
    Sink,
    World,
}

impl LaneKey {
    fn label(&self) -> String {
        match self {
            LaneKey::Replica(i) => format!("replica r{i}"),
            LaneKey::Workspace(_, name) => format!("workspace {name}"),
            LaneKey::Provisioner(i) => format!("provisioner p{i}"),
            LaneKey::Sink => "notification sink".to_owned(),
            LaneKey::World => "world".to_owned(),
        }
    }

    fn class(&self) -> &'static str {
        match self {
            LaneKey::Replica(_) => "replica",
            LaneKey::Workspace(..) => "workspace",
            LaneKey::Provisioner(_) => "provisioner",
            LaneKey::Sink => "sink",
            LaneKey::World => "world",
        }
    }

    fn of_source(source: Source) -> LaneKey {
        match source {
            Source::World => LaneKey::World,
            Source::Replica(i) => LaneKey::Replica(i),
            Source::Provisioner(i) => LaneKey::Provisioner(i),
            Source::Sink => LaneKey::Sink,
        }
    }
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A short offset for axis labels: `0`, `45s`, `1h30m`, `2d`, `1.5s`.
fn short_offset(micros: i64) -> String {
    if micros == 0 {
        return "0".to_owned();
    }
    let sign = if micros < 0 { "-" } else { "" };
    let micros = micros.unsigned_abs();
    if micros < 1_000_000 {
        return format!("{sign}{}ms", micros / 1_000);
    }
    if micros % 1_000_000 != 0 && micros < 60_000_000 {
        return format!("{sign}{:.1}s", micros as f64 / 1e6);
    }
    let mut secs = micros / 1_000_000;
    let mut out = String::from(sign);
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            let _ = write!(out, "{}{unit}", secs / size);
            secs %= size;
        }
    }
    out
}

/// Axis steps, microseconds: the smallest giving at most this many ticks is used.
const TICKS_MAX: i64 = 12;
const TICK_STEPS_US: &[i64] = &[
    1_000,
    10_000,
    100_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    15_000_000,
    30_000_000,
    60_000_000,
    120_000_000,
    300_000_000,
    600_000_000,
    900_000_000,
    1_800_000_000,
    3_600_000_000,
    7_200_000_000,
    10_800_000_000,
    21_600_000_000,
    43_200_000_000,
    86_400_000_000,
    172_800_000_000,
    604_800_000_000,
];

/// The time range drawn, microseconds: from min(0, first event) to the last event.
fn time_range(trace: &Trace) -> (i64, i64) {
    let first = trace.events.iter().map(|e| e.at.as_micros()).min().unwrap_or(0).min(0);
    let last = trace.events.iter().map(|e| e.at.as_micros()).max().unwrap_or(0).max(first);
    let last = if last == first { first + 1_000_000 } else { last };
    (first, last)
}

fn position(at: Span, (first, last): (i64, i64)) -> f64 {
    (at.as_micros() - first) as f64 * 100.0 / (last - first) as f64
}

/// The workspaces an event concerns, by name: its workspace subjects, and
/// named subjects that are the name of a known workspace.
fn workspaces_of(event: &TraceEvent, names: &Names, known: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for subject in &event.subject {
        let name = match subject {
            Subject::Workspace(_) => names.subject(subject),
            Subject::Name(name) if known.contains(&name.as_str()) => name.clone(),
            _ => continue,
        };
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// Renders a self-contained HTML page for a trace.
pub fn render(trace: &Trace, names: &Names, title: &str, replicas: u32) -> String {
    let range = time_range(trace);
    let known: Vec<&str> = names.workspaces.values().map(String::as_str).collect();

    // Lanes and the events in each (indexes into the trace).
    let mut lanes: BTreeMap<LaneKey, Vec<usize>> = BTreeMap::new();
    for i in 0..replicas {
        lanes.insert(LaneKey::Replica(i), Vec::new());
    }
    lanes.insert(LaneKey::Sink, Vec::new());
    lanes.insert(LaneKey::World, Vec::new());
    let mut workspace_order: BTreeMap<String, usize> = BTreeMap::new();
    let mut lines = Vec::with_capacity(trace.events.len());
    for (i, event) in trace.events.iter().enumerate() {
        lines.push(trace.render_line(event, names));
        lanes.entry(LaneKey::of_source(event.source)).or_default().push(i);
        for name in workspaces_of(event, names, &known) {
            let next = workspace_order.len();
            let order = *workspace_order.entry(name.clone()).or_insert(next);
            lanes.entry(LaneKey::Workspace(order, name)).or_default().push(i);
        }
    }
    let violations: Vec<usize> = trace
        .events
        .iter()
        .enumerate()
        .filter(|(_, e)| Category::of(e.kind) == Category::Violation)
        .map(|(i, _)| i)
        .collect();

    let mut out = String::with_capacity(4096 + trace.events.len() * 400);
    let title = escape(title);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n\
         <body data-lanes=\"{}\" data-events=\"{}\" data-violations=\"{}\">\n",
        lanes.len(),
        trace.events.len(),
        violations.len()
    );
    let _ = writeln!(out, "<header>\n<h1>{title}</h1>");
    let _ = writeln!(
        out,
        "<p class=\"stats\">{} events, {} lanes, from {} to {}; {} violation{}</p>",
        trace.events.len(),
        lanes.len(),
        escape(&format_offset(Span::from_micros(range.0))),
        escape(&format_offset(trace.events.iter().map(|e| e.at).max().unwrap_or(Span::ZERO))),
        violations.len(),
        if violations.len() == 1 { "" } else { "s" }
    );
    if !violations.is_empty() {
        let _ = writeln!(
            out,
            "<div class=\"banner\" role=\"alert\"><strong>{} invariant violation{}</strong><ul>",
            violations.len(),
            if violations.len() == 1 { "" } else { "s" }
        );
        for &i in &violations {
            let _ = writeln!(out, "<li><a href=\"#e{i}\" data-i=\"{i}\">{}</a></li>", escape(&lines[i]));
        }
        let _ = writeln!(out, "</ul></div>");
    }
    let _ = writeln!(
        out,
        "<div class=\"controls\"><label>zoom <input id=\"zoom\" type=\"range\" min=\"1\" max=\"40\" value=\"1\"></label> \
         <label>filter <input id=\"filter\" type=\"search\" placeholder=\"text in the trace line\"></label> \
         <span class=\"legend\"><i class=\"mark build\"></i>build <i class=\"mark notify\"></i>notification \
         <i class=\"mark fault\"></i>fault, crash, restart, shutdown <i class=\"mark violation\"></i>violation \
         <i class=\"mark other\"></i>other</span> <output id=\"status\"></output></div>\n</header>"
    );

    // The lanes.
    let _ = writeln!(out, "<main>\n<div class=\"scroll\"><div class=\"timeline\" id=\"timeline\">");
    let _ = write!(out, "<div class=\"axis\"><div class=\"label\">time</div><div class=\"track\">");
    let span = range.1 - range.0;
    let step = TICK_STEPS_US.iter().copied().find(|step| span / step <= TICKS_MAX).unwrap_or(604_800_000_000);
    let mut tick = range.0.div_euclid(step) * step;
    while tick <= range.1 {
        if tick >= range.0 {
            let left = position(Span::from_micros(tick), range);
            let _ =
                write!(out, "<span class=\"tick\" style=\"left:{left:.3}%\">{}</span>", escape(&short_offset(tick)));
        }
        tick += step;
    }
    let _ = writeln!(out, "</div></div>");
    for (lane, events) in &lanes {
        let label = escape(&lane.label());
        let _ = write!(
            out,
            "<div class=\"lane {}\" data-lane=\"{label}\"><div class=\"label\" title=\"{label}\">{label} <small>{}</small></div><div class=\"track\">",
            lane.class(),
            events.len()
        );
        for &i in &violations {
            let left = position(trace.events[i].at, range);
            let _ = write!(out, "<span class=\"rule\" style=\"left:{left:.3}%\"></span>");
        }
        for &i in events {
            let event = &trace.events[i];
            let category = Category::of(event.kind);
            let left = position(event.at, range);
            let _ = write!(
                out,
                "<a class=\"mark {}\" href=\"#e{i}\" data-i=\"{i}\" style=\"left:{left:.3}%\" title=\"{}\"></a>",
                category.class(),
                escape(&lines[i])
            );
        }
        let _ = writeln!(out, "</div></div>");
    }
    let _ = writeln!(out, "</div></div>");
    let _ = writeln!(out, "<pre id=\"detail\" class=\"detail\">hover or click a mark to see its trace line</pre>");

    // The full trace.
    let _ = writeln!(out, "<h2>trace</h2>\n<ol class=\"lines\" start=\"0\">");
    for (i, line) in lines.iter().enumerate() {
        let category = Category::of(trace.events[i].kind);
        let _ = writeln!(out, "<li id=\"e{i}\" data-i=\"{i}\" class=\"{}\">{}</li>", category.class(), escape(line));
    }
    let _ = writeln!(out, "</ol>\n</main>\n<script>{SCRIPT}</script>\n</body>\n</html>");
    out
}

const STYLE: &str = r#"
:root { --zoom: 1; --label: 13em; font-family: system-ui, sans-serif; color: #1d2330; background: #fff; }
body { margin: 0 1em 2em; }
h1 { font-size: 1.3em; margin: .6em 0 .2em; }
h2 { font-size: 1.1em; }
.stats { margin: 0 0 .5em; color: #555; }
.banner { background: #c00; color: #fff; padding: .4em .8em; border-radius: 4px; margin: .4em 0; }
.banner a { color: #fff; }
.banner ul { margin: .3em 0; padding-left: 1.2em; font-family: ui-monospace, monospace; font-size: .85em; }
.controls { display: flex; gap: 1em; align-items: center; flex-wrap: wrap; margin: .4em 0; font-size: .9em; }
.legend i.mark { position: static; display: inline-block; margin: 0 .2em 0 .6em; vertical-align: middle; transform: none; }
.scroll { overflow-x: auto; overflow-y: hidden; border: 1px solid #ccd; border-radius: 4px; }
.timeline { width: calc(var(--zoom) * 100%); min-width: 100%; }
.axis, .lane { display: flex; min-height: 1.7em; border-bottom: 1px solid #eef; }
.axis { position: sticky; top: 0; background: #f6f7fb; z-index: 3; }
.label { position: sticky; left: 0; z-index: 2; flex: 0 0 var(--label); background: #f6f7fb; padding: .2em .5em;
  font-size: .8em; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; border-right: 1px solid #ccd; }
.label small { color: #888; }
.lane.replica .label { background: #eef3ff; }
.lane.workspace .label { background: #f2fbf2; }
.lane.world .label, .lane.sink .label, .lane.provisioner .label { background: #fbf8ef; }
.track { position: relative; flex: 1 1 auto; margin: 0 .8em; }
.tick { position: absolute; top: .3em; font-size: .72em; color: #555; transform: translateX(-50%); white-space: nowrap; }
.tick::before { content: ""; position: absolute; left: 50%; top: 1.3em; height: 100vh; border-left: 1px dotted #dde; }
.mark { position: absolute; top: 50%; width: .6em; height: .6em; border-radius: 50%; transform: translate(-50%, -50%);
  background: #9aa3b5; border: 1px solid rgba(0,0,0,.25); z-index: 1; }
.mark.build { background: #2f6fdf; border-radius: 2px; }
.mark.notify { background: #1e9e5a; }
.mark.fault { background: #f39c12; border-radius: 0; transform: translate(-50%, -50%) rotate(45deg); }
.mark.violation { background: #e00; width: 1em; height: 1em; border: 2px solid #600; z-index: 2; box-shadow: 0 0 0 3px rgba(255,0,0,.3); }
.mark:hover, .mark.selected { outline: 2px solid #000; z-index: 4; }
.rule { position: absolute; top: 0; bottom: 0; border-left: 2px solid rgba(220,0,0,.55); }
.hidden { display: none; }
.detail { background: #f6f7fb; border: 1px solid #ccd; padding: .5em; white-space: pre-wrap; min-height: 1.2em; font-size: .85em; }
ol.lines { font-family: ui-monospace, monospace; font-size: .8em; padding-left: 4em; }
ol.lines li { white-space: pre-wrap; }
ol.lines li.build { color: #1f4fa8; }
ol.lines li.notify { color: #137040; }
ol.lines li.fault { color: #a05c00; }
ol.lines li.violation { color: #fff; background: #c00; font-weight: bold; }
ol.lines li.selected { outline: 2px solid #000; }
"#;

const SCRIPT: &str = r#"
(function () {
  "use strict";
  var detail = document.getElementById("detail");
  var status = document.getElementById("status");
  var timeline = document.getElementById("timeline");
  var chosen = null;
  function lineOf(i) { var li = document.getElementById("e" + i); return li ? li.textContent : ""; }
  function select(i) {
    document.querySelectorAll(".selected").forEach(function (el) { el.classList.remove("selected"); });
    document.querySelectorAll('[data-i="' + i + '"]').forEach(function (el) { el.classList.add("selected"); });
    chosen = i;
    detail.textContent = lineOf(i);
  }
  document.addEventListener("click", function (event) {
    var el = event.target.closest("[data-i]");
    if (!el) { return; }
    var i = el.getAttribute("data-i");
    select(i);
    if (el.classList.contains("mark")) {
      event.preventDefault();
      var li = document.getElementById("e" + i);
      if (li) { li.scrollIntoView({ block: "nearest" }); }
    }
  });
  timeline.addEventListener("mouseover", function (event) {
    var el = event.target.closest(".mark");
    if (el) { detail.textContent = lineOf(el.getAttribute("data-i")); }
  });
  timeline.addEventListener("mouseleave", function () {
    detail.textContent = chosen === null ? "hover or click a mark to see its trace line" : lineOf(chosen);
  });
  document.getElementById("zoom").addEventListener("input", function (event) {
    timeline.style.setProperty("--zoom", event.target.value);
  });
  document.getElementById("filter").addEventListener("input", function (event) {
    var text = event.target.value.toLowerCase();
    document.querySelectorAll("ol.lines li").forEach(function (li) {
      var hide = text !== "" && li.textContent.toLowerCase().indexOf(text) < 0;
      li.classList.toggle("hidden", hide);
      document.querySelectorAll('.mark[data-i="' + li.getAttribute("data-i") + '"]').forEach(function (m) {
        m.classList.toggle("hidden", hide);
      });
    });
  });
  var lanes = document.querySelectorAll(".lane").length;
  var marks = document.querySelectorAll(".lane .mark").length;
  var violations = document.querySelectorAll(".lane .mark.violation").length;
  status.textContent = lanes + " lanes, " + marks + " marks, " + violations + " violation marks";
  document.body.setAttribute("data-lanes-seen", String(lanes));
  document.body.setAttribute("data-marks-seen", String(marks));
  document.body.setAttribute("data-ready", "1");
})();
"#;

#[cfg(test)]
mod tests {
    use engine::ids::WorkspaceId;

    use super::*;

    fn event(secs: i64, source: Source, kind: &'static str, subject: Vec<Subject>, detail: &str) -> TraceEvent {
        TraceEvent { at: Span::from_secs(secs), source, kind, subject, detail: detail.into(), stable: String::new() }
    }

    fn sample() -> (Trace, Names) {
        let w1 = WorkspaceId::from_bytes([1; 16]);
        let w2 = WorkspaceId::from_bytes([2; 16]);
        let mut names = Names::default();
        names.workspaces.insert(w1, "w1".into());
        names.workspaces.insert(w2, "w<2>".into());
        let trace = Trace {
            events: vec![
                event(0, Source::World, "load", vec![], "world loaded"),
                event(60, Source::Replica(0), "build", vec![Subject::Workspace(w1)], "autostop"),
                event(90, Source::Provisioner(0), "job", vec![Subject::Workspace(w1)], "done"),
                event(120, Source::Replica(1), "notify", vec![Subject::Workspace(w2)], "reminder <b>&</b>"),
                event(130, Source::Sink, "delivered", vec![Subject::Name("w1".into())], "ok"),
                event(200, Source::World, "crash", vec![], "replica 1"),
                event(300, Source::World, "violation", vec![Subject::Workspace(w2)], "reminder_once \"twice\""),
            ],
        };
        (trace, names)
    }

    #[test]
    fn lanes_for_replicas_workspaces_and_parties() {
        let (trace, names) = sample();
        let html = render(&trace, &names, "t", 2);
        let lanes: Vec<&str> = html
            .match_indices("<div class=\"lane ")
            .map(|(i, _)| &html[i + 17..i + 17 + html[i + 17..].find('"').unwrap_or(0)])
            .collect();
        // r0, r1, w1, w<2>, p0, sink, world, in that order.
        assert_eq!(lanes, ["replica", "replica", "workspace", "workspace", "provisioner", "sink", "world"]);
        assert!(html.contains("data-lanes=\"7\""));
        assert!(html.contains("data-lane=\"workspace w1\""));
        assert!(html.contains("data-lane=\"workspace w&lt;2&gt;\""));
        // A replica without events still has its lane.
        let r1 = html.find("data-lane=\"replica r1\"").unwrap();
        let r1_lane = &html[r1..html[r1..].find("</div></div>").unwrap() + r1];
        assert_eq!(r1_lane.matches("class=\"mark ").count(), 1);
    }

    #[test]
    fn marks_by_category_in_source_and_workspace_lanes() {
        let (trace, names) = sample();
        let html = render(&trace, &names, "t", 2);
        let marks = |class: &str| html.matches(&format!("<a class=\"mark {class}\"")).count();
        // The build: r0 and w1. The notification: r1 and w<2>; the delivery: sink and w1 (by name).
        assert_eq!(marks("build"), 2);
        assert_eq!(marks("notify"), 4);
        assert_eq!(marks("fault"), 1);
        // The violation: world and w<2>, loud, with a rule in every lane and a banner.
        assert_eq!(marks("violation"), 2);
        assert_eq!(html.matches("<span class=\"rule\"").count(), 7);
        assert!(html.contains("role=\"alert\"><strong>1 invariant violation</strong>"));
        assert!(html.contains("data-violations=\"1\""));
        // Every mark carries its full trace line; the list has every line once.
        assert!(html.contains("title=\"+0h01m00.000s r0    build      w1 autostop\""));
        assert_eq!(html.matches("<li id=\"e").count(), trace.events.len());
        // Positions: the last event is at the right edge.
        assert!(html.contains("data-i=\"6\" style=\"left:100.000%\""));
    }

    #[test]
    fn all_text_is_escaped() {
        let (trace, names) = sample();
        let html = render(&trace, &names, "<script>alert(1)</script> & \"q\"", 1);
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("<title>&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;q&quot;</title>"));
        assert!(!html.contains("<b>&</b>"));
        assert!(html.contains("reminder &lt;b&gt;&amp;&lt;/b&gt;"));
        assert!(html.contains("reminder_once &quot;twice&quot;"));
        // Only our own script element.
        assert_eq!(html.matches("<script").count(), 1);
        assert_eq!(escape("a'b"), "a&#39;b");
    }

    #[test]
    fn self_contained_page() {
        let (trace, names) = sample();
        let html = render(&trace, &names, "t", 1);
        for outside in ["http://", "https://", "src=", "<link", "@import"] {
            assert!(!html.contains(outside), "the page refers outside itself: {outside}");
        }
        assert!(html.starts_with("<!doctype html>"));
        assert!(html.trim_end().ends_with("</html>"));
    }

    #[test]
    fn empty_trace_renders() {
        let html = render(&Trace::default(), &Names::default(), "empty", 1);
        assert!(html.contains("data-lanes=\"3\""));
        assert!(html.contains("data-events=\"0\""));
        assert!(!html.contains("role=\"alert\""));
    }

    #[test]
    fn axis_labels() {
        assert_eq!(short_offset(0), "0");
        assert_eq!(short_offset(500_000), "500ms");
        assert_eq!(short_offset(1_500_000), "1.5s");
        assert_eq!(short_offset(5_400_000_000), "1h30m");
        assert_eq!(short_offset(-60_000_000), "-1m");
        assert_eq!(short_offset(2 * 86_400_000_000), "2d");
        let (trace, names) = sample();
        let html = render(&trace, &names, "t", 1);
        // 300s of trace: a tick every 30s, 0 to 5m.
        assert!(html.contains(">0</span>"));
        assert!(html.contains(">5m</span>"));
        assert_eq!(html.matches("class=\"tick\"").count(), 11);
    }
}
