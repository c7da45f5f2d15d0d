use serde_json::json;

use super::{parse, plain};
use crate::ctl::api::{KillReply, ReloadReply};
use crate::ctl::commands::kill_body;
use crate::ctl::render::{persistence_warning, render_kill, render_reload, render_revive};

fn switch(percent: Option<f64>, segment: Option<(&str, &str)>) -> serde_json::Value {
    let mut s = json!({"route": "support", "reason": "bad answers",
                       "engaged_at_ms": 1_795_347_000_123u64, "by": "oncall"});
    if let Some(p) = percent {
        s["percent"] = json!(p);
    }
    if let Some((h, v)) = segment {
        s["segment"] = json!({"header": h, "value": v});
    }
    s
}

fn killed(percent: Option<f64>, segment: Option<(&str, &str)>) -> KillReply {
    parse(json!({
        "route": "support", "engaged": true, "kill_switch": switch(percent, segment),
        "before": null, "effective_at_ms": 1_795_347_000_123u64, "took_us": 14,
        "persisted": true, "incident": "inc-20261122T113000Z-3f9a"
    }))
}

#[test]
fn ctl_kill_says_what_is_in_force_and_how_to_undo_it() {
    let text = render_kill(&killed(Some(25.0), None), &plain());
    assert_eq!(
        text,
        "support KILLED (25% of users) at 11:30:00.123Z,\n\
         in force for new requests (took 14 µs).\n\
         Incident inc-20261122T113000Z-3f9a opened.\n\
         Revive: switchyard ctl revive support\n"
    );
    assert_eq!(persistence_warning(&killed(None, None)), None);
}

#[test]
fn ctl_kill_names_the_scope() {
    let all = render_kill(&killed(None, None), &plain());
    assert!(all.starts_with("support KILLED (all traffic) at"), "{all}");
    let seg = render_kill(&killed(None, Some(("x-tenant", "acme"))), &plain());
    assert!(
        seg.starts_with("support KILLED (x-tenant=acme) at"),
        "{seg}"
    );
    let both = render_kill(&killed(Some(12.5), Some(("x-tenant", "acme"))), &plain());
    assert!(
        both.starts_with("support KILLED (12.5% of users with x-tenant=acme) at"),
        "{both}"
    );
}

#[test]
fn ctl_kill_replacing_an_earlier_kill_says_so() {
    let mut reply = killed(Some(50.0), None);
    reply.before = Some(parse(json!({"route": "support", "reason": "first",
        "engaged_at_ms": 1_795_346_700_000u64, "by": "alice"})));
    let text = render_kill(&reply, &plain());
    assert!(
        text.contains(
            "It replaces the earlier kill (all traffic, since 11:25:00Z (9m ago) by alice).\n"
        ),
        "{text}"
    );
}

#[test]
fn ctl_kill_warns_when_not_persisted() {
    let reply: KillReply = parse(json!({
        "route": "support", "engaged": true, "kill_switch": switch(None, None),
        "effective_at_ms": 1_795_347_000_123u64, "took_us": 2100, "persisted": false,
        "incident": "inc-1",
        "warning": "the change is in force but not all of it was saved: disk full"
    }));
    assert!(render_kill(&reply, &plain()).contains("(took 2.1 ms)"));
    let warning = persistence_warning(&reply).unwrap();
    assert!(
        warning.starts_with("warning: the kill on support is in force but was NOT saved"),
        "{warning}"
    );
    assert!(warning.contains("a restart would lift it"), "{warning}");
    assert!(warning.ends_with(
        "The server says: the change is in force but not all of it was saved: disk full"
    ));
}

#[test]
fn ctl_revive_says_what_it_lifted() {
    let reply: KillReply = parse(json!({
        "route": "support", "engaged": false, "before": switch(Some(25.0), None),
        "effective_at_ms": 1_795_347_242_456u64, "took_us": 9, "persisted": true
    }));
    assert_eq!(
        render_revive(&reply),
        "support revived at 11:34:02.456Z, in force for new requests (took 9 µs).\n\
         It had been killed (25% of users) since 11:30:00Z (for 4m).\n"
    );
    assert_eq!(persistence_warning(&reply), None);
    let unsaved = KillReply {
        persisted: Some(false),
        ..reply
    };
    assert!(persistence_warning(&unsaved).unwrap().contains(
        "support is revived but that was NOT saved to disk: a restart would bring the kill back."
    ));
}

#[test]
fn ctl_revive_of_a_live_route_changes_nothing() {
    let reply: KillReply = parse(json!({
        "route": "support", "engaged": false, "before": null,
        "effective_at_ms": 1_795_347_242_456u64, "took_us": 3, "persisted": true
    }));
    assert_eq!(
        render_revive(&reply),
        "support was not killed; nothing changed (11:34:02.456Z).\n"
    );
}

#[test]
fn ctl_reload_applied() {
    let reply: ReloadReply = parse(json!({"result": "applied",
        "config_version": "fb54a1c2e0d39b77", "previous_version": "1a2b3c4d5e6f7081"}));
    assert_eq!(
        render_reload(&reply),
        "config fb54a1c2e0d39b77 applied (was 1a2b3c4d5e6f7081)\n"
    );
    let same: ReloadReply = parse(json!({"result": "applied",
        "config_version": "1a2b", "previous_version": "1a2b"}));
    assert_eq!(
        render_reload(&same),
        "config 1a2b in force (unchanged: the file matches what is serving)\n"
    );
}

#[test]
fn ctl_kill_body_sends_only_what_was_given() {
    assert_eq!(kill_body("why", None, None), json!({"reason": "why"}));
    let seg = ("x-tenant".to_string(), "acme".to_string());
    assert_eq!(
        kill_body("why", Some(25.0), Some(&seg)),
        json!({"reason": "why", "percent": 25.0,
               "segment": {"header": "x-tenant", "value": "acme"}})
    );
}
