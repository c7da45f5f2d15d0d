//! One-pass inspection of request bodies: model, stream flags, user, system fingerprint, token estimate.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::dialect::{Dialect, Operation};
use crate::json::{first_byte, push_text_pieces, raw_text_len, scalar_text, Str};
use crate::text::{estimate_tokens_for_text, fingerprint_pieces, MESSAGE_OVERHEAD_TOKENS};

/// What the gateway learned from a request body before forwarding it unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inspection {
    /// False when the body was not a JSON object of the expected shape.
    pub parsed: bool,
    pub model: Option<String>,
    pub stream: bool,
    /// OpenAI `stream_options.include_usage == true`.
    pub include_usage: bool,
    /// First hit of the configured body paths, a string or number rendered as text.
    pub user: Option<String>,
    /// `fingerprint_text` of the system prompt, parts joined with "\n".
    pub system_fingerprint: Option<u64>,
    /// See [`inspect`] for the heuristic.
    pub prompt_tokens_estimate: u64,
    /// The completion cap the client set: `max_completion_tokens`, `max_tokens` or
    /// `max_output_tokens`, when it is a whole number.
    pub max_tokens: Option<u64>,
}

/// The union of the request fields of every inspected operation. Parts we only
/// measure stay raw so serde skims them without allocating.
#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow)]
    model: Option<Str<'a>>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    #[serde(borrow)]
    user: Option<&'a RawValue>,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
    #[serde(borrow)]
    messages: Option<Vec<Message<'a>>>,
    #[serde(borrow)]
    system: Option<&'a RawValue>,
    #[serde(borrow)]
    instructions: Option<&'a RawValue>,
    #[serde(borrow)]
    tools: Option<&'a RawValue>,
    #[serde(borrow)]
    functions: Option<&'a RawValue>,
    #[serde(borrow)]
    input: Option<&'a RawValue>,
    #[serde(borrow)]
    prompt: Option<&'a RawValue>,
    // Raw: a cap of a strange type must not make the whole body unparsed.
    #[serde(borrow)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    max_output_tokens: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    role: Option<Str<'a>>,
    #[serde(borrow)]
    content: Option<&'a RawValue>,
    #[serde(borrow)]
    tool_calls: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Metadata<'a> {
    #[serde(borrow)]
    user_id: Option<&'a RawValue>,
}

/// Inspect a request body, parsing it once.
///
/// `body_user_paths` are dot paths ("user", "metadata.user_id", "a.0.b") tried in
/// order; the first string or number found wins. Paths other than the two common
/// ones cost a second, full parse, paid only when such a path is configured.
///
/// Token estimate (0 for `Operation::Other`): `ceil(bytes / 4)` over the text of
/// message contents (strings, or the text of content blocks), system/instructions,
/// `input`/`prompt`, tool-call arguments and tool results, plus the JSON length of tool
/// definitions; each image, audio or document block counts a fixed allowance
/// ([`IMAGE_TOKENS`], [`AUDIO_TOKENS`], [`DOCUMENT_TOKENS`]) instead of its base64 data;
/// plus 4 tokens per message.
pub fn inspect(
    dialect: Dialect,
    op: Operation,
    body: &[u8],
    body_user_paths: &[String],
) -> Inspection {
    if first_byte(body) != Some(b'{') {
        return Inspection::default();
    }
    let Ok(req) = serde_json::from_slice::<Request<'_>>(body) else {
        return Inspection::default();
    };
    let mut system = Vec::new();
    let prompt_tokens_estimate = if op == Operation::Other {
        0
    } else {
        collect_system(op, &req, &mut system);
        estimate(&req)
    };
    let include_usage = dialect == Dialect::OpenAi
        && req
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
    Inspection {
        parsed: true,
        model: req.model.as_ref().map(|m| m.0.to_string()),
        stream: req.stream.unwrap_or(false),
        include_usage,
        user: find_user(&req, body, body_user_paths),
        system_fingerprint: fingerprint_pieces(&system),
        prompt_tokens_estimate,
        max_tokens: max_tokens(&req),
    }
}

/// The completion cap, the newer OpenAI name first; a value that is not a whole number
/// counts as absent.
fn max_tokens(req: &Request<'_>) -> Option<u64> {
    [
        req.max_completion_tokens,
        req.max_tokens,
        req.max_output_tokens,
    ]
    .into_iter()
    .flatten()
    .find_map(|raw| raw.get().trim().parse::<u64>().ok())
}

fn collect_system<'a>(op: Operation, req: &Request<'a>, out: &mut Vec<Cow<'a, str>>) {
    match op {
        Operation::ChatCompletions => {
            let system_messages = req.messages.iter().flatten().filter(|m| {
                m.role
                    .as_ref()
                    .is_some_and(|r| r.0 == "system" || r.0 == "developer")
            });
            for content in system_messages.filter_map(|m| m.content) {
                push_text_pieces(content, out);
            }
        }
        Operation::Responses => req
            .instructions
            .iter()
            .for_each(|i| push_text_pieces(i, out)),
        Operation::Messages => req.system.iter().for_each(|s| push_text_pieces(s, out)),
        _ => {}
    }
}

