//! Fleet mode: a rule's throttle fired on one replica is in force on every replica, and
//! lifts everywhere when the rule clears where it fired; an automatic model downgrade fired
//! on one replica is the fleet's until an operator releases it on any replica.

use std::time::{Duration, Instant};

use serde_json::json;
use switchyard::Running;
use switchyard_sim::Profile;

use crate::common::*;
use crate::redis_server::{redis_namespace, RedisServer};

const INTERVAL_MS: u64 = 500;

const RULE: &str = r#"
[[rules]]
name = "token_explosion"
route = "support"
metric = "tokens_per_request"
baseline = 100
above = 1000
window = "2s"
min_requests = 5
action = "throttle_and_alert"
throttle_to = 0.5
"#;

const DOWNGRADE: &str = r#"
[models."gpt-4o-mini"]
context_window = 128000
input_usd_per_mtok = 0.15
output_usd_per_mtok = 0.6

[[rules]]
name = "cost_guard"
metric = "cost_per_request"
above = 0.000001
window = "30s"
min_requests = 3
action = "downgrade_model"
downgrade_to = "gpt-4o-mini"
automatic = true
"#;

fn config(redis: &str, ns: &str, id: &str, upstream: &str) -> String {
    config_with(redis, ns, id, upstream, RULE)
}

fn config_with(redis: &str, ns: &str, id: &str, upstream: &str, rules: &str) -> String {
    format!(
        "{}{}{rules}\n[fleet]\nredis_url = \"{redis}\"\nnamespace = \"{ns}\"\ninstance_id = \"{id}\"\n\
         reconcile_interval = \"{INTERVAL_MS}ms\"\ncommand_timeout = \"200ms\"\n",
        admin_tokens(),
        one_route("support", upstream, ""),
    )
}

async fn ask(gw: &Running) -> u16 {
    post_json(
        gw.traffic,
        "/v1/chat/completions",
        &[("x-user-id", "u1")],
        chat("gpt-4o", false),
    )
    .await
    .status
    .as_u16()
}

fn throttle(gw: &Running) -> Option<f64> {
    gw.controller
        .steering()
        .get("support")
        .and_then(|s| s.throttle_rps)
}

async fn wait(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < within, "never {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// Long: one scenario told in order; each step starts from the state the previous one left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_rules_a_throttle_fired_on_one_replica_holds_on_every_replica() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let (sim, addr) = sim(Profile {
        token_inflation: 40.0,
        ..Profile::default()
    })
    .await;
    let (ns, upstream) = (redis_namespace("ns-rules"), format!("http://{addr}"));
    let a = gateway(&config(&redis.url(), &ns, "a", &upstream)).await;
    let b = gateway(&config(&redis.url(), &ns, "b", &upstream)).await;
    // Both replicas know each other before the rule fires.
    wait(Duration::from_secs(5), "two members on B", || {
        b.fleet
            .as_ref()
            .is_some_and(|fleet| fleet.live_members().len() == 2)
    })
    .await;

    // Only A sees the explosion: B serves nothing in the meantime.
    for _ in 0..8 {
        assert_eq!(ask(&a).await, 200);
    }
    wait(Duration::from_secs(8), "the throttle on A", || {
        throttle(&a).is_some()
    })
    .await;
    let rps = throttle(&a).unwrap();
    assert!(
        b.controller.rules_firing().is_empty(),
        "the rule fires on A's traffic only"
    );
    wait(Duration::from_secs(3), "A's throttle on B", || {
        throttle(&b) == Some(rps)
    })
    .await;
    // B sheds the excess of its own traffic at A's rate.
    let mut shed = 0;
    for _ in 0..10 {
        if ask(&b).await == 429 {
            shed += 1;
        }
    }
    assert!(
        shed >= 5,
        "B shed only {shed} of 10 rapid requests at {rps} rps"
    );
    let status = admin(&b, "GET", "/admin/status", VIEWER, None).await.json();
    assert_eq!(
        status["routes"][0]["throttle_rps"].as_f64(),
        Some(rps),
        "{status}"
    );

    // Healthy again: the rule clears on A, and the throttle lifts on both.
    sim.set_profile(Profile::default());
    let cleared_by = Instant::now() + Duration::from_secs(8);
    while !a.controller.rules_firing().is_empty() {
        assert!(Instant::now() < cleared_by, "the rule never cleared on A");
        let _ = ask(&a).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait(Duration::from_secs(3), "the throttle lifted on B", || {
        throttle(&b).is_none()
    })
    .await;
    assert_eq!(throttle(&a), None);
    for _ in 0..5 {
        assert_eq!(ask(&b).await, 200, "B's throttle lifted");
    }
}

fn downgrade(gw: &Running) -> Option<String> {
    gw.controller
        .steering()
        .get("support")
        .and_then(|s| s.downgrade_to.as_deref().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_rules_an_automatic_downgrade_reaches_every_replica_until_released() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let (_sim, addr) = sim(Profile::default()).await;
    let (ns, upstream) = (redis_namespace("ns-rules"), format!("http://{addr}"));
    let a = gateway(&config_with(&redis.url(), &ns, "a", &upstream, DOWNGRADE)).await;
    let b = gateway(&config_with(&redis.url(), &ns, "b", &upstream, DOWNGRADE)).await;
    for _ in 0..4 {
        assert_eq!(ask(&a).await, 200);
    }
    wait(Duration::from_secs(8), "the downgrade on A", || {
        downgrade(&a).as_deref() == Some("gpt-4o-mini")
    })
    .await;
    assert!(b.controller.rules_firing().is_empty(), "B saw no traffic");
    wait(Duration::from_secs(3), "A's downgrade on B", || {
        downgrade(&b).as_deref() == Some("gpt-4o-mini")
    })
    .await;

    // Released by an operator on B: lifted for both.
    let path = "/admin/rules/cost_guard/release";
    let released = admin(&b, "POST", path, OPERATOR, Some(json!({}))).await;
    assert_eq!(released.status, 200, "{:?}", released.body);
    assert_eq!(downgrade(&b), None);
    wait(Duration::from_secs(3), "the downgrade lifted on A", || {
        downgrade(&a).is_none()
    })
    .await;
}
