//! Fleet mode: a rule's throttle fired on one replica is in force on every replica, and
//! lifts everywhere when the rule clears where it fired.

use std::time::{Duration, Instant};

use switchyard::Running;
use switchyard_sim::Profile;

use crate::common::*;
use crate::redis_server::RedisServer;

const INTERVAL_MS: u64 = 500;

fn namespace() -> String {
    temp_dir("ns-rules")
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace(|c: char| !c.is_ascii_alphanumeric(), "-")
}

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

fn config(redis: &str, ns: &str, id: &str, upstream: &str) -> String {
    format!(
        "{}{}{RULE}\n[fleet]\nredis_url = \"{redis}\"\nnamespace = \"{ns}\"\ninstance_id = \"{id}\"\n\
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
    let (ns, upstream) = (namespace(), format!("http://{addr}"));
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
