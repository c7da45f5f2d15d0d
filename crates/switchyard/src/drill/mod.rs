//! `switchyard drill`: replays the seeds' incidents against real gateways and simulated
//! upstreams, and measures time to detect, time to contain, requests affected and lost.

mod fleet;
mod harness;
mod kill;
mod load;
mod report;
mod rollout;
mod signals;
mod watch;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

pub use report::{Outcome, Report, Verdict};

use harness::{Http, Scale};

#[derive(Args)]
pub struct DrillArgs {
    #[command(subcommand)]
    command: DrillCommand,
}

#[derive(Subcommand)]
enum DrillCommand {
    /// The scenarios, their seeds and what each expects.
    List,
    /// Run scenarios (or `all`): exit 1 when any fails.
    Run {
        /// Scenario names, or `all`.
        #[arg(required = true)]
        scenarios: Vec<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Divide every window, bake and latency by this (60: a 10-minute bake takes 10 s).
        #[arg(long, default_value_t = 1.0, value_parser = parse_speed)]
        speed: f64,
    },
}

fn parse_speed(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(s) if s.is_finite() && (1.0..=1000.0).contains(&s) => Ok(s),
        _ => Err(format!(
            "speed must be a number from 1 to 1000, got {raw:?}"
        )),
    }
}

/// A scenario: its name, the seed it replays and what it expects the gateway to do.
pub struct Scenario {
    pub name: &'static str,
    pub seed: &'static str,
    pub expected: &'static str,
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario { name: "pool-exhaustion", seed: "000", expected: "traffic-spike and saturation alerts; shedding keeps the upstream within its concurrency limit" },
    Scenario { name: "context-creep", seed: "001", expected: "the context-fill alert fires before the error rate moves" },
    Scenario { name: "prompt-regression", seed: "001 quiz", expected: "during the shift an alert sends traffic back to blue; after completion the 5 % / 60 s triggers do not fire" },
    Scenario { name: "cost-regression", seed: "001", expected: "rollback by the cost trigger (green +60 % per request)" },
    Scenario { name: "new-exception", seed: "001", expected: "rollback by the new-error-class trigger (0.5 % of an error blue never produced)" },
    Scenario { name: "token-explosion", seed: "003", expected: "throttle_and_alert when tokens per request go from 2,500 to 6,000" },
    Scenario { name: "latency-creep", seed: "003", expected: "escalate (webhook to the pager) when p95 creeps from 2.5 s to 9 s" },
    Scenario { name: "quality-drop", seed: "003", expected: "rollback_and_notify when the feedback score falls below 0.65" },
    Scenario { name: "bad-snapshot", seed: "002", expected: "feedback catches a fabricating snapshot; an operator kill from `switchyard ctl` serves the SDK-shaped fallback on every replica" },
    Scenario { name: "kill-propagation", seed: "002", expected: "a kill on one replica of three reaches the last replica within the reconcile interval" },
];

/// What a scenario runs with.
pub struct Ctx {
    pub http: Http,
    pub scale: Scale,
    pub fleet: fleet::Support,
}

pub fn run(args: DrillArgs) -> ExitCode {
    match args.command {
        DrillCommand::List => {
            for s in SCENARIOS {
                println!("{:<18} seed {:<9} {}", s.name, s.seed, s.expected);
            }
            ExitCode::SUCCESS
        }
        DrillCommand::Run {
            scenarios,
            json,
            speed,
        } => run_scenarios(&scenarios, json, speed),
    }
}

