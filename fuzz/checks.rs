//! What each fuzz target checks, shared with the workspace test that replays the corpus
//! (`crates/switchyard/tests/fuzz_corpus.rs`), so both call the same functions the same way.
//! Each function takes arbitrary bytes and must not panic; the invariants are asserts.

use std::path::Path;

use switchyard_llm::{Dialect, Operation, SseScanner};

const DIALECTS: [Dialect; 3] = [Dialect::OpenAi, Dialect::Anthropic, Dialect::Opaque];

/// Request inspection in both dialects, for every operation, with the default user paths.
pub fn inspect(data: &[u8]) {
    let paths = [
        "user".to_owned(),
        "metadata.user_id".to_owned(),
        "messages.0.role".to_owned(),
    ];
    let cases = [
        (Dialect::OpenAi, Operation::ChatCompletions),
        (Dialect::OpenAi, Operation::Completions),
        (Dialect::OpenAi, Operation::Responses),
        (Dialect::OpenAi, Operation::Embeddings),
        (Dialect::Anthropic, Operation::Messages),
        (Dialect::OpenAi, Operation::Other),
    ];
    for (dialect, op) in cases {
        let seen = switchyard_llm::inspect(dialect, op, data, &paths);
        assert_eq!(
            seen,
            switchyard_llm::inspect_with_serde(dialect, op, data, &paths),
            "the scanner and serde read the body differently"
        );
        if op == Operation::Other {
            assert_eq!(
                seen.prompt_tokens_estimate, 0,
                "no estimate for other operations"
            );
        }
        if !seen.parsed {
            assert!(
                seen.model.is_none() && seen.user.is_none(),
                "facts from a body that did not parse"
            );
        }
    }
}

/// The SSE usage scanner: the same usage and event count however the stream is split.
/// The first byte picks the dialect; the rest of the first 8 bytes pick the cut points.
pub fn sse_usage(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let dialect = if pick & 1 == 0 {
        Dialect::OpenAi
    } else {
        Dialect::Anthropic
    };
    let (seeds, stream) = rest.split_at(rest.len().min(7));
    let mut whole = SseScanner::new(dialect);
    whole.feed(stream);
    let mut bytewise = SseScanner::new(dialect);
    for byte in stream.chunks(1) {
        bytewise.feed(byte);
    }
    let mut cut = SseScanner::new(dialect);
    let mut at = 0;
    for (i, step) in seeds.iter().cycle().take(stream.len().max(1)).enumerate() {
        if at >= stream.len() {
            break;
        }
        // Step sizes from the seeds, so splits fall inside lines, CRLFs and UTF-8.
        let len = (usize::from(*step) + i) % 13 + 1;
        let end = (at + len).min(stream.len());
        cut.feed(&stream[at..end]);
        at = end;
    }
    cut.feed(&stream[at..]);
    assert_eq!(
        whole.usage(),
        bytewise.usage(),
        "usage depends on the split (bytewise)"
    );
    assert_eq!(whole.usage(), cut.usage(), "usage depends on the split");
    assert_eq!(whole.events(), bytewise.events());
    assert_eq!(whole.events(), cut.events());
    let mut reference = SseScanner::with_serde(dialect);
    reference.feed(stream);
    assert_eq!(
        whole.usage(),
        reference.usage(),
        "the scanner and serde read the events differently"
    );
    usage_json(stream);
}

/// Usage from a whole response body: the scanner reads it as serde alone does, in every
/// dialect, and an unparsed body says nothing.
pub fn usage_json(data: &[u8]) {
    for dialect in DIALECTS {
        let seen = switchyard_llm::usage_from_json(dialect, data);
        assert_eq!(
            seen,
            switchyard_llm::usage_from_json_with_serde(dialect, data),
            "the scanner and serde read the body differently"
        );
        if !seen.done {
            assert_eq!(
                seen,
                switchyard_llm::Usage::default(),
                "facts from a body that did not parse"
            );
        }
    }
}

/// Config text to a validated config: never a panic, and an error always says something.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A path the file names is read at load time: keep device and process files out.
    if ["/dev", "/proc", "/sys", "_file"]
        .iter()
        .any(|p| text.contains(p))
    {
        return;
    }
    match switchyard_config::Config::parse(text, "fuzz.toml", Path::new("/nonexistent-fuzz")) {
        Ok(config) => assert!(!config.version.is_empty()),
        Err(error) => {
            assert!(
                !error.message.is_empty(),
                "an error without a message: {error:?}"
            );
            assert!(!error.to_string().is_empty());
        }
    }
}

/// The admin request bodies, parsed as the endpoints parse them.
pub fn admin_bodies(data: &[u8]) {
    let accepted = switchyard_admin::fuzz::admin_bodies(data);
    assert!(accepted <= 6);
}

/// The split hash: in [0, 1), deterministic, and a wider share only ever adds users.
/// The bytes before the first NUL are the user key, the rest the split name.
pub fn split(data: &[u8]) {
    let (user, split) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let user = String::from_utf8_lossy(user);
    let split = String::from_utf8_lossy(split);
    let position = switchyard_core::split::position(&user, &split);
    assert!(
        (0.0..1.0).contains(&position),
        "position {position} outside [0, 1)"
    );
    assert_eq!(
        position.to_bits(),
        switchyard_core::split::position(&user, &split).to_bits()
    );
    let mut was_in = false;
    for step in 0..=20 {
        let share = f64::from(step) / 20.0;
        let now_in = switchyard_core::split::within(&user, &split, share);
        assert!(!was_in || now_in, "widening to {share} dropped the user");
        was_in = now_in;
    }
    assert!(switchyard_core::split::within(&user, &split, 1.0));
    assert!(!switchyard_core::split::within(&user, &split, 0.0));
}

/// The built-in HTTP/1.1 path's head: its framing decision and the request it builds.
pub fn h1_head(data: &[u8]) {
    switchyard_proxy::fuzz::h1_head(data);
}

/// The built-in HTTP/1.1 path's upstream answers: the head's framing and the body's decoding.
pub fn h1_answer(data: &[u8]) {
    switchyard_proxy::fuzz::h1_answer(data);
}
