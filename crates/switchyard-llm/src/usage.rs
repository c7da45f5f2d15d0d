//! Usage extraction from response bodies and stream frames.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::dialect::Dialect;
use crate::json::{first_byte, scalar_text, Str};

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

/// A complete response body, a stream event's data, or an object nested in one.
/// Unknown fields are skipped; nested parts stay raw and are parsed only when present.
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
    /// Anthropic `message_start` carries the message here.
    #[serde(borrow)]
    message: Option<&'a RawValue>,
    /// OpenAI Responses events carry the response object here.
    #[serde(borrow)]
    response: Option<&'a RawValue>,
    /// Anthropic `message_delta` carries stop_reason here.
    #[serde(borrow)]
    delta: Option<&'a RawValue>,
}

#[derive(Deserialize)]
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

#[derive(Deserialize)]
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

/// Usage from a complete (non-streaming) response body.
///
/// Prompt tokens: OpenAI `prompt_tokens` (Responses: `input_tokens`; embeddings
/// without it: `total_tokens`), which include the cached ones; Anthropic `input_tokens`
/// plus both cache counts. The cached parts are also reported on their own.
/// `Dialect::Opaque` bodies are not interpreted.
pub fn usage_from_json(dialect: Dialect, body: &[u8]) -> Usage {
    let mut state = UsageState::default();
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
}

impl UsageState {
    /// Applies one JSON object; false when it is not one.
    pub(crate) fn apply_json(&mut self, dialect: Dialect, json: &[u8]) -> bool {
        if first_byte(json) != Some(b'{') {
            return false;
        }
        match serde_json::from_slice::<Frame<'_>>(json) {
            Ok(frame) => {
                self.apply(dialect, &frame, true);
                true
            }
            Err(_) => false,
        }
    }

    fn apply(&mut self, dialect: Dialect, frame: &Frame<'_>, outer: bool) {
        if let Some(model) = frame.model.as_ref().filter(|m| !m.0.is_empty()) {
            self.usage.model = Some(model.0.to_string());
        }
        if let Some(usage) = &frame.usage {
            self.apply_usage(dialect, usage);
        }
        if let Some(reason) = finish_reason(dialect, frame) {
            self.usage.finish_reason = Some(reason);
        }
        if let Some(kind) = error_type(frame) {
            self.usage.error_type = Some(kind);
        }
        let kind = frame.kind.as_ref().map(|k| k.0.as_ref());
        if matches!(
            kind,
            Some("message_stop" | "response.completed" | "response.incomplete")
        ) {
            self.usage.done = true;
        }
        // One level only: real nesting is one deep, and this bounds re-parsing.
        if outer {
            for nested in [frame.message, frame.response].into_iter().flatten() {
                if let Ok(inner) = serde_json::from_str::<Frame<'_>>(nested.get()) {
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

fn finish_reason(dialect: Dialect, frame: &Frame<'_>) -> Option<String> {
    let choice = frame
        .choices
        .iter()
        .flatten()
        .find(|c| c.index.unwrap_or(0) == 0)
        .and_then(|c| c.finish_reason.as_ref());
    let delta = frame
        .delta
        .filter(|d| d.get().starts_with('{'))
        .and_then(|d| serde_json::from_str::<Delta<'_>>(d.get()).ok())
        .and_then(|d| d.stop_reason)
        .map(|s| s.0);
    // Only terminal statuses are outcomes; "in_progress" appears on the first event.
    let status = frame.status.as_ref().filter(|s| {
        dialect == Dialect::OpenAi && !matches!(s.0.as_ref(), "in_progress" | "queued")
    });
    choice
        .or(frame.stop_reason.as_ref())
        .or(status)
        .map(|s| s.0.to_string())
        .or(delta.map(|d| d.into_owned()))
        .filter(|s| !s.is_empty())
}

fn error_type(frame: &Frame<'_>) -> Option<String> {
    if let Some(raw) = frame.error {
        let parsed = serde_json::from_str::<ErrorObject<'_>>(raw.get()).ok();
        let kind = parsed.and_then(|e| {
            e.kind
                .map(|k| k.0.into_owned())
                .filter(|k| !k.is_empty())
                .or_else(|| e.code.and_then(scalar_text))
        });
        return Some(kind.unwrap_or_else(|| "error".to_owned()));
    }
    // The Responses API streams `{"type":"error","code":...}` with no error object.
    let is_error_event = frame.kind.as_ref().is_some_and(|k| k.0 == "error");
    is_error_event.then(|| {
        frame
            .code
            .and_then(scalar_text)
            .unwrap_or_else(|| "error".to_owned())
    })
}
