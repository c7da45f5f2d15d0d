//! Meter: watches the response body go by, and records the exchange exactly once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use pin_project_lite::pin_project;
use switchyard_core::{BoxError, ErrorClass, RequestFacts};
use switchyard_llm::{Dialect, SseScanner, Usage};
use switchyard_state::budget::Reservation;
use switchyard_state::{Exchange, FillSource, Outcome, RouteSignals, Signals};
use tokio::time::Sleep;

use crate::table::ModelInfo;

/// Non-streaming bodies larger than this are forwarded but not parsed for usage.
const MAX_JSON_SCAN: usize = 4 << 20;

/// Bytes of each body kept when `[incidents] capture_bodies` is on.
pub const CAPTURE_BYTES: usize = 16 << 10;

/// Decrements the route's in-flight gauge when the exchange is over, however it ends.
#[derive(Debug)]
pub struct InFlight(metrics::Gauge);

impl InFlight {
    pub fn enter(gauge: &metrics::Gauge) -> Self {
        gauge.increment(1.0);
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// How the body is read for usage as it passes.
#[derive(Debug)]
pub enum Scan {
    None,
    Json { chunks: Vec<Bytes>, len: usize },
    Sse(Box<SseScanner>),
}

impl Scan {
    /// Chooses by dialect and the response's content type.
    pub fn for_response(dialect: Dialect, content_type: Option<&str>) -> Scan {
        if dialect == Dialect::Opaque {
            return Scan::None;
        }
        match content_type {
            Some(ct) if ct.starts_with("text/event-stream") => {
                Scan::Sse(Box::new(SseScanner::new(dialect)))
            }
            Some(ct) if ct.contains("json") => Scan::Json {
                chunks: Vec::new(),
                len: 0,
            },
            _ => Scan::None,
        }
    }

    /// Whether the response is an event stream.
    pub fn is_sse(&self) -> bool {
        matches!(self, Scan::Sse(_))
    }

    fn observe(&mut self, data: &Bytes) {
        match self {
            Scan::None => {}
            Scan::Sse(scanner) => scanner.feed(data),
            Scan::Json { chunks, len } => {
                *len += data.len();
                if *len <= MAX_JSON_SCAN {
                    // A reference-counted clone: the bytes are shared, not copied.
                    chunks.push(data.clone());
                } else {
                    chunks.clear();
                }
            }
        }
    }

    fn usage(&self, dialect: Dialect) -> (Usage, u64) {
        match self {
            Scan::None => (Usage::default(), 0),
            Scan::Sse(scanner) => (scanner.usage().clone(), scanner.events()),
            Scan::Json { chunks, len } if *len <= MAX_JSON_SCAN && !chunks.is_empty() => {
                let usage = match chunks.as_slice() {
                    [only] => switchyard_llm::usage_from_json(dialect, only),
                    _ => {
                        let mut whole = Vec::with_capacity(*len);
                        for chunk in chunks {
                            whole.extend_from_slice(chunk);
                        }
                        switchyard_llm::usage_from_json(dialect, &whole)
                    }
                };
                (usage, 0)
            }
            Scan::Json { .. } => (Usage::default(), 0),
        }
    }
}

/// What is needed to record the exchange when the body ends.
#[derive(Debug)]
pub struct Record {
    pub started: Instant,
    pub ttfb: Option<Duration>,
    /// When the first event carrying model output passed (streams).
    pub ttft: Option<Duration>,
    pub facts: RequestFacts,
    pub dialect: Dialect,
    pub status: u16,
    /// The error the status alone implies: an upstream 4xx/5xx, or the refusal's class.
    pub status_error: Option<ErrorClass>,
    pub model: Option<ModelInfo>,
    pub route: Arc<RouteSignals>,
    pub signals: Arc<Signals>,
    pub _in_flight: Option<InFlight>,
    /// The route's concurrency slot, released when the exchange ends (streams included).
    pub _slot: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The request's text and the response's first bytes, when bodies are captured.
    pub capture: Option<Box<(String, Vec<u8>)>>,
    /// The gateway answered for a reason of its own, not the upstream's.
    pub refused: bool,
    /// The tokens the request reserved from the budget, settled here with what it spent.
    pub reservation: Option<Reservation>,
}

impl Record {
    /// Records the exchange: metrics, windows, and the one log line.
    // Long on purpose: the exchange record is built in one place, each figure from the ones
    // before it (tokens, then cost and fill, then the record), and consumed once.
    pub fn finish(mut self, outcome: Outcome, broken: Option<ErrorClass>, scan: &Scan) {
        let (usage, events) = scan.usage(self.dialect);
        // Only an upstream that accepted the request (2xx) produced tokens to estimate; a
        // refusal or an upstream error without usage costs nothing.
        let answered = (200..300).contains(&self.status) && self.dialect != Dialect::Opaque;
        let estimated = answered
            && usage.prompt_tokens.is_none()
            && usage.completion_tokens.is_none()
            && (self.facts.prompt_tokens_estimate > 0 || events > 0);
        // When usage never arrived (a cancelled or broken stream), count what was sent and
        // seen rather than lose the record: the pre-send prompt estimate, and one token per
        // SSE event, the rate at which the APIs stream.
        let prompt = usage.prompt_tokens.unwrap_or(if estimated {
            self.facts.prompt_tokens_estimate
        } else {
            0
        });
        let completion = usage
            .completion_tokens
            .unwrap_or(if estimated { events } else { 0 });
        // A request the client left while the upstream worked on it may have cost its
        // estimate; one the gateway or the upstream refused cost nothing.
        let reservation = self.reservation.take();
        let spent = if answered {
            prompt.saturating_add(completion)
        } else if self.status == 0 && !self.refused {
            reservation.as_ref().map_or(0, |r| r.tokens)
        } else {
            0
        };
        let model = self.model.as_ref();
        let (cache_read, cache_write) = (usage.cache_read_tokens, usage.cache_write_tokens);
        let cost = model.map_or(0.0, |m| {
            let unpriced = (cache_read > 0 && m.cache_read_usd_per_mtok.is_none())
                || (cache_write > 0 && m.cache_write_usd_per_mtok.is_none());
            if unpriced {
                warn_unpriced_cache(m);
            }
            m.cost_usd(prompt, cache_read, cache_write, completion)
        });
        // The window the model saw is what the upstream reports: an agent behind the gateway
        // may have added tool-call history the gateway never saw. The estimate stands in
        // only when no usage arrived.
        let (context_fill, fill_source) = match (usage.prompt_tokens, model) {
            (Some(reported), Some(m)) if m.context_window > 0 => (
                Some(reported as f64 / m.context_window as f64),
                FillSource::Reported,
            ),
            _ => (self.facts.context_fill, FillSource::Estimated),
        };
        let duration = self.started.elapsed();
        // A whole JSON answer is its first token's arrival too.
        let ttft = match scan {
            Scan::Json { .. } if answered && outcome == Outcome::Complete => Some(duration),
            _ => self.ttft,
        };
        let error = broken.or(self.status_error);
        let bodies = self.capture.map(|c| {
            let (request, response) = *c;
            Box::new((request, String::from_utf8_lossy(&response).into_owned()))
        });
        let streamed = scan.is_sse();
        // The record is consumed here: its strings move into the exchange, no copies.
        let Usage {
            model: response_model,
            finish_reason,
            error_type,
            ..
        } = usage;
        let facts = self.facts;
        let exchange = Exchange {
            request_id: facts.request_id.0,
            route: facts.route,
            upstream: facts.upstream,
            variant: facts.variant.unwrap_or_else(|| NO_VARIANT.clone()),
            model: facts.model_label,
            status: self.status,
            error,
            upstream_error_type: error_type,
            outcome,
            duration,
            ttfb: self.ttfb,
            ttft,
            prompt_tokens: prompt,
            cache_read_tokens: cache_read,
            cache_write_tokens: cache_write,
            completion_tokens: completion,
            cost_usd: cost,
            context_fill,
            fill_source,
            streamed,
            requested_model: facts.model,
            response_model,
            finish_reason,
            prompt_fingerprint: facts.prompt_fingerprint,
            bodies,
            refused: self.refused,
            gen_ai_operation: facts.gen_ai_operation,
            gen_ai_system: match self.dialect {
                Dialect::OpenAi => "openai",
                Dialect::Anthropic => "anthropic",
                Dialect::Opaque => "_OTHER",
            },
            trace: facts.trace,
        };
        crate::access::log_exchange(&exchange, estimated);
        self.signals.record(&self.route, exchange);
        // After the record: a single replica's budget counts the tokens there, so they are
        // counted before the reservation is released, never neither.
        if let Some(reservation) = reservation {
            reservation.settle(spent);
        }
    }
}

/// Logs once per model (per process) that it reports cached prompt tokens of a kind it has no
/// price for, so they are costed as ordinary input.
fn warn_unpriced_cache(model: &ModelInfo) {
    static WARNED: std::sync::Mutex<Vec<Arc<str>>> = std::sync::Mutex::new(Vec::new());
    let mut warned = WARNED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if warned.contains(&model.label) {
        return;
    }
    warned.push(model.label.clone());
    tracing::warn!(
        model = %model.label,
        "the model reports cached prompt tokens but [models] sets no cache_read_usd_per_mtok / \
         cache_write_usd_per_mtok: they are costed at the input price"
    );
}

/// The `variant` label of requests on routes without experiments, made once.
static NO_VARIANT: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from("none"));

pin_project! {
    /// The upstream's body on its way to the client: frames pass through untouched and
    /// at once; the meter only looks.
    pub struct Metered<B> {
        #[pin]
        inner: B,
        // Armed for the end of the allowed silence; frames do not move it: when it fires
        // after a frame came, it is re-armed from that frame (`last_frame`).
        #[pin]
        idle: Sleep,
        idle_timeout: Duration,
        // When the latest frame came, if one came since `idle` was last armed.
        last_frame: Option<tokio::time::Instant>,
        // The waker `idle` holds: while polls bring the same one and it has not fired, the
        // sleep need not be polled again.
        idle_waker: Option<Waker>,
        scan: Scan,
        record: Option<Record>,
        // Bytes still due by the upstream's Content-Length: hyper stops polling a body whose
        // length it knows once that many bytes went out, so the end is seen here, not at None.
        remaining: Option<u64>,
    }

    impl<B> PinnedDrop for Metered<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(record) = this.record.take() {
                record.finish(Outcome::Cancelled, None, this.scan);
            }
        }
    }
}

