//! One-pass inspection of request bodies: model, stream flags, user, system fingerprint, token estimate.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::dialect::{Dialect, Operation};
use crate::json::{first_byte, raw_text_len, scalar, text_len, text_pieces, Str};
use crate::text::{
    estimate_tokens_for_text, fingerprint_pieces, fingerprint_text, MESSAGE_OVERHEAD_TOKENS,
};

mod scan;

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

/// What inspection reads from a body, found by the scanner or by serde: raw JSON texts of
/// the measured parts, and the messages already summed up.
#[derive(Default)]
struct Fields<'a> {
    model: Option<Cow<'a, str>>,
    stream: Option<bool>,
    include_usage: Option<bool>,
    user: Option<&'a str>,
    metadata: Option<&'a str>,
    system: Option<&'a str>,
    instructions: Option<&'a str>,
    tools: Option<&'a str>,
    functions: Option<&'a str>,
    input: Option<&'a str>,
    prompt: Option<&'a str>,
    max_tokens: Option<&'a str>,
    max_completion_tokens: Option<&'a str>,
    max_output_tokens: Option<&'a str>,
    messages: Messages<'a>,
}

/// The messages, summed up in order as they are read.
#[derive(Default)]
struct Messages<'a> {
    count: usize,
    /// Contents measured, tool calls by their JSON length.
    size: Measure,
    /// The text pieces of system and developer messages, for the fingerprint.
    system: Pieces<'a>,
}

impl<'a> Messages<'a> {
    fn add(&mut self, role: Option<&str>, content: Option<&'a str>, tool_calls: Option<&'a str>) {
        self.count += 1;
        if let Some(content) = content {
            self.size.add(measure(content, 0));
            if matches!(role, Some("system" | "developer")) {
                self.system.add(content);
            }
        }
        self.size.bytes += tool_calls.map_or(0, text_len);
    }
}

/// Inspect a request body, reading it once.
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
///
/// A single-pass scanner reads the body; whatever it does not handle (invalid UTF-8, deep
/// nesting, a shape serde might read differently) goes to a full serde parse, which gives
/// the same answer by construction (golden tests and the fuzz target compare the two).
pub fn inspect(
    dialect: Dialect,
    op: Operation,
    body: &[u8],
    body_user_paths: &[String],
) -> Inspection {
    match scan::fields(body) {
        Some(fields) => finish(dialect, op, &fields, body, body_user_paths),
        None => inspect_with_serde(dialect, op, body, body_user_paths),
    }
}

/// [`inspect`] by serde alone: the reference the scanner is compared with.
#[doc(hidden)]
pub fn inspect_with_serde(
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
    let mut messages = Messages::default();
    for message in req.messages.iter().flatten() {
        let role = message.role.as_ref().map(|r| &*r.0);
        messages.add(
            role,
            message.content.map(RawValue::get),
            message.tool_calls.map(RawValue::get),
        );
    }
    let fields = Fields {
        model: req.model.map(|m| m.0),
        stream: req.stream,
        include_usage: req.stream_options.and_then(|o| o.include_usage),
        user: req.user.map(RawValue::get),
        metadata: req.metadata.map(RawValue::get),
        system: req.system.map(RawValue::get),
        instructions: req.instructions.map(RawValue::get),
        tools: req.tools.map(RawValue::get),
        functions: req.functions.map(RawValue::get),
        input: req.input.map(RawValue::get),
        prompt: req.prompt.map(RawValue::get),
        max_tokens: req.max_tokens.map(RawValue::get),
        max_completion_tokens: req.max_completion_tokens.map(RawValue::get),
        max_output_tokens: req.max_output_tokens.map(RawValue::get),
        messages,
    };
    finish(dialect, op, &fields, body, body_user_paths)
}

/// Whether the scanner reads `body` itself, without serde's help.
#[doc(hidden)]
pub fn scanner_reads(body: &[u8]) -> bool {
    scan::fields(body).is_some()
}

fn finish(
    dialect: Dialect,
    op: Operation,
    fields: &Fields<'_>,
    body: &[u8],
    body_user_paths: &[String],
) -> Inspection {
    let prompt_tokens_estimate = match op {
        Operation::Other => 0,
        _ => estimate(fields),
    };
    let mut pieces = Pieces::default();
    let system = match op {
        Operation::ChatCompletions => &fields.messages.system,
        Operation::Responses => {
            fields.instructions.iter().for_each(|i| pieces.add(i));
            &pieces
        }
        Operation::Messages => {
            fields.system.iter().for_each(|s| pieces.add(s));
            &pieces
        }
        _ => &pieces,
    };
    Inspection {
        parsed: true,
        model: fields.model.as_deref().map(str::to_string),
        stream: fields.stream.unwrap_or(false),
        include_usage: dialect == Dialect::OpenAi && fields.include_usage.unwrap_or(false),
        user: find_user(fields, body, body_user_paths),
        system_fingerprint: system.fingerprint(),
        prompt_tokens_estimate,
        max_tokens: max_tokens(fields),
    }
}

