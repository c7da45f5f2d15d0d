//! W3C Trace Context (`traceparent`): parsed strictly, and formatted once per hop.
//!
//! Ids are numbers, not strings: a request carries 32 bytes of trace state, and the only
//! text made is the `traceparent` value sent upstream.

use std::fmt;

/// The length of a version-00 `traceparent`: `00-` 32 hex `-` 16 hex `-` 2 hex.
pub const TRACEPARENT_LEN: usize = 55;

/// The longest `tracestate` passed on, in bytes: W3C asks every hop to propagate at least 512
/// characters (32 members); a longer one is dropped rather than cut in the middle of a member.
pub const MAX_TRACESTATE: usize = 512;

/// The `sampled` bit of the trace flags.
const SAMPLED: u8 = 0x01;

/// A valid `traceparent` from the client: the caller's trace and span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: u128,
    pub span_id: u64,
    pub flags: u8,
}

impl Parent {
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }
}

/// The gateway's span for one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TraceContext {
    pub trace_id: u128,
    /// The gateway's own span: the parent of the upstream's.
    pub span_id: u64,
    /// The client's span, when it sent a valid `traceparent`.
    pub parent_span_id: Option<u64>,
    /// Whether the span is recorded (and exported): the client's decision when it made one,
    /// else the sampling ratio's.
    pub sampled: bool,
}

impl TraceContext {
    /// The gateway's hop: a child of `parent` when the client sent one, else the root of the
    /// new trace `new_trace_id`. `span_id` and `new_trace_id` must be non-zero.
    pub fn hop(parent: Option<Parent>, span_id: u64, new_trace_id: u128, sample: bool) -> Self {
        match parent {
            Some(p) => TraceContext {
                trace_id: p.trace_id,
                span_id,
                parent_span_id: Some(p.span_id),
                sampled: p.sampled(),
            },
            None => TraceContext {
                trace_id: new_trace_id,
                span_id,
                parent_span_id: None,
                sampled: sample,
            },
        }
    }

    /// The `traceparent` value the upstream receives: this trace, the gateway's span.
    pub fn traceparent(&self) -> [u8; TRACEPARENT_LEN] {
        let mut out = [b'-'; TRACEPARENT_LEN];
        out[0] = b'0';
        out[1] = b'0';
        hex_into(&mut out[3..35], self.trace_id);
        hex_into(&mut out[36..52], u128::from(self.span_id));
        hex_into(
            &mut out[53..55],
            u128::from(if self.sampled { SAMPLED } else { 0 }),
        );
        out
    }

    /// The trace id as 32 lowercase hex digits, formatted when displayed.
    pub fn trace_hex(&self) -> TraceHex {
        TraceHex(self.trace_id)
    }

    /// The gateway's span id as 16 lowercase hex digits, formatted when displayed.
    pub fn span_hex(&self) -> SpanHex {
        SpanHex(self.span_id)
    }
}

/// Displays a trace id without allocating.
#[derive(Debug, Clone, Copy)]
pub struct TraceHex(pub u128);

impl fmt::Display for TraceHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// Displays a span id without allocating.
#[derive(Debug, Clone, Copy)]
pub struct SpanHex(pub u64);

impl fmt::Display for SpanHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Writes the low `out.len() * 4` bits of `value` as lowercase hex, most significant first.
fn hex_into(out: &mut [u8], mut value: u128) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(value & 0xf) as usize];
        value >>= 4;
    }
}

/// Lowercase hex only, as W3C requires; `None` on anything else.
fn parse_hex(text: &[u8]) -> Option<u128> {
    let mut value = 0u128;
    for &c in text {
        let digit = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        value = (value << 4) | u128::from(digit);
    }
    Some(value)
}

/// Parses a `traceparent` header value by the W3C rules: version 00 is exactly 55
/// characters; a later version (not `ff`) may add fields after a `-`, which are ignored; ids
/// are lowercase hex and not all zeros. Anything else is `None`: the caller starts a new trace.
pub fn parse_traceparent(value: &[u8]) -> Option<Parent> {
    if value.len() < TRACEPARENT_LEN {
        return None;
    }
    let version = parse_hex(value.get(0..2)?)?;
    match version {
        0 if value.len() != TRACEPARENT_LEN => return None,
        0xff => return None,
        _ if value.len() > TRACEPARENT_LEN && value[TRACEPARENT_LEN] != b'-' => return None,
        _ => {}
    }
    if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let trace_id = parse_hex(&value[3..35])?;
    let span_id = u64::try_from(parse_hex(&value[36..52])?).ok()?;
    let flags = u8::try_from(parse_hex(&value[53..55])?).ok()?;
    if trace_id == 0 || span_id == 0 {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id,
        flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_w3c_example_and_formats_it_back() {
        let parent = parse_traceparent(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(parent.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(parent.span_id, 0x00f067aa0ba902b7);
        assert!(parent.sampled());
        let hop = TraceContext::hop(Some(parent), 0x1234, 99, false);
        assert_eq!(hop.parent_span_id, Some(0x00f067aa0ba902b7));
        assert!(hop.sampled, "the client's sampled flag is honoured");
        assert_eq!(
            &hop.traceparent()[..],
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000001234-01"
        );
        assert_eq!(
            hop.trace_hex().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(hop.span_hex().to_string(), "0000000000001234");
    }

    #[test]
    fn rejects_what_w3c_rejects() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            assert_eq!(parse_traceparent(bad.as_bytes()), None, "{bad:?} accepted");
        }
    }

    #[test]
    fn later_versions_are_read_as_00() {
        let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what-comes";
        let parent = parse_traceparent(later.as_bytes()).unwrap();
        assert_eq!(parent.span_id, 0x00f067aa0ba902b7);
        assert!(!parent.sampled());
    }

    #[test]
    fn a_new_trace_takes_the_sampling_decision() {
        let root = TraceContext::hop(None, 7, 0xabc, true);
        assert_eq!(root.parent_span_id, None);
        assert_eq!(root.trace_id, 0xabc);
        assert_eq!(
            &root.traceparent()[..],
            b"00-00000000000000000000000000000abc-0000000000000007-01"
        );
        let unsampled = TraceContext::hop(None, 7, 0xabc, false);
        assert!(unsampled.traceparent().ends_with(b"-00"));
    }
}
