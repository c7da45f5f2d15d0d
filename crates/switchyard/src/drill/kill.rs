//! Seed 002: the brake. A fabricating snapshot caught by feedback and killed by an operator
//! from `switchyard ctl`; the 43-minute kill switch replayed on three replicas.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{json, Value};
use switchyard_sim::{Profile, FABRICATING_SNAPSHOT};

use super::fleet::{fleet_table, Support};
use super::harness::{
    evidence_models, has_evidence, scratch, Http, Replica, Scale, Upstream, OPERATOR_TOKEN,
};
use super::load::{Exchange, Load, Shape};
use super::report::{Checks, Verdict};
use super::rollout::QUALITY_EVALUATOR;
use super::signals::warmup;
use super::watch::{self, watch};
use super::{affected, outcome, Ctx, Outcome, Scenario, MODELS};

const FALLBACK: &str = "The assistant is unavailable right now; a person will answer by email.";

/// One replica's config: the route with its fallback, a quality rule that only alerts (a
/// person decides to kill), and the `[fleet]` table in fleet mode.
fn replica_config(scale: Scale, upstream: &str, fleet: Option<(&str, usize)>) -> String {
    let window = scale.toml_secs(600.0, 2);
    let fleet = fleet.map_or_else(String::new, |(redis, n)| {
        fleet_table(redis, &format!("replica-{n}"))
    });
    format!(
        "{fleet}\n{MODELS}\n[upstreams.agent]\nurl = \"{upstream}\"\n\n[[routes]]\nname = \"support\"\nupstream = \"agent\"\n\n[routes.kill_switch]\nfallback = {{ text = \"{FALLBACK}\" }}\n\n[[rules]]\nname = \"snapshot_quality\"\nroute = \"support\"\nmetric = \"feedback_score\"\nbaseline = 0.87\nbelow = 0.65\nwindow = {window}\nmin_requests = 20\naction = \"alert\"\n"
    )
}

/// Replicas, their traffic, and the Redis they share in fleet mode.
struct Fleet {
    replicas: Vec<Replica>,
    loads: Vec<Load>,
    redis: Option<Redis>,
}

impl Fleet {
    async fn start(
        s: &'static Scenario,
        ctx: &Ctx,
        up: &Upstream,
        n: usize,
        shape: &Shape,
    ) -> Result<Fleet, String> {
        let redis = match (&ctx.fleet, n > 1) {
            (Support::Fleet { redis_server }, true) => {
                Some(Redis::start(redis_server.clone()).await?)
            }
            _ => None,
        };
        let mut replicas = Vec::with_capacity(n);
        for i in 0..n {
            let fleet = redis.as_ref().map(|r| (r.url.as_str(), i));
            replicas.push(
                Replica::start(
                    &replica_config(ctx.scale, &up.url(), fleet),
                    &scratch(s.name, i),
                )
                .await?,
            );
        }
        let loads = replicas
            .iter()
            .enumerate()
            .map(|(i, r)| {
                Load::start(
                    &ctx.http,
                    r.traffic,
                    Shape {
                        first_user: 1000 * i as u32,
                        ..shape.clone()
                    },
                )
            })
            .collect();
        Ok(Fleet {
            replicas,
            loads,
            redis,
        })
    }

    /// Stops the traffic; one log per replica.
    async fn stop(self) -> Vec<Vec<Exchange>> {
        let mut logs = Vec::new();
        for load in self.loads {
            logs.push(load.stop().await);
        }
        for replica in self.replicas {
            replica.stop().await;
        }
        drop(self.redis);
        logs
    }
}

/// `switchyard ctl kill support --reason …` against a replica, as the on-call engineer types it.
async fn ctl_kill(admin: SocketAddr, reason: &str) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding the switchyard binary: {e}"))?;
    let reason = reason.to_owned();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(exe)
            .args(["ctl", "kill", "support", "--reason", &reason])
            .env("SWITCHYARD_ADMIN_URL", format!("http://{admin}"))
            .env("SWITCHYARD_ADMIN_TOKEN", OPERATOR_TOKEN)
            .output()
    })
    .await
    .map_err(|e| format!("switchyard ctl: {e}"))?
    .map_err(|e| format!("switchyard ctl: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "switchyard ctl kill failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// When each replica first answered with the fallback after `since`.
fn first_fallbacks(loads: &[Load], since: Instant) -> Vec<Option<Instant>> {
    loads
        .iter()
        .map(|l| {
            l.snapshot()
                .iter()
                .filter(|e| e.fallback && e.at >= since)
                .map(|e| e.at)
                .min()
        })
        .collect()
}

/// The fallback parses as what an OpenAI SDK expects, whole and streamed.
async fn fallback_is_sdk_shaped(http: &Http, traffic: SocketAddr) -> Result<(), String> {
    let url = format!("http://{traffic}/v1/chat/completions");
    let ask = |stream: bool| {
        json!({"model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": "Where is my order?"}]}).to_string()
    };
    let whole = http
        .send(
            Method::POST,
            &url,
            &[],
            Some(ask(false)),
            Duration::from_secs(5),
        )
        .await?;
    let body = whole.json()?;
    if whole.status != 200
        || body["object"] != "chat.completion"
        || body["choices"][0]["message"]["content"] != FALLBACK
    {
        return Err(format!(
            "the fallback is no chat completion: {} {body}",
            whole.status
        ));
    }
    let streamed = http
        .send(
            Method::POST,
            &url,
            &[],
            Some(ask(true)),
            Duration::from_secs(5),
        )
        .await?;
    let text = String::from_utf8_lossy(&streamed.body);
    if streamed.status != 200
        || !text.contains("chat.completion.chunk")
        || !text.trim_end().ends_with("data: [DONE]")
    {
        return Err(format!("the streamed fallback is no chunk stream: {text}"));
    }
    Ok(())
}

