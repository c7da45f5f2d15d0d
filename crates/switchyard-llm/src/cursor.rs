//! A validating cursor over JSON text, the core of the single-pass scanners of request
//! bodies (`inspect/scan.rs`) and response usage (`usage/scan.rs`).
//!
//! It accepts a subset of what serde_json accepts and reads it the same way; every method
//! returns `None` for anything it does not handle, and the scanners then leave the verdict to
//! serde.

use std::borrow::Cow;

use crate::json::Str;

/// Containers nested deeper than this are left to serde (whose own limit is 128).
pub(crate) const MAX_NESTING: u32 = 64;

pub(crate) struct Cursor<'a> {
    pub(crate) text: &'a str,
    pub(crate) pos: usize,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Flags (the high bit of each byte) the quotes, backslashes and control characters among
/// eight bytes: the bytes a string scan must stop at. The lowest flag is always exact (a false
/// flag can only sit above a true one), so it gives the first such byte.
fn special(word: u64) -> u64 {
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    zero(word ^ (ONES * u64::from(b'"'))) | zero(word ^ (ONES * u64::from(b'\\'))) | below_space
}

/// The words of a string tested inline, where most keys and enum values end; testing more
/// inline made the callers larger and slower.
const WORDS: usize = 1;

/// Eight bytes as a little-endian word.
#[inline]
fn word(chunk: &[u8]) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(chunk);
    u64::from_le_bytes(bytes)
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Cursor { text, pos: 0 }
    }

    /// Whether only whitespace is left, as serde requires after the value.
    pub(crate) fn at_end(&mut self) -> bool {
        self.skip_whitespace();
        self.pos == self.text.len()
    }

    pub(crate) fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    pub(crate) fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes().get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next byte that is not whitespace, left in place.
    pub(crate) fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.bytes().get(self.pos).copied()
    }

    pub(crate) fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    pub(crate) fn since(&self, start: usize) -> Option<&'a str> {
        self.text.get(start..self.pos)
    }

    /// A string starting at the cursor (on its quote); whether it holds escapes.
    #[inline]
    pub(crate) fn string(&mut self) -> Option<bool> {
        // Keys and short values end, unescaped, within the first word after the quote.
        let mut i = self.pos + 1;
        for _ in 0..WORDS {
            let Some(chunk) = self.bytes().get(i..i + 8) else {
                return self.long_string(i);
            };
            let flags = special(word(chunk));
            if flags != 0 {
                let end = i + (flags.trailing_zeros() / 8) as usize;
                if self.bytes().get(end) != Some(&b'"') {
                    return self.long_string(end);
                }
                self.pos = end + 1;
                return Some(false);
            }
            i += 8;
        }
        self.long_string(i)
    }

    /// The rest of [`Cursor::string`], from `i`, a byte of the string's first plain run.
    #[inline(never)]
    fn long_string(&mut self, mut i: usize) -> Option<bool> {
        let bytes = self.bytes();
        let mut escaped = false;
        loop {
            i = plain_end(bytes, i);
            match *bytes.get(i)? {
                b'"' => {
                    self.pos = i + 1;
                    return Some(escaped);
                }
                b'\\' => {
                    escaped = true;
                    i = escape_end(bytes, i + 1)?;
                }
                _ => return None,
            }
        }
    }

    pub(crate) fn number(&mut self) -> Option<()> {
        let bytes = self.bytes();
        let digit = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_digit);
        let digits = |mut i: usize| {
            while digit(i) {
                i += 1;
            }
            i
        };
        let mut i = self.pos;
        if bytes.get(i) == Some(&b'-') {
            i += 1;
        }
        i = match bytes.get(i)? {
            b'0' => i + 1,
            b'1'..=b'9' => digits(i + 1),
            _ => return None,
        };
        if bytes.get(i) == Some(&b'.') {
            if !digit(i + 1) {
                return None;
            }
            i = digits(i + 1);
        }
        if let Some(b'e' | b'E') = bytes.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = bytes.get(i) {
                i += 1;
            }
            if !digit(i) {
                return None;
            }
            i = digits(i);
        }
        self.pos = i;
        Some(())
    }

    pub(crate) fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.pos + word.len();
        (self.bytes().get(self.pos..end)? == word).then(|| self.pos = end)
    }

    /// Any value, validated and skipped; its raw text. `depth` is its own nesting level
    /// if it is a container.
    pub(crate) fn value(&mut self, depth: u32) -> Option<&'a str> {
        let start = match self.peek()? {
            b'"' => {
                let start = self.pos;
                self.string()?;
                start
            }
            b'{' => {
                let start = self.pos;
                self.object(depth, |c, _| c.value(depth + 1).map(drop))?;
                start
            }
            b'[' => {
                let start = self.pos;
                self.array(depth, |c| c.value(depth + 1).map(drop))?;
                start
            }
            b't' => self.literal_at(b"true")?,
            b'f' => self.literal_at(b"false")?,
            b'n' => self.literal_at(b"null")?,
            b'-' | b'0'..=b'9' => {
                let start = self.pos;
                self.number()?;
                start
            }
            _ => return None,
        };
        self.since(start)
    }

    pub(crate) fn literal_at(&mut self, word: &[u8]) -> Option<usize> {
        let start = self.pos;
        self.literal(word)?;
        Some(start)
    }

    /// An object at `depth`; `field` gets each key, decoded (as UTF-8 bytes, to be matched
    /// against byte strings), and must read its value.
    pub(crate) fn object(
        &mut self,
        depth: u32,
        mut field: impl FnMut(&mut Self, &[u8]) -> Option<()>,
    ) -> Option<()> {
        if depth > MAX_NESTING {
            return None;
        }
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(());
        }
        loop {
            if self.peek()? != b'"' {
                return None;
            }
            let start = self.pos;
            let escaped = self.string()?;
            // The bytes between the quotes are the key unless it holds escapes.
            let decoded_key;
            let key = if escaped {
                decoded_key = decoded(self.since(start)?, true)?;
                decoded_key.as_bytes()
            } else {
                self.bytes().get(start + 1..self.pos - 1)?
            };
            self.eat(b':')?;
            field(self, key)?;
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// An array at `depth`; `item` must read each element.
    pub(crate) fn array(
        &mut self,
        depth: u32,
        mut item: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        if depth > MAX_NESTING {
            return None;
        }
        self.eat(b'[')?;
        if self.peek()? == b']' {
            self.pos += 1;
            return Some(());
        }
        loop {
            item(self)?;
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// `null` as `Some(None)`, as serde reads an `Option`.
    pub(crate) fn null(&mut self) -> Option<bool> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Some(true);
        }
        Some(false)
    }

    pub(crate) fn optional_raw(&mut self, depth: u32) -> Option<Option<&'a str>> {
        let raw = self.value(depth)?;
        Some((raw != "null").then_some(raw))
    }

    pub(crate) fn optional_str(&mut self) -> Option<Option<Cow<'a, str>>> {
        match self.peek()? {
            b'"' => {}
            b'n' => return self.literal(b"null").map(|()| None),
            _ => return None,
        }
        let start = self.pos;
        if self.string()? {
            return decoded(self.since(start)?, true).map(Some);
        }
        // Unescaped: the text between the quotes.
        let text = self.text.get(start + 1..self.pos - 1)?;
        Some(Some(Cow::Borrowed(text)))
    }

    /// `null`, or a whole number that fits a `u64`, as serde reads an `Option<u64>`. Any other
    /// number (a sign, a fraction, an exponent, more than `u64::MAX`) is serde's to refuse.
    pub(crate) fn optional_u64(&mut self) -> Option<Option<u64>> {
        if self.peek()? == b'n' {
            return self.literal(b"null").map(|()| None);
        }
        let bytes = self.bytes();
        let start = self.pos;
        let mut i = start;
        let mut value = 0u64;
        while let Some(digit) = bytes.get(i).and_then(|b| b.checked_sub(b'0')) {
            if digit > 9 {
                break;
            }
            value = value.checked_mul(10)?.checked_add(u64::from(digit))?;
            i += 1;
        }
        let leading_zero = bytes.get(start) == Some(&b'0') && i - start > 1;
        if i == start || leading_zero || matches!(bytes.get(i), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.pos = i;
        Some(Some(value))
    }

    pub(crate) fn optional_bool(&mut self) -> Option<Option<bool>> {
        match self.peek()? {
            b't' => self.literal(b"true").map(|()| Some(true)),
            b'f' => self.literal(b"false").map(|()| Some(false)),
            b'n' => self.literal(b"null").map(|()| None),
            _ => None,
        }
    }
}

