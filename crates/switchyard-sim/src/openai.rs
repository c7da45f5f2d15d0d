//! The OpenAI dialect: chat completions, legacy completions, embeddings, models.

use bytes::Bytes;
use http::{Response, StatusCode};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::body::{json, json_with_faults, sse, sse_data, to_json, Script, SimBody};
use crate::gen::{
    bad_request, filler, new_id, response_model, unix_now, Dialect, LlmRequest, Plan,
};
use crate::profile::Profile;
use crate::InFlight;

const DONE: &[u8] = b"data: [DONE]\n\n";
const FINGERPRINT: &str = "fp_switchyard_sim";

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_tokens_details: Option<CachedTokens>,
}

/// `prompt_tokens_details` / `input_tokens_details`: the cached part of the prompt.
#[derive(Serialize)]
pub(crate) struct CachedTokens {
    pub cached_tokens: u64,
}

impl CachedTokens {
    pub fn of(plan: &Plan) -> Option<CachedTokens> {
        (plan.cache_read_tokens > 0).then_some(CachedTokens {
            cached_tokens: plan.cache_read_tokens,
        })
    }
}

impl Usage {
    fn of(plan: &Plan) -> Usage {
        Usage {
            prompt_tokens: plan.prompt_tokens,
            completion_tokens: plan.completion_tokens,
            total_tokens: plan.prompt_tokens + plan.completion_tokens,
            prompt_tokens_details: CachedTokens::of(plan),
        }
    }
}

fn finish_reason(plan: &Plan) -> &'static str {
    if plan.truncated {
        "length"
    } else {
        "stop"
    }
}

#[derive(Serialize)]
struct Completion<'a, C> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: &'a [C],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct ChatChoice<'a> {
    index: u32,
    message: Message<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
    refusal: Option<()>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
}

#[derive(Serialize)]
struct TextChoice<'a> {
    index: u32,
    text: &'a str,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

fn completion<'a, C>(
    plan: &'a Plan,
    id: &'a str,
    object: &'static str,
    choices: &'a [C],
) -> Completion<'a, C> {
    Completion {
        id,
        object,
        created: plan.created,
        model: &plan.model,
        system_fingerprint: FINGERPRINT,
        choices,
        usage: None,
    }
}

fn delta<'a>(
    role: Option<&'static str>,
    content: Option<&'a str>,
    finish: Option<&'static str>,
) -> ChunkChoice<'a> {
    ChunkChoice {
        index: 0,
        delta: Delta { role, content },
        logprobs: None,
        finish_reason: finish,
    }
}

fn text_choice<'a>(text: &'a str, finish_reason: Option<&'static str>) -> TextChoice<'a> {
    TextChoice {
        index: 0,
        text,
        logprobs: None,
        finish_reason,
    }
}

/// `POST /v1/chat/completions`
pub(crate) fn chat(req: &LlmRequest<'_>, profile: &Profile, guard: InFlight) -> Response<SimBody> {
    let plan = Plan::new(req, profile);
    let id = new_id("chatcmpl-");
    if req.is_stream() {
        return sse(
            profile,
            chat_script(&plan, &id, profile.stream_chunks),
            guard,
        );
    }
    let text = filler(plan.words, false);
    let choice = ChatChoice {
        index: 0,
        message: Message {
            role: "assistant",
            content: &text,
            refusal: None,
        },
        logprobs: None,
        finish_reason: finish_reason(&plan),
    };
    let choices = [choice];
    let body = Completion {
        usage: Some(Usage::of(&plan)),
        ..completion(&plan, &id, "chat.completion", &choices)
    };
    json_with_faults(profile, to_json(&body), guard)
}

fn chat_script(plan: &Plan, id: &str, chunks: u32) -> Script {
    const OBJECT: &str = "chat.completion.chunk";
    let role = [delta(Some("assistant"), Some(""), None)];
    let mut events = vec![sse_data(&completion(plan, id, OBJECT, &role))];
    let start = events.len();
    for (i, n) in plan.chunk_sizes(chunks).enumerate() {
        let text = filler(n, i > 0);
        let choices = [delta(None, Some(&text), None)];
        events.push(sse_data(&completion(plan, id, OBJECT, &choices)));
    }
    let content = start..events.len();
    let finish = [delta(None, None, Some(finish_reason(plan)))];
    events.push(sse_data(&completion(plan, id, OBJECT, &finish)));
    if plan.include_usage {
        let usage = Completion::<ChunkChoice<'_>> {
            usage: Some(Usage::of(plan)),
            ..completion(plan, id, OBJECT, &[])
        };
        events.push(sse_data(&usage));
    }
    events.push(Bytes::from_static(DONE));
    Script { events, content }
}

