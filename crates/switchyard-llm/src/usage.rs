//! Usage extraction from response bodies and stream frames.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::dialect::Dialect;
use crate::json::{first_byte, scalar, Str};

mod scan;

/// What a response said about its cost and outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Every prompt token, cached or not (OpenAI `prompt_tokens`; Anthropic input plus both
    /// cache counts): what fills the context window.
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// The part of `prompt_tokens` read from the provider's prompt cache (OpenAI
    /// `prompt_tokens_details.cached_tokens` / `input_tokens_details.cached_tokens`,
    /// Anthropic `cache_read_input_tokens`); 0 when not reported.
    pub cache_read_tokens: u64,
    /// The part of `prompt_tokens` written to the prompt cache (Anthropic
    /// `cache_creation_input_tokens`); 0 when not reported.
    pub cache_write_tokens: u64,
    /// The model named in the response (e.g. "gpt-4o-2024-08-06").
    pub model: Option<String>,
    /// OpenAI finish_reason of choice 0 or Responses status; Anthropic stop_reason.
    pub finish_reason: Option<String>,
    /// The upstream's own error type when the body or an event is an error.
    pub error_type: Option<String>,
    /// Streaming: saw the protocol's normal end. Non-streaming: a JSON object parsed.
    pub done: bool,
}

/// What one JSON object (a response body, an event's data, or an object nested in one) says,
/// read by the scanner (`usage/scan.rs`) or by serde: the two must agree.
#[derive(Debug, Default, PartialEq, Eq)]
struct Parts<'a> {
    kind: Option<Cow<'a, str>>,
    model: Option<Cow<'a, str>>,
    usage: Option<RawUsage>,
    /// `finish_reason` of the first choice whose index is 0 or absent.
    choice_finish: Option<Cow<'a, str>>,
    status: Option<Cow<'a, str>>,
    stop_reason: Option<Cow<'a, str>>,
    /// The raw JSON text of the parts parsed only when present.
    error: Option<&'a str>,
    code: Option<&'a str>,
    /// Anthropic `message_start` carries the message here.
    message: Option<&'a str>,
    /// OpenAI Responses events carry the response object here.
    response: Option<&'a str>,
    /// Anthropic `message_delta` carries stop_reason here.
    delta: Option<&'a str>,
}

/// The serde reading of [`Parts`]. Unknown fields are skipped; nested parts stay raw.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    model: Option<Str<'a>>,
    usage: Option<RawUsage>,
    #[serde(borrow)]
    choices: Option<Vec<Choice<'a>>>,
    #[serde(borrow)]
    status: Option<Str<'a>>,
    #[serde(borrow)]
    stop_reason: Option<Str<'a>>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
    #[serde(borrow)]
    code: Option<&'a RawValue>,
    #[serde(borrow)]
    message: Option<&'a RawValue>,
    #[serde(borrow)]
    response: Option<&'a RawValue>,
    #[serde(borrow)]
    delta: Option<&'a RawValue>,
}

impl<'a> From<Frame<'a>> for Parts<'a> {
    fn from(frame: Frame<'a>) -> Self {
        let choice_finish = frame
            .choices
            .into_iter()
            .flatten()
            .find(|c| c.index.unwrap_or(0) == 0)
            .and_then(|c| c.finish_reason);
        let text = |s: Option<Str<'a>>| s.map(|s| s.0);
        let raw = |r: Option<&'a RawValue>| r.map(RawValue::get);
        Parts {
            kind: text(frame.kind),
            model: text(frame.model),
            usage: frame.usage,
            choice_finish: text(choice_finish),
            status: text(frame.status),
            stop_reason: text(frame.stop_reason),
            error: raw(frame.error),
            code: raw(frame.code),
            message: raw(frame.message),
            response: raw(frame.response),
            delta: raw(frame.delta),
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
struct RawUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    /// Chat completions: `{"cached_tokens": n}`.
    prompt_tokens_details: Option<CachedDetails>,
    /// Responses API: `{"cached_tokens": n}`.
    input_tokens_details: Option<CachedDetails>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
struct CachedDetails {
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    index: Option<u64>,
    #[serde(borrow)]
    finish_reason: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow)]
    stop_reason: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct ErrorObject<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    code: Option<&'a RawValue>,
}

