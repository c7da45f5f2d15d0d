//! Golden tests of first-token detection: on every event, the JSON cursor first
//! (`SseScanner::new`) must decide as serde alone (`SseScanner::with_serde`) whether it
//! carries model output.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod corpus;

use corpus::{each_byte_change, event_data, streams};
use switchyard_llm::{Dialect, SseScanner};

/// Both readers' verdict on one stream (whether any event carried output), checked equal.
fn output(dialect: Dialect, stream: &[u8]) -> bool {
    let mut scanner = SseScanner::new(dialect);
    let mut reference = SseScanner::with_serde(dialect);
    scanner.feed(stream);
    reference.feed(stream);
    assert_eq!(
        scanner.saw_output(),
        reference.saw_output(),
        "{dialect:?} on {:?}",
        String::from_utf8_lossy(stream)
    );
    scanner.saw_output()
}

/// One event's data, unnamed, through both readers.
fn agree(data: &[u8]) -> bool {
    let mut event = b"data: ".to_vec();
    event.extend_from_slice(data);
    event.extend_from_slice(b"\n\n");
    output(Dialect::Anthropic, &event);
    output(Dialect::OpenAi, &event)
}

#[test]
fn the_cursor_decides_the_corpus_itself_and_agrees() {
    let (mut decided, mut outputs) = (0, 0);
    for (name, stream) in streams() {
        output(Dialect::OpenAi, &stream);
        output(Dialect::Anthropic, &stream);
        for data in event_data(&stream) {
            outputs += usize::from(agree(&data));
            if data.first() == Some(&b'{') {
                assert!(
                    SseScanner::output_scanner_decides(&data),
                    "the cursor gave an event of {name} to serde: {}",
                    String::from_utf8_lossy(&data)
                );
                decided += 1;
            }
        }
    }
    assert!(decided >= 50, "only {decided} events");
    assert!(outputs >= 20, "only {outputs} events with output");
}

#[test]
fn every_prefix_of_the_corpus_agrees() {
    for (_, stream) in streams() {
        for data in event_data(&stream) {
            for end in 0..data.len() {
                agree(&data[..end]);
            }
        }
    }
}

#[test]
fn every_single_byte_change_of_the_corpus_agrees() {
    let replacements = [
        b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', b'0', b'n', b'x', 0x01, 0xff, b' ',
    ];
    for (_, stream) in streams() {
        for data in event_data(&stream).into_iter().filter(|d| d.len() < 1200) {
            each_byte_change(&data, &replacements, |copy| {
                agree(copy);
            });
        }
    }
}

// Long: a list of cases, each checked the same way.
#[test]
fn odd_shapes_agree() {
    let cases: &[&str] = &[
        "",
        "null",
        "{}",
        r#"{"delta":1}"#,
        r#"{"choices":null,"text":"x"}"#,
        r#"{"choices":[],"delta":{}}"#,
        r#"{"choices":{},"delta":{}}"#,
        r#"{"choices":[null],"delta":{}}"#,
        r#"{"choices":[[{"content":"x"}]]}"#,
        r#"{"choices":[{"delta":[ "x" ]}]}"#,
        r#"{"choices":[{"delta":null,"text":null}]}"#,
        r#"{"choices":[{"delta":{"content":"x"}}],"choices":[]}"#,
        r#"{"choices":[{"delta":{"content":"x"},"delta":{}}]}"#,
        r#"{"choices":[{"text":"x","text":""}]}"#,
        r#"{"choices":[{"delta":{"content":"","content":"x"}}]}"#,
        r#"{"choices":[{"delta":{"content":"x","refusal":"y","refusal":null}}]}"#,
        r#"{"choices":[{"delta":{"content":7}}]}"#,
        r#"{"choices":[{"delta":{"content":["x"]}}]}"#,
        r#"{"choices":[{"delta":{"content":"\u0000"}}]}"#,
        r#"{"choices":[{"delta":{"content":"\ud800"}}]}"#,
        r#"{"choices":[{"delta":{"tool_calls":[]}}]}"#,
        r#"{"choices":[{"delta":{"tool_calls":{}}}]}"#,
        r#"{"choices":[{"delta":{"tool_calls":[ ]}}]}"#,
        r#"{"choices":[{"delta":{"tool_calls":0}}]}"#,
        r#"{"choices":[{"delta":{"function_call":false}}]}"#,
        r#"{"choices":[{"delta":{"function_call":null}}]}"#,
        r#"{"choices":[{"d\u0065lta":{"content":"x"}}]}"#,
        r#"{"choices":[{"delta":{"cont\u0065nt":"x"}}]}"#,
        r#"{"choices":[{"text":"x"}],"type":"response.output_text.delta"}"#,
        r#"{"choices":[{"text":"x"}],"type":null}"#,
        r#"{"choices":[{"text":"x"}],"type":7}"#,
        r#"{"type":"response.x.delta","delta":"x","type":"y"}"#,
        r#"{"type":"response.\u0078.delta","delta":""}"#,
        r#"{"type":"response.x.delta","delta":"x"} x"#,
        r#"{"choices":[{"text":"x"}]}   "#,
        r#"{"choices":[{"text":"x"}],}"#,
        r#"{"choices":[{"text":"x"},]}"#,
        r#"{"choices":[{"text":"x"}],"x":tru}"#,
        r#"{"choices":[{"text":"x"}],"x":01}"#,
        r#"{"choices":[{"text":"x"}],"x":"\q"}"#,
        r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}},{"text":"y"}]}"#,
        "{\"choices\":[{\"text\":\"a\tb\"}]}",
        "{\"choices\":[{\"text\":\"\u{e9}\"}]}",
        "{\"x\":\"\u{fffd}\",\"choices\":[{\"text\":\"y\"}]}",
    ];
    for case in cases {
        agree(case.as_bytes());
    }
    agree(b"{\"choices\":[{\"text\":\"\xff\"}]}");
    agree(b"{\"x\":\"\xff\",\"choices\":[{\"text\":\"y\"}]}");
    let deep = |n: usize| {
        format!(
            "{{\"choices\":[{{\"text\":\"x\",\"y\":{}1{}}}]}}",
            "[".repeat(n),
            "]".repeat(n)
        )
    };
    for n in [10, 60, 61, 62, 63, 64, 124, 125, 126, 127, 200] {
        agree(deep(n).as_bytes());
    }
}
