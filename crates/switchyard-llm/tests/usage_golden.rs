//! Golden tests of the response usage scanner: on every body and every stream, the scanner
//! first (`usage_from_json`, `SseScanner::new`) must equal serde alone
//! (`usage_from_json_with_serde`, `SseScanner::with_serde`) in every dialect.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod corpus;

use corpus::{bodies, each_byte_change, event_data, root, streams};
use switchyard_llm::{
    usage_from_json, usage_from_json_with_serde, usage_scanner_reads, Dialect, SseScanner,
};

const DIALECTS: [Dialect; 3] = [Dialect::OpenAi, Dialect::Anthropic, Dialect::Opaque];

fn agree_json(body: &[u8]) {
    for dialect in DIALECTS {
        assert_eq!(
            usage_from_json(dialect, body),
            usage_from_json_with_serde(dialect, body),
            "{dialect:?} on {:?}",
            String::from_utf8_lossy(body)
        );
    }
}

fn agree_sse(stream: &[u8]) {
    for dialect in DIALECTS {
        let mut scanner = SseScanner::new(dialect);
        let mut reference = SseScanner::with_serde(dialect);
        scanner.feed(stream);
        reference.feed(stream);
        assert_eq!(
            scanner.usage(),
            reference.usage(),
            "{dialect:?} on {:?}",
            String::from_utf8_lossy(stream)
        );
        assert_eq!(scanner.events(), reference.events());
        assert_eq!(scanner.saw_output(), reference.saw_output());
    }
}

#[test]
fn the_scanner_reads_the_corpus_itself_and_agrees() {
    let mut read = 0;
    for (name, body) in bodies() {
        agree_json(&body);
        assert!(
            usage_scanner_reads(&body),
            "the scanner gave {name} to serde"
        );
        read += 1;
    }
    assert!(read >= 15, "only {read} bodies");
    let mut events = 0;
    for (name, stream) in streams() {
        agree_sse(&stream);
        for data in event_data(&stream) {
            agree_json(&data);
            if data.first() == Some(&b'{') {
                assert!(
                    usage_scanner_reads(&data),
                    "the scanner gave an event of {name} to serde: {}",
                    String::from_utf8_lossy(&data)
                );
                events += 1;
            }
        }
    }
    assert!(events >= 40, "only {events} events");
}

