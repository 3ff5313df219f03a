//! The daemon's configuration: a TOML file (optional) overlaid by environment
//! variables, every value checked, and every error naming the setting and where
//! its value came from (`engined.toml:3:22`, or `environment variable
//! ENGINE_LIFECYCLE_INTERVAL`).
//!
//! The file is flat: one `key = value` per setting. Each key `name` can be
//! overridden by the environment variable `ENGINE_<NAME>` (upper case), which
//! wins over the file; a key set nowhere takes its default. Durations use the
//! scenario syntax (`500ms`, `30s`, `1h30m`, `2d`, `0`). The engine settings
//! (the `P` rows of SCENARIOS.md that the engine has built) carry the same names
//! and ranges as [`Settings`], checked by [`Settings::validate`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::settings::Settings;
use crate::time::Span;

/// Prefix of every environment override.
pub const ENV_PREFIX: &str = "ENGINE_";

/// Every key the file and the environment accept, with its meaning (also the
/// text of `engined --help`'s configuration list and of README).
pub const KEYS: &[(&str, &str)] = &[
    ("database_url", "postgres://user@host:port/db (production) or sqlite://path (single node); required"),
    ("listen", "address of the HTTP API, /metrics and /healthz (default 127.0.0.1:8080)"),
    ("log_format", "text or json (default text)"),
    ("log_filter", "tracing filter, as RUST_LOG (default info)"),
    ("application_name", "PostgreSQL application_name of this replica's sessions (default engined)"),
    ("migrate_on_start", "apply missing migrations before serving (default true)"),
    ("id_seed", "seed of the replica's id generator (default: derived from the process and the clock)"),
    ("webhook_url", "POST each notification as JSON to this http:// URL (default: log only)"),
    ("webhook_timeout", "timeout of one webhook delivery (default 5s)"),
    ("failpoint", "tests only: none or hold_first_delivery (default none)"),
    ("lifecycle_interval", "lifecycle tick (1s..1h, default 1m)"),
    ("usage_flush_interval", "batching of last_used_at writes (default 1m)"),
    ("notification_poll_interval", "how often delivery reads the outbox (default 5s)"),
    ("notification_retry", "delay before retrying a failed delivery (default 1m)"),
    ("shutdown_timeout", "graceful shutdown budget (default 10s)"),
    ("db_pool_size", "connections of this replica (at least 5, default 10)"),
    ("db_acquire_timeout", "waiting longer for a connection is an error (default 5s)"),
    ("provisioner_stale_after", "no build is inserted when no provisioner was seen for this long (default 90s)"),
];

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_APPLICATION_NAME: &str = "engined";
const DEFAULT_LOG_FILTER: &str = "info";
const DEFAULT_WEBHOOK_TIMEOUT: Span = Span::from_secs(5);

/// Where the daemon keeps its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A PostgreSQL connection string (URL or key-value form), as given.
    Postgres(String),
    /// A SQLite database file (one daemon only: the emulation lives in its process).
    Sqlite(PathBuf),
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Never print a password: the URL without its user information.
            DatabaseUrl::Postgres(url) => match url.split_once('@') {
                Some((scheme_user, rest)) => {
                    let scheme = scheme_user.split("://").next().unwrap_or("postgres");
                    write!(f, "{scheme}://…@{rest}")
                }
                None => f.write_str(url),
            },
            DatabaseUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
        }
    }
}

/// How logs are written (to stderr).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("expected `text` or `json`, found `{other}`")),
        }
    }
}

/// Test-only hooks that make a daemon misbehave on purpose (see
/// [`crate::daemon::sinks::FailpointSink`]). Never set in production.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Failpoint {
    #[default]
    None,
    /// The first notification handed to the sink is never delivered: the
    /// delivery transaction that claimed it (`FOR UPDATE SKIP LOCKED`) stays
    /// open, holding its row locks, until the process dies.
    HoldFirstDelivery,
}

impl std::str::FromStr for Failpoint {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "none" | "" => Ok(Failpoint::None),
            "hold_first_delivery" => Ok(Failpoint::HoldFirstDelivery),
            other => Err(format!("expected `none` or `hold_first_delivery`, found `{other}`")),
        }
    }
}

/// Delivery of notifications to a webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfig {
    pub url: String,
    pub timeout: Span,
}

/// The daemon's whole configuration, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonConfig {
    pub database: DatabaseUrl,
    pub listen: SocketAddr,
    pub log_format: LogFormat,
    pub log_filter: String,
    pub application_name: String,
    pub migrate_on_start: bool,
    pub id_seed: Option<u64>,
    pub webhook: Option<WebhookConfig>,
    pub failpoint: Failpoint,
    pub settings: Settings,
}

