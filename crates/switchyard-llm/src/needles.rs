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
    DELTA_KEY = b"\"delta\"";
    TEXT_KEY = b"\"text\"";
    CONTENT_BLOCK_DELTA = b"\"content_block_delta\"";
}

/// Whether `finder`'s needle occurs in `data`.
pub(crate) fn has(finder: &Finder<'_>, data: &[u8]) -> bool {
    finder.find(data).is_some()
}