fn run_scenarios(names: &[String], json: bool, speed: f64) -> ExitCode {
    let chosen = match choose(names) {
        Ok(chosen) => chosen,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let rt = match crate::runtime() {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let report = rt.block_on(run_all(&chosen, speed, !json));
    if json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn choose(names: &[String]) -> Result<Vec<&'static Scenario>, String> {
    if names.iter().any(|n| n == "all") {
        return Ok(SCENARIOS.iter().collect());
    }
    names
        .iter()
        .map(|name| {
            SCENARIOS.iter().find(|s| s.name == name).ok_or_else(|| {
                let known: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
                format!(
                    "unknown scenario {name:?} (known: all, {})",
                    known.join(", ")
                )
            })
        })
        .collect()
}

async fn run_all(chosen: &[&'static Scenario], speed: f64, progress: bool) -> Report {
    let started = switchyard_core::clock::now();
    let ctx = Ctx {
        http: Http::new(),
        scale: Scale { speed },
        fleet: fleet::Support::detect(),
    };
    let mut outcomes = Vec::with_capacity(chosen.len());
    for scenario in chosen {
        if progress {
            eprintln!("drill: {} (seed {}) …", scenario.name, scenario.seed);
        }
        let outcome = run_one(scenario, &ctx).await;
        outcomes.push(outcome);
    }
    Report {
        speed,
        took: started.elapsed(),
        outcomes,
    }
}

/// The longest one scenario may take, scaled, plus a fixed margin for start-up.
fn scenario_limit(scale: Scale) -> Duration {
    scale.dur(3600.0) + Duration::from_secs(60)
}

async fn run_one(scenario: &'static Scenario, ctx: &Ctx) -> Outcome {
    let run = async {
        match scenario.name {
            "pool-exhaustion" => signals::pool_exhaustion(scenario, ctx).await,
            "context-creep" => signals::context_creep(scenario, ctx).await,
            "token-explosion" => signals::token_explosion(scenario, ctx).await,
            "latency-creep" => signals::latency_creep(scenario, ctx).await,
            "prompt-regression" => rollout::prompt_regression(scenario, ctx).await,
            "cost-regression" => rollout::cost_regression(scenario, ctx).await,
            "new-exception" => rollout::new_exception(scenario, ctx).await,
            "quality-drop" => rollout::quality_drop(scenario, ctx).await,
            "bad-snapshot" => kill::bad_snapshot(scenario, ctx).await,
            "kill-propagation" => kill::kill_propagation(scenario, ctx).await,
            other => Err(format!("no such scenario {other:?}")),
        }
    };
    match tokio::time::timeout(scenario_limit(ctx.scale), run).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(error)) => failed(scenario, error),
        Err(_) => failed(scenario, "the scenario did not finish in time".to_owned()),
    }
}

/// A scenario that could not be carried out.
fn failed(scenario: &'static Scenario, error: String) -> Outcome {
    Outcome {
        scenario: scenario.name,
        seed: scenario.seed,
        expected: scenario.expected,
        detected_after: None,
        contained_after: None,
        affected: 0,
        lost: 0,
        requests: 0,
        streamed: 0,
        incident: None,
        verdict: Verdict::Fail,
        note: format!("FAILED: {error}"),
    }
}

/// The common part of every scenario's TOML: the model and its price.
const MODELS: &str = r#"
[models."gpt-4o"]
context_window = 128000
input_usd_per_mtok = 2.5
output_usd_per_mtok = 10.0
"#;

/// Requests after `t0` and before containment (all after `t0` if never contained) that `bad`
/// says went down the bad path.
fn affected(
    log: &[load::Exchange],
    t0: Instant,
    contained: Option<Duration>,
    bad: impl Fn(&load::Exchange) -> bool,
) -> u64 {
    let end = contained.map(|c| t0 + c);
    load::count(log, |e| {
        e.at >= t0 && end.is_none_or(|end| e.at <= end) && bad(e)
    })
}

/// The scenario's outcome from what was measured and checked.
fn outcome(
    scenario: &'static Scenario,
    seen: (Option<Duration>, Option<Duration>),
    affected: u64,
    log: &[load::Exchange],
    incident: Option<&serde_json::Value>,
    checks: report::Checks,
) -> Outcome {
    let lost = load::count(log, load::Exchange::lost);
    let (verdict, note) = checks.verdict(lost);
    Outcome {
        scenario: scenario.name,
        seed: scenario.seed,
        expected: scenario.expected,
        detected_after: seen.0,
        contained_after: seen.1,
        affected,
        lost,
        requests: log.len() as u64,
        streamed: load::count(log, |e| e.stream),
        incident: incident.and_then(|i| i["id"].as_str()).map(str::to_owned),
        verdict,
        note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_chooses_every_scenario_and_unknown_names_are_listed() {
        assert_eq!(choose(&["all".to_owned()]).unwrap().len(), SCENARIOS.len());
        let two = choose(&["cost-regression".to_owned(), "context-creep".to_owned()]).unwrap();
        assert_eq!(two[0].name, "cost-regression");
        let error = choose(&["pool".to_owned()]).err().unwrap();
        assert!(error.contains("known: all, pool-exhaustion"), "{error}");
    }

    #[test]
    fn speed_is_bounded() {
        assert!(parse_speed("60").is_ok());
        assert!(parse_speed("0").is_err());
        assert!(parse_speed("NaN").is_err());
    }
}
