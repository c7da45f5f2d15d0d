//! Staged rollouts and automatic rollback, end to end with two simulated upstreams.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard::Running;
use switchyard_config::Config;
use switchyard_sim::{ErrorKind, Profile};

use crate::common::*;

/// Starts a gateway on the config text over an existing state dir (restarts keep it).
async fn gateway_in(toml: &str, state_dir: &Path) -> Running {
    let mut config = Config::parse(toml, "test.toml", Path::new(".")).expect("valid test config");
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.state_dir = state_dir.to_path_buf();
    crate::common::http1_from_env(&mut config);
    switchyard::start(config).await.expect("gateway starts")
}

pub(crate) fn blue_green(
    blue: SocketAddr,
    green: SocketAddr,
    rollout: &str,
    rollback: &str,
) -> String {
    format!(
        r#"
[server]
{tokens}
{hooks}
[models."gpt-4o"]
context_window = 128000
input_usd_per_mtok = 2.5
output_usd_per_mtok = 10.0

[upstreams.blue]
url = "http://{blue}"

[upstreams.green]
url = "http://{green}"

[[routes]]
name = "support"

[routes.rollout]
blue = "blue"
green = "green"
{rollout}

[routes.rollback]
{rollback}
"#,
        tokens = admin_tokens(),
        hooks = HOOKS.with(|h| h.borrow().clone()),
    )
}

