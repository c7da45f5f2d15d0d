//! Incidents of one upstream: seed 000's pool exhaustion, seed 001's context creep and seed
//! 003's token explosion and latency creep.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard_sim::Profile;

use super::harness::{has_evidence, scratch, Http, Pager, Replica, Scale, Upstream};
use super::load::{self, Load, Shape};
use super::report::Checks;
use super::watch::{self, watch, Seen};
use super::{affected, outcome, Ctx, Outcome, Scenario, MODELS};

/// Traffic before the injection: enough for every window's minimum.
pub fn warmup(scale: Scale) -> Duration {
    scale.dur(120.0).max(Duration::from_millis(1500))
}

/// How long the gateway gets to notice, after the injection.
fn patience(scale: Scale, nominal_window: f64) -> Duration {
    scale.dur(nominal_window * 3.0) + Duration::from_secs(10)
}

/// One route `support` to one upstream `agent`, plus `extra` (alerts, rules, limits).
fn one_route(url: &str, route_extra: &str, extra: &str) -> String {
    format!(
        "{MODELS}\n[upstreams.agent]\nurl = \"{url}\"\n\n[[routes]]\nname = \"support\"\nupstream = \"agent\"\n{route_extra}\n{extra}"
    )
}

/// Applies each profile patch in turn, `every` apart, through the sim's control endpoint.
fn ramp(
    http: &Http,
    up: &Upstream,
    every: Duration,
    steps: Vec<Value>,
) -> tokio::task::JoinHandle<()> {
    let (http, url) = (http.clone(), up.url());
    tokio::spawn(async move {
        for fields in steps {
            let _ = super::harness::patch_url(&http, &url, fields).await;
            tokio::time::sleep(every).await;
        }
    })
}

/// Seed 001: tool-call history grows the prompt the agent reports, call after call, until the
/// context window is nearly full; quality suffers long before anything errs.
pub async fn context_creep(s: &'static Scenario, ctx: &Ctx) -> Result<Outcome, String> {
    let scale = ctx.scale;
    let up = Upstream::start(Profile {
        prompt_tokens: Some(20_000),
        completion_tokens: 120,
        ttfb_ms: scale.ms(1500.0),
        ttfb_jitter_ms: scale.ms(500.0),
        ..Profile::default()
    })
    .await?;
    let window = scale.toml_secs(300.0, 2);
    let extra = format!(
        "[alerts]\nwindow = {window}\nmin_requests = 20\n\n[[rules]]\nname = \"context_creep\"\nroute = \"support\"\nmetric = \"context_fill\"\nabove = 0.8\nwindow = {window}\nmin_requests = 20\naction = \"alert\"\n"
    );
    let gw = Replica::start(&one_route(&up.url(), "", &extra), &scratch(s.name, 0)).await?;
    let load = Load::start(&ctx.http, gw.traffic, Shape::default());
    tokio::time::sleep(warmup(scale)).await;
    let t0 = switchyard_core::clock::now();
    // Seven tool calls, each adding 15,000 tokens of results: 35k … 125k of 128k.
    let steps = (1..=7u64)
        .map(|k| json!({"prompt_tokens": 20_000 + 15_000 * k}))
        .collect();
    let ramping = ramp(&ctx.http, &up, scale.dur(30.0), steps);
    let seen = watch(
        &gw,
        &ctx.http,
        t0,
        patience(scale, 300.0),
        |st| watch::alert(st, "context_fill", "support"),
        |st| watch::rule(st, "context_creep", "support"),
    )
    .await;
    ramping.abort();
    let (log, incident) = finish_rule_drill(gw, load, &ctx.http).await;

    let checks = context_creep_checks(&seen, t0, &log, incident.as_ref());
    let bad = affected(&log, t0, seen.detected, |e| e.status == 200);
    Ok(outcome(
        s,
        (seen.detected, None),
        bad,
        &log,
        incident.as_ref(),
        checks,
    ))
}

