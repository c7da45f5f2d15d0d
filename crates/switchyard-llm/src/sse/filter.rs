//! Cheap byte checks that let the bulk of content deltas skip JSON parsing, in one pass.
//!
//! Every OpenAI key looked for opens with a quote, so one scan for quotes, eight bytes at a
//! time, finds each place one could start: the same occurrences a substring search per key
//! would find, at the cost of one look at the byte after each quote.

use memchr::memmem::Finder;
use std::sync::LazyLock;

use crate::dialect::Dialect;

/// A quoted key cannot occur unescaped inside a JSON string, so `"usage"` is only ever a
/// key or a bare string value; false positives merely cost a parse.
pub(super) fn worth_parsing(dialect: Dialect, data: &[u8], need_model: bool) -> bool {
    match dialect {
        Dialect::Anthropic => {
            let keys = quoted_keys(data);
            (need_model && keys & MODEL != 0) || keys & ERROR != 0 || has_message_event(data)
        }
        // Chat chunks carry `"finish_reason":null` and often `"usage":null`.
        Dialect::OpenAi => {
            let keys = quoted_keys(data);
            let wanted = USAGE_VALUE | FINISH_VALUE | ERROR | COMPLETED | INCOMPLETE;
            (need_model && keys & MODEL != 0) || keys & wanted != 0
        }
        // Never asked in practice: opaque streams are not interpreted.
        Dialect::Opaque => need_model && quoted_keys(data) & MODEL != 0,
    }
}

/// `"model"` occurs.
const MODEL: u8 = 1;
/// `"usage"` occurs as a key whose value is not `null`.
const USAGE_VALUE: u8 = 2;
/// `"finish_reason"` occurs as a key whose value is not `null`.
const FINISH_VALUE: u8 = 4;
/// `"error"` occurs.
const ERROR: u8 = 8;
/// `"response.completed"` occurs.
const COMPLETED: u8 = 16;
/// `"response.incomplete"` occurs.
const INCOMPLETE: u8 = 32;

const USAGE_KEY: &[u8] = b"\"usage\"";
const FINISH_REASON_KEY: &[u8] = b"\"finish_reason\"";

/// Which of the keys above occur in `data`.
fn quoted_keys(data: &[u8]) -> u8 {
    let mut found = Found::default();
    let mut words = data.chunks_exact(8);
    let mut base = 0;
    for word in words.by_ref() {
        let mut flags = quotes(word);
        while flags != 0 {
            found.at(data, base + (flags.trailing_zeros() / 8) as usize);
            flags &= flags - 1;
        }
        base += 8;
    }
    for (i, &byte) in words.remainder().iter().enumerate() {
        if byte == b'"' {
            found.at(data, base + i);
        }
    }
    found.keys
}

/// The high bit of each of eight bytes that is a quote; exact in every lane.
fn quotes(word: &[u8]) -> u64 {
    const LOW: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(word);
    let x = u64::from_le_bytes(bytes) ^ 0x2222_2222_2222_2222;
    // A lane is zero (a quote) when neither its low seven bits nor its high bit are set.
    !(((x & LOW).wrapping_add(LOW)) | x) & !LOW
}

/// The keys found so far, and where a substring search for the keys whose value is checked
/// would resume: such a search skips occurrences overlapping the one before.
#[derive(Default)]
struct Found {
    keys: u8,
    usage_from: usize,
    finish_from: usize,
}

impl Found {
    /// Looks at the quote at `at`.
    fn at(&mut self, data: &[u8], at: usize) {
        let rest = &data[at..];
        let Some(&next) = rest.get(1) else {
            return;
        };
        match next {
            b'm' if rest.starts_with(b"\"model\"") => self.keys |= MODEL,
            b'e' if rest.starts_with(b"\"error\"") => self.keys |= ERROR,
            b'r' if rest.starts_with(b"\"response.completed\"") => self.keys |= COMPLETED,
            b'r' if rest.starts_with(b"\"response.incomplete\"") => self.keys |= INCOMPLETE,
            b'u' if at >= self.usage_from && rest.starts_with(USAGE_KEY) => {
                self.usage_from = at + USAGE_KEY.len();
                if has_value(&rest[USAGE_KEY.len()..]) {
                    self.keys |= USAGE_VALUE;
                }
            }
            b'f' if at >= self.finish_from && rest.starts_with(FINISH_REASON_KEY) => {
                self.finish_from = at + FINISH_REASON_KEY.len();
                if has_value(&rest[FINISH_REASON_KEY.len()..]) {
                    self.keys |= FINISH_VALUE;
                }
            }
            _ => {}
        }
    }
}

/// Whether what follows a key is a colon and a value that is not `null`.
fn has_value(after_key: &[u8]) -> bool {
    match after_key.trim_ascii_start().strip_prefix(b":") {
        Some(value) => {
            let value = value.trim_ascii_start();
            !value.is_empty() && !value.starts_with(b"null")
        }
        None => false,
    }
}

/// `message_start`, `message_delta` or `message_stop` occurs, quoted or not.
fn has_message_event(data: &[u8]) -> bool {
    static MESSAGE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"message_"));
    let mut from = 0;
    while let Some(at) = data.get(from..).and_then(|rest| MESSAGE.find(rest)) {
        let after = &data[from + at + b"message_".len()..];
        if after.starts_with(b"start") || after.starts_with(b"delta") || after.starts_with(b"stop")
        {
            return true;
        }
        from += at + 1;
    }
    false
}

#[cfg(test)]
mod tests;