thread_local! {
    /// Webhook tables a test adds to the configs it builds on this thread.
    static HOOKS: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// One chat request as `user`: (status, the upstream that served it).
pub(crate) async fn ask(addr: SocketAddr, user: &str) -> (u16, String) {
    let answer = post_json(
        addr,
        "/v1/chat/completions",
        &[("x-user-id", user)],
        chat("gpt-4o", false),
    )
    .await;
    let upstream = answer
        .headers
        .get("x-switchyard-upstream")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    (answer.status.as_u16(), upstream)
}

pub(crate) async fn rollout_of(gw: &Running) -> serde_json::Value {
    let status = admin(gw, "GET", "/admin/status", VIEWER, None).await.json();
    status["routes"][0]["rollout"].clone()
}

/// Polls the rollout until `check` holds, or panics after `within`.
async fn eventually_rollout(
    gw: &Running,
    within: Duration,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let rollout = rollout_of(gw).await;
        if check(&rollout) {
            return rollout;
        }
        assert!(start.elapsed() < within, "rollout never {what}: {rollout}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(Default)]
struct Seen {
    /// (sent at, finished at, status, upstream)
    answers: Mutex<Vec<(Instant, Instant, u16, String)>>,
}

// Long: one scenario told in order; each step starts from the state the previous one left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_degraded_green_is_rolled_back_within_the_bound_and_the_flip_fails_nobody() {
    let (_blue, blue_addr) = sim(Profile::default()).await;
    let (green, green_addr) = sim(Profile::default()).await;
    let receiver = crate::notify::Receiver::up().await;
    HOOKS.with(|h| {
        *h.borrow_mut() = format!(
            "[[notify.webhooks]]\nurl = \"{}\"\nevents = [\"rollout\", \"rollback\", \"incident\"]\n",
            receiver.url()
        )
    });
    let toml = blue_green(
        blue_addr,
        green_addr,
        "stages = [50, 100]\nbake = \"1h\"\nmin_requests = 100000",
        // Green's 500s are also a class blue never showed: with the default rate, that
        // trigger could win the race against the error rate, which this test is about.
        "error_rate = 0.05\nerror_window = \"10s\"\nmin_requests = 10\nnew_error_class_rate = 1.0",
    );
    let gw = gateway(&toml).await;
    let rollout = rollout_of(&gw).await;
    assert_eq!(rollout["phase"], "shifting", "{rollout}");
    assert_eq!(rollout["percent"], 50.0);

    // Steady traffic from many users, before and through the degradation.
    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (seen, stop, next, addr) = (seen.clone(), stop.clone(), next.clone(), gw.traffic);
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let sent = Instant::now();
                let (status, upstream) = ask(addr, &format!("user-{}", n % 500)).await;
                seen.answers
                    .lock()
                    .unwrap()
                    .push((sent, Instant::now(), status, upstream));
            }
        }));
    }
    until(Duration::from_secs(10), || {
        seen.answers.lock().unwrap().len() >= 200
    })
    .await
    .expect("answers before the degradation");
    let healthy: Vec<_> = seen.answers.lock().unwrap().clone();
    assert!(healthy.iter().all(|a| a.2 == 200), "all healthy before");
    let on_green = healthy.iter().filter(|a| a.3 == "green").count();
    assert!(
        on_green > healthy.len() / 4 && on_green < healthy.len() * 3 / 4,
        "about half the users on green: {on_green} of {}",
        healthy.len()
    );

    green.set_profile(Profile {
        error_rate: 1.0,
        error_kind: ErrorKind::Status500,
        ..Profile::default()
    });
    let degraded_at = Instant::now();
    let rolled = eventually_rollout(&gw, Duration::from_secs(10), "rolled back", |r| {
        r["phase"] == "rolled_back"
    })
    .await;
    let noticed = degraded_at.elapsed();
    assert_eq!(rolled["percent"], 0.0);
    assert!(
        rolled["reason"].as_str().unwrap().starts_with("error_rate"),
        "{rolled}"
    );
    let flipped_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }

    // Every failure was green's own answer; nothing sent after the flip failed or reached
    // green.
    let answers = seen.answers.lock().unwrap().clone();
    for (sent, _, status, upstream) in &answers {
        if *status != 200 {
            assert_eq!(upstream, "green", "a failure not caused by green");
        }
        if *sent > flipped_at {
            assert_eq!((*status, upstream.as_str()), (200, "blue"));
        }
    }
    let after = answers.iter().filter(|a| a.0 > flipped_at).count();
    assert!(after > 10, "traffic went on after the flip ({after})");
    assert!(
        noticed < Duration::from_secs(3),
        "rolled back after {noticed:?}"
    );

    // The decision latency is measured and within the bound; the rollback is counted.
    let text = metrics(&gw).await;
    let count = metric(
        &text,
        "switchyard_rollback_decision_seconds_count",
        &[("route", "support")],
    );
    let sum = metric(
        &text,
        "switchyard_rollback_decision_seconds_sum",
        &[("route", "support")],
    );
    assert_eq!(count, 1.0, "{text}");
    assert!(sum < 1.0, "decision latency {sum} s");
    let rollbacks = metric(
        &text,
        "switchyard_rollbacks_total",
        &[("route", "support"), ("trigger", "error_rate")],
    );
    assert_eq!(rollbacks, 1.0);
    assert_eq!(
        metric(
            &text,
            "switchyard_route_weight",
            &[("route", "support"), ("upstream", "green")]
        ),
        0.0
    );
    assert_eq!(
        metric(
            &text,
            "switchyard_route_weight",
            &[("route", "support"), ("upstream", "blue")]
        ),
        1.0
    );

    // The incident has the trigger, both states and the model's part of the window.
    let list = admin(&gw, "GET", "/admin/incidents", VIEWER, None)
        .await
        .json();
    let summary = &list["incidents"][0];
    assert_eq!(summary["kind"], "rollback", "{list}");
    let id = summary["id"].as_str().unwrap();
    let incident = admin(&gw, "GET", &format!("/admin/incidents/{id}"), VIEWER, None)
        .await
        .json();
    assert_eq!(incident["trigger"]["name"], "error_rate");
    assert!(incident["trigger"]["value"].as_f64().unwrap() > 0.05);
    assert_eq!(incident["trigger"]["window_secs"], 10);
    assert_eq!(incident["rollout_before"]["phase"], "shifting");
    assert_eq!(incident["rollout_after"]["phase"], "rolled_back");
    let evidence = &incident["evidence"];
    assert!(evidence["exchanges_examined"].as_u64().unwrap() > 0);
    assert!(
        evidence["response_models"][0]["value"]
            .as_str()
            .unwrap()
            .starts_with("gpt-4o"),
        "{evidence}"
    );
    assert!(!evidence["prompt_fingerprints"]
        .as_array()
        .unwrap()
        .is_empty());
    let sample = evidence["sample"].as_array().unwrap();
    assert!(!sample.is_empty() && sample.len() <= 20);
    assert!(
        sample[0].get("request_body").is_none(),
        "no text unless captured"
    );

    // The webhook heard the start, the rollback and its incident.
    let deadline = Instant::now() + Duration::from_secs(5);
    let heard = loop {
        let events = receiver.events();
        if events.iter().any(|(kind, _)| kind == "incident") || Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut kinds: Vec<&str> = heard.iter().map(|(kind, _)| kind.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["incident", "rollback", "rollout"], "{heard:?}");
    let rollback = &heard.iter().find(|(kind, _)| kind == "rollback").unwrap().1;
    assert_eq!(rollback["trigger"], "error_rate");
    assert_eq!(rollback["incident"], id);
    assert!(rollback["decision_latency_ms"].as_f64().unwrap() < 1000.0);

    // It stays on blue until an operator promotes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rollout_of(&gw).await["phase"], "rolled_back");
    green.set_profile(Profile::default());
    let promoted = admin(
        &gw,
        "POST",
        "/admin/routes/support/promote",
        OPERATOR,
        Some(serde_json::json!({"reason": "fixed the prompt"})),
    )
    .await;
    assert_eq!(promoted.status, 200, "{:?}", promoted.body);
    assert_eq!(promoted.json()["after"]["phase"], "complete");
    for n in 0..20 {
        assert_eq!(
            ask(gw.traffic, &format!("user-{n}")).await,
            (200, "green".into())
        );
    }
    let again = admin(&gw, "POST", "/admin/routes/support/promote", OPERATOR, None).await;
    assert_eq!(again.status, 409);
    let audit = admin(&gw, "GET", "/admin/audit", VIEWER, None).await.json();
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"promote"), "{audit}");
}

