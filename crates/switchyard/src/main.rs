//! The switchyard binary: serve, check, sim, ctl.

mod ctl;
mod drill;
mod healthcheck;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use switchyard_config::{Config, LogFormat};

/// mimalloc: the gateway allocates and frees a few dozen small objects per request (header
/// maps, futures, the exchange record), and mimalloc's per-thread free lists cost a fraction
/// of glibc's malloc and free. Built without transparent huge pages (the `no_thp` feature):
/// with them a held stream cost half as much resident memory again (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The version and the git commit it was built from (`switchyard_admin::build`).
static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} (commit {})",
        env!("CARGO_PKG_VERSION"),
        switchyard_admin::build::COMMIT
    )
});

#[derive(Parser)]
#[command(
    name = "switchyard",
    version = VERSION.as_str(),
    about = "A reverse-proxy gateway for LLM agent services"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
        /// Overrides [log] format.
        #[arg(long, value_enum)]
        log_format: Option<Format>,
    },
    /// Validate a config: errors name the key and the line; exit 1 when invalid.
    Check {
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Run the simulated agent upstream.
    Sim {
        #[arg(long, default_value = "127.0.0.1:7001")]
        listen: SocketAddr,
        /// A named profile (healthy, instant, slow, flaky, overloaded, token-explosion, truncating, fabricating).
        #[arg(long, default_value = "healthy")]
        profile: String,
        #[arg(long, value_enum, default_value = "text")]
        log_format: Format,
    },
    /// Print the JSON schema of the config file (docs/config.schema.json), for editors.
    Schema,
    /// Print the OpenAPI document of the admin API (docs/openapi.json).
    Openapi,
    /// Talk to a running gateway's admin API: status, kill, revive, reload, incidents, audit.
    Ctl(ctl::CtlArgs),
    /// Replay the seeds' incidents against real gateways and simulated upstreams, and
    /// measure detection, containment, requests affected and lost.
    Drill(drill::DrillArgs),
    /// Probe a gateway's /health: exit 0 when it answers 2xx, 1 otherwise (container health checks).
    Healthcheck {
        #[arg(long, default_value = healthcheck::DEFAULT_URL)]
        url: String,
        /// How long to wait for the answer, e.g. "2s" or "500ms".
        #[arg(long, default_value = "2s", value_parser = ctl::client::parse_timeout)]
        timeout: std::time::Duration,
    },
    /// Print a shell completion script to standard output.
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

fn completions(shell: Shell) -> ExitCode {
    use clap::CommandFactory;
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "switchyard",
        &mut std::io::stdout(),
    );
    ExitCode::SUCCESS
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

/// Installs the log subscriber, and the access log's own writer where its lines look the same
/// (JSON, or text without colours); the returned writer flushes the pending lines when dropped.
fn init_logging(format: Format, level: &str) -> Option<switchyard_proxy::access::AccessWriter> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_ansi(ansi)
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let access = match format {
        Format::Json => {
            builder.json().flatten_event(true).init();
            Some(switchyard_proxy::access::AccessFormat::Json)
        }
        Format::Text => {
            builder.init();
            (!ansi).then_some(switchyard_proxy::access::AccessFormat::Text)
        }
    };
    let installed = access.map(switchyard_proxy::access::install)?;
    installed.unwrap_or_else(|error| {
        tracing::warn!(%error, "no access-log thread: access lines are written inline");
        None
    })
}

/// Pretty JSON and a newline on stdout: the form the documents under docs/ are committed in.
fn print_json(value: &serde_json::Value) -> ExitCode {
    match serde_json::to_string_pretty(value) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

fn check(path: &Path) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
            for warning in &config.warnings {
                eprintln!("warning: {warning}");
            }
            let validated = runtime().map_err(|e| e.to_string()).and_then(|rt| {
                rt.block_on(switchyard::validate_runtime(&config))
                    .map_err(|e| e.to_string())
            });
            if let Err(error) = validated {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
            println!(
                "{}: ok ({} routes, {} upstreams, version {})",
                config.origin,
                config.routes.len(),
                config.upstreams.len(),
                config.version
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn serve(path: &Path, format: Option<Format>) -> ExitCode {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let format = format.unwrap_or(match config.log.format {
        LogFormat::Json => Format::Json,
        LogFormat::Text => Format::Text,
    });
    let _access = init_logging(format, &config.log.level);
    for warning in &config.warnings {
        tracing::warn!(%warning, "config warning");
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(run_until_drained(config));
    // A second signal leaves tasks (streams being cut) behind: do not wait for them.
    rt.shutdown_background();
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Serves until SIGTERM or SIGINT, then drains; a second signal exits at once with status 1.
async fn run_until_drained(config: Config) -> Result<ExitCode, String> {
    // Watched before the gateway starts, so a signal during start-up is not lost.
    let mut signals = switchyard::ShutdownSignals::new().map_err(|e| e.to_string())?;
    let running = switchyard::start(config).await.map_err(|e| e.to_string())?;
    signals.recv().await;
    tracing::info!("shutdown signal: draining; a second signal exits at once");
    tokio::select! {
        drained = running.drain() => {
            tracing::info!(cut = drained.cut, "shut down");
            Ok(ExitCode::SUCCESS)
        }
        () = signals.recv() => {
            tracing::warn!("second shutdown signal: exiting without waiting for requests in flight");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// How long `switchyard sim` waits on SIGTERM for the answers in progress to finish.
const SIM_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

fn sim(listen: SocketAddr, profile: &str, format: Format) -> ExitCode {
    let _access = init_logging(format, "info");
    let Some(p) = switchyard_sim::named(profile) else {
        eprintln!(
            "error: unknown profile {profile:?} (known: {})",
            switchyard_sim::PROFILE_NAMES.join(", ")
        );
        return ExitCode::FAILURE;
    };
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind(listen).await?;
            tracing::info!(addr = %listener.local_addr()?, profile, "simulated agent listening");
            // SIGTERM drains like a real upstream's restart: refused connections from then
            // on, answers in progress finished (held streams cut after SIM_DRAIN).
            let sim = switchyard_sim::Sim::new(p);
            sim.serve_until(listener, switchyard::shutdown_signal(), SIM_DRAIN)
                .await
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, log_format } => serve(&config, log_format),
        Command::Check { config } => check(&config),
        Command::Sim {
            listen,
            profile,
            log_format,
        } => sim(listen, &profile, log_format),
        Command::Schema => print_json(&switchyard_config::json_schema()),
        Command::Openapi => {
            print!("{}", switchyard_admin::openapi::document_json());
            ExitCode::SUCCESS
        }
        Command::Ctl(args) => ctl::run(args),
        Command::Drill(args) => drill::run(args),
        Command::Healthcheck { url, timeout } => healthcheck::run(&url, timeout),
        Command::Completions { shell } => completions(shell),
    }
}
