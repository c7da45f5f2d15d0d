//! What a completion looks like: request parsing, token accounting, filler text, errors.

use std::borrow::Cow;
use std::time::UNIX_EPOCH;

use http::{HeaderValue, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::body::{json, to_json, SimBody};
use crate::profile::{ErrorKind, Profile};

/// Appended to the requested model, the way real APIs answer with a dated snapshot.
pub(crate) const MODEL_SUFFIX: &str = "-sim-2026-01";

/// The fields of any supported request body that the sim cares about.
/// Text-bearing fields stay raw: only their size matters.
#[derive(Deserialize, Default)]
pub(crate) struct LlmRequest<'a> {
    #[serde(borrow, default)]
    pub model: Cow<'a, str>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    #[serde(borrow)]
    pub messages: Option<&'a RawValue>,
    #[serde(borrow)]
    pub prompt: Option<&'a RawValue>,
    #[serde(borrow)]
    pub input: Option<&'a RawValue>,
    #[serde(borrow)]
    pub system: Option<&'a RawValue>,
    #[serde(borrow)]
    pub instructions: Option<&'a RawValue>,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub max_output_tokens: Option<u32>,
    pub dimensions: Option<u32>,
}

#[derive(Deserialize, Default)]
pub(crate) struct StreamOptions {
    pub include_usage: Option<bool>,
}

impl LlmRequest<'_> {
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// About bytes/4 of the text-bearing fields, at least one.
    pub fn raw_prompt_tokens(&self) -> u64 {
        let bytes: usize = [
            self.messages,
            self.prompt,
            self.input,
            self.system,
            self.instructions,
        ]
        .iter()
        .flatten()
        .map(|raw| raw.get().len())
        .sum();
        (bytes as u64 / 4).max(1)
    }
}

/// Everything a dialect needs to render one completion.
pub(crate) struct Plan {
    pub model: String,
    pub created: u64,
    pub prompt_tokens: u64,
    /// Parts of `prompt_tokens` read from and written to the prompt cache.
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub completion_tokens: u64,
    /// Words actually generated; usage may report more through inflation.
    pub words: u32,
    pub truncated: bool,
    pub include_usage: bool,
}

impl Plan {
    pub fn new(req: &LlmRequest<'_>, profile: &Profile) -> Plan {
        let cap = req
            .max_tokens
            .or(req.max_completion_tokens)
            .or(req.max_output_tokens);
        let words = cap.map_or(profile.completion_tokens, |c| {
            c.min(profile.completion_tokens)
        });
        let truncated = profile.truncate || cap.is_some_and(|c| c < profile.completion_tokens);
        let raw_prompt = profile
            .prompt_tokens
            .unwrap_or_else(|| req.raw_prompt_tokens());
        let prompt_tokens = inflate(raw_prompt, profile.token_inflation);
        let cache_read_tokens = profile.cache_read_tokens.min(prompt_tokens);
        let cache_write_tokens = profile
            .cache_write_tokens
            .min(prompt_tokens - cache_read_tokens);
        Plan {
            model: match &profile.model_snapshot {
                Some(snapshot) => snapshot_model(&req.model, snapshot),
                None => response_model(&req.model),
            },
            created: unix_now(),
            prompt_tokens,
            cache_read_tokens,
            cache_write_tokens,
            completion_tokens: inflate(u64::from(words), profile.token_inflation),
            words,
            truncated,
            include_usage: req
                .stream_options
                .as_ref()
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
        }
    }

    /// Word counts per content chunk, all non-empty unless there are no words.
    pub fn chunk_sizes(&self, chunks: u32) -> impl Iterator<Item = u32> {
        let n = chunks.max(1).min(self.words.max(1));
        let (base, rem) = (self.words / n, self.words % n);
        (0..n).map(move |i| base + u32::from(i < rem))
    }
}

pub(crate) fn response_model(requested: &str) -> String {
    let base = if requested.is_empty() {
        "sim-model"
    } else {
        requested
    };
    let mut model = String::with_capacity(base.len() + MODEL_SUFFIX.len());
    model.push_str(base);
    model.push_str(MODEL_SUFFIX);
    model
}

/// The requested model answered by another dated snapshot: `gpt-4o` → `gpt-4o-<snapshot>`.
fn snapshot_model(requested: &str, snapshot: &str) -> String {
    let base = if requested.is_empty() {
        "sim-model"
    } else {
        requested
    };
    format!("{base}-{snapshot}")
}

fn inflate(tokens: u64, factor: f64) -> u64 {
    (tokens as f64 * factor).round() as u64
}

pub(crate) fn unix_now() -> u64 {
    switchyard_core::clock::system_now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A random id in the style of the real APIs (`chatcmpl-…`, `msg_…`).
pub(crate) fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}{:016x}{:08x}",
        fastrand::u64(..),
        fastrand::u32(..)
    )
}

#[rustfmt::skip]
const WORDS: &[&str] = &[
    "lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do",
    "eiusmod", "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua", "enim",
    "ad", "minim", "veniam", "quis", "nostrud", "exercitation", "ullamco", "laboris", "nisi",
    "aliquip", "ex", "ea", "commodo", "consequat",
];

