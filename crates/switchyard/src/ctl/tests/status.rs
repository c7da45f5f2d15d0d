use serde_json::json;

use super::{assert_narrow, parse, plain, NOW};
use crate::ctl::api::Status;
use crate::ctl::render::render_status;
use crate::ctl::text::View;

fn killed_support() -> serde_json::Value {
    json!({
        "config_version": "fb54a1c2e0d39b77",
        "routes": [
            {"name": "support", "upstream": "support-sim",
             "endpoints": ["http://127.0.0.1:35635"],
             "weights": [{"upstream": "support-sim", "percent": 100.0}],
             "kill_switch": {"route": "support", "reason": "bad answers after the 11:20 deploy",
                             "percent": 25.0, "segment": {"header": "x-tenant", "value": "acme"},
                             "engaged_at_ms": 1_795_347_000_123u64, "by": "oncall"},
             "fallback": "text"},
            {"name": "billing", "upstream": "billing-a", "endpoints": [],
             "weights": [{"upstream": "billing-a", "percent": 90.0},
                         {"upstream": "billing-b", "percent": 10.0}],
             "kill_switch": null, "fallback": "upstream:faq-bot"}
        ],
        "alerts_firing": [
            {"alert": "error_rate", "route": "support", "value": 0.3, "threshold": 0.01,
             "since": 1_795_346_980u64}
        ],
        "tokens_today": 1234,
        "open_incidents": 2
    })
}

#[test]
fn ctl_status_shows_routes_kill_switch_alerts_and_counts() {
    let text = render_status(&parse(killed_support()), &plain());
    let expected = "\
config fb54a1c2e0d39b77 · 2 open incidents · 1234 tokens today

ROUTE    STATE   UPSTREAM                       FALLBACK
support  KILLED  support-sim                    text
    killed: 25% of users with x-tenant=acme, since 11:30:00Z (3m ago) by oncall:
    bad answers after the 11:20 deploy
billing  ok      billing-a 90% / billing-b 10%  upstream:faq-bot

1 alert firing
ALERT       ROUTE    VALUE      SINCE
error_rate  support  30% vs 1%  11:29:40Z (4m ago)
";
    assert_eq!(text, expected, "\n{text}");
    assert_narrow(&text);
}

#[test]
fn ctl_status_a_quiet_gateway_says_so() {
    let status: Status = parse(json!({
        "config_version": "1a2b", "routes": [{"name": "r", "upstream": "up",
        "weights": [{"upstream": "up", "percent": 100.0}], "kill_switch": null,
        "fallback": "none"}], "alerts_firing": [], "tokens_today": 0, "open_incidents": 0
    }));
    let text = render_status(&status, &plain());
    assert_eq!(
        text,
        "config 1a2b · 0 open incidents · 0 tokens today\n\n\
         ROUTE  STATE  UPSTREAM  FALLBACK\n\
         r      ok     up        none\n\n\
         no alerts firing\n"
    );
}

#[test]
fn ctl_status_tolerates_missing_and_unknown_fields() {
    // An older server (no kill switches, fallbacks or incident count) and a newer one
    // (fields ctl has never heard of) must both render.
    let status: Status = parse(json!({
        "config_version": "v1", "routes": [{"name": "r", "upstream": "up", "shiny": [1, 2]}],
        "alerts_firing": [{"alert": "brand_new", "route": "*", "value": 7.0,
                           "threshold": 5.0, "since": NOW, "severity": "page"}],
        "something_new": {"a": 1}
    }));
    let text = render_status(&status, &plain());
    assert!(text.starts_with("config v1\n\n"), "{text}");
    assert!(text.contains("r      ok     up        -\n"), "{text}");
    assert!(
        text.contains("brand_new  *      7 vs 5  11:34:00Z (just now)"),
        "{text}"
    );
}

