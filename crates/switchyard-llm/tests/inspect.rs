#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use switchyard_llm::{
    fingerprint_text, inspect, Dialect, Inspection, Operation, AUDIO_TOKENS, DOCUMENT_TOKENS,
    IMAGE_TOKENS,
};

const OPENAI_CHAT: &[u8] = include_bytes!("fixtures/openai_chat_request.json");
const ANTHROPIC: &[u8] = include_bytes!("fixtures/anthropic_request.json");
const SYSTEM: &str = "You are a helpful assistant.\nAnswer briefly.";

fn paths(list: &[&str]) -> Vec<String> {
    list.iter().map(|p| p.to_string()).collect()
}

fn chat(body: &[u8]) -> Inspection {
    inspect(
        Dialect::OpenAi,
        Operation::ChatCompletions,
        body,
        &paths(&["user"]),
    )
}

#[test]
fn openai_chat_fixture() {
    let got = chat(OPENAI_CHAT);
    assert!(got.parsed);
    assert_eq!(got.model.as_deref(), Some("gpt-4o"));
    assert!(got.stream && got.include_usage);
    assert_eq!(got.user.as_deref(), Some("user-123"));
    assert_eq!(got.system_fingerprint, Some(fingerprint_text(SYSTEM)));
    // 67 bytes of text, tool calls (84) and the tool definition (81) as written: 232 -> 58;
    // the image block counts its allowance, 1,600, not its JSON; plus 5 messages * 4.
    assert_eq!(got.prompt_tokens_estimate, 58 + 1_600 + 20);
}

#[test]
fn openai_chat_estimate_by_hand() {
    let body = br#"{"model":"m","messages":[{"role":"system","content":"abcd"},{"role":"user","content":"12345678\n"}]}"#;
    let got = chat(body);
    // "abcd" = 4 bytes, "12345678\n" = 10 bytes as written: ceil(14 / 4) + 2 * 4.
    assert_eq!(got.prompt_tokens_estimate, 4 + 8);
    assert_eq!(got.system_fingerprint, Some(fingerprint_text("abcd")));
    assert!(!got.stream && !got.include_usage);
    assert_eq!(got.user, None);
}

#[test]
fn system_fingerprint_is_pinned_and_ignores_json_escaping() {
    let body = br#"{"model":"m","messages":[{"role":"system","content":"You are a helpful\u0020assistant."}]}"#;
    assert_eq!(chat(body).system_fingerprint, Some(0x3206_EC37_B491_BAF1));
    let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(chat(body).system_fingerprint, None);
}

#[test]
fn anthropic_messages_fixture() {
    let user_paths = paths(&["user", "metadata.user_id"]);
    let got = inspect(
        Dialect::Anthropic,
        Operation::Messages,
        ANTHROPIC,
        &user_paths,
    );
    assert!(got.parsed && got.stream && !got.include_usage);
    assert_eq!(got.model.as_deref(), Some("claude-sonnet-4-20250514"));
    assert_eq!(got.user.as_deref(), Some("8f2c-user"));
    // Same system text as the OpenAI fixture, split differently: same fingerprint.
    assert_eq!(got.system_fingerprint, Some(fingerprint_text(SYSTEM)));
    // 70 bytes of system and message text (cache_control markers are not text) and the
    // tool definition as written (75): 145 -> 37, plus 3 messages * 4.
    assert_eq!(got.prompt_tokens_estimate, 49);
}

#[test]
fn anthropic_system_string_by_hand() {
    let body = br#"{"model":"claude-x","system":"abcd","messages":[{"role":"user","content":"12345678"}],"metadata":{"user_id":77}}"#;
    let got = inspect(
        Dialect::Anthropic,
        Operation::Messages,
        body,
        &paths(&["metadata.user_id"]),
    );
    assert_eq!(got.prompt_tokens_estimate, 3 + 4);
    assert_eq!(got.system_fingerprint, Some(fingerprint_text("abcd")));
    assert_eq!(got.user.as_deref(), Some("77"));
}

#[test]
fn responses_api_instructions() {
    let body = br#"{"model":"gpt-4.1","instructions":"You are a helpful assistant.\nAnswer briefly.","input":"Tell me a story","user":42,"stream":true}"#;
    let got = inspect(
        Dialect::OpenAi,
        Operation::Responses,
        body,
        &paths(&["user"]),
    );
    assert_eq!(got.system_fingerprint, Some(fingerprint_text(SYSTEM)));
    assert_eq!(got.user.as_deref(), Some("42"));
    assert!(got.stream && !got.include_usage);
    // 45 bytes of instructions as written + 15 bytes of input.
    assert_eq!(got.prompt_tokens_estimate, 15);
}

#[test]
fn embeddings_and_completions() {
    let body =
        br#"{"model":"text-embedding-3-small","input":["abc","defgh"],"encoding_format":"float"}"#;
    let got = inspect(Dialect::OpenAi, Operation::Embeddings, body, &[]);
    assert_eq!(got.model.as_deref(), Some("text-embedding-3-small"));
    // "abc" and "defgh": 8 bytes of text.
    assert_eq!(
        (got.prompt_tokens_estimate, got.system_fingerprint),
        (2, None)
    );
    let body =
        br#"{"model":"gpt-3.5-turbo-instruct","prompt":"Say this is a test","max_tokens":7}"#;
    let got = inspect(Dialect::OpenAi, Operation::Completions, body, &[]);
    assert_eq!(got.prompt_tokens_estimate, 5);
}

