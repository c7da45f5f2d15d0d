//! GET /admin/status: the shape of the document.

use serde_json::{json, Value};

use crate::common::{start, VIEWER};

#[tokio::test]
async fn status_shows_switches_fallbacks_alerts_and_incidents() {
    let admin = start("status").await;
    let answer = admin.get("/admin/status", VIEWER).await;
    assert_eq!(answer.headers["content-type"], "application/json");
    let status = answer.json();
    let keys: Vec<&String> = status.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "alerts_firing",
            "config_version",
            "open_incidents",
            "routes",
            "rules_firing",
            "tokens_today"
        ]
    );
    assert_eq!(status["config_version"].as_str().unwrap().len(), 16);
    assert_eq!(status["open_incidents"], 0);
    assert_eq!(status["tokens_today"], 0);
    assert_eq!(status["alerts_firing"], json!([]));
    let routes = status["routes"].as_array().unwrap();
    let names: Vec<&str> = routes.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["support", "research"]);
    let support = &routes[0];
    assert_eq!(support["upstream"], "dead");
    assert_eq!(support["endpoints"], json!(["http://127.0.0.1:9"]));
    assert_eq!(
        support["weights"],
        json!([{"upstream": "dead", "percent": 100.0, "endpoints": ["http://127.0.0.1:9"]}])
    );
    assert_eq!(support["kill_switch"], Value::Null);
    assert_eq!(support["fallback"], "upstream:faq-bot");
    assert_eq!(routes[1]["fallback"], "none");

    admin.state.alerts.evaluate();
    let killed = admin
        .kill(
            "research",
            r#"{"reason":"tenant acme","segment":{"header":"x-tenant","value":"acme"}}"#,
        )
        .await;
    let status = admin.get("/admin/status", VIEWER).await.json();
    assert_eq!(status["open_incidents"], 1);
    assert_eq!(status["routes"][1]["kill_switch"], killed["kill_switch"]);
    assert_eq!(status["routes"][0]["kill_switch"], Value::Null);
    let alert = &status["alerts_firing"][0];
    assert_eq!(alert["alert"], "token_budget");
    assert_eq!(alert["threshold"], 0.0);
    assert!(alert["since"].is_u64());
}

#[test]
fn fallback_kinds_name_each_route_s_fallback() {
    let text = r#"
[upstreams.up]
url = "http://127.0.0.1:9"
[upstreams.faq-bot]
url = "http://127.0.0.1:9"

[[routes]]
name = "texty"
match = { path_prefix = "/a/" }
upstream = "up"
kill_switch = { fallback = { text = "Back soon." } }

[[routes]]
name = "fixed"
match = { path_prefix = "/b/" }
upstream = "up"
kill_switch = { fallback = { status = 503, body = "{}" } }

[[routes]]
name = "rerouted"
match = { path_prefix = "/c/" }
upstream = "up"
kill_switch = { fallback = { upstream = "faq-bot" } }

[[routes]]
name = "bare"
match = { path_prefix = "/d/" }
upstream = "up"
"#;
    let config =
        switchyard_config::Config::parse(text, "gateway.toml", std::path::Path::new(".")).unwrap();
    let signals = switchyard_control::Signals::new();
    let table = switchyard_proxy::Boards::new(signals)
        .prepare(&config, &std::collections::HashMap::new())
        .unwrap();
    let kinds: std::collections::BTreeMap<String, String> = table
        .routes
        .iter()
        .map(|route| (route.name.to_string(), route.kill.kind()))
        .collect();
    let expected: Vec<(&str, &str)> = vec![
        ("bare", "none"),
        ("fixed", "static"),
        ("rerouted", "upstream:faq-bot"),
        ("texty", "text"),
    ];
    let got: Vec<(&str, &str)> = kinds
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn the_openapi_document_is_served_without_a_token() {
    let admin = crate::common::start("openapi").await;
    let answer = crate::common::send(
        admin.addr,
        http::Method::GET,
        "/admin/openapi.json".into(),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(answer.status, http::StatusCode::OK);
    assert_eq!(answer.headers["content-type"], "application/json");
    assert_eq!(
        answer.body,
        switchyard_admin::openapi::document_json().as_bytes()
    );
    assert_eq!(answer.json()["openapi"], "3.1.0");
}
