//! Gateway-made error bodies shaped like each dialect's own errors, so client SDKs parse them.

use bytes::Bytes;
use serde::Serialize;

use crate::dialect::Dialect;

#[derive(Serialize)]
struct OpenAiBody<'a> {
    error: OpenAiError<'a>,
}

#[derive(Serialize)]
struct OpenAiError<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: &'a str,
}

#[derive(Serialize)]
struct OpaqueBody<'a> {
    error: OpaqueError<'a>,
}

#[derive(Serialize)]
struct OpaqueError<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    code: &'a str,
}

#[derive(Serialize)]
struct AnthropicBody<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    error: AnthropicError<'a>,
}

#[derive(Serialize)]
struct AnthropicError<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

/// The error `type` a dialect's SDK expects for an HTTP status.
pub fn error_kind(dialect: Dialect, status: u16) -> &'static str {
    match dialect {
        Dialect::Anthropic => match status {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 | 529 => "overloaded_error",
            400..=499 => "invalid_request_error",
            _ => "api_error",
        },
        Dialect::OpenAi | Dialect::Opaque => match status {
            429 => "rate_limit_error",
            400..=499 => "invalid_request_error",
            _ => "server_error",
        },
    }
}

/// An error body made by the gateway, shaped for the client's SDK.
///
/// OpenAI: `{"error":{"message","type","param":null,"code"}}`; Anthropic:
/// `{"type":"error","error":{"type","message"}}`; Opaque:
/// `{"error":{"message","type","code"}}`. `code` is a short machine string such as
/// "upstream_timeout"; the Anthropic shape has no place for it.
pub fn error_body(dialect: Dialect, status: u16, code: &str, message: &str) -> Bytes {
    let kind = error_kind(dialect, status);
    let json = match dialect {
        Dialect::OpenAi => serde_json::to_vec(&OpenAiBody {
            error: OpenAiError {
                message,
                kind,
                param: None,
                code,
            },
        }),
        Dialect::Anthropic => serde_json::to_vec(&AnthropicBody {
            kind: "error",
            error: AnthropicError { kind, message },
        }),
        Dialect::Opaque => serde_json::to_vec(&OpaqueBody {
            error: OpaqueError {
                message,
                kind,
                code,
            },
        }),
    };
    // Serializing borrowed strings into a Vec cannot fail; keep a valid body regardless.
    json.map(Bytes::from)
        .unwrap_or_else(|_| Bytes::from_static(br#"{"error":{"message":"gateway error"}}"#))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_per_dialect() {
        let body = error_body(
            Dialect::OpenAi,
            504,
            "upstream_timeout",
            "upstream \"x\" timed out",
        );
        let want = r#"{"error":{"message":"upstream \"x\" timed out","type":"server_error","param":null,"code":"upstream_timeout"}}"#;
        assert_eq!(body, want.as_bytes());
        let body = error_body(Dialect::Anthropic, 529, "no_capacity", "busy");
        let want = r#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#;
        assert_eq!(body, want.as_bytes());
        let body = error_body(Dialect::Opaque, 429, "rate_limited", "slow down");
        let want =
            r#"{"error":{"message":"slow down","type":"rate_limit_error","code":"rate_limited"}}"#;
        assert_eq!(body, want.as_bytes());
    }

    #[test]
    fn kinds_by_status() {
        let anthropic = [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (502, "api_error"),
            (503, "overloaded_error"),
            (504, "api_error"),
            (529, "overloaded_error"),
        ];
        for (status, kind) in anthropic {
            assert_eq!(error_kind(Dialect::Anthropic, status), kind, "{status}");
        }
        let openai = [
            (400, "invalid_request_error"),
            (413, "invalid_request_error"),
            (429, "rate_limit_error"),
            (502, "server_error"),
            (503, "server_error"),
        ];
        for (status, kind) in openai {
            assert_eq!(error_kind(Dialect::OpenAi, status), kind, "{status}");
        }
    }
}