#[test]
fn custom_user_paths_in_order() {
    let body = br#"{"model":"m","messages":[],"metadata":{"user_id":""},"extra":{"ids":[{"who":"alice"}]},"n":3.5}"#;
    let cases = [
        (&["extra.ids.0.who"][..], Some("alice")),
        (
            &["user", "metadata.user_id", "extra.ids.0.who"],
            Some("alice"),
        ),
        (&["missing.path", "n"], Some("3.5")),
        (&["extra", "extra.ids.9.who", "model.x"], None),
        (&["model"], Some("m")),
    ];
    for (list, want) in cases {
        let got = inspect(
            Dialect::OpenAi,
            Operation::ChatCompletions,
            body,
            &paths(list),
        );
        assert_eq!(got.user.as_deref(), want, "{list:?}");
    }
}

#[test]
fn other_operation_reads_basics_only() {
    let got = inspect(
        Dialect::Opaque,
        Operation::Other,
        OPENAI_CHAT,
        &paths(&["user"]),
    );
    assert!(got.parsed && got.stream);
    assert_eq!(got.model.as_deref(), Some("gpt-4o"));
    assert_eq!(got.user.as_deref(), Some("user-123"));
    assert_eq!(
        (
            got.prompt_tokens_estimate,
            got.system_fingerprint,
            got.include_usage
        ),
        (0, None, false)
    );
}

#[test]
fn unparseable_bodies() {
    let bad: [&[u8]; 10] = [
        b"",
        b"  \n ",
        b"{not json}",
        b"[1,2,3]",
        b"\"just a string\"",
        b"42",
        b"{\"model\":\"m\"} trailing",
        b"{\"messages\":\"not an array\"}",
        b"{\"model\":\"m\",\"stream\":\"yes\"}",
        b"\xef\xbb\xbf{}",
    ];
    let user_paths = paths(&["user", "metadata.user_id", "a.b"]);
    for body in bad {
        for (dialect, op) in [
            (Dialect::OpenAi, Operation::ChatCompletions),
            (Dialect::Anthropic, Operation::Messages),
            (Dialect::OpenAi, Operation::Responses),
        ] {
            let got = inspect(dialect, op, body, &user_paths);
            assert_eq!(
                got,
                Inspection::default(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}

#[test]
fn odd_but_valid_shapes_do_not_fail() {
    let body = br#"{"model":null,"user":{"id":1},"metadata":"x","messages":[{"role":"system","content":[{"type":"image_url"}]},{"content":"hi"}],"system":7}"#;
    let user_paths = paths(&["user", "metadata.user_id"]);
    let got = inspect(
        Dialect::OpenAi,
        Operation::ChatCompletions,
        body,
        &user_paths,
    );
    assert!(got.parsed);
    assert_eq!(
        (got.model, got.user, got.system_fingerprint),
        (None, None, None)
    );
}

#[test]
fn media_counts_its_allowance_not_its_base64() {
    let image = "A".repeat(400_000);
    let openai = format!(
        r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":[{{"type":"text","text":"abcdefgh"}},{{"type":"image_url","image_url":{{"url":"data:image/png;base64,{image}"}}}},{{"type":"image_url","image_url":{{"url":"data:image/png;base64,{image}"}}}}]}}]}}"#
    );
    let got = chat(openai.as_bytes());
    assert_eq!(got.prompt_tokens_estimate, 2 + 2 * IMAGE_TOKENS + 4);

    let anthropic = format!(
        r#"{{"model":"claude-x","messages":[{{"role":"user","content":[{{"type":"image","source":{{"type":"base64","media_type":"image/png","data":"{image}"}}}},{{"type":"document","source":{{"type":"base64","media_type":"application/pdf","data":"{image}"}}}},{{"type":"tool_result","tool_use_id":"t1","content":[{{"type":"text","text":"abcd"}},{{"type":"image","source":{{"type":"base64","data":"{image}"}}}}]}}]}}]}}"#
    );
    let got = inspect(
        Dialect::Anthropic,
        Operation::Messages,
        anthropic.as_bytes(),
        &[],
    );
    assert_eq!(
        got.prompt_tokens_estimate,
        1 + 2 * IMAGE_TOKENS + DOCUMENT_TOKENS + 4
    );

    let responses = format!(
        r#"{{"model":"gpt-4.1","input":[{{"role":"user","content":[{{"type":"input_text","text":"abcd"}},{{"type":"input_image","image_url":"data:image/png;base64,{image}"}},{{"type":"input_audio","input_audio":{{"data":"{image}","format":"wav"}}}}]}}]}}"#
    );
    let got = inspect(
        Dialect::OpenAi,
        Operation::Responses,
        responses.as_bytes(),
        &[],
    );
    assert_eq!(got.prompt_tokens_estimate, 1 + IMAGE_TOKENS + AUDIO_TOKENS);
}

#[test]
fn the_completion_cap_is_read_by_any_of_its_names_and_odd_values_are_absent() {
    let cap = |body: &[u8]| chat(body).max_tokens;
    assert_eq!(
        cap(br#"{"model":"m","max_tokens":300,"messages":[]}"#),
        Some(300)
    );
    assert_eq!(
        cap(br#"{"model":"m","max_tokens":9,"max_completion_tokens":70,"messages":[]}"#),
        Some(70)
    );
    assert_eq!(cap(br#"{"model":"m","max_output_tokens":12}"#), Some(12));
    assert_eq!(cap(br#"{"model":"m","messages":[]}"#), None);
    for odd in [
        &br#"{"model":"m","max_tokens":-1,"messages":[]}"#[..],
        br#"{"model":"m","max_tokens":"5","messages":[]}"#,
        br#"{"model":"m","max_tokens":1.5,"messages":[]}"#,
    ] {
        let got = chat(odd);
        assert!(got.parsed, "a strange cap leaves the body parsed");
        assert_eq!(got.max_tokens, None);
    }
}
