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
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
    pub context_fill: Option<f64>,
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
}

impl Exchange {
    /// The latency the alerts judge: the whole exchange, but for a stream the time to its
    /// first byte — a healthy stream may stay open for minutes.
    pub fn alert_latency(&self) -> Duration {
        match (self.streamed, self.ttfb) {
            (true, Some(ttfb)) => ttfb,
            _ => self.duration,
        }
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