#[test]
fn the_fixtures_say_what_they_should() {
    let body = std::fs::read(format!(
        "{}/crates/switchyard-llm/tests/fixtures/openai_chat_n2_response.json",
        root()
    ))
    .unwrap();
    let usage = usage_from_json(Dialect::OpenAi, &body);
    // The choice with index 0 comes second.
    assert_eq!(usage.finish_reason.as_deref(), Some("stop"));
    assert_eq!(usage.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    assert_eq!(
        (usage.prompt_tokens, usage.completion_tokens),
        (Some(12), Some(7))
    );
}

#[test]
fn every_prefix_of_the_corpus_agrees() {
    for (_, body) in bodies() {
        for end in 0..body.len() {
            agree_json(&body[..end]);
        }
    }
    for (_, stream) in streams() {
        for data in event_data(&stream) {
            for end in 0..data.len() {
                agree_json(&data[..end]);
            }
        }
    }
}

#[test]
fn every_single_byte_change_of_the_corpus_agrees() {
    let replacements = [
        b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', b'0', b'-', b'.', b'e', b'n', 0x01, 0xff,
        b' ',
    ];
    let mut samples: Vec<Vec<u8>> = bodies()
        .into_iter()
        .map(|(_, b)| b)
        .filter(|b| b.len() < 1200)
        .collect();
    for (_, stream) in streams() {
        samples.extend(event_data(&stream).into_iter().filter(|d| d.len() < 600));
    }
    for body in samples {
        each_byte_change(&body, &replacements, agree_json);
    }
}

#[test]
fn every_single_byte_change_of_the_streams_agrees() {
    let replacements = [b'"', b'{', b'}', b'\n', b':', b'0', b'x', 0xff];
    for (_, stream) in streams().into_iter().filter(|(_, s)| s.len() < 4000) {
        each_byte_change(&stream, &replacements, agree_sse);
    }
}

// Long: a list of cases, each checked the same way.
#[test]
fn odd_shapes_agree() {
    let bodies: &[&[u8]] = &[
        b"",
        b"null",
        b"[]",
        br#"{}"#,
        br#" { } "#,
        b"\x0c{}",
        b"\xef\xbb\xbf{}",
        br#"{"model":"m"} x"#,
        br#"{"model":"m",}"#,
        br#"{"model":"m","model":"n"}"#,
        br#"{"model":null,"model":"n"}"#,
        br#"{"mod\u0065l":"escaped key"}"#,
        br#"{"model":"a\u00e9\n\"b"}"#,
        br#"{"model":"\ud800"}"#,
        br#"{"model":"\ud83d\ude00"}"#,
        br#"{"model":7}"#,
        br#"{"model":""}"#,
        b"{\"model\":\"\xff\"}",
        b"{\"x\":\"\xff\",\"model\":\"m\"}",
        b"{\"model\":\"a\tb\"}",
        br#"{"usage":null,"choices":null,"model":null,"type":null,"error":null,"code":null}"#,
        br#"{"usage":{}}"#,
        br#"{"usage":[]}"#,
        br#"{"usage":[1,2,3]}"#,
        br#"{"usage":[1,2,3,4,5,6,7,null,null]}"#,
        br#"{"usage":"none"}"#,
        br#"{"usage":{"prompt_tokens":1,"prompt_tokens":2}}"#,
        br#"{"usage":{"prompt_tokens":null,"prompt_tokens":2}}"#,
        br#"{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}}"#,
        br#"{"usage":{"prompt_tokens":1.0}}"#,
        br#"{"usage":{"prompt_tokens":1e3}}"#,
        br#"{"usage":{"prompt_tokens":-1}}"#,
        br#"{"usage":{"prompt_tokens":-0}}"#,
        br#"{"usage":{"prompt_tokens":0}}"#,
        br#"{"usage":{"prompt_tokens":01}}"#,
        br#"{"usage":{"prompt_tokens":18446744073709551615}}"#,
        br#"{"usage":{"prompt_tokens":18446744073709551616}}"#,
        br#"{"usage":{"prompt_tokens":99999999999999999999999999}}"#,
        br#"{"usage":{"prompt_tokens":"12"}}"#,
        br#"{"usage":{"prompt_tokens":true}}"#,
        br#"{"usage":{"total_tokens":6}}"#,
        br#"{"usage":{"total_tokens":6,"output_tokens":2}}"#,
        br#"{"usage":{"input_tokens":3,"cache_read_input_tokens":18446744073709551615,"cache_creation_input_tokens":9}}"#,
        br#"{"usage":{"prompt_tokens_details":{"cached_tokens":5},"input_tokens_details":{"cached_tokens":7}}}"#,
        br#"{"usage":{"prompt_tokens_details":{},"input_tokens_details":{"cached_tokens":7}}}"#,
        br#"{"usage":{"prompt_tokens_details":null,"input_tokens_details":{"cached_tokens":7}}}"#,
        br#"{"usage":{"prompt_tokens_details":[4]}}"#,
        br#"{"usage":{"prompt_tokens_details":{"cached_tokens":1,"cached_tokens":2}}}"#,
        br#"{"usage":{"prompt_tokens_details":{"cached_tokens":1.5}}}"#,
        br#"{"usage":{"prompt_tokens_details":7}}"#,
        br#"{"usage":{"x":{"y":[{"z":null}]},"prompt_tokens":4}}"#,
        br#"{"usage":{"prompt\u005ftokens":4}}"#,
        br#"{"choices":[]}"#,
        br#"{"choices":{}}"#,
        br#"{"choices":[null]}"#,
        br#"{"choices":[[0,"stop"]]}"#,
        br#"{"choices":[{"index":1,"finish_reason":"a"},{"finish_reason":"b"}]}"#,
        br#"{"choices":[{"index":0,"finish_reason":null},{"index":0,"finish_reason":"b"}]}"#,
        br#"{"choices":[{"index":0,"finish_reason":""}],"stop_reason":"x"}"#,
        br#"{"choices":[{"index":0,"index":0}]}"#,
        br#"{"choices":[{"index":-1,"finish_reason":"a"}]}"#,
        br#"{"choices":[{"index":0.0,"finish_reason":"a"}]}"#,
        br#"{"choices":[{"finish_reason":7}]}"#,
        br#"{"choices":[{"finish_reason":"st\u006fp"}]}"#,
        br#"{"status":"in_progress"}"#,
        br#"{"status":"queued","stop_reason":"end"}"#,
        br#"{"status":"failed"}"#,
        br#"{"status":5}"#,
        br#"{"stop_reason":"end_turn","stop_reason":"x"}"#,
        br#"{"delta":{"stop_reason":"end_turn"}}"#,
        br#"{"delta":{"stop_reason":"end_turn","stop_reason":"x"}}"#,
        br#"{"delta":{"stop_reason":null,"text":"x"}}"#,
        br#"{"delta":{"stop_reason":3}}"#,
        br#"{"delta":["end_turn"]}"#,
        br#"{"delta":"x"}"#,
        br#"{"delta":{"stop_reason":"\ud800"}}"#,
        br#"{"error":null,"type":"error","code":"rate_limited"}"#,
        br#"{"type":"error","code":429}"#,
        br#"{"type":"error","code":-4.5e2}"#,
        br#"{"type":"error","code":""}"#,
        br#"{"type":"error","code":{"a":1}}"#,
        br#"{"type":"error"}"#,
        br#"{"error":{"type":"overloaded_error"}}"#,
        br#"{"error":{"type":"","code":"c"}}"#,
        br#"{"error":{"type":null,"code":7}}"#,
        br#"{"error":{"type":"a","type":"b"}}"#,
        br#"{"error":{"code":1,"code":2}}"#,
        br#"{"error":["t","c"]}"#,
        br#"{"error":"boom"}"#,
        br#"{"error":{"type":7}}"#,
        br#"{"error":{"type":"e\u0078"}}"#,
        br#"{"type":"message_stop"}"#,
        br#"{"type":"response.completed","response":{"status":"completed","usage":{"input_tokens":3,"output_tokens":4}}}"#,
        br#"{"type":"response.incomplete","response":{"status":"incomplete"}}"#,
        br#"{"type":"message_start","message":{"model":"c","usage":{"input_tokens":5}}}"#,
        br#"{"type":"message_start","message":["message","c",{"input_tokens":5}]}"#,
        br#"{"type":"message_start","message":{"model":"c","model":"d"}}"#,
        br#"{"type":"message_start","message":{"message":{"model":"deep"}}}"#,
        br#"{"message":{"usage":{"input_tokens":1}},"response":{"usage":{"output_tokens":2}}}"#,
        br#"{"message":"text","response":7}"#,
        br#"{"message":{"model":"\ud800"}}"#,
        br#"{"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":15}}"#,
        br#"{"a":[[[[[[[[[[{"b":[]}]]]]]]]]]]}"#,
        br#"{"model":"m","x":tru}"#,
        br#"{"model":"m","x":1.}"#,
        br#"{"model":"m","x":"\x"}"#,
        br#"{"model":"m","x":"\u12"}"#,
        br#"{"model":"m","x":-}"#,
        br#"{"model":"m"}   "#,
        b"{\"model\":\"m\"}\n\r\t ",
        b"{\"model\":\"m\"}\x00",
    ];
    for body in bodies {
        agree_json(body);
        let mut event = b"data: ".to_vec();
        event.extend_from_slice(body);
        event.extend_from_slice(b"\n\n");
        agree_sse(&event);
    }
    let deep = |n: usize| {
        format!(
            "{{\"model\":\"m\",\"x\":{}1{}}}",
            "[".repeat(n),
            "]".repeat(n)
        )
    };
    for n in [10, 62, 63, 64, 126, 127, 128, 200] {
        agree_json(deep(n).as_bytes());
    }
    let deep_usage = |n: usize| {
        format!(
            "{{\"usage\":{{\"x\":{}{{}}{},\"input_tokens\":1}}}}",
            "[".repeat(n),
            "]".repeat(n)
        )
    };
    for n in [60, 61, 62, 63, 64, 125, 126, 127] {
        agree_json(deep_usage(n).as_bytes());
    }
}
