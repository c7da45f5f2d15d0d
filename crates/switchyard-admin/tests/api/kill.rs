//! Kill switches: engaging, releasing, refusing.

use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{bearer, send, start, OPERATOR, VIEWER};

#[tokio::test]
async fn kill_then_revive() {
    let admin = start("kill-revive").await;
    let killed = admin.kill("support", r#"{"reason":"runaway costs"}"#).await;
    assert_eq!(killed["route"], "support");
    assert_eq!(killed["engaged"], true);
    assert_eq!(killed["before"], Value::Null);
    assert_eq!(killed["persisted"], true);
    assert!(killed.get("warning").is_none());
    assert!(killed["took_us"].is_u64());
    let switch = &killed["kill_switch"];
    assert_eq!(switch["route"], "support");
    assert_eq!(switch["reason"], "runaway costs");
    assert_eq!(switch["by"], "oncall");
    assert!(switch.get("percent").is_none() && switch.get("segment").is_none());
    let effective = killed["effective_at_ms"].as_u64().unwrap();
    assert!(effective >= switch["engaged_at_ms"].as_u64().unwrap());
    assert!(killed["incident"].as_str().unwrap().starts_with("inc-"));

    // In force when the call returned, and on disk for a restart.
    let on_board = admin.state.kills.get("support").unwrap();
    assert_eq!(on_board.reason, "runaway costs");
    let saved = std::fs::read_to_string(admin.dir.join("kill_switches.json")).unwrap();
    assert!(saved.contains("runaway costs"));

    let answer = admin
        .delete(
            "/admin/routes/support/kill",
            OPERATOR,
            r#"{"reason":"fixed"}"#,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let revived = answer.json();
    assert_eq!(revived["route"], "support");
    assert_eq!(revived["engaged"], false);
    assert_eq!(revived["before"], *switch);
    assert_eq!(revived["persisted"], true);
    assert!(revived["effective_at_ms"].as_u64().unwrap() >= effective);
    assert!(
        revived.get("incident").is_none(),
        "a revive opens no incident"
    );
    assert!(admin.state.kills.get("support").is_none());
    assert_eq!(admin.state.incidents.list().len(), 1);

    // Reviving what is not killed is harmless, and the body is optional.
    let answer = admin
        .delete("/admin/routes/support/kill", OPERATOR, "")
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["before"], Value::Null);
}

#[tokio::test]
async fn partial_kill_by_segment_replaces_the_previous_switch() {
    let admin = start("kill-partial").await;
    let first = admin.kill("support", r#"{"reason":"first"}"#).await;
    let body = json!({
        "reason": "only acme, a quarter",
        "percent": 25.0,
        "segment": {"header": "X-Tenant", "value": "acme"}
    });
    let second = admin.kill("support", &body.to_string()).await;
    assert_eq!(second["before"], first["kill_switch"]);
    let switch = &second["kill_switch"];
    assert_eq!(switch["percent"], 25.0);
    assert_eq!(
        switch["segment"],
        json!({"header": "x-tenant", "value": "acme"})
    );
    let on_board = admin.state.kills.get("support").unwrap();
    assert_eq!(on_board.percent, Some(25.0));
    assert_eq!(on_board.segment.as_ref().unwrap().header, "x-tenant");
    // A kill of 100 % is allowed; the bound is inclusive.
    admin
        .kill("research", r#"{"reason":"all","percent":100}"#)
        .await;
}

#[tokio::test]
async fn unknown_routes_and_endpoints_are_404_and_wrong_methods_405() {
    let admin = start("kill-404").await;
    let answer = admin
        .post("/admin/routes/nope/kill", OPERATOR, r#"{"reason":"x"}"#)
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.code(), "unknown_route");
    let message = answer.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("support") && message.contains("research"),
        "{message}"
    );
    let answer = admin.delete("/admin/routes/nope/kill", OPERATOR, "").await;
    assert_eq!(answer.code(), "unknown_route");
    assert!(admin.state.kills.all().is_empty());

    for path in [
        "/admin",
        "/admin/nope",
        "/admin/routes/support",
        "/admin/status/",
        "/",
    ] {
        let answer = admin.get(path, OPERATOR).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(answer.code(), "not_found");
    }
    let wrong = [
        (Method::GET, "/admin/routes/support/kill", "POST, DELETE"),
        (Method::PUT, "/admin/routes/support/kill", "POST, DELETE"),
        (Method::GET, "/admin/reload", "POST"),
        (Method::POST, "/admin/status", "GET"),
        (Method::DELETE, "/admin/incidents", "GET"),
        (Method::GET, "/admin/incidents/x/ack", "POST"),
        (Method::HEAD, "/metrics", "GET"),
    ];
    for (method, path, allow) in wrong {
        let answer = admin.call(method.clone(), path, Some(OPERATOR), "").await;
        assert_eq!(
            answer.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(answer.headers["allow"], allow);
        if method != Method::HEAD {
            assert_eq!(answer.code(), "method_not_allowed");
        }
    }
    // Refused kills are audited; unknown paths and methods are not mutations.
    let audit = admin.audit().await;
    assert_eq!(audit.len(), 2);
    assert!(audit
        .iter()
        .all(|e| e["result"].as_str().unwrap().starts_with("rejected: ")));
}

#[tokio::test]
async fn bad_bodies_are_400_and_change_nothing() {
    let admin = start("kill-400").await;
    let bad = [
        "{",
        "[]",
        r#""reason""#,
        "{}",
        r#"{"reason":""}"#,
        r#"{"reason":"   "}"#,
        r#"{"reason":null}"#,
        r#"{"reason":7}"#,
        r#"{"reason":"x","percent":0}"#,
        r#"{"reason":"x","percent":-5}"#,
        r#"{"reason":"x","percent":100.5}"#,
        r#"{"reason":"x","percent":"half"}"#,
        r#"{"reason":"x","segment":{"header":"bad header","value":"a"}}"#,
        r#"{"reason":"x","segment":{"header":"x-tenant","value":""}}"#,
        r#"{"reason":"x","segment":{"header":"x-tenant"}}"#,
        r#"{"reason":"x","precent":10}"#,
    ];
    for body in bad {
        let answer = admin
            .post("/admin/routes/support/kill", OPERATOR, body)
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer.code(), "bad_request", "{body}");
    }
    // An empty kill body lacks the reason too.
    let answer = admin.post("/admin/routes/support/kill", OPERATOR, "").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let message = answer.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("reason"), "{message}");
    let answer = admin
        .delete("/admin/routes/support/kill", OPERATOR, "{")
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);

    let huge = format!(r#"{{"reason":"{}"}}"#, "x".repeat(70 * 1024));
    let answer = admin
        .post("/admin/routes/support/kill", OPERATOR, &huge)
        .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.code(), "body_too_large");

    assert!(admin.state.kills.all().is_empty());
    assert!(admin.state.incidents.list().is_empty());
    let audit = admin.audit().await;
    assert_eq!(audit.len(), bad.len() + 3);
    assert!(audit
        .iter()
        .all(|e| e["result"].as_str().unwrap().starts_with("rejected: ")));
    assert_eq!(
        admin.get("/admin/audit", VIEWER).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_switch_that_cannot_be_saved_is_still_in_force() {
    let admin = start("kill-unsaved").await;
    // A directory where the board writes its temporary file makes the save fail.
    std::fs::create_dir_all(admin.dir.join("kill_switches.json.tmp")).unwrap();
    let answer = admin
        .post(
            "/admin/routes/support/kill",
            OPERATOR,
            r#"{"reason":"disk trouble"}"#,
        )
        .await;
    // Not a silent 200: the caller must not take an unsaved change as done.
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.code(), "state_not_saved");
    let killed = answer.json();
    let message = killed["error"]["message"].as_str().unwrap();
    assert!(message.contains("kill_switches.json"), "{message}");
    assert_eq!(killed["engaged"], true);
    assert_eq!(killed["persisted"], false);
    let warning = killed["warning"].as_str().unwrap();
    assert!(warning.contains("restart"), "{warning}");
    assert!(admin.state.kills.get("support").is_some());
    assert_eq!(admin.audit().await.len(), 1);
}

#[tokio::test]
async fn a_revive_whose_audit_entry_cannot_be_written_is_not_a_plain_200() {
    let admin = start("revive-unaudited").await;
    admin.kill("support", r#"{"reason":"first"}"#).await;
    // A directory where the log should be makes every append fail.
    let log = admin.dir.join("audit.jsonl");
    std::fs::remove_file(&log).unwrap();
    std::fs::create_dir(&log).unwrap();
    let answer = admin
        .delete("/admin/routes/support/kill", OPERATOR, "")
        .await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.code(), "state_not_saved");
    let body = answer.json();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("audit.jsonl"), "{message}");
    assert_eq!(
        (body["engaged"].clone(), body["persisted"].clone()),
        (json!(false), json!(false))
    );
    // The release itself is in force and saved; only its audit entry is missing.
    assert!(admin.state.kills.get("support").is_none());
    let reopened = switchyard_control::KillBoard::open(&admin.dir).unwrap();
    assert!(reopened.get("support").is_none());
}

