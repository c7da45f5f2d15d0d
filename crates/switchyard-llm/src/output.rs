//! Which stream events carry model output: the first one is the time to first token.
//!
//! Streams open with events that carry no output: Anthropic's `message_start`,
//! `content_block_start` and `ping`, OpenAI's first chunk with only the assistant role,
//! the Responses API's `response.created`. Time to first byte counts those; time to first
//! token waits for the first event below.
//!
//! - OpenAI chat completions: a choice whose `delta` has non-empty `content` or `refusal`,
//!   or any `tool_calls` / `function_call`; legacy completions: a choice with non-empty `text`.
//! - OpenAI Responses: the first `response.*.delta` event (output text, refusal, function
//!   call arguments, reasoning summaries, audio).
//! - Anthropic messages: the first `content_block_delta`.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::dialect::Dialect;
use crate::json::Str;
use crate::needles::{self, CONTENT_BLOCK_DELTA, DELTA_KEY, TEXT_KEY};
use crate::usage::Reader;

mod scan;

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    choices: Option<Vec<ChunkChoice<'a>>>,
}

#[derive(Deserialize)]
struct ChunkChoice<'a> {
    #[serde(borrow)]
    delta: Option<DeltaOut<'a>>,
    #[serde(borrow)]
    text: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct DeltaOut<'a> {
    #[serde(borrow)]
    content: Option<&'a RawValue>,
    #[serde(borrow)]
    refusal: Option<&'a RawValue>,
    #[serde(borrow)]
    tool_calls: Option<&'a RawValue>,
    #[serde(borrow)]
    function_call: Option<&'a RawValue>,
}

/// Whether one complete event (its `event:` name, possibly empty, and its data) carries
/// model output. Called only until the first such event, so its parse is paid once or
/// twice per stream. `reader` says who reads OpenAI chunks: the cursor (`output/scan.rs`),
/// which leaves the shapes it does not handle to serde, or serde alone.
pub(crate) fn is_output(reader: Reader, dialect: Dialect, event_name: &[u8], data: &[u8]) -> bool {
    match dialect {
        Dialect::Anthropic => {
            event_name == b"content_block_delta"
                || (event_name.is_empty() && needles::has(&CONTENT_BLOCK_DELTA, data))
        }
        Dialect::OpenAi => openai_output(reader, event_name, data),
        Dialect::Opaque => false,
    }
}

/// Whether the cursor decides an OpenAI chunk's output itself, without serde's help.
pub(crate) fn scanner_decides(data: &[u8]) -> bool {
    scan::chunk_output(data).is_some()
}

fn openai_output(reader: Reader, event_name: &[u8], data: &[u8]) -> bool {
    if event_name.starts_with(b"response.") {
        return event_name.ends_with(b".delta");
    }
    if !needles::has(&DELTA_KEY, data) && !needles::has(&TEXT_KEY, data) {
        return false;
    }
    if reader == Reader::Scanner {
        if let Some(output) = scan::chunk_output(data) {
            return output;
        }
    }
    serde_output(data)
}

/// The serde reading of a chunk, the reference the cursor is tested against.
fn serde_output(data: &[u8]) -> bool {
    let Ok(chunk) = serde_json::from_slice::<Chunk<'_>>(data) else {
        return false;
    };
    if let Some(kind) = &chunk.kind {
        return kind.0.starts_with("response.") && kind.0.ends_with(".delta");
    }
    chunk.choices.iter().flatten().any(|choice| {
        let text = choice.text.is_some_and(non_empty_string);
        let delta = choice.delta.as_ref().is_some_and(|d| {
            d.content.is_some_and(non_empty_string)
                || d.refusal.is_some_and(non_empty_string)
                || d.tool_calls.is_some_and(present)
                || d.function_call.is_some_and(present)
        });
        text || delta
    })
}

/// A JSON string with at least one character.
fn non_empty_string(raw: &RawValue) -> bool {
    non_empty_raw(raw.get())
}

/// [`non_empty_string`] of a raw value's text.
fn non_empty_raw(s: &str) -> bool {
    s.starts_with('"') && s.len() > 2
}

/// Anything but `null` and empty arrays or objects.
fn present(raw: &RawValue) -> bool {
    present_raw(raw.get())
}

/// [`present`] of a raw value's text.
fn present_raw(s: &str) -> bool {
    !matches!(s, "null" | "[]" | "{}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cursor's answer, checked against serde's.
    fn is_output(dialect: Dialect, event_name: &[u8], data: &[u8]) -> bool {
        let scanned = super::is_output(Reader::Scanner, dialect, event_name, data);
        let reference = super::is_output(Reader::Serde, dialect, event_name, data);
        assert_eq!(scanned, reference, "{:?}", String::from_utf8_lossy(data));
        scanned
    }

    fn openai(data: &str) -> bool {
        is_output(Dialect::OpenAi, b"", data.as_bytes())
    }

    #[test]
    fn chat_role_chunk_is_not_output_content_is() {
        assert!(!openai(
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#
        ));
        assert!(!openai(
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"refusal":null}}]}"#
        ));
        assert!(openai(
            r#"{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#
        ));
        assert!(openai(
            r#"{"choices":[{"index":0,"delta":{"refusal":"I can't"}}]}"#
        ));
        assert!(openai(
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","function":{"name":"f","arguments":""}}]}}]}"#
        ));
        assert!(!openai(r#"{"choices":[],"usage":{"prompt_tokens":1}}"#));
    }

    #[test]
    fn legacy_completion_text_is_output() {
        assert!(openai(r#"{"choices":[{"text":"x","index":0}]}"#));
        assert!(!openai(r#"{"choices":[{"text":"","index":0}]}"#));
    }

    #[test]
    fn responses_deltas_are_output_lifecycle_events_are_not() {
        assert!(!openai(
            r#"{"type":"response.created","response":{"status":"in_progress"}}"#
        ));
        assert!(!openai(
            r#"{"type":"response.output_item.added","item":{}}"#
        ));
        assert!(openai(
            r#"{"type":"response.output_text.delta","delta":"Hi"}"#
        ));
        assert!(is_output(
            Dialect::OpenAi,
            b"response.function_call_arguments.delta",
            b"{}"
        ));
        assert!(!is_output(Dialect::OpenAi, b"response.completed", b"{}"));
    }

    #[test]
    fn anthropic_waits_for_the_first_content_block_delta() {
        for name in ["message_start", "content_block_start", "ping"] {
            assert!(!is_output(Dialect::Anthropic, name.as_bytes(), b"{}"));
        }
        assert!(is_output(Dialect::Anthropic, b"content_block_delta", b"{}"));
        let unnamed =
            br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}"#;
        assert!(is_output(Dialect::Anthropic, b"", unnamed));
        assert!(!is_output(Dialect::Opaque, b"content_block_delta", b"{}"));
    }
}
