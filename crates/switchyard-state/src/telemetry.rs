//! OTLP/HTTP export of one span per sampled exchange. The data path only copies a few fields
//! and does a `try_send` into a bounded queue; a task batches and posts them. A slow or dead
//! collector fills the queue, and further spans are dropped and counted, never waited for.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full, Limited};
use switchyard_config::Telemetry;
use switchyard_core::client::{https_client, ClientSettings, HttpsClient};
use switchyard_core::metrics as names;
use switchyard_core::TraceContext;
use tokio::sync::mpsc;

use crate::exchange::Exchange;
use crate::otlp::{self, Value};

/// The exporter's client: HTTP/1.1, idle connections kept 30 s, like the webhooks'.
const CLIENT: ClientSettings = ClientSettings {
    connect_timeout: None,
    tcp_keepalive: None,
    http2: false,
    pool_idle_timeout: Duration::from_secs(30),
};

/// The gateway's version: `service.version` and the instrumentation scope's.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A collector's answer is read only to reuse the connection.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// What a span needs from an exchange, copied when it is recorded (ids, names, counts).
#[derive(Debug)]
pub struct SpanRecord {
    trace: TraceContext,
    start_unix_nanos: u64,
    end_unix_nanos: u64,
    request_id: Arc<str>,
    route: Arc<str>,
    upstream: Arc<str>,
    variant: Arc<str>,
    model: Arc<str>,
    requested_model: Option<String>,
    response_model: Option<String>,
    finish_reason: Option<String>,
    operation: Option<&'static str>,
    system: &'static str,
    input_tokens: u64,
    output_tokens: u64,
    context_fill: Option<f64>,
    ttft: Option<Duration>,
    status: u16,
    outcome: &'static str,
    error: Option<Arc<str>>,
    failed: bool,
}

