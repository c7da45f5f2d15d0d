//! Rules: a behavioural baseline crossed on a route runs the rule's action (throttle, model
//! downgrade after approval or automatically), opens an incident, and clears by itself.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use switchyard::Running;
use switchyard_sim::Profile;

use crate::common::*;

fn config(upstream: SocketAddr, rules: &str) -> String {
    format!(
        r#"
{tokens}
[models."gpt-4o"]
context_window = 128000
input_usd_per_mtok = 2.5
output_usd_per_mtok = 10.0

[models."gpt-4o-mini"]
context_window = 128000
input_usd_per_mtok = 0.15
output_usd_per_mtok = 0.6

[upstreams.up]
url = "http://{upstream}"

[[routes]]
name = "support"
upstream = "up"
{rules}
"#,
        tokens = admin_tokens()
    )
}

async fn ask(gw: &Running) -> (u16, serde_json::Value) {
    let answer = post_json(
        gw.traffic,
        "/v1/chat/completions",
        &[("x-user-id", "u1")],
        chat("gpt-4o", false),
    )
    .await;
    (answer.status.as_u16(), answer.json())
}

async fn firing(gw: &Running) -> Vec<serde_json::Value> {
    let status = admin(gw, "GET", "/admin/status", VIEWER, None).await.json();
    status["rules_firing"].as_array().unwrap().clone()
}

