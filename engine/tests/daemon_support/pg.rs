//! PostgreSQL for the daemon tests: the server from `ENGINE_TEST_PG_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`), a fresh database
//! per test (`<prefix><unix seconds>_<pid>`, dropped by the test; ones a
//! killed run left are dropped once an hour old), and the CI rule: an
//! unreachable server fails under `CI=true`, elsewhere it is one loud
//! `SKIPPED:` line.

use std::io::Write;

use engine::runtime::{Spawner, TaskHandle, TokioSpawner};
use tokio_postgres::NoTls;

use super::now;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const STALE_AFTER_SECS: i64 = 3_600;

pub fn server_url() -> String {
    std::env::var("ENGINE_TEST_PG_URL").ok().filter(|u| !u.trim().is_empty()).unwrap_or_else(|| DEFAULT_URL.to_owned())
}

pub fn server_config() -> tokio_postgres::Config {
    let url = server_url();
    let mut config: tokio_postgres::Config =
        url.parse().unwrap_or_else(|e| panic!("ENGINE_TEST_PG_URL `{url}` is not a postgresql url: {e}"));
    config.connect_timeout(std::time::Duration::from_secs(5));
    config
}

/// The URL of database `db` on the test server (what the daemons are given).
pub fn database_url(db: &str) -> String {
    let url = server_url();
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base.to_owned(), format!("?{query}")),
        None => (url.clone(), String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    format!("{}/{db}{query}", &base[..host_end])
}

/// A plain client, its connection driven by a task of the test's runtime.
pub async fn admin_client(config: &tokio_postgres::Config) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    let _task: TaskHandle = TokioSpawner.spawn(
        "test-admin-connection",
        Box::pin(async move {
            let _ = connection.await;
        }),
    );
    Ok(client)
}

pub async fn admin_on(db: &str) -> tokio_postgres::Client {
    let mut config = server_config();
    config.dbname(db);
    admin_client(&config).await.unwrap_or_else(|e| panic!("connect to {db}: {e}"))
}

/// Whether the server answers: under `CI=true` an unreachable server fails
/// the test; elsewhere one loud line naming `what` did not run, and `false`.
pub async fn server_available(what: &str) -> bool {
    match admin_client(&server_config()).await {
        Ok(_) => true,
        Err(error) => {
            let url = server_url();
            let detail = match std::error::Error::source(&error) {
                Some(cause) => format!("{error}: {cause}"),
                None => error.to_string(),
            };
            if std::env::var("CI").is_ok_and(|ci| ci == "true") {
                panic!("PostgreSQL unreachable at {url} and CI=true: {detail}");
            }
            let _ =
                writeln!(std::io::stderr(), "SKIPPED: PostgreSQL unreachable at {url} ({detail}); {what} did not run");
            false
        }
    }
}

/// A fresh database named `<prefix><unix seconds>_<pid>`.
pub async fn create_database(prefix: &str) -> String {
    let admin = admin_client(&server_config()).await.expect("connect to the postgresql server");
    let secs = now().as_micros() / 1_000_000;
    // Databases a killed run left behind.
    let pattern = format!("{}%", prefix.replace('_', "\\_"));
    let rows = admin.query("SELECT datname FROM pg_database WHERE datname LIKE $1", &[&pattern]).await.expect("list");
    for row in rows {
        let name: String = row.get(0);
        let created: Option<i64> = name.strip_prefix(prefix).and_then(|rest| rest.split('_').next()?.parse().ok());
        if created.is_some_and(|at| secs - at > STALE_AFTER_SECS) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await;
        }
    }
    let db = format!("{prefix}{secs}_{}", std::process::id());
    admin.batch_execute(&format!("CREATE DATABASE \"{db}\"")).await.expect("create the test database");
    db
}

pub async fn drop_database(db: &str) {
    let admin = admin_client(&server_config()).await.expect("connect to the postgresql server");
    if let Err(error) = admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")).await {
        let _ = writeln!(std::io::stderr(), "could not drop test database {db}: {error}");
    }
}
