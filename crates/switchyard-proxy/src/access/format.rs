//! The two line formats, written by hand into a byte buffer.

use std::cell::RefCell;
use std::io::Write;
use std::time::Duration;

use super::{Line, TARGET};

/// Lowercase hex of the low `out.len() * 4` bits of `value`.
fn hex(buf: &mut Vec<u8>, value: u128, digits: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for i in (0..digits).rev() {
        buf.push(DIGITS[((value >> (4 * i)) & 0xf) as usize]);
    }
}

/// `value` in decimal, zero-padded to `width` digits.
fn padded(buf: &mut Vec<u8>, value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut rest = value;
    let mut used = 0;
    while rest > 0 || used == 0 {
        digits[19 - used] = b'0' + (rest % 10) as u8;
        rest /= 10;
        used += 1;
    }
    for _ in used..width {
        buf.push(b'0');
    }
    buf.extend_from_slice(&digits[20 - used..]);
}

/// An integer in decimal.
fn integer(buf: &mut Vec<u8>, value: impl itoa::Integer) {
    buf.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// A float in the notation Rust's `Debug` uses, which is how the text format prints `f64`
/// fields: the shortest digits that read back the same, plain with at least one fractional
/// digit from 1e-4 up to 1e16, exponent notation outside. In the plain range (and at zero)
/// zmij, serde_json's float writer, writes it: the same text, except where two shortest
/// candidates are exactly equally near the value, where the two may pick the other one (the
/// last digit differs by one; both read back as the same `f64`). Outside it `Debug` does.
pub(super) fn debug_f64(buf: &mut Vec<u8>, value: f64) {
    let plain = value == 0.0 || (1e-4..1e16).contains(&value.abs());
    if value.is_finite() && plain {
        buf.extend_from_slice(zmij::Buffer::new().format_finite(value).as_bytes());
    } else {
        let _ = write!(buf, "{value:?}");
    }
}

/// Days since 1970-01-01 as a proleptic Gregorian (year, month, day), by eras of 400 years.
fn civil(days: i64) -> (i64, u64, u64) {
    let shifted = days + 719_468; // from 0000-03-01, so leap days fall at the end of a year
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month as u64, day as u64)
}

thread_local! {
    /// The second the thread last wrote a line in, and its text up to the seconds: the
    /// lines of one second share it, and the calendar is worked out once a second.
    static SECOND: RefCell<(u64, Vec<u8>)> = const { RefCell::new((u64::MAX, Vec::new())) };
}

/// RFC 3339 UTC with microseconds, as tracing-subscriber's `SystemTime` timer prints it.
pub(super) fn timestamp(buf: &mut Vec<u8>, since_epoch: Duration) {
    let secs = since_epoch.as_secs();
    SECOND.with_borrow_mut(|(at, text)| {
        if *at != secs {
            text.clear();
            to_the_second(text, secs);
            *at = secs;
        }
        buf.extend_from_slice(text);
    });
    buf.push(b'.');
    padded(buf, u64::from(since_epoch.subsec_micros()), 6);
    buf.push(b'Z');
}

/// `YYYY-MM-DDTHH:MM:SS` of a second since the epoch.
fn to_the_second(buf: &mut Vec<u8>, secs: u64) {
    let (year, month, day) = civil(i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2));
    if year > 9999 {
        let _ = write!(buf, "+{year}");
    } else {
        padded(buf, year.unsigned_abs(), 4);
    }
    let of_day = secs % 86_400;
    buf.push(b'-');
    padded(buf, month, 2);
    buf.push(b'-');
    padded(buf, day, 2);
    buf.push(b'T');
    padded(buf, of_day / 3600, 2);
    buf.push(b':');
    padded(buf, of_day / 60 % 60, 2);
    buf.push(b':');
    padded(buf, of_day % 60, 2);
}

/// A string as Rust's `Debug` writes it, which is how the text format prints `&str` fields.
fn debug_str(buf: &mut Vec<u8>, s: &str) {
    let plain = s
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
    if plain {
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    } else {
        let _ = write!(buf, "{s:?}");
    }
}

fn fingerprint_text(buf: &mut Vec<u8>, fingerprint: Option<u64>) {
    buf.push(b'"');
    match fingerprint {
        Some(fp) => hex(buf, u128::from(fp), 16),
        None => buf.push(b'-'),
    }
    buf.push(b'"');
}

