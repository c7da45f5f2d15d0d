//! One pass over a request body that validates the JSON and keeps only what inspection reads:
//! the raw text of the measured fields, and each message summed up as it passes.
//!
//! It accepts a subset of what serde accepts and reads it the same way: any shape it does not
//! handle (invalid UTF-8, nesting deeper than [`crate::cursor::MAX_NESTING`], a message that is not an
//! object, a duplicate field, a string escape it would have to decode and cannot) makes it
//! return `None`, and the caller asks serde, which gives the verdict.

use super::{Fields, Messages};
use crate::cursor::Cursor;

/// The index of a field serde's `Request` knows, as a bit to refuse duplicates as serde does.
fn top_field(key: &[u8]) -> Option<u32> {
    Some(match key {
        b"model" => 0,
        b"stream" => 1,
        b"stream_options" => 2,
        b"user" => 3,
        b"metadata" => 4,
        b"messages" => 5,
        b"system" => 6,
        b"instructions" => 7,
        b"tools" => 8,
        b"functions" => 9,
        b"input" => 10,
        b"prompt" => 11,
        b"max_tokens" => 12,
        b"max_completion_tokens" => 13,
        b"max_output_tokens" => 14,
        _ => return None,
    })
}

/// The fields of a request body, or `None` when serde must decide.
pub(super) fn fields(body: &[u8]) -> Option<Fields<'_>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut cursor = Cursor::new(text);
    let mut fields = Fields::default();
    let mut seen = 0u16;
    cursor.object(1, |c, key| {
        let Some(bit) = top_field(key) else {
            return c.value(2).map(drop);
        };
        if seen & (1 << bit) != 0 {
            return None;
        }
        seen |= 1 << bit;
        match bit {
            0 => fields.model = c.optional_str()?,
            1 => fields.stream = c.optional_bool()?,
            2 => fields.include_usage = c.stream_options()?,
            5 => c.messages(&mut fields.messages)?,
            _ => {
                let raw = c.optional_raw(2)?;
                let slot = match bit {
                    3 => &mut fields.user,
                    4 => &mut fields.metadata,
                    6 => &mut fields.system,
                    7 => &mut fields.instructions,
                    8 => &mut fields.tools,
                    9 => &mut fields.functions,
                    10 => &mut fields.input,
                    11 => &mut fields.prompt,
                    12 => &mut fields.max_tokens,
                    13 => &mut fields.max_completion_tokens,
                    _ => &mut fields.max_output_tokens,
                };
                *slot = raw;
            }
        }
        Some(())
    })?;
    cursor.at_end().then_some(fields)
}

impl<'a> Cursor<'a> {
    /// `stream_options`: its `include_usage`, when it is an object or null.
    fn stream_options(&mut self) -> Option<Option<bool>> {
        if self.null()? {
            return Some(None);
        }
        if self.peek()? != b'{' {
            return None;
        }
        let mut include_usage = None;
        let mut seen = false;
        self.object(2, |c, key| {
            if key != b"include_usage" {
                return c.value(3).map(drop);
            }
            if std::mem::replace(&mut seen, true) {
                return None;
            }
            include_usage = c.optional_bool()?;
            Some(())
        })?;
        Some(include_usage)
    }

    /// `messages`: null, or an array of objects each summed up into `out`.
    fn messages(&mut self, out: &mut Messages<'a>) -> Option<()> {
        if self.null()? {
            return Some(());
        }
        if self.peek()? != b'[' {
            return None;
        }
        self.array(2, |c| {
            if c.peek()? != b'{' {
                return None;
            }
            let (mut role, mut content, mut tool_calls) = (None, None, None);
            let mut seen = 0u8;
            c.object(3, |c, key| {
                let bit = match key {
                    b"role" => 1,
                    b"content" => 2,
                    b"tool_calls" => 4,
                    _ => return c.value(4).map(drop),
                };
                if seen & bit != 0 {
                    return None;
                }
                seen |= bit;
                match bit {
                    1 => role = c.optional_str()?,
                    2 => content = c.optional_raw(4)?,
                    _ => tool_calls = c.optional_raw(4)?,
                }
                Some(())
            })?;
            out.add(role.as_deref(), content, tool_calls);
            Some(())
        })
    }
}
