//! Duration strings: an integer or decimal number directly followed by `ms`, `s`, `m`, `h` or `d`.

use std::time::Duration;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Parses "250ms", "2s", "1.5s", "10m", "7d". Zero ("0s") parses; callers decide whether it is
/// meaningful for their key.
///
/// The arithmetic is done in integer nanoseconds so "0.1s" is exactly 100ms, not a float
/// rounding of it.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = |why: &str| {
        format!(
            "invalid duration {text:?}: {why} (expected a number followed by ms, s, m, h or d, \
             e.g. \"250ms\", \"1.5s\", \"10m\")"
        )
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| bad("missing unit"))?;
    let (number, unit) = text.split_at(split);
    let unit_nanos: u128 = match unit {
        "ms" => 1_000_000,
        "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3_600 * NANOS_PER_SEC,
        "d" => 86_400 * NANOS_PER_SEC,
        _ if number.is_empty() => return Err(bad("missing number")),
        _ => return Err(bad("unknown unit")),
    };
    let (whole, frac) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || (number.contains('.') && !all_digits(frac)) {
        return Err(bad("malformed number"));
    }
    // Nine fraction digits is nanosecond precision for seconds; more is noise, and bounding the
    // length keeps 10^len within u128.
    if frac.len() > 9 {
        return Err(bad("too many decimal places"));
    }
    let too_large = || bad("too large");
    let whole: u128 = whole.parse().map_err(|_| too_large())?;
    let frac_value: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| too_large())?
    };
    let scale = 10u128.pow(u32::try_from(frac.len()).map_err(|_| too_large())?);
    let nanos = whole
        .checked_mul(unit_nanos)
        .and_then(|n| n.checked_add(frac_value * unit_nanos / scale))
        .ok_or_else(too_large)?;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).map_err(|_| too_large())?;
    // The remainder is below 10^9, so it always fits.
    let sub = u32::try_from(nanos % NANOS_PER_SEC).map_err(|_| too_large())?;
    Ok(Duration::new(secs, sub))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0.1s"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("1.5ms"), Ok(Duration::from_micros(1500)));
        assert_eq!(parse_duration("0.5m"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("0.000000001s"), Ok(Duration::from_nanos(1)));
    }

    #[test]
    fn zero_parses() {
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0.0ms"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "10",
            "s",
            "10 minutes",
            " 5s",
            "5s ",
            "5 s",
            "1.s",
            ".5s",
            "1..5s",
            "1.2.3s",
            "-1s",
            "+1s",
            "5sec",
            "5M",
            "5us",
            "1e3s",
            "1_000s",
            "0x10s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn rejects_overflow_and_excess_precision() {
        assert!(parse_duration("99999999999999999999999999999999999999999d").is_err());
        assert!(parse_duration("999999999999999999d").is_err());
        assert!(parse_duration("1.0000000001s").is_err());
    }

    #[test]
    fn message_names_the_input_and_the_format() {
        let msg = parse_duration("10 minutes").unwrap_err();
        assert!(msg.contains("\"10 minutes\""), "{msg}");
        assert!(msg.contains("ms, s, m, h or d"), "{msg}");
    }
}
