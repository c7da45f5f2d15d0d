//! Borrowing JSON helpers shared by request and response parsing.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// A string that borrows from the body unless it contains escapes.
///
/// serde only borrows a `Cow` when the attribute sits on the `Cow` itself, never
/// through `Option`, hence this newtype.
#[derive(Debug, Deserialize)]
pub(crate) struct Str<'a>(#[serde(borrow)] pub Cow<'a, str>);

/// First non-whitespace byte, used to reject non-object bodies before parsing.
pub(crate) fn first_byte(body: &[u8]) -> Option<u8> {
    body.iter().copied().find(|b| !b.is_ascii_whitespace())
}

/// Length of a raw JSON value as text: a string without its quotes (escapes counted
/// as written), `null` as nothing, anything else as its JSON length.
pub(crate) fn raw_text_len(raw: &RawValue) -> usize {
    text_len(raw.get())
}

/// [`raw_text_len`] of a raw JSON value's text.
pub(crate) fn text_len(s: &str) -> usize {
    if s.starts_with('"') {
        s.len().saturating_sub(2)
    } else if s == "null" {
        0
    } else {
        s.len()
    }
}

/// A string or number as text; anything else, and empty strings, give None.
#[cfg(test)]
pub(crate) fn scalar_text(raw: &RawValue) -> Option<String> {
    scalar(raw.get())
}

/// A string or number, given as raw JSON text, as text; anything else, and empty strings,
/// give None.
pub(crate) fn scalar(s: &str) -> Option<String> {
    match s.as_bytes().first()? {
        b'"' => serde_json::from_str::<Str<'_>>(s)
            .ok()
            .map(|t| t.0.into_owned())
            .filter(|t| !t.is_empty()),
        b'-' | b'0'..=b'9' => Some(s.to_owned()),
        _ => None,
    }
}

#[derive(Deserialize)]
struct TextBlock<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    text: Option<Str<'a>>,
}

/// [`text_pieces`] of a raw value.
#[cfg(test)]
pub(crate) fn push_text_pieces<'a>(raw: &'a RawValue, out: &mut Vec<Cow<'a, str>>) {
    text_pieces(raw.get(), out);
}

/// Appends the text of a string or of an array of `{type:"text", text}` blocks, given as
/// raw JSON text. Other shapes add nothing: they are not prompt text we can fingerprint.
pub(crate) fn text_pieces<'a>(s: &'a str, out: &mut Vec<Cow<'a, str>>) {
    match s.as_bytes().first() {
        Some(b'"') => {
            if let Ok(text) = serde_json::from_str::<Str<'a>>(s) {
                out.push(text.0);
            }
        }
        Some(b'[') => {
            let Ok(blocks) = serde_json::from_str::<Vec<TextBlock<'a>>>(s) else {
                return;
            };
            let texts = blocks
                .into_iter()
                .filter(|b| b.kind.as_ref().is_none_or(|k| k.0 == "text"))
                .filter_map(|b| b.text);
            out.extend(texts.map(|t| t.0));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> &RawValue {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn scalars_render_as_text() {
        assert_eq!(scalar_text(raw(r#""u\u00e9""#)).as_deref(), Some("ué"));
        assert_eq!(scalar_text(raw("-42")).as_deref(), Some("-42"));
        assert_eq!(scalar_text(raw(r#""""#)), None);
        assert_eq!(scalar_text(raw("true")), None);
        assert_eq!(scalar_text(raw("{}")), None);
    }

    #[test]
    fn text_pieces_from_string_and_blocks() {
        let mut out = Vec::new();
        push_text_pieces(raw(r#""a\nb""#), &mut out);
        let blocks =
            r#"[{"type":"text","text":"c"},{"type":"image_url","image_url":{}},{"text":"d"}]"#;
        push_text_pieces(raw(blocks), &mut out);
        push_text_pieces(raw("42"), &mut out);
        push_text_pieces(raw(r#"[1,2]"#), &mut out);
        assert_eq!(out, ["a\nb", "c", "d"]);
    }

    #[test]
    fn raw_lengths() {
        assert_eq!(raw_text_len(raw(r#""abcd""#)), 4);
        assert_eq!(raw_text_len(raw("null")), 0);
        assert_eq!(raw_text_len(raw("[1,2]")), 5);
    }
}
