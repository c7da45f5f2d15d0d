//! Rollouts driven by operators through `switchyard ctl`, requests without a user key, and the
//! bodies incidents keep: with two simulated upstreams.

use switchyard_sim::Profile;

use crate::common::*;
use crate::rollout::{blue_green, rollout_of};

// Long: one scenario told in order; each step starts from the state the previous one left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_rolls_back_promotes_and_shows_the_rollout() {
    let (_blue, blue_addr) = sim(Profile::default()).await;
    let (_green, green_addr) = sim(Profile::default()).await;
    let toml = blue_green(blue_addr, green_addr, "stages = [5, 25, 100]", "");
    let gw = gateway(&toml).await;
    let url = format!("http://{}", gw.admin);
    let ctl = crate::ctl::ctl;
    let status = ctl(&url, Some(VIEWER), &["status"]).await;
    assert_eq!(status.code, Some(0), "{status:?}");
    assert!(
        status
            .stdout
            .contains("rollout of green: shifting, stage 1 of 3"),
        "{status:?}"
    );
    let refused = ctl(&url, Some(VIEWER), &["rollback", "support"]).await;
    assert_ne!(refused.code, Some(0), "{refused:?}");
    let rolled = ctl(
        &url,
        Some(OPERATOR),
        &["rollback", "support", "--reason", "bad answers"],
    )
    .await;
    assert_eq!(rolled.code, Some(0), "{rolled:?}");
    assert!(
        rolled
            .stdout
            .contains("ROLLED BACK, every user on blue blue"),
        "{rolled:?}"
    );
    assert!(rolled.stdout.contains("Incident inc-"), "{rolled:?}");
    assert_eq!(rollout_of(&gw).await["reason"], "bad answers");
    let id = rolled
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("inc-"))
        .unwrap()
        .to_owned();
    let incident = ctl(&url, Some(VIEWER), &["incident", &id]).await;
    assert_eq!(incident.code, Some(0), "{incident:?}");
    for expected in [
        "trigger",
        "operator",
        "green at 5 % of users (shifting)",
        "green at 0 % of users (rolled back)",
        "evidence",
    ] {
        assert!(
            incident.stdout.contains(expected),
            "{expected}: {incident:?}"
        );
    }
    let json = ctl(&url, Some(OPERATOR), &["--json", "promote", "support"]).await;
    assert_eq!(json.code, Some(0), "{json:?}");
    let body: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(body["after"]["phase"], "complete");
    let again = ctl(&url, Some(OPERATOR), &["promote", "support"]).await;
    assert_ne!(again.code, Some(0), "{again:?}");
    assert!(again.stderr.contains("already complete"), "{again:?}");
    let missing = ctl(&url, Some(VIEWER), &["experiment", "nope"]).await;
    assert_ne!(missing.code, Some(0), "{missing:?}");
}

#[tokio::test]
async fn requests_without_a_user_key_are_split_per_request_and_counted() {
    let (_blue, blue_addr) = sim(Profile::default()).await;
    let (_green, green_addr) = sim(Profile::default()).await;
    let toml = blue_green(
        blue_addr,
        green_addr,
        "stages = [50, 100]\nbake = \"1h\"",
        "",
    )
    .replace(
        "name = \"support\"\n",
        "name = \"support\"\nuser_key = [\"header:x-user-id\"]\n",
    );
    let gw = gateway(&toml).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let answer = post_json(
            gw.traffic,
            "/v1/chat/completions",
            &[],
            chat("gpt-4o", false),
        )
        .await;
        assert_eq!(answer.status, 200);
        seen.insert(
            answer.headers["x-switchyard-upstream"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(
        seen.len(),
        2,
        "both sides served keyless requests: {seen:?}"
    );
    let text = metrics(&gw).await;
    assert_eq!(
        metric(
            &text,
            "switchyard_unsticky_requests_total",
            &[("route", "support")]
        ),
        40.0
    );
}

#[tokio::test]
async fn incidents_keep_bodies_only_when_capture_is_on() {
    let (_blue, blue_addr) = sim(Profile::default()).await;
    let (_green, green_addr) = sim(Profile::default()).await;
    let toml = blue_green(blue_addr, green_addr, "stages = [50, 100]", "")
        + "\n[incidents]\ncapture_bodies = true\nsample = 3\n";
    let gw = gateway(&toml).await;
    let mut body = chat("gpt-4o", false);
    body["messages"][1]["content"] = serde_json::json!("order 4711-SECRET has not arrived");
    for _ in 0..5 {
        let answer = post_json(
            gw.traffic,
            "/v1/chat/completions",
            &[("x-user-id", "u")],
            body.clone(),
        )
        .await;
        assert_eq!(answer.status, 200);
    }
    let rolled = admin(
        &gw,
        "POST",
        "/admin/routes/support/rollback",
        OPERATOR,
        None,
    )
    .await;
    let id = rolled.json()["incident"].as_str().unwrap().to_owned();
    let incident = admin(&gw, "GET", &format!("/admin/incidents/{id}"), VIEWER, None)
        .await
        .json();
    let sample = incident["evidence"]["sample"].as_array().unwrap();
    assert_eq!(sample.len(), 3, "[incidents] sample");
    assert!(sample[0]["request_body"]
        .as_str()
        .unwrap()
        .contains("4711-SECRET"));
    assert!(
        sample[0]["response_body"]
            .as_str()
            .unwrap()
            .contains("chat.completion"),
        "{}",
        sample[0]
    );
}