/// Where a value came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    File { path: PathBuf, line: usize, column: usize },
    Env { var: String },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File { path, line, column } => write!(f, "{}:{line}:{column}", path.display()),
            Source::Env { var } => write!(f, "environment variable {var}"),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// `at` is a file position or an environment variable.
    #[error("{at}: {message}")]
    Invalid { at: Source, message: String },
    #[error("setting `{key}` is required (set it in the config file or as {var})")]
    Missing { key: &'static str, var: String },
}

/// A raw value and where it came from.
#[derive(Clone, Debug)]
struct Raw {
    text: String,
    source: Source,
}

impl DaemonConfig {
    /// Reads `file` (if any), then the process environment.
    pub fn load(file: Option<&Path>) -> Result<DaemonConfig, ConfigError> {
        Self::load_with_env(file, &|name| std::env::var(name).ok())
    }

    /// As [`DaemonConfig::load`], with the environment given as a lookup (tests).
    pub fn load_with_env(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<DaemonConfig, ConfigError> {
        let mut raw: BTreeMap<&'static str, Raw> = BTreeMap::new();
        if let Some(path) = file {
            let text =
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
            raw = parse_file(path, &text)?;
        }
        for (key, _) in KEYS {
            let var = env_var(key);
            if let Some(value) = env(&var) {
                raw.insert(key, Raw { text: value, source: Source::Env { var } });
            }
        }
        build(&raw)
    }
}

/// `ENGINE_<KEY>`.
pub fn env_var(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase())
}

fn position(path: &Path, text: &str, offset: usize) -> Source {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Source::File { path: path.to_owned(), line, column }
}

fn parse_file(path: &Path, text: &str) -> Result<BTreeMap<&'static str, Raw>, ConfigError> {
    type Table = BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>>;
    let table: Table = toml::from_str(text).map_err(|error| ConfigError::Invalid {
        at: position(path, text, error.span().map_or(0, |s| s.start)),
        message: error.message().trim_end().to_owned(),
    })?;
    let mut raw = BTreeMap::new();
    for (key, value) in table {
        let at = position(path, text, key.span().start);
        let Some((name, _)) = KEYS.iter().find(|(name, _)| *name == key.get_ref().as_str()) else {
            let expected: Vec<&str> = KEYS.iter().map(|(name, _)| *name).collect();
            return Err(ConfigError::Invalid {
                at,
                message: format!("unknown setting `{}`, expected one of: {}", key.get_ref(), expected.join(", ")),
            });
        };
        let value_at = position(path, text, value.span().start);
        let text = match value.into_inner() {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(ConfigError::Invalid {
                    at: value_at,
                    message: format!(
                        "setting `{name}`: expected a string, number or boolean, found {}",
                        other.type_str()
                    ),
                })
            }
        };
        raw.insert(*name, Raw { text, source: value_at });
    }
    Ok(raw)
}

fn invalid(key: &str, raw: &Raw, message: impl fmt::Display) -> ConfigError {
    ConfigError::Invalid { at: raw.source.clone(), message: format!("setting `{key}`: {message}") }
}