/// What context creep must show: the fill alert before any error, and an incident with evidence.
fn context_creep_checks(
    seen: &Seen,
    t0: Instant,
    log: &[load::Exchange],
    incident: Option<&Value>,
) -> Checks {
    let mut checks = Checks::default();
    checks.check(seen.detected.is_some(), "the context_fill alert fired");
    let before = seen.detected.map(|d| t0 + d);
    let errors_before = load::count(log, |e| {
        e.at >= t0 && before.is_some_and(|b| e.at <= b) && (e.status >= 500 || e.status == 429)
    });
    checks.check(
        errors_before == 0,
        format!("no error before the alert ({errors_before} seen)"),
    );
    let error_alert = seen
        .at_detection
        .as_ref()
        .is_some_and(|st| watch::alert(st, "error_rate", "support"));
    checks.check(
        !error_alert,
        "the error_rate alert was not firing when context_fill fired",
    );
    checks.check(
        incident.is_some_and(has_evidence),
        "the context_creep rule's incident carries model and prompt evidence",
    );
    checks.note(format!(
        "alert only (trim is optional): nothing to contain; 0 errors before detection; the rule's mean fill crossed 0.8 after {}",
        seen.contained.map_or("-".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()))
    ));
    checks
}

/// Seed 003's first rule: tokens per request from 2,500 to 6,000 → throttle and alert.
pub async fn token_explosion(s: &'static Scenario, ctx: &Ctx) -> Result<Outcome, String> {
    let scale = ctx.scale;
    let up = Upstream::start(Profile {
        prompt_tokens: Some(2_380),
        completion_tokens: 120,
        ttfb_ms: scale.ms(2500.0),
        ttfb_jitter_ms: scale.ms(500.0),
        ..Profile::default()
    })
    .await?;
    let window = scale.toml_secs(300.0, 2);
    let extra = format!(
        "[[rules]]\nname = \"token_explosion\"\nroute = \"support\"\nmetric = \"tokens_per_request\"\nbaseline = 2500\nabove = 5000\nwindow = {window}\nmin_requests = 20\naction = \"throttle_and_alert\"\n"
    );
    let gw = Replica::start(&one_route(&up.url(), "", &extra), &scratch(s.name, 0)).await?;
    let shape = Shape {
        workers: 6,
        ..Shape::default()
    };
    let load = Load::start(&ctx.http, gw.traffic, shape);
    tokio::time::sleep(warmup(scale)).await;
    let t0 = switchyard_core::clock::now();
    up.patch(&ctx.http, json!({"prompt_tokens": 5_880})).await?;
    let seen = watch(
        &gw,
        &ctx.http,
        t0,
        patience(scale, 300.0),
        |st| watch::rule(st, "token_explosion", "support"),
        |st| watch::route(st, "support")["throttle_rps"].is_number(),
    )
    .await;
    tokio::time::sleep(scale.dur(30.0).max(Duration::from_secs(1))).await;
    let (log, incident) = finish_rule_drill(gw, load, &ctx.http).await;

    let checks = token_explosion_checks(&seen, t0, &log, incident.as_ref());
    let bad = affected(&log, t0, seen.contained, |e| e.status == 200);
    Ok(outcome(
        s,
        (seen.detected, seen.contained),
        bad,
        &log,
        incident.as_ref(),
        checks,
    ))
}

/// What a token explosion must show: the rule fired and the throttle refused the excess.
fn token_explosion_checks(
    seen: &Seen,
    t0: Instant,
    log: &[load::Exchange],
    incident: Option<&Value>,
) -> Checks {
    let mut checks = Checks::default();
    checks.check(seen.detected.is_some(), "the token_explosion rule fired");
    checks.check(seen.contained.is_some(), "the route was throttled");
    let end = seen.contained.map(|c| t0 + c);
    let refused = load::count(log, |e| {
        end.is_some_and(|end| e.at > end) && e.status == 429 && e.gateway_error.is_some()
    });
    checks.check(refused > 0, "the throttle refused the excess with 429");
    checks.check(
        incident.is_some_and(has_evidence),
        "the incident carries model and prompt evidence",
    );
    let rps = watch::route(&seen.last, "support")["throttle_rps"]
        .as_f64()
        .unwrap_or(0.0);
    checks.note(format!("throttled to {rps:.1} req/s; {refused} requests refused with 429 + Retry-After (answered, not lost)"));
    checks
}

