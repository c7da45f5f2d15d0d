//! Substring finders built once: `memmem::find` builds its searcher on every call, which
//! costs more than the search itself on the short event payloads a stream carries.

use std::sync::LazyLock;

use memchr::memmem::Finder;

macro_rules! needles {
    ($($name:ident = $text:literal;)*) => {
        $(pub(crate) static $name: LazyLock<Finder<'static>> =
            LazyLock::new(|| Finder::new($text));)*
    };
}

needles! {
    MODEL_KEY = b"\"model\"";
    USAGE_KEY = b"\"usage\"";
    FINISH_REASON_KEY = b"\"finish_reason\"";
    ERROR_KEY = b"\"error\"";
    DELTA_KEY = b"\"delta\"";
    TEXT_KEY = b"\"text\"";
    MESSAGE_START = b"message_start";
    MESSAGE_DELTA = b"message_delta";
    MESSAGE_STOP = b"message_stop";
    RESPONSE_COMPLETED = b"\"response.completed\"";
    RESPONSE_INCOMPLETE = b"\"response.incomplete\"";
    CONTENT_BLOCK_DELTA = b"\"content_block_delta\"";
}

/// Whether `finder`'s needle occurs in `data`.
pub(crate) fn has(finder: &Finder<'_>, data: &[u8]) -> bool {
    finder.find(data).is_some()
}
