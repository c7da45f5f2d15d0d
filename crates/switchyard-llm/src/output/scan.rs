//! First-token detection for OpenAI chunks in one pass of the JSON cursor: it validates the
//! event as serde would and reads only `type`, and each choice's `text` and `delta` fields.
//!
//! Any shape it does not handle (invalid UTF-8, deep nesting, a duplicate field, a struct
//! written as an array, an escape serde would refuse) gives `None`, and serde decides.

use std::borrow::Cow;

use super::{non_empty_raw, present_raw};
use crate::cursor::Cursor;

/// Whether a chunk carries output, or `None` when serde must decide.
pub(super) fn chunk_output(data: &[u8]) -> Option<bool> {
    let text = std::str::from_utf8(data).ok()?;
    let mut cursor = Cursor::new(text);
    if cursor.peek()? != b'{' {
        return None;
    }
    let mut kind: Option<Cow<'_, str>> = None;
    let mut output = false;
    let mut seen = 0u8;
    cursor.object(1, |c, key| {
        let bit = match key {
            b"type" => 1,
            b"choices" => 2,
            _ => return c.value(2).map(drop),
        };
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
        if bit == 1 {
            kind = c.optional_str()?;
        } else {
            output = choices_output(c)?;
        }
        Some(())
    })?;
    if !cursor.at_end() {
        return None;
    }
    Some(match kind {
        Some(kind) => kind.starts_with("response.") && kind.ends_with(".delta"),
        None => output,
    })
}

/// `choices`: null, or an array of objects; whether any carries output.
fn choices_output(c: &mut Cursor<'_>) -> Option<bool> {
    if c.null()? {
        return Some(false);
    }
    if c.peek()? != b'[' {
        return None;
    }
    let mut any = false;
    c.array(2, |c| {
        if c.peek()? != b'{' {
            return None;
        }
        any |= choice_output(c)?;
        Some(())
    })?;
    Some(any)
}

/// One choice object: a non-empty `text`, or a `delta` carrying output.
fn choice_output(c: &mut Cursor<'_>) -> Option<bool> {
    let (mut text, mut delta) = (false, false);
    let mut seen = 0u8;
    c.object(3, |c, key| {
        let bit = match key {
            b"delta" => 1,
            b"text" => 2,
            _ => return c.value(4).map(drop),
        };
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
        if bit == 2 {
            text = c.optional_raw(4)?.is_some_and(non_empty_raw);
            return Some(());
        }
        if c.null()? {
            return Some(());
        }
        if c.peek()? != b'{' {
            return None;
        }
        delta = delta_output(c)?;
        Some(())
    })?;
    Some(text || delta)
}

/// A delta object: non-empty `content` or `refusal`, or any `tool_calls` / `function_call`.
fn delta_output(c: &mut Cursor<'_>) -> Option<bool> {
    let mut output = false;
    let mut seen = 0u8;
    c.object(4, |c, key| {
        let bit = match key {
            b"content" => 1,
            b"refusal" => 2,
            b"tool_calls" => 4,
            b"function_call" => 8,
            _ => return c.value(5).map(drop),
        };
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
        let raw = c.optional_raw(5)?;
        output |= if bit <= 2 {
            raw.is_some_and(non_empty_raw)
        } else {
            raw.is_some_and(present_raw)
        };
        Some(())
    })?;
    Some(output)
}