/// `POST /v1/completions` (legacy text completions)
pub(crate) fn completions(
    req: &LlmRequest<'_>,
    profile: &Profile,
    guard: InFlight,
) -> Response<SimBody> {
    const OBJECT: &str = "text_completion";
    let plan = Plan::new(req, profile);
    let id = new_id("cmpl-");
    if !req.is_stream() {
        let text = filler(plan.words, false);
        let choices = [text_choice(&text, Some(finish_reason(&plan)))];
        let body = Completion {
            usage: Some(Usage::of(&plan)),
            ..completion(&plan, &id, OBJECT, &choices)
        };
        return json_with_faults(profile, to_json(&body), guard);
    }
    let mut events = Vec::new();
    for (i, n) in plan.chunk_sizes(profile.stream_chunks).enumerate() {
        let text = filler(n, i > 0);
        let choices = [text_choice(&text, None)];
        events.push(sse_data(&completion(&plan, &id, OBJECT, &choices)));
    }
    let content = 0..events.len();
    let finish = [text_choice("", Some(finish_reason(&plan)))];
    events.push(sse_data(&completion(&plan, &id, OBJECT, &finish)));
    if plan.include_usage {
        let usage = Completion::<TextChoice<'_>> {
            usage: Some(Usage::of(&plan)),
            ..completion(&plan, &id, OBJECT, &[])
        };
        events.push(sse_data(&usage));
    }
    events.push(Bytes::from_static(DONE));
    sse(profile, Script { events, content }, guard)
}

#[derive(Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    data: Vec<Embedding>,
    model: &'a str,
    usage: EmbeddingUsage,
}

#[derive(Serialize)]
struct Embedding {
    object: &'static str,
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// `POST /v1/embeddings`: random unit-ish vectors, one per input.
pub(crate) fn embeddings(req: &LlmRequest<'_>, profile: &Profile) -> Response<SimBody> {
    let Some(input) = req.input else {
        return bad_request(Dialect::OpenAi, "'input' is a required property");
    };
    let count = input_count(input);
    let dims = req.dimensions.unwrap_or(64).clamp(1, 4096) as usize;
    let data = (0..count)
        .map(|index| Embedding {
            object: "embedding",
            index,
            embedding: (0..dims).map(|_| fastrand::f32() * 2.0 - 1.0).collect(),
        })
        .collect();
    let model = response_model(&req.model);
    let tokens = (req.raw_prompt_tokens() as f64 * profile.token_inflation).round() as u64;
    let body = EmbeddingList {
        object: "list",
        data,
        model: &model,
        usage: EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    };
    json(StatusCode::OK, to_json(&body))
}

/// A string is one input; an array of strings is many; a token array is one.
fn input_count(input: &RawValue) -> usize {
    let text = input.get();
    if !text.starts_with('[') {
        return 1;
    }
    match serde_json::from_str::<Vec<&RawValue>>(text) {
        Ok(items)
            if items
                .first()
                .is_some_and(|i| i.get().starts_with(['"', '['])) =>
        {
            items.len()
        }
        _ => 1,
    }
}

#[derive(Serialize)]
struct ModelList {
    object: &'static str,
    data: Vec<ModelEntry>,
}

#[derive(Serialize)]
struct ModelEntry {
    id: String,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

/// `GET /v1/models`
pub(crate) fn models() -> Response<SimBody> {
    let created = unix_now();
    let data = [
        "gpt-4o",
        "gpt-4o-mini",
        "claude-sonnet-4",
        "text-embedding-3-small",
    ]
    .iter()
    .map(|m| ModelEntry {
        id: response_model(m),
        object: "model",
        created,
        owned_by: "switchyard-sim",
    })
    .collect();
    let list = ModelList {
        object: "list",
        data,
    };
    json(StatusCode::OK, to_json(&list))
}
