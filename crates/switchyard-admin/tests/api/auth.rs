//! Who may do what.

use http::{Method, StatusCode};

use crate::common::{start, Admin, AUTOMATION_VIEWER, BOT, OPERATOR, VIEWER};

const READS: [&str; 4] = [
    "/admin/status",
    "/admin/incidents",
    "/admin/audit",
    "/admin/incidents/inc-20260101T000000Z-0000",
];

async fn assert_unauthorized(admin: &Admin, authorization: Option<&str>) {
    for path in READS {
        let answer = admin
            .raw(Method::GET, path, authorization, Vec::new())
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{path} {authorization:?}"
        );
        assert_eq!(answer.headers["www-authenticate"], "Bearer");
        assert_eq!(answer.code(), "unauthorized");
        let message = answer.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains("SWITCHYARD_ADMIN_TOKEN"), "{message}");
        assert!(message.contains("Bearer"), "{message}");
    }
}

#[tokio::test]
async fn missing_malformed_and_unknown_tokens_are_401() {
    let admin = start("auth-401").await;
    assert_unauthorized(&admin, None).await;
    for malformed in [
        "",
        "Bearer",
        "Bearer ",
        "Basic b25jYWxs",
        OPERATOR,
        "Bearer a b",
    ] {
        assert_unauthorized(&admin, Some(malformed)).await;
    }
    // A secret that is a prefix, a suffix, or another case of a real one.
    let near = [
        &OPERATOR[..OPERATOR.len() - 1],
        &OPERATOR[1..],
        "ONCALL-SECRET-0123456789",
    ];
    for wrong in near {
        assert_unauthorized(&admin, Some(&format!("Bearer {wrong}"))).await;
    }
    // Mutations answer 401 the same way, and change nothing.
    let answer = admin
        .call(
            Method::POST,
            "/admin/routes/support/kill",
            None,
            r#"{"reason":"x"}"#,
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(admin.state.kills.get("support").is_none());
    assert!(
        admin.audit().await.is_empty(),
        "auth failures are not audited"
    );
}

#[tokio::test]
async fn a_token_without_a_secret_never_authenticates() {
    let admin = start("auth-ghost").await;
    // "ghost" has no secret: neither an empty bearer nor a guess can be it.
    for guess in ["Bearer ", "Bearer none", "Bearer ghost", "Bearer null"] {
        assert_unauthorized(&admin, Some(guess)).await;
    }
    // A scheme in another case is still a bearer token.
    let answer = admin
        .raw(
            Method::GET,
            "/admin/status",
            Some(&format!("bearer {VIEWER}")),
            Vec::new(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_need_no_token() {
    let admin = start("auth-metrics").await;
    let answer = admin.call(Method::GET, "/metrics", None, "").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
}

#[tokio::test]
async fn viewers_read_everything() {
    let admin = start("auth-viewer-reads").await;
    for token in [VIEWER, AUTOMATION_VIEWER, OPERATOR, BOT] {
        for path in &READS[..3] {
            let answer = admin.get(path, token).await;
            assert_eq!(answer.status, StatusCode::OK, "{path}");
        }
        // Past authentication: the incident is unknown, not the caller.
        let answer = admin.get(READS[3], token).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        assert_eq!(answer.code(), "unknown_incident");
    }
}

#[tokio::test]
async fn viewers_may_not_mutate() {
    let admin = start("auth-viewer-mutations").await;
    let incident = admin.kill("research", r#"{"reason":"set up"}"#).await["incident"]
        .as_str()
        .unwrap()
        .to_owned();
    let audited = admin.audit().await.len();
    let mutations = [
        (
            Method::POST,
            "/admin/routes/support/kill".to_owned(),
            r#"{"reason":"x"}"#,
        ),
        (Method::DELETE, "/admin/routes/research/kill".to_owned(), ""),
        (Method::POST, "/admin/reload".to_owned(), ""),
        (Method::POST, format!("/admin/incidents/{incident}/ack"), ""),
    ];
    for token in [VIEWER, AUTOMATION_VIEWER] {
        for (method, path, body) in &mutations {
            let answer = admin.call(method.clone(), path, Some(token), body).await;
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{method} {path}");
            assert_eq!(answer.code(), "forbidden");
            let message = answer.json()["error"]["message"]
                .as_str()
                .unwrap()
                .to_owned();
            assert!(message.contains("operator"), "{message}");
        }
    }
    assert!(admin.state.kills.get("support").is_none());
    assert!(admin.state.kills.get("research").is_some());
    assert!(admin
        .state
        .incidents
        .get(&incident)
        .unwrap()
        .acknowledged_by
        .is_none());
    assert_eq!(admin.audit().await.len(), audited, "403s are not audited");
}

#[tokio::test]
async fn only_a_human_operator_acknowledges_and_only_once() {
    let admin = start("auth-ack").await;
    // Automation operators may kill...
    let answer = admin
        .post(
            "/admin/routes/support/kill",
            BOT,
            r#"{"reason":"error rate"}"#,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let id = answer.json()["incident"].as_str().unwrap().to_owned();
    let ack = format!("/admin/incidents/{id}/ack");
    // ...but not acknowledge.
    let answer = admin.post(&ack, BOT, "").await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.code(), "humans_only");
    // An automation viewer lacks the role first.
    assert_eq!(
        admin.post(&ack, AUTOMATION_VIEWER, "").await.code(),
        "forbidden"
    );

    let answer = admin.post(&ack, OPERATOR, r#"{"note":"looking"}"#).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let record = answer.json();
    assert_eq!(record["id"], id.as_str());
    assert_eq!(record["acknowledged_by"], "oncall");
    assert_eq!(record["ack_note"], "looking");
    assert!(record["acknowledged_at_ms"].as_u64().unwrap() > 0);

    let answer = admin.post(&ack, OPERATOR, "").await;
    assert_eq!(answer.status, StatusCode::CONFLICT);
    assert_eq!(answer.code(), "already_acknowledged");
    let message = answer.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("oncall"), "{message}");

    let answer = admin
        .post("/admin/incidents/inc-nope/ack", OPERATOR, "")
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.code(), "unknown_incident");

    assert_ack_audit(&admin).await;
}

/// The kill, the ack, and the two refused acks (409, 404) are audited; the 403s are not.
async fn assert_ack_audit(admin: &Admin) {
    let actions: Vec<(String, String)> = admin
        .audit()
        .await
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().into(),
                e["result"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(actions[0], ("kill".into(), "ok".into()));
    assert_eq!(actions[1], ("ack".into(), "ok".into()));
    assert!(actions[2].1.starts_with("rejected: ") && actions[2].1.contains("oncall"));
    assert_eq!(actions[3].0, "ack");
    assert!(actions[3].1.starts_with("rejected: "));
    assert_eq!(actions.len(), 4);
}