/// Users by where the documented split hash puts them for the rollout of route `support`.
fn users_where(count: usize, holds: impl Fn(f64) -> bool) -> Vec<String> {
    (0..)
        .map(|n| format!("customer-{n}"))
        .filter(|u| holds(switchyard_core::split::position(u, "rollout:support")))
        .take(count)
        .collect()
}

async fn all_served_by(gw: &Running, users: &[String], upstream: &str) {
    for user in users {
        assert_eq!(
            ask(gw.traffic, user).await,
            (200, upstream.to_owned()),
            "{user}"
        );
    }
}

// Long: one scenario told in order; each step starts from the state the previous one left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_advance_users_only_move_to_green_and_a_restart_resumes_the_stage() {
    let (_blue, blue_addr) = sim(Profile::default()).await;
    let (_green, green_addr) = sim(Profile::default()).await;
    let toml = blue_green(
        blue_addr,
        green_addr,
        "stages = [10, 50, 100]\nbake = \"1s\"\nmin_requests = 20",
        "",
    );
    let state_dir = temp_dir("rollout-restart");
    let gw = gateway_in(&toml, &state_dir).await;
    // Placement follows the documented hash exactly. Blue-only traffic never advances a
    // stage (green has served nothing), so the test decides when stages may move.
    let first = users_where(30, |p| p < 0.10);
    let widened = users_where(30, |p| (0.10..0.50).contains(&p));
    let last = users_where(100, |p| p >= 0.50);
    all_served_by(&gw, &widened, "blue").await;
    all_served_by(&gw, &last, "blue").await;
    all_served_by(&gw, &first, "green").await;
    all_served_by(&gw, &first, "green").await; // sticky: the same answer again
    assert_eq!(
        rollout_of(&gw).await["stage"],
        0,
        "20 green requests and 1 s baked are needed"
    );

    let at_50 = eventually_rollout(&gw, Duration::from_secs(5), "at stage 2", |r| {
        r["stage"] == 1
    })
    .await;
    assert_eq!(at_50["percent"], 50.0);
    let text = metrics(&gw).await;
    assert_eq!(
        metric(
            &text,
            "switchyard_route_weight",
            &[("route", "support"), ("upstream", "green")]
        ),
        0.5
    );
    assert_eq!(
        metric(&text, "switchyard_rollout_stage", &[("route", "support")]),
        1.0
    );

    // No green traffic in the new stage: it cannot advance. A restart resumes it.
    gw.stop().await;
    let state: PathBuf = state_dir.join("rollouts.json");
    assert!(state.is_file());
    let gw = gateway_in(&toml, &state_dir).await;
    let resumed = rollout_of(&gw).await;
    assert_eq!(resumed["phase"], "shifting", "{resumed}");
    assert_eq!(resumed["stage"], 1);
    assert_eq!(resumed["percent"], 50.0);
    assert_eq!(resumed["started_at_ms"], at_50["started_at_ms"]);
    assert_eq!(resumed["stage_started_at_ms"], at_50["stage_started_at_ms"]);
    // Widening moved only the users between 10 % and 50 %, and only to green.
    all_served_by(&gw, &last, "blue").await;
    all_served_by(&gw, &widened, "green").await;
    all_served_by(&gw, &first, "green").await;

    // Enough green traffic completes it.
    let done = eventually_rollout(&gw, Duration::from_secs(5), "complete", |r| {
        r["phase"] == "complete"
    })
    .await;
    assert_eq!(done["percent"], 100.0);
    all_served_by(&gw, &last, "green").await;
    gw.stop().await;
}