fn build(raw: &BTreeMap<&'static str, Raw>) -> Result<DaemonConfig, ConfigError> {
    let get = |key: &'static str| raw.get(key);
    let parsed = |key: &'static str, parse: &dyn Fn(&str) -> Result<(), String>| -> Result<(), ConfigError> {
        match get(key) {
            Some(value) => parse(value.text.trim()).map_err(|e| invalid(key, value, e)),
            None => Ok(()),
        }
    };
    let span_of = |key: &'static str, default: Span| -> Result<Span, ConfigError> {
        match get(key) {
            Some(value) => parse_duration(value.text.trim()).map_err(|e| invalid(key, value, e)),
            None => Ok(default),
        }
    };

    let database = match get("database_url") {
        None => return Err(ConfigError::Missing { key: "database_url", var: env_var("database_url") }),
        Some(value) => parse_database_url(value.text.trim()).map_err(|e| invalid("database_url", value, e))?,
    };
    let listen = match get("listen") {
        Some(value) => value.text.trim().parse::<SocketAddr>().map_err(|_| {
            invalid("listen", value, format!("expected an address like `127.0.0.1:8080`, found `{}`", value.text))
        })?,
        None => DEFAULT_LISTEN.parse().map_err(|_| ConfigError::Missing { key: "listen", var: env_var("listen") })?,
    };
    let log_format = match get("log_format") {
        Some(value) => value.text.trim().parse().map_err(|e| invalid("log_format", value, e))?,
        None => LogFormat::Text,
    };
    let log_filter = get("log_filter").map_or_else(|| DEFAULT_LOG_FILTER.to_owned(), |v| v.text.trim().to_owned());
    let application_name =
        get("application_name").map_or_else(|| DEFAULT_APPLICATION_NAME.to_owned(), |v| v.text.trim().to_owned());
    parsed("application_name", &|text| {
        if text.is_empty() || text.len() > 63 || !text.is_ascii() {
            Err("expected 1 to 63 ASCII characters".to_owned())
        } else {
            Ok(())
        }
    })?;
    let migrate_on_start = match get("migrate_on_start") {
        Some(value) => parse_bool(value.text.trim()).map_err(|e| invalid("migrate_on_start", value, e))?,
        None => true,
    };
    let id_seed =
        match get("id_seed") {
            Some(value) => {
                Some(value.text.trim().parse::<u64>().map_err(|_| {
                    invalid("id_seed", value, format!("expected a whole number, found `{}`", value.text))
                })?)
            }
            None => None,
        };
    let webhook_timeout = span_of("webhook_timeout", DEFAULT_WEBHOOK_TIMEOUT)?;
    if let Some(value) = get("webhook_timeout") {
        if !webhook_timeout.is_positive() {
            return Err(invalid("webhook_timeout", value, "expected a duration above 0"));
        }
    }
    let webhook = match get("webhook_url") {
        Some(value) if value.text.trim().is_empty() => None,
        Some(value) => {
            let url = value.text.trim();
            if !url.starts_with("http://") {
                return Err(invalid(
                    "webhook_url",
                    value,
                    format!("expected an http:// URL (TLS is not built in), found `{url}`"),
                ));
            }
            Some(WebhookConfig { url: url.to_owned(), timeout: webhook_timeout })
        }
        None => None,
    };
    let failpoint = match get("failpoint") {
        Some(value) => value.text.trim().parse().map_err(|e| invalid("failpoint", value, e))?,
        None => Failpoint::None,
    };

    let defaults = Settings::default();
    let settings = Settings {
        lifecycle_interval: span_of("lifecycle_interval", defaults.lifecycle_interval)?,
        usage_flush_interval: span_of("usage_flush_interval", defaults.usage_flush_interval)?,
        notification_poll_interval: span_of("notification_poll_interval", defaults.notification_poll_interval)?,
        notification_retry: span_of("notification_retry", defaults.notification_retry)?,
        shutdown_timeout: span_of("shutdown_timeout", defaults.shutdown_timeout)?,
        db_pool_size: match get("db_pool_size") {
            Some(value) => value.text.trim().parse::<u32>().map_err(|_| {
                invalid("db_pool_size", value, format!("expected a whole number, found `{}`", value.text))
            })?,
            None => defaults.db_pool_size,
        },
        db_acquire_timeout: span_of("db_acquire_timeout", defaults.db_acquire_timeout)?,
        provisioner_stale_after: span_of("provisioner_stale_after", defaults.provisioner_stale_after)?,
    };
    settings.validate().map_err(|error| {
        let at = raw.get(error.name).map_or(Source::Default, |r| r.source.clone());
        ConfigError::Invalid { at, message: error.to_string() }
    })?;

    Ok(DaemonConfig {
        database,
        listen,
        log_format,
        log_filter,
        application_name,
        migrate_on_start,
        id_seed,
        webhook,
        failpoint,
        settings,
    })
}

/// `postgres://…`/`postgresql://…` or `sqlite://path` (`sqlite:///abs/path` too).
pub fn parse_database_url(text: &str) -> Result<DatabaseUrl, String> {
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        return Ok(DatabaseUrl::Postgres(text.to_owned()));
    }
    if let Some(path) = text.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err("`sqlite://` needs a file path, as `sqlite://engine.db`".to_owned());
        }
        return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
    }
    Err(format!("expected `postgres://…` or `sqlite://path`, found `{}`", redact(text)))
}

fn redact(text: &str) -> String {
    match text.split_once('@') {
        Some((_, rest)) => format!("…@{rest}"),
        None => text.to_owned(),
    }
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        other => Err(format!("expected `true` or `false`, found `{other}`")),
    }
}

/// `(unit, micros)`, largest first: the units of one duration appear in this order.
const UNITS: [(&str, i64); 7] = [
    ("w", 7 * 86_400_000_000),
    ("d", 86_400_000_000),
    ("h", 3_600_000_000),
    ("m", 60_000_000),
    ("s", 1_000_000),
    ("ms", 1_000),
    ("us", 1),
];

