//! Prompt text measures: the token-estimate heuristic and the system-prompt fingerprint.

use std::borrow::Cow;

use xxhash_rust::xxh3::{xxh3_64, Xxh3Default};

/// The estimate assumes about one token per this many bytes of UTF-8/JSON text,
/// which is close for English with BPE tokenizers and errs high for code and CJK.
pub const BYTES_PER_TOKEN: u64 = 4;

/// Tokens added per chat message for role markers and separators.
pub const MESSAGE_OVERHEAD_TOKENS: u64 = 4;

/// Estimated tokens for `len_bytes` of text: `ceil(len_bytes / 4)`.
pub fn estimate_tokens_for_text(len_bytes: usize) -> u64 {
    u64::try_from(len_bytes)
        .unwrap_or(u64::MAX)
        .div_ceil(BYTES_PER_TOKEN)
}

/// Fingerprint of a system prompt: xxh3_64 with seed 0 of its UTF-8 bytes.
///
/// This is a stable, documented function (same value on every machine and version),
/// so fingerprints can be stored and compared across deployments.
pub fn fingerprint_text(text: &str) -> u64 {
    xxh3_64(text.as_bytes())
}

/// Fingerprint of prompt pieces joined with "\n", skipping empty pieces; None when
/// there is no text at all. Equals `fingerprint_text(&pieces.join("\n"))` without
/// building the joined string.
pub(crate) fn fingerprint_pieces(pieces: &[Cow<'_, str>]) -> Option<u64> {
    let mut hasher = Xxh3Default::new();
    let mut any = false;
    for piece in pieces.iter().filter(|p| !p.is_empty()) {
        if any {
            hasher.update(b"\n");
        }
        hasher.update(piece.as_bytes());
        any = true;
    }
    any.then(|| hasher.digest())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_rounds_up() {
        assert_eq!(estimate_tokens_for_text(0), 0);
        assert_eq!(estimate_tokens_for_text(1), 1);
        assert_eq!(estimate_tokens_for_text(4), 1);
        assert_eq!(estimate_tokens_for_text(5), 2);
        assert_eq!(estimate_tokens_for_text(400), 100);
    }

    #[test]
    fn fingerprint_is_pinned_xxh3_seed_0() {
        // Reference vector for XXH3_64bits("") from the xxHash specification.
        assert_eq!(fingerprint_text(""), 0x2D06_8005_38D3_94C2);
        assert_eq!(fingerprint_text("You are a helpful assistant."), PINNED);
    }

    /// Cross-checked with the reference CLI: `printf '...' | xxhsum -H3`.
    const PINNED: u64 = 0x3206_EC37_B491_BAF1;

    #[test]
    fn pieces_join_with_newline() {
        let pieces = [Cow::from("a"), Cow::from(""), Cow::from("b")];
        assert_eq!(fingerprint_pieces(&pieces), Some(fingerprint_text("a\nb")));
        let long: String = "x".repeat(1000);
        let pieces = [Cow::from(long.as_str()), Cow::from(long.as_str())];
        let joined = format!("{long}\n{long}");
        assert_eq!(fingerprint_pieces(&pieces), Some(fingerprint_text(&joined)));
        assert_eq!(fingerprint_pieces(&[]), None);
        assert_eq!(fingerprint_pieces(&[Cow::from("")]), None);
    }
}
