use super::*;

const MINUTE: u64 = 60;
const HOUR: u64 = 3_600;
const DAY: u64 = 86_400;

/// Uneven traffic: every second a different count, with quiet stretches.
fn traffic(second: u64) -> u64 {
    if second % 1_000 < 100 {
        0
    } else {
        second % 7 + (second / HOUR) % 5
    }
}

/// A ring fed `traffic` for seconds `0..until`, and the exact prefix sums to judge it by.
fn fed(span: Duration, until: u64) -> (CountRing, Vec<u64>) {
    let mut ring = CountRing::new(span);
    let mut before = Vec::with_capacity(until as usize + 1);
    let mut total = 0;
    for second in 0..until {
        before.push(total);
        let n = traffic(second);
        if n > 0 {
            ring.add(second, n);
        }
        total += n;
    }
    before.push(total);
    (ring, before)
}

fn exact(before: &[u64], from: u64, to: u64) -> u64 {
    before[to as usize + 1] - before[from as usize]
}

#[test]
fn a_seven_day_baseline_fits_in_a_few_tens_of_kilobytes() {
    let span = Duration::from_secs(7 * DAY + 5 * MINUTE);
    let ring = CountRing::new(span);
    // 902 seconds + 1,442 minutes + 170 hours, 8 bytes each.
    assert_eq!(ring.heap_bytes(), (902 + 1_442 + 170) * 8);
    assert!(ring.heap_bytes() < 100_000);
    // One (second, count) pair per second, as before: 9.7 MB.
    let per_second = (span.as_secs() as usize + 1) * std::mem::size_of::<(u64, u64)>();
    assert!(per_second / ring.heap_bytes() > 400, "{per_second}");
    assert!(CountRing::new(Duration::from_secs(90 * DAY)).heap_bytes() < 100_000);
}

#[test]
fn sums_are_exact_on_bucket_edges_across_minutes_hours_and_days() {
    let now = 8 * DAY + 1_234;
    let (ring, before) = fed(Duration::from_secs(7 * DAY + 5 * MINUTE), now);
    let latest = now - 1;
    // The last 15 minutes: any second.
    for (from, to) in [
        (latest - 899, latest),
        (latest - 61, latest - 59),
        (latest, latest),
    ] {
        assert_eq!(ring.requests(from, to), exact(&before, from, to));
    }
    // The last day: from a minute's first second, to any held second.
    let near = latest - 300;
    for from in [
        near - 3 * MINUTE,
        near - near % MINUTE - HOUR,
        latest - DAY + MINUTE,
    ] {
        let from = from - from % MINUTE;
        assert_eq!(ring.requests(from, near), exact(&before, from, near));
    }
    // Beyond: from an hour's first second, across day boundaries.
    for from in [near - 2 * DAY, near - 7 * DAY + HOUR, 2 * DAY] {
        let from = from - from % HOUR;
        assert_eq!(ring.requests(from, near), exact(&before, from, near));
    }
    assert_eq!(ring.requests(near + 1, near), 0);
    assert_eq!(ring.requests(latest + 1, latest + 100), 0);
}

#[test]
fn an_unaligned_edge_errs_by_less_than_its_bucket() {
    let now = 8 * DAY + 777;
    let (ring, before) = fed(Duration::from_secs(7 * DAY + 5 * MINUTE), now);
    let near = now - 1 - 300;
    for (from, width) in [
        (near - 2 * HOUR - 17, MINUTE),
        (near - 3 * DAY - 1_801, HOUR),
        (near - 7 * DAY + 59, HOUR),
    ] {
        let got = ring.requests(from, near);
        let want = exact(&before, from, near);
        let bucket = from - from % width;
        let edge = exact(&before, bucket, bucket + width - 1);
        assert!(
            got.abs_diff(want) <= edge,
            "{from}: {got} vs {want} (±{edge})"
        );
        // Uneven traffic inside the bucket makes pro rata differ from exact, but not by much.
        assert!(got.abs_diff(want) * 100 < want, "{got} vs {want}");
    }
}

#[test]
fn old_data_ages_out_and_quiet_spells_count_nothing() {
    let mut ring = CountRing::new(Duration::from_secs(2 * HOUR));
    ring.add(10, 1_000);
    ring.add(HOUR, 5);
    assert_eq!(ring.requests(0, 3 * HOUR), 1_005);
    assert_eq!(ring.requests(MINUTE, 3 * HOUR), 5);
    // Second 10 is older than the seconds held: its minute is split pro rata.
    assert_eq!(ring.requests(30, 3 * HOUR), 500 + 5);
    // Ten quiet hours later the first record is beyond every tier.
    ring.add(10 * HOUR, 1);
    assert_eq!(ring.requests(0, 10 * HOUR), 1);
    assert_eq!(ring.requests(9 * HOUR, 10 * HOUR - 1), 0);
    assert_eq!(ring.requests(10 * HOUR, 10 * HOUR), 1);
}

#[test]
fn a_late_record_counts_in_the_newest_second() {
    let mut ring = CountRing::new(Duration::from_secs(60));
    ring.add(100, 1);
    ring.add(101, 1);
    ring.add(100, 1); // lost the race for the lock to second 101
    assert_eq!(ring.requests(100, 100), 1);
    assert_eq!(ring.requests(101, 101), 2);
    assert_eq!(CountRing::new(Duration::from_secs(60)).requests(0, 100), 0);
}
