//! `switchyard ctl`: the admin API's client, written for an on-call engineer on a phone.
//!
//! Plain text by default (narrow tables, UTC times with ages), `--json` for scripts. Errors say
//! what to do next, and the exit code says what kind of failure it was (see [`client`]).

mod api;
pub mod client;
mod commands;
mod history;
mod json;
mod render;
#[cfg(test)]
mod tests;
mod text;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Args, Subcommand};

use client::{Admin, Source, EXIT_REFUSED};
use text::View;

const DEFAULT_URL: &str = "http://127.0.0.1:9090";

#[derive(Args)]
pub struct CtlArgs {
    /// The admin API [default: $SWITCHYARD_ADMIN_URL, else http://127.0.0.1:9090].
    #[arg(long, global = true, value_name = "URL")]
    url: Option<String>,
    /// An admin token [default: $SWITCHYARD_ADMIN_TOKEN]; prefer the variable, `ps` shows flags.
    #[arg(long, global = true, value_name = "TOKEN")]
    token: Option<String>,
    /// Print the server's JSON answer, pretty, instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Give up waiting for the answer after this long (500ms, 10s, 2m).
    #[arg(long, global = true, default_value = "10s", value_parser = client::parse_timeout)]
    timeout: Duration,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Subcommand)]
pub enum CtlCommand {
    /// Routes, kill switches, firing alerts, open incidents, config version.
    Status,
    /// Engage a route's kill switch: new requests get the route's fallback.
    Kill {
        /// The route's name, as `switchyard ctl status` lists it.
        route: String,
        /// Why: shown in status, the incident and the audit log.
        #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
        reason: String,
        /// Kill only this share of users (sticky per user), e.g. 25 or 25%.
        #[arg(long, value_parser = parse_percent)]
        percent: Option<f64>,
        /// Kill only requests whose header has this value, e.g. x-tenant=acme.
        #[arg(long, value_name = "HEADER=VALUE", value_parser = parse_segment)]
        segment: Option<(String, String)>,
    },
    /// Release a route's kill switch.
    Revive {
        /// The route's name, as `switchyard ctl status` lists it.
        route: String,
        /// Why, for the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Send every user of a route back to blue now; the rollout stays rolled back until
    /// promoted or green changes.
    Rollback {
        /// The route's name, as `switchyard ctl status` lists it.
        route: String,
        /// Why, for the incident and the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Send every user of a route to green now, skipping the remaining stages.
    Promote {
        /// The route's name, as `switchyard ctl status` lists it.
        route: String,
        /// Why, for the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Approve the model downgrade a rule is waiting on.
    Approve {
        /// The rule's name, as gateway.toml sets it.
        rule: String,
        /// The route, when the rule watches several.
        #[arg(long)]
        route: Option<String>,
    },
    /// Lift the model downgrade a rule put in force.
    Release {
        /// The rule's name, as gateway.toml sets it.
        rule: String,
        /// The route, when the rule watches several.
        #[arg(long)]
        route: Option<String>,
    },
    /// An A/B experiment's figures per variant and the sequential test's verdict.
    Experiment {
        /// The experiment's name, as gateway.toml sets it.
        name: String,
    },
    /// Re-read the gateway's config file; a rejected config leaves the old one serving.
    Reload,
    /// Incidents, newest first.
    Incidents,
    /// One incident in full.
    Incident {
        /// The incident's id, as `switchyard ctl incidents` lists it.
        id: String,
    },
    /// Acknowledge an incident (needs a human operator token).
    Ack {
        /// The incident's id, as `switchyard ctl incidents` lists it.
        id: String,
        /// What you are doing about it, for the incident record.
        #[arg(long)]
        note: Option<String>,
    },
    /// Who changed what, oldest first.
    Audit {
        /// How many of the latest entries (1-1000) [server default: 100].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: Option<u32>,
    },
}

/// A failed command: what to print and how to exit.
#[derive(Debug)]
pub struct Failure {
    pub exit: u8,
    pub message: String,
    pub hints: Vec<String>,
    /// The server's answer, which `--json` still prints for scripts.
    pub body: Option<Bytes>,
}

impl Failure {
    pub fn new(exit: u8, message: impl Into<String>) -> Failure {
        Failure {
            exit,
            message: message.into(),
            hints: Vec::new(),
            body: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Failure {
        self.hints.push(hint.into());
        self
    }

    pub fn with_body(mut self, body: Bytes) -> Failure {
        self.body = Some(body);
        self
    }
}

/// What a successful command prints.
pub struct Output {
    pub text: String,
    pub warnings: Vec<String>,
    pub json: Bytes,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn view() -> View {
    let now_ms = switchyard_core::clock::system_now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    // Colour only for a person at a terminal that wants it (https://no-color.org).
    let color = std::io::stdout().is_terminal()
        && env("NO_COLOR").is_none()
        && std::env::var("TERM").map_or(true, |t| t != "dumb");
    View { now_ms, color }
}

fn admin(args: &CtlArgs) -> Result<Admin, Failure> {
    let (raw, source) = match (&args.url, env("SWITCHYARD_ADMIN_URL")) {
        (Some(flag), _) => (flag.clone(), Source::Flag),
        (None, Some(var)) => (var, Source::Env),
        (None, None) => (DEFAULT_URL.to_string(), Source::Default),
    };
    let base = client::normalise_url(&raw, source)?;
    let token = args.token.clone().or_else(|| env("SWITCHYARD_ADMIN_TOKEN"));
    Admin::new(base, source, token.as_deref(), args.timeout)
}

/// Runs one ctl command and says how the process should exit.
pub fn run(args: CtlArgs) -> ExitCode {
    let json = args.json;
    let outcome = admin(&args).and_then(|admin| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::new(EXIT_REFUSED, format!("cannot start: {e}")))?;
        runtime.block_on(commands::execute(&admin, &args.command, json, &view()))
    });
    // Written, not println!: a reader that goes away (`| head`) must not make ctl panic.
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    match outcome {
        Ok(output) => {
            for warning in &output.warnings {
                let _ = writeln!(err, "{warning}");
            }
            let _ = if json {
                writeln!(out, "{}", json::pretty(&output.json))
            } else {
                write!(out, "{}", output.text)
            };
            ExitCode::SUCCESS
        }
        Err(failure) => {
            if let Some(body) = failure.body.as_ref().filter(|_| json) {
                let _ = writeln!(out, "{}", json::pretty(body));
            }
            let _ = writeln!(err, "error: {}", failure.message);
            for hint in &failure.hints {
                let _ = writeln!(err, "{hint}");
            }
            ExitCode::from(failure.exit)
        }
    }
}

fn parse_percent(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches('%');
    match number.parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => Err(format!(
            "{text:?}: give a share of users above 0 and at most 100, e.g. 25"
        )),
    }
}

fn parse_segment(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((header, value)) if !header.trim().is_empty() && !value.is_empty() => {
            Ok((header.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("{text:?}: write HEADER=VALUE, e.g. x-tenant=acme")),
    }
}