/// Seed 002: the model starts fabricating; the applications' scores catch it; an operator
/// kills the route from `switchyard ctl`, and every replica serves the fallback.
pub async fn bad_snapshot(s: &'static Scenario, ctx: &Ctx) -> Result<Outcome, String> {
    let scale = ctx.scale;
    let (up, fleet) = start_scored_fleet(s, ctx).await?;
    tokio::time::sleep(warmup(scale)).await;
    let t0 = switchyard_core::clock::now();
    up.switch(&ctx.http, "fabricating").await?;
    let first = &fleet.replicas[0];
    let seen = watch(
        first,
        &ctx.http,
        t0,
        scale.dur(600.0) + Duration::from_secs(15),
        |st| watch::rule(st, "snapshot_quality", "support"),
        |_| true,
    )
    .await;
    let mut checks = Checks::default();
    checks.check(
        seen.detected.is_some(),
        "the snapshot_quality rule fired on the feedback scores",
    );
    let kill_at = switchyard_core::clock::now();
    kill_from_ctl(
        &mut checks,
        first.admin,
        "answers fabricate order details (bad snapshot)",
        "the operator's kill",
    )
    .await;
    let effect = await_fallbacks(&fleet.loads, kill_at, Duration::from_secs(10)).await;
    let shaped = fallback_is_sdk_shaped(&ctx.http, first.traffic).await;
    checks.check(shaped.is_ok(), shaped.err().unwrap_or_default());
    let rule_incident = watch::incident(first, &ctx.http, "rule", Duration::from_secs(2)).await;
    let kill_incident = watch::incident(first, &ctx.http, "kill", Duration::from_secs(2)).await;
    let logs = fleet.stop().await;
    let log: Vec<Exchange> = logs.into_iter().flatten().collect();

    let last = last_fallback(&effect);
    checks.check(last.is_some(), "every replica served the fallback");
    let contained = last.map(|l| l.saturating_duration_since(t0));
    check_incidents(&mut checks, rule_incident.as_ref(), kill_incident.as_ref());
    checks.note(kill_to_effect(&ctx.fleet, effect.len(), last, kill_at));
    let bad = affected(&log, t0, contained, |e| {
        e.model
            .as_deref()
            .is_some_and(|m| m.ends_with(FABRICATING_SNAPSHOT))
    });
    Ok(outcome(
        s,
        (seen.detected, contained),
        bad,
        &log,
        rule_incident.as_ref(),
        checks,
    ))
}

/// Seed 002's 43-minute kill switch: a kill on one replica of three, and the time until the
/// last one serves the fallback. Needs fleet mode; without it the drill says so and skips.
pub async fn kill_propagation(s: &'static Scenario, ctx: &Ctx) -> Result<Outcome, String> {
    if let Support::Unavailable(why) = &ctx.fleet {
        return Ok(skipped(s, why));
    }
    let up = Upstream::start(Profile {
        ttfb_ms: ctx.scale.ms(1000.0),
        ..Profile::default()
    })
    .await?;
    let fleet = Fleet::start(
        s,
        ctx,
        &up,
        3,
        &Shape {
            workers: 3,
            ..Shape::default()
        },
    )
    .await?;
    tokio::time::sleep(warmup(ctx.scale)).await;
    let kill_at = switchyard_core::clock::now();
    let mut checks = Checks::default();
    kill_from_ctl(
        &mut checks,
        fleet.replicas[0].admin,
        "replaying the 43-minute kill switch",
        "the kill",
    )
    .await;
    let effect = await_fallbacks(&fleet.loads, kill_at, Duration::from_secs(30)).await;
    let logs = fleet.stop().await;
    let log: Vec<Exchange> = logs.into_iter().flatten().collect();
    let per_replica: Vec<String> = effect
        .iter()
        .map(|e| {
            e.map_or("never".to_owned(), |at| {
                format!("{} ms", at.saturating_duration_since(kill_at).as_millis())
            })
        })
        .collect();
    let contained = last_fallback(&effect).map(|l| l.saturating_duration_since(kill_at));
    checks.check(
        contained.is_some_and(|c| c <= Duration::from_millis(1500)),
        "the last replica served the fallback within the 1 s reconcile interval (+0.5 s)",
    );
    checks.note(format!(
        "kill to fallback per replica: {}",
        per_replica.join(", ")
    ));
    let bad = affected(&log, kill_at, contained, |e| !e.fallback && e.status == 200);
    Ok(outcome(
        s,
        (Some(Duration::ZERO), contained),
        bad,
        &log,
        None,
        checks,
    ))
}