#[tokio::test]
async fn concurrent_mutations_never_interleave_audit_lines() {
    let admin = start("kill-concurrent").await;
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..40 {
        let route = if i % 2 == 0 { "support" } else { "research" };
        // Long lines, so a torn write would show.
        let body = format!(r#"{{"reason":"storm {i} {}"}}"#, "y".repeat(4000));
        let path = format!("/admin/routes/{route}/kill");
        calls.spawn(send(
            admin.addr,
            Method::POST,
            path,
            Some(bearer(OPERATOR)),
            body.into_bytes(),
        ));
    }
    while let Some(answer) = calls.join_next().await {
        assert_eq!(answer.unwrap().status, StatusCode::OK);
    }
    let text = std::fs::read_to_string(admin.dir.join("audit.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 40);
    for line in lines {
        let entry: Value = serde_json::from_str(line).unwrap();
        assert_eq!(entry["action"], "kill");
        assert_eq!(entry["result"], "ok");
    }
    assert_eq!(admin.state.incidents.list().len(), 40);
}

#[tokio::test]
async fn a_switch_left_from_a_removed_route_can_still_be_released() {
    let admin = start("kill-removed-route").await;
    // As if a reload had dropped the route while its switch stayed engaged.
    admin.state.kills.engage(switchyard_control::KillSwitch {
        route: "retired".into(),
        reason: "old".into(),
        percent: None,
        segment: None,
        engaged_at_ms: 1,
        by: "oncall".into(),
    });
    let answer = admin
        .post(
            "/admin/routes/retired/kill",
            OPERATOR,
            r#"{"reason":"again"}"#,
        )
        .await;
    assert_eq!(
        answer.code(),
        "unknown_route",
        "only configured routes can be killed"
    );
    let answer = admin
        .delete("/admin/routes/retired/kill", OPERATOR, "")
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["before"]["reason"], "old");
    assert!(admin.state.kills.all().is_empty());
}
