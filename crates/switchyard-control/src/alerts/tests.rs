use std::sync::Arc;

use switchyard_core::ErrorClass;

use super::*;
use crate::exchange::{Exchange, Outcome};
use crate::signals::Spans;

const DAY: u64 = 86_400;

fn settings() -> AlertSettings {
    AlertSettings {
        p99_latency: Duration::from_secs(10),
        error_rate: 0.5,
        window: Duration::from_secs(300),
        traffic_spike: 3.0,
        baseline: Duration::from_secs(7 * DAY),
        min_requests: 20,
        queue_depth: 100,
        context_fill: 0.9,
        daily_tokens: None,
        budget_alert_at: 0.8,
    }
}

fn exchange() -> Exchange {
    Exchange {
        request_id: Arc::from("r"),
        route: Arc::from("spiky"),
        upstream: Arc::from("up"),
        variant: Arc::from("none"),
        model: Arc::from("gpt-4o"),
        status: 200,
        error: ErrorClass::of_status(200),
        upstream_error_type: None,
        outcome: Outcome::Complete,
        duration: Duration::from_millis(5),
        ttfb: None,
        ttft: None,
        prompt_tokens: 1,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        completion_tokens: 1,
        cost_usd: 0.0,
        context_fill: None,
        fill_source: crate::FillSource::Estimated,
        streamed: false,
        requested_model: None,
        response_model: None,
        finish_reason: None,
        prompt_fingerprint: None,
        bodies: None,
        refused: false,
        gen_ai_operation: Some("chat"),
        gen_ai_system: "openai",
        trace: switchyard_core::TraceContext::default(),
    }
}

fn spike(route: &RouteSignals, s: &AlertSettings, now: u64) -> (f64, bool) {
    let checks = route_checks(route, s, now);
    let found = checks
        .iter()
        .find(|(kind, ..)| *kind == AlertKind::TrafficSpike);
    found.map_or((0.0, false), |(_, value, _, breached)| (*value, *breached))
}

#[test]
fn a_seven_day_baseline_judges_a_spike() {
    let s = settings();
    let signals = Signals::new();
    let spans = Spans {
        window: s.window,
        baseline: s.baseline,
        context_fill: s.context_fill,
    };
    let route = signals.route("spiky", spans);
    let born = route.born();
    // Eight days of one request every 30 s.
    let now = born + 8 * DAY;
    for at in (born..now).step_by(30) {
        route.record(exchange(), at, signals.experiments());
    }
    let (ratio, breached) = spike(&route, &s, now);
    assert!((ratio - 1.0).abs() < 0.01, "{ratio}");
    assert!(!breached);
    // Then 100 more requests in the window's last minute: 11 times the baseline rate.
    for i in 0..100 {
        route.record(exchange(), now - 1 - i % 60, signals.experiments());
    }
    let (ratio, breached) = spike(&route, &s, now);
    assert!((ratio - 11.0).abs() < 0.2, "{ratio}");
    assert!(breached);
}
