//! The sticky position of a user in a split: the one hash every split and partial kill uses.
//!
//! `position(user_key, split) = xxh3_64(user_key ++ 0x00 ++ split) / 2^64`, a number in
//! [0, 1). It is version-stable (XXH3-64 with seed 0 is a fixed, published function), so the
//! same user lands on the same side on every replica and after restarts. A user is "in" a
//! share `s` of a split when `position < s`: widening the share only ever adds users.

/// The user's position in the named split, in [0, 1).
pub fn position(user_key: &str, split: &str) -> f64 {
    // On the request path: keys and split names are short, so the input is assembled on the
    // stack; only an unusually long one needs the heap.
    let len = user_key.len() + 1 + split.len();
    let mut stack = [0u8; 256];
    let mut heap = Vec::new();
    let input: &mut [u8] = if len <= stack.len() {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        &mut heap
    };
    input[..user_key.len()].copy_from_slice(user_key.as_bytes());
    input[user_key.len()] = 0;
    input[user_key.len() + 1..].copy_from_slice(split.as_bytes());
    let hash = xxhash_rust::xxh3::xxh3_64(input);
    // The top 53 bits fill an f64 mantissa exactly: the result is strictly below 1.
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether the user is in the first `share` (0..=1) of the split.
pub fn within(user_key: &str, split: &str, share: f64) -> bool {
    position(user_key, split) < share
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned vectors: a change of hash must never slip in (docs/architecture.md lists them).
    #[test]
    fn positions_are_pinned() {
        let vectors = [
            ("user-1", "kill:support"),
            ("user-2", "kill:support"),
            ("alice@example.com", "sonnet-vs-opus"),
            ("user-1", "rollout:support"),
            ("user-42", "rollout:support"),
        ];
        let got: Vec<String> = vectors
            .iter()
            .map(|(u, s)| format!("{:.6}", position(u, s)))
            .collect();
        assert_eq!(got, PINNED);
    }

    #[test]
    fn long_keys_hash_like_short_ones_would() {
        let long = "k".repeat(300);
        let mut input = long.clone().into_bytes();
        input.push(0);
        input.extend_from_slice(b"split");
        let expected = (xxhash_rust::xxh3::xxh3_64(&input) >> 11) as f64 / (1u64 << 53) as f64;
        assert_eq!(position(&long, "split"), expected);
    }

    const PINNED: [&str; 5] = ["0.184590", "0.512114", "0.942668", "0.087624", "0.182031"];

    /// Over 10,000 users and the seed's stages: a user on green at one stage is on green at
    /// every later one, the same user always gets the same answer, and each stage holds
    /// about its share.
    #[test]
    fn widening_only_adds_users_and_answers_are_sticky() {
        let stages = [0.05, 0.25, 0.5, 1.0];
        let mut counts = [0usize; 4];
        for i in 0..10_000 {
            let user = format!("u{i}");
            let placed: Vec<bool> = stages
                .iter()
                .map(|s| within(&user, "rollout:support", *s))
                .collect();
            for (count, inside) in counts.iter_mut().zip(&placed) {
                *count += usize::from(*inside);
            }
            for pair in placed.windows(2) {
                assert!(!pair[0] || pair[1], "{user} left green when the share grew");
            }
            assert_eq!(
                position(&user, "rollout:support"),
                position(&user, "rollout:support")
            );
        }
        assert!((400..600).contains(&counts[0]), "{counts:?}");
        assert!((2_300..2_700).contains(&counts[1]), "{counts:?}");
        assert!((4_800..5_200).contains(&counts[2]), "{counts:?}");
        assert_eq!(counts[3], 10_000);
    }

    #[test]
    fn spread_is_even() {
        let inside = (0..10_000)
            .filter(|i| within(&format!("user-{i}"), "split", 0.25))
            .count();
        assert!(
            (2_300..2_700).contains(&inside),
            "{inside} of 10000 in a 25 % share"
        );
    }
}
