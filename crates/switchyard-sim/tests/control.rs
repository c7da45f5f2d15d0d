//! The /sim control endpoints and the echo answer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::json;
use switchyard_sim::{fnv1a64, named, Profile, PROFILE_NAMES};

use common::start;

fn chat() -> serde_json::Value {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn patch_takes_effect_on_the_next_request() {
    let h = start(Profile::default()).await;
    let before = h.post("/v1/chat/completions", chat()).await.json();
    assert_eq!(before["usage"]["completion_tokens"], 16);

    let patch = r#"{"completion_tokens": 5, "truncate": true}"#;
    let reply = h.call(Method::PATCH, "/sim/profile", patch).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["completion_tokens"], 5);
    assert_eq!(reply.json()["stream_chunks"], 8, "other fields are kept");

    let after = h.post("/v1/chat/completions", chat()).await.json();
    assert_eq!(after["usage"]["completion_tokens"], 5);
    assert_eq!(after["choices"][0]["finish_reason"], "length");
    assert!(h.sim.profile().truncate);

    let reply = h
        .call(Method::PUT, "/sim/profile", r#"{"completion_tokens": 7}"#)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let current = h.call(Method::GET, "/sim/profile", "").await.json();
    assert_eq!(current["completion_tokens"], 7);
    assert_eq!(current["truncate"], false, "PUT resets missing fields");
}

#[tokio::test]
async fn named_profiles_switch() {
    let h = start(Profile::default()).await;
    for name in PROFILE_NAMES {
        let reply = h
            .call(Method::POST, &format!("/sim/profile/{name}"), "")
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{name}");
        assert_eq!(h.sim.profile(), named(name).unwrap());
    }
    let reply = h
        .call(Method::POST, "/sim/profile/token-explosion", "")
        .await;
    assert_eq!(reply.json()["token_inflation"], 4.0);
    let reply = h.call(Method::POST, "/sim/profile/nonsense", "").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("healthy"));
}

#[tokio::test]
async fn bad_profile_json_is_a_400_naming_the_problem() {
    let h = start(Profile::default()).await;
    let cases = [
        (Method::PUT, "{not json", "invalid"),
        (Method::PUT, r#"{"ttfb": 5}"#, "ttfb"),
        (Method::PATCH, r#"{"bogus_field": 1}"#, "bogus_field"),
        (Method::PATCH, r#"{"error_rate": 2}"#, "error_rate"),
        (Method::PATCH, r#"{"error_kind": "teapot"}"#, "teapot"),
        (Method::PATCH, "[1]", "object"),
    ];
    for (method, body, needle) in cases {
        let reply = h.call(method.clone(), "/sim/profile", body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{method} {body}");
        let msg = reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(msg.contains(needle), "{msg:?} should mention {needle}");
    }
    assert_eq!(
        h.sim.profile(),
        Profile::default(),
        "failed updates change nothing"
    );
}

#[tokio::test]
async fn echo_round_trips_the_request() {
    let h = start(Profile::default()).await;
    let body = vec![7u8; 3000];
    let req = Request::builder()
        .method(Method::DELETE)
        .uri(format!("http://{}/some/path?x=1&y=two", h.addr))
        .header("x-custom", "a")
        .header("x-custom", "b")
        .header("authorization", "Bearer t")
        .body(Full::new(Bytes::from(body.clone())))
        .unwrap();
    let reply = h.send(req).await;
    assert_eq!(reply.status, StatusCode::OK);
    let v = reply.json();
    assert_eq!(v["method"], "DELETE");
    assert_eq!(v["path"], "/some/path");
    assert_eq!(v["query"], "x=1&y=two");
    assert_eq!(v["headers"]["x-custom"], json!(["a", "b"]));
    assert_eq!(v["headers"]["authorization"], json!(["Bearer t"]));
    assert_eq!(v["body_bytes"], 3000);
    assert_eq!(v["body_sha"], format!("{:016x}", fnv1a64(&body)));

    let v = h.call(Method::GET, "/v1/chat/completions", "").await.json();
    assert_eq!(v["method"], "GET", "a GET on an LLM path is echoed");
}

#[tokio::test]
async fn stats_count_requests_but_not_control_calls() {
    let h = start(Profile::default()).await;
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{}/v1/chat/completions", h.addr))
        .header("x-trace", "abc")
        .body(Full::new(Bytes::from(chat().to_string())))
        .unwrap();
    h.send(req).await;
    h.call(Method::GET, "/anything", "").await;
    h.call(Method::GET, "/sim/profile", "").await;
    let stats = h.call(Method::GET, "/sim/stats", "").await.json();
    assert_eq!(stats["requests"], 2);
    assert_eq!(stats["in_flight"], 0);
    assert!(stats["last_headers"].get("x-trace").is_none());
    assert_eq!(h.sim.requests(), 2);

    h.send(
        Request::builder()
            .uri(format!("http://{}/v1/models", h.addr))
            .header("x-trace", "abc")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    let stats = h.call(Method::GET, "/sim/stats", "").await.json();
    assert_eq!(stats["last_headers"]["x-trace"], json!(["abc"]));
}
