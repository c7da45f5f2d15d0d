//! The one pass decides as the substring search per key it replaced, kept here as the
//! reference: on the corpus's events, every prefix and single-byte change of them, and odd
//! shapes.

use memchr::memmem::Finder;

use super::*;

/// The decision as it was made before: one substring search per key.
fn reference(dialect: Dialect, data: &[u8], need_model: bool) -> bool {
    let has = |needle: &[u8]| Finder::new(needle).find(data).is_some();
    if need_model && has(b"\"model\"") {
        return true;
    }
    match dialect {
        Dialect::Anthropic => {
            has(b"message_start")
                || has(b"message_delta")
                || has(b"message_stop")
                || has(b"\"error\"")
        }
        Dialect::OpenAi => {
            reference_value(data, b"\"usage\"")
                || reference_value(data, b"\"finish_reason\"")
                || has(b"\"error\"")
                || has(b"\"response.completed\"")
                || has(b"\"response.incomplete\"")
        }
        Dialect::Opaque => false,
    }
}

fn reference_value(data: &[u8], key: &[u8]) -> bool {
    let finder = Finder::new(key);
    finder.find_iter(data).any(|at| {
        let rest = data[at + key.len()..].trim_ascii_start();
        match rest.strip_prefix(b":") {
            Some(value) => {
                let value = value.trim_ascii_start();
                !value.is_empty() && !value.starts_with(b"null")
            }
            None => false,
        }
    })
}

fn agree(data: &[u8]) {
    for dialect in [Dialect::OpenAi, Dialect::Anthropic, Dialect::Opaque] {
        for need_model in [false, true] {
            assert_eq!(
                worth_parsing(dialect, data, need_model),
                reference(dialect, data, need_model),
                "{dialect:?}, need_model {need_model}, on {:?}",
                String::from_utf8_lossy(data)
            );
        }
    }
}

/// The data of every event of the SSE fixtures and fuzz seeds.
fn corpus() -> Vec<Vec<u8>> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let mut events = Vec::new();
    for dir in [
        "crates/switchyard-llm/tests/fixtures",
        "fuzz/corpus/sse_usage",
    ] {
        for entry in std::fs::read_dir(format!("{root}/{dir}")).unwrap() {
            let path = entry.unwrap().path();
            if dir.ends_with("fixtures") && path.extension().is_none_or(|e| e != "sse") {
                continue;
            }
            let stream = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&stream);
            let data = text.lines().filter_map(|l| l.strip_prefix("data:"));
            events.extend(data.map(|d| d.trim().as_bytes().to_vec()));
        }
    }
    assert!(events.len() >= 50, "only {} events", events.len());
    events
}

#[test]
fn the_one_pass_decides_as_the_searches_on_the_corpus() {
    let mut parsed = 0;
    for data in corpus() {
        agree(&data);
        parsed += usize::from(worth_parsing(Dialect::OpenAi, &data, false));
        for end in 0..data.len() {
            agree(&data[..end]);
            agree(&data[end..]);
        }
    }
    assert!(parsed >= 5, "only {parsed} events worth parsing");
}

#[test]
fn every_single_byte_change_of_the_corpus_agrees() {
    let replacements = [
        b'"', b'\\', b':', b' ', b'n', b'#', b'!', 0x00, 0xa2, b'u', b'm',
    ];
    for data in corpus() {
        let mut copy = data.clone();
        for at in 0..data.len() {
            for &byte in &replacements {
                copy[at] = byte;
                agree(&copy);
            }
            copy[at] = data[at];
        }
    }
}

#[test]
fn odd_shapes_agree() {
    let cases: &[&[u8]] = &[
        b"",
        b"\"",
        b"\"usage\"",
        b"\"usage\":",
        b"\"usage\": 1",
        b"\"usage\"usage\": 1",
        b"\"usage\"usage\"usage\": 1",
        b"\"finish_reason\"finish_reason\":\"stop\"",
        b"\"finish_reason\" \x0c: \t\"stop\"",
        b"\"finish_reason\":nul",
        b"\"finish_reason\":null,\"finish_reason\":\"x\"",
        b"{\"usage\"  :  null}",
        b"#\"model\"#\"error\"",
        b"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"",
        b"\"response.completed\"",
        b"1234567\"response.incomplete\"",
        b"\"response.incomplet\"",
        b"message_message_stop",
        b"message_sto",
        b"xxmessage_delta",
        b"{\"type\":\"message_start\"}",
    ];
    for data in cases {
        agree(data);
    }
    assert!(worth_parsing(Dialect::OpenAi, b"\"usage\": 1", false));
    assert!(!worth_parsing(
        Dialect::OpenAi,
        b"\"usage\"usage\": 1",
        false
    ));
}

#[test]
fn quotes_are_found_in_every_lane_exactly() {
    let word = |bytes: &[u8; 8]| u64::from_le_bytes(*bytes);
    for lane in 0..8 {
        let mut bytes = *b"#!#!#!#!";
        bytes[lane] = b'"';
        assert_eq!(quotes(word(&bytes)), 0x80 << (8 * lane), "lane {lane}");
    }
    assert_eq!(
        quotes(word(b"\"#\"#\xa2\x22\x00\x01")),
        0x0000_8000_0080_0080
    );
}

#[test]
fn letters_flag_every_key_start_in_every_lane_whatever_the_neighbours() {
    for lane in 0..8 {
        for fill in [
            0x00, 0x01, b'"', b'e', b'u', 0x7f, 0x80, 0xe5, 0xf5, 0xf6, 0xff,
        ] {
            for byte in 0..=255u8 {
                let mut bytes = [fill; 8];
                bytes[lane] = byte;
                let flagged = letters(u64::from_le_bytes(bytes)) & (0x80 << (8 * lane)) != 0;
                if STARTS[usize::from(byte)] {
                    assert!(flagged, "{byte:#x} in lane {lane} among {fill:#x}");
                }
                assert_eq!(flagged, (b'e'..=b'u').contains(&(byte & 0x7f)), "{byte:#x}");
            }
        }
    }
}

/// Whether the key (`USAGE_VALUE` or `FINISH_VALUE`) is found with a value that is not null.
fn has_value_of(data: &[u8], key: u8) -> bool {
    quoted_keys(data) & key != 0
}

#[test]
fn has_value_skips_nulls() {
    assert!(!has_value_of(br#"{"finish_reason":null}"#, FINISH_VALUE));
    assert!(!has_value_of(br#"{"finish_reason" : null}"#, FINISH_VALUE));
    assert!(has_value_of(br#"{"finish_reason": "stop"}"#, FINISH_VALUE));
    assert!(has_value_of(br#"{"a":null,"usage":{"x":1}}"#, USAGE_VALUE));
    assert!(!has_value_of(br#"{"type":"usage"}"#, USAGE_VALUE));
    assert!(!has_value_of(br#"{"usage":"#, USAGE_VALUE));
}

#[test]
fn content_deltas_are_not_parsed() {
    let chunk = br#"{"model":"m","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}],"usage":null}"#;
    assert!(!worth_parsing(Dialect::OpenAi, chunk, false));
    assert!(worth_parsing(Dialect::OpenAi, chunk, true));
    let delta =
        br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}"#;
    assert!(!worth_parsing(Dialect::Anthropic, delta, false));
}