#[test]
fn ctl_status_long_names_are_clipped_to_stay_narrow() {
    let status: Status = parse(json!({
        "config_version": "v1",
        "routes": [{"name": "a-route-name-far-longer-than-anyone-should-write",
                    "upstream": "an-upstream-with-an-equally-long-name-for-testing",
                    "kill_switch": {"route": "x", "reason": "word ".repeat(40),
                                    "engaged_at_ms": NOW - 3 * 86_400_000, "by": "oncall"},
                    "fallback": "upstream:another-very-long-fallback-upstream"}]
    }));
    let text = render_status(&status, &plain());
    assert_narrow(&text);
    assert!(text.contains("a-route-name-far-lo…"), "{text}");
    assert!(
        text.contains("killed: all traffic, since 2026-11-19 11:34Z (3d ago)"),
        "{text}"
    );
}

#[test]
fn ctl_status_colours_only_killed_and_firing_when_asked() {
    let color = View {
        now_ms: NOW,
        color: true,
    };
    let text = render_status(&parse(killed_support()), &color);
    assert!(
        text.contains("\x1b[1;31mKILLED\x1b[0m  support-sim"),
        "{text:?}"
    );
    assert!(
        text.contains("\x1b[1;31merror_rate\x1b[0m  support"),
        "{text:?}"
    );
    assert_eq!(text.matches("\x1b[1;31m").count(), 2, "{text:?}");
    let plain_text = render_status(&parse(killed_support()), &plain());
    assert!(!plain_text.contains('\x1b'));
}

#[test]
fn ctl_status_alert_figures_use_each_alert_unit() {
    let status: Status = parse(json!({
        "config_version": "v",
        "alerts_firing": [
            {"alert": "p99_latency", "route": "a", "value": 2.5, "threshold": 1.0, "since": NOW},
            {"alert": "traffic_spike", "route": "a", "value": 4.2, "threshold": 3.0, "since": NOW},
            {"alert": "token_budget", "route": "*", "value": 0.92, "threshold": 0.8, "since": NOW},
            {"alert": "context_fill", "route": "a", "value": 3.0, "threshold": 0.8, "since": NOW}
        ]
    }));
    let text = render_status(&status, &plain());
    assert!(text.contains("4 alerts firing"), "{text}");
    for figure in ["2.5s vs 1s", "4.2x vs 3x", "92% vs 80%", "3 req over 80%"] {
        assert!(text.contains(figure), "{figure} missing:\n{text}");
    }
}

#[test]
fn status_lists_fleet_members_and_flags_drift_and_divergence() {
    let mut doc = killed_support();
    doc["fleet"] = json!({
        "mode": "shared", "instance_id": "gw-1", "state_version": 7, "divergent": false,
        "members": [
            {"instance_id": "gw-1", "state_version": 7, "config_version": "fb54a1c2e0d39b77", "divergent": false},
            {"instance_id": "gw-2", "state_version": 6, "config_version": "0000000000000001", "divergent": true}
        ]
    });
    let status: Status = parse(doc);
    let text = render_status(&status, &plain());
    assert_narrow(&text);
    assert!(
        text.contains("fleet: shared on gw-1, state version 7"),
        "{text}"
    );
    let gw2 = text.lines().find(|l| l.contains("gw-2")).unwrap();
    assert!(
        gw2.contains("other state") && gw2.contains("config drift") && gw2.contains("divergent"),
        "{gw2}"
    );
    let gw1 = text
        .lines()
        .find(|l| l.trim_start().starts_with("gw-1"))
        .unwrap();
    assert!(!gw1.contains("other") && !gw1.contains("drift"), "{gw1}");
}

#[test]
fn ctl_status_reads_rules_firing_in_the_gateway_own_shape() {
    let mut body = killed_support();
    body["rules_firing"] = json!([
        {"rule": "spend", "route": "support", "metric": "cost_per_request",
         "action": "downgrade_model", "value": 0.02, "threshold": 0.01,
         "since_ms": 1_795_347_000_123u64, "awaiting_approval": true, "incident": null}
    ]);
    let status: Status = parse(body);
    assert_eq!(status.rules_firing.len(), 1);
    let text = render_status(&status, &plain());
    assert!(
        text.contains("rule spend on support: cost_per_request 0.02 against 0.01 → downgrade_model — awaiting approval"),
        "{text}"
    );
}
