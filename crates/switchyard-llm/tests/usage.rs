#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use switchyard_llm::{error_body, usage_from_json, Dialect, Usage};

fn expect(
    prompt: Option<u64>,
    completion: Option<u64>,
    model: &str,
    finish: Option<&str>,
) -> Usage {
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        model: Some(model.into()),
        finish_reason: finish.map(Into::into),
        error_type: None,
        done: true,
        ..Usage::default()
    }
}

#[test]
fn openai_chat_completion() {
    let body = br#"{
      "id": "chatcmpl-123", "object": "chat.completion", "created": 1677652288,
      "model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_44709d6fcb",
      "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello \"there\"", "refusal": null},
                   "logprobs": null, "finish_reason": "tool_calls"}],
      "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21,
                "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}},
      "service_tier": "default"
    }"#;
    let want = expect(Some(9), Some(12), "gpt-4o-2024-08-06", Some("tool_calls"));
    assert_eq!(usage_from_json(Dialect::OpenAi, body), want);
}

#[test]
fn openai_legacy_completion() {
    let body = br#"{"id":"cmpl-1","object":"text_completion","model":"gpt-3.5-turbo-instruct",
      "choices":[{"text":"x","index":0,"logprobs":null,"finish_reason":"length"}],
      "usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#;
    let want = expect(Some(5), Some(7), "gpt-3.5-turbo-instruct", Some("length"));
    assert_eq!(usage_from_json(Dialect::OpenAi, body), want);
}

#[test]
fn openai_embeddings() {
    let body = br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023,-0.0093]}],
      "model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#;
    let want = expect(Some(8), None, "text-embedding-3-small", None);
    assert_eq!(usage_from_json(Dialect::OpenAi, body), want);
    let total_only = br#"{"model":"e5","usage":{"total_tokens":6}}"#;
    assert_eq!(
        usage_from_json(Dialect::OpenAi, total_only),
        expect(Some(6), None, "e5", None)
    );
}

#[test]
fn openai_responses_api() {
    let body =
        br#"{"id":"resp_1","object":"response","created_at":1741476542,"status":"incomplete",
      "error":null,"incomplete_details":{"reason":"max_output_tokens"},"model":"gpt-4.1-2025-04-14",
      "output":[{"type":"message","id":"msg_1","status":"incomplete","role":"assistant",
                 "content":[{"type":"output_text","text":"In a peaceful grove","annotations":[]}]}],
      "usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":0},"output_tokens":87,
               "output_tokens_details":{"reasoning_tokens":0},"total_tokens":123}}"#;
    let want = expect(Some(36), Some(87), "gpt-4.1-2025-04-14", Some("incomplete"));
    assert_eq!(usage_from_json(Dialect::OpenAi, body), want);
}

#[test]
fn anthropic_message() {
    let body = br#"{"id":"msg_013Zva2CMHLNnXjNJJKqJ2EF","type":"message","role":"assistant",
      "model":"claude-sonnet-4-20250514","content":[{"type":"text","text":"Hi!"}],
      "stop_reason":"end_turn","stop_sequence":null,
      "usage":{"input_tokens":2095,"cache_creation_input_tokens":10,"cache_read_input_tokens":400,
               "output_tokens":503,"service_tier":"standard"}}"#;
    let want = Usage {
        cache_read_tokens: 400,
        cache_write_tokens: 10,
        ..expect(
            Some(2505),
            Some(503),
            "claude-sonnet-4-20250514",
            Some("end_turn"),
        )
    };
    assert_eq!(usage_from_json(Dialect::Anthropic, body), want);
}

#[test]
fn error_bodies() {
    let openai = br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
    let got = usage_from_json(Dialect::OpenAi, openai);
    assert_eq!(got.error_type.as_deref(), Some("requests"));
    assert!(got.done);
    let code_only = br#"{"error":{"message":"m","type":null,"code":"invalid_api_key"}}"#;
    let got = usage_from_json(Dialect::OpenAi, code_only);
    assert_eq!(got.error_type.as_deref(), Some("invalid_api_key"));
    let anthropic = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#;
    let got = usage_from_json(Dialect::Anthropic, anthropic);
    assert_eq!(got.error_type.as_deref(), Some("overloaded_error"));
    let plain = br#"{"error":"upstream exploded"}"#;
    assert_eq!(
        usage_from_json(Dialect::OpenAi, plain)
            .error_type
            .as_deref(),
        Some("error")
    );
}

#[test]
fn gateway_error_bodies_round_trip() {
    for dialect in [Dialect::OpenAi, Dialect::Anthropic] {
        let body = error_body(dialect, 503, "upstream_unavailable", "no healthy upstream");
        let got = usage_from_json(dialect, &body);
        let want = if dialect == Dialect::OpenAi {
            "server_error"
        } else {
            "overloaded_error"
        };
        assert_eq!(got.error_type.as_deref(), Some(want));
    }
}

#[test]
fn not_json_or_opaque() {
    for body in [
        &b""[..],
        b"   ",
        b"not json",
        b"[1,2]",
        b"\"s\"",
        b"{\"model\":",
        b"{} x",
        b"\xff{",
    ] {
        assert_eq!(usage_from_json(Dialect::OpenAi, body), Usage::default());
        assert_eq!(usage_from_json(Dialect::Anthropic, body), Usage::default());
    }
    let body = br#"{"model":"m","usage":{"prompt_tokens":1}}"#;
    assert_eq!(usage_from_json(Dialect::Opaque, body), Usage::default());
}
