//! The behaviour knobs of the simulated upstream and the named presets.

use serde::{Deserialize, Serialize};

/// How a request fails when the profile's `error_rate` draw says it should.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// 500 `server_error` (OpenAI) / `api_error` (Anthropic).
    #[default]
    Status500,
    /// 503 (OpenAI) / 529 `overloaded_error` (Anthropic).
    Overloaded,
    /// 429 with a `retry-after: 1` header.
    RateLimited,
    /// 400 `invalid_request_error`.
    BadRequest,
}

/// A failure injected into a response body after its headers went out.
///
/// `after_chunks` counts content chunks (token deltas), so `0` fails right
/// after the stream preamble. Non-stream responses fail after half their body.
/// JSON form: `{"mode":"reset","after_chunks":2}`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum MidStream {
    /// Stop sending but keep the body open until the client gives up.
    Hang {
        #[serde(default)]
        after_chunks: u32,
    },
    /// End the body with an error so hyper aborts the connection (HTTP/1:
    /// no terminating chunk; HTTP/2: `RST_STREAM`).
    Reset {
        #[serde(default)]
        after_chunks: u32,
    },
}

impl MidStream {
    /// Number of content chunks sent before the failure.
    pub fn after_chunks(&self) -> u32 {
        match *self {
            MidStream::Hang { after_chunks } | MidStream::Reset { after_chunks } => after_chunks,
        }
    }
}

/// Runtime behaviour of the sim. Missing JSON fields take the values of
/// [`Profile::default`], which equals the "instant" profile.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Profile {
    /// Mean delay before the response headers (and the first SSE event).
    pub ttfb_ms: f64,
    /// Uniform +- jitter around `ttfb_ms`.
    pub ttfb_jitter_ms: f64,
    /// Delay before each content chunk of a stream.
    pub chunk_interval_ms: f64,
    /// Words generated per completion (before `token_inflation`).
    pub completion_tokens: u32,
    /// Content chunks per stream; completion tokens are spread over them.
    pub stream_chunks: u32,
    /// Multiplies the prompt and completion tokens reported in `usage`.
    pub token_inflation: f64,
    /// Probability in [0, 1] that an LLM request fails with `error_kind`.
    pub error_rate: f64,
    /// Fail at an even pace instead of at random: exactly one request in every
    /// 1 / `error_rate` (deterministic figures for drills and tests).
    pub even_errors: bool,
    /// The failure used when the `error_rate` draw hits.
    pub error_kind: ErrorKind,
    /// Replaces the error type named in an injected failure's body (`error.type`), so a
    /// release can fail with an error class the previous one never produced. None: the
    /// kind's own type.
    pub error_type: Option<String>,
    /// The dated snapshot completions name in their `model` field (`gpt-4o-<snapshot>`),
    /// in place of `sim-2026-01`: the provider moved the model under the same name.
    pub model_snapshot: Option<String>,
    /// Finish with `length` / `max_tokens` instead of `stop` / `end_turn`.
    pub truncate: bool,
    /// Break the response body after the headers went out.
    pub fail_mid_stream: Option<MidStream>,
    /// Never send response headers (upstream timeout drills).
    pub hang_before_headers: bool,
    /// Report this many prompt tokens whatever the request holds (before `token_inflation`):
    /// an agent that adds tool-call history behind the gateway. None: from the request.
    pub prompt_tokens: Option<u64>,
    /// The part of the reported prompt read from the prompt cache (OpenAI
    /// `cached_tokens`, Anthropic `cache_read_input_tokens`).
    pub cache_read_tokens: u64,
    /// The part of the reported prompt written to the prompt cache (Anthropic
    /// `cache_creation_input_tokens`; OpenAI reports none).
    pub cache_write_tokens: u64,
    /// Delay between a stream's opening events (role chunk, `message_start`,
    /// `content_block_start`, and then an Anthropic `ping`) and its first content delta.
    pub first_token_delay_ms: f64,
    /// While a stream waits (before a content event, or hung by `fail_mid_stream`), send an
    /// SSE comment line (`: ping`) every this many milliseconds, as providers do to keep idle
    /// connections open through proxies. 0: never.
    pub heartbeat_ms: f64,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            ttfb_ms: 0.0,
            ttfb_jitter_ms: 0.0,
            chunk_interval_ms: 0.0,
            completion_tokens: 16,
            stream_chunks: 8,
            token_inflation: 1.0,
            error_rate: 0.0,
            even_errors: false,
            error_kind: ErrorKind::Status500,
            error_type: None,
            model_snapshot: None,
            truncate: false,
            fail_mid_stream: None,
            hang_before_headers: false,
            prompt_tokens: None,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            first_token_delay_ms: 0.0,
            heartbeat_ms: 0.0,
        }
    }
}

