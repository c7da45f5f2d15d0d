//! The shortcuts of inspection against the general readings they stand for.

use std::borrow::Cow;

use super::{scalar_text, Pieces};
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
        let mut fast = Pieces::default();
        fast.add(raw);
        let mut slow = Vec::new();
        text_pieces(raw, &mut slow);
        let fast: Vec<_> = fast.first.into_iter().chain(fast.more).collect();
        assert_eq!(fast, slow, "{raw}");
        assert_eq!(scalar_text(raw), scalar(raw), "{raw}");
    }
}

#[test]
fn pieces_hash_as_the_joined_pieces() {
    let sets: [&[&str]; 8] = [
        &[],
        &[""],
        &["a"],
        &["", "a"],
        &["a", ""],
        &["a", "b"],
        &["a", "", "b"],
        &["", "", ""],
    ];
    for set in sets {
        let mut pieces = Pieces::default();
        set.iter().for_each(|p| pieces.push(Cow::Borrowed(*p)));
        let list: Vec<Cow<'_, str>> = set.iter().map(|p| Cow::Borrowed(*p)).collect();
        assert_eq!(pieces.fingerprint(), fingerprint_pieces(&list), "{set:?}");
    }
    // A prompt in blocks and one with escapes are read as text_pieces reads them.
    let mut pieces = Pieces::default();
    pieces.add(r#"[{"type":"text","text":"a"},{"type":"text","text":"b\nc"}]"#);
    pieces.add(r#""d\te""#);
    let list = [Cow::from("a"), Cow::from("b\nc"), Cow::from("d\te")];
    assert_eq!(pieces.fingerprint(), fingerprint_pieces(&list));
}