/// The bad snapshot's upstream, healthy for now, and its replicas (three in fleet mode, else
/// one) under traffic whose answers the applications score.
async fn start_scored_fleet(s: &'static Scenario, ctx: &Ctx) -> Result<(Upstream, Fleet), String> {
    let up = Upstream::start(Profile {
        ttfb_ms: ctx.scale.ms(1000.0),
        ttfb_jitter_ms: ctx.scale.ms(300.0),
        ..Profile::default()
    })
    .await?;
    let n = if matches!(ctx.fleet, Support::Fleet { .. }) {
        3
    } else {
        1
    };
    let shape = Shape {
        workers: 6,
        evaluator: Some(QUALITY_EVALUATOR),
        ..Shape::default()
    };
    let fleet = Fleet::start(s, ctx, &up, n, &shape).await?;
    Ok((up, fleet))
}

/// How long the kill took to reach the last of `n` replicas.
fn kill_to_effect(support: &Support, n: usize, last: Option<Instant>, kill_at: Instant) -> String {
    let kill_to_effect = last.map_or("-".to_owned(), |l| {
        format!("{} ms", l.saturating_duration_since(kill_at).as_millis())
    });
    match support {
        Support::Fleet { .. } => format!("kill to effect on all {n} replicas: {kill_to_effect}"),
        Support::Unavailable(why) => {
            format!("single replica ({why}); kill to effect: {kill_to_effect}")
        }
    }
}

/// The outcome of a drill that needs fleet mode where there is none.
fn skipped(s: &'static Scenario, why: &str) -> Outcome {
    Outcome {
        scenario: s.name,
        seed: s.seed,
        expected: s.expected,
        detected_after: None,
        contained_after: None,
        affected: 0,
        lost: 0,
        requests: 0,
        streamed: 0,
        incident: None,
        verdict: Verdict::Skip,
        note: format!("skipped: fleet mode unavailable ({why})"),
    }
}

/// Kills the route from `switchyard ctl` on the replica at `admin`; checks that `what` went
/// through.
async fn kill_from_ctl(checks: &mut Checks, admin: SocketAddr, reason: &str, what: &str) {
    let killed = ctl_kill(admin, reason).await;
    checks.check(
        killed.is_ok(),
        format!(
            "{what} went through ({})",
            killed.as_ref().err().map_or("ok", String::as_str)
        ),
    );
}

/// Waits, up to `limit`, until every replica has served the fallback after `since`; returns
/// when each first did.
async fn await_fallbacks(loads: &[Load], since: Instant, limit: Duration) -> Vec<Option<Instant>> {
    let deadline = since + limit;
    let mut effect = first_fallbacks(loads, since);
    while effect.iter().any(Option::is_none) && switchyard_core::clock::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        effect = first_fallbacks(loads, since);
    }
    effect
}

/// When the last replica first served the fallback, if every one did.
fn last_fallback(effect: &[Option<Instant>]) -> Option<Instant> {
    effect
        .iter()
        .copied()
        .collect::<Option<Vec<_>>>()
        .and_then(|all| all.into_iter().max())
}

/// The bad snapshot's incidents: the rule's names the fabricating model, the kill opened one.
fn check_incidents(checks: &mut Checks, rule: Option<&Value>, kill: Option<&Value>) {
    let models = rule.map(evidence_models).unwrap_or_default();
    checks.check(
        rule.is_some_and(has_evidence) && models.contains(FABRICATING_SNAPSHOT),
        format!("the rule's incident names the fabricating snapshot ({models})"),
    );
    checks.check(kill.is_some(), "the kill opened an incident");
}

/// A `redis-server` child on a free loopback port, stopped on drop.
struct Redis {
    url: String,
    child: std::process::Child,
}

impl Redis {
    async fn start(program: PathBuf) -> Result<Redis, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("a free port for redis: {e}"))?
            .port();
        let child = std::process::Command::new(program)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("starting redis-server: {e}"))?;
        let redis = Redis {
            url: format!("redis://127.0.0.1:{port}"),
            child,
        };
        let deadline = switchyard_core::clock::now() + Duration::from_secs(5);
        while switchyard_core::clock::now() < deadline {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(redis);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err("redis-server did not listen within 5 s".to_owned())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