/// The first quote, backslash or control character at or after `i` (the end of a string's
/// plain run), or `bytes.len()` when there is none. Control characters are never allowed in a
/// string, so the caller refuses whatever it finds that is not a quote or a backslash.
fn plain_end(bytes: &[u8], mut i: usize) -> usize {
    // Short runs end within a word or two: a word at a time is cheapest for them.
    for _ in 0..2 {
        if let Some(end) = end_in_word(bytes, i) {
            return end;
        }
        i += 8;
    }
    // Long text: blocks tested whole (the compiler vectorises the test) until one holds the
    // end, then words again to find it in that block.
    while let Some(block) = bytes.get(i..i + BLOCK) {
        if block_stops(block) {
            break;
        }
        i += BLOCK;
    }
    loop {
        if let Some(end) = end_in_word(bytes, i) {
            return end;
        }
        i += 8;
    }
}

/// The end of the plain run if it lies in the eight bytes at `i` (or in the shorter rest of
/// `bytes`, where it always does), else `None`.
#[inline(always)]
fn end_in_word(bytes: &[u8], i: usize) -> Option<usize> {
    let Some(chunk) = bytes.get(i..i + 8) else {
        return Some(short_end(bytes, i));
    };
    let flags = special(word(chunk));
    (flags != 0).then(|| i + (flags.trailing_zeros() / 8) as usize)
}