/// Fields belong to one operation or another, so summing all of them is exact
/// enough and keeps the estimate free of per-operation branches.
fn estimate(req: &Request<'_>) -> u64 {
    let top = [
        req.system,
        req.instructions,
        req.tools,
        req.functions,
        req.input,
        req.prompt,
    ];
    let mut size = Measure::default();
    for raw in top.into_iter().flatten() {
        size.add(measure(raw, 0));
    }
    let messages = req.messages.as_deref().unwrap_or_default();
    for message in messages {
        if let Some(content) = message.content {
            size.add(measure(content, 0));
        }
        size.bytes += message.tool_calls.map_or(0, raw_text_len);
    }
    let count = u64::try_from(messages.len()).unwrap_or(u64::MAX);
    estimate_tokens_for_text(size.bytes)
        .saturating_add(size.media_tokens)
        .saturating_add(count.saturating_mul(MESSAGE_OVERHEAD_TOKENS))
}

/// Tokens counted for one image block (Anthropic: about width × height / 750, at most about
/// 1,600 for the largest image it takes unscaled; OpenAI high detail: 765 to 1,105).
pub const IMAGE_TOKENS: u64 = 1_600;
/// Tokens counted for one audio block: about a minute of input audio.
pub const AUDIO_TOKENS: u64 = 600;
/// Tokens counted for one document or file block: about one page of a PDF.
pub const DOCUMENT_TOKENS: u64 = 3_000;

/// Content nested deeper than this is counted by its JSON length.
const MAX_DEPTH: usize = 3;

/// Text bytes, and the allowance for media blocks, whose base64 data is not text.
#[derive(Debug, Default, Clone, Copy)]
struct Measure {
    bytes: usize,
    media_tokens: u64,
}

impl Measure {
    fn add(&mut self, other: Measure) {
        self.bytes = self.bytes.saturating_add(other.bytes);
        self.media_tokens = self.media_tokens.saturating_add(other.media_tokens);
    }
}

/// One block of a content array, of any dialect: only what measuring it needs.
#[derive(Deserialize)]
struct Block<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    text: Option<&'a RawValue>,
    /// Anthropic tool_result content, Responses message items.
    #[serde(borrow)]
    content: Option<&'a RawValue>,
    /// Anthropic tool_use input.
    #[serde(borrow)]
    input: Option<&'a RawValue>,
    /// Responses function_call arguments.
    #[serde(borrow)]
    arguments: Option<&'a RawValue>,
    /// Responses function_call_output output.
    #[serde(borrow)]
    output: Option<&'a RawValue>,
}

/// The allowance for a media block type, if it is one.
fn media_allowance(kind: &str) -> Option<u64> {
    match kind {
        "image" | "image_url" | "input_image" => Some(IMAGE_TOKENS),
        "input_audio" | "audio" => Some(AUDIO_TOKENS),
        "document" | "file" | "input_file" => Some(DOCUMENT_TOKENS),
        _ => None,
    }
}

/// A string counts its text, an array of blocks each block: text by its length, media
/// by its allowance, tool calls and results by what they carry; anything else by its JSON
/// length.
fn measure(raw: &RawValue, depth: usize) -> Measure {
    let s = raw.get();
    if !s.starts_with('[') || depth >= MAX_DEPTH {
        return Measure {
            bytes: raw_text_len(raw),
            media_tokens: 0,
        };
    }
    let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(s) else {
        return Measure {
            bytes: raw_text_len(raw),
            media_tokens: 0,
        };
    };
    let mut size = Measure::default();
    for item in items {
        size.add(measure_block(item, depth));
    }
    size
}

fn measure_block(item: &RawValue, depth: usize) -> Measure {
    let whole = Measure {
        bytes: raw_text_len(item),
        media_tokens: 0,
    };
    if !item.get().starts_with('{') {
        return whole;
    }
    let Ok(block) = serde_json::from_str::<Block<'_>>(item.get()) else {
        return whole;
    };
    if let Some(tokens) = block.kind.as_ref().and_then(|k| media_allowance(&k.0)) {
        return Measure {
            bytes: 0,
            media_tokens: tokens,
        };
    }
    let parts = [block.text, block.content, block.output];
    let flat = [block.input, block.arguments];
    if parts.iter().chain(flat.iter()).all(Option::is_none) {
        return whole;
    }
    let mut size = Measure::default();
    for part in parts.into_iter().flatten() {
        size.add(measure(part, depth + 1));
    }
    size.bytes += flat.into_iter().flatten().map(raw_text_len).sum::<usize>();
    size
}

fn find_user(req: &Request<'_>, body: &[u8], paths: &[String]) -> Option<String> {
    // Parsed on first use only: most deployments configure just the typed paths.
    let mut tree: Option<Option<Value>> = None;
    for path in paths {
        let hit = match path.as_str() {
            "user" => req.user.and_then(scalar_text),
            "metadata.user_id" => req.metadata.and_then(metadata_user_id),
            other => tree
                .get_or_insert_with(|| serde_json::from_slice(body).ok())
                .as_ref()
                .and_then(|root| lookup(root, other))
                .and_then(value_text),
        };
        if hit.is_some() {
            return hit;
        }
    }
    None
}

/// Metadata stays raw in the main parse so an odd shape there cannot fail the request parse.
fn metadata_user_id(raw: &RawValue) -> Option<String> {
    let meta = serde_json::from_str::<Metadata<'_>>(raw.get()).ok()?;
    meta.user_id.and_then(scalar_text)
}

fn lookup<'v>(root: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(root, |node, segment| match node {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