fn unix_nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl SpanRecord {
    /// The span of an exchange that ends now.
    pub fn of(exchange: &Exchange) -> Self {
        let end = switchyard_core::clock::system_now();
        let start = end.checked_sub(exchange.duration).unwrap_or(end);
        SpanRecord {
            trace: exchange.trace,
            start_unix_nanos: unix_nanos(start),
            end_unix_nanos: unix_nanos(end),
            request_id: exchange.request_id.clone(),
            route: exchange.route.clone(),
            upstream: exchange.upstream.clone(),
            variant: exchange.variant.clone(),
            model: exchange.model.clone(),
            requested_model: exchange.requested_model.clone(),
            response_model: exchange.response_model.clone(),
            finish_reason: exchange.finish_reason.clone(),
            operation: exchange.gen_ai_operation,
            system: exchange.gen_ai_system,
            input_tokens: exchange.prompt_tokens,
            output_tokens: exchange.completion_tokens,
            context_fill: exchange.context_fill,
            ttft: exchange.ttft,
            status: exchange.status,
            outcome: exchange.outcome.as_str(),
            error: exchange.error_label(),
            failed: exchange.is_error(),
        }
    }

    /// The span's name, as the GenAI conventions make it: `{operation} {model}`.
    fn name(&self) -> String {
        match (self.operation, self.requested_model.as_deref()) {
            (Some(op), Some(model)) => format!("{op} {model}"),
            (Some(op), None) => op.to_owned(),
            (None, _) => format!("proxy {}", self.route),
        }
    }

    /// The GenAI semantic conventions' attributes, then ours.
    fn attributes<'a>(&'a self, finish: &'a [&'a str]) -> Vec<(&'static str, Value<'a>)> {
        let mut out = Vec::with_capacity(20);
        if let Some(op) = self.operation {
            out.push(("gen_ai.operation.name", Value::Str(op)));
            out.push(("gen_ai.system", Value::Str(self.system)));
            out.push(("gen_ai.provider.name", Value::Str(self.system)));
        }
        if let Some(model) = &self.requested_model {
            out.push(("gen_ai.request.model", Value::Str(model)));
        }
        if let Some(model) = &self.response_model {
            out.push(("gen_ai.response.model", Value::Str(model)));
        }
        if self.operation.is_some() && self.input_tokens + self.output_tokens > 0 {
            out.push((
                "gen_ai.usage.input_tokens",
                Value::Int(clamp(self.input_tokens)),
            ));
            out.push((
                "gen_ai.usage.output_tokens",
                Value::Int(clamp(self.output_tokens)),
            ));
        }
        if !finish.is_empty() {
            out.push(("gen_ai.response.finish_reasons", Value::StrArray(finish)));
        }
        out.push((
            "http.response.status_code",
            Value::Int(i64::from(self.status)),
        ));
        if let Some(error) = &self.error {
            out.push(("error.type", Value::Str(error)));
        }
        out.push(("switchyard.route", Value::Str(&self.route)));
        out.push(("switchyard.upstream", Value::Str(&self.upstream)));
        out.push(("switchyard.variant", Value::Str(&self.variant)));
        out.push(("switchyard.model", Value::Str(&self.model)));
        out.push(("switchyard.request_id", Value::Str(&self.request_id)));
        out.push(("switchyard.outcome", Value::Str(self.outcome)));
        if let Some(fill) = self.context_fill {
            out.push(("switchyard.context_fill", Value::Double(fill)));
        }
        if let Some(ttft) = self.ttft {
            out.push((
                "switchyard.time_to_first_token",
                Value::Double(ttft.as_secs_f64()),
            ));
        }
        out
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The bounded queue to the export task; dropping the last handle lets the task send what
/// it holds and end.
#[derive(Debug)]
pub struct SpanExporter {
    settings: Telemetry,
    queue: mpsc::Sender<SpanRecord>,
}

impl SpanExporter {
    /// Starts the export task on the current runtime; `None` without an endpoint (or outside
    /// a runtime, which only a misuse can cause).
    pub fn start(settings: &Telemetry) -> Option<Arc<SpanExporter>> {
        let endpoint = settings.otlp_endpoint.clone()?;
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let client = match https_client(&CLIENT) {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "no TLS client for the OTLP exporter; spans are not exported");
                return None;
            }
        };
        let (queue, spans) = mpsc::channel(settings.queue_size);
        let task = Export {
            endpoint,
            settings: settings.clone(),
            client,
            warned: None,
        };
        runtime.spawn(task.run(spans));
        Some(Arc::new(SpanExporter {
            settings: settings.clone(),
            queue,
        }))
    }

    pub fn settings(&self) -> &Telemetry {
        &self.settings
    }

    /// Queues the exchange's span, or counts it dropped when the queue is full.
    pub fn offer(&self, exchange: &Exchange) {
        if self.queue.try_send(SpanRecord::of(exchange)).is_err() {
            dropped("queue_full", 1);
        }
    }
}

fn dropped(reason: &'static str, n: usize) {
    metrics::counter!(names::TELEMETRY_SPANS_DROPPED_TOTAL, "reason" => reason).increment(n as u64);
}

/// While exports keep failing, the log says so at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The export task's side.
struct Export {
    endpoint: http::Uri,
    settings: Telemetry,
    client: HttpsClient<Full<Bytes>>,
    /// When a failure was last logged at WARN; `None` after a success.
    warned: Option<tokio::time::Instant>,
}

