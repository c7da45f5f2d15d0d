//! The response corpus the golden tests share: fixture bodies and streams, the fuzz seeds, and
//! the single-byte changes of an input.
// Each test binary compiles its own copy and uses part of it.
#![allow(dead_code, clippy::unwrap_used)]

pub fn root() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../..").to_owned()
}

fn files_in(dir: &str, keep: impl Fn(&str) -> bool) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(format!("{}/{dir}", root())).unwrap() {
        let path = entry.unwrap().path();
        let name = path.display().to_string();
        if keep(&name) {
            files.push((name, std::fs::read(&path).unwrap()));
        }
    }
    files.sort();
    files
}

/// Whole response bodies: the fixtures (real-shaped and the simulator's) and the fuzz seeds.
pub fn bodies() -> Vec<(String, Vec<u8>)> {
    let mut files = files_in("crates/switchyard-llm/tests/fixtures", |name| {
        name.ends_with("_response.json")
    });
    files.extend(files_in("fuzz/corpus/usage_json", |_| true));
    files
}

/// Event streams: the fixtures (real-shaped and the simulator's) and the SSE fuzz seeds.
pub fn streams() -> Vec<(String, Vec<u8>)> {
    let mut files = files_in("crates/switchyard-llm/tests/fixtures", |name| {
        name.ends_with(".sse")
    });
    files.extend(files_in("fuzz/corpus/sse_usage", |_| true));
    files
}

/// The data of each event of a stream, as the SSE scanner hands it over.
pub fn event_data(stream: &[u8]) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(stream);
    text.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|data| data.trim().as_bytes().to_vec())
        .collect()
}

/// `check` on every copy of `input` with one byte replaced by one of `replacements`.
pub fn each_byte_change(input: &[u8], replacements: &[u8], mut check: impl FnMut(&[u8])) {
    let mut copy = input.to_vec();
    for at in 0..input.len() {
        for &byte in replacements {
            copy[at] = byte;
            check(&copy);
        }
        copy[at] = input[at];
    }
}