/// Prompt text pieces, in order. The first is held apart: most prompts are one piece, which
/// then needs no allocation.
#[derive(Default)]
struct Pieces<'a> {
    first: Option<Cow<'a, str>>,
    more: Vec<Cow<'a, str>>,
}

impl<'a> Pieces<'a> {
    fn push(&mut self, piece: Cow<'a, str>) {
        match self.first {
            None => self.first = Some(piece),
            Some(_) => self.more.push(piece),
        }
    }

    /// The [`text_pieces`] of a raw value; the common case, a string without escapes (its text
    /// is what lies between its quotes), is taken without decoding.
    fn add(&mut self, raw: &'a str) {
        if let Some(text) = unescaped(raw) {
            return self.push(Cow::Borrowed(text));
        }
        let mut found = Vec::new();
        text_pieces(raw, &mut found);
        found.into_iter().for_each(|piece| self.push(piece));
    }

    /// [`fingerprint_pieces`] of the pieces; one piece is hashed in one call.
    fn fingerprint(&self) -> Option<u64> {
        let first = self.first.as_ref()?;
        if self.more.is_empty() {
            return (!first.is_empty()).then(|| fingerprint_text(first));
        }
        let all: Vec<Cow<'_, str>> = std::iter::once(first)
            .chain(&self.more)
            .map(|piece| Cow::Borrowed(&**piece))
            .collect();
        fingerprint_pieces(&all)
    }
}

/// [`scalar`], with a string without escapes taken without decoding.
fn scalar_text(raw: &str) -> Option<String> {
    match unescaped(raw) {
        Some(text) => (!text.is_empty()).then(|| text.to_owned()),
        None => scalar(raw),
    }
}

/// The text of a raw JSON string that holds no escape; `None` for anything else. `raw` is
/// valid JSON (checked by the scanner or by serde), so a string's last quote closes it.
fn unescaped(raw: &str) -> Option<&str> {
    let text = raw.strip_prefix('"')?.strip_suffix('"')?;
    memchr::memchr(b'\\', text.as_bytes())
        .is_none()
        .then_some(text)
}

/// The completion cap, the newer OpenAI name first; a value that is not a whole number
/// counts as absent.
fn max_tokens(fields: &Fields<'_>) -> Option<u64> {
    [
        fields.max_completion_tokens,
        fields.max_tokens,
        fields.max_output_tokens,
    ]
    .into_iter()
    .flatten()
    .find_map(|raw| raw.trim().parse::<u64>().ok())
}

/// Fields belong to one operation or another, so summing all of them is exact
/// enough and keeps the estimate free of per-operation branches.
fn estimate(fields: &Fields<'_>) -> u64 {
    let top = [
        fields.system,
        fields.instructions,
        fields.tools,
        fields.functions,
        fields.input,
        fields.prompt,
    ];
    let mut size = fields.messages.size;
    for raw in top.into_iter().flatten() {
        size.add(measure(raw, 0));
    }
    let count = u64::try_from(fields.messages.count).unwrap_or(u64::MAX);
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
fn measure(s: &str, depth: usize) -> Measure {
    if !s.starts_with('[') || depth >= MAX_DEPTH {
        return Measure {
            bytes: text_len(s),
            media_tokens: 0,
        };
    }
    let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(s) else {
        return Measure {
            bytes: text_len(s),
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
        size.add(measure(part.get(), depth + 1));
    }
    size.bytes += flat.into_iter().flatten().map(raw_text_len).sum::<usize>();
    size
}

fn find_user(fields: &Fields<'_>, body: &[u8], paths: &[String]) -> Option<String> {
    // Parsed on first use only: most deployments configure just the typed paths.
    let mut tree: Option<Option<Value>> = None;
    for path in paths {
        let hit = match path.as_str() {
            "user" => fields.user.and_then(scalar_text),
            "metadata.user_id" => fields.metadata.and_then(metadata_user_id),
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
fn metadata_user_id(raw: &str) -> Option<String> {
    let meta = serde_json::from_str::<Metadata<'_>>(raw).ok()?;
    meta.user_id.map(RawValue::get).and_then(scalar_text)
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

#[cfg(test)]
mod tests;
