//! Runs the request and response scanners many times over the bench bodies, for measuring
//! their cost under `valgrind --tool=callgrind` (instructions per call = total / count).
//!
//! `cargo run --release -p switchyard-llm --example scan_cost -- inspect|usage|stream|serde [COUNT]`

use std::hint::black_box;

use switchyard_llm::{inspect, inspect_with_serde, usage_from_json, Dialect, Operation};

/// The request body the gateway benchmarks send.
const CHAT: &[u8] = include_bytes!("../../../benches/chat.json");
/// The simulator's chat completion, the response of the same benchmark.
const RESPONSE: &[u8] = include_bytes!("../tests/fixtures/sim_openai_chat_response.json");
/// The simulator's chat completion stream: its first, finishing and usage events are the ones
/// the stream scanner reads whole.
const STREAM: &str = include_str!("../tests/fixtures/sim_openai_chat_stream.sse");

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "inspect".to_owned());
    let count: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let paths = vec!["user".to_owned(), "metadata.user_id".to_owned()];
    let events: Vec<&str> = STREAM
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter(|data| data.starts_with('{'))
        .collect();
    let read = [events.first(), events.iter().rev().nth(1), events.last()];
    let read: Vec<&[u8]> = read.into_iter().flatten().map(|e| e.as_bytes()).collect();
    let mut sum = 0u64;
    for _ in 0..count {
        let body = black_box(CHAT);
        sum += match kind.as_str() {
            "inspect" => {
                let seen = inspect(Dialect::OpenAi, Operation::ChatCompletions, body, &paths);
                seen.prompt_tokens_estimate
            }
            "serde" => {
                let seen =
                    inspect_with_serde(Dialect::OpenAi, Operation::ChatCompletions, body, &paths);
                seen.prompt_tokens_estimate
            }
            "stream" => read
                .iter()
                .map(|event| usage_from_json(Dialect::OpenAi, black_box(event)))
                .map(|usage| usage.prompt_tokens.unwrap_or(0))
                .sum(),
            _ => {
                let usage = usage_from_json(Dialect::OpenAi, black_box(RESPONSE));
                usage.prompt_tokens.unwrap_or(0)
            }
        };
    }
    println!("{kind} x{count}: {sum}");
}
