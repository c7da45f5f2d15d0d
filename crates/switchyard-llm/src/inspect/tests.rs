//! The shortcuts of inspection against the general readings they stand for.

use std::borrow::Cow;

use super::{fingerprint, push_pieces, scalar_text};
use crate::json::{scalar, text_pieces};
use crate::text::fingerprint_pieces;

/// Raw JSON values of every shape the shortcuts meet or must leave alone.
const RAWS: [&str; 16] = [
    r#""""#,
    r#""plain text""#,
    r#""a\nb""#,
    r#""\\""#,
    r#""ends with \"""#,
    r#""\u00e9t\u00e9""#,
    r#""é€😀""#,
    r#""/ \/""#,
    "42",
    "-1.5e3",
    "null",
    "true",
    "{}",
    r#"[{"type":"text","text":"x"},{"type":"image"}]"#,
    r#"["a"]"#,
    r#"  "not trimmed"  "#,
];

#[test]
fn unescaped_strings_read_as_decoding_them_would() {
    for raw in RAWS {
        let (mut fast, mut slow) = (Vec::new(), Vec::new());
        push_pieces(raw, &mut fast);
        text_pieces(raw, &mut slow);
        assert_eq!(fast, slow, "{raw}");
        assert_eq!(scalar_text(raw), scalar(raw), "{raw}");
    }
}

#[test]
fn one_piece_hashes_as_the_joined_pieces() {
    let sets: [&[&str]; 6] = [&[], &[""], &["a"], &["", "a"], &["a", ""], &["a", "b"]];
    for set in sets {
        let pieces: Vec<Cow<'_, str>> = set.iter().map(|p| Cow::Borrowed(*p)).collect();
        assert_eq!(fingerprint(&pieces), fingerprint_pieces(&pieces), "{set:?}");
    }
}
