//! Fallback answers: a non-AI text shaped as a completion in the client's dialect, JSON or
//! SSE, so an OpenAI or Anthropic SDK parses it like any other answer.

use bytes::Bytes;
use serde_json::json;

use crate::dialect::{Dialect, Operation};

/// The model name fallback answers carry, so dashboards and clients can tell them apart.
pub const FALLBACK_MODEL: &str = "switchyard-fallback";

/// A fallback answer: its content type and body.
#[derive(Debug, Clone, PartialEq)]
pub struct FallbackAnswer {
    pub content_type: &'static str,
    pub body: Bytes,
}

/// `text` as the operation's answer; streamed as SSE when the client asked for a stream.
pub fn completion(dialect: Dialect, op: Operation, text: &str, stream: bool) -> FallbackAnswer {
    let body = match (dialect, op, stream) {
        (Dialect::Anthropic, _, false) => json_bytes(&anthropic_message(text)),
        (Dialect::Anthropic, _, true) => anthropic_stream(text),
        (_, Operation::Completions, false) => json_bytes(&openai_text_completion(text)),
        (_, Operation::Responses, false) => json_bytes(&openai_response(text)),
        (_, Operation::Responses, true) => openai_response_stream(text),
        (_, _, false) => json_bytes(&openai_chat(text)),
        (_, _, true) => openai_chat_stream(text),
    };
    let content_type = if stream {
        "text/event-stream"
    } else {
        "application/json"
    };
    FallbackAnswer { content_type, body }
}

fn json_bytes(value: &serde_json::Value) -> Bytes {
    Bytes::from(value.to_string())
}

fn created() -> u64 {
    switchyard_core::clock::system_now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn openai_chat(text: &str) -> serde_json::Value {
    json!({
        "id": "chatcmpl-switchyard-fallback", "object": "chat.completion", "created": created(),
        "model": FALLBACK_MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": null},
                     "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    })
}

fn openai_text_completion(text: &str) -> serde_json::Value {
    json!({
        "id": "cmpl-switchyard-fallback", "object": "text_completion", "created": created(),
        "model": FALLBACK_MODEL,
        "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    })
}

fn openai_response(text: &str) -> serde_json::Value {
    json!({
        "id": "resp_switchyard_fallback", "object": "response", "created_at": created(),
        "status": "completed", "model": FALLBACK_MODEL,
        "output": [{"type": "message", "id": "msg_switchyard_fallback", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}],
        "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    })
}

/// The Responses API stream, in the order SDKs assemble it: the response, its message item and
/// text part announced, the text, then each of them done, numbered.
fn openai_response_stream(text: &str) -> Bytes {
    let mut created = openai_response("");
    created["status"] = json!("in_progress");
    created["output"] = json!([]);
    let item = "msg_switchyard_fallback";
    let part = |t: &str| json!({"type": "output_text", "text": t, "annotations": []});
    let message = |status: &str, content: serde_json::Value| json!({"type": "message", "id": item, "status": status, "role": "assistant", "content": content});
    let at = json!({"item_id": item, "output_index": 0, "content_index": 0});
    let with = |mut base: serde_json::Value, extra: serde_json::Value| {
        if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        base
    };
    let events = [
        ("response.created", json!({"response": created})),
        (
            "response.output_item.added",
            json!({"output_index": 0, "item": message("in_progress", json!([]))}),
        ),
        (
            "response.content_part.added",
            with(at.clone(), json!({"part": part("")})),
        ),
        (
            "response.output_text.delta",
            with(at.clone(), json!({"delta": text, "logprobs": []})),
        ),
        (
            "response.output_text.done",
            with(at.clone(), json!({"text": text, "logprobs": []})),
        ),
        (
            "response.content_part.done",
            with(at, json!({"part": part(text)})),
        ),
        (
            "response.output_item.done",
            json!({"output_index": 0, "item": message("completed", json!([part(text)]))}),
        ),
        (
            "response.completed",
            json!({"response": openai_response(text)}),
        ),
    ];
    let named: Vec<(Option<&str>, serde_json::Value)> = events
        .into_iter()
        .enumerate()
        .map(|(n, (name, data))| {
            (
                Some(name),
                with(json!({"type": name, "sequence_number": n}), data),
            )
        })
        .collect();
    sse(&named, false)
}

fn openai_chat_stream(text: &str) -> Bytes {
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        json!({
            "id": "chatcmpl-switchyard-fallback", "object": "chat.completion.chunk", "created": created(),
            "model": FALLBACK_MODEL,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
        })
    };
    sse(
        &[
            (
                None,
                chunk(json!({"role": "assistant", "content": text}), None),
            ),
            (None, chunk(json!({}), Some("stop"))),
        ],
        true,
    )
}

fn anthropic_message(text: &str) -> serde_json::Value {
    json!({
        "id": "msg_switchyard_fallback", "type": "message", "role": "assistant", "model": FALLBACK_MODEL,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 0, "output_tokens": 0}
    })
}

fn anthropic_stream(text: &str) -> Bytes {
    let mut start = anthropic_message("");
    start["content"] = json!([]);
    start["stop_reason"] = serde_json::Value::Null;
    sse(
        &[
            (
                Some("message_start"),
                json!({"type": "message_start", "message": start}),
            ),
            (
                Some("content_block_start"),
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            (
                Some("content_block_delta"),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
            ),
            (
                Some("content_block_stop"),
                json!({"type": "content_block_stop", "index": 0}),
            ),
            (
                Some("message_delta"),
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 0}}),
            ),
            (Some("message_stop"), json!({"type": "message_stop"})),
        ],
        false,
    )
}

fn sse(events: &[(Option<&str>, serde_json::Value)], done: bool) -> Bytes {
    let mut out = String::new();
    for (name, data) in events {
        if let Some(name) = name {
            out.push_str("event: ");
            out.push_str(name);
            out.push('\n');
        }
        out.push_str("data: ");
        out.push_str(&data.to_string());
        out.push_str("\n\n");
    }
    if done {
        out.push_str("data: [DONE]\n\n");
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{usage_from_json, SseScanner};

    #[test]
    fn json_answers_parse_as_their_dialect() {
        let openai = completion(Dialect::OpenAi, Operation::ChatCompletions, "sorry", false);
        let v: serde_json::Value = serde_json::from_slice(&openai.body).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "sorry");
        assert!(usage_from_json(Dialect::OpenAi, &openai.body).done);
        let claude = completion(Dialect::Anthropic, Operation::Messages, "sorry", false);
        let v: serde_json::Value = serde_json::from_slice(&claude.body).unwrap();
        assert_eq!(v["content"][0]["text"], "sorry");
    }

    #[test]
    fn streams_end_normally_in_their_dialect() {
        for (dialect, op) in [
            (Dialect::OpenAi, Operation::ChatCompletions),
            (Dialect::Anthropic, Operation::Messages),
        ] {
            let answer = completion(dialect, op, "sorry \"quoted\"\nline", true);
            assert_eq!(answer.content_type, "text/event-stream");
            let mut scanner = SseScanner::new(dialect);
            scanner.feed(&answer.body);
            assert!(
                scanner.usage().done,
                "{dialect:?}: {:?}",
                String::from_utf8_lossy(&answer.body)
            );
            assert_eq!(scanner.usage().error_type, None);
        }
    }
}
