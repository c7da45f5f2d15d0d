//! One finished exchange, as the meter reports it, and its metric samples.

use std::sync::Arc;
use std::time::Duration;

use switchyard_core::ErrorClass;

/// How the response body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The body ended normally.
    Complete,
    /// The client went away before the end.
    Cancelled,
    /// The upstream broke the body (reset or idle timeout).
    Broken,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::Cancelled => "cancelled",
            Outcome::Broken => "broken",
        }
    }
}

/// Where a context-fill figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FillSource {
    /// The prompt tokens the upstream reported in its usage: what the model really saw,
    /// tool-call history built up behind the gateway included.
    Reported,
    /// The gateway's pre-send estimate of the request it forwarded: used only when no usage
    /// arrived.
    #[default]
    Estimated,
}

impl FillSource {
    /// The `source` label of the fill histogram.
    pub fn as_str(self) -> &'static str {
        match self {
            FillSource::Reported => "reported",
            FillSource::Estimated => "estimated",
        }
    }
}

/// Everything the control plane learns from one request.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub request_id: Arc<str>,
    pub route: Arc<str>,
    pub upstream: Arc<str>,
    pub variant: Arc<str>,
    pub model: Arc<str>,
    /// The status the client received.
    pub status: u16,
    pub error: Option<ErrorClass>,
    /// The upstream's own error type, when its body named one.
    pub upstream_error_type: Option<String>,
    pub outcome: Outcome,
    pub duration: Duration,
    pub ttfb: Option<Duration>,
    /// From arrival to the first event carrying model output; for a non-streamed answer,
    /// to its complete body.
    pub ttft: Option<Duration>,
    /// Prompt tokens, cached ones included.
    pub prompt_tokens: u64,
    /// The parts of `prompt_tokens` read from and written to the provider's prompt cache.
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
    /// Prompt tokens over the model's context window, when the model is known.
    pub context_fill: Option<f64>,
    pub fill_source: FillSource,
    /// The response was a stream (SSE): its length is the conversation's, not a delay.
    pub streamed: bool,
    /// The model as the client asked for it (after any rewrite by the gateway).
    pub requested_model: Option<String>,
    /// The model version the response named.
    pub response_model: Option<String>,
    pub finish_reason: Option<String>,
    pub prompt_fingerprint: Option<u64>,
    /// Request and response text, only when `[incidents] capture_bodies` is on.
    pub bodies: Option<Box<(String, String)>>,
    /// The gateway answered without asking the upstream for a reason of its own (a limit,
    /// a throttle, a kill, a bad request): it says nothing about the upstream's health.
    pub refused: bool,
    /// `gen_ai.operation.name` (`chat`, `text_completion`, `embeddings`); `None` when the
    /// request was not a model call.
    pub gen_ai_operation: Option<&'static str>,
    /// `gen_ai.system`, from the dialect: `openai`, `anthropic`, `_OTHER` for opaque routes.
    pub gen_ai_system: &'static str,
    /// The gateway's span of the request's trace.
    pub trace: switchyard_core::TraceContext,
}

impl Exchange {
    /// The latency the alerts judge: the whole exchange, but for a stream the time to its
    /// first token — a healthy stream may stay open for minutes. A stream whose output the
    /// gateway cannot recognise (an opaque dialect) is judged by its first byte.
    pub fn alert_latency(&self) -> Duration {
        if self.streamed {
            if let Some(first) = self.ttft.or(self.ttfb) {
                return first;
            }
        }
        self.duration
    }

    /// (total − time to first token) / (completion tokens − 1), for complete streams with
    /// two output tokens or more.
    pub fn time_per_output_token(&self) -> Option<Duration> {
        let ttft = self.ttft?;
        if !self.streamed || self.outcome != Outcome::Complete || self.completion_tokens < 2 {
            return None;
        }
        let tokens = u32::try_from(self.completion_tokens - 1).unwrap_or(u32::MAX);
        Some(self.duration.saturating_sub(ttft) / tokens)
    }
}

impl Exchange {
    /// Whether the answer finished normally: a 2xx whose body ended and whose model stopped
    /// by itself (or to call a tool), not by a length limit, a filter or an error.
    pub fn completed(&self) -> bool {
        (200..300).contains(&self.status)
            && self.outcome == Outcome::Complete
            && !self.is_error()
            && matches!(
                self.finish_reason.as_deref(),
                Some(
                    "stop"
                        | "end_turn"
                        | "stop_sequence"
                        | "tool_calls"
                        | "tool_use"
                        | "function_call"
                        | "completed"
                )
            )
    }

    /// Whether this exchange counts against the error rate: the upstream failed or was
    /// overloaded (5xx, 429, transport), or the gateway itself answered 5xx.
    pub fn is_error(&self) -> bool {
        self.status >= 500
            || self.status == 429
            || matches!(
                self.error,
                Some(ErrorClass::Connect | ErrorClass::Timeout | ErrorClass::Reset)
            )
    }

    /// The `class` label of the upstream error, if any: the upstream's own error type when
    /// its body named one, else the transport or status class.
    pub fn error_label(&self) -> Option<Arc<str>> {
        let class = self.error?;
        Some(match self.upstream_error_type.as_deref() {
            Some(kind) => Arc::from(sanitize_class(kind)),
            None => Arc::from(class.as_str()),
        })
    }
}

/// `2xx`, `4xx`, ...; `none` when no status was sent.
pub fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "none",
    }
}

/// Upstream error types come from response bodies: keep label values short and tame.
fn sanitize_class(raw: &str) -> String {
    if raw.is_empty() {
        return "unknown".into();
    }
    raw.chars()
        .take(48)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests_support {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{Exchange, FillSource, Outcome};

    /// A plain exchange for unit tests: a 500 from `blue` on `support`.
    pub(crate) fn exchange() -> Exchange {
        Exchange {
            request_id: Arc::from("r1"),
            route: Arc::from("support"),
            upstream: Arc::from("blue"),
            variant: Arc::from("none"),
            model: Arc::from("other"),
            status: 500,
            error: Some(switchyard_core::ErrorClass::Status5xx),
            upstream_error_type: None,
            outcome: Outcome::Complete,
            duration: Duration::from_millis(5),
            ttfb: None,
            ttft: None,
            prompt_tokens: 0,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            completion_tokens: 0,
            cost_usd: 0.0,
            context_fill: None,
            fill_source: FillSource::Estimated,
            streamed: false,
            requested_model: None,
            response_model: None,
            finish_reason: None,
            prompt_fingerprint: None,
            bodies: None,
            refused: false,
            gen_ai_operation: Some("chat"),
            gen_ai_system: "openai",
            trace: switchyard_core::TraceContext::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_judged_by_their_first_token_and_per_token_time_follows() {
        let mut ex = tests_support::exchange();
        ex.streamed = true;
        ex.duration = Duration::from_secs(90);
        ex.ttfb = Some(Duration::from_millis(50));
        assert_eq!(
            ex.alert_latency(),
            Duration::from_millis(50),
            "no token seen: the first byte"
        );
        ex.ttft = Some(Duration::from_secs(10));
        assert_eq!(ex.alert_latency(), Duration::from_secs(10));
        ex.completion_tokens = 41;
        assert_eq!(ex.time_per_output_token(), Some(Duration::from_secs(2)));
        ex.completion_tokens = 1;
        assert_eq!(ex.time_per_output_token(), None);
        ex.streamed = false;
        assert_eq!(
            ex.alert_latency(),
            Duration::from_secs(90),
            "a JSON answer: the whole"
        );
    }
}
