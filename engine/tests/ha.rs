//! High availability on real PostgreSQL: three `engined` replicas on one
//! database, one killed with SIGKILL while it holds an open transaction, one
//! stopped with SIGTERM, and the survivor doing every due transition and
//! reminder exactly once.
//!
//! The test makes its own database (`ENGINE_TEST_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`; dropped at the end, and ones
//! a killed run left are dropped once an hour old), runs `engined migrate`,
//! seeds a fleet whose deadlines, autostarts and idle clocks fall due a few
//! seconds to tens of seconds ahead (every lifecycle rule: autostop at the
//! deadline, a suspended owner, autostart with and without an auto-update,
//! failed-build stop, dormancy stop and mark-only, auto-delete, reminders), and
//! starts replica A with the test failpoint `hold_first_delivery`: its first
//! notification delivery never returns, so the delivery transaction that
//! claimed the outbox rows stays open. The test sees it in `pg_stat_activity`
//! (`idle in transaction`, holding a lock on `notifications`), starts B and C,
//! acts as their provisioner and as users through the HTTP API, SIGKILLs A,
//! lets B and C share the early transitions, SIGTERMs B (exit 0 within
//! `shutdown_timeout`), then polls the database until
//! every expectation holds, checking at every poll that no workspace has two
//! unfinished jobs. A notification webhook in the test process records every
//! delivery by its idempotency key.
//!
//! An unreachable server fails the test under `CI=true`; elsewhere it prints
//! one loud `SKIPPED:` line and passes.

#![cfg(not(madsim))]

mod daemon_support;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use daemon_support::pg::{admin_on, create_database, database_url, drop_database, server_available};
use daemon_support::*;
use engine::ids::{ProvisionerId, UserId, VersionId, WorkspaceId};
use engine::model::*;
use engine::runtime::{Spawner, TaskHandle, TokioSpawner};
use engine::store::postgres::{PgPoolConfig, PgStore};
use engine::store::{Store, Subsystem, Tx, TxOptions};
use engine::time::{Span, Timestamp};
use reqwest::Method;
use serde_json::json;

/// Every replica's graceful shutdown budget.
const SHUTDOWN_TIMEOUT: Span = Span::from_secs(5);

// ---- the fleet ---------------------------------------------------------------------