/// Seed 003's second rule: p95 creeps from 2.5 s to 9 s over minutes → the pager.
pub async fn latency_creep(s: &'static Scenario, ctx: &Ctx) -> Result<Outcome, String> {
    let scale = ctx.scale;
    let up = Upstream::start(Profile {
        ttfb_ms: scale.ms(2500.0),
        ttfb_jitter_ms: scale.ms(250.0),
        ..Profile::default()
    })
    .await?;
    let pager = Pager::start().await?;
    let window = scale.toml_secs(900.0, 2);
    let threshold = 8.0 / scale.speed;
    let extra = format!(
        "[[rules]]\nname = \"latency_creep\"\nroute = \"support\"\nmetric = \"p95_latency\"\nbaseline = {base}\nabove = {threshold}\nwindow = {window}\nmin_requests = 20\naction = \"escalate\"\n\n[[notify.webhooks]]\nurl = \"{url}\"\nevents = [\"rule\", \"incident\"]\ntimeout = \"2s\"\nretries = 2\n",
        base = 2.5 / scale.speed,
        url = pager.url()
    );
    let gw = Replica::start(&one_route(&up.url(), "", &extra), &scratch(s.name, 0)).await?;
    let shape = Shape {
        workers: 8,
        ..Shape::default()
    };
    let load = Load::start(&ctx.http, gw.traffic, shape);
    tokio::time::sleep(warmup(scale)).await;
    let t0 = switchyard_core::clock::now();
    // 2.5 s → 9 s in thirteen steps of 0.5 s, one every 15 s: the creep of a slow leak.
    let steps = (1..=13u32)
        .map(|k| json!({"ttfb_ms": scale.ms(2500.0 + 500.0 * f64::from(k))}))
        .collect();
    let ramping = ramp(&ctx.http, &up, scale.dur(15.0), steps);
    let paged = |event: &Value| {
        event["event"] == "rule" && event["action"] == "escalate" && event["status"] == "firing"
    };
    let seen = watch(
        &gw,
        &ctx.http,
        t0,
        patience(scale, 900.0),
        |st| watch::rule(st, "latency_creep", "support"),
        |_| pager.first(paged).is_some(),
    )
    .await;
    ramping.abort();
    let (log, incident) = finish_rule_drill(gw, load, &ctx.http).await;

    let page = pager
        .first(paged)
        .map(|at| at.saturating_duration_since(t0));
    let checks = latency_creep_checks(&seen, page, incident.as_ref());
    let bad = affected(&log, t0, seen.detected, |e| e.status == 200);
    Ok(outcome(
        s,
        (seen.detected, None),
        bad,
        &log,
        incident.as_ref(),
        checks,
    ))
}

/// What latency creep must show: the rule fired and the pager heard of it (`page`, after t0).
fn latency_creep_checks(seen: &Seen, page: Option<Duration>, incident: Option<&Value>) -> Checks {
    let mut checks = Checks::default();
    checks.check(seen.detected.is_some(), "the latency_creep rule fired");
    checks.check(page.is_some(), "the escalate event reached the webhook");
    checks.check(
        incident.is_some_and(has_evidence),
        "the incident carries model and prompt evidence",
    );
    checks.note(format!(
        "escalation: no traffic action (a person decides); the pager got the event after {}",
        page.map_or("-".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()))
    ));
    checks
}

/// Seed 000: a weekend spike; the upstream's pool is small, its latency and errors climb.
pub async fn pool_exhaustion(s: &'static Scenario, ctx: &Ctx) -> Result<Outcome, String> {
    let scale = ctx.scale;
    let limit = 8u64;
    let up = Upstream::start(Profile {
        ttfb_ms: scale.ms(1500.0),
        ttfb_jitter_ms: scale.ms(300.0),
        ..Profile::default()
    })
    .await?;
    let gw = Replica::start(&pool_config(scale, &up.url(), limit), &scratch(s.name, 0)).await?;
    let calm = Shape {
        workers: 2,
        pause: scale.dur(2.0),
        ..Shape::default()
    };
    let load = Load::start(&ctx.http, gw.traffic, calm);
    tokio::time::sleep(scale.dur(300.0).max(Duration::from_secs(3))).await;
    let t0 = switchyard_core::clock::now();
    // Saturday: six times the users at once, and the upstream slows and starts failing.
    up.patch(&ctx.http, json!({"ttfb_ms": scale.ms(6000.0), "error_rate": 0.02, "even_errors": true, "error_kind": "overloaded"})).await?;
    let spike = Load::start(
        &ctx.http,
        gw.traffic,
        Shape {
            workers: 16,
            users: 1200,
            pause: Duration::from_millis(10),
            first_user: 10_000,
            ..Shape::default()
        },
    );
    let first_shed = || load::count(&spike.snapshot(), shed) > 0;
    let mut seen = watch(
        &gw,
        &ctx.http,
        t0,
        patience(scale, 60.0),
        |st| watch::alert(st, "traffic_spike", "support") || watch::alert(st, "queue_depth", "*"),
        |_| first_shed(),
    )
    .await;
    let peak = sample_spike(&gw, &up, &ctx.http, &mut seen, scale).await;
    let mut log = load.stop().await;
    log.extend(spike.stop().await);
    gw.stop().await;

    let checks = pool_checks(&seen, peak, limit, &log);
    let bad = affected(&log, t0, seen.contained, |e| {
        e.status >= 500 && e.gateway_error.is_none()
    });
    Ok(outcome(
        s,
        (seen.detected, seen.contained),
        bad,
        &log,
        None,
        checks,
    ))
}

