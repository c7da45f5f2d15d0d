use switchyard_config::{RuleAction, RuleMetric};

use super::throttle_changes;
use crate::controller::vocab::RuleFiring;
use crate::controller::Inner;
use crate::fleet::rollouts::SharedThrottle;
use crate::fleet::Change;

fn firing(rule: &str, route: &str, rps: Option<f64>) -> RuleFiring {
    RuleFiring {
        rule: rule.into(),
        route: route.into(),
        metric: RuleMetric::CostPerRequest,
        action: if rps.is_some() {
            RuleAction::ThrottleAndAlert
        } else {
            RuleAction::Alert
        },
        value: 2.0,
        threshold: 1.0,
        since_ms: 1_000,
        awaiting_approval: false,
        incident: None,
        throttle_rps: rps,
    }
}

fn inner(firings: &[RuleFiring]) -> Inner {
    let mut inner = Inner::default();
    for f in firings {
        inner
            .rules
            .insert((f.rule.clone(), f.route.clone()), f.clone());
    }
    inner
}

fn held(rule: &str, route: &str, replica: &str, rps: f64) -> SharedThrottle {
    SharedThrottle {
        route: route.into(),
        rule: rule.into(),
        replica: replica.into(),
        rps,
        since_ms: 1_000,
    }
}

fn live(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|id| (*id).to_owned()).collect()
}

#[test]
fn a_firing_throttle_is_held_once_and_an_alert_only_rule_holds_nothing() {
    let rules = inner(&[
        firing("spend", "support", Some(3.0)),
        firing("watch", "support", None),
    ]);
    let changes = throttle_changes(&rules, &[], "a", &live(&["a", "b"]), false);
    assert_eq!(
        changes,
        vec![Change::Throttle {
            throttle: held("spend", "support", "a", 3.0)
        }]
    );
    let shared = [held("spend", "support", "a", 3.0)];
    assert!(throttle_changes(&rules, &shared, "a", &live(&["a", "b"]), false).is_empty());
}

#[test]
fn a_new_rate_replaces_the_held_one_and_a_cleared_rule_lifts_it() {
    let shared = [held("spend", "support", "a", 3.0)];
    let faster = inner(&[firing("spend", "support", Some(5.0))]);
    assert_eq!(
        throttle_changes(&faster, &shared, "a", &live(&["a"]), false),
        vec![Change::Throttle {
            throttle: held("spend", "support", "a", 5.0)
        }],
        "the new rate replaces the same holder's old one in one write"
    );
    let cleared = inner(&[]);
    assert_eq!(
        throttle_changes(&cleared, &shared, "a", &live(&["a"]), false),
        vec![Change::Unthrottle {
            throttle: held("spend", "support", "a", 3.0)
        }]
    );
}

#[test]
fn only_the_lease_holder_removes_the_throttles_of_replicas_gone_from_the_fleet() {
    let shared = [
        held("spend", "support", "b", 3.0),
        held("spend", "support", "gone", 2.0),
    ];
    let quiet = inner(&[]);
    assert!(
        throttle_changes(&quiet, &shared, "a", &live(&["a", "b"]), false).is_empty(),
        "another replica's throttle is its own to lift"
    );
    assert_eq!(
        throttle_changes(&quiet, &shared, "a", &live(&["a", "b"]), true),
        vec![Change::Unthrottle {
            throttle: held("spend", "support", "gone", 2.0)
        }]
    );
    assert!(
        throttle_changes(&quiet, &shared, "a", &[], true).is_empty(),
        "no heartbeat read yet: nobody is known to be gone"
    );
}
