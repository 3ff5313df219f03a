//! Helpers of the daemon tests: `engined` child processes (spawned from the
//! binary Cargo built for the tests, logs to a file, signalled with `kill`),
//! free ports, HTTP calls, Prometheus text parsing, polling with deadlines, and
//! world seeding through the store's `Tx`.
//!
//! Waiting is always polling a condition until a deadline; the short pauses
//! between polls go through the engine's `Clock`.

#![allow(dead_code)]

pub mod pg;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use engine::ids::{IdGen, SharedIds};
use engine::model::*;
use engine::runtime::{Clock, SystemClock};
use engine::time::{Span, Timestamp};

pub const ENGINED: &str = env!("CARGO_BIN_EXE_engined");

pub fn now() -> Timestamp {
    SystemClock.now()
}

/// Pauses `span` (between polls only).
pub async fn pause(span: Span) {
    SystemClock.sleep_until(SystemClock.now() + span).await;
}

/// Polls `check` every 100ms until it returns `Some`, or panics with `what`
/// and the last `None`'s explanation after `timeout`.
pub async fn poll_until<T, F, Fut>(what: &str, timeout: Span, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let give_up_at = now() + timeout;
    loop {
        let last = match check().await {
            Ok(value) => return value,
            Err(why) => why,
        };
        if now() > give_up_at {
            panic!("timed out after {timeout} waiting for {what}: {last}");
        }
        pause(Span::from_millis(100)).await;
    }
}