impl<B: HttpBody> Metered<B> {
    pub fn new(inner: B, scan: Scan, record: Record, idle_timeout: Duration) -> Self {
        Metered {
            idle: tokio::time::sleep(idle_timeout),
            idle_timeout,
            last_frame: None,
            idle_waker: None,
            remaining: inner.size_hint().exact(),
            inner,
            scan,
            record: Some(record),
        }
    }
}

/// Ready once the upstream has been silent for `timeout`: since the sleep was armed if no
/// frame came after, else since the last frame, from which the sleep is then re-armed.
fn poll_silence(
    mut idle: Pin<&mut Sleep>,
    timeout: Duration,
    last_frame: &mut Option<tokio::time::Instant>,
    idle_waker: &mut Option<Waker>,
    cx: &mut Context<'_>,
) -> Poll<()> {
    // The sleep already holds this task's waker: it wakes the task when it fires.
    let holds = idle_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
    if holds && !idle.is_elapsed() {
        return Poll::Pending;
    }
    loop {
        // Out of budget, the sleep answers without registering anything.
        let budget = tokio::task::coop::has_budget_remaining();
        if idle.as_mut().poll(cx).is_pending() {
            *idle_waker = budget.then(|| cx.waker().clone());
            return Poll::Pending;
        }
        // A frame came after the sleep was armed: the silence began with it.
        match last_frame.take() {
            Some(last) => idle.as_mut().reset(deadline(last, timeout)),
            None => return Poll::Ready(()),
        }
    }
}

