//! One pass over a response body or event that validates the JSON as serde would and keeps
//! only what usage extraction reads: the strings and counts of [`Parts`], and the raw text of
//! the parts read later (error, code, message, response, delta). Every choice is read for its
//! index and finish reason as it passes; nothing else is decoded or copied.
//!
//! As in the request scanner, any shape it does not handle (invalid UTF-8, deep nesting, a
//! duplicate field, a struct written as an array, a count that is not a whole `u64`, an
//! escape serde would refuse) gives `None`, and serde gives the verdict.

use std::borrow::Cow;

use super::{CachedDetails, Parts, RawUsage};
use crate::cursor::Cursor;

/// The index of a field serde's `Frame` knows, as a bit to refuse duplicates as serde does.
fn frame_field(key: &[u8]) -> Option<u32> {
    Some(match key {
        b"type" => 0,
        b"model" => 1,
        b"usage" => 2,
        b"choices" => 3,
        b"status" => 4,
        b"stop_reason" => 5,
        b"error" => 6,
        b"code" => 7,
        b"message" => 8,
        b"response" => 9,
        b"delta" => 10,
        _ => return None,
    })
}

/// The index of a field of `RawUsage`, as a bit.
fn usage_field(key: &[u8]) -> Option<u32> {
    Some(match key {
        b"prompt_tokens" => 0,
        b"completion_tokens" => 1,
        b"total_tokens" => 2,
        b"input_tokens" => 3,
        b"output_tokens" => 4,
        b"cache_creation_input_tokens" => 5,
        b"cache_read_input_tokens" => 6,
        b"prompt_tokens_details" => 7,
        b"input_tokens_details" => 8,
        _ => return None,
    })
}

/// What a JSON object says, or `None` when serde must decide.
pub(super) fn frame(json: &[u8]) -> Option<Parts<'_>> {
    // Filled where it is returned: `Parts` is large, and a copy costs as much as a field.
    let mut found = Some(Parts::default());
    fill(json, found.as_mut()?)?;
    found
}

/// [`frame`] into `parts`.
fn fill<'a>(json: &'a [u8], parts: &mut Parts<'a>) -> Option<()> {
    let text = std::str::from_utf8(json).ok()?;
    let mut cursor = Cursor::new(text);
    if cursor.peek()? != b'{' {
        return None;
    }
    let mut seen = 0u16;
    cursor.object(1, |c, key| {
        let Some(bit) = frame_field(key) else {
            return c.value(2).map(drop);
        };
        if seen & (1 << bit) != 0 {
            return None;
        }
        seen |= 1 << bit;
        match bit {
            0 => parts.kind = c.optional_str()?,
            1 => parts.model = c.optional_str()?,
            2 => c.usage(&mut parts.usage)?,
            3 => parts.choice_finish = c.choices()?,
            4 => parts.status = c.optional_str()?,
            5 => parts.stop_reason = c.optional_str()?,
            _ => {
                let raw = c.optional_raw(2)?;
                let slot = match bit {
                    6 => &mut parts.error,
                    7 => &mut parts.code,
                    8 => &mut parts.message,
                    9 => &mut parts.response,
                    _ => &mut parts.delta,
                };
                *slot = raw;
            }
        }
        Some(())
    })?;
    cursor.at_end().then_some(())
}

/// A delta object's `stop_reason`, or `None` when serde must decide.
pub(super) fn delta_stop_reason(raw: &str) -> Option<Option<Cow<'_, str>>> {
    let mut reason = None;
    only_fields(raw, &[b"stop_reason"], |c, _| {
        reason = c.optional_str()?;
        Some(())
    })?;
    Some(reason)
}

/// An error object's `type` and the raw text of its `code`, or `None` when serde must decide.
pub(super) fn error_object(raw: &str) -> Option<(Option<Cow<'_, str>>, Option<&str>)> {
    let (mut kind, mut code) = (None, None);
    only_fields(raw, &[b"type", b"code"], |c, bit| {
        match bit {
            0 => kind = c.optional_str()?,
            _ => code = c.optional_raw(2)?,
        }
        Some(())
    })?;
    Some((kind, code))
}

/// A whole text that is one object; `field` reads the value of each of `known` (given its
/// index), once at most; other fields are skipped.
fn only_fields<'a>(
    raw: &'a str,
    known: &[&[u8]],
    mut field: impl FnMut(&mut Cursor<'a>, usize) -> Option<()>,
) -> Option<()> {
    let mut cursor = Cursor::new(raw);
    if cursor.peek()? != b'{' {
        return None;
    }
    let mut seen = 0u8;
    cursor.object(1, |c, key| {
        let Some(bit) = known.iter().position(|f| *f == key) else {
            return c.value(2).map(drop);
        };
        if seen & (1 << bit) != 0 {
            return None;
        }
        seen |= 1 << bit;
        field(c, bit)
    })?;
    cursor.at_end().then_some(())
}