/// A build as the test expects it: (transition, reason, version name).
type Expected = Vec<(Transition, BuildReason, &'static str)>;

struct Fleet {
    t0: Timestamp,
    alice: UserId,
    workspaces: BTreeMap<&'static str, WorkspaceId>,
    versions: BTreeMap<VersionId, &'static str>,
    /// The final build history of each workspace.
    builds: BTreeMap<&'static str, Expected>,
    /// (kind, workspace) of every outbox row the run must end with.
    notifications: Vec<(NotificationKind, &'static str)>,
    /// The deadline of `user-extend`'s first reminder.
    extend_first_stop_at: Timestamp,
}

fn secs(n: i64) -> Span {
    Span::from_secs(n)
}

async fn seed(store: &PgStore) -> Fleet {
    use BuildReason::*;
    use Transition::*;
    let t0 = now();
    let ids = seed_ids(0x4a);
    let mut tx = store.begin(TxOptions::new(Subsystem::Admin)).await.expect("begin");
    let alice = user(&ids, "alice", UserStatus::Active, false, t0);
    let sam = user(&ids, "sam", UserStatus::Suspended, false, t0);
    tx.insert_user(&alice).await.unwrap();
    tx.insert_user(&sam).await.unwrap();

    // Templates: basic (autostop only), notify (reminders a minute ahead),
    // update (v2 active), failed (failed builds stop after 20s), dormant
    // (dormant after an hour unused, deleted 30 days later).
    let mut templates = BTreeMap::new();
    let mut versions = BTreeMap::new();
    for name in ["basic", "notify", "update", "failed", "dormant"] {
        let template_id = ids.next();
        let v1 = version(&ids, template_id, "v1", t0 - Span::from_days(40));
        let mut t = template(&ids, name, v1.id, t0);
        t.id = template_id;
        let mut v2 = None;
        match name {
            "notify" => t.autostop_notify = Span::from_mins(1),
            "update" => {
                let newer = version(&ids, template_id, "v2", t0 - Span::from_days(1));
                t.active_version_id = newer.id;
                v2 = Some(newer);
            }
            "failed" => t.failure_ttl = secs(20),
            "dormant" => {
                t.time_til_dormant = Span::from_hours(1);
                t.time_til_dormant_autodelete = Span::from_days(30);
            }
            _ => {}
        }
        tx.insert_template(&t).await.unwrap();
        tx.insert_version(&v1).await.unwrap();
        versions.insert(v1.id, "v1");
        let mut v2_id = None;
        if let Some(v2) = v2 {
            tx.insert_version(&v2).await.unwrap();
            versions.insert(v2.id, "v2");
            v2_id = Some(v2.id);
        }
        templates.insert(name, (t.id, v1.id, v2_id));
    }

    let idle = t0 - Span::from_hours(3);
    let long_ago = t0 - Span::from_days(2);
    struct Row {
        name: &'static str,
        owner: UserId,
        template: &'static str,
        last_used_at: Timestamp,
        /// Seeded builds: (transition, job status, deadline of the latest).
        seeded: Vec<(Transition, JobStatus)>,
        deadline: Option<Timestamp>,
        edit: fn(&mut Workspace, Timestamp),
        completed_at: Timestamp,
        then: Expected,
    }
    let none: fn(&mut Workspace, Timestamp) = |_, _| {};
    let running = vec![(Start, JobStatus::Succeeded)];
    let stopped = vec![(Start, JobStatus::Succeeded), (Stop, JobStatus::Succeeded)];
    let rows = vec![
        // Autostop at the deadline, early (B or C) and late (the survivor).
        Row {
            name: "autostop-early",
            owner: alice.id,
            template: "basic",
            last_used_at: idle,
            seeded: running.clone(),
            deadline: Some(t0 + secs(6)),
            edit: none,
            completed_at: long_ago,
            then: vec![(Stop, Autostop, "v1")],
        },
        Row {
            name: "autostop-late",
            owner: alice.id,
            template: "basic",
            last_used_at: idle,
            seeded: running.clone(),
            deadline: Some(t0 + secs(32)),
            edit: none,
            completed_at: long_ago,
            then: vec![(Stop, Autostop, "v1")],
        },
        // A suspended owner's workspace stops at the first tick (replica A's).
        Row {
            name: "autostop-suspended",
            owner: sam.id,
            template: "basic",
            last_used_at: idle,
            seeded: running.clone(),
            deadline: None,
            edit: none,
            completed_at: long_ago,
            then: vec![(Stop, Autostop, "v1")],
        },
        // Autostart on the latest build's version, and with an auto-update to v2.
        Row {
            name: "autostart",
            owner: alice.id,
            template: "update",
            last_used_at: idle,
            seeded: stopped.clone(),
            deadline: None,
            completed_at: long_ago,
            then: vec![(Start, Autostart, "v1")],
            edit: |w, t0| {
                w.autostart = Some("CRON_TZ=UTC 0 3 * * *".into());
                w.next_start_at = Some(t0 + secs(8));
            },
        },
        Row {
            name: "autostart-update",
            owner: alice.id,
            template: "update",
            last_used_at: idle,
            seeded: stopped.clone(),
            deadline: None,
            completed_at: long_ago,
            then: vec![(Start, Autostart, "v2")],
            edit: |w, t0| {
                w.autostart = Some("CRON_TZ=UTC 0 3 * * *".into());
                w.next_start_at = Some(t0 + secs(28));
                w.automatic_updates = AutomaticUpdates::Always;
            },
        },
        // A failed start stops 20s after it failed (at seeding).
        Row {
            name: "failedstop",
            owner: alice.id,
            template: "failed",
            last_used_at: idle,
            seeded: vec![(Start, JobStatus::Failed)],
            deadline: None,
            edit: none,
            completed_at: t0,
            then: vec![(Stop, Failedstop, "v1")],
        },
        // Dormancy: a running workspace is stopped and marked, a stopped one only marked.
        Row {
            name: "dormancy-stop",
            owner: alice.id,
            template: "dormant",
            last_used_at: t0 - Span::from_hours(1) + secs(9),
            seeded: running.clone(),
            deadline: None,
            edit: none,
            completed_at: long_ago,
            then: vec![(Stop, Dormancy, "v1")],
        },
        Row {
            name: "dormancy-mark",
            owner: alice.id,
            template: "dormant",
            last_used_at: t0 - Span::from_hours(1) + secs(18),
            seeded: stopped.clone(),
            deadline: None,
            edit: none,
            completed_at: long_ago,
            then: vec![],
        },
        // A dormant workspace is deleted once past deleting_at.
        Row {
            name: "autodelete",
            owner: alice.id,
            template: "dormant",
            last_used_at: long_ago,
            seeded: stopped.clone(),
            deadline: None,
            completed_at: long_ago,
            then: vec![(Delete, Autodelete, "v1")],
            edit: |w, t0| {
                w.dormant_at = Some(t0 - Span::from_days(31));
                w.deleting_at = Some(t0 + secs(12));
            },
        },
        // Reminders: one due at once (replica A commits it, and holds its
        // delivery), one once the owner has been idle 15 minutes (the survivor).
        Row {
            name: "remind-early",
            owner: alice.id,
            template: "notify",
            last_used_at: idle,
            seeded: running.clone(),
            deadline: Some(t0 + secs(40)),
            edit: none,
            completed_at: long_ago,
            then: vec![(Stop, Autostop, "v1")],
        },
        Row {
            name: "remind-late",
            owner: alice.id,
            template: "notify",
            last_used_at: t0 - Span::from_mins(15) + secs(24),
            seeded: running.clone(),
            deadline: Some(t0 + secs(45)),
            edit: none,
            completed_at: long_ago,
            then: vec![(Stop, Autostop, "v1")],
        },
        // Users' actions through the API: a stop, and an extension after the
        // first reminder (which then stops nothing during the test).
        Row {
            name: "user-stop",
            owner: alice.id,
            template: "basic",
            last_used_at: idle,
            seeded: running.clone(),
            deadline: None,
            edit: none,
            completed_at: long_ago,
            then: vec![(Stop, Initiator, "v1")],
        },
        Row {
            name: "user-extend",
            owner: alice.id,
            template: "notify",
            last_used_at: idle,
            seeded: running.clone(),
            deadline: Some(t0 + secs(35)),
            edit: none,
            completed_at: long_ago,
            then: vec![],
        },
    ];

    let mut workspaces = BTreeMap::new();
    let mut builds = BTreeMap::new();
    for row in rows {
        let (template_id, v1, _) = templates[row.template];
        let mut w = workspace(&ids, row.name, row.owner, template_id, row.last_used_at, t0 - Span::from_days(60));
        (row.edit)(&mut w, t0);
        tx.insert_workspace(&w).await.unwrap();
        let mut expected: Expected = Vec::new();
        let count = row.seeded.len();
        for (index, (transition, status)) in row.seeded.into_iter().enumerate() {
            let latest = index + 1 == count;
            let completed_at = if latest { row.completed_at } else { row.completed_at - Span::from_hours(1) };
            let spec = BuildSpec {
                number: index as i32 + 1,
                transition,
                status,
                version: v1,
                completed_at,
                deadline: if latest { row.deadline } else { None },
            };
            let (b, j) = build(&ids, &w, spec);
            tx.insert_build(&b, &j).await.unwrap();
            expected.push((transition, BuildReason::Initiator, "v1"));
        }
        expected.extend(row.then);
        builds.insert(row.name, expected);
        workspaces.insert(row.name, w.id);
    }
    // A provisioner seen at seeding: replica A's first tick may build.
    let provisioner = ProvisionerDaemon { id: ids.next(), name: "seeded".into(), last_seen_at: t0 };
    tx.upsert_provisioner(&provisioner).await.unwrap();
    tx.commit().await.expect("commit the fleet");

    use NotificationKind as K;
    let notifications = vec![
        (K::AutostopReminder, "remind-early"),
        (K::AutostopReminder, "remind-late"),
        (K::AutostopReminder, "user-extend"),
        (K::WorkspaceAutoUpdated, "autostart-update"),
        (K::WorkspaceDormant, "dormancy-stop"),
        (K::WorkspaceDormant, "dormancy-mark"),
        (K::WorkspaceDeleted, "autodelete"),
    ];
    Fleet { t0, alice: alice.id, workspaces, versions, builds, notifications, extend_first_stop_at: t0 + secs(35) }
}

// ---- the webhook and the provisioner ------------------------------------------------

/// Every delivery the webhook received: (idempotency key, kind).
type Received = Arc<Mutex<Vec<(String, String)>>>;

async fn start_webhook() -> (u16, Received, TaskHandle) {
    let received: Received = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::Json<serde_json::Value>| {
            let sink = sink.clone();
            async move {
                let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                let kind = body.0["kind"].as_str().unwrap_or("").to_owned();
                sink.lock().unwrap().push((key, kind));
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the webhook");
    let port = listener.local_addr().unwrap().port();
    let task = TokioSpawner.spawn(
        "ha-webhook",
        Box::pin(async move {
            let _ = axum::serve(listener, app).await;
        }),
    );
    (port, received, task)
}

/// The test as the replicas' provisioner: heartbeats, acquires, completes
/// (retrying on another live replica), reports agents ready after starts.
struct Provisioner {
    stop: Arc<AtomicBool>,
    completed: Arc<Mutex<Vec<String>>>,
}

impl Provisioner {
    fn start(live: Arc<Mutex<Vec<String>>>) -> (Provisioner, TaskHandle) {
        let stop = Arc::new(AtomicBool::new(false));
        let completed: Arc<Mutex<Vec<String>>> = Arc::default();
        let me = Provisioner { stop: stop.clone(), completed: completed.clone() };
        let task = TokioSpawner.spawn(
            "ha-provisioner",
            Box::pin(async move {
                let client = client();
                let id = ProvisionerId::from_bytes([0x70; 16]);
                let mut heartbeat_at = now();
                let mut turn = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let bases: Vec<String> = live.lock().unwrap().clone();
                    if bases.is_empty() {
                        pause(Span::from_millis(100)).await;
                        continue;
                    }
                    turn += 1;
                    let base = &bases[turn % bases.len()];
                    if now() >= heartbeat_at {
                        let url = format!("{base}/api/v1/provisioners/{id}/heartbeat");
                        if call(&client, Method::POST, &url, Some(json!({ "name": "ha-test" }))).await.is_ok() {
                            heartbeat_at = now() + Span::from_secs(2);
                        }
                    }
                    let url = format!("{base}/api/v1/provisioners/{id}/acquire");
                    let job = match call(&client, Method::POST, &url, Some(json!({}))).await {
                        Ok((200, body)) if !body["job"].is_null() => body["job"].clone(),
                        _ => {
                            pause(Span::from_millis(200)).await;
                            continue;
                        }
                    };
                    let job_id = job["id"].as_str().unwrap_or_default().to_owned();
                    // "Build", then complete through whichever replica answers.
                    pause(Span::from_millis(200)).await;
                    let give_up_at = now() + Span::from_secs(20);
                    loop {
                        let bases: Vec<String> = live.lock().unwrap().clone();
                        let mut done = false;
                        for base in &bases {
                            let url = format!("{base}/api/v1/jobs/{job_id}/complete");
                            match call(&client, Method::POST, &url, Some(json!({ "status": "succeeded" }))).await {
                                Ok((200, _)) => {
                                    done = true;
                                    completed.lock().unwrap().push(job_id.clone());
                                    if job["transition"] == "start" {
                                        let url = format!(
                                            "{base}/api/v1/workspaces/{}/agent/ready",
                                            job["workspace_id"].as_str().unwrap_or_default()
                                        );
                                        let _ = call(&client, Method::POST, &url, Some(json!({}))).await;
                                    }
                                    break;
                                }
                                // Finished already (an earlier attempt landed): done.
                                Ok((409, _)) => {
                                    done = true;
                                    break;
                                }
                                _ => {}
                            }
                        }
                        if done || now() > give_up_at {
                            break;
                        }
                        pause(Span::from_millis(100)).await;
                    }
                }
            }),
        );
        (me, task)
    }
}

// ---- database probes ------------------------------------------------------------------

/// The backend pid and transaction start of a session of `application` that
/// has been `idle in transaction` for over a second while holding a lock on
/// `notifications`.
async fn held_transaction(
    admin: &tokio_postgres::Client,
    db: &str,
    application: &str,
) -> Result<(i32, Timestamp), String> {
    let rows = admin
        .query(
            "SELECT a.pid, (extract(epoch FROM a.xact_start) * 1000000)::bigint FROM pg_stat_activity a \
             WHERE a.datname = $1 AND a.application_name = $2 AND a.state = 'idle in transaction' \
               AND a.xact_start < now() - interval '1 second' \
               AND EXISTS (SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
                           WHERE l.pid = a.pid AND l.granted AND c.relname = 'notifications')",
            &[&db, &application],
        )
        .await
        .map_err(|e| e.to_string())?;
    rows.first()
        .map(|row| (row.get::<_, i32>(0), Timestamp::from_micros(row.get::<_, i64>(1))))
        .ok_or_else(|| format!("no held transaction of {application} yet"))
}

async fn sessions_of(admin: &tokio_postgres::Client, db: &str, application: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
            &[&db, &application],
        )
        .await
        .map(|row| row.get(0))
        .unwrap_or(-1)
}

/// Everything the assertions read, in one snapshot.
struct Snapshot {
    builds: BTreeMap<&'static str, Vec<BuildWithJob>>,
    workspaces: BTreeMap<&'static str, Workspace>,
    notifications: Vec<Notification>,
    unfinished: Vec<Job>,
}

async fn snapshot(store: &PgStore, fleet: &Fleet) -> Result<Snapshot, String> {
    let mut tx = store.begin(TxOptions::read_only(Subsystem::Admin)).await.map_err(|e| e.to_string())?;
    let mut builds = BTreeMap::new();
    let mut workspaces = BTreeMap::new();
    for (name, id) in &fleet.workspaces {
        let mut history = tx.builds_of_workspace(*id, 100).await.map_err(|e| e.to_string())?;
        history.reverse();
        builds.insert(*name, history);
        workspaces.insert(*name, tx.workspace(*id).await.map_err(|e| e.to_string())?.ok_or("workspace gone")?);
    }
    let notifications = tx.notifications(None, 1_000).await.map_err(|e| e.to_string())?;
    let unfinished = tx.unfinished_jobs(1_000).await.map_err(|e| e.to_string())?;
    let _ = tx.rollback().await;
    Ok(Snapshot { builds, workspaces, notifications, unfinished })
}

impl Snapshot {
    /// At every instant: at most one unfinished job per workspace.
    fn check_no_concurrent_jobs(&self) {
        let mut per_workspace: BTreeMap<WorkspaceId, usize> = BTreeMap::new();
        for job in &self.unfinished {
            *per_workspace.entry(job.workspace_id).or_default() += 1;
        }
        let doubled: Vec<_> = per_workspace.iter().filter(|(_, n)| **n > 1).collect();
        assert!(doubled.is_empty(), "workspaces with two unfinished jobs: {doubled:?}");
    }

    /// What is still missing from the end state (empty: done). A build or
    /// notification that is there but should not be is a panic, not a wait.
    fn missing(&self, fleet: &Fleet) -> Vec<String> {
        let mut missing = Vec::new();
        for (name, expected) in &fleet.builds {
            let actual: Vec<(Transition, BuildReason, &str)> = self.builds[name]
                .iter()
                .map(|b| {
                    (
                        b.build.transition,
                        b.build.reason,
                        fleet.versions.get(&b.build.version_id).copied().unwrap_or("?"),
                    )
                })
                .collect();
            assert!(
                actual.len() <= expected.len() && actual[..] == expected[..actual.len()],
                "{name}: builds {actual:?}, expected {expected:?} (a transition happened twice or wrongly)"
            );
            if actual.len() < expected.len() {
                missing.push(format!("{name}: {} of {} builds", actual.len(), expected.len()));
            }
            for b in &self.builds[name] {
                if b.job.status != JobStatus::Succeeded && !(b.build.number == 1 && name == &"failedstop") {
                    missing.push(format!("{name}: build {} job {}", b.build.number, b.job.status));
                }
            }
        }
        let mut rows: BTreeMap<(NotificationKind, WorkspaceId), usize> = BTreeMap::new();
        for n in &self.notifications {
            *rows.entry((n.kind, n.workspace_id.expect("workspace notification"))).or_default() += 1;
            if n.delivered_at.is_none() {
                missing.push(format!("{} {} undelivered", n.kind, n.dedupe_key.0));
            }
        }
        let expected: BTreeMap<(NotificationKind, WorkspaceId), usize> =
            fleet.notifications.iter().map(|(kind, name)| ((*kind, fleet.workspaces[name]), 1)).collect();
        for (key, count) in &rows {
            assert!(
                expected.get(key) == Some(count),
                "unexpected outbox rows {key:?} x{count}: {:#?}",
                self.notifications
            );
        }
        for key in expected.keys() {
            if !rows.contains_key(key) {
                missing.push(format!("outbox row {key:?}"));
            }
        }
        for name in ["dormancy-stop", "dormancy-mark"] {
            if self.workspaces[name].dormant_at.is_none() {
                missing.push(format!("{name} not marked dormant"));
            }
        }
        if !self.workspaces["autodelete"].deleted {
            missing.push("autodelete not deleted".to_owned());
        }
        missing
    }
}

// ---- the test ---------------------------------------------------------------------------

fn config_text(db_url: &str, port: u16, application: &str, hook_port: u16, failpoint: &str) -> String {
    format!(
        "database_url = \"{db_url}\"\n\
         listen = \"127.0.0.1:{port}\"\n\
         application_name = \"{application}\"\n\
         migrate_on_start = false\n\
         webhook_url = \"http://127.0.0.1:{hook_port}/hook\"\n\
         failpoint = \"{failpoint}\"\n\
         lifecycle_interval = \"1s\"\n\
         usage_flush_interval = \"1s\"\n\
         notification_poll_interval = \"1s\"\n\
         notification_retry = \"2s\"\n\
         shutdown_timeout = \"{SHUTDOWN_TIMEOUT}\"\n\
         db_pool_size = 10\n\
         provisioner_stale_after = \"90s\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ha_survivor_takes_over_every_due_transition_and_reminder_once() {
    if !server_available("the HA test").await {
        return;
    }
    let db = create_database("ha_").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut daemons: Vec<Daemon> = Vec::new();
    let outcome =
        futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(run(&db, dir.path(), &mut daemons))).await;
    for daemon in &mut daemons {
        daemon.kill_quietly();
    }
    if let Err(panic) = outcome {
        for daemon in &daemons {
            let _ = writeln!(std::io::stderr(), "--- {} log (tail) ---\n{}", daemon.name, daemon.log_tail(40));
        }
        drop_database(&db).await;
        std::panic::resume_unwind(panic);
    }
    drop_database(&db).await;
}

async fn run(db: &str, dir: &std::path::Path, daemons: &mut Vec<Daemon>) {
    let started = now();
    let db_url = database_url(db);
    let client = client();
    let admin = admin_on(db).await;
    let (hook_port, received, _webhook) = start_webhook().await;
    let apps: Vec<String> = ["a", "b", "c"].iter().map(|r| format!("{db}_{r}")).collect();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let configs: Vec<std::path::PathBuf> = (0..3)
        .map(|i| {
            let path = dir.join(format!("replica-{i}.toml"));
            let failpoint = if i == 0 { "hold_first_delivery" } else { "none" };
            write_file(&path, &config_text(&db_url, ports[i], &apps[i], hook_port, failpoint));
            path
        })
        .collect();
    let config_arg = |i: usize| configs[i].display().to_string();

    // `engined migrate` on the fresh database.
    let output = std::process::Command::new(ENGINED)
        .args(["migrate", "--config", &config_arg(0)])
        .output()
        .expect("run engined migrate");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "engined migrate: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("applied migrations 1"), "{stdout}");

    let pool = PgPoolConfig { size: 5, acquire_timeout: Span::from_secs(5), application_name: format!("{db}_test") };
    let store = PgStore::connect(&db_url, pool).await.expect("connect the test's store");
    let fleet = seed(&store).await;

    // Replica A alone: its first tick stops the suspended owner's workspace and
    // commits the early reminders; its first delivery pass claims them and hangs.
    daemons.push(Daemon::spawn("replica-a", dir, &["serve", "--config", &config_arg(0)], &[], ports[0]));
    daemons[0].wait_healthy(&client, Span::from_secs(30)).await;
    let held = poll_until("replica A holding its delivery transaction open", Span::from_secs(20), || {
        held_transaction(&admin, db, &apps[0])
    })
    .await;
    // What A's pass claimed: every row due before its transaction began (no
    // other replica runs yet, and A's delivery is stuck on this pass).
    let held_rows: Vec<String> = snapshot(&store, &fleet)
        .await
        .unwrap()
        .notifications
        .iter()
        .filter(|n| n.delivered_at.is_none() && n.created_at < held.1)
        .map(|n| n.dedupe_key.0.clone())
        .collect();
    assert!(!held_rows.is_empty(), "A's held pass claimed the early reminders");

    // B and C join; the test is their provisioner.
    for i in 1..3 {
        daemons.push(Daemon::spawn(
            &format!("replica-{}", ["a", "b", "c"][i]),
            dir,
            &["serve", "--config", &config_arg(i)],
            &[],
            ports[i],
        ));
    }
    for daemon in daemons.iter_mut().skip(1) {
        daemon.wait_healthy(&client, Span::from_secs(30)).await;
    }
    let live = Arc::new(Mutex::new(vec![daemons[1].url(""), daemons[2].url("")]));
    let (provisioner, provisioner_task) = Provisioner::start(live.clone());
    for daemon in daemons.iter().skip(1) {
        let url = daemon.url("/metrics");
        poll_until("a tick of B and C", Span::from_secs(10), || async {
            let metrics = scrape(&client, &url).await?;
            if value(&metrics, "engine_lifecycle_ticks_total") >= 1.0 {
                Ok(())
            } else {
                Err("no tick yet".into())
            }
        })
        .await;
    }

    // Users: a stop through B; an extension through C once the first
    // reminder is committed (it was due at once).
    let actor = fleet.alice.to_string();
    let (status, body) = call(
        &client,
        Method::POST,
        &daemons[1].url(&format!("/api/v1/workspaces/{}/builds", fleet.workspaces["user-stop"])),
        Some(json!({ "actor": actor, "transition": "stop" })),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "user stop: {body}");
    let extend_url = daemons[2].url(&format!("/api/v1/workspaces/{}", fleet.workspaces["user-extend"]));
    poll_until("user-extend's first reminder", Span::from_secs(20), || async {
        let (_, body) = call(&client, Method::GET, &extend_url, None).await?;
        let marker = body["latest_build"]["notified_autostop_deadline"].as_str().map(str::to_owned);
        if marker == Some(fleet.extend_first_stop_at.to_string()) {
            Ok(())
        } else {
            Err(format!("marker {marker:?}"))
        }
    })
    .await;
    let extended_to = now() + Span::from_mins(40);
    let (status, body) = call(
        &client,
        Method::PUT,
        &format!("{extend_url}/extend"),
        Some(json!({ "actor": actor, "deadline": extended_to.to_string() })),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "extend: {body}");

    // SIGKILL A while its transaction is open: B and C, polling the outbox
    // every second, still skip the rows it locked.
    assert_eq!(held_transaction(&admin, db, &apps[0]).await, Ok(held), "A still holds the same transaction");
    let still_held = snapshot(&store, &fleet).await.unwrap();
    for key in &held_rows {
        let row = still_held.notifications.iter().find(|n| &n.dedupe_key.0 == key).expect("held row");
        assert_eq!(row.delivered_at, None, "{key} is locked by A: nobody delivered it");
    }
    let killed_at = now();
    daemons[0].signal("KILL");
    let status = daemons[0].wait_exit(Span::from_secs(5)).await.expect("A died");
    assert!(!status.success(), "SIGKILL: {status}");
    poll_until("A's sessions gone", Span::from_secs(10), || async {
        match sessions_of(&admin, db, &apps[0]).await {
            0 => Ok(()),
            n => Err(format!("{n} sessions left")),
        }
    })
    .await;

    // Its rows are delivered by B or C; then SIGTERM B.
    poll_until("A's claimed rows delivered by B or C", Span::from_secs(20), || async {
        let snap = snapshot(&store, &fleet).await?;
        let pending: Vec<&str> = snap
            .notifications
            .iter()
            .filter(|n| held_rows.contains(&n.dedupe_key.0) && n.delivered_at.is_none())
            .map(|n| n.dedupe_key.0.as_str())
            .collect();
        if pending.is_empty() {
            Ok(())
        } else {
            Err(format!("pending {pending:?}"))
        }
    })
    .await;
    // B and C share the early transitions (due 6s to 12s in); then SIGTERM B.
    poll_until("the early transitions", Span::from_secs(30), || async {
        let snap = snapshot(&store, &fleet).await?;
        let early = ["autostop-early", "autostart", "dormancy-stop", "autodelete"];
        let pending: Vec<&str> =
            early.into_iter().filter(|name| snap.builds[name].len() < fleet.builds[name].len()).collect();
        if pending.is_empty() {
            Ok(())
        } else {
            Err(format!("pending {pending:?}"))
        }
    })
    .await;
    live.lock().unwrap().retain(|base| *base != daemons[1].url(""));
    let term_at = now();
    daemons[1].signal("TERM");
    let status = daemons[1]
        .wait_exit(SHUTDOWN_TIMEOUT + Span::from_secs(2))
        .await
        .unwrap_or_else(|| panic!("B still running {} after SIGTERM", SHUTDOWN_TIMEOUT + Span::from_secs(2)));
    let b_exited_at = now();
    assert!(status.success(), "B exited with {status}:\n{}", daemons[1].log_tail(20));
    assert!(b_exited_at.since(term_at) <= SHUTDOWN_TIMEOUT, "B took {} to stop", b_exited_at.since(term_at));

    // Only C is left: poll the database until the end state, checking at
    // every poll that no workspace ever has two unfinished jobs.
    let give_up_after = (fleet.t0 + Span::from_secs(100)).since(now()).max(Span::from_secs(30));
    let end = poll_until("every due transition and notification", give_up_after, || async {
        let snap = snapshot(&store, &fleet).await?;
        snap.check_no_concurrent_jobs();
        let missing = snap.missing(&fleet);
        if missing.is_empty() && snap.unfinished.is_empty() {
            Ok(snap)
        } else {
            Err(format!("{missing:?}"))
        }
    })
    .await;

    // Exactly once: builds (checked in `missing`), outbox rows (one per key),
    // and deliveries (the webhook saw every key once: A never sent its claim).
    let keys: BTreeMap<String, usize> = received.lock().unwrap().iter().fold(BTreeMap::new(), |mut m, (k, _)| {
        *m.entry(k.clone()).or_default() += 1;
        m
    });
    for n in &end.notifications {
        assert_eq!(keys.get(&n.dedupe_key.0), Some(&1), "webhook deliveries of {}: {keys:#?}", n.dedupe_key.0);
    }
    assert_eq!(keys.len(), end.notifications.len(), "the webhook saw only outbox keys: {keys:#?}");
    for n in end.notifications.iter().filter(|n| held_rows.contains(&n.dedupe_key.0)) {
        assert!(n.delivered_at.expect("delivered") > killed_at, "{} delivered after A's death", n.dedupe_key.0);
    }
    // user-extend: reminded once for its first deadline, then extended, never stopped.
    let extend = &end.builds["user-extend"];
    assert_eq!(extend.last().unwrap().build.deadline, Some(extended_to));
    assert_eq!(extend.last().unwrap().build.notified_autostop_deadline, Some(fleet.extend_first_stop_at));

    // The survivor: every lifecycle change after B's exit is C's, and C's own
    // counters account for at least that many.
    let after_b: Vec<String> = end
        .builds
        .iter()
        .flat_map(|(name, history)| history.iter().map(move |b| (name, b)))
        .filter(|(_, b)| b.build.created_at > b_exited_at && b.build.reason != BuildReason::Initiator)
        .map(|(name, b)| format!("{name} #{} {} {}", b.build.number, b.build.transition, b.build.reason))
        .collect();
    let c_metrics = scrape(&client, &daemons[2].url("/metrics")).await.unwrap();
    let c_transitions = sum(&c_metrics, "engine_lifecycle_transitions_total");
    assert!(after_b.len() >= 4, "the survivor had due transitions left to do: {after_b:?}");
    assert!(c_transitions >= after_b.len() as f64, "C made {c_transitions} transitions; after B: {after_b:?}");
    assert_eq!(sum(&c_metrics, "engine_lifecycle_errors_total"), 0.0, "{c_metrics:#?}");

    // C stops gracefully too.
    provisioner.stop.store(true, Ordering::SeqCst);
    provisioner_task.join().await;
    daemons[2].signal("TERM");
    let status = daemons[2].wait_exit(SHUTDOWN_TIMEOUT + Span::from_secs(2)).await.expect("C stops");
    assert!(status.success(), "C exited with {status}");
    let _ = writeln!(
        std::io::stderr(),
        "ha: {}s; A killed at +{}, B stopped at +{}; after B, C did {after_b:?}; webhook got {} keys; jobs completed {}",
        now().since(started).as_secs(),
        killed_at.since(fleet.t0),
        b_exited_at.since(fleet.t0),
        keys.len(),
        provisioner.completed.lock().unwrap().len(),
    );
    store.close();
}