/// Pool exhaustion's gateway: a small concurrency limit and queue, and the spike alerts.
fn pool_config(scale: Scale, url: &str, limit: u64) -> String {
    let limits = format!(
        "[routes.limits]\nmax_concurrency = {limit}\nmax_queue = 4\nqueue_timeout = \"{}ms\"\n",
        (scale.ms(5000.0)).max(1.0).round()
    );
    let extra = format!(
        "[alerts]\nwindow = {}\nbaseline = {}\ntraffic_spike = 3.0\nmin_requests = 20\nqueue_depth = 2\n",
        scale.toml_secs(60.0, 1),
        scale.toml_secs(300.0, 3),
    );
    one_route(url, &limits, &extra)
}

/// Samples the upstream's load while the spike goes on, adding the alerts seen to `seen`;
/// returns the peak concurrency at the upstream.
async fn sample_spike(
    gw: &Replica,
    up: &Upstream,
    http: &Http,
    seen: &mut Seen,
    scale: Scale,
) -> u64 {
    let mut peak = 0;
    let sampling = switchyard_core::clock::now();
    while sampling.elapsed() < scale.dur(60.0).max(Duration::from_secs(1)) {
        if let Ok(n) = up.in_flight(http).await {
            peak = peak.max(n);
        }
        if let Ok(status) = gw.status(http).await {
            for name in watch::alerts_on(&status, "support") {
                seen.alerts.insert(format!("{name}@support"));
            }
            if watch::alert(&status, "queue_depth", "*") {
                seen.alerts.insert("queue_depth@*".to_owned());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    peak
}

/// What pool exhaustion must show: both alerts, the excess shed, the upstream within its limit.
fn pool_checks(seen: &Seen, peak: u64, limit: u64, log: &[load::Exchange]) -> Checks {
    let alerts: Vec<String> = seen.alerts.iter().cloned().collect();
    let mut checks = Checks::default();
    checks.check(
        seen.detected.is_some(),
        "the traffic_spike or queue_depth alert fired",
    );
    checks.check(
        seen.alerts.contains("traffic_spike@support"),
        "the traffic_spike alert fired",
    );
    checks.check(
        seen.alerts.contains("queue_depth@*"),
        "the queue_depth (saturation) alert fired",
    );
    checks.check(seen.contained.is_some(), "the excess was shed");
    checks.check(
        peak <= limit,
        format!("the upstream stayed within its limit of {limit} (peak {peak})"),
    );
    let shed_n = load::count(log, shed);
    checks.note(format!(
        "peak upstream concurrency {peak} of {limit}; {shed_n} requests shed with 503 queue_full / queue_timeout (answered, not lost); alerts seen: {}; alerts open no incident",
        if alerts.is_empty() { "none".to_owned() } else { alerts.join(", ") }
    ));
    checks
}

/// The end of a rule drill: stops the load, waits for the rule's incident (a moment at most),
/// stops the replica.
async fn finish_rule_drill(
    gw: Replica,
    load: Load,
    http: &Http,
) -> (Vec<load::Exchange>, Option<Value>) {
    let log = load.stop().await;
    let incident = watch::incident(&gw, http, "rule", Duration::from_secs(2)).await;
    gw.stop().await;
    (log, incident)
}

/// Refused by the gateway's admission (a full queue, a queue timeout, a rate): answered.
fn shed(e: &load::Exchange) -> bool {
    matches!(e.status, 429 | 503) && e.gateway_error.is_some()
}
