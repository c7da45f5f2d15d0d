//! One finished exchange, as the meter reports it, and its metric samples.

use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use switchyard_core::metrics as names;
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
}

impl Exchange {
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

    /// Emits the exchange's samples to the metrics recorder.
    pub fn emit_metrics(&self) {
        let base = [
            ("route", self.route.clone()),
            ("upstream", self.upstream.clone()),
            ("variant", self.variant.clone()),
            ("model", self.model.clone()),
        ];
        let labels = |extra: Option<(&'static str, Arc<str>)>| {
            let mut v: Vec<metrics::Label> = base
                .iter()
                .map(|(k, val)| metrics::Label::new(*k, val.clone()))
                .collect();
            if let Some((k, val)) = extra {
                v.push(metrics::Label::new(k, val));
            }
            v
        };
        let status: Arc<str> = Arc::from(status_class(self.status));
        counter!(names::REQUESTS_TOTAL, labels(Some(("status", status)))).increment(1);
        histogram!(names::REQUEST_DURATION_SECONDS, labels(None))
            .record(self.duration.as_secs_f64());
        if let Some(ttfb) = self.ttfb {
            histogram!(names::TTFB_SECONDS, labels(None)).record(ttfb.as_secs_f64());
        }
        self.emit_usage(&labels);
        if let Some(class) = self.error {
            let class = self
                .upstream_error_type
                .as_deref()
                .map(|t| Arc::from(sanitize_class(t)))
                .unwrap_or_else(|| Arc::from(class.as_str()));
            counter!(names::UPSTREAM_ERRORS_TOTAL, labels(Some(("class", class)))).increment(1);
        }
    }

    fn emit_usage(&self, labels: &dyn Fn(Option<(&'static str, Arc<str>)>) -> Vec<metrics::Label>) {
        if self.prompt_tokens > 0 {
            counter!(
                names::TOKENS_TOTAL,
                labels(Some(("direction", Arc::from("prompt"))))
            )
            .increment(self.prompt_tokens);
        }
        if self.completion_tokens > 0 {
            counter!(
                names::TOKENS_TOTAL,
                labels(Some(("direction", Arc::from("completion"))))
            )
            .increment(self.completion_tokens);
        }
        if self.cost_usd > 0.0 {
            // `metrics` counters are integers; a float that only grows is kept in a gauge
            // and exposed with counter type (switchyard-admin's exposition).
            gauge!(names::COST_USD_TOTAL, labels(None)).increment(self.cost_usd);
        }
        if let Some(fill) = self.context_fill {
            histogram!(names::CONTEXT_FILL_RATIO, labels(None)).record(fill);
        }
    }
}

/// `2xx`, `4xx`, ...; `0xx` when no status was sent.
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