impl Export {
    async fn run(mut self, mut spans: mpsc::Receiver<SpanRecord>) {
        let size = self.settings.batch_size;
        loop {
            let Some(first) = spans.recv().await else {
                return;
            };
            let mut batch = Vec::with_capacity(size.min(1024));
            batch.push(first);
            let deadline = tokio::time::Instant::now() + self.settings.batch_delay;
            let mut closed = false;
            while batch.len() < size {
                match tokio::time::timeout_at(deadline, spans.recv()).await {
                    Ok(Some(span)) => batch.push(span),
                    Ok(None) => {
                        closed = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            // While this runs the queue fills; once it is full, spans are dropped at offer.
            self.export(&batch).await;
            if closed {
                return;
            }
        }
    }

    fn encode(&self, batch: &[SpanRecord]) -> Vec<u8> {
        let names: Vec<String> = batch.iter().map(SpanRecord::name).collect();
        let finishes: Vec<Vec<&str>> = batch
            .iter()
            .map(|s| s.finish_reason.as_deref().into_iter().collect())
            .collect();
        let attributes: Vec<_> = batch
            .iter()
            .zip(&finishes)
            .map(|(s, finish)| s.attributes(finish))
            .collect();
        let spans: Vec<otlp::Span<'_>> = batch
            .iter()
            .zip(&names)
            .zip(&attributes)
            .map(|((s, name), attributes)| span(s, name, attributes))
            .collect();
        let resource = [
            ("service.name", Value::Str(&self.settings.service_name)),
            ("service.version", Value::Str(VERSION)),
        ];
        let origin = otlp::Origin {
            resource: &resource,
            scope_name: "switchyard",
            scope_version: VERSION,
        };
        otlp::export_request(&origin, &spans)
    }

    async fn export(&mut self, batch: &[SpanRecord]) {
        let body = Bytes::from(self.encode(batch));
        let request = Request::post(self.endpoint.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .header(
                http::header::USER_AGENT,
                concat!("switchyard/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(body));
        let request = match request {
            Ok(request) => request,
            Err(error) => return self.failed(batch.len(), &error.to_string()),
        };
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status();
            let _ = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await;
            Ok::<_, hyper_util::client::legacy::Error>(status)
        };
        match tokio::time::timeout(self.settings.export_timeout, exchange).await {
            Ok(Ok(status)) if status.is_success() => {
                metrics::counter!(names::TELEMETRY_SPANS_EXPORTED_TOTAL)
                    .increment(batch.len() as u64);
                if self.warned.take().is_some() {
                    tracing::info!(endpoint = %self.authority(), "OTLP export works again");
                }
            }
            Ok(Ok(status)) => self.failed(batch.len(), &format!("the collector answered {status}")),
            Ok(Err(error)) => self.failed(batch.len(), &error.to_string()),
            Err(_) => {
                let took = self.settings.export_timeout;
                self.failed(batch.len(), &format!("no answer within {took:?}"));
            }
        }
    }

    fn failed(&mut self, spans: usize, why: &str) {
        dropped("export_failed", spans);
        let now = tokio::time::Instant::now();
        let endpoint = self.authority();
        // A dead collector fails every batch: one line a minute says so, the counter counts.
        if self.warned.is_some_and(|at| now < at + WARN_EVERY) {
            tracing::debug!(%endpoint, spans, error = %why, "OTLP export failed; spans dropped");
            return;
        }
        self.warned = Some(now);
        tracing::warn!(%endpoint, spans, error = %why, "OTLP export failed; spans dropped (see switchyard_telemetry_spans_dropped_total)");
    }

    /// Host and port only: the rest of a collector URL may carry a key.
    fn authority(&self) -> String {
        self.endpoint
            .authority()
            .map_or_else(String::new, |a| a.as_str().to_owned())
    }
}

fn span<'a>(
    s: &'a SpanRecord,
    name: &'a str,
    attributes: &'a [(&'static str, Value<'a>)],
) -> otlp::Span<'a> {
    let mut flags = otlp::FLAG_HAS_IS_REMOTE;
    if s.trace.sampled {
        flags |= otlp::FLAG_SAMPLED;
    }
    if s.trace.parent_span_id.is_some() {
        flags |= otlp::FLAG_IS_REMOTE;
    }
    otlp::Span {
        trace_id: s.trace.trace_id,
        span_id: s.trace.span_id,
        parent_span_id: s.trace.parent_span_id,
        flags,
        name,
        kind: otlp::SPAN_KIND_CLIENT,
        start_unix_nanos: s.start_unix_nanos,
        end_unix_nanos: s.end_unix_nanos,
        attributes,
        status_code: if s.failed {
            otlp::STATUS_ERROR
        } else {
            otlp::STATUS_UNSET
        },
        status_message: "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_names_follow_the_gen_ai_conventions() {
        let mut ex = crate::exchange::tests_support::exchange();
        ex.requested_model = Some("gpt-4o".into());
        assert_eq!(SpanRecord::of(&ex).name(), "chat gpt-4o");
        ex.requested_model = None;
        assert_eq!(SpanRecord::of(&ex).name(), "chat");
        ex.gen_ai_operation = None;
        assert_eq!(SpanRecord::of(&ex).name(), "proxy support");
        let record = SpanRecord::of(&ex);
        let attributes = record.attributes(&[]);
        assert!(attributes.iter().all(|(k, _)| !k.starts_with("gen_ai.")));
        assert!(attributes.contains(&("error.type", Value::Str("status_5xx"))));
    }
}
