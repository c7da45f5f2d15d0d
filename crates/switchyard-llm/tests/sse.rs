#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use switchyard_llm::{usage_from_json, Dialect, SseScanner, Usage, MAX_LINE_BYTES};

const OPENAI_CHAT: &str = include_str!("fixtures/openai_chat_stream.sse");
const ANTHROPIC: &str = include_str!("fixtures/anthropic_stream.sse");
const RESPONSES: &str = include_str!("fixtures/openai_responses_stream.sse");

fn scan(dialect: Dialect, pieces: &[&[u8]]) -> (Usage, u64) {
    let mut scanner = SseScanner::new(dialect);
    for piece in pieces {
        scanner.feed(piece);
    }
    (scanner.usage().clone(), scanner.events())
}

fn whole(dialect: Dialect, stream: &str) -> (Usage, u64) {
    scan(dialect, &[stream.as_bytes()])
}

/// The result must not depend on where the network happened to split the stream.
fn assert_split_invariant(dialect: Dialect, stream: &str) {
    let bytes = stream.as_bytes();
    let expected = whole(dialect, stream);
    for at in 0..=bytes.len() {
        let (a, b) = bytes.split_at(at);
        assert_eq!(scan(dialect, &[a, b]), expected, "split at {at}");
    }
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(scan(dialect, &singles), expected, "1-byte pieces");
    let threes: Vec<&[u8]> = bytes.chunks(3).collect();
    assert_eq!(scan(dialect, &threes), expected, "3-byte pieces");
}

fn usage(prompt: u64, completion: u64, model: &str, finish: &str) -> Usage {
    Usage {
        prompt_tokens: Some(prompt),
        completion_tokens: Some(completion),
        model: Some(model.into()),
        finish_reason: Some(finish.into()),
        error_type: None,
        done: true,
        ..Usage::default()
    }
}

#[test]
fn openai_chat_stream_with_include_usage() {
    let (got, events) = whole(Dialect::OpenAi, OPENAI_CHAT);
    assert_eq!(got, usage(19, 10, "gpt-4o-2024-08-06", "stop"));
    assert_eq!(events, 6);
    assert_split_invariant(Dialect::OpenAi, OPENAI_CHAT);
}

#[test]
fn anthropic_stream_counts_cache_tokens_as_prompt() {
    let (got, events) = whole(Dialect::Anthropic, ANTHROPIC);
    let cached = Usage {
        cache_read_tokens: 2000,
        cache_write_tokens: 100,
        ..usage(2125, 15, "claude-sonnet-4-20250514", "end_turn")
    };
    assert_eq!(got, cached, "input 25 + cache write 100 + cache read 2000");
    assert_eq!(events, 8);
    assert_split_invariant(Dialect::Anthropic, ANTHROPIC);
}

#[test]
fn responses_stream() {
    let (got, events) = whole(Dialect::OpenAi, RESPONSES);
    assert_eq!(got, usage(37, 11, "gpt-4.1-2025-04-14", "completed"));
    assert_eq!(events, 4);
    assert_split_invariant(Dialect::OpenAi, RESPONSES);
}

#[test]
fn crlf_and_cr_line_endings() {
    for (dialect, stream) in [
        (Dialect::OpenAi, OPENAI_CHAT),
        (Dialect::Anthropic, ANTHROPIC),
    ] {
        let expected = whole(dialect, stream);
        let crlf = stream.replace('\n', "\r\n");
        assert_eq!(whole(dialect, &crlf), expected);
        assert_split_invariant(dialect, &crlf);
        let cr = stream.replace('\n', "\r");
        assert_eq!(whole(dialect, &cr), expected);
    }
}

#[test]
fn cut_stream_keeps_what_was_seen() {
    let cut = ANTHROPIC.find("event: message_delta").unwrap();
    let (got, events) = whole(Dialect::Anthropic, &ANTHROPIC[..cut]);
    let expected = Usage {
        prompt_tokens: Some(2125),
        completion_tokens: Some(1),
        model: Some("claude-sonnet-4-20250514".into()),
        cache_read_tokens: 2000,
        cache_write_tokens: 100,
        ..Usage::default()
    };
    assert_eq!((got, events), (expected, 6));

    // Cut inside the usage chunk: it never completed, so no usage and not done.
    let cut = OPENAI_CHAT.find("\"choices\":[]").unwrap();
    let (got, events) = whole(Dialect::OpenAi, &OPENAI_CHAT[..cut]);
    assert_eq!(got.model.as_deref(), Some("gpt-4o-2024-08-06"));
    assert_eq!(got.finish_reason.as_deref(), Some("stop"));
    assert_eq!((got.prompt_tokens, got.completion_tokens), (None, None));
    assert!(!got.done);
    assert_eq!(events, 4);
}

#[test]
fn anthropic_message_delta_is_cumulative_and_may_restate_input() {
    let stream = concat!(
        "event: message_start\n",
        r#"data: {"type":"message_start","message":{"model":"claude-x","usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":1}}}"#,
        "\n\nevent: message_delta\n",
        r#"data: {"type":"message_delta","delta":{"stop_reason":null},"usage":{"output_tokens":20}}"#,
        "\n\nevent: message_delta\n",
        r#"data: {"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"input_tokens":12,"output_tokens":30}}"#,
        "\n\n",
    );
    let (got, _) = whole(Dialect::Anthropic, stream);
    assert_eq!(got.prompt_tokens, Some(17));
    assert_eq!(got.completion_tokens, Some(30));
    assert_eq!(got.finish_reason.as_deref(), Some("max_tokens"));
    assert!(!got.done);
}