/// A duration in the scenario syntax: `0`, or numbers with units
/// (`w d h m s ms us`), largest unit first, each at most once (`1h30m`).
pub fn parse_duration(text: &str) -> Result<Span, String> {
    let bad = || format!("expected a duration like `500ms`, `30s`, `1h30m` or `0`, found `{text}`");
    if text == "0" {
        return Ok(Span::ZERO);
    }
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return Err(bad());
    }
    let mut at = 0;
    let mut total: i64 = 0;
    let mut last_unit: Option<usize> = None;
    while at < bytes.len() {
        let digits = at;
        while at < bytes.len() && bytes[at].is_ascii_digit() {
            at += 1;
        }
        let unit_start = at;
        while at < bytes.len() && bytes[at].is_ascii_alphabetic() {
            at += 1;
        }
        if digits == unit_start || unit_start == at {
            return Err(bad());
        }
        let number: i64 = text[digits..unit_start].parse().map_err(|_| bad())?;
        let unit = &text[unit_start..at];
        let index = UNITS.iter().position(|(name, _)| *name == unit).ok_or_else(bad)?;
        if last_unit.is_some_and(|last| index <= last) {
            return Err(bad());
        }
        last_unit = Some(index);
        total = number.checked_mul(UNITS[index].1).and_then(|micros| total.checked_add(micros)).ok_or_else(bad)?;
    }
    Ok(Span::from_micros(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name| map.get(name).cloned()
    }

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("engined.toml");
        std::fs::write(&path, text).expect("write config");
        (dir, path)
    }

    #[test]
    fn durations_parse_in_the_scenario_syntax() {
        assert_eq!(parse_duration("1h30m"), Ok(Span::from_mins(90)));
        assert_eq!(parse_duration("500ms"), Ok(Span::from_millis(500)));
        assert_eq!(parse_duration("0"), Ok(Span::ZERO));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("1m1h").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn environment_overrides_the_file() {
        let (_dir, path) = write("database_url = \"sqlite://a.db\"\nlifecycle_interval = \"30s\"\ndb_pool_size = 8\n");
        let env = env_of(&[("ENGINE_LIFECYCLE_INTERVAL", "1s"), ("ENGINE_LISTEN", "127.0.0.1:9999")]);
        let config = DaemonConfig::load_with_env(Some(&path), &env).unwrap();
        assert_eq!(config.database, DatabaseUrl::Sqlite(PathBuf::from("a.db")));
        assert_eq!(config.settings.lifecycle_interval, Span::from_secs(1));
        assert_eq!(config.settings.db_pool_size, 8);
        assert_eq!(config.listen.port(), 9999);
        assert!(config.migrate_on_start);
        assert_eq!(config.webhook, None);
    }

    #[test]
    fn file_errors_name_file_line_and_column() {
        let (_dir, path) = write("database_url = \"sqlite://a.db\"\nlifecycle_intervall = \"1s\"\n");
        let error = DaemonConfig::load_with_env(Some(&path), &env_of(&[])).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("{}:2:1: unknown setting `lifecycle_intervall`", path.display())),
            "{error}"
        );

        let (_dir, path) = write("database_url = \"sqlite://a.db\"\nlifecycle_interval = \"2h\"\n");
        let error = DaemonConfig::load_with_env(Some(&path), &env_of(&[])).unwrap_err().to_string();
        assert_eq!(error, format!("{}:2:22: setting `lifecycle_interval` is 2h, expected 1s..1h", path.display()),);

        let (_dir, path) = write("database_url = \"sqlite://a.db\"\nshutdown_timeout = \"ten\"\n");
        let error = DaemonConfig::load_with_env(Some(&path), &env_of(&[])).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("{}:2:20: setting `shutdown_timeout`: expected a duration", path.display())),
            "{error}"
        );

        let (_dir, path) = write("database_url = \"sqlite://a.db\n");
        let error = DaemonConfig::load_with_env(Some(&path), &env_of(&[])).unwrap_err().to_string();
        assert!(error.starts_with(&format!("{}:1:", path.display())), "{error}");
    }

    #[test]
    fn environment_errors_name_the_variable() {
        let env = env_of(&[("ENGINE_DATABASE_URL", "sqlite://a.db"), ("ENGINE_DB_POOL_SIZE", "4")]);
        let error = DaemonConfig::load_with_env(None, &env).unwrap_err().to_string();
        assert_eq!(error, "environment variable ENGINE_DB_POOL_SIZE: setting `db_pool_size` is 4, expected at least 5");
        let env = env_of(&[("ENGINE_DATABASE_URL", "mysql://x")]);
        let error = DaemonConfig::load_with_env(None, &env).unwrap_err().to_string();
        assert!(
            error.starts_with("environment variable ENGINE_DATABASE_URL: setting `database_url`: expected"),
            "{error}"
        );
        let error = DaemonConfig::load_with_env(None, &env_of(&[])).unwrap_err().to_string();
        assert_eq!(error, "setting `database_url` is required (set it in the config file or as ENGINE_DATABASE_URL)");
    }

    #[test]
    fn database_urls_never_print_passwords() {
        let url = parse_database_url("postgres://app:secret@db:5432/engine").unwrap();
        assert_eq!(url.to_string(), "postgres://…@db:5432/engine");
    }
}
