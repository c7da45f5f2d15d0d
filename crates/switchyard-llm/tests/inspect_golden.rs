//! Golden tests of the request scanner: on every body, `inspect` (scanner first) must equal
//! `inspect_with_serde` (serde alone) in every dialect, operation and user-path setting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use switchyard_llm::{inspect, inspect_with_serde, scanner_reads, Dialect, Operation};

const CASES: [(Dialect, Operation); 7] = [
    (Dialect::OpenAi, Operation::ChatCompletions),
    (Dialect::OpenAi, Operation::Completions),
    (Dialect::OpenAi, Operation::Responses),
    (Dialect::OpenAi, Operation::Embeddings),
    (Dialect::Anthropic, Operation::Messages),
    (Dialect::Anthropic, Operation::ChatCompletions),
    (Dialect::OpenAi, Operation::Other),
];

fn path_sets() -> Vec<Vec<String>> {
    let set = |list: &[&str]| list.iter().map(|p| p.to_string()).collect();
    vec![
        set(&["user", "metadata.user_id"]),
        set(&["metadata.user_id", "user"]),
        set(&["messages.0.role", "user"]),
        set(&[]),
    ]
}

fn agree(body: &[u8], paths: &[Vec<String>]) {
    agree_in(&CASES, body, paths);
}

fn agree_in(cases: &[(Dialect, Operation)], body: &[u8], paths: &[Vec<String>]) {
    for &(dialect, op) in cases {
        for set in paths {
            let scanned = inspect(dialect, op, body, set);
            let reference = inspect_with_serde(dialect, op, body, set);
            assert_eq!(
                scanned,
                reference,
                "{dialect:?} {op:?} {set:?} on {:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let mut files = Vec::new();
    for dir in [
        "fuzz/corpus/inspect",
        "crates/switchyard-llm/tests/fixtures",
    ] {
        for entry in std::fs::read_dir(format!("{root}/{dir}")).unwrap() {
            let path = entry.unwrap().path();
            let name = path.display().to_string();
            if dir.ends_with("fixtures") && !name.ends_with("_request.json") {
                continue;
            }
            files.push((name, std::fs::read(&path).unwrap()));
        }
    }
    files.push((
        "benches/chat.json".into(),
        std::fs::read(format!("{root}/benches/chat.json")).unwrap(),
    ));
    files
}

#[test]
fn scanner_reads_the_corpus_itself_and_agrees() {
    let paths = path_sets();
    let mut read = 0;
    for (name, body) in corpus() {
        agree(&body, &paths);
        if body.first() == Some(&b'{') {
            assert!(scanner_reads(&body), "the scanner gave {name} to serde");
            read += 1;
        }
    }
    assert!(read >= 7, "only {read} bodies read by the scanner");
}

#[test]
fn every_prefix_of_the_corpus_agrees() {
    let paths = path_sets();
    for (_, body) in corpus() {
        for end in 0..body.len() {
            agree(&body[..end], &paths[..1]);
        }
    }
}

#[test]
fn every_single_byte_change_of_the_corpus_agrees() {
    let paths = path_sets();
    let replacements = [
        b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', b'0', b'-', b'n', 0x01, 0xff, b' ',
    ];
    // The operations that read different fields; the bench body is left to the prefix test.
    let cases = [CASES[0], CASES[2], CASES[4]];
    for (_, body) in corpus().into_iter().filter(|(_, b)| b.len() < 1000) {
        let mut copy = body.clone();
        for at in 0..body.len() {
            for &byte in &replacements {
                copy[at] = byte;
                agree_in(&cases, &copy, &paths[..1]);
            }
            copy[at] = body[at];
        }
    }
}

#[test]
fn odd_shapes_agree() {
    let bodies: &[&[u8]] = &[
        br#"{}"#,
        br#" { } "#,
        b"\x0c{}",
        b"\xef\xbb\xbf{}",
        br#"{"model":"m"} x"#,
        br#"{"model":"m",}"#,
        br#"{"model":"m","model":"n"}"#,
        br#"{"mod\u0065l":"escaped key"}"#,
        br#"{"model":"a\u00e9\n\"b"}"#,
        br#"{"model":"\ud800"}"#,
        br#"{"model":"\ud83d\ude00"}"#,
        br#"{"model":7}"#,
        br#"{"model":null,"stream":null,"stream_options":null,"messages":null,"user":null}"#,
        br#"{"stream":1}"#,
        br#"{"stream":true,"stream_options":{"include_usage":true,"x":[1,{"y":2}]}}"#,
        br#"{"stream_options":{"include_usage":true,"include_usage":false}}"#,
        br#"{"stream_options":[true]}"#,
        br#"{"stream_options":{"include_usage":"yes"}}"#,
        br#"{"messages":[["system","abc"]]}"#,
        br#"{"messages":[null]}"#,
        br#"{"messages":[{"role":"system","content":"a","role":"user"}]}"#,
        br#"{"messages":[{"role":"sys\u0074em","content":"s\tx\u0041"}]}"#,
        br#"{"messages":[{"role":"developer","content":[{"type":"text","text":"x"},{"type":"image_url"}]}]}"#,
        br#"{"messages":[{"role":5,"content":"a"}]}"#,
        br#"{"messages":{"role":"user"}}"#,
        br#"{"messages":[{"content":null,"tool_calls":[{"function":{"arguments":"{}"}}]}]}"#,
        br#"{"user":"\u0000id","metadata":{"user_id":"u","user_id":"v"}}"#,
        br#"{"user":"","metadata":{"user_id":-12.5e+3}}"#,
        br#"{"user":01}"#,
        br#"{"user":-}"#,
        br#"{"user":1.}"#,
        br#"{"user":1e}"#,
        br#"{"user":tru}"#,
        br#"{"user":"a	b"}"#,
        br#"{"user":"\x"}"#,
        br#"{"user":"\u12"}"#,
        br#"{"input":["abc","defgh"],"prompt":[1,2,[3]],"tools":[{"a":{"b":{"c":{}}}}]}"#,
        br#"{"system":[{"type":"text","text":"abc"}],"instructions":"i\nj"}"#,
        b"{\"model\":\"\xff\"}",
        b"{\"x\":\"\xc3\"}",
        b"{\"x\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}",
    ];
    let paths = path_sets();
    for body in bodies {
        agree(body, &paths);
    }
    let deep = |n: usize| format!("{{\"x\":{}1{}}}", "[".repeat(n), "]".repeat(n));
    for n in [10, 62, 63, 64, 126, 127, 128, 200] {
        agree(deep(n).as_bytes(), &paths);
    }
}
