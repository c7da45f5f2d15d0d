//! The one place the gateway reads time. Everything else asks this module, so a test can pause
//! the monotonic clock (`tokio::time::pause`) and a lint (`clippy.toml`'s `disallowed-methods`)
//! keeps direct reads of `Instant::now` and `SystemTime::now` out of the rest of the code.

#![allow(clippy::disallowed_methods)] // this module is the exception the lint points to

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Now on the monotonic clock. Outside a runtime with paused time (every production build)
/// this is `Instant::now`; inside a test that paused tokio's clock it follows that clock.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Now on the wall clock.
pub fn system_now() -> SystemTime {
    SystemTime::now()
}

/// Milliseconds since the Unix epoch on the wall clock (0 before 1970).
pub fn unix_ms() -> u64 {
    system_now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Time since the Unix epoch on the wall clock (zero before 1970).
pub fn since_epoch() -> Duration {
    system_now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// Milliseconds on a process-wide monotonic clock, never 0 (so 0 can mean "never").
pub fn mono_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let elapsed = now().duration_since(*BASE.get_or_init(now)).as_millis();
    u64::try_from(elapsed).unwrap_or(u64::MAX).saturating_add(1)
}

/// `yyyymmddThhmmssZ` for Unix milliseconds, without a date library.
pub fn compact_utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rest = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01, counting in 400-year eras (each
/// exactly 146 097 days) with years starting in March, so leap days fall at a year's end.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let shifted = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(compact_utc(0), "19700101T000000Z");
        // 2000-02-29 23:59:59 UTC, a leap day in a century leap year.
        assert_eq!(compact_utc(951_868_799_000), "20000229T235959Z");
        // 2026-11-22 11:30:00 UTC.
        assert_eq!(compact_utc(1_795_347_000_000), "20261122T113000Z");
        // 2100-03-01 00:00:00 UTC, after a century non-leap February.
        assert_eq!(compact_utc(4_107_542_400_000), "21000301T000000Z");
    }

    #[test]
    fn the_process_clock_never_reads_zero_and_never_goes_back() {
        let first = mono_ms();
        assert!(first >= 1);
        assert!(mono_ms() >= first);
    }

    #[tokio::test(start_paused = true)]
    async fn paused_time_moves_the_monotonic_clock() {
        let before = now();
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(now() - before >= Duration::from_secs(60));
    }
}
