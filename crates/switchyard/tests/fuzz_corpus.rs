//! Replays every fuzz corpus file (seeds and past crashes) through the function its fuzz
//! target calls, so the README's test command covers them without a fuzzer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../fuzz/checks.rs"]
mod checks;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} has no corpus", dir.display());
    for file in files {
        let data = std::fs::read(&file).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{} fails its check", file.display());
    }
}

#[test]
fn inspect_corpus() {
    replay("inspect", checks::inspect);
}

#[test]
fn sse_usage_corpus() {
    replay("sse_usage", checks::sse_usage);
}

#[test]
fn config_corpus() {
    replay("config", checks::config);
}

#[test]
fn admin_bodies_corpus() {
    replay("admin_bodies", checks::admin_bodies);
}

#[test]
fn split_corpus() {
    replay("split", checks::split);
}

#[test]
fn h1_head_corpus() {
    replay("h1_head", checks::h1_head);
}

#[test]
fn h1_answer_corpus() {
    replay("h1_answer", checks::h1_answer);
}
