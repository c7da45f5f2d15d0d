//! Incidents of a release during (or after) a blue/green rollout: seed 001's quiz, cost
//! regression and new exception, and seed 003's quality drop.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard_sim::{Profile, FABRICATING_SNAPSHOT};

use super::harness::{evidence_models, has_evidence, scratch, Http, Replica, Scale, Upstream};
use super::load::{self, Evaluator, Exchange, Load, Shape};
use super::report::Checks;
use super::signals::warmup;
use super::watch::{self, watch, Seen};
use super::{affected, outcome, Ctx, Outcome, Scenario, MODELS};

const GREEN: &str = "v1-1";
const BLUE: &str = "v1-0";

/// What happens to green.
enum Inject {
    /// `PATCH /sim/profile` with these fields.
    Patch(Value),
    /// `POST /sim/profile/{name}`.
    Switch(&'static str),
}

/// When the gateway counts as having seen it.
enum Detect {
    /// Any alert of the route.
    Alert,
    /// This rule fires.
    Rule(&'static str),
    /// The rollback itself (a rollback trigger is its own detection).
    Rollback,
}

struct Spec {
    blue: Profile,
    green: Profile,
    stages: &'static str,
    /// Extra `[alerts]` keys, `[routes.rollback]` keys, and top-level tables (rules).
    alerts: String,
    rollback: String,
    extra: String,
    /// Blue answers some requests with a 500 before the drill: its error class is known.
    blue_history: bool,
    inject: Inject,
    detect: Detect,
    evaluator: Option<Evaluator>,
}

struct Run {
    seen: Seen,
    log: Vec<Exchange>,
    t0: Instant,
    incident: Option<Value>,
    /// Answers from green after the rollback (and a grace for requests already sent).
    green_after: u64,
}

/// The drill's traffic starts from nothing, so the spike alert is set out of reach: it
/// would compare the drill with the silence before it.
fn config(scale: Scale, blue: &Upstream, green: &Upstream, spec: &Spec) -> String {
    format!(
        "{MODELS}\n[alerts]\nwindow = {window}\nmin_requests = 20\ntraffic_spike = 1000.0\n{alerts}\n\n[upstreams.{BLUE}]\nurl = \"{blue}\"\n\n[upstreams.{GREEN}]\nurl = \"{green}\"\n\n[[routes]]\nname = \"support\"\n\n[routes.rollout]\nblue = \"{BLUE}\"\ngreen = \"{GREEN}\"\nstages = {stages}\nbake = {bake}\n\n[routes.rollback]\nerror_window = {window}\nmin_requests = 20\n{rollback}\n\n{extra}",
        window = scale.toml_secs(120.0, 2),
        alerts = spec.alerts,
        blue = blue.url(),
        green = green.url(),
        stages = spec.stages,
        bake = scale.toml_secs(600.0, 1),
        rollback = spec.rollback,
        extra = spec.extra,
    )
}

async fn run(s: &'static Scenario, ctx: &Ctx, spec: Spec) -> Result<Run, String> {
    let scale = ctx.scale;
    let blue = Upstream::start(spec.blue.clone()).await?;
    let green = Upstream::start(spec.green.clone()).await?;
    let gw = Replica::start(&config(scale, &blue, &green, &spec), &scratch(s.name, 0)).await?;
    if spec.blue_history {
        give_blue_a_history(&ctx.http, &gw, &blue, &spec.blue, scale).await?;
    }
    let shape = Shape {
        workers: 8,
        evaluator: spec.evaluator,
        ..Shape::default()
    };
    let load = Load::start(&ctx.http, gw.traffic, shape);
    tokio::time::sleep(warmup(scale)).await;
    let t0 = switchyard_core::clock::now();
    match spec.inject {
        Inject::Patch(fields) => green.patch(&ctx.http, fields).await?,
        Inject::Switch(name) => green.switch(&ctx.http, name).await?,
    }
    let detect = |st: &Value| match spec.detect {
        Detect::Alert => !watch::alerts_on(st, "support").is_empty(),
        Detect::Rule(rule) => watch::rule(st, rule, "support"),
        Detect::Rollback => watch::phase(st, "support") == "rolled_back",
    };
    let seen = watch(
        &gw,
        &ctx.http,
        t0,
        scale.dur(600.0) + Duration::from_secs(15),
        detect,
        |st| watch::phase(st, "support") == "rolled_back",
    )
    .await;
    // Traffic goes on after the rollback: it must all be blue's.
    tokio::time::sleep(scale.dur(60.0).max(Duration::from_secs(1))).await;
    let log = load.stop().await;
    let incident = watch::incident(&gw, &ctx.http, "rollback", Duration::from_secs(2)).await;
    gw.stop().await;
    let grace = Duration::from_millis(500) + scale.dur(45.0);
    let green_after = seen.contained.map_or(0, |c| {
        load::count(&log, |e| {
            e.at > t0 + c + grace && e.upstream.as_deref() == Some(GREEN)
        })
    });
    Ok(Run {
        seen,
        log,
        t0,
        incident,
        green_after,
    })
}

/// Blue has answered with a 500 before (so its error class is known), then that history
/// leaves the alert window before the drill's traffic starts.
async fn give_blue_a_history(
    http: &Http,
    gw: &Replica,
    blue: &Upstream,
    profile: &Profile,
    scale: Scale,
) -> Result<(), String> {
    blue.patch(http, json!({"error_rate": 1.0, "even_errors": false}))
        .await?;
    let history = Load::start(
        http,
        gw.traffic,
        Shape {
            workers: 1,
            users: 8,
            first_user: 90_000,
            ..Shape::default()
        },
    );
    let deadline = switchyard_core::clock::now() + Duration::from_secs(5);
    while switchyard_core::clock::now() < deadline {
        if load::count(&history.snapshot(), |e| {
            e.status == 500 && e.upstream.as_deref() == Some(BLUE)
        }) > 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let log = history.stop().await;
    blue.patch(
        http,
        json!({"error_rate": profile.error_rate, "even_errors": profile.even_errors}),
    )
    .await?;
    if load::count(&log, |e| {
        e.status == 500 && e.upstream.as_deref() == Some(BLUE)
    }) == 0
    {
        return Err("blue never answered with a 500 for its history".to_owned());
    }
    tokio::time::sleep(scale.dur(120.0).max(Duration::from_secs(2)) + Duration::from_secs(1)).await;
    Ok(())
}

/// The rollback checks every rollout scenario makes.
fn rollback_checks(r: &Run, reason: &str, trigger: &str) -> Checks {
    let mut checks = Checks::default();
    checks.check(r.seen.detected.is_some(), "the gateway saw the incident");
    checks.check(r.seen.contained.is_some(), "the rollout went back to blue");
    checks.check(
        reason.starts_with(trigger),
        format!("the trigger was {trigger} (it was {reason:?})"),
    );
    checks.check(
        r.green_after == 0,
        format!(
            "no answer from green after the rollback ({} seen)",
            r.green_after
        ),
    );
    checks.check(
        r.incident.as_ref().is_some_and(has_evidence),
        "the rollback's incident carries model and prompt evidence",
    );
    checks
}

fn finish(s: &'static Scenario, r: &Run, checks: Checks) -> Outcome {
    let bad = affected(&r.log, r.t0, r.seen.contained, |e| {
        e.upstream.as_deref() == Some(GREEN)
    });
    outcome(
        s,
        (r.seen.detected, r.seen.contained),
        bad,
        &r.log,
        r.incident.as_ref(),
        checks,
    )
}

fn reason(r: &Run) -> String {
    r.incident
        .as_ref()
        .and_then(|i| i["trigger"]["name"].as_str())
        .map_or_else(
            || watch::rollout_reason(&r.seen.last, "support"),
            str::to_owned,
        )
}

fn quick(scale: Scale) -> Profile {
    Profile {
        ttfb_ms: scale.ms(1000.0),
        ttfb_jitter_ms: scale.ms(300.0),
        completion_tokens: 120,
        ..Profile::default()
    }
}

/// Seed 001: green costs 60 % more per request (its prompt grew) → the cost trigger.
pub async fn cost_regression(s: &'static Scenario, ctx: &Ctx) -> Result<Outcome, String> {
    let spec = Spec {
        blue: quick(ctx.scale),
        green: quick(ctx.scale),
        stages: "[50, 100]",
        alerts: String::new(),
        rollback: "cost_increase = 0.5\n".to_owned(),
        extra: String::new(),
        blue_history: false,
        inject: Inject::Patch(json!({"token_inflation": 1.6})),
        detect: Detect::Rollback,
        evaluator: None,
    };
    let r = run(s, ctx, spec).await?;
    let why = reason(&r);
    let mut checks = rollback_checks(&r, &why, "cost_increase");
    if let Some(figures) = r.incident.as_ref().map(|i| &i["trigger"]["figures"]) {
        let (g, b) = (
            figures["green_cost_per_request_usd"].as_f64(),
            figures["blue_cost_per_request_usd"].as_f64(),
        );
        if let (Some(g), Some(b)) = (g, b) {
            checks.note(format!(
                "green {:.0} % of blue's cost per request",
                100.0 * g / b.max(f64::MIN_POSITIVE)
            ));
        }
    }
    Ok(finish(s, &r, checks))
}

/// Seed 001: green raises an error type blue never produced, at 0.5 % → rollback.
pub async fn new_exception(s: &'static Scenario, ctx: &Ctx) -> Result<Outcome, String> {
    let spec = Spec {
        blue: quick(ctx.scale),
        green: quick(ctx.scale),
        stages: "[50, 100]",
        alerts: String::new(),
        rollback: String::new(),
        extra: String::new(),
        blue_history: false,
        inject: Inject::Patch(
            json!({"error_rate": 0.005, "even_errors": true, "error_type": "tool_schema_error"}),
        ),
        detect: Detect::Rollback,
        evaluator: None,
    };
    let r = run(s, ctx, spec).await?;
    let why = reason(&r);
    let mut checks = rollback_checks(&r, &why, "new_error_class");
    let class = r
        .incident
        .as_ref()
        .and_then(|i| i["trigger"]["figures"]["error_class"].as_str())
        .unwrap_or("-");
    checks.check(
        class == "tool_schema_error",
        format!("the incident names the new class (it names {class})"),
    );
    checks.note(format!(
        "green's new class: {class}, which blue never produced"
    ));
    Ok(finish(s, &r, checks))
}

/// What the application's evaluator says of an answer (the drill's stand-in for semantic
/// similarity to a known-good answer): a fabricating snapshot's answers score 0.3.
fn evaluator(e: &Exchange) -> Option<f64> {
    let fabricated = e
        .model
        .as_deref()
        .is_some_and(|m| m.ends_with(FABRICATING_SNAPSHOT));
    Some(if fabricated { 0.3 } else { 0.9 })
}

pub(super) const QUALITY_EVALUATOR: Evaluator = evaluator;

/// Seed 003's third rule: the released version's answers score below 0.65 → back to blue.
pub async fn quality_drop(s: &'static Scenario, ctx: &Ctx) -> Result<Outcome, String> {
    let window = ctx.scale.toml_secs(600.0, 2);
    let spec = Spec {
        blue: quick(ctx.scale),
        green: quick(ctx.scale),
        stages: "[100]",
        alerts: String::new(),
        rollback: String::new(),
        extra: format!("[[rules]]\nname = \"output_quality_drop\"\nroute = \"support\"\nmetric = \"feedback_score\"\nbaseline = 0.87\nbelow = 0.65\nwindow = {window}\nmin_requests = 20\naction = \"rollback_and_notify\"\n"),
        blue_history: false,
        inject: Inject::Switch("fabricating"),
        detect: Detect::Rule("output_quality_drop"),
        evaluator: Some(evaluator),
    };
    let r = run(s, ctx, spec).await?;
    let why = reason(&r);
    let mut checks = rollback_checks(&r, &why, "rule:output_quality_drop");
    let models = r.incident.as_ref().map(evidence_models).unwrap_or_default();
    checks.check(
        models.contains(FABRICATING_SNAPSHOT),
        format!("the evidence names the fabricating snapshot ({models})"),
    );
    checks.note(format!("models in the evidence: {models}"));
    Ok(finish(s, &r, checks))
}

/// The quiz's figures: v1.0 at 0.3 % errors and p99 8 s, v1.1 at 2.8 % and p99 42 s, with the
/// same class of error. ttfb uniform in [0, 2m]: p99 ≈ 2m × 0.99.
fn quiz_blue(scale: Scale) -> Profile {
    Profile {
        ttfb_ms: scale.ms(4050.0),
        ttfb_jitter_ms: scale.ms(4050.0),
        error_rate: 0.003,
        even_errors: true,
        ..Profile::default()
    }
}

fn quiz_green_fields(scale: Scale) -> Value {
    json!({"error_rate": 0.028, "even_errors": true, "ttfb_ms": scale.ms(21_200.0), "ttfb_jitter_ms": scale.ms(21_200.0)})
}

/// The seed's thresholds, scaled: alert at 1 % and p99 30 s; triggers at 5 % and p99 60 s.
fn quiz_thresholds(scale: Scale) -> (String, String) {
    let ms = |nominal: f64| format!("\"{}ms\"", scale.ms(nominal).round().max(1.0));
    (
        format!("error_rate = 0.01\np99_latency = {}\n", ms(30_000.0)),
        format!("error_rate = 0.05\np99_latency = {}\n", ms(60_000.0)),
    )
}

/// Seed 001's quiz: during the shift the 1 % alert sends everyone back to v1.0; once the
/// rollout has completed, the same figures trip neither 5 % / 60 s trigger.
pub async fn prompt_regression(s: &'static Scenario, ctx: &Ctx) -> Result<Outcome, String> {
    let scale = ctx.scale;
    let (alerts, rollback) = quiz_thresholds(scale);
    let spec = Spec {
        blue: quiz_blue(scale),
        green: quiz_blue(scale),
        stages: "[50, 100]",
        alerts: alerts.clone(),
        rollback: rollback.clone(),
        extra: String::new(),
        blue_history: true,
        inject: Inject::Patch(quiz_green_fields(scale)),
        detect: Detect::Alert,
        evaluator: None,
    };
    let r = run(s, ctx, spec).await?;
    let why = reason(&r);
    let mut checks = rollback_checks(&r, &why, "alert:");
    checks.check(
        why == "alert:error_rate" || why == "alert:p99_latency",
        format!("the alert was the error rate's or p99's (it was {why})"),
    );
    let completed = after_completion(s, ctx, &alerts, &rollback).await?;
    checks.check(
        completed.phase == "complete",
        format!(
            "after completion nothing rolled back (phase {})",
            completed.phase
        ),
    );
    checks.check(
        completed.lost == 0,
        format!("{} requests lost after completion", completed.lost),
    );
    checks.note(format!(
        "during the shift: {why}; after completion v1.1 served {} requests at {:.1} % errors, p99 ≈ 42 s: below the 5 % and 60 s triggers, the class (server_error) is v1.0's own, and alerts ({}) roll back only while shifting",
        completed.green, completed.error_pct, if completed.alerts.is_empty() { "none".to_owned() } else { completed.alerts.join(", ") }
    ));
    Ok(finish(s, &r, checks))
}

struct Completed {
    phase: String,
    green: u64,
    error_pct: f64,
    lost: u64,
    alerts: Vec<String>,
}

/// The same figures on a rollout that completed before v1.1 went bad.
async fn after_completion(
    s: &'static Scenario,
    ctx: &Ctx,
    alerts: &str,
    rollback: &str,
) -> Result<Completed, String> {
    let scale = ctx.scale;
    let spec = completed_spec(scale, alerts, rollback);
    let blue = Upstream::start(spec.blue.clone()).await?;
    let green = Upstream::start(spec.green.clone()).await?;
    let gw = Replica::start(&config(scale, &blue, &green, &spec), &scratch(s.name, 1)).await?;
    green.patch(&ctx.http, quiz_green_fields(scale)).await?;
    let load = Load::start(
        &ctx.http,
        gw.traffic,
        Shape {
            workers: 12,
            ..Shape::default()
        },
    );
    // Two error windows of v1.1 at its worst: every look of the controller sees it.
    let seen = watch(
        &gw,
        &ctx.http,
        switchyard_core::clock::now(),
        scale.dur(240.0).max(Duration::from_secs(4)),
        |_| false,
        |_| false,
    )
    .await;
    let log = load.stop().await;
    gw.stop().await;
    Ok(completed(&log, &seen))
}

/// A rollout straight to 100 % of a green that starts well and then goes bad.
fn completed_spec(scale: Scale, alerts: &str, rollback: &str) -> Spec {
    Spec {
        blue: quiz_blue(scale),
        green: quiz_blue(scale),
        stages: "[100]",
        alerts: alerts.to_owned(),
        rollback: rollback.to_owned(),
        extra: String::new(),
        blue_history: false,
        inject: Inject::Patch(Value::Null),
        detect: Detect::Alert,
        evaluator: None,
    }
}

/// The figures of a completed rollout: its last phase, green's traffic and errors.
fn completed(log: &[Exchange], seen: &Seen) -> Completed {
    let green_n = load::count(log, |e| e.upstream.as_deref() == Some(GREEN));
    let errors = load::count(log, |e| {
        e.upstream.as_deref() == Some(GREEN) && e.status >= 500
    });
    Completed {
        phase: format!(
            "{} {}",
            watch::phase(&seen.last, "support"),
            watch::rollout_reason(&seen.last, "support")
        )
        .trim()
        .to_owned(),
        green: green_n,
        error_pct: 100.0 * errors as f64 / green_n.max(1) as f64,
        lost: load::count(log, Exchange::lost),
        alerts: seen.alerts.iter().cloned().collect(),
    }
}