async fn eventually<F: Fn(&[serde_json::Value]) -> bool>(
    gw: &Running,
    what: &str,
    check: F,
) -> Vec<serde_json::Value> {
    let start = Instant::now();
    loop {
        let now = firing(gw).await;
        if check(&now) {
            return now;
        }
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "rules never {what}: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// Long: one scenario told in order; each step starts from the state the previous one left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_explosion_throttles_the_route_until_it_clears() {
    let (sim_handle, addr) = sim(Profile {
        token_inflation: 40.0,
        ..Profile::default()
    })
    .await;
    let rules = r#"
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
    let gw = gateway(&config(addr, rules)).await;
    for _ in 0..8 {
        assert_eq!(ask(&gw).await.0, 200);
    }
    let now = eventually(&gw, "fired", |f| !f.is_empty()).await;
    assert_eq!(now[0]["rule"], "token_explosion");
    assert_eq!(now[0]["action"], "throttle_and_alert");
    assert!(now[0]["value"].as_f64().unwrap() > 1000.0);
    let status = admin(&gw, "GET", "/admin/status", VIEWER, None)
        .await
        .json();
    let rps = status["routes"][0]["throttle_rps"].as_f64().unwrap();
    assert!(rps >= 1.0, "{status}");

    // The throttle sheds the excess with a 429 in the client's dialect.
    let mut shed = 0;
    for _ in 0..10 {
        let (code, body) = ask(&gw).await;
        if code == 429 {
            shed += 1;
            assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
        }
    }
    assert!(
        shed >= 5,
        "only {shed} of 10 rapid requests shed at {rps} rps"
    );
    let text = metrics(&gw).await;
    assert!(
        metric(
            &text,
            "switchyard_shed_requests_total",
            &[("route", "support"), ("reason", "throttled")]
        ) >= 5.0
    );
    assert_eq!(
        metric(
            &text,
            "switchyard_rules_firing",
            &[("rule", "token_explosion")]
        ),
        1.0
    );

    // The incident has the rule's figures and the window's evidence.
    let id = now[0]["incident"].as_str().unwrap().to_owned();
    let incident = admin(&gw, "GET", &format!("/admin/incidents/{id}"), VIEWER, None)
        .await
        .json();
    assert_eq!(incident["kind"], "rule");
    assert_eq!(incident["trigger"]["name"], "token_explosion");
    assert_eq!(incident["trigger"]["figures"]["baseline"], 100.0);
    assert!(incident["evidence"]["sample"].as_array().unwrap().len() >= 5);

    // Healthy again: the window forgets, the rule clears, the throttle lifts.
    sim_handle.set_profile(Profile::default());
    let cleared_by = Instant::now() + Duration::from_secs(8);
    while !firing(&gw).await.is_empty() {
        assert!(Instant::now() < cleared_by, "the rule never cleared");
        let _ = ask(&gw).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for _ in 0..10 {
        assert_eq!(ask(&gw).await.0, 200, "throttle lifted");
    }
}

// Long: one scenario told in order; each step starts from the state the previous one left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downgrade_waits_for_an_operator_unless_it_is_automatic() {
    let (_sim, addr) = sim(Profile::default()).await;
    let rules = r#"
[[rules]]
name = "cost_guard"
metric = "cost_per_request"
above = 0.000001
window = "30s"
min_requests = 3
action = "downgrade_model"
downgrade_to = "gpt-4o-mini"
"#;
    let gw = gateway(&config(addr, rules)).await;
    for _ in 0..4 {
        ask(&gw).await;
    }
    let now = eventually(&gw, "fired", |f| !f.is_empty()).await;
    assert_eq!(now[0]["awaiting_approval"], true);
    // Not approved: requests keep their model.
    let (_, body) = ask(&gw).await;
    assert!(
        !body["model"].as_str().unwrap().starts_with("gpt-4o-mini"),
        "{body}"
    );

    let path = "/admin/rules/cost_guard/approve";
    assert_eq!(admin(&gw, "POST", path, VIEWER, None).await.status, 403);
    let url = format!("http://{}", gw.admin);
    let status = crate::ctl::ctl(&url, Some(VIEWER), &["status"]).await;
    assert!(
        status.stdout.contains("rule cost_guard on support")
            && status.stdout.contains("awaiting approval"),
        "{status:?}"
    );
    let approved = crate::ctl::ctl(&url, Some(OPERATOR), &["approve", "cost_guard"]).await;
    assert_eq!(approved.code, Some(0), "{approved:?}");
    assert!(
        approved.stdout.contains("rewritten to gpt-4o-mini"),
        "{approved:?}"
    );
    let status = crate::ctl::ctl(&url, Some(VIEWER), &["status"]).await;
    assert!(
        status
            .stdout
            .contains("model downgraded by a rule to gpt-4o-mini"),
        "{status:?}"
    );
    let (_, body) = ask(&gw).await;
    assert!(
        body["model"].as_str().unwrap().starts_with("gpt-4o-mini"),
        "{body}"
    );
    assert_eq!(
        admin(&gw, "POST", path, OPERATOR, None).await.status,
        409,
        "approved already"
    );

    let released = admin(
        &gw,
        "POST",
        "/admin/rules/cost_guard/release",
        OPERATOR,
        None,
    )
    .await;
    assert_eq!(released.status, 200, "{:?}", released.body);
    let twice = admin(
        &gw,
        "POST",
        "/admin/rules/cost_guard/release",
        OPERATOR,
        None,
    )
    .await;
    assert_eq!(
        (twice.status.as_u16(), twice.json()["error"]["code"].clone()),
        (409, "not_in_force".into())
    );
    let unknown = admin(&gw, "POST", "/admin/rules/nope/approve", OPERATOR, None).await;
    assert_eq!(
        (
            unknown.status.as_u16(),
            unknown.json()["error"]["code"].clone()
        ),
        (404, "unknown_rule".into())
    );
    let elsewhere = admin(
        &gw,
        "POST",
        path,
        OPERATOR,
        Some(serde_json::json!({"route": "other"})),
    )
    .await;
    assert_eq!(elsewhere.status, 404);
    let (_, body) = ask(&gw).await;
    assert!(
        !body["model"].as_str().unwrap().starts_with("gpt-4o-mini"),
        "{body}"
    );
    let audit = admin(&gw, "GET", "/admin/audit", VIEWER, None).await.json();
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"approve") && actions.contains(&"release"),
        "{actions:?}"
    );
    drop(gw);

    let automatic = rules.replace(
        "downgrade_to = \"gpt-4o-mini\"",
        "downgrade_to = \"gpt-4o-mini\"\nautomatic = true",
    );
    let gw = gateway(&config(addr, &automatic)).await;
    for _ in 0..4 {
        ask(&gw).await;
    }
    let now = eventually(&gw, "fired", |f| !f.is_empty()).await;
    assert_eq!(now[0]["awaiting_approval"], false);
    let (_, body) = ask(&gw).await;
    assert!(
        body["model"].as_str().unwrap().starts_with("gpt-4o-mini"),
        "{body}"
    );
}
