use super::super::testing::{config, exchange, feed, rig, BASE};
use crate::rollout::Phase;

const TOKENS: &str = r#"
[[rules]]
name = "tokens"
metric = "tokens_per_request"
above = 5
window = "30s"
min_requests = 5
action = "throttle_and_alert"
throttle_to = 0.5
"#;

const COST: &str = r#"
[[rules]]
name = "cost"
metric = "cost_per_request"
above = 0.001
window = "30s"
min_requests = 5
action = "throttle_and_alert"
throttle_to = 0.1
"#;

#[test]
fn two_throttles_on_a_route_keep_the_lower_rate_until_both_clear() {
    let rig = rig(&format!("{BASE}{TOKENS}{COST}"));
    feed(&rig, 100, |_| exchange("blue", 200, None, 100, 0.01));
    rig.controller.tick();
    assert_eq!(rig.controller.rules_firing().len(), 2);
    let throttle = || {
        rig.controller
            .steering()
            .get("support")
            .unwrap()
            .throttle_rps
    };
    let both = throttle().unwrap();
    // Dropping the stricter rule leaves the other's throttle in force.
    rig.controller.apply(&config(&format!("{BASE}{TOKENS}")));
    let left = throttle().unwrap();
    assert!(
        left > both,
        "{left} should be the laxer rule's rate, above {both}"
    );
    assert_eq!(rig.controller.rules_firing().len(), 1);
}

#[test]
fn a_reload_without_the_rule_lifts_its_throttle() {
    let rig = rig(&format!("{BASE}{TOKENS}"));
    feed(&rig, 10, |_| exchange("blue", 200, None, 100, 0.01));
    rig.controller.tick();
    assert_eq!(rig.controller.rules_firing().len(), 1);
    let throttle = || {
        rig.controller
            .steering()
            .get("support")
            .unwrap()
            .throttle_rps
    };
    assert!(throttle().is_some());
    rig.controller.apply(&config(BASE));
    assert!(rig.controller.rules_firing().is_empty());
    assert_eq!(throttle(), None);
    assert_eq!(
        rig.controller.rollout("support").unwrap().phase,
        Phase::Shifting,
        "the rollout is untouched"
    );
}

#[test]
fn a_rule_fires_once_with_an_incident_and_clears_when_the_metric_is_back() {
    let rule = TOKENS.replace("throttle_and_alert", "alert");
    let rig = rig(&format!("{BASE}{rule}"));
    feed(&rig, 10, |_| exchange("blue", 200, None, 100, 0.01));
    rig.controller.tick();
    rig.controller.tick();
    let firing = rig.controller.rules_firing();
    assert_eq!(firing.len(), 1);
    assert_eq!(firing[0].action.as_str(), "alert");
    let incidents = rig.controller.incidents().list();
    assert_eq!(incidents.len(), 1, "one incident for one firing");
    assert_eq!(
        firing[0].incident.as_deref(),
        Some(incidents[0].id.as_str())
    );
    assert_eq!(incidents[0].by, "rule:tokens");
    assert_eq!(incidents[0].kind, "rule");
    let json = serde_json::to_value(&firing[0]).unwrap();
    assert_eq!(json["metric"], "tokens_per_request");
    // Cleared by a reload that raises the bar above what the route does.
    let lax = rule.replace("above = 5", "above = 50");
    rig.controller.apply(&config(&format!("{BASE}{lax}")));
    rig.controller.tick();
    assert!(rig.controller.rules_firing().is_empty());
}

#[test]
fn a_rollback_rule_rolls_the_rollout_back_by_the_rule() {
    let rule = TOKENS.replace("throttle_and_alert", "rollback_and_notify");
    let rig = rig(&format!("{BASE}{rule}"));
    feed(&rig, 10, |_| exchange("blue", 200, None, 100, 0.01));
    rig.controller.tick();
    let state = rig.controller.rollout("support").unwrap();
    assert_eq!(state.phase, Phase::RolledBack);
    assert_eq!(state.by.as_deref(), Some("rule:tokens"));
    let incidents = rig.controller.incidents().list();
    assert_eq!(incidents.len(), 1, "the rollback's incident only");
    assert_eq!(incidents[0].trigger.as_ref().unwrap().name, "rule:tokens");
    assert_eq!(
        rig.controller.rules_firing()[0].incident.as_deref(),
        Some(incidents[0].id.as_str())
    );
}
