//! A/B experiments: sticky variants that change the upstream and the request, per-variant
//! figures, application feedback, and the sequential test's verdicts on known distributions.

use std::net::SocketAddr;
use std::sync::Arc;

use switchyard::Running;
use switchyard_sim::{ErrorKind, Profile};

use crate::common::*;

fn failing(rate: f64) -> Profile {
    Profile {
        error_rate: rate,
        error_kind: ErrorKind::Status500,
        ..Profile::default()
    }
}

fn config(control: SocketAddr, variant: SocketAddr, same: SocketAddr) -> String {
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

[upstreams.control]
url = "http://{control}"

[upstreams.variant]
url = "http://{variant}"

[upstreams.same]
url = "http://{same}"

[[routes]]
name = "aa"
match = {{ header = {{ "x-agent" = "aa" }} }}
upstream = "same"

[[routes.experiments]]
name = "aa-test"
share = 0.5
alpha = 0.001
variant = {{ headers = {{ "x-arm" = "b" }} }}

[[routes]]
name = "chat"
upstream = "control"

[[routes.experiments]]
name = "smaller-model"
share = 0.5
variant = {{ upstream = "variant", set_model = "gpt-4o-mini", headers = {{ "x-experiment" = "smaller" }} }}
"#,
        tokens = admin_tokens()
    )
}

/// Sends `n` requests from distinct users `prefix-0..n`, 16 at a time.
async fn traffic(addr: SocketAddr, prefix: &str, agent: Option<&str>, n: usize) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..16 {
        let next = next.clone();
        let prefix = prefix.to_owned();
        let agent = agent.map(str::to_owned);
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let user = format!("{prefix}-{i}");
                let mut headers = vec![("x-user-id", user.as_str())];
                if let Some(agent) = agent.as_deref() {
                    headers.push(("x-agent", agent));
                }
                let answer = post_json(
                    addr,
                    "/v1/chat/completions",
                    &headers,
                    chat("gpt-4o", false),
                )
                .await;
                assert!(
                    answer.status == 200 || answer.status == 500,
                    "{}",
                    answer.status
                );
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
}

async fn experiment(gw: &Running, name: &str) -> serde_json::Value {
    let answer = admin(
        gw,
        "GET",
        &format!("/admin/experiments/{name}"),
        VIEWER,
        None,
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.json()
}

// Long: one scenario told in order; each step starts from the state the previous one left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_follow_the_known_distributions_and_an_a_a_test_calls_no_difference() {
    // Completion rates: control 0.90, variant 0.70 (errors are not completions); A/A 0.75.
    let (_control, control_addr) = sim(failing(0.10)).await;
    let (_variant, variant_addr) = sim(failing(0.30)).await;
    let (_same, same_addr) = sim(failing(0.25)).await;
    let gw = gateway(&config(control_addr, variant_addr, same_addr)).await;

    traffic(gw.traffic, "early", None, 300).await;
    let early = experiment(&gw, "smaller-model").await;
    assert_eq!(early["verdict"], "insufficient sample", "{early}");

    traffic(gw.traffic, "user", None, 2300).await;
    let ab = experiment(&gw, "smaller-model").await;
    let arms = ab["arms"].as_array().unwrap();
    assert_eq!(arms[0]["variant"], "control");
    assert_eq!(arms[1]["variant"], "smaller-model");
    let requests: Vec<u64> = arms
        .iter()
        .map(|a| a["requests"].as_u64().unwrap())
        .collect();
    assert_eq!(requests.iter().sum::<u64>(), 2600);
    assert!(
        requests.iter().all(|n| (1100..1500).contains(n)),
        "{requests:?}"
    );
    let rate = |i: usize| arms[i]["completion_rate"].as_f64().unwrap();
    assert!((rate(0) - 0.90).abs() < 0.04, "control {}", rate(0));
    assert!((rate(1) - 0.70).abs() < 0.05, "variant {}", rate(1));
    let errors = |i: usize| arms[i]["error_rate"].as_f64().unwrap();
    assert!((errors(0) + rate(0) - 1.0).abs() < 1e-9);
    assert!(
        arms[1]["cost_per_request_usd"].as_f64().unwrap()
            < arms[0]["cost_per_request_usd"].as_f64().unwrap(),
        "the variant's model is cheaper: {ab}"
    );
    assert!(arms[0]["latency_p99_ms"].as_f64().is_some());
    assert!(arms[0]["tokens_per_completed"].as_f64().unwrap() > 0.0);
    assert_eq!(ab["verdict"], "difference", "{ab}");
    assert!(ab["difference"].as_f64().unwrap() < -0.1);
    assert!(ab["p_value"].as_f64().unwrap() <= 0.05);

    traffic(gw.traffic, "more", None, 2000).await;
    let confident = experiment(&gw, "smaller-model").await;
    assert_eq!(confident["verdict"], "confident difference", "{confident}");

    traffic(gw.traffic, "aa", Some("aa"), 2600).await;
    let aa = experiment(&gw, "aa-test").await;
    let aa_arms = aa["arms"].as_array().unwrap();
    assert!(
        aa_arms
            .iter()
            .all(|a| a["requests"].as_u64().unwrap() >= 500),
        "{aa}"
    );
    assert_eq!(aa["verdict"], "no difference detected", "{aa}");
    assert_eq!(aa["alpha"], 0.001);

    // The per-variant figures are on /metrics too.
    let text = metrics(&gw).await;
    let variant_requests = metric(
        &text,
        "switchyard_requests_total",
        &[
            ("route", "chat"),
            ("variant", "smaller-model"),
            ("upstream", "variant"),
        ],
    );
    assert_eq!(
        variant_requests,
        requests[1] as f64
            + (confident["arms"][1]["requests"].as_u64().unwrap() - requests[1]) as f64
    );
    assert!(
        metric(
            &text,
            "switchyard_experiment_completions_total",
            &[("experiment", "smaller-model"), ("variant", "control")]
        ) > 0.0
    );
    assert!(
        text.contains("switchyard_experiment_p_value{experiment=\"smaller-model\"}")
            || text.contains("switchyard_experiment_p_value")
    );
    let all = admin(&gw, "GET", "/admin/experiments", VIEWER, None)
        .await
        .json();
    assert_eq!(all["experiments"].as_array().unwrap().len(), 2);
    let unknown = admin(&gw, "GET", "/admin/experiments/nope", VIEWER, None).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"]["code"], "unknown_experiment");
}

