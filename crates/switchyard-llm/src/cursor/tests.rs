//! The cursor's string scan against a byte-at-a-time reading of the JSON rules.

use super::{special, Cursor};

#[test]
fn special_bytes_are_found_in_any_lane() {
    for lane in 0..8 {
        for byte in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
            let mut word = [b'a'; 8];
            word[lane] = byte;
            let first = special(u64::from_le_bytes(word)).trailing_zeros() / 8;
            assert_eq!(first, lane as u32, "{byte:#x} in lane {lane}");
            // Whatever follows it, the lowest flag is the first special byte.
            word[7] = 0;
            let first = special(u64::from_le_bytes(word)).trailing_zeros() / 8;
            assert_eq!(first, lane as u32, "{byte:#x} in lane {lane}, NUL last");
        }
    }
    assert_eq!(special(u64::from_le_bytes(*b" ~az09#]")), 0);
    let high = [0x20, 0x7f, 0x80, 0xff, 0xc3, 0xa9, b'!', b'#'];
    assert_eq!(special(u64::from_le_bytes(high)), 0);
}

/// A string read one byte at a time, as the JSON grammar states it: where it ends and whether
/// it holds escapes, or `None` when it is not a valid string.
fn reference(bytes: &[u8]) -> Option<(usize, bool)> {
    let mut i = 1;
    let mut escaped = false;
    loop {
        match *bytes.get(i)? {
            b'"' => return Some((i + 1, escaped)),
            b'\\' => {
                escaped = true;
                i += match *bytes.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => 2,
                    b'u' if bytes.get(i + 2..i + 6)?.iter().all(u8::is_ascii_hexdigit) => 6,
                    _ => return None,
                };
            }
            0..=0x1f => return None,
            _ => i += 1,
        }
    }
}

fn scanned(text: &str) -> Option<(usize, bool)> {
    let mut cursor = Cursor::new(text);
    let escaped = cursor.string()?;
    Some((cursor.pos, escaped))
}

/// Strings of every length up to past two blocks, with each kind of stop byte at each place,
/// and what follows the string varied: the scan ends and fails where the reference does.
#[test]
fn string_scan_agrees_with_the_byte_reading() {
    let stops: [&str; 12] = [
        "\"", "\\n", "\\\"", "\\u00e9", "\\u12", "\\x", "\\", "\n", "\u{1}", "\u{1f}", "é", "\t",
    ];
    let tails = [
        "",
        "\"",
        "\",1]",
        "\u{0}",
        "abcdefghijklmnopqrstuvwxyz0123456789\"",
    ];
    let mut checked = 0;
    for len in 0..80 {
        for at in 0..=len {
            for stop in stops {
                for tail in tails {
                    let text = format!(
                        "\"{}{}{}{}",
                        "a".repeat(at),
                        stop,
                        "b".repeat(len - at),
                        tail
                    );
                    assert_eq!(scanned(&text), reference(text.as_bytes()), "{text:?}");
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 30_000);
}

/// Pseudo-random strings over an alphabet rich in stop bytes.
#[test]
fn random_strings_agree_with_the_byte_reading() {
    let alphabet: Vec<char> = "ab \"\\/nu0e\u{1}\u{1f}\u{7f}é€😀".chars().collect();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..20_000 {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        let len = (state >> 58) as usize * 3;
        let mut text = String::from("\"");
        for _ in 0..len {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            // Mostly plain letters, so that long runs reach the block scan.
            let pick = (state >> 33) as usize % (alphabet.len() * 4);
            text.push(alphabet.get(pick).copied().unwrap_or('x'));
        }
        text.push('"');
        assert_eq!(scanned(&text), reference(text.as_bytes()), "{text:?}");
    }
}

/// `optional_u64` as it read before it parsed the digits itself: the number's grammar, then
/// the text parsed.
fn reference_u64(text: &str) -> Option<(Option<u64>, usize)> {
    let mut cursor = Cursor::new(text);
    if cursor.null()? {
        return Some((None, cursor.pos));
    }
    let start = cursor.pos;
    cursor.number()?;
    let digits = cursor.since(start)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((Some(digits.parse().ok()?), cursor.pos))
}

/// Where the old reading gave a count, the new one gives the same count and stops at the same
/// place; where the old one refused (or stopped before a byte the caller then refuses), so
/// does the new one.
#[test]
fn counts_read_as_before() {
    let heads = [
        "",
        "0",
        "00",
        "01",
        "7",
        "10",
        "123",
        "-1",
        "-0",
        "1.5",
        "1.",
        "1e3",
        "1E+3",
        "0e",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999",
        "null",
        "nul",
        "true",
        "\"1\"",
        " 1",
        "x",
    ];
    let tails = ["", ",", "}", " ", "]", "a", ".", "e", "0", "-"];
    for head in heads {
        for tail in tails {
            let text = format!("{head}{tail}");
            let mut cursor = Cursor::new(&text);
            let new = cursor.optional_u64().map(|n| (n, cursor.pos));
            let old = reference_u64(&text);
            // Before, a count followed by a byte that continues a number ("00" read as "0")
            // was refused by the caller, at that byte; now the reading refuses it.
            let refused_after = old.is_some_and(|(_, end)| {
                matches!(
                    text.as_bytes().get(end),
                    Some(b'0'..=b'9' | b'.' | b'e' | b'E')
                )
            });
            if !(new.is_none() && refused_after) {
                assert_eq!(new, old, "{text:?}");
            }
        }
    }
}
