//! `engined`: the engine's production daemon. A thin `main`: parse the command
//! line, load the configuration, run [`engine::daemon`]; errors print their
//! whole chain and exit 1. Not built under the simulator (`--cfg madsim`).

#[cfg(not(madsim))]
mod cli {
    use std::path::PathBuf;
    use std::process::ExitCode;
    use std::sync::Arc;

    use anyhow::Context;
    use clap::{Parser, Subcommand};
    use engine::daemon::config::{parse_duration, KEYS};
    use engine::daemon::{self, DaemonConfig, LogFormat, ProvisionerOptions};
    use engine::runtime::{SharedClock, SystemClock};

    #[derive(Parser)]
    #[command(
        name = "engined",
        version,
        about = "The workspace engine's daemon: lifecycle loops, a JSON HTTP API, Prometheus metrics",
        after_help = after_help()
    )]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Subcommand)]
    enum Command {
        /// Run the engine and its HTTP API until SIGTERM or SIGINT.
        Serve {
            /// A TOML configuration file (every key may also come from `ENGINE_<KEY>`).
            #[arg(long, value_name = "FILE")]
            config: Option<PathBuf>,
            /// Log format, overriding the configuration: text or json.
            #[arg(long, value_name = "FORMAT")]
            log_format: Option<String>,
        },
        /// Apply the database migrations the database lacks, then exit.
        Migrate {
            #[arg(long, value_name = "FILE")]
            config: Option<PathBuf>,
            #[arg(long, value_name = "FORMAT")]
            log_format: Option<String>,
        },
        /// Run a simple provisioner against a daemon's HTTP API (for trying it out).
        Provision {
            /// The daemon's base URL.
            #[arg(long, default_value = "http://127.0.0.1:8080")]
            api: String,
            /// The provisioner's name (its id is derived from it).
            #[arg(long, default_value = "engined-provisioner")]
            name: String,
            /// How long each "build" takes.
            #[arg(long, default_value = "2s", value_parser = parse_span)]
            build_duration: engine::time::Span,
            /// The least time between two asks for a job (and the retry delay after an error).
            #[arg(long, default_value = "1s", value_parser = parse_span)]
            poll_interval: engine::time::Span,
            /// Long poll: how long each ask waits on the daemon for a job (0: plain polling; at most 30s).
            #[arg(long, default_value = "10s", value_parser = parse_wait)]
            wait: engine::time::Span,
            /// How often to report itself alive.
            #[arg(long, default_value = "10s", value_parser = parse_span)]
            heartbeat_interval: engine::time::Span,
            /// Also report the workspace's agent ready after each start.
            #[arg(long)]
            agent_ready: bool,
            #[arg(long, value_name = "FORMAT", default_value = "text")]
            log_format: String,
        },
    }

    fn parse_span(text: &str) -> Result<engine::time::Span, String> {
        parse_duration(text)
    }

    fn parse_wait(text: &str) -> Result<engine::time::Span, String> {
        let wait = parse_duration(text)?;
        if wait > engine::limits::ACQUIRE_WAIT_MAX {
            return Err(format!("{wait} is longer than the maximum {}", engine::limits::ACQUIRE_WAIT_MAX));
        }
        Ok(wait)
    }

    fn after_help() -> String {
        let mut text = String::from("Configuration keys (file `key = value`, or environment ENGINE_<KEY>):\n");
        for (key, meaning) in KEYS {
            text.push_str(&format!("  {key:<28} {meaning}\n"));
        }
        text
    }

    fn load(config: Option<&PathBuf>, log_format: Option<&String>) -> anyhow::Result<DaemonConfig> {
        let mut loaded = DaemonConfig::load(config.map(PathBuf::as_path))?;
        if let Some(format) = log_format {
            loaded.log_format = format.parse::<LogFormat>().map_err(anyhow::Error::msg).context("--log-format")?;
        }
        daemon::init_logging(loaded.log_format, &loaded.log_filter)?;
        Ok(loaded)
    }

    fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the tokio runtime")
    }

    fn run(cli: Cli) -> anyhow::Result<()> {
        match cli.command {
            Command::Serve { config, log_format } => {
                let config = load(config.as_ref(), log_format.as_ref())?;
                runtime()?.block_on(daemon::serve(config))?;
            }
            Command::Migrate { config, log_format } => {
                let config = load(config.as_ref(), log_format.as_ref())?;
                let applied = runtime()?.block_on(daemon::migrate(&config))?;
                if applied.is_empty() {
                    println!("database {} is up to date", config.database);
                } else {
                    let versions: Vec<String> = applied.iter().map(i32::to_string).collect();
                    println!("database {}: applied migrations {}", config.database, versions.join(", "));
                }
            }
            Command::Provision {
                api,
                name,
                build_duration,
                poll_interval,
                wait,
                heartbeat_interval,
                agent_ready,
                log_format,
            } => {
                let format = log_format.parse::<LogFormat>().map_err(anyhow::Error::msg).context("--log-format")?;
                daemon::init_logging(format, "info")?;
                let options = ProvisionerOptions {
                    api,
                    name,
                    build_duration,
                    poll_interval,
                    wait,
                    heartbeat_interval,
                    agent_ready,
                };
                let clock: SharedClock = Arc::new(SystemClock);
                runtime()?.block_on(async move {
                    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .context("installing the SIGTERM handler")?;
                    let stop = async move {
                        tokio::select! {
                            biased;
                            _ = terminate.recv() => {}
                            _ = tokio::signal::ctrl_c() => {}
                        }
                    };
                    daemon::run_provisioner(options, clock, stop).await.map_err(anyhow::Error::from)
                })?;
            }
        }
        Ok(())
    }

    pub fn main() -> ExitCode {
        match run(Cli::parse()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("engined: error: {error:#}");
                ExitCode::FAILURE
            }
        }
    }
}

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(madsim)]
fn main() {
    eprintln!("engined is not built under the simulator (--cfg madsim)");
}