/// When a silence that began at `at` runs out; decades away when the timeout does not fit the
/// clock, as `tokio::time::sleep` reads it.
fn deadline(at: tokio::time::Instant, timeout: Duration) -> tokio::time::Instant {
    const DECADES: Duration = Duration::from_secs(30 * 365 * 86_400);
    at.checked_add(timeout)
        .or_else(|| at.checked_add(DECADES))
        .unwrap_or(at)
}

/// The upstream fell silent for longer than `stream_idle_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("upstream stream idle for longer than {0:?}")]
pub struct IdleTimeout(Duration);

impl<B> HttpBody for Metered<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if let Some(record) = this.record.as_mut() {
                        record.ttfb.get_or_insert_with(|| record.started.elapsed());
                        if let Some(capture) = record.capture.as_mut() {
                            let room = CAPTURE_BYTES.saturating_sub(capture.1.len());
                            capture.1.extend_from_slice(&data[..room.min(data.len())]);
                        }
                    }
                    this.scan.observe(data);
                    if let (Some(record), Scan::Sse(scanner)) = (this.record.as_mut(), &*this.scan)
                    {
                        if record.ttft.is_none() && scanner.saw_output() {
                            record.ttft = Some(record.started.elapsed());
                        }
                    }
                    if let Some(remaining) = this.remaining.as_mut() {
                        *remaining = remaining.saturating_sub(data.len() as u64);
                        if *remaining == 0 {
                            if let Some(record) = this.record.take() {
                                record.finish(Outcome::Complete, None, this.scan);
                            }
                        }
                    }
                }
                *this.last_frame = Some(tokio::time::Instant::now());
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                if let Some(record) = this.record.take() {
                    record.finish(Outcome::Broken, Some(ErrorClass::Reset), this.scan);
                }
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(None) => {
                if let Some(record) = this.record.take() {
                    record.finish(Outcome::Complete, None, this.scan);
                }
                Poll::Ready(None)
            }
            Poll::Pending => {
                let (idle, timeout) = (this.idle.as_mut(), *this.idle_timeout);
                let (last, waker) = (this.last_frame, this.idle_waker);
                ready!(poll_silence(idle, timeout, last, waker, cx));
                if let Some(record) = this.record.take() {
                    record.finish(Outcome::Broken, Some(ErrorClass::Timeout), this.scan);
                }
                Poll::Ready(Some(Err(Box::new(IdleTimeout(*this.idle_timeout)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // Until the exchange is recorded, claim more may come, so hyper polls to the end
        // and the meter sees it, instead of dropping the body as if it were cancelled.
        self.record.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod idle_tests;

#[cfg(test)]
mod tests {
    #[test]
    fn fingerprints_print_as_sixteen_hex_digits() {
        let mut buf = [0u8; 16];
        assert_eq!(
            crate::access::hex16(0x5e9a_1041_b9d8_ec63, &mut buf),
            "5e9a1041b9d8ec63"
        );
        assert_eq!(
            crate::access::hex16(0xabc, &mut buf),
            format!("{:016x}", 0xabc)
        );
    }
}
