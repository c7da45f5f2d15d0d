use serde_json::json;

use super::{assert_narrow, parse, plain, NOW};
use crate::ctl::api::{Audit, Incident, Incidents};
use crate::ctl::history::{render_ack, render_audit, render_incident, render_incidents};

fn record(acked: bool) -> serde_json::Value {
    let mut r = json!({
        "id": "inc-20261122T113000Z-3f9a", "kind": "kill", "route": "support",
        "opened_at_ms": 1_795_347_000_123u64, "reason": "bad answers after the 11:20 deploy",
        "by": "oncall", "config_version": "fb54a1c2e0d39b77", "before": null,
        "after": {"route": "support", "reason": "bad answers after the 11:20 deploy",
                  "percent": 25.0, "engaged_at_ms": 1_795_347_000_123u64, "by": "oncall"},
        "alerts_firing": [{"alert": "error_rate", "route": "support", "value": 0.3,
                           "threshold": 0.01, "since": 1_795_346_980u64}],
        "acknowledged_by": null, "acknowledged_at_ms": null, "ack_note": null
    });
    if acked {
        r["acknowledged_by"] = json!("alice");
        r["acknowledged_at_ms"] = json!(1_795_347_300_000u64);
        r["ack_note"] = json!("rolling back the deploy");
    }
    r
}

#[test]
fn ctl_incidents_table_newest_first_with_reasons() {
    let list: Incidents = parse(json!({"incidents": [
        record(false),
        {"id": "inc-20261120T091500Z-77c1", "kind": "kill", "route": "billing",
         "opened_at_ms": 1_795_166_100_000u64, "reason": "", "by": "bob",
         "acknowledged_by": "bob", "acknowledged_at_ms": 1_795_166_200_000u64}
    ]}));
    let text = render_incidents(&list, &plain());
    assert_eq!(
        text,
        "\
ID                         ROUTE    KIND  OPENED  ACK
inc-20261122T113000Z-3f9a  support  kill  3m ago  no
    by oncall: bad answers after the 11:20 deploy
inc-20261120T091500Z-77c1  billing  kill  2d ago  bob
    by bob
"
    );
    assert_narrow(&text);
    let none: Incidents = parse(json!({"incidents": []}));
    assert_eq!(render_incidents(&none, &plain()), "no incidents\n");
}

#[test]
fn ctl_incident_details() {
    let incident: Incident = parse(record(false));
    let text = render_incident(&incident, &plain());
    assert_eq!(
        text,
        "\
incident  inc-20261122T113000Z-3f9a
kind      kill
route     support
opened    11:30:00Z (3m ago) by oncall
reason    bad answers after the 11:20 deploy
config    fb54a1c2e0d39b77
before    not killed
after     killed: 25% of users, since 11:30:00Z (3m ago) by oncall: bad answers
          after the 11:20 deploy
alerts    error_rate on support: 30% vs 1%, since 11:29:40Z
acked     no (switchyard ctl ack inc-20261122T113000Z-3f9a)
"
    );
    assert_narrow(&text);
}

#[test]
fn ctl_incident_acknowledged() {
    let incident: Incident = parse(record(true));
    let text = render_incident(&incident, &plain());
    assert!(
        text.ends_with("acked     alice at 11:35:00Z (just now): rolling back the deploy\n"),
        "{text}"
    );
    assert_eq!(
        render_ack(&incident),
        "inc-20261122T113000Z-3f9a acknowledged by alice at 11:35:00Z.\n\
         Note: rolling back the deploy\n"
    );
}

#[test]
fn ctl_audit_oldest_first_with_reasons_and_rejections() {
    let audit: Audit = parse(json!({"entries": [
        {"at_ms": 1_795_166_100_000u64, "who": "bob", "role": "operator", "kind": "human",
         "action": "reload", "target": null, "reason": null, "before": "1a2b",
         "after": "1a2b", "result": "rejected: gateway.toml:12: routes[0].upstream: unknown upstream \"nope\""},
        {"at_ms": 1_795_347_000_123u64, "who": "oncall", "role": "operator", "kind": "human",
         "action": "kill", "target": "support", "reason": "bad answers", "before": null,
         "after": {}, "result": "ok"}
    ]}));
    let text = render_audit(&audit, &plain());
    assert_eq!(
        text,
        "\
AT                 WHO     ACTION  TARGET   RESULT
2026-11-20 09:15Z  bob     reload  -        rejected
    why: gateway.toml:12: routes[0].upstream: unknown upstream \"nope\"
11:30:00Z          oncall  kill    support  ok
    reason: bad answers
"
    );
    assert_narrow(&text);
    let none: Audit = parse(json!({"entries": []}));
    assert_eq!(render_audit(&none, &plain()), "no audit entries\n");
    let _ = NOW;
}
