//! Incidents: opened by kills, listed newest first, kept across restarts.

use http::StatusCode;
use serde_json::Value;

use crate::common::{serve_on, start, OPERATOR, VIEWER};

#[tokio::test]
async fn a_kill_opens_an_incident_with_the_moment_recorded() {
    let admin = start("incident-record").await;
    admin.state.alerts.evaluate(); // the test budget alert fires at once
    let first = admin.kill("support", r#"{"reason":"first"}"#).await;
    let killed = admin
        .kill("support", r#"{"reason":"second","percent":50}"#)
        .await;
    let id = killed["incident"].as_str().unwrap();
    let (stamp, hex) = id
        .strip_prefix("inc-")
        .and_then(|rest| rest.split_once('-'))
        .unwrap();
    assert_eq!(stamp.len(), 16, "{id}");
    assert!(stamp.as_bytes()[8] == b'T' && stamp.ends_with('Z'), "{id}");
    assert!(
        hex.len() == 4 && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );

    let answer = admin.get(&format!("/admin/incidents/{id}"), VIEWER).await;
    assert_eq!(answer.status, StatusCode::OK);
    let record = answer.json();
    assert_eq!(record["id"], id);
    assert_eq!(record["kind"], "kill");
    assert_eq!(record["route"], "support");
    assert_eq!(record["reason"], "second");
    assert_eq!(record["by"], "oncall");
    assert_eq!(record["opened_at_ms"], killed["effective_at_ms"]);
    assert_eq!(
        record["config_version"],
        admin.state.gateway.table().version.as_str()
    );
    assert_eq!(record["before"], first["kill_switch"]);
    assert_eq!(record["after"], killed["kill_switch"]);
    let alerts = record["alerts_firing"].as_array().unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["alert"], "token_budget");
    assert_eq!(alerts[0]["route"], "*");
    for field in ["acknowledged_by", "acknowledged_at_ms", "ack_note"] {
        assert_eq!(record[field], Value::Null, "{field}");
    }
    let file = admin.dir.join("incidents").join(format!("{id}.json"));
    let saved: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    assert_eq!(saved, record);
}

#[tokio::test]
async fn incidents_are_listed_newest_first_and_survive_a_restart() {
    let admin = start("incident-list").await;
    let mut ids = Vec::new();
    for route in ["support", "research", "support"] {
        let killed = admin.kill(route, r#"{"reason":"r"}"#).await;
        ids.push(killed["incident"].as_str().unwrap().to_owned());
        // Distinct milliseconds, so the order is by time alone.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let ack = format!("/admin/incidents/{}/ack", ids[0]);
    assert_eq!(admin.post(&ack, OPERATOR, "").await.status, StatusCode::OK);

    let listed = |answer: Value| -> Vec<Value> { answer["incidents"].as_array().unwrap().clone() };
    let before = listed(admin.get("/admin/incidents", VIEWER).await.json());
    let order: Vec<&str> = before.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(order, [ids[2].as_str(), ids[1].as_str(), ids[0].as_str()]);
    let summary = &before[2];
    assert_eq!(summary["kind"], "kill");
    assert_eq!(summary["route"], "support");
    assert_eq!(summary["reason"], "r");
    assert_eq!(summary["by"], "oncall");
    assert_eq!(summary["acknowledged_by"], "oncall");
    assert!(summary["opened_at_ms"].is_u64() && summary["acknowledged_at_ms"].is_u64());
    assert!(
        summary.get("alerts_firing").is_none(),
        "the list is a summary"
    );

    let dir = admin.stop();
    let restarted = serve_on(dir).await;
    let after = listed(restarted.get("/admin/incidents", VIEWER).await.json());
    assert_eq!(after, before);
    // The kill switches came back with the board, and the acknowledgement with its file.
    assert!(restarted.state.kills.get("support").is_some());
    assert_eq!(
        restarted.post(&ack, OPERATOR, "").await.status,
        StatusCode::CONFLICT
    );
    let status = restarted.get("/admin/status", VIEWER).await.json();
    assert_eq!(status["open_incidents"], 2);
}
