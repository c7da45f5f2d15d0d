//! Trace context at the proxy boundary: the client's `traceparent` read once per request, and
//! the gateway's hop written once into the upstream request.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use switchyard_core::trace::{self, MAX_TRACESTATE};
use switchyard_core::TraceContext;

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The gateway's hop of the request's trace: a child of the client's span when it sent one
/// valid `traceparent` (its sampled flag decides), else a new trace sampled at `ratio`.
pub fn hop(headers: &HeaderMap, ratio: f64) -> TraceContext {
    let mut values = headers.get_all(TRACEPARENT).iter();
    // Two traceparent headers cannot be told apart: W3C treats that as no parent.
    let parent = match (values.next(), values.next()) {
        (Some(value), None) => trace::parse_traceparent(value.as_bytes()),
        _ => None,
    };
    let span_id = fastrand::u64(1..);
    match parent {
        Some(parent) => TraceContext::hop(Some(parent), span_id, 0, false),
        None => {
            let sampled = ratio >= 1.0 || (ratio > 0.0 && fastrand::f64() < ratio);
            TraceContext::hop(None, span_id, fastrand::u128(1..), sampled)
        }
    }
}

/// The upstream request's trace headers: `traceparent` names the gateway's span; the client's
/// `tracestate` goes on as it came when it belongs to the client's trace and is not too long,
/// and is dropped when the gateway started a new trace.
pub fn propagate(headers: &mut HeaderMap, hop: &TraceContext) {
    let keep_state = hop.parent_span_id.is_some()
        && headers
            .get_all(TRACESTATE)
            .iter()
            .map(|v| v.len() + 1)
            .sum::<usize>()
            <= MAX_TRACESTATE + 1;
    if !keep_state {
        headers.remove(TRACESTATE);
    }
    if let Ok(value) = HeaderValue::from_bytes(&hop.traceparent()) {
        headers.insert(TRACEPARENT, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_parent_is_continued_and_its_state_kept() {
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, CLIENT.parse().unwrap());
        h.insert(TRACESTATE, "congo=t61rcWkgMzE".parse().unwrap());
        let hop = hop(&h, 0.0);
        assert_eq!(hop.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(hop.parent_span_id, Some(0x00f067aa0ba902b7));
        assert!(hop.sampled, "the client's flag wins over the ratio");
        propagate(&mut h, &hop);
        let sent = h[TRACEPARENT].to_str().unwrap();
        assert!(sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert_ne!(&sent[36..52], "00f067aa0ba902b7");
        assert_eq!(&sent[36..52], format!("{:016x}", hop.span_id));
        assert_eq!(h[TRACESTATE], "congo=t61rcWkgMzE");
    }

    #[test]
    fn an_invalid_or_doubled_parent_starts_a_new_trace_without_its_state() {
        for values in [vec!["00-zz-00f067aa0ba902b7-01"], vec![CLIENT, CLIENT]] {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(TRACEPARENT, v.parse().unwrap());
            }
            h.insert(TRACESTATE, "congo=t61rcWkgMzE".parse().unwrap());
            let hop = hop(&h, 1.0);
            assert_eq!(hop.parent_span_id, None);
            assert_ne!(hop.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
            assert!(hop.sampled);
            propagate(&mut h, &hop);
            assert_eq!(h.get_all(TRACEPARENT).iter().count(), 1);
            assert!(h[TRACEPARENT].to_str().unwrap().ends_with("-01"));
            assert!(h.get(TRACESTATE).is_none());
        }
    }

    #[test]
    fn a_ratio_of_zero_samples_no_new_trace_and_long_state_is_dropped() {
        let hop0 = hop(&HeaderMap::new(), 0.0);
        assert!(!hop0.sampled);
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, CLIENT.parse().unwrap());
        h.insert(TRACESTATE, "a=".repeat(300).parse().unwrap());
        let hop = hop(&h, 1.0);
        propagate(&mut h, &hop);
        assert!(h.get(TRACESTATE).is_none());
    }
}