/// The bytes of a long string tested at once.
const BLOCK: usize = 32;

/// Whether a block holds a byte a string's plain run stops at. Written without early exit
/// (each byte's test, then one reduction) so that it compiles to a few vector instructions.
#[inline]
fn block_stops(block: &[u8]) -> bool {
    let mut stop = [false; BLOCK];
    for (flag, &b) in stop.iter_mut().zip(block) {
        *flag = stops(b);
    }
    stop.iter().fold(false, |any, &flag| any | flag)
}

/// Whether a string's plain run stops at `b`.
#[inline]
fn stops(b: u8) -> bool {
    (b == b'"') | (b == b'\\') | (b < 0x20)
}

/// [`plain_end`] over the last few bytes, fewer than a word.
fn short_end(bytes: &[u8], i: usize) -> usize {
    let rest = bytes.get(i..).unwrap_or_default();
    i + rest.iter().position(|&b| stops(b)).unwrap_or(rest.len())
}

/// The index after an escape whose backslash is just before `i`.
fn escape_end(bytes: &[u8], i: usize) -> Option<usize> {
    match bytes.get(i)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(i + 1),
        b'u' => bytes
            .get(i + 1..i + 5)?
            .iter()
            .all(u8::is_ascii_hexdigit)
            .then_some(i + 5),
        _ => None,
    }
}

/// A string's text: borrowed without escapes; decoded by serde with them, `None` when serde
/// would refuse the decoding (a lone surrogate).
pub(crate) fn decoded(raw: &str, escaped: bool) -> Option<Cow<'_, str>> {
    if escaped {
        return serde_json::from_str::<Str<'_>>(raw).ok().map(|s| s.0);
    }
    raw.get(1..raw.len().checked_sub(1)?).map(Cow::Borrowed)
}

#[cfg(test)]
mod tests;
