//! The daemon's `/metrics` after known transitions: a fleet seeded into a
//! fresh SQLite file (two autostops, an autostart, a failed-build stop, a
//! dormancy mark, a due reminder), `engined serve` on it (configured by a file
//! and the environment), `engined provision` as its provisioner, a few API
//! calls (a refusal, an activity report, a user stop); then, once the engine
//! has done all of it, exact counter values, the API's answers, and a
//! graceful exit on SIGTERM within `shutdown_timeout`.

#![cfg(not(madsim))]

mod daemon_support;

use std::collections::BTreeMap;
use std::sync::Arc;

use daemon_support::*;
use engine::model::*;
use engine::runtime::SystemClock;
use engine::store::sqlite::{PoolConfig, SqliteServer};
use engine::store::{Store, Subsystem, Tx, TxOptions};
use engine::time::Span;
use reqwest::Method;
use serde_json::json;

/// What the test seeded, by name.
struct Seeded {
    alice: engine::ids::UserId,
    workspaces: BTreeMap<&'static str, engine::ids::WorkspaceId>,
}

async fn seed(path: &std::path::Path) -> Seeded {
    let t0 = now();
    let server = SqliteServer::open_file(path, Arc::new(SystemClock)).expect("open the database file");
    let store = server.client(PoolConfig { size: 5, acquire_timeout: Span::from_secs(5), label: "seed".into() });
    let ids = seed_ids(11);
    let mut tx = store.begin(TxOptions::new(Subsystem::Admin)).await.expect("begin");

    let alice = user(&ids, "alice", UserStatus::Active, false, t0);
    let bob = user(&ids, "bob", UserStatus::Suspended, false, t0);
    tx.insert_user(&alice).await.unwrap();
    tx.insert_user(&bob).await.unwrap();

    // dev: reminders an hour ahead. flaky: failed builds stop after a minute.
    // idle: dormant after a day unused.
    let mut templates = BTreeMap::new();
    for (name, edit) in [
        ("dev", (|t: &mut Template| t.autostop_notify = Span::from_hours(1)) as fn(&mut Template)),
        ("flaky", |t: &mut Template| t.failure_ttl = Span::from_mins(1)),
        ("idle", |t: &mut Template| t.time_til_dormant = Span::from_days(1)),
    ] {
        let template_id = ids.next();
        let v1 = version(&ids, template_id, "v1", t0);
        let mut t = template(&ids, name, v1.id, t0);
        t.id = template_id;
        edit(&mut t);
        tx.insert_template(&t).await.unwrap();
        tx.insert_version(&v1).await.unwrap();
        templates.insert(name, (t.id, v1.id));
    }

    let running = |deadline| BuildSpec {
        number: 1,
        transition: Transition::Start,
        status: JobStatus::Succeeded,
        version: templates["dev"].1,
        completed_at: t0 - Span::from_hours(2),
        deadline,
    };
    let long_ago = t0 - Span::from_hours(1);
    let mut workspaces = BTreeMap::new();
    // (name, owner, template, last used, latest build, autostart, next start)
    let fleet = [
        ("past-deadline", alice.id, "dev", t0, running(Some(t0 - Span::from_mins(1))), None),
        ("suspended-owner", bob.id, "dev", t0, running(None), None),
        ("due-reminder", alice.id, "dev", long_ago, running(Some(t0 + Span::from_mins(30))), None),
        ("idle-running", alice.id, "dev", t0, running(None), None),
        (
            "autostart",
            alice.id,
            "dev",
            t0,
            BuildSpec { transition: Transition::Stop, ..running(None) },
            Some(("CRON_TZ=UTC 0 0 * * *", t0 - Span::from_secs(1))),
        ),
        (
            "failed-start",
            alice.id,
            "flaky",
            t0,
            BuildSpec {
                status: JobStatus::Failed,
                version: templates["flaky"].1,
                completed_at: t0 - Span::from_mins(2),
                ..running(None)
            },
            None,
        ),
        (
            "unused",
            alice.id,
            "idle",
            t0 - Span::from_days(2),
            BuildSpec { transition: Transition::Stop, version: templates["idle"].1, ..running(None) },
            None,
        ),
    ];
    for (name, owner, template_name, last_used, spec, autostart) in fleet {
        let mut w = workspace(&ids, name, owner, templates[template_name].0, last_used, t0 - Span::from_days(3));
        if let Some((cron, next_start_at)) = autostart {
            w.autostart = Some(cron.to_owned());
            w.next_start_at = Some(next_start_at);
        }
        tx.insert_workspace(&w).await.unwrap();
        let (b, j) = build(&ids, &w, spec);
        tx.insert_build(&b, &j).await.unwrap();
        workspaces.insert(name, w.id);
    }
    // A provisioner seen just now: the first tick may build.
    let provisioner = ProvisionerDaemon { id: ids.next(), name: "seeded".into(), last_seen_at: t0 };
    tx.upsert_provisioner(&provisioner).await.unwrap();
    tx.commit().await.expect("commit the fleet");
    drop(store);
    drop(server);
    Seeded { alice: alice.id, workspaces }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_known_transitions_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("engine.db");
    let seeded = seed(&db).await;
    let port = free_port();
    let config = dir.path().join("engined.toml");
    write_file(
        &config,
        &format!(
            "# the file sets some keys, the environment the rest\n\
             database_url = \"sqlite://{}\"\n\
             db_pool_size = 8\n\
             notification_poll_interval = \"1s\"\n\
             usage_flush_interval = \"1s\"\n\
             log_format = \"json\"\n",
            db.display()
        ),
    );
    let env = [
        ("ENGINE_LISTEN", format!("127.0.0.1:{port}")),
        ("ENGINE_LIFECYCLE_INTERVAL", "1s".to_owned()),
        ("ENGINE_SHUTDOWN_TIMEOUT", "5s".to_owned()),
    ];
    let config_arg = config.display().to_string();
    let mut daemon = Daemon::spawn("engined", dir.path(), &["serve", "--config", &config_arg], &env, port);
    let mut provisioner = None;
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(async {
        let client = client();
        daemon.wait_healthy(&client, Span::from_secs(30)).await;
        let ws = |name: &str| seeded.workspaces[name].to_string();
        let actor = seeded.alice.to_string();

        // The API's answers and refusals.
        let (status, body) =
            call(&client, Method::GET, &daemon.url(&format!("/api/v1/workspaces/{}", ws("idle-running"))), None)
                .await
                .unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["name"], "idle-running");
        assert_eq!(body["latest_build"]["transition"], "start");
        assert_eq!(body["latest_build"]["job"]["status"], "succeeded");
        let (status, body) = call(
            &client,
            Method::PUT,
            &daemon.url(&format!("/api/v1/workspaces/{}/extend", ws("idle-running"))),
            Some(json!({ "actor": actor, "deadline": "2030-01-01T00:00:00Z" })),
        )
        .await
        .unwrap();
        assert_eq!((status, body["kind"].as_str()), (422, Some("refused")), "{body}");
        assert!(body["error"].as_str().unwrap().contains("cannot extend"), "{body}");
        let (status, body) =
            call(&client, Method::GET, &daemon.url("/api/v1/workspaces/not-a-uuid"), None).await.unwrap();
        assert_eq!((status, body["kind"].as_str()), (400, Some("bad_request")), "{body}");
        let (status, body) = call(
            &client,
            Method::POST,
            &daemon.url(&format!("/api/v1/workspaces/{}/builds", ws("idle-running"))),
            Some(json!({ "actor": actor, "transition": "sideways" })),
        )
        .await
        .unwrap();
        assert_eq!(status, 400, "{body}");
        assert!(body["error"].as_str().unwrap().contains("expected one of: start, stop, delete"), "{body}");

        // An agent session: usage marked, flushed within a second.
        let (status, body) = call(
            &client,
            Method::POST,
            &daemon.url(&format!("/api/v1/workspaces/{}/activity", ws("idle-running"))),
            Some(json!({ "sessions": 2 })),
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["deadline"], serde_json::Value::Null, "no deadline to bump");
        poll_until("the usage flush", Span::from_secs(20), || async {
            let metrics = scrape(&client, &daemon.url("/metrics")).await?;
            match value(&metrics, "engine_usage_flushed_workspaces_total") {
                v if v >= 1.0 => Ok(()),
                v => Err(format!("flushed {v}")),
            }
        })
        .await;

        // A user stops a running workspace.
        let (status, body) = call(
            &client,
            Method::POST,
            &daemon.url(&format!("/api/v1/workspaces/{}/builds", ws("idle-running"))),
            Some(json!({ "actor": actor, "transition": "stop" })),
        )
        .await
        .unwrap();
        assert_eq!((status, body["reason"].as_str()), (201, Some("initiator")), "{body}");

        // The provisioner adapter runs every job through the API.
        let provisioner_port = port.to_string();
        let api = format!("http://127.0.0.1:{provisioner_port}");
        provisioner = Some(Daemon::spawn(
            "provisioner",
            dir.path(),
            &[
                "provision",
                "--api",
                &api,
                "--build-duration",
                "100ms",
                "--poll-interval",
                "200ms",
                "--heartbeat-interval",
                "1s",
                "--agent-ready",
            ],
            &[],
            port,
        ));

        // Two autostops, an autostart, a failed-build stop and the user's stop
        // (5 jobs); a reminder and a dormancy notice delivered.
        let metrics = poll_until("every known transition, job and delivery", Span::from_secs(60), || async {
            let metrics = scrape(&client, &daemon.url("/metrics")).await?;
            let jobs = value(&metrics, "engine_jobs_completed_total{status=\"succeeded\"}");
            let delivered = sum(&metrics, "engine_notifications_delivered_total");
            if jobs >= 5.0 && delivered >= 2.0 {
                Ok(metrics)
            } else {
                Err(format!("jobs completed {jobs}, notifications delivered {delivered}"))
            }
        })
        .await;

        let expect = [
            ("engine_lifecycle_transitions_total{reason=\"autostop\",transition=\"stop\"}", 2.0),
            ("engine_lifecycle_transitions_total{reason=\"autostart\",transition=\"start\"}", 1.0),
            ("engine_lifecycle_transitions_total{reason=\"failedstop\",transition=\"stop\"}", 1.0),
            ("engine_lifecycle_marks_total", 1.0),
            ("engine_lifecycle_reminders_total", 1.0),
            ("engine_lifecycle_lock_busy_total", 0.0),
            ("engine_lifecycle_lost_races_total", 0.0),
            ("engine_lifecycle_conflicts_total", 0.0),
            ("engine_lifecycle_no_provisioner_total", 0.0),
            ("engine_lifecycle_scan_failures_total", 0.0),
            ("engine_builds_inserted_total{origin=\"api\",reason=\"initiator\",transition=\"stop\"}", 1.0),
            ("engine_builds_inserted_total{origin=\"lifecycle\",reason=\"autostop\",transition=\"stop\"}", 2.0),
            ("engine_notifications_enqueued_total{kind=\"autostop_reminder\"}", 1.0),
            ("engine_notifications_enqueued_total{kind=\"workspace_dormant\"}", 1.0),
            ("engine_notifications_delivered_total{kind=\"autostop_reminder\"}", 1.0),
            ("engine_notifications_delivered_total{kind=\"workspace_dormant\"}", 1.0),
            ("engine_jobs_acquired_total", 5.0),
            ("engine_jobs_completed_total{status=\"succeeded\"}", 5.0),
            ("engine_api_refusals_total{action=\"extend\"}", 1.0),
            ("engine_usage_flushes_total{result=\"ok\"}", 1.0),
            ("engine_usage_flushed_workspaces_total", 1.0),
            ("engine_activity_bumps_total", 0.0),
            ("engine_db_pool_size", 8.0),
        ];
        let wrong: Vec<String> = expect
            .iter()
            .filter(|(series, expected)| value(&metrics, series) != *expected)
            .map(|(series, expected)| format!("{series} = {} (expected {expected})", value(&metrics, series)))
            .collect();
        assert!(wrong.is_empty(), "metrics differ:\n{}\n\nscrape:\n{metrics:#?}", wrong.join("\n"));
        let sums = [
            ("engine_lifecycle_transitions_total", 4.0),
            ("engine_lifecycle_errors_total", 0.0),
            ("engine_notifications_failed_total", 0.0),
            ("engine_api_refusals_total", 1.0),
            ("engine_loop_errors_total", 0.0),
        ];
        for (name, expected) in sums {
            assert_eq!(sum(&metrics, name), expected, "sum of {name}: {metrics:#?}");
        }
        assert!(value(&metrics, "engine_lifecycle_ticks_total") >= 1.0);
        assert!(value(&metrics, "engine_lifecycle_tick_duration_seconds_count") >= 1.0);
        assert!(metrics.contains_key("engine_db_pool_in_use_by{subsystem=\"lifecycle\"}"));

        // What the database says (through the API) agrees.
        for (name, transition, reason) in [
            ("past-deadline", "stop", "autostop"),
            ("suspended-owner", "stop", "autostop"),
            ("autostart", "start", "autostart"),
            ("failed-start", "stop", "failedstop"),
            ("idle-running", "stop", "initiator"),
        ] {
            let (_, body) = call(&client, Method::GET, &daemon.url(&format!("/api/v1/workspaces/{}", ws(name))), None)
                .await
                .unwrap();
            let latest = &body["latest_build"];
            assert_eq!(
                (latest["transition"].as_str(), latest["reason"].as_str(), latest["job"]["status"].as_str()),
                (Some(transition), Some(reason), Some("succeeded")),
                "{name}: {body}"
            );
        }
        let (_, body) =
            call(&client, Method::GET, &daemon.url(&format!("/api/v1/workspaces/{}", ws("autostart"))), None)
                .await
                .unwrap();
        assert!(body["latest_build"]["agent_ready_at"].is_string(), "the adapter reported the agent ready: {body}");
        let (_, body) = call(&client, Method::GET, &daemon.url(&format!("/api/v1/workspaces/{}", ws("unused"))), None)
            .await
            .unwrap();
        assert!(body["dormant_at"].is_string(), "{body}");
    }))
    .await;

    // Graceful exits (and cleanup, whatever happened above).
    let mut exits = Vec::new();
    for process in provisioner.iter_mut().chain(std::iter::once(&mut daemon)) {
        if matches!(process.child.try_wait(), Ok(None)) {
            process.signal("TERM");
            exits.push((process.name.clone(), process.wait_exit(Span::from_secs(7)).await));
        }
        process.kill_quietly();
    }
    if let Err(panic) = outcome {
        eprintln!("--- engined log ---\n{}", daemon.log_tail(60));
        std::panic::resume_unwind(panic);
    }
    for (name, exit) in exits {
        let status = exit.unwrap_or_else(|| panic!("{name} did not exit within 7s of SIGTERM"));
        assert!(status.success(), "{name} exited with {status}:\n{}", daemon.log_tail(30));
    }
    let log = std::fs::read_to_string(&daemon.log).unwrap();
    assert!(log.lines().any(|l| l.contains("\"message\":\"stopped\"")), "json logs end with `stopped`:\n{log}");
}
