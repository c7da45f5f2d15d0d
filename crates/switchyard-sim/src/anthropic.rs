//! The Anthropic dialect: `POST /v1/messages`, plain and streamed.

use http::Response;
use serde::Serialize;

use crate::body::{json_with_faults, sse, sse_event, to_json, Script, SimBody};
use crate::gen::{filler, new_id, LlmRequest, Plan};
use crate::profile::Profile;
use crate::InFlight;

#[derive(Serialize)]
struct MessageObject<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: &'a [TextBlock<'a>],
    stop_reason: Option<&'static str>,
    stop_sequence: Option<()>,
    usage: Usage,
}

#[derive(Serialize)]
struct TextBlock<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

#[derive(Serialize)]
struct Usage {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    output_tokens: u64,
}

impl Usage {
    /// Anthropic's `input_tokens` are the uncached part of the prompt.
    fn new(plan: &Plan, output_tokens: u64) -> Usage {
        Usage {
            input_tokens: plan.prompt_tokens - plan.cache_read_tokens - plan.cache_write_tokens,
            cache_creation_input_tokens: plan.cache_write_tokens,
            cache_read_input_tokens: plan.cache_read_tokens,
            output_tokens,
        }
    }
}

#[derive(Serialize)]
struct MessageStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: MessageObject<'a>,
}

#[derive(Serialize)]
struct BlockStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    content_block: TextBlock<'a>,
}

#[derive(Serialize)]
struct BlockDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    delta: TextBlock<'a>,
}

#[derive(Serialize)]
struct BlockStop {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
}

#[derive(Serialize)]
struct MessageDelta {
    #[serde(rename = "type")]
    kind: &'static str,
    delta: StopDelta,
    usage: OutputUsage,
}

#[derive(Serialize)]
struct StopDelta {
    stop_reason: &'static str,
    stop_sequence: Option<()>,
}

#[derive(Serialize)]
struct OutputUsage {
    output_tokens: u64,
}

#[derive(Serialize)]
struct Bare {
    #[serde(rename = "type")]
    kind: &'static str,
}

fn stop_reason(plan: &Plan) -> &'static str {
    if plan.truncated {
        "max_tokens"
    } else {
        "end_turn"
    }
}

/// `POST /v1/messages`
pub(crate) fn messages(
    req: &LlmRequest<'_>,
    profile: &Profile,
    guard: InFlight,
) -> Response<SimBody> {
    let plan = Plan::new(req, profile);
    let id = new_id("msg_");
    if req.is_stream() {
        let ping = profile.first_token_delay_ms > 0.0;
        return sse(
            profile,
            script(&plan, &id, profile.stream_chunks, ping),
            guard,
        );
    }
    let text = filler(plan.words, false);
    let body = MessageObject {
        id: &id,
        kind: "message",
        role: "assistant",
        model: &plan.model,
        content: &[TextBlock {
            kind: "text",
            text: &text,
        }],
        stop_reason: Some(stop_reason(&plan)),
        stop_sequence: None,
        usage: Usage::new(&plan, plan.completion_tokens),
    };
    json_with_faults(profile, to_json(&body), guard)
}

/// `ping`: send a `ping` before the first delta, as the API does while the model thinks.
// Long on purpose: one scripted event sequence, read top to bottom in the order the API sends it.
fn script(plan: &Plan, id: &str, chunks: u32, ping: bool) -> Script {
    let start = MessageStart {
        kind: "message_start",
        message: MessageObject {
            id,
            kind: "message",
            role: "assistant",
            model: &plan.model,
            content: &[],
            stop_reason: None,
            stop_sequence: None,
            usage: Usage::new(plan, 1),
        },
    };
    let block_start = BlockStart {
        kind: "content_block_start",
        index: 0,
        content_block: TextBlock {
            kind: "text",
            text: "",
        },
    };
    let mut events = vec![
        sse_event(start.kind, &start),
        sse_event(block_start.kind, &block_start),
    ];
    if ping {
        events.push(sse_event("ping", &Bare { kind: "ping" }));
    }
    let first_content = events.len();
    for (i, n) in plan.chunk_sizes(chunks).enumerate() {
        let text = filler(n, i > 0);
        let delta = BlockDelta {
            kind: "content_block_delta",
            index: 0,
            delta: TextBlock {
                kind: "text_delta",
                text: &text,
            },
        };
        events.push(sse_event(delta.kind, &delta));
    }
    let content = first_content..events.len();
    let stop = BlockStop {
        kind: "content_block_stop",
        index: 0,
    };
    let message_delta = MessageDelta {
        kind: "message_delta",
        delta: StopDelta {
            stop_reason: stop_reason(plan),
            stop_sequence: None,
        },
        usage: OutputUsage {
            output_tokens: plan.completion_tokens,
        },
    };
    events.push(sse_event(stop.kind, &stop));
    events.push(sse_event(message_delta.kind, &message_delta));
    events.push(sse_event(
        "message_stop",
        &Bare {
            kind: "message_stop",
        },
    ));
    Script { events, content }
}
