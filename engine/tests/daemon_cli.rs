//! The `engined` command line as a user meets it: `--help` lists every
//! configuration key, bad configuration names its file:line:col or variable
//! and exits 1, `serve` migrates a fresh PostgreSQL database (the README's
//! command) and exits 0 on SIGTERM, and a SQLite daemon exits 0 on SIGINT.

#![cfg(not(madsim))]

mod daemon_support;

use std::process::Command;

use daemon_support::pg::{create_database, database_url, drop_database, server_available};
use daemon_support::*;
use engine::daemon::config::KEYS;
use engine::time::Span;
use reqwest::Method;

#[test]
fn help_lists_every_configuration_key() {
    let output = Command::new(ENGINED).arg("--help").output().expect("run engined --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for command in ["serve", "migrate", "provision"] {
        assert!(help.contains(command), "{help}");
    }
    for (key, _) in KEYS {
        assert!(help.contains(key), "`{key}` missing from --help:\n{help}");
    }
}

#[test]
fn bad_configuration_names_its_source_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("engined.toml");
    let db = dir.path().join("engine.db");
    write_file(&config, &format!("database_url = \"sqlite://{}\"\nlifecycle_interval = \"2h\"\n", db.display()));
    let output = Command::new(ENGINED)
        .args(["serve", "--config", &config.display().to_string()])
        .env_remove("ENGINE_LIFECYCLE_INTERVAL")
        .output()
        .expect("run engined");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let expected = format!("{}:2:22: setting `lifecycle_interval` is 2h, expected 1s..1h", config.display());
    assert!(stderr.contains(&expected), "{stderr}");

    let output = Command::new(ENGINED)
        .args(["migrate", "--config", &config.display().to_string()])
        .env("ENGINE_LIFECYCLE_INTERVAL", "1s")
        .env("ENGINE_DB_POOL_SIZE", "4")
        .output()
        .expect("run engined");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("environment variable ENGINE_DB_POOL_SIZE: setting `db_pool_size` is 4, expected at least 5"),
        "{stderr}"
    );
    assert!(!db.exists(), "nothing was opened on a bad configuration");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_migrates_a_fresh_postgres_database_and_exits_0_on_sigterm() {
    if !server_available("the fresh-database daemon test").await {
        return;
    }
    let db = create_database("daemon_cli_").await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // The README's command: only the database URL (and a free port).
    let env = [("ENGINE_DATABASE_URL", database_url(&db)), ("ENGINE_LISTEN", format!("127.0.0.1:{port}"))];
    let mut daemon = Daemon::spawn("engined", dir.path(), &["serve"], &env, port);
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(async {
        let client = client();
        daemon.wait_healthy(&client, Span::from_secs(30)).await;
        // The tables are there: an unknown workspace is a refusal, not a database error.
        let url = daemon.url("/api/v1/workspaces/00000000-0000-4000-8000-000000000000");
        let (status, body) = call(&client, Method::GET, &url, None).await.unwrap();
        assert_eq!((status, body["kind"].as_str()), (404, Some("refused")), "{body}");
        // A second migration finds nothing to do.
        let output = Command::new(ENGINED).arg("migrate").envs(env.iter().cloned()).output().expect("migrate");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success() && stdout.contains("is up to date"), "{stdout}");
        daemon.signal("TERM");
        let status = daemon.wait_exit(Span::from_secs(12)).await.expect("exits within shutdown_timeout (10s)");
        assert!(status.success(), "exit {status}:\n{}", daemon.log_tail(20));
        let log = std::fs::read_to_string(&daemon.log).unwrap();
        assert!(log.contains("migrations applied"), "{log}");
    }))
    .await;
    daemon.kill_quietly();
    drop_database(&db).await;
    if let Err(panic) = outcome {
        eprintln!("--- engined log ---\n{}", daemon.log_tail(40));
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_daemon_exits_0_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let env = [
        ("ENGINE_DATABASE_URL", format!("sqlite://{}", dir.path().join("engine.db").display())),
        ("ENGINE_LISTEN", format!("127.0.0.1:{port}")),
        ("ENGINE_SHUTDOWN_TIMEOUT", "2s".to_owned()),
    ];
    let mut daemon = Daemon::spawn("engined", dir.path(), &["serve"], &env, port);
    let client = client();
    daemon.wait_healthy(&client, Span::from_secs(30)).await;
    daemon.signal("INT");
    let status = daemon.wait_exit(Span::from_secs(4)).await;
    daemon.kill_quietly();
    let status = status.unwrap_or_else(|| panic!("still running 4s after SIGINT:\n{}", daemon.log_tail(20)));
    assert!(status.success(), "exit {status}:\n{}", daemon.log_tail(20));
}