/// `2026-01-01T00:00:00.000000Z  INFO switchyard::access: request request_id=… ttft_ms=…`.
pub(super) fn text(buf: &mut Vec<u8>, now: Duration, line: &Line<'_>) {
    let ex = line.ex;
    timestamp(buf, now);
    buf.extend_from_slice(b"  INFO ");
    buf.extend_from_slice(TARGET.as_bytes());
    buf.extend_from_slice(b": request request_id=");
    buf.extend_from_slice(ex.request_id.as_bytes());
    buf.extend_from_slice(b" trace_id=");
    hex(buf, ex.trace.trace_id, 32);
    buf.extend_from_slice(b" span_id=");
    hex(buf, u128::from(ex.trace.span_id), 16);
    buf.extend_from_slice(b" route=");
    buf.extend_from_slice(ex.route.as_bytes());
    buf.extend_from_slice(b" upstream=");
    buf.extend_from_slice(ex.upstream.as_bytes());
    buf.extend_from_slice(b" variant=");
    buf.extend_from_slice(ex.variant.as_bytes());
    buf.extend_from_slice(b" model=");
    debug_str(buf, line.model);
    buf.extend_from_slice(b" response_model=");
    debug_str(buf, line.response_model);
    buf.extend_from_slice(b" status=");
    integer(buf, ex.status);
    buf.extend_from_slice(b" outcome=");
    debug_str(buf, ex.outcome.as_str());
    buf.extend_from_slice(b" error_class=");
    debug_str(buf, line.error_class);
    buf.extend_from_slice(b" upstream_error=");
    debug_str(buf, line.upstream_error);
    buf.extend_from_slice(b" prompt_tokens=");
    integer(buf, ex.prompt_tokens);
    buf.extend_from_slice(b" completion_tokens=");
    integer(buf, ex.completion_tokens);
    buf.extend_from_slice(if line.estimated {
        b" tokens_estimated=true context_fill="
    } else {
        b" tokens_estimated=false context_fill="
    });
    debug_f64(buf, line.context_fill);
    buf.extend_from_slice(b" fingerprint=");
    fingerprint_text(buf, line.fingerprint);
    buf.extend_from_slice(b" latency_ms=");
    debug_f64(buf, line.latency_ms);
    buf.extend_from_slice(b" ttfb_ms=");
    debug_f64(buf, line.ttfb_ms);
    buf.extend_from_slice(b" ttft_ms=");
    debug_f64(buf, line.ttft_ms);
    buf.push(b'\n');
}

/// A JSON string or number exactly as serde_json writes it.
fn json_value<T: serde::Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) {
    let _ = serde_json::to_writer(&mut *buf, value);
}

fn json_str_field(buf: &mut Vec<u8>, key: &str, value: &str) {
    buf.extend_from_slice(b",\"");
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(b"\":");
    json_value(buf, value);
}

fn json_f64_field(buf: &mut Vec<u8>, key: &str, value: f64) {
    buf.extend_from_slice(b",\"");
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(b"\":");
    json_f64(buf, value);
}

/// An `f64` as serde_json writes it.
pub(super) fn json_f64(buf: &mut Vec<u8>, value: f64) {
    // As serde_json writes an `f64`: zmij's shortest digits, `null` for NaN and infinities.
    if value.is_finite() {
        buf.extend_from_slice(zmij::Buffer::new().format_finite(value).as_bytes());
    } else {
        buf.extend_from_slice(b"null");
    }
}

/// `{"timestamp":…,"level":"INFO","message":"request",…fields…,"target":"switchyard::access"}`.
pub(super) fn json(buf: &mut Vec<u8>, now: Duration, line: &Line<'_>) {
    let ex = line.ex;
    buf.extend_from_slice(b"{\"timestamp\":\"");
    timestamp(buf, now);
    buf.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"request\"");
    json_str_field(buf, "request_id", &ex.request_id);
    buf.extend_from_slice(b",\"trace_id\":\"");
    hex(buf, ex.trace.trace_id, 32);
    buf.extend_from_slice(b"\",\"span_id\":\"");
    hex(buf, u128::from(ex.trace.span_id), 16);
    buf.push(b'"');
    json_str_field(buf, "route", &ex.route);
    json_str_field(buf, "upstream", &ex.upstream);
    json_str_field(buf, "variant", &ex.variant);
    json_str_field(buf, "model", line.model);
    json_str_field(buf, "response_model", line.response_model);
    buf.extend_from_slice(b",\"status\":");
    integer(buf, ex.status);
    json_str_field(buf, "outcome", ex.outcome.as_str());
    json_str_field(buf, "error_class", line.error_class);
    json_str_field(buf, "upstream_error", line.upstream_error);
    buf.extend_from_slice(b",\"prompt_tokens\":");
    integer(buf, ex.prompt_tokens);
    buf.extend_from_slice(b",\"completion_tokens\":");
    integer(buf, ex.completion_tokens);
    buf.extend_from_slice(if line.estimated {
        b",\"tokens_estimated\":true"
    } else {
        b",\"tokens_estimated\":false"
    });
    json_f64_field(buf, "context_fill", line.context_fill);
    buf.extend_from_slice(b",\"fingerprint\":");
    fingerprint_text(buf, line.fingerprint);
    json_f64_field(buf, "latency_ms", line.latency_ms);
    json_f64_field(buf, "ttfb_ms", line.ttfb_ms);
    json_f64_field(buf, "ttft_ms", line.ttft_ms);
    buf.extend_from_slice(b",\"target\":\"");
    buf.extend_from_slice(TARGET.as_bytes());
    buf.extend_from_slice(b"\"}\n");
}
