use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard_core::{ErrorClass, TraceContext};
use switchyard_state::{Exchange, FillSource, Outcome};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::MakeWriter;

use super::{format, trace_event, Line};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

fn exchange() -> Exchange {
    Exchange {
        request_id: Arc::from("req-1"),
        route: Arc::from("chat"),
        upstream: Arc::from("sim"),
        variant: Arc::from("none"),
        model: Arc::from("gpt-4o"),
        status: 200,
        error: None,
        upstream_error_type: None,
        outcome: Outcome::Complete,
        duration: Duration::from_micros(1_234_567),
        ttfb: Some(Duration::from_nanos(870_001)),
        ttft: None,
        prompt_tokens: 412,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        completion_tokens: 37,
        cost_usd: 0.0014,
        context_fill: Some(412.0 / 128_000.0),
        fill_source: FillSource::Reported,
        streamed: false,
        requested_model: Some("gpt-4o".into()),
        response_model: Some("gpt-4o-2024-08-06".into()),
        finish_reason: Some("stop".into()),
        prompt_fingerprint: Some(0x0e9a_1041_b9d8_ec63),
        bodies: None,
        refused: false,
        gen_ai_operation: Some("chat"),
        gen_ai_system: "openai",
        trace: TraceContext {
            trace_id: 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
            span_id: 0x00f0_67aa_0ba9_02b7,
            parent_span_id: None,
            sampled: true,
        },
    }
}

/// Odd values: escapes, control characters, non-ASCII, a missing model, an error, and
/// floats that print in exponent form.
fn odd_exchange() -> Exchange {
    let mut ex = exchange();
    ex.request_id = Arc::from("a \"quoted\" id\\with é");
    ex.route = Arc::from("r\touté");
    ex.requested_model = None;
    ex.response_model = Some("mo\"del\n\u{7f}\u{1b}é\u{301}".into());
    ex.upstream_error_type = Some("rate_limit'error".into());
    ex.error = Some(ErrorClass::Status5xx);
    ex.outcome = Outcome::Broken;
    ex.context_fill = Some(1e-7);
    ex.duration = Duration::from_nanos(3);
    ex.ttft = Some(Duration::from_secs(123_456_789));
    ex.prompt_fingerprint = None;
    ex.trace.trace_id = 1;
    ex.trace.span_id = 0;
    ex
}

