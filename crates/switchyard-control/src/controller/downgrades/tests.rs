use super::super::testing::{exchange, feed, rig, BASE};
use super::super::ActionError;

const DOWNGRADE: &str = r#"
[[rules]]
name = "tokens"
metric = "tokens_per_request"
above = 5
window = "30s"
min_requests = 5
action = "downgrade_model"
downgrade_to = "gpt-4o-mini"
"#;

#[test]
fn a_downgrade_waits_for_approval_and_lifts_on_release() {
    let rig = rig(&format!("{BASE}{DOWNGRADE}"));
    let downgrade = || {
        rig.controller
            .steering()
            .get("support")
            .and_then(|s| s.downgrade_to.clone())
    };
    assert_eq!(
        rig.controller.approve("tokens", None, "oncall"),
        Err(ActionError::NotAwaiting {
            rule: "tokens".into(),
            route: "support".into()
        })
    );
    feed(&rig, 10, |_| exchange("blue", 200, None, 100, 0.01));
    rig.controller.tick();
    assert!(rig.controller.rules_firing()[0].awaiting_approval);
    assert_eq!(downgrade(), None, "not before an operator approves");
    let (route, model) = rig.controller.approve("tokens", None, "oncall").unwrap();
    assert_eq!((route.as_str(), model.as_str()), ("support", "gpt-4o-mini"));
    assert_eq!(downgrade().as_deref(), Some("gpt-4o-mini"));
    assert!(!rig.controller.rules_firing()[0].awaiting_approval);
    assert_eq!(
        rig.controller.release("tokens", None, "oncall").unwrap(),
        "support"
    );
    assert_eq!(downgrade(), None);
    assert!(matches!(
        rig.controller.release("tokens", None, "oncall"),
        Err(ActionError::NotInForce { .. })
    ));
}

#[test]
fn only_downgrade_rules_on_watched_routes_can_be_approved() {
    let rig = rig(&format!("{BASE}{DOWNGRADE}"));
    assert_eq!(
        rig.controller.approve("nope", None, "oncall"),
        Err(ActionError::UnknownRule("nope".into()))
    );
    assert_eq!(
        rig.controller
            .approve("tokens", Some("elsewhere"), "oncall"),
        Err(ActionError::UnknownRoute("elsewhere".into()))
    );
}

#[test]
fn an_automatic_downgrade_is_in_force_at_once_and_goes_with_its_rule() {
    let rule = DOWNGRADE.replace("action =", "automatic = true\naction =");
    let rig = rig(&format!("{BASE}{rule}"));
    feed(&rig, 10, |_| exchange("blue", 200, None, 100, 0.01));
    rig.controller.tick();
    let downgrade = || {
        rig.controller
            .steering()
            .get("support")
            .and_then(|s| s.downgrade_to.clone())
    };
    assert_eq!(downgrade().as_deref(), Some("gpt-4o-mini"));
    rig.controller.apply(&super::super::testing::config(BASE));
    assert_eq!(downgrade(), None);
}