/// Who reads the JSON: the scanner, which leaves what it does not handle to serde, or serde
/// alone (the reference the scanner is tested against).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reader {
    #[default]
    Scanner,
    Serde,
}

impl Reader {
    fn frame(self, json: &[u8]) -> Option<Parts<'_>> {
        if self == Reader::Scanner {
            if let Some(parts) = scan::frame(json) {
                return Some(parts);
            }
        }
        serde_json::from_slice::<Frame<'_>>(json)
            .ok()
            .map(Parts::from)
    }

    /// A delta object's `stop_reason`; `None` when it does not read as one.
    fn delta_stop_reason(self, raw: &str) -> Option<Option<Cow<'_, str>>> {
        if self == Reader::Scanner {
            if let Some(reason) = scan::delta_stop_reason(raw) {
                return Some(reason);
            }
        }
        let delta = serde_json::from_str::<Delta<'_>>(raw).ok()?;
        Some(delta.stop_reason.map(|s| s.0))
    }

    /// An error object's `type` and raw `code`; `None` when it does not read as one.
    fn error_object(self, raw: &str) -> Option<(Option<Cow<'_, str>>, Option<&str>)> {
        if self == Reader::Scanner {
            if let Some(parts) = scan::error_object(raw) {
                return Some(parts);
            }
        }
        let error = serde_json::from_str::<ErrorObject<'_>>(raw).ok()?;
        Some((error.kind.map(|k| k.0), error.code.map(RawValue::get)))
    }
}

/// Usage from a complete (non-streaming) response body.
///
/// Prompt tokens: OpenAI `prompt_tokens` (Responses: `input_tokens`; embeddings
/// without it: `total_tokens`), which include the cached ones; Anthropic `input_tokens`
/// plus both cache counts. The cached parts are also reported on their own.
/// `Dialect::Opaque` bodies are not interpreted.
pub fn usage_from_json(dialect: Dialect, body: &[u8]) -> Usage {
    usage_with(Reader::Scanner, dialect, body)
}

/// [`usage_from_json`] read by serde alone: the reference the scanner is tested against.
#[doc(hidden)]
pub fn usage_from_json_with_serde(dialect: Dialect, body: &[u8]) -> Usage {
    usage_with(Reader::Serde, dialect, body)
}

/// Whether the scanner reads `json` itself, without serde's help.
#[doc(hidden)]
pub fn usage_scanner_reads(json: &[u8]) -> bool {
    scan::frame(json).is_some()
}

fn usage_with(reader: Reader, dialect: Dialect, body: &[u8]) -> Usage {
    let mut state = UsageState::new(reader);
    if dialect != Dialect::Opaque && state.apply_json(dialect, body) {
        state.usage.done = true;
    }
    state.usage
}

/// Usage plus the Anthropic prompt components, which later events may restate one by one.
#[derive(Debug, Default)]
pub(crate) struct UsageState {
    pub(crate) usage: Usage,
    input: Option<u64>,
    cache_write: Option<u64>,
    cache_read: Option<u64>,
    reader: Reader,
}

impl UsageState {
    pub(crate) fn new(reader: Reader) -> Self {
        UsageState {
            reader,
            ..UsageState::default()
        }
    }

    /// Applies one JSON object; false when it is not one.
    pub(crate) fn apply_json(&mut self, dialect: Dialect, json: &[u8]) -> bool {
        if first_byte(json) != Some(b'{') {
            return false;
        }
        match self.reader.frame(json) {
            Some(frame) => {
                self.apply(dialect, &frame, true);
                true
            }
            None => false,
        }
    }

