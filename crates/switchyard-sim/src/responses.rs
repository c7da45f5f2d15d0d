//! The OpenAI Responses API (`POST /v1/responses`), plain and streamed.

use bytes::Bytes;
use http::Response;
use serde::Serialize;

use crate::body::{json_with_faults, sse, sse_event, to_json, Script, SimBody};
use crate::gen::{filler, new_id, LlmRequest, Plan};
use crate::profile::Profile;
use crate::InFlight;

#[derive(Serialize)]
struct ResponseObject<'a> {
    id: &'a str,
    object: &'static str,
    created_at: u64,
    status: &'static str,
    incomplete_details: Option<Incomplete>,
    model: &'a str,
    output: Vec<OutputItem<'a>>,
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct Incomplete {
    reason: &'static str,
}

#[derive(Serialize)]
struct OutputItem<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    status: &'static str,
    role: &'static str,
    content: [OutputText<'a>; 1],
}

#[derive(Serialize)]
struct OutputText<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
    annotations: [(); 0],
}

#[derive(Serialize)]
struct Usage {
    input_tokens: u64,
    output_tokens: u64,
    total_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    input_tokens_details: Option<crate::openai::CachedTokens>,
}

#[derive(Serialize)]
struct Lifecycle<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    response: ResponseObject<'a>,
}

#[derive(Serialize)]
struct TextDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    item_id: &'a str,
    output_index: u32,
    content_index: u32,
    delta: &'a str,
}

struct Ids {
    response: String,
    item: String,
}

fn render<'a>(plan: &'a Plan, ids: &'a Ids, text: Option<&'a str>) -> ResponseObject<'a> {
    let Some(text) = text else {
        return ResponseObject {
            id: &ids.response,
            object: "response",
            created_at: plan.created,
            status: "in_progress",
            incomplete_details: None,
            model: &plan.model,
            output: Vec::new(),
            usage: None,
        };
    };
    let item_status = if plan.truncated {
        "incomplete"
    } else {
        "completed"
    };
    ResponseObject {
        id: &ids.response,
        object: "response",
        created_at: plan.created,
        status: item_status,
        incomplete_details: plan.truncated.then_some(Incomplete {
            reason: "max_output_tokens",
        }),
        model: &plan.model,
        output: vec![OutputItem {
            kind: "message",
            id: &ids.item,
            status: item_status,
            role: "assistant",
            content: [OutputText {
                kind: "output_text",
                text,
                annotations: [],
            }],
        }],
        usage: Some(Usage {
            input_tokens: plan.prompt_tokens,
            output_tokens: plan.completion_tokens,
            total_tokens: plan.prompt_tokens + plan.completion_tokens,
            input_tokens_details: crate::openai::CachedTokens::of(plan),
        }),
    }
}

/// `POST /v1/responses`
pub(crate) fn responses(
    req: &LlmRequest<'_>,
    profile: &Profile,
    guard: InFlight,
) -> Response<SimBody> {
    let plan = Plan::new(req, profile);
    let ids = Ids {
        response: new_id("resp_"),
        item: new_id("msg_"),
    };
    if !req.is_stream() {
        let text = filler(plan.words, false);
        return json_with_faults(profile, to_json(&render(&plan, &ids, Some(&text))), guard);
    }
    sse(
        profile,
        stream_script(&plan, &ids, profile.stream_chunks),
        guard,
    )
}

/// The streamed response: the lifecycle opens, the output item and its text part are
/// announced, the deltas follow, then everything is closed in reverse order.
fn stream_script(plan: &Plan, ids: &Ids, chunks: u32) -> Script {
    let created = Lifecycle {
        kind: "response.created",
        response: render(plan, ids, None),
    };
    let mut events = vec![sse_event(created.kind, &created)];
    // The SDKs assemble the response from these events and refuse content for an output item
    // they were not told about: announce the message item and its text part first.
    let item = serde_json::json!({"type": "message", "id": ids.item, "status": "in_progress", "role": "assistant", "content": []});
    let part = serde_json::json!({"type": "output_text", "text": "", "annotations": []});
    events.push(sse_event(
        "response.output_item.added",
        &serde_json::json!({
        "type": "response.output_item.added", "output_index": 0, "item": item}),
    ));
    events.push(sse_event("response.content_part.added", &serde_json::json!({
        "type": "response.content_part.added", "item_id": ids.item, "output_index": 0, "content_index": 0, "part": part})));
    let first_content = events.len();
    let mut full = String::new();
    for (i, n) in plan.chunk_sizes(chunks).enumerate() {
        let delta = filler(n, i > 0);
        full.push_str(&delta);
        let event = TextDelta {
            kind: "response.output_text.delta",
            item_id: &ids.item,
            output_index: 0,
            content_index: 0,
            delta: &delta,
        };
        events.push(sse_event(event.kind, &event));
    }
    let content = first_content..events.len();
    close_output(&mut events, plan, ids, &full);
    Script { events, content }
}

/// The closing events: the text, its part and its item are done, then the response.
fn close_output(events: &mut Vec<Bytes>, plan: &Plan, ids: &Ids, full: &str) {
    let text_part = serde_json::json!({"type": "output_text", "text": full, "annotations": []});
    let item_status = if plan.truncated {
        "incomplete"
    } else {
        "completed"
    };
    let done_item = serde_json::json!({"type": "message", "id": ids.item, "status": item_status, "role": "assistant", "content": [text_part]});
    events.push(sse_event("response.output_text.done", &serde_json::json!({
        "type": "response.output_text.done", "item_id": ids.item, "output_index": 0, "content_index": 0, "text": full})));
    events.push(sse_event("response.content_part.done", &serde_json::json!({
        "type": "response.content_part.done", "item_id": ids.item, "output_index": 0, "content_index": 0, "part": text_part})));
    events.push(sse_event(
        "response.output_item.done",
        &serde_json::json!({
        "type": "response.output_item.done", "output_index": 0, "item": done_item}),
    ));
    let kind = if plan.truncated {
        "response.incomplete"
    } else {
        "response.completed"
    };
    let done = Lifecycle {
        kind,
        response: render(plan, ids, Some(full)),
    };
    events.push(sse_event(kind, &done));
}
