//! Cheap byte checks that let the bulk of content deltas skip JSON parsing, in one pass.
//!
//! Every OpenAI key looked for opens with a quote and a letter in `e..=u`, so one scan for
//! such pairs, sixteen bytes a turn, finds each place one could start: the same occurrences
//! a substring search per key would find, each then compared with the keys.

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
    let mut base = 0;
    // Sixteen bytes a turn, each word paired with the word one byte later, whose lanes hold
    // the byte after each quote.
    while let Some(block) = data.get(base..base + 17) {
        let word = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&block[at..at + 8]);
            u64::from_le_bytes(bytes)
        };
        let first = quotes(word(0)) & letters(word(1));
        let second = quotes(word(8)) & letters(word(9));
        if first | second != 0 {
            found.flagged(data, base, first);
            found.flagged(data, base + 8, second);
        }
        base += 16;
    }
    for (i, &byte) in data.get(base..).unwrap_or_default().iter().enumerate() {
        if byte == b'"' {
            found.candidate(data, base + i);
        }
    }
    found.keys
}

const LOW: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const ONES: u64 = 0x0101_0101_0101_0101;

/// The high bit of each of eight bytes that is a quote; exact in every lane.
fn quotes(word: u64) -> u64 {
    let x = word ^ (ONES * u64::from(b'"'));
    // A lane is zero (a quote) when neither its low seven bits nor its high bit are set.
    !(((x & LOW).wrapping_add(LOW)) | x) & !LOW
}

/// The high bit of each of eight bytes whose low seven bits are in `e..=u`, a range holding
/// the letter after the quote of every key looked for. Lanes never borrow from each other.
fn letters(word: u64) -> u64 {
    let at_least_e = (word | !LOW).wrapping_sub(ONES * u64::from(b'e'));
    let at_most_u = (ONES * (0x80 | u64::from(b'u'))).wrapping_sub(word & LOW);
    at_least_e & at_most_u & !LOW
}

/// The letters a key looked for starts with, after its quote.
static STARTS: [bool; 256] = {
    let mut table = [false; 256];
    let letters = b"meruf";
    let mut i = 0;
    while i < letters.len() {
        table[letters[i] as usize] = true;
        i += 1;
    }
    table
};

/// The keys found so far, and where a substring search for the keys whose value is checked
/// would resume: such a search skips occurrences overlapping the one before.
#[derive(Default)]
struct Found {
    keys: u8,
    usage_from: usize,
    finish_from: usize,
}

impl Found {
    /// Looks at each quote flagged (a high bit per lane) in the word at `base`.
    fn flagged(&mut self, data: &[u8], base: usize, mut flags: u64) {
        while flags != 0 {
            self.candidate(data, base + (flags.trailing_zeros() / 8) as usize);
            flags &= flags - 1;
        }
    }

    /// Looks at the quote at `at` if a key looked for could start there.
    fn candidate(&mut self, data: &[u8], at: usize) {
        if data.get(at + 1).is_some_and(|&b| STARTS[usize::from(b)]) {
            self.at(data, at);
        }
    }

    /// Looks at the quote at `at`.
    #[cold]
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