#[test]
fn error_events() {
    let stream = concat!(
        "event: message_start\n",
        r#"data: {"type":"message_start","message":{"model":"claude-x","usage":{"input_tokens":10,"output_tokens":1}}}"#,
        "\n\nevent: error\n",
        r#"data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        "\n\n",
    );
    let (got, events) = whole(Dialect::Anthropic, stream);
    assert_eq!(got.error_type.as_deref(), Some("overloaded_error"));
    assert_eq!((got.prompt_tokens, got.done, events), (Some(10), false, 2));

    let stream = concat!(
        r#"data: {"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}"#,
        "\n\n"
    );
    let (got, _) = whole(Dialect::OpenAi, stream);
    assert_eq!(got.error_type.as_deref(), Some("server_error"));
    assert!(!got.done);

    let stream = "event: error\ndata: {\"type\":\"error\",\"code\":\"ERR_SOMETHING\",\"message\":\"x\",\"param\":null}\n\n";
    let (got, _) = whole(Dialect::OpenAi, stream);
    assert_eq!(got.error_type.as_deref(), Some("ERR_SOMETHING"));
}

#[test]
fn over_long_line_is_dropped_and_counted() {
    let long = format!("data: {{\"x\":\"{}\"}}\n\n", "a".repeat(MAX_LINE_BYTES));
    let stream = format!("{long}{OPENAI_CHAT}");
    let expected = (usage(19, 10, "gpt-4o-2024-08-06", "stop"), 6);
    for piece in [stream.len(), 4096, 1000] {
        let mut scanner = SseScanner::new(Dialect::OpenAi);
        for chunk in stream.as_bytes().chunks(piece) {
            scanner.feed(chunk);
        }
        assert_eq!((scanner.usage().clone(), scanner.events()), expected);
        assert_eq!(scanner.dropped_lines(), 1, "piece {piece}");
    }
}

#[test]
fn comments_multiline_data_and_other_fields() {
    let stream = concat!(
        ": keep-alive\n\n",
        "id: 7\nretry: 100\n",
        "data: {\"model\":\"m\",\n",
        "data: \"choices\":[{\"index\":0,\"finish_reason\":\"length\"}]}\n\n",
        "data:[DONE]\n\n",
    );
    let (got, events) = whole(Dialect::OpenAi, stream);
    assert_eq!(got.model.as_deref(), Some("m"));
    assert_eq!(got.finish_reason.as_deref(), Some("length"));
    assert!(got.done);
    assert_eq!(events, 2);
}

#[test]
fn garbage_never_panics_and_opaque_is_only_counted() {
    let inputs: [&[u8]; 5] = [
        b"\xff\xfe\r\r\n\ndata: {\"usage\":{\"prompt_tokens\":-1}}\n\n",
        b"data: {\"model\":\"m\",\"usage\":{\"prompt_tokens\":1e99}}\n\n",
        b"data: {\"model\":[1,2],\"error\":\n\n:\n\n",
        b"event: message_start\ndata: {\"message\":\"x\",\"type\":\"message_start\"}\n\n",
        b"data: {\"error\":null,\"finish_reason\":5}\n\n",
    ];
    for input in inputs {
        for dialect in [Dialect::OpenAi, Dialect::Anthropic, Dialect::Opaque] {
            let (got, _) = scan(dialect, &[input]);
            assert_eq!(got.prompt_tokens, None);
        }
    }
    let (got, events) = whole(Dialect::Opaque, OPENAI_CHAT);
    assert_eq!((got, events), (Usage::default(), 6));
}

#[test]
fn first_output_event_is_found_in_every_dialect() {
    for (dialect, text, before) in [
        // message_start and content_block_start carry no output.
        (Dialect::Anthropic, ANTHROPIC, "event: content_block_delta"),
        (Dialect::OpenAi, OPENAI_CHAT, "\"content\":\"Gr"),
        (Dialect::OpenAi, RESPONSES, "response.output_text.delta"),
    ] {
        let cut = text.find(before).unwrap();
        let mut scanner = SseScanner::new(dialect);
        scanner.feed(&text.as_bytes()[..cut]);
        assert!(!scanner.saw_output(), "{dialect:?}: nothing output yet");
        scanner.feed(&text.as_bytes()[cut..]);
        assert!(
            scanner.saw_output(),
            "{dialect:?}: the first delta is output"
        );
    }
}

#[test]
fn openai_cached_prompt_tokens_are_reported() {
    let chat = br#"{"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":2006,"completion_tokens":300,"prompt_tokens_details":{"cached_tokens":1920}}}"#;
    let got = usage_from_json(Dialect::OpenAi, chat);
    assert_eq!(
        got.prompt_tokens,
        Some(2006),
        "prompt tokens include the cached ones"
    );
    assert_eq!((got.cache_read_tokens, got.cache_write_tokens), (1920, 0));
    let responses = br#"{"type":"response.completed","response":{"model":"gpt-4.1","status":"completed","usage":{"input_tokens":900,"input_tokens_details":{"cached_tokens":512},"output_tokens":5}}}"#;
    let got = usage_from_json(Dialect::OpenAi, responses);
    assert_eq!((got.prompt_tokens, got.cache_read_tokens), (Some(900), 512));
}
