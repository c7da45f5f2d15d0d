//! Anthropic dialect over a real socket.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use http::StatusCode;
use serde_json::json;
use switchyard_sim::{named, ErrorKind, Profile};

use common::{parse_sse, start};

fn messages_body(stream: bool) -> serde_json::Value {
    json!({
        "model": "claude-sonnet-4",
        "max_tokens": 1024,
        "stream": stream,
        "system": "be brief",
        "messages": [{"role": "user", "content": "hello ".repeat(40)}],
    })
}

#[tokio::test]
async fn message_non_stream_shape() {
    let h = start(Profile {
        completion_tokens: 12,
        ..Profile::default()
    })
    .await;
    let reply = h.post("/v1/messages", messages_body(false)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let v = reply.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-sonnet-4-sim-2026-01");
    assert!(v["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(v["content"][0]["type"], "text");
    assert_eq!(
        v["content"][0]["text"].as_str().unwrap().split(' ').count(),
        12
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() >= 50);
    assert_eq!(v["usage"]["output_tokens"], 12);
}

#[tokio::test]
async fn message_stream_follows_the_real_event_sequence() {
    let h = start(Profile {
        completion_tokens: 9,
        stream_chunks: 3,
        token_inflation: 2.0,
        truncate: true,
        ..Profile::default()
    })
    .await;
    let reply = h.post("/v1/messages", messages_body(true)).await;
    assert_eq!(reply.headers["content-type"], "text/event-stream");
    let events = parse_sse(&reply.body);
    let names: Vec<_> = events.iter().map(|e| e.name.clone().unwrap()).collect();
    let expected = [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ];
    assert_eq!(names, expected);
    for e in &events {
        assert_eq!(e.json()["type"], e.name.as_deref().unwrap());
    }
    let start = events[0].json();
    assert_eq!(start["message"]["model"], "claude-sonnet-4-sim-2026-01");
    assert!(start["message"]["usage"]["input_tokens"].as_u64().unwrap() > 1);
    assert_eq!(start["message"]["usage"]["output_tokens"], 1);
    let text: String = events[2..5]
        .iter()
        .map(|e| e.json()["delta"]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text.split(' ').count(), 9);
    let delta = events[6].json();
    assert_eq!(delta["delta"]["stop_reason"], "max_tokens");
    assert_eq!(delta["usage"]["output_tokens"], 18);
}

#[tokio::test]
async fn overloaded_uses_529_and_the_anthropic_error_shape() {
    let h = start(Profile {
        ttfb_ms: 0.0,
        ttfb_jitter_ms: 0.0,
        ..named("overloaded").unwrap()
    })
    .await;
    let reply = h.post("/v1/messages", messages_body(false)).await;
    assert_eq!(reply.status.as_u16(), 529);
    let v = reply.json();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "overloaded_error");
    assert!(v["error"]["message"].is_string());

    h.sim.set_profile(Profile {
        error_rate: 1.0,
        error_kind: ErrorKind::BadRequest,
        ..Profile::default()
    });
    let reply = h.post("/v1/messages", messages_body(true)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"]["type"], "invalid_request_error");
}