/// A port nothing listens on right now (the OS picks it; a tiny race with
/// other processes is accepted).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// One `engined` child process.
pub struct Daemon {
    pub name: String,
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `engined <args>` with `env` added to the environment, its
    /// stdout and stderr in `<dir>/<name>.log`.
    pub fn spawn(name: &str, dir: &Path, args: &[&str], env: &[(&str, String)], port: u16) -> Daemon {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).expect("create the log file");
        let err = out.try_clone().expect("clone the log file");
        let mut command = Command::new(ENGINED);
        command.args(args).stdin(Stdio::null()).stdout(Stdio::from(out)).stderr(Stdio::from(err));
        // The tests' own ENGINE_* variables must not configure the daemons.
        for (key, _) in std::env::vars() {
            if key.starts_with("ENGINE_") {
                command.env_remove(key);
            }
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().unwrap_or_else(|e| panic!("spawn {ENGINED} for {name}: {e}"));
        Daemon { name: name.to_owned(), child, port, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: &str) {
        let status =
            Command::new("kill").args([&format!("-{signal}"), &self.pid().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -{signal} {} ({}) failed", self.pid(), self.name);
    }

    /// Polls for the process's exit until `timeout`; `None` if it still runs.
    pub async fn wait_exit(&mut self, timeout: Span) -> Option<ExitStatus> {
        let give_up_at = now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if now() > give_up_at {
                return None;
            }
            pause(Span::from_millis(20)).await;
        }
    }

    /// Kills the process if it still runs (cleanup after a failure).
    pub fn kill_quietly(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until `/healthz` answers 200 (or the process died).
    pub async fn wait_healthy(&mut self, client: &reqwest::Client, timeout: Span) {
        let give_up_at = now() + timeout;
        loop {
            if let Ok(response) = client.get(self.url("/healthz")).send().await {
                if response.status().is_success() {
                    return;
                }
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("{} exited with {status} before it was healthy:\n{}", self.name, self.log_tail(40));
            }
            if now() > give_up_at {
                panic!("{} not healthy after {timeout}:\n{}", self.name, self.log_tail(40));
            }
            pause(Span::from_millis(50)).await;
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build().expect("http client")
}

/// `(status, body)` of a JSON request.
pub async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<serde_json::Value>,
) -> Result<(u16, serde_json::Value), String> {
    let mut request = client.request(method.clone(), url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.map_err(|e| format!("{method} {url}: {e}"))?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(|e| format!("{method} {url}: {e}"))?;
    let value = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).map_err(|e| format!("{method} {url}: not json ({e}): {text}"))?
    };
    Ok((status, value))
}

/// One scrape, as `series -> value` (`name{label="v",…}` exactly as exposed).
pub async fn scrape(client: &reqwest::Client, url: &str) -> Result<BTreeMap<String, f64>, String> {
    let response = client.get(url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
    let text = response.text().await.map_err(|e| format!("GET {url}: {e}"))?;
    Ok(parse_metrics(&text))
}

pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// A series' value, 0 when it is not exposed (a labelled counter never incremented).
pub fn value(metrics: &BTreeMap<String, f64>, series: &str) -> f64 {
    metrics.get(series).copied().unwrap_or(0.0)
}

/// Every series of a metric name summed (all label values).
pub fn sum(metrics: &BTreeMap<String, f64>, name: &str) -> f64 {
    metrics
        .iter()
        .filter(|(series, _)| *series == name || series.starts_with(&format!("{name}{{")))
        .map(|(_, v)| *v)
        .sum()
}

pub fn write_file(path: &Path, text: &str) {
    let mut file = File::create(path).expect("create file");
    file.write_all(text.as_bytes()).expect("write file");
}

// ---- seeding ---------------------------------------------------------------------

/// Ids for seeded rows (distinct from any daemon's: a fixed test seed).
pub fn seed_ids(seed: u64) -> SharedIds {
    SharedIds::new(IdGen::from_seed(seed))
}

pub fn user(ids: &SharedIds, name: &str, status: UserStatus, admin: bool, at: Timestamp) -> User {
    User {
        id: ids.next(),
        name: name.into(),
        status,
        roles: Roles { admin, template_admin: admin },
        quiet_hours: String::new(),
        created_at: at,
    }
}

/// A template with no timers at all; callers set what they exercise.
pub fn template(ids: &SharedIds, name: &str, active_version: engine::ids::VersionId, at: Timestamp) -> Template {
    Template::new(ids.next(), name, active_version, at)
}

pub fn version(ids: &SharedIds, template: engine::ids::TemplateId, name: &str, at: Timestamp) -> TemplateVersion {
    TemplateVersion { id: ids.next(), template_id: template, name: name.into(), parameters: Vec::new(), created_at: at }
}

/// A workspace of `owner` on `template`, used at `last_used_at`.
pub fn workspace(
    ids: &SharedIds,
    name: &str,
    owner: engine::ids::UserId,
    template: engine::ids::TemplateId,
    last_used_at: Timestamp,
    at: Timestamp,
) -> Workspace {
    Workspace {
        id: ids.next(),
        owner_id: owner,
        template_id: template,
        name: name.into(),
        ttl: None,
        autostart: None,
        automatic_updates: AutomaticUpdates::Never,
        last_used_at,
        dormant_at: None,
        deleting_at: None,
        next_start_at: None,
        deleted: false,
        created_at: at,
    }
}

/// A finished build of `workspace` and its job.
pub struct BuildSpec {
    pub number: i32,
    pub transition: Transition,
    pub status: JobStatus,
    pub version: engine::ids::VersionId,
    pub completed_at: Timestamp,
    pub deadline: Option<Timestamp>,
}

pub fn build(ids: &SharedIds, workspace: &Workspace, spec: BuildSpec) -> (Build, Job) {
    let created_at = spec.completed_at - Span::from_secs(30);
    let build = Build {
        id: ids.next(),
        workspace_id: workspace.id,
        number: spec.number,
        transition: spec.transition,
        reason: BuildReason::Initiator,
        initiator_id: workspace.owner_id,
        version_id: spec.version,
        job_id: ids.next(),
        preset_id: None,
        parameters: Parameters::new(),
        created_at,
        deadline: spec.deadline,
        max_deadline: None,
        notified_autostop_deadline: None,
        agent_ready_at: None,
    };
    let job = Job {
        id: build.job_id,
        build_id: build.id,
        workspace_id: workspace.id,
        template_id: workspace.template_id,
        version_id: spec.version,
        status: spec.status,
        is_prebuild: false,
        created_at,
        started_at: Some(created_at),
        completed_at: Some(spec.completed_at),
        canceled_at: None,
        worker_id: None,
        error: (spec.status == JobStatus::Failed).then(|| "seeded failure".to_owned()),
    };
    (build, job)
}