    fn apply(&mut self, dialect: Dialect, frame: &Parts<'_>, outer: bool) {
        if let Some(model) = frame.model.as_deref().filter(|m| !m.is_empty()) {
            // Streams restate the model: keep the string already held when it is the same.
            if self.usage.model.as_deref() != Some(model) {
                self.usage.model = Some(model.to_owned());
            }
        }
        if let Some(usage) = &frame.usage {
            self.apply_usage(dialect, usage);
        }
        if let Some(reason) = finish_reason(self.reader, dialect, frame) {
            if self.usage.finish_reason.as_deref() != Some(&*reason) {
                self.usage.finish_reason = Some(reason.into_owned());
            }
        }
        if let Some(kind) = error_type(self.reader, frame) {
            self.usage.error_type = Some(kind);
        }
        let kind = frame.kind.as_deref();
        if matches!(
            kind,
            Some("message_stop" | "response.completed" | "response.incomplete")
        ) {
            self.usage.done = true;
        }
        // One level only: real nesting is one deep, and this bounds re-parsing.
        if outer {
            for nested in [frame.message, frame.response].into_iter().flatten() {
                if let Some(inner) = self.reader.frame(nested.as_bytes()) {
                    self.apply(dialect, &inner, false);
                }
            }
        }
    }

    fn apply_usage(&mut self, dialect: Dialect, u: &RawUsage) {
        if dialect == Dialect::Anthropic {
            // Each count is cumulative: the latest statement of it wins.
            self.input = u.input_tokens.or(self.input);
            self.cache_write = u.cache_creation_input_tokens.or(self.cache_write);
            self.cache_read = u.cache_read_input_tokens.or(self.cache_read);
            let parts = [self.input, self.cache_write, self.cache_read];
            if parts.iter().any(Option::is_some) {
                let sum = parts.into_iter().flatten().fold(0u64, u64::saturating_add);
                self.usage.prompt_tokens = Some(sum);
            }
            self.usage.cache_read_tokens = self.cache_read.unwrap_or(0);
            self.usage.cache_write_tokens = self.cache_write.unwrap_or(0);
            self.usage.completion_tokens = u.output_tokens.or(self.usage.completion_tokens);
            return;
        }
        let completion = u.completion_tokens.or(u.output_tokens);
        let prompt = u
            .prompt_tokens
            .or(u.input_tokens)
            .or(u.total_tokens.filter(|_| completion.is_none()));
        self.usage.prompt_tokens = prompt.or(self.usage.prompt_tokens);
        self.usage.completion_tokens = completion.or(self.usage.completion_tokens);
        let details = u
            .prompt_tokens_details
            .as_ref()
            .or(u.input_tokens_details.as_ref());
        if let Some(cached) = details.and_then(|d| d.cached_tokens) {
            self.usage.cache_read_tokens = cached;
        }
    }
}

fn finish_reason<'a>(
    reader: Reader,
    dialect: Dialect,
    frame: &'a Parts<'a>,
) -> Option<Cow<'a, str>> {
    let delta = frame
        .delta
        .filter(|d| d.starts_with('{'))
        .and_then(|d| reader.delta_stop_reason(d))
        .flatten();
    // Only terminal statuses are outcomes; "in_progress" appears on the first event.
    let status = frame
        .status
        .as_deref()
        .filter(|s| dialect == Dialect::OpenAi && !matches!(*s, "in_progress" | "queued"));
    let reason = frame
        .choice_finish
        .as_deref()
        .or(frame.stop_reason.as_deref())
        .or(status)
        .map(Cow::Borrowed)
        .or(delta);
    reason.filter(|s| !s.is_empty())
}

fn error_type(reader: Reader, frame: &Parts<'_>) -> Option<String> {
    if let Some(raw) = frame.error {
        let kind = reader.error_object(raw).and_then(|(kind, code)| {
            kind.map(Cow::into_owned)
                .filter(|k| !k.is_empty())
                .or_else(|| code.and_then(scalar))
        });
        return Some(kind.unwrap_or_else(|| "error".to_owned()));
    }
    // The Responses API streams `{"type":"error","code":...}` with no error object.
    let is_error_event = frame.kind.as_deref() == Some("error");
    is_error_event.then(|| {
        frame
            .code
            .and_then(scalar)
            .unwrap_or_else(|| "error".to_owned())
    })
}