// Long: one scenario told in order; each step starts from the state the previous one left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_roll_back_by_hand_and_a_new_green_starts_over() {
    let (_blue, blue_addr) = sim(Profile::default()).await;
    let (_green, green_addr) = sim(Profile::default()).await;
    let toml = blue_green(blue_addr, green_addr, "stages = [100]", "");
    let gw = gateway(&toml).await;
    let rollout = rollout_of(&gw).await;
    assert_eq!(
        rollout["phase"], "complete",
        "a single 100 % stage completes at once"
    );
    let answer = admin(&gw, "POST", "/admin/routes/support/rollback", VIEWER, None).await;
    assert_eq!(answer.status, 403, "viewers cannot roll back");
    let answer = admin(
        &gw,
        "POST",
        "/admin/routes/support/rollback",
        OPERATOR,
        Some(serde_json::json!({"reason": "drill"})),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let body = answer.json();
    assert_eq!(body["after"]["phase"], "rolled_back");
    assert!(body["incident"].as_str().unwrap().starts_with("inc-"));
    assert_eq!(ask(gw.traffic, "anyone").await, (200, "blue".into()));
    let again = admin(
        &gw,
        "POST",
        "/admin/routes/support/rollback",
        OPERATOR,
        None,
    )
    .await;
    assert_eq!(again.status, 409);
    assert_eq!(again.json()["error"]["code"], "already_there");
    let unknown = admin(&gw, "POST", "/admin/routes/nope/rollback", OPERATOR, None).await;
    assert_eq!(unknown.status, 404);
    let bad = admin(
        &gw,
        "POST",
        "/admin/routes/support/rollback",
        OPERATOR,
        Some(serde_json::json!({"why": "x"})),
    )
    .await;
    assert_eq!(bad.status, 400);
    drop(gw);

    // A config whose green changed starts a new rollout at its first stage.
    let dir = temp_dir("new-green");
    let path = dir.join("gateway.toml");
    std::fs::write(&path, &toml).unwrap();
    let mut config = Config::load(&path).unwrap();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.state_dir = dir.join("state");
    let gw = switchyard::start(config).await.unwrap();
    assert_eq!(rollout_of(&gw).await["phase"], "complete");
    let (_green2, green2_addr) = sim(Profile::default()).await;
    let next = toml
        .replace("stages = [100]", "stages = [5, 100]")
        .replace(&format!("[upstreams.green]\nurl = \"http://{green_addr}\""), &format!("[upstreams.green]\nurl = \"http://{green_addr}\"\n\n[upstreams.green2]\nurl = \"http://{green2_addr}\""))
        .replace("green = \"green\"", "green = \"green2\"");
    std::fs::write(&path, next).unwrap();
    let reload = admin(&gw, "POST", "/admin/reload", OPERATOR, None).await;
    assert_eq!(reload.status, 200, "{:?}", reload.body);
    let fresh = eventually_rollout(&gw, Duration::from_secs(5), "restarted", |r| {
        r["green"] == "green2"
    })
    .await;
    assert_eq!(
        (fresh["phase"].as_str(), fresh["percent"].as_f64()),
        (Some("shifting"), Some(5.0))
    );
}
