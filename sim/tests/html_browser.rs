//! The HTML timeline in a real browser: headless Chromium loads a rendered
//! page from a file, runs its script and dumps the DOM; the test reads what
//! the page shows (lanes, marks, the violation) and the console log for script
//! errors. Without `/usr/bin/chromium` (Debian's package) it prints a loud skip
//! line, and fails when `CI=true`: CI installs the browser.

use std::path::{Path, PathBuf};
use std::process::Command;

use engine::ids::WorkspaceId;
use engine::time::Span;
use sim::html::render;
use sim::trace::{Names, Source, Subject, Trace, TraceEvent};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Chromium if it is installed; `None` (after a loud line) when the test must
/// be skipped. Panics in CI, where a missing browser is a broken setup.
fn chromium() -> Option<&'static Path> {
    let path = Path::new(CHROMIUM);
    if path.exists() {
        return Some(path);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{CHROMIUM} is missing and CI=true: install it (apt-get install -y chromium)");
    }
    eprintln!("==================================================================");
    eprintln!("SKIPPED html_browser: {CHROMIUM} not found (apt-get install -y chromium)");
    eprintln!("==================================================================");
    None
}

struct Loaded {
    dom: String,
    log: String,
}

/// Loads `page` in headless Chromium with a fresh profile; returns the DOM
/// after the page's script ran and the browser's log (console included).
fn load(browser: &Path, page: &Path, profile: &Path) -> Loaded {
    let url = format!("file://{}", page.display());
    let output = Command::new("timeout")
        .arg("120")
        .arg(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("chromium starts");
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "chromium failed ({}):\n{log}", output.status);
    Loaded { dom: String::from_utf8_lossy(&output.stdout).into_owned(), log }
}

/// Console lines that report a script error.
fn script_errors(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| line.contains("CONSOLE") || line.contains("Uncaught"))
        .filter(|line| line.contains("Uncaught") || line.contains("Error") || line.contains(":ERROR:"))
        .collect()
}

fn trace() -> (Trace, Names) {
    let w1 = WorkspaceId::from_bytes([1; 16]);
    let w2 = WorkspaceId::from_bytes([2; 16]);
    let mut names = Names::default();
    names.workspaces.insert(w1, "w1".into());
    names.workspaces.insert(w2, "w2 <i>".into());
    let event = |secs: i64, source, kind, subject: Vec<Subject>, detail: &str| TraceEvent {
        at: Span::from_secs(secs),
        source,
        kind,
        subject,
        detail: detail.into(),
        stable: String::new(),
    };
    let events = vec![
        event(0, Source::World, "load", vec![], "2 workspaces"),
        event(61, Source::Replica(0), "build", vec![Subject::Workspace(w1)], "autostop #2"),
        event(75, Source::Provisioner(1), "job", vec![Subject::Workspace(w1)], "succeeded"),
        event(3_600, Source::Replica(1), "notify", vec![Subject::Workspace(w2)], "autostop_reminder </script>"),
        event(3_605, Source::Sink, "delivered", vec![Subject::Workspace(w2)], "autostop_reminder"),
        event(4_000, Source::World, "crash", vec![], "replica 1"),
        event(4_020, Source::World, "restart", vec![], "replica 1"),
        event(5_000, Source::World, "violation", vec![Subject::Workspace(w2)], "reminder_once: 2 rows"),
    ];
    (Trace { events }, names)
}

fn write_page(dir: &Path, name: &str, html: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, html).expect("page written");
    path
}

#[test]
fn timeline_renders_in_chromium_without_script_errors() {
    let Some(browser) = chromium() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let (trace, names) = trace();
    let html = render(&trace, &names, "browser test <timeline>", 2);
    let page = write_page(dir.path(), "timeline.html", &html);
    let loaded = load(browser, &page, &dir.path().join("profile"));

    assert_eq!(script_errors(&loaded.log), Vec::<&str>::new(), "script errors:\n{}", loaded.log);
    // The script ran to its end and counted what the DOM shows: replicas r0
    // and r1, workspaces w1 and w2, provisioner p1, the sink and the world.
    assert!(loaded.dom.contains("data-ready=\"1\""), "the page's script did not finish:\n{}", loaded.dom);
    assert!(loaded.dom.contains("data-lanes-seen=\"7\""), "{}", loaded.dom);
    assert!(loaded.dom.contains("7 lanes, 13 marks, 2 violation marks"), "{}", loaded.dom);
    assert!(loaded.dom.contains("<strong>1 invariant violation</strong>"));
    assert!(loaded.dom.contains("class=\"mark violation\""));
    // Escaped text stays text: no element came from a trace line.
    assert!(!loaded.dom.contains("<i>"));
    assert!(loaded.dom.contains("w2 &lt;i&gt;"));
    assert!(loaded.dom.contains("<title>browser test &lt;timeline&gt;</title>"));
}

/// The check above would see a script error: a page with one reports it and
/// never marks itself ready.
#[test]
fn a_script_error_is_seen() {
    let Some(browser) = chromium() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let (trace, names) = trace();
    let html =
        render(&trace, &names, "broken", 1).replacen("\"use strict\";", "\"use strict\"; notDefinedAnywhere();", 1);
    let page = write_page(dir.path(), "broken.html", &html);
    let loaded = load(browser, &page, &dir.path().join("profile"));
    assert!(!loaded.dom.contains("data-ready=\"1\""));
    let errors = script_errors(&loaded.log);
    assert!(errors.iter().any(|line| line.contains("notDefinedAnywhere")), "no console error seen:\n{}", loaded.log);
}