/// `n` filler words; `continued` prefixes a space so chunks concatenate cleanly.
pub(crate) fn filler(n: u32, continued: bool) -> String {
    let mut out = String::with_capacity(n as usize * 8);
    for i in 0..n {
        if i > 0 || continued {
            out.push(' ');
        }
        out.push_str(WORDS[fastrand::usize(..WORDS.len())]);
    }
    out
}

/// Which API family shapes the error bodies.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Dialect {
    OpenAi,
    Anthropic,
}

#[derive(Serialize)]
struct OpenAiError<'a> {
    error: OpenAiErrorBody<'a>,
}

#[derive(Serialize)]
struct OpenAiErrorBody<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<()>,
    code: Option<&'a str>,
}

#[derive(Serialize)]
struct AnthropicError<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: AnthropicErrorBody<'a>,
}

#[derive(Serialize)]
struct AnthropicErrorBody<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

/// An error response in the dialect's shape.
pub(crate) fn error(
    dialect: Dialect,
    status: StatusCode,
    kind: &str,
    code: Option<&str>,
    message: &str,
) -> Response<SimBody> {
    let body = match dialect {
        Dialect::OpenAi => to_json(&OpenAiError {
            error: OpenAiErrorBody {
                message,
                kind,
                param: None,
                code,
            },
        }),
        Dialect::Anthropic => to_json(&AnthropicError {
            kind: "error",
            error: AnthropicErrorBody { kind, message },
        }),
    };
    json(status, body)
}

pub(crate) fn bad_request(dialect: Dialect, message: &str) -> Response<SimBody> {
    error(
        dialect,
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        None,
        message,
    )
}

/// Status, error type, OpenAI `code` and message of an injected failure.
#[rustfmt::skip]
fn spec(kind: ErrorKind, dialect: Dialect) -> (u16, &'static str, Option<&'static str>, &'static str) {
    let anthropic = dialect == Dialect::Anthropic;
    match (kind, anthropic) {
        (ErrorKind::Status500, false) => (500, "server_error", None, "The server had an error while processing your request (simulated)."),
        (ErrorKind::Status500, true) => (500, "api_error", None, "Internal server error (simulated)."),
        (ErrorKind::Overloaded, false) => (503, "server_error", Some("service_unavailable"), "The engine is currently overloaded (simulated)."),
        (ErrorKind::Overloaded, true) => (529, "overloaded_error", None, "Overloaded (simulated)."),
        (ErrorKind::RateLimited, false) => (429, "requests", Some("rate_limit_exceeded"), "Rate limit reached for requests (simulated)."),
        (ErrorKind::RateLimited, true) => (429, "rate_limit_error", None, "Rate limit reached (simulated)."),
        (ErrorKind::BadRequest, _) => (400, "invalid_request_error", None, "The request was rejected (simulated)."),
    }
}

/// The response for an injected failure of the given kind.
pub(crate) fn injected(
    dialect: Dialect,
    kind: ErrorKind,
    error_type: Option<&str>,
) -> Response<SimBody> {
    let (status, own_type, code, message) = spec(kind, dialect);
    let kind_str = error_type.unwrap_or(own_type);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = error(dialect, status, kind_str, code, message);
    if kind == ErrorKind::RateLimited {
        resp.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_for(body: &str, profile: &Profile) -> Plan {
        let req: LlmRequest<'_> = serde_json::from_str(body).unwrap();
        Plan::new(&req, profile)
    }

    #[test]
    fn an_error_type_override_names_the_class_and_keeps_the_status() {
        let resp = injected(
            Dialect::OpenAi,
            ErrorKind::Status500,
            Some("tool_schema_error"),
        );
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let snapshot = snapshot_model("gpt-4o", "sim-2026-03-fabricating");
        assert_eq!(snapshot, "gpt-4o-sim-2026-03-fabricating");
    }

    #[test]
    fn plan_caps_and_inflates() {
        let profile = Profile {
            completion_tokens: 50,
            token_inflation: 2.0,
            ..Profile::default()
        };
        let msgs = r#"{"model":"m","messages":[{"role":"user","content":"hello there friend"}],"max_tokens":10}"#;
        let plan = plan_for(msgs, &profile);
        assert_eq!(plan.model, "m-sim-2026-01");
        assert_eq!(plan.words, 10);
        assert!(plan.truncated);
        assert_eq!(plan.completion_tokens, 20);
        assert!(plan.prompt_tokens >= 2);
        let sizes: Vec<u32> = plan.chunk_sizes(3).collect();
        assert_eq!(sizes, vec![4, 3, 3]);
    }

    #[test]
    fn escaped_model_names_parse() {
        let plan = plan_for(r#"{"model":"a\"b"}"#, &Profile::default());
        assert_eq!(plan.model, "a\"b-sim-2026-01");
        assert_eq!(plan.prompt_tokens, 1);
    }

    #[test]
    fn filler_has_requested_words() {
        assert_eq!(filler(5, false).split(' ').count(), 5);
        assert!(filler(2, true).starts_with(' '));
        assert_eq!(filler(0, false), "");
    }
}
