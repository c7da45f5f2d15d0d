//! Facts about one request, learnt along the path and read by every later layer.

use std::net::SocketAddr;
use std::sync::Arc;

/// The request id: kept from the client's `x-request-id` or made here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub Arc<str>);

impl RequestId {
    /// A fresh id: 128 random bits as 32 hex digits.
    pub fn generate(random: u128) -> Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 32];
        for (i, digit) in hex.iter_mut().enumerate() {
            *digit = DIGITS[((random >> (4 * (31 - i))) & 0xf) as usize];
        }
        // Hex digits are ASCII.
        RequestId(Arc::from(std::str::from_utf8(&hex).unwrap_or_default()))
    }
}

/// Why an upstream exchange failed, as a low-cardinality label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The upstream could not be dialled.
    Connect,
    /// No response headers within the upstream timeout, or a stream fell idle.
    Timeout,
    /// The connection broke after the response started.
    Reset,
    /// The upstream answered 4xx.
    Status4xx,
    /// The upstream answered 5xx.
    Status5xx,
}

impl ErrorClass {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Connect => "connect",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Reset => "reset",
            ErrorClass::Status4xx => "status_4xx",
            ErrorClass::Status5xx => "status_5xx",
        }
    }

    /// The class of an upstream status, if it is an error.
    pub fn of_status(status: u16) -> Option<ErrorClass> {
        match status {
            400..=499 => Some(ErrorClass::Status4xx),
            500..=599 => Some(ErrorClass::Status5xx),
            _ => None,
        }
    }
}

/// What the gateway knows about a request; set by inspect and route, read by meter and forward.
#[derive(Debug, Clone)]
pub struct RequestFacts {
    pub request_id: RequestId,
    pub client: SocketAddr,
    pub route: Arc<str>,
    pub upstream: Arc<str>,
    pub variant: Option<Arc<str>>,
    /// `openai`, `anthropic` or `opaque`.
    pub dialect: &'static str,
    /// The model as the client asked for it.
    pub model: Option<String>,
    /// The model label: a configured model's canonical name, or `other`.
    pub model_label: Arc<str>,
    pub stream: bool,
    pub user_key: Option<String>,
    pub prompt_fingerprint: Option<u64>,
    pub prompt_tokens_estimate: u64,
    /// The completion cap the request sets (`max_tokens` and its other names), if any.
    pub max_tokens: Option<u64>,
    /// Estimated prompt tokens over the model's context window, when the model is known.
    pub context_fill: Option<f64>,
    /// The body was meant to be inspected but did not parse.
    pub unparsed: bool,
    /// The GenAI semantic conventions' `gen_ai.operation.name` (`chat`, `text_completion`,
    /// `embeddings`); `None` for requests that are not LLM operations.
    pub gen_ai_operation: Option<&'static str>,
    /// The gateway's span of this request's trace.
    pub trace: crate::TraceContext,
}

#[cfg(test)]
mod tests {
    use super::RequestId;

    #[test]
    fn generated_ids_are_32_lowercase_hex_digits_of_the_random_bits() {
        for random in [
            0,
            1,
            0xabc,
            u128::MAX,
            0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
        ] {
            assert_eq!(&*RequestId::generate(random).0, format!("{random:032x}"));
        }
    }
}
