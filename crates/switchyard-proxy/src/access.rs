//! The access log: one line per exchange, formatted on the request path into a reused buffer
//! and written to stdout by a thread of its own, in batches.
//!
//! The lines are byte for byte what tracing-subscriber's `fmt` layer prints for the same event
//! (text without colours, or JSON with the event flattened), so `switchyard::access` keeps its
//! format and stays governed by the same filter (`[log] level`, `RUST_LOG`). Formatting by hand
//! skips the event dispatch, the field visitors and the per-event writer; the write itself
//! leaves the request path. When the writer falls behind by [`MAX_PENDING`] bytes, lines are
//! dropped and counted instead of waiting.

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::UNIX_EPOCH;

use switchyard_core::{metrics as names, ErrorClass};
use switchyard_state::Exchange;

mod format;

/// Bytes of lines waiting for the writer beyond which new lines are dropped (about 2,000 lines).
pub const MAX_PENDING: usize = 1 << 20;

/// The target the access lines are filtered by, as a tracing event's target would be.
pub const TARGET: &str = "switchyard::access";

/// How the lines are written; the same choice as the process's log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessFormat {
    /// tracing-subscriber's full text format, without ANSI colours.
    Text,
    /// tracing-subscriber's JSON format with `flatten_event(true)`.
    Json,
}

struct Sink {
    format: AccessFormat,
    pending: Mutex<Pending>,
    wake: Condvar,
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    closed: bool,
}

impl Sink {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends one whole line; held only for the copy, so a worker never waits on the write.
    fn push(&self, line: &[u8]) {
        let mut pending = self.lock();
        if pending.closed || pending.lines.len() + line.len() > MAX_PENDING {
            drop(pending);
            metrics::counter!(names::ACCESS_LOG_DROPPED_TOTAL).increment(1);
            return;
        }
        let was_empty = pending.lines.is_empty();
        pending.lines.extend_from_slice(line);
        drop(pending);
        if was_empty {
            self.wake.notify_one();
        }
    }

    fn run(&self) {
        let mut batch = Vec::with_capacity(64 << 10);
        loop {
            {
                let mut pending = self.lock();
                while pending.lines.is_empty() && !pending.closed {
                    pending = self
                        .wake
                        .wait(pending)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                if pending.lines.is_empty() {
                    return;
                }
                std::mem::swap(&mut pending.lines, &mut batch);
            }
            // A failed write (stdout closed) loses the batch, as the tracing writer would.
            let _ = std::io::stdout().lock().write_all(&batch);
            batch.clear();
            batch.shrink_to(MAX_PENDING);
        }
    }
}

static SINK: OnceLock<Arc<Sink>> = OnceLock::new();

/// The running writer; dropping it writes what is pending and stops the thread.
pub struct AccessWriter {
    sink: Arc<Sink>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for AccessWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessWriter")
            .field("format", &self.sink.format)
            .finish()
    }
}

impl Drop for AccessWriter {
    fn drop(&mut self) {
        self.sink.lock().closed = true;
        self.sink.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Writes the access lines of this process from now on; without it they go through
/// `tracing` as an ordinary event. Once per process: a second call returns `None`.
pub fn install(format: AccessFormat) -> std::io::Result<Option<AccessWriter>> {
    if SINK.get().is_some() {
        return Ok(None);
    }
    let sink = Arc::new(Sink {
        format,
        pending: Mutex::new(Pending::default()),
        wake: Condvar::new(),
    });
    let runner = sink.clone();
    let thread = std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || runner.run())?;
    let writer = AccessWriter {
        sink: sink.clone(),
        thread: Some(thread),
    };
    // Set only once the thread runs, so a line is never queued where nothing drains it.
    Ok(SINK.set(sink).is_ok().then_some(writer))
}

thread_local! {
    /// Each worker formats into its own buffer, reused for every line.
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
}

/// The one structured line per request. Never prompt or completion text.
pub fn log_exchange(ex: &Exchange, estimated: bool) {
    if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        return;
    }
    let Some(sink) = SINK.get() else {
        trace_event(ex, estimated);
        return;
    };
    let line = Line::new(ex, estimated);
    let now = switchyard_core::clock::system_now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    LINE.with_borrow_mut(|buf| {
        buf.clear();
        match sink.format {
            AccessFormat::Text => format::text(buf, now, &line),
            AccessFormat::Json => format::json(buf, now, &line),
        }
        sink.push(buf);
    });
}

/// The fields of the line, in their order.
struct Line<'a> {
    ex: &'a Exchange,
    model: &'a str,
    response_model: &'a str,
    error_class: &'static str,
    upstream_error: &'a str,
    estimated: bool,
    context_fill: f64,
    fingerprint: Option<u64>,
    latency_ms: f64,
    ttfb_ms: f64,
    ttft_ms: f64,
}

impl<'a> Line<'a> {
    fn new(ex: &'a Exchange, estimated: bool) -> Self {
        Line {
            ex,
            model: ex.requested_model.as_deref().unwrap_or("-"),
            response_model: ex.response_model.as_deref().unwrap_or("-"),
            error_class: ex.error.map_or("-", ErrorClass::as_str),
            upstream_error: ex.upstream_error_type.as_deref().unwrap_or("-"),
            estimated,
            context_fill: ex.context_fill.unwrap_or(0.0),
            fingerprint: ex.prompt_fingerprint,
            latency_ms: ex.duration.as_secs_f64() * 1000.0,
            ttfb_ms: ex.ttfb.map_or(0.0, |t| t.as_secs_f64() * 1000.0),
            ttft_ms: ex.ttft.map_or(0.0, |t| t.as_secs_f64() * 1000.0),
        }
    }
}

/// The line as a tracing event, for processes that did not install the writer (tests,
/// coloured terminals).
fn trace_event(ex: &Exchange, estimated: bool) {
    let line = Line::new(ex, estimated);
    let mut hex = [0u8; 16];
    let fingerprint = line.fingerprint.map_or("-", |fp| hex16(fp, &mut hex));
    tracing::info!(
        target: TARGET,
        request_id = %ex.request_id,
        trace_id = %ex.trace.trace_hex(),
        span_id = %ex.trace.span_hex(),
        route = %ex.route,
        upstream = %ex.upstream,
        variant = %ex.variant,
        model = line.model,
        response_model = line.response_model,
        status = ex.status,
        outcome = ex.outcome.as_str(),
        error_class = line.error_class,
        upstream_error = line.upstream_error,
        prompt_tokens = ex.prompt_tokens,
        completion_tokens = ex.completion_tokens,
        tokens_estimated = estimated,
        context_fill = line.context_fill,
        fingerprint,
        latency_ms = line.latency_ms,
        ttfb_ms = line.ttfb_ms,
        ttft_ms = line.ttft_ms,
        "request"
    );
}

/// A prompt fingerprint as 16 lower-case hex digits, written into `buf`: no allocation.
pub(crate) fn hex16(fp: u64, buf: &mut [u8; 16]) -> &str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte = DIGITS[((fp >> (60 - 4 * i)) & 0xf) as usize];
    }
    std::str::from_utf8(buf).unwrap_or("-")
}

#[cfg(test)]
mod tests;
