use super::*;

const SEC: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;

/// Requests every `step` ns over `[0, until)` for one key; how many were admitted.
fn pressed(gcra: Gcra, step: u64, until: u64) -> (usize, usize) {
    let single = Single::default();
    let keyed = Keyed::default();
    let times = (0..until).step_by(step as usize);
    let one = times.clone().filter(|&t| single.admit(gcra, t)).count();
    let many = times.filter(|&t| keyed.admit("k", gcra, t)).count();
    (one, many)
}

#[test]
fn five_thousand_users_within_their_limit_are_never_refused() {
    let gcra = Gcra::new(2.0);
    let limiter = Keyed::default();
    let mut refused = 0;
    for second in 0..20 {
        for user in 0..5_000u64 {
            // Each user sends its two requests at once, at its own offset in the second.
            let now = second * SEC + user * 100_000;
            let key = format!("user-{user}");
            for _ in 0..2 {
                refused += usize::from(!limiter.admit(&key, gcra, now));
            }
        }
    }
    assert_eq!(refused, 0);
    assert!(limiter.len() <= 5_000, "{}", limiter.len());
}

#[test]
fn a_user_over_the_limit_is_refused_at_the_exact_count() {
    // 5/s: a burst of 5, then one every 200 ms. Pressed every 10 ms for 10 s: 5 at 0 and one
    // at each of 200 ms .. 9.8 s.
    assert_eq!(pressed(Gcra::new(5.0), 10 * MS, 10 * SEC), (54, 54));
    let limiter = Keyed::default();
    let gcra = Gcra::new(5.0);
    let admitted = (0..10).filter(|_| limiter.admit("a", gcra, 0)).count();
    assert_eq!(admitted, 5);
    assert!(!limiter.admit("a", gcra, 199 * MS));
    assert!(limiter.admit("a", gcra, 200 * MS));
    assert!(
        limiter.admit("b", gcra, 200 * MS),
        "another user is untouched"
    );
}

#[test]
fn half_a_request_per_second_is_one_every_two_seconds() {
    let gcra = Gcra::new(0.5);
    assert_eq!(Gcra::burst(0.5), 1);
    let limiter = Keyed::default();
    assert!(limiter.admit("u", gcra, 0));
    assert!(!limiter.admit("u", gcra, SEC));
    assert!(!limiter.admit("u", gcra, 2 * SEC - 1));
    assert!(limiter.admit("u", gcra, 2 * SEC));
    assert!(!limiter.admit("u", gcra, 3 * SEC));
    assert!(limiter.admit("u", gcra, 4 * SEC));
    // Pressed every 100 ms for a minute: at 0, 2 s, …, 58 s.
    assert_eq!(pressed(gcra, 100 * MS, 60 * SEC), (30, 30));
}

#[test]
fn one_and_a_half_per_second_is_not_rounded_down() {
    let gcra = Gcra::new(1.5);
    assert_eq!(Gcra::burst(1.5), 2);
    // A burst of 2, then one every 2/3 s: over 10 s, 2 + 14; over 100 s, 2 + 149.
    assert_eq!(pressed(gcra, 10 * MS, 10 * SEC), (16, 16));
    assert_eq!(pressed(gcra, 10 * MS, 100 * SEC), (151, 151));
    // A client pacing itself at exactly 1.5/s is never refused.
    let limiter = Keyed::default();
    let paced = (0..1_000u64)
        .filter(|i| limiter.admit("u", gcra, i * 2 * SEC / 3))
        .count();
    assert_eq!(paced, 1_000);
}

#[test]
fn a_changed_rate_carries_at_most_a_full_burst_of_debt() {
    let throttle = Single::default();
    // At 0.1/s the one request leaves a TAT 10 s ahead.
    assert!(throttle.admit(Gcra::new(0.1), 0));
    // Loosened to 10/s: the debt counts as one full burst (1 s), not 10 s.
    let loose = Gcra::new(10.0);
    assert!(!throttle.admit(loose, 500 * MS));
    assert!(throttle.admit(loose, 600 * MS));
    // Tightened to 1/s: the burst already spent at 10/s is not granted again.
    let tight = Gcra::new(1.0);
    assert!(!throttle.admit(tight, 700 * MS));
    assert!(throttle.admit(tight, 1_700 * MS));
}

#[test]
fn a_flood_of_keys_stays_under_the_cap_and_is_swept_once_idle() {
    let gcra = Gcra::new(1.0);
    let limiter = Keyed::default();
    // 300,000 distinct keys within 0.3 s: all live (each TAT 1 s ahead), far above the cap.
    let mut refused = 0;
    for i in 0..300_000u64 {
        refused += usize::from(!limiter.admit(&format!("k{i}"), gcra, i * 1_000));
    }
    assert_eq!(refused, 0, "a new key is always within its limit");
    assert!(limiter.len() <= MAX_KEYS, "{}", limiter.len());
    // 64 shards × 4,096 buckets: the documented bound on memory.
    assert!(
        limiter.capacity() <= SHARDS * 3_584,
        "{}",
        limiter.capacity()
    );
    // Idle for 2 s, every TAT has passed: the next keys sweep their shards.
    let later = 3 * SEC;
    for i in 0..2_000u64 {
        assert!(limiter.admit(&format!("n{i}"), gcra, later + i));
    }
    assert!(limiter.len() <= 2_000, "{}", limiter.len());
    assert!(limiter.capacity() < MAX_KEYS / 4, "{}", limiter.capacity());
}

#[test]
fn idle_keys_are_forgotten_and_judged_as_new() {
    let gcra = Gcra::new(1.0);
    let limiter = Keyed::default();
    for round in 0..50u64 {
        for user in 0..1_000u64 {
            assert!(limiter.admit(&format!("r{round}-u{user}"), gcra, round * 2 * SEC));
        }
        // Each round's keys passed before the next round: what is held stays near one round.
        assert!(
            limiter.len() <= 2_000 + SHARDS * SWEEP_MIN,
            "{}",
            limiter.len()
        );
    }
}