impl Profile {
    /// Rejects values that would make the sim misbehave in unintended ways.
    pub fn validate(&self) -> Result<(), String> {
        let non_negative = [
            ("ttfb_ms", self.ttfb_ms),
            ("ttfb_jitter_ms", self.ttfb_jitter_ms),
            ("chunk_interval_ms", self.chunk_interval_ms),
            ("token_inflation", self.token_inflation),
            ("first_token_delay_ms", self.first_token_delay_ms),
            ("heartbeat_ms", self.heartbeat_ms),
        ];
        for (name, value) in non_negative {
            if !value.is_finite() || value < 0.0 {
                return Err(format!("{name} must be a finite number >= 0, got {value}"));
            }
        }
        if let Some(kind) = &self.error_type {
            if kind.trim().is_empty() {
                return Err("error_type must not be blank".to_owned());
            }
        }
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(format!(
                "error_rate must be within [0, 1], got {}",
                self.error_rate
            ));
        }
        Ok(())
    }
}

/// The snapshot the `fabricating` profile's answers name.
pub const FABRICATING_SNAPSHOT: &str = "sim-2026-03-fabricating";

/// Names accepted by [`named`].
pub const PROFILE_NAMES: &[&str] = &[
    "healthy",
    "instant",
    "slow",
    "flaky",
    "overloaded",
    "token-explosion",
    "truncating",
    "fabricating",
];

/// A named preset:
///
/// - `healthy`: realistic demo upstream, TTFB 120 ms ± 60, a chunk every
///   20 ms, 120 completion tokens over 8 chunks, no errors.
/// - `instant`: no delays, 16 tokens; the cheapest path, for benchmarks.
/// - `slow`: like healthy but TTFB 2 s ± 200 ms and a chunk every 50 ms.
/// - `flaky`: like healthy but 20 % of LLM requests fail with a 500.
/// - `overloaded`: like healthy but every LLM request fails as overloaded
///   (Anthropic 529 / OpenAI 503).
/// - `token-explosion`: like healthy but usage reports 4x the tokens.
/// - `truncating`: like healthy but every completion ends as truncated.
/// - `fabricating`: like healthy, with nothing wrong on the wire (status 200, usual tokens
///   and latency) but answered by another model snapshot (`model` ends in
///   `sim-2026-03-fabricating`): a bad snapshot whose answers only the application's own
///   quality score can catch.
pub fn named(name: &str) -> Option<Profile> {
    let healthy = Profile {
        ttfb_ms: 120.0,
        ttfb_jitter_ms: 60.0,
        chunk_interval_ms: 20.0,
        completion_tokens: 120,
        ..Profile::default()
    };
    let profile = match name {
        "healthy" => healthy,
        "instant" => Profile::default(),
        "slow" => Profile {
            ttfb_ms: 2000.0,
            ttfb_jitter_ms: 200.0,
            chunk_interval_ms: 50.0,
            ..healthy
        },
        "flaky" => Profile {
            error_rate: 0.2,
            error_kind: ErrorKind::Status500,
            ..healthy
        },
        "overloaded" => Profile {
            error_rate: 1.0,
            error_kind: ErrorKind::Overloaded,
            ..healthy
        },
        "token-explosion" => Profile {
            token_inflation: 4.0,
            ..healthy
        },
        "truncating" => Profile {
            truncate: true,
            ..healthy
        },
        "fabricating" => Profile {
            model_snapshot: Some(FABRICATING_SNAPSHOT.to_owned()),
            ..healthy
        },
        _ => return None,
    };
    Some(profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_resolves_and_validates() {
        for name in PROFILE_NAMES {
            let p = named(name).unwrap();
            p.validate().unwrap();
        }
        assert!(named("nope").is_none());
    }

    #[test]
    fn json_round_trip_and_defaults() {
        let p: Profile =
            serde_json::from_str(r#"{"fail_mid_stream":{"mode":"reset","after_chunks":2}}"#)
                .unwrap();
        assert_eq!(
            p.fail_mid_stream,
            Some(MidStream::Reset { after_chunks: 2 })
        );
        assert_eq!(p.completion_tokens, Profile::default().completion_tokens);
        let back: Profile = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        assert!(serde_json::from_str::<Profile>(r#"{"bogus":1}"#).is_err());
        let bad_kind = r#"{"error_kind":"teapot"}"#;
        assert!(serde_json::from_str::<Profile>(bad_kind).is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let p = Profile {
            error_rate: 1.5,
            ..Profile::default()
        };
        assert!(p.validate().unwrap_err().contains("error_rate"));
        let blank = Profile {
            error_type: Some(" ".to_owned()),
            ..Profile::default()
        };
        assert!(blank.validate().unwrap_err().contains("error_type"));
    }

    #[test]
    fn error_type_round_trips_and_fabricating_looks_healthy_on_the_wire() {
        let p: Profile = serde_json::from_str(r#"{"error_type":"context_overflow"}"#).unwrap();
        assert_eq!(p.error_type.as_deref(), Some("context_overflow"));
        let fabricating = named("fabricating").unwrap();
        assert_eq!(
            Profile {
                model_snapshot: None,
                ..fabricating
            },
            named("healthy").unwrap()
        );
    }
}
