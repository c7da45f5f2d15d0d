//! OTLP trace export requests in protobuf, encoded by hand: the handful of messages one span
//! per exchange needs (`opentelemetry/proto/collector/trace/v1/trace_service.proto` and the
//! `trace`, `resource` and `common` messages it uses), without a protobuf toolchain.

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// `Span.SpanKind`: the gateway calls the model on the client's behalf.
pub const SPAN_KIND_CLIENT: u64 = 3;
/// `Status.StatusCode`.
pub const STATUS_UNSET: u64 = 0;
pub const STATUS_ERROR: u64 = 2;
/// `SpanFlags`: the W3C sampled bit, and whether the parent's remoteness is known and true.
pub const FLAG_SAMPLED: u32 = 0x01;
pub const FLAG_HAS_IS_REMOTE: u32 = 0x100;
pub const FLAG_IS_REMOTE: u32 = 0x200;

/// An attribute value (`AnyValue`).
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Str(&'a str),
    Int(i64),
    Double(f64),
    StrArray(&'a [&'a str]),
}

/// One span, borrowed from what the exporter holds.
#[derive(Debug)]
pub struct Span<'a> {
    pub trace_id: u128,
    pub span_id: u64,
    pub parent_span_id: Option<u64>,
    pub flags: u32,
    pub name: &'a str,
    pub kind: u64,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: &'a [(&'a str, Value<'a>)],
    pub status_code: u64,
    pub status_message: &'a str,
}

/// Who produced the spans: `service.name` and friends, and the instrumentation scope.
#[derive(Debug)]
pub struct Origin<'a> {
    pub resource: &'a [(&'a str, Value<'a>)],
    pub scope_name: &'a str,
    pub scope_version: &'a str,
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn bytes(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    key(out, field, LEN);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

fn uint(out: &mut Vec<u8>, field: u32, value: u64) {
    key(out, field, VARINT);
    varint(out, value);
}

fn fixed64(out: &mut Vec<u8>, field: u32, value: u64) {
    key(out, field, FIXED64);
    out.extend_from_slice(&value.to_le_bytes());
}

fn fixed32(out: &mut Vec<u8>, field: u32, value: u32) {
    key(out, field, FIXED32);
    out.extend_from_slice(&value.to_le_bytes());
}

/// A nested message: encoded apart, then written with its length.
fn message(out: &mut Vec<u8>, field: u32, encode: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    encode(&mut inner);
    bytes(out, field, &inner);
}

/// `AnyValue`.
fn any_value(out: &mut Vec<u8>, value: &Value<'_>) {
    match value {
        Value::Str(s) => bytes(out, 1, s.as_bytes()),
        // int64 as a varint: two's complement, ten bytes for negatives.
        Value::Int(i) => uint(out, 3, *i as u64),
        Value::Double(d) => fixed64(out, 4, d.to_bits()),
        Value::StrArray(items) => message(out, 5, |array| {
            for item in *items {
                message(array, 1, |v| bytes(v, 1, item.as_bytes()));
            }
        }),
    }
}

/// `repeated KeyValue` at `field`.
fn attributes(out: &mut Vec<u8>, field: u32, list: &[(&str, Value<'_>)]) {
    for (name, value) in list {
        message(out, field, |kv| {
            bytes(kv, 1, name.as_bytes());
            message(kv, 2, |v| any_value(v, value));
        });
    }
}

fn span(out: &mut Vec<u8>, span: &Span<'_>) {
    bytes(out, 1, &span.trace_id.to_be_bytes());
    bytes(out, 2, &span.span_id.to_be_bytes());
    if let Some(parent) = span.parent_span_id {
        bytes(out, 4, &parent.to_be_bytes());
    }
    bytes(out, 5, span.name.as_bytes());
    uint(out, 6, span.kind);
    fixed64(out, 7, span.start_unix_nanos);
    fixed64(out, 8, span.end_unix_nanos);
    attributes(out, 9, span.attributes);
    message(out, 15, |status| {
        if !span.status_message.is_empty() {
            bytes(status, 2, span.status_message.as_bytes());
        }
        if span.status_code != STATUS_UNSET {
            uint(status, 3, span.status_code);
        }
    });
    fixed32(out, 16, span.flags);
}

/// An `ExportTraceServiceRequest` holding `spans`, all from `origin`.
pub fn export_request(origin: &Origin<'_>, spans: &[Span<'_>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + spans.len() * 512);
    message(&mut out, 1, |resource_spans| {
        message(resource_spans, 1, |resource| {
            attributes(resource, 1, origin.resource);
        });
        message(resource_spans, 2, |scope_spans| {
            message(scope_spans, 1, |scope| {
                bytes(scope, 1, origin.scope_name.as_bytes());
                bytes(scope, 2, origin.scope_version.as_bytes());
            });
            for s in spans {
                message(scope_spans, 2, |out| span(out, s));
            }
        });
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_keys_follow_the_wire_format() {
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        out.clear();
        uint(&mut out, 6, 3);
        assert_eq!(out, [0x30, 0x03]);
        out.clear();
        any_value(&mut out, &Value::Int(-1));
        assert_eq!(out.len(), 11, "a negative int64 takes ten varint bytes");
    }

    #[test]
    fn a_span_encodes_ids_big_endian_and_times_as_fixed64() {
        let attrs = [("gen_ai.operation.name", Value::Str("chat"))];
        let s = Span {
            trace_id: 0x0102,
            span_id: 0x0304,
            parent_span_id: None,
            flags: FLAG_SAMPLED,
            name: "chat",
            kind: SPAN_KIND_CLIENT,
            start_unix_nanos: 1,
            end_unix_nanos: 2,
            attributes: &attrs,
            status_code: STATUS_UNSET,
            status_message: "",
        };
        let mut out = Vec::new();
        span(&mut out, &s);
        // trace_id: key 0x0a, length 16, fourteen zeros then 01 02.
        assert_eq!(out[..2], [0x0a, 16]);
        assert_eq!(out[16..18], [0x01, 0x02]);
        assert_eq!(out[18..20], [0x12, 8]);
        assert_eq!(out[26..28], [0x03, 0x04]);
    }
}
