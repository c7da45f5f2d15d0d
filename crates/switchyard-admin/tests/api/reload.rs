//! Reloads, and the audit log of every mutation.

use http::StatusCode;
use serde_json::{json, Value};
use switchyard_admin::ReloadOutcome;

use crate::common::{start, BOT, OPERATOR, VIEWER};

#[tokio::test]
async fn reload_applied_and_rejected_are_answered_and_audited() {
    let admin = start("reload").await;
    let in_force = admin.state.gateway.table().version.clone();
    *admin.reloader.next.lock().unwrap() = Ok(ReloadOutcome {
        version: "00000000000000aa".into(),
        previous: in_force.clone(),
    });
    let answer = admin
        .post("/admin/reload", OPERATOR, r#"{"reason":"new limits"}"#)
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.json(),
        json!({"result": "applied", "config_version": "00000000000000aa", "previous_version": in_force})
    );

    let message = "gateway.toml:12: routes[0].upstream: unknown upstream \"nope\"";
    *admin.reloader.next.lock().unwrap() = Err(message.into());
    let answer = admin.post("/admin/reload", BOT, "").await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    let body = answer.json();
    assert_eq!(body["result"], "rejected");
    // The stub swapped nothing, so the version in force is still the gateway's.
    assert_eq!(body["config_version"], in_force.as_str());
    assert_eq!(
        body["error"],
        json!({"code": "config_rejected", "message": message})
    );

    let audit = admin.audit().await;
    assert_eq!(audit.len(), 2);
    let applied = &audit[0];
    assert_eq!(applied["action"], "reload");
    assert_eq!(applied["who"], "oncall");
    assert_eq!(applied["target"], Value::Null);
    assert_eq!(applied["reason"], "new limits");
    assert_eq!(applied["before"], in_force.as_str());
    assert_eq!(applied["after"], "00000000000000aa");
    assert_eq!(applied["result"], "ok");
    let rejected = &audit[1];
    assert_eq!(rejected["who"], "ci-bot");
    assert_eq!(rejected["kind"], "automation");
    assert_eq!(rejected["result"], format!("rejected: {message}"));
}

#[tokio::test]
async fn every_mutation_is_audited_with_who_what_reason_before_after() {
    let admin = start("audit").await;
    let killed = admin.kill("support", r#"{"reason":"bad answers"}"#).await;
    let id = killed["incident"].as_str().unwrap().to_owned();
    let answer = admin
        .delete(
            "/admin/routes/support/kill",
            OPERATOR,
            r#"{"reason":"fixed upstream"}"#,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let answer = admin
        .post(
            &format!("/admin/incidents/{id}/ack"),
            OPERATOR,
            r#"{"note":"mine"}"#,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);

    let audit = admin.audit().await;
    assert_eq!(audit.len(), 3);
    for entry in &audit {
        assert_eq!(entry["who"], "oncall");
        assert_eq!(entry["role"], "operator");
        assert_eq!(entry["kind"], "human");
        assert_eq!(entry["result"], "ok");
        assert!(entry["at_ms"].as_u64().unwrap() > 0);
    }
    let (kill, revive, ack) = (&audit[0], &audit[1], &audit[2]);
    assert_eq!(kill["action"], "kill");
    assert_eq!(kill["target"], "support");
    assert_eq!(kill["reason"], "bad answers");
    assert_eq!(kill["before"], Value::Null);
    assert_eq!(kill["after"], killed["kill_switch"]);
    assert_eq!(revive["action"], "revive");
    assert_eq!(revive["reason"], "fixed upstream");
    assert_eq!(revive["before"], killed["kill_switch"]);
    assert_eq!(revive["after"], Value::Null);
    assert_eq!(ack["action"], "ack");
    assert_eq!(ack["target"], id.as_str());
    assert_eq!(ack["reason"], "mine");
    assert_eq!(ack["after"]["acknowledged_by"], "oncall");

    // The file is the log: one object per line, the same entries.
    let text = std::fs::read_to_string(admin.dir.join("audit.jsonl")).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, audit);
}

#[tokio::test]
async fn audit_limit_keeps_the_newest_oldest_first() {
    let admin = start("audit-limit").await;
    for i in 0..5 {
        admin
            .kill("research", &format!(r#"{{"reason":"r{i}"}}"#))
            .await;
    }
    let answer = admin.get("/admin/audit?limit=2", VIEWER).await;
    let reasons: Vec<Value> = answer.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].clone())
        .collect();
    assert_eq!(reasons, vec![json!("r3"), json!("r4")]);
    let answer = admin.get("/admin/audit", VIEWER).await;
    assert_eq!(answer.json()["entries"].as_array().unwrap().len(), 5);
    let answer = admin.get("/admin/audit?limit=5000", VIEWER).await;
    assert_eq!(answer.status, StatusCode::OK);
    for bad in ["0", "-1", "ten", ""] {
        let answer = admin
            .get(&format!("/admin/audit?limit={bad}"), VIEWER)
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(answer.code(), "bad_request");
    }
}