// Long: one scenario told in order; each step starts from the state the previous one left.
#[tokio::test]
async fn variants_are_sticky_rewrite_the_request_and_take_feedback() {
    let (_control, control_addr) = sim(Profile::default()).await;
    let (variant, variant_addr) = sim(Profile::default()).await;
    let (_same, same_addr) = sim(Profile::default()).await;
    let gw = gateway(&config(control_addr, variant_addr, same_addr)).await;

    let mut in_variant = None;
    let mut in_control = None;
    for n in 0..40 {
        let user = format!("person-{n}");
        let answer = post_json(
            gw.traffic,
            "/v1/chat/completions",
            &[("x-user-id", &user)],
            chat("gpt-4o", false),
        )
        .await;
        assert_eq!(answer.status, 200);
        let variant_header = answer.headers["x-switchyard-variant"]
            .to_str()
            .unwrap()
            .to_owned();
        let upstream = answer.headers["x-switchyard-upstream"]
            .to_str()
            .unwrap()
            .to_owned();
        let model = answer.json()["model"].as_str().unwrap().to_owned();
        let expected = switchyard_core::split::within(&user, "smaller-model", 0.5);
        if expected {
            assert_eq!(
                (variant_header.as_str(), upstream.as_str()),
                ("smaller-model", "variant")
            );
            assert!(model.starts_with("gpt-4o-mini"), "{model}");
            in_variant.get_or_insert(answer.headers["x-request-id"].to_str().unwrap().to_owned());
        } else {
            assert_eq!(
                (variant_header.as_str(), upstream.as_str()),
                ("control", "control")
            );
            assert!(!model.starts_with("gpt-4o-mini"), "{model}");
            in_control.get_or_insert(user.clone());
        }
        // The same user again: the same variant.
        let again = post_json(
            gw.traffic,
            "/v1/chat/completions",
            &[("x-user-id", &user)],
            chat("gpt-4o", false),
        )
        .await;
        assert_eq!(
            again.headers["x-switchyard-variant"].to_str().unwrap(),
            variant_header
        );
    }
    let request_id = in_variant.expect("some of 40 users are in a 50 % variant");
    assert!(in_control.is_some());
    // The variant's extra header reached its upstream.
    let stats = get(variant_addr, "/sim/stats").await.json();
    assert_eq!(
        stats["last_headers"]["x-experiment"][0], "smaller",
        "{stats}"
    );
    assert!(variant.requests() > 0);

    let before = experiment(&gw, "smaller-model").await;
    let completed = |e: &serde_json::Value| {
        let arm = &e["arms"][1];
        (arm["completion_rate"].as_f64().unwrap() * arm["requests"].as_f64().unwrap()).round()
    };
    let feedback =
        |body: serde_json::Value| post_json(gw.traffic, "/switchyard/v1/feedback", &[], body);
    let answer =
        feedback(serde_json::json!({"request_id": request_id, "success": false, "score": 0.2}))
            .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(answer.json()["experiments"][0]["variant"], "smaller-model");
    let after = experiment(&gw, "smaller-model").await;
    assert_eq!(
        completed(&after),
        completed(&before) - 1.0,
        "the report replaced the finish reason"
    );
    assert_eq!(after["arms"][1]["feedback_reports"], 1);
    assert_eq!(after["arms"][1]["mean_score"], 0.2);

    let again = feedback(serde_json::json!({"request_id": request_id, "success": true})).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.json()["error"]["code"], "duplicate_feedback");
    let unknown =
        feedback(serde_json::json!({"request_id": "no-such-request", "success": true})).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"]["code"], "unknown_request");
    let malformed = feedback(serde_json::json!({"request": request_id})).await;
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.json()["error"]["code"], "invalid_feedback");
    let wrong_method = get(gw.traffic, "/switchyard/v1/feedback").await;
    assert_eq!(wrong_method.status, 405);
    let text = metrics(&gw).await;
    assert_eq!(
        metric(
            &text,
            "switchyard_experiment_feedback_total",
            &[("experiment", "smaller-model"), ("result", "failure")]
        ),
        1.0
    );
}