/// What tracing-subscriber prints for the event, without the timestamp.
fn traced(json: bool, ex: &Exchange, estimated: bool) -> String {
    let out = Captured::default();
    let builder = tracing_subscriber::fmt()
        .with_ansi(false)
        .without_time()
        .with_writer(out.clone());
    if json {
        let subscriber = builder.json().flatten_event(true).finish();
        tracing::subscriber::with_default(subscriber, || trace_event(ex, estimated));
    } else {
        let subscriber = builder.finish();
        tracing::subscriber::with_default(subscriber, || trace_event(ex, estimated));
    }
    let bytes = out.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

fn ours(json: bool, ex: &Exchange, estimated: bool) -> String {
    let now = Duration::new(1_764_840_486, 123_456_789);
    let line = Line::new(ex, estimated);
    let mut buf = Vec::new();
    if json {
        format::json(&mut buf, now, &line);
    } else {
        format::text(&mut buf, now, &line);
    }
    let text = String::from_utf8(buf).unwrap();
    let stamp = "2025-12-04T09:28:06.123456Z";
    if json {
        text.replacen(&format!("\"timestamp\":\"{stamp}\","), "", 1)
    } else {
        text.strip_prefix(stamp).unwrap()[1..].to_string()
    }
}

#[test]
fn lines_are_byte_identical_to_tracing_subscribers() {
    for ex in [exchange(), odd_exchange()] {
        for estimated in [false, true] {
            for json in [false, true] {
                assert_eq!(ours(json, &ex, estimated), traced(json, &ex, estimated));
            }
        }
    }
}

#[test]
fn non_finite_floats_print_as_tracing_prints_them() {
    let mut ex = exchange();
    ex.context_fill = Some(f64::NAN);
    for json in [false, true] {
        assert_eq!(ours(json, &ex, false), traced(json, &ex, false));
    }
}

fn stamp(since_epoch: Duration) -> String {
    let mut buf = Vec::new();
    format::timestamp(&mut buf, since_epoch);
    String::from_utf8(buf).unwrap()
}

#[test]
fn timestamps_are_rfc3339_utc_with_microseconds() {
    assert_eq!(stamp(Duration::ZERO), "1970-01-01T00:00:00.000000Z");
    assert_eq!(
        stamp(Duration::new(951_782_400, 0)),
        "2000-02-29T00:00:00.000000Z"
    );
    assert_eq!(
        stamp(Duration::new(951_868_799, 999_999_999)),
        "2000-02-29T23:59:59.999999Z"
    );
    assert_eq!(
        stamp(Duration::new(4_102_444_799, 5_000)),
        "2099-12-31T23:59:59.000005Z"
    );
    assert_eq!(
        stamp(Duration::new(4_107_542_400, 0)),
        "2100-03-01T00:00:00.000000Z"
    );
    assert_eq!(
        stamp(Duration::new(253_402_300_799, 0)),
        "9999-12-31T23:59:59.000000Z"
    );
}

#[test]
fn lines_of_one_second_share_its_text_and_the_next_second_gets_its_own() {
    let at = |secs: u64, micros: u32| stamp(Duration::new(secs, micros * 1_000));
    assert_eq!(at(951_868_799, 1), "2000-02-29T23:59:59.000001Z");
    assert_eq!(at(951_868_799, 2), "2000-02-29T23:59:59.000002Z");
    assert_eq!(at(951_868_800, 0), "2000-03-01T00:00:00.000000Z");
    assert_eq!(at(951_868_799, 3), "2000-02-29T23:59:59.000003Z");
    assert_eq!(at(253_402_300_800, 0), "+10000-01-01T00:00:00.000000Z");
    assert_eq!(at(253_402_300_800, 7), "+10000-01-01T00:00:00.000007Z");
}

#[test]
fn timestamps_match_tracing_subscribers_clock() {
    let before = switchyard_core::clock::system_now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let mut theirs = String::new();
    tracing_subscriber::fmt::time::SystemTime
        .format_time(&mut tracing_subscriber::fmt::format::Writer::new(
            &mut theirs,
        ))
        .unwrap();
    let after = switchyard_core::clock::system_now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let (low, high) = (stamp(before), stamp(after));
    assert_eq!(theirs.len(), low.len());
    assert!(
        low <= theirs && theirs <= high,
        "{low} <= {theirs} <= {high}"
    );
}

/// Floats of every magnitude, sign and shape, and the millisecond values a line carries.
fn floats() -> Vec<f64> {
    let mut all = vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.1,
        0.5,
        1e-4,
        9.999e-5,
        1e-5,
        1e16,
        9.999_999_999_999_998e15,
        1e15,
        123.456,
        1e300,
        5e-324,
        f64::MAX,
        f64::MIN_POSITIVE,
        f64::EPSILON,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        0.3,
        2.0 / 3.0,
    ];
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..20_000 {
        all.push(f64::from_bits(rng.u64(..)));
        all.push(rng.f64() * 10f64.powi(rng.i32(-6..18)));
        all.push(Duration::from_nanos(rng.u64(..10_000_000_000)).as_secs_f64() * 1000.0);
        all.push(rng.u64(..1_000_000) as f64 / rng.u64(1..1_000_000) as f64);
    }
    all
}

#[test]
fn floats_print_as_debug_and_serde_json_print_them() {
    let mut ties = 0;
    for value in floats() {
        let mut text = Vec::new();
        format::debug_f64(&mut text, value);
        let (ours, debug) = (String::from_utf8(text).unwrap(), format!("{value:?}"));
        if ours != debug {
            // An exact tie between two shortest candidates: same length and notation, the
            // last digit one apart, and the text reads back as the same value.
            let (a, b) = (ours.as_bytes(), debug.as_bytes());
            let last = a.len() - 1;
            assert_eq!(a.len(), b.len(), "{ours} vs {debug}");
            assert_eq!(a[..last], b[..last], "{ours} vs {debug}");
            assert_eq!(a[last].abs_diff(b[last]), 1, "{ours} vs {debug}");
            assert_eq!(ours.parse::<f64>().unwrap().to_bits(), value.to_bits());
            ties += 1;
        }
        let mut json = Vec::new();
        format::json_f64(&mut json, value);
        let expected = serde_json::to_string(&value).unwrap();
        assert_eq!(String::from_utf8(json).unwrap(), expected, "{value:e}");
    }
    assert!(ties < 400, "{ties} ties in 80,000 floats");
}
