#![no_main]

#[allow(dead_code)]
#[path = "../checks.rs"]
mod checks;

use switchyard_llm::{Dialect, SseScanner};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::sse_usage(data);
    first_token(data);
});

/// First-token detection: the JSON cursor decides as serde alone, on the stream and on the
/// whole input read as one event's data.
fn first_token(data: &[u8]) {
    let mut event = b"data: ".to_vec();
    event.extend_from_slice(data);
    event.extend_from_slice(b"\n\n");
    for dialect in [Dialect::OpenAi, Dialect::Anthropic] {
        for stream in [data, event.as_slice()] {
            let mut scanner = SseScanner::new(dialect);
            let mut reference = SseScanner::with_serde(dialect);
            scanner.feed(stream);
            reference.feed(stream);
            assert_eq!(
                scanner.saw_output(),
                reference.saw_output(),
                "the cursor and serde disagree on output"
            );
        }
    }
}
