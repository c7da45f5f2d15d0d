//! Pure LLM protocol code: dialects, request inspection, SSE usage scanning, usage extraction, error bodies.

mod cursor;
mod dialect;
mod error_body;
mod fallback;
mod inspect;
mod json;
mod needles;
mod output;
mod sse;
mod text;
mod usage;

pub use dialect::{classify, Dialect, DialectSetting, Operation, UnknownDialect};
pub use error_body::{error_body, error_kind};
pub use fallback::{completion as fallback_completion, FallbackAnswer, FALLBACK_MODEL};
pub use inspect::{
    inspect, inspect_with_serde, scanner_reads, Inspection, AUDIO_TOKENS, DOCUMENT_TOKENS,
    IMAGE_TOKENS,
};
pub use sse::{SseScanner, MAX_LINE_BYTES};
pub use text::{
    estimate_tokens_for_text, fingerprint_text, BYTES_PER_TOKEN, MESSAGE_OVERHEAD_TOKENS,
};
pub use usage::{usage_from_json, usage_from_json_with_serde, usage_scanner_reads, Usage};
