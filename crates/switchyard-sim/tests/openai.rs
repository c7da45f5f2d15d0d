//! OpenAI dialect over a real socket.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Real servers on real sockets: time is measured on the real clock.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;
use switchyard_sim::{ErrorKind, Profile};

use common::{parse_sse, start};

fn chat_body(stream: bool, include_usage: Option<bool>) -> serde_json::Value {
    let mut body = json!({
        "model": "gpt-4o",
        "stream": stream,
        "messages": [{"role": "user", "content": "x".repeat(400)}],
    });
    if let Some(flag) = include_usage {
        body["stream_options"] = json!({"include_usage": flag});
    }
    body
}

#[tokio::test]
async fn chat_completion_non_stream_has_plausible_usage() {
    let h = start(Profile {
        completion_tokens: 30,
        ..Profile::default()
    })
    .await;
    let reply = h.post("/v1/chat/completions", chat_body(false, None)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["content-type"], "application/json");
    let v = reply.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-4o-sim-2026-01");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(content.split(' ').count(), 30);
    let prompt = v["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!((100..=140).contains(&prompt), "prompt tokens {prompt}");
    assert_eq!(v["usage"]["completion_tokens"], 30);
    assert_eq!(v["usage"]["total_tokens"], prompt + 30);
}

#[tokio::test]
async fn max_tokens_truncates_and_inflation_multiplies() {
    let h = start(Profile {
        completion_tokens: 50,
        token_inflation: 4.0,
        ..Profile::default()
    })
    .await;
    let mut body = chat_body(false, None);
    body["max_tokens"] = json!(10);
    let v = h.post("/v1/chat/completions", body).await.json();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 40);
}

#[tokio::test]
async fn chat_stream_is_paced_and_sends_usage_only_when_asked() {
    let h = start(Profile {
        chunk_interval_ms: 40.0,
        completion_tokens: 10,
        stream_chunks: 5,
        ..Profile::default()
    })
    .await;
    let body = chat_body(true, Some(true)).to_string();
    let resp = h
        .client
        .request(h.request(Method::POST, "/v1/chat/completions", &body))
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["cache-control"], "no-cache");
    let mut body = resp.into_body();
    let (mut arrivals, mut raw) = (Vec::new(), Vec::new());
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            arrivals.push(Instant::now());
            raw.extend_from_slice(&data);
        }
    }
    let spread = *arrivals.last().unwrap() - arrivals[0];
    assert!(spread >= Duration::from_millis(150), "spread {spread:?}");
    let events = parse_sse(&raw);
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let chunks: Vec<_> = events[..events.len() - 1]
        .iter()
        .map(|e| e.json())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text.split(' ').count(), 10);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 10);
    assert_eq!(
        chunks.iter().filter(|c| c.get("usage").is_some()).count(),
        1
    );
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn chat_stream_without_include_usage_has_no_usage_chunk() {
    let h = start(Profile::default()).await;
    for flag in [None, Some(false)] {
        let reply = h.post("/v1/chat/completions", chat_body(true, flag)).await;
        let events = parse_sse(&reply.body);
        assert_eq!(events.last().unwrap().data, "[DONE]");
        for e in &events[..events.len() - 1] {
            let v = e.json();
            assert!(v.get("usage").is_none(), "unexpected usage in {v}");
            assert_eq!(v["choices"].as_array().unwrap().len(), 1);
        }
    }
}

#[tokio::test]
async fn injected_errors_use_the_openai_shape() {
    let h = start(Profile {
        error_rate: 1.0,
        error_kind: ErrorKind::RateLimited,
        ..Profile::default()
    })
    .await;
    let reply = h.post("/v1/chat/completions", chat_body(false, None)).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.headers["retry-after"], "1");
    let v = reply.json();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert!(v["error"]["param"].is_null());
    assert!(v["error"]["message"].is_string());
    assert!(v["error"]["type"].is_string());

    h.sim.set_profile(Profile {
        error_rate: 1.0,
        error_kind: ErrorKind::Overloaded,
        ..Profile::default()
    });
    let reply = h.post("/v1/chat/completions", chat_body(false, None)).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.json()["error"]["message"].is_string());
}

#[tokio::test]
async fn other_openai_endpoints_answer_in_shape() {
    let h = start(Profile::default()).await;
    let v = h
        .post(
            "/v1/completions",
            json!({"model": "davinci", "prompt": "hi"}),
        )
        .await
        .json();
    assert_eq!(v["object"], "text_completion");
    assert!(v["choices"][0]["text"].is_string());

    let v = h
        .post("/v1/responses", json!({"model": "gpt-4o", "input": "hi"}))
        .await
        .json();
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["output"][0]["content"][0]["type"], "output_text");
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() >= 1);

    let input = json!({"model": "text-embedding-3-small", "input": ["a", "b"], "dimensions": 8});
    let v = h.post("/v1/embeddings", input).await.json();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["embedding"].as_array().unwrap().len(), 8);

    let v = h.call(Method::GET, "/v1/models", "").await.json();
    assert_eq!(v["object"], "list");
    assert!(!v["data"].as_array().unwrap().is_empty());

    let reply = h.call(Method::POST, "/v1/chat/completions", "{nope").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn completions_and_responses_stream() {
    let h = start(Profile::default()).await;
    let body = json!({"model": "m", "prompt": "hi", "stream": true,
        "stream_options": {"include_usage": true}});
    let events = parse_sse(&h.post("/v1/completions", body).await.body);
    assert_eq!(events.last().unwrap().data, "[DONE]");
    assert!(events[events.len() - 2].json()["usage"]["total_tokens"].is_u64());

    let body = json!({"model": "m", "input": "hi", "stream": true});
    let events = parse_sse(&h.post("/v1/responses", body).await.body);
    assert_eq!(events[0].name.as_deref(), Some("response.created"));
    let last = events.last().unwrap();
    assert_eq!(last.name.as_deref(), Some("response.completed"));
    assert!(last.json()["response"]["usage"]["output_tokens"].is_u64());
}