impl Cursor<'_> {
    /// `usage`: null, or an object of counts, read into `out`.
    fn usage(&mut self, out: &mut Option<RawUsage>) -> Option<()> {
        if self.null()? {
            *out = None;
            return Some(());
        }
        if self.peek()? != b'{' {
            return None;
        }
        let usage = out.insert(RawUsage::default());
        let mut seen = 0u16;
        self.object(2, |c, key| {
            let Some(bit) = usage_field(key) else {
                return c.value(3).map(drop);
            };
            if seen & (1 << bit) != 0 {
                return None;
            }
            seen |= 1 << bit;
            let slot = match bit {
                7 => return c.cached_details().map(|d| usage.prompt_tokens_details = d),
                8 => return c.cached_details().map(|d| usage.input_tokens_details = d),
                0 => &mut usage.prompt_tokens,
                1 => &mut usage.completion_tokens,
                2 => &mut usage.total_tokens,
                3 => &mut usage.input_tokens,
                4 => &mut usage.output_tokens,
                5 => &mut usage.cache_creation_input_tokens,
                _ => &mut usage.cache_read_input_tokens,
            };
            *slot = c.optional_u64()?;
            Some(())
        })
    }

    /// `prompt_tokens_details` / `input_tokens_details`: null, or an object with
    /// `cached_tokens`.
    fn cached_details(&mut self) -> Option<Option<CachedDetails>> {
        if self.null()? {
            return Some(None);
        }
        if self.peek()? != b'{' {
            return None;
        }
        let mut details = CachedDetails::default();
        let mut seen = false;
        self.object(3, |c, key| {
            if key != b"cached_tokens" {
                return c.value(4).map(drop);
            }
            if std::mem::replace(&mut seen, true) {
                return None;
            }
            details.cached_tokens = c.optional_u64()?;
            Some(())
        })?;
        Some(Some(details))
    }
}

impl<'a> Cursor<'a> {
    /// `choices`: null, or an array of objects; the finish reason of the first whose index
    /// is 0 or absent.
    fn choices(&mut self) -> Option<Option<Cow<'a, str>>> {
        if self.null()? {
            return Some(None);
        }
        if self.peek()? != b'[' {
            return None;
        }
        let mut first = None;
        self.array(2, |c| {
            if c.peek()? != b'{' {
                return None;
            }
            let (mut index, mut finish) = (None, None);
            let mut seen = 0u8;
            c.object(3, |c, key| {
                let bit = match key {
                    b"index" => 1,
                    b"finish_reason" => 2,
                    _ => return c.value(4).map(drop),
                };
                if seen & bit != 0 {
                    return None;
                }
                seen |= bit;
                match bit {
                    1 => index = c.optional_u64()?,
                    _ => finish = c.optional_str()?,
                }
                Some(())
            })?;
            if first.is_none() && index.unwrap_or(0) == 0 {
                first = Some(finish);
            }
            Some(())
        })?;
        Some(first.flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Delta, ErrorObject, Frame, Parts};
    use super::*;

    /// Where the scanner answers, its parts are serde's, field by field (raw texts included).
    #[test]
    fn parts_are_serdes_where_the_scanner_answers() {
        let bodies: &[&str] = &[
            r#"{"type":"message_start","message":{"model":"c","usage":{"input_tokens":5}}}"#,
            r#"{"model":"m\u00e9","choices":[{"index":1,"finish_reason":"a"},{"finish_reason":"b","index":0}],"usage":{"prompt_tokens":1,"prompt_tokens_details":{"cached_tokens":0}}}"#,
            r#" {"error": {"type":"e","code":[1, 2]} , "code" : -1.5e3, "delta":{"stop_reason":null}, "response":null} "#,
            r#"{"status":"completed","stop_reason":"end_turn","usage":{"input_tokens_details":null,"x":{"y":[]}}}"#,
            r#"{"usage":{"prompt_tokens":1.5}}"#,
            r#"{"model":"a","model":"b"}"#,
            r#"{"choices":[[0,"stop"]]}"#,
        ];
        let mut answered = 0;
        for body in bodies {
            let reference = serde_json::from_str::<Frame<'_>>(body)
                .ok()
                .map(Parts::from);
            if let Some(parts) = frame(body.as_bytes()) {
                assert_eq!(Some(parts), reference, "{body}");
                answered += 1;
            }
        }
        assert_eq!(answered, 4);
        for raw in [
            r#"{"stop_reason":"x","a":1}"#,
            r#"{"stop_reason":null}"#,
            "{}",
        ] {
            let reference = serde_json::from_str::<Delta<'_>>(raw).unwrap();
            let scanned = delta_stop_reason(raw).unwrap();
            assert_eq!(scanned, reference.stop_reason.map(|s| s.0));
        }
        for raw in [
            r#"{"type":"t","code":7}"#,
            r#"{"code":"c"}"#,
            r#"{"message":"m"}"#,
        ] {
            let reference = serde_json::from_str::<ErrorObject<'_>>(raw).unwrap();
            let (kind, code) = error_object(raw).unwrap();
            assert_eq!(kind, reference.kind.map(|k| k.0));
            assert_eq!(code, reference.code.map(|c| c.get()));
        }
        assert_eq!(delta_stop_reason(r#"["x"]"#), None);
        assert_eq!(error_object(r#"{"type":"a","type":"b"}"#), None);
    }
}
