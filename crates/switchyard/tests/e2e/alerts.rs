//! Golden-signal alerts fire on the sliding window and clear when the condition clears.

use std::time::{Duration, Instant};

use switchyard_control::AlertKind;
use switchyard_sim::{ErrorKind, Profile};

use crate::common::*;

const FAST_ALERTS: &str = "[alerts]\nwindow = \"2s\"\nbaseline = \"10s\"\nmin_requests = 5\n";

async fn wait_for(gw: &switchyard::Running, kind: AlertKind, route: &str, firing: bool) {
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        let now = gw
            .alerts
            .firing()
            .iter()
            .any(|a| a.kind == kind && a.route == route);
        if now == firing {
            let m = metrics(gw).await;
            let gauge = metric(
                &m,
                "switchyard_alerts_firing",
                &[("alert", kind.as_str()), ("route", route)],
            );
            assert_eq!(gauge, if firing { 1.0 } else { 0.0 });
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{kind:?} on {route} never became firing={firing}: {:?}",
        gw.alerts.firing()
    );
}

#[tokio::test]
async fn error_rate_alert_fires_and_clears() {
    let failing = Profile {
        error_rate: 1.0,
        error_kind: ErrorKind::Overloaded,
        ..Profile::default()
    };
    let (sim, up) = sim(failing).await;
    let gw = gateway(&format!(
        "{FAST_ALERTS}{}",
        one_route("a-errors", &format!("http://{up}"), "")
    ))
    .await;
    for _ in 0..10 {
        let answer = post_json(
            gw.traffic,
            "/v1/chat/completions",
            &[],
            chat("gpt-4o", false),
        )
        .await;
        assert_eq!(answer.status, 503);
    }
    wait_for(&gw, AlertKind::ErrorRate, "a-errors", true).await;
    sim.set_profile(Profile::default());
    wait_for(&gw, AlertKind::ErrorRate, "a-errors", false).await;
    gw.stop().await;
}

#[tokio::test]
async fn p99_latency_alert_fires_above_the_sla() {
    let (_sim, up) = sim(Profile {
        ttfb_ms: 150.0,
        ..Profile::default()
    })
    .await;
    let config = format!(
        "{FAST_ALERTS}p99_latency = \"50ms\"\n{}",
        one_route("a-slow", &format!("http://{up}"), "")
    );
    let gw = gateway(&config).await;
    let sends = (0..6).map(|_| {
        post_json(
            gw.traffic,
            "/v1/chat/completions",
            &[],
            chat("gpt-4o", false),
        )
    });
    for answer in futures_join(sends).await {
        assert_eq!(answer.status, 200);
    }
    wait_for(&gw, AlertKind::P99Latency, "a-slow", true).await;
    wait_for(&gw, AlertKind::P99Latency, "a-slow", false).await;
    gw.stop().await;
}

#[tokio::test]
async fn context_fill_and_token_budget_alerts_fire() {
    let (_sim, up) = sim(Profile::default()).await;
    let route = one_route("a-fill", &format!("http://{up}"), "")
        .replace("context_window = 128000", "context_window = 20");
    let config = format!("{FAST_ALERTS}\n[budgets]\ndaily_tokens = 50\nalert_at = 0.5\n{route}");
    let gw = gateway(&config).await;
    let answer = post_json(
        gw.traffic,
        "/v1/chat/completions",
        &[],
        chat("gpt-4o", false),
    )
    .await;
    assert_eq!(answer.status, 200);
    wait_for(&gw, AlertKind::ContextFill, "a-fill", true).await;
    wait_for(&gw, AlertKind::TokenBudget, "*", true).await;
    let m = metrics(&gw).await;
    assert!(metric(&m, "switchyard_token_budget_used_ratio", &[]) >= 0.5);
    wait_for(&gw, AlertKind::ContextFill, "a-fill", false).await;
    gw.stop().await;
}

async fn futures_join<F: std::future::Future<Output = Answer> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<Answer> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test]
async fn traffic_spike_alert_compares_the_window_with_the_trailing_baseline() {
    let (_sim, up) = sim(Profile::default()).await;
    let config = format!(
        "[alerts]\nwindow = \"1s\"\nbaseline = \"4s\"\nmin_requests = 3\ntraffic_spike = 3.0\n{}",
        one_route("a-spike", &format!("http://{up}"), "")
    );
    let gw = gateway(&config).await;
    // Steady baseline traffic: one request every 250 ms for 4 s.
    for _ in 0..16 {
        post_json(
            gw.traffic,
            "/v1/chat/completions",
            &[],
            chat("gpt-4o", false),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        !gw.alerts
            .firing()
            .iter()
            .any(|a| a.kind == AlertKind::TrafficSpike),
        "steady traffic is no spike"
    );
    // Then 40 requests at once: ten times the baseline rate.
    let burst = (0..40).map(|_| {
        post_json(
            gw.traffic,
            "/v1/chat/completions",
            &[],
            chat("gpt-4o", false),
        )
    });
    futures_join(burst).await;
    wait_for(&gw, AlertKind::TrafficSpike, "a-spike", true).await;
    gw.stop().await;
}

#[tokio::test]
async fn long_healthy_streams_do_not_breach_the_latency_sla() {
    let profile = Profile {
        stream_chunks: 6,
        chunk_interval_ms: 100.0,
        completion_tokens: 12,
        ..Profile::default()
    };
    let (_sim, up) = sim(profile).await;
    let config = format!(
        "{FAST_ALERTS}p99_latency = \"200ms\"\n{}",
        one_route("a-streams", &format!("http://{up}"), "")
    );
    let gw = gateway(&config).await;
    let sends = (0..6).map(|_| {
        post_json(
            gw.traffic,
            "/v1/chat/completions",
            &[],
            chat("gpt-4o", true),
        )
    });
    for answer in futures_join(sends).await {
        assert_eq!(answer.status, 200);
    }
    // Each stream lasts ~600 ms, three times the SLA, but its first byte comes at once.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let firing = gw.alerts.firing();
    assert!(
        !firing.iter().any(|a| a.kind == AlertKind::P99Latency),
        "{firing:?}"
    );
    let m = metrics(&gw).await;
    assert!(
        metric(
            &m,
            "switchyard_request_duration_seconds_sum",
            &[("route", "a-streams")]
        ) > 3.0
    );
    gw.stop().await;
}
