use super::*;

const DAY: u64 = 1_796_342_400;
const TTL: u64 = 60_000;

#[test]
fn admission_never_passes_the_limit() {
    let ledger = Ledger::default();
    let admitted = (0..100)
        .filter(|i| {
            ledger
                .reserve(DAY, &format!("r{i}"), (7, 100, 0), (0, TTL))
                .is_ok()
        })
        .count();
    assert_eq!(admitted, 14, "14 x 7 = 98 fits, a 15th would be 105");
    assert_eq!(ledger.totals(DAY, 0).reserved, 98);
    let refused = ledger
        .reserve(DAY, "big", (3, 100, 0), (0, TTL))
        .unwrap_err();
    assert_eq!(refused.reserved, 98);
    assert!(ledger.reserve(DAY, "small", (2, 100, 0), (0, TTL)).is_ok());
}

#[test]
fn settling_replaces_the_reservation_once() {
    let ledger = Ledger::default();
    ledger.reserve(DAY, "a", (50, 100, 0), (0, TTL)).unwrap();
    assert!(ledger.settle(DAY, "a", 20));
    assert!(
        !ledger.settle(DAY, "a", 20),
        "the second settlement counts nothing"
    );
    assert_eq!(
        ledger.totals(DAY, 0),
        Totals {
            used: 20,
            reserved: 0
        }
    );
    assert!(!ledger.settle(DAY, "never-reserved", 5));
    assert_eq!(ledger.totals(DAY, 0).used, 20);
    // Reserving an id already held holds it once.
    ledger.reserve(DAY, "b", (30, 100, 0), (0, TTL)).unwrap();
    ledger.reserve(DAY, "b", (30, 100, 0), (0, TTL)).unwrap();
    assert_eq!(ledger.totals(DAY, 0).reserved, 30);
}

#[test]
fn reservations_of_vanished_requests_expire_and_a_late_settlement_counts_once() {
    let ledger = Ledger::default();
    ledger
        .reserve(DAY, "lost", (80, 100, 0), (1_000, TTL))
        .unwrap();
    assert!(ledger
        .reserve(DAY, "x", (30, 100, 0), (2_000, TTL))
        .is_err());
    // Past its time to live the hold is swept and its tokens are free again.
    assert!(ledger
        .reserve(DAY, "x", (30, 100, 0), (1_000 + TTL, TTL))
        .is_ok());
    assert_eq!(ledger.totals(DAY, 1_000 + TTL).reserved, 30);
    assert!(ledger.settle(DAY, "lost", 10), "late, but it spent");
    assert!(!ledger.settle(DAY, "lost", 10));
    assert_eq!(ledger.totals(DAY, 1_000 + TTL).used, 10);
}

#[test]
fn used_tokens_counted_elsewhere_leave_less_room_and_a_release_counts_nothing() {
    let ledger = Ledger::default();
    assert!(ledger.reserve(DAY, "a", (30, 100, 80), (0, TTL)).is_err());
    assert!(ledger.reserve(DAY, "a", (20, 100, 80), (0, TTL)).is_ok());
    assert!(ledger.release(DAY, "a"));
    assert!(!ledger.release(DAY, "a"));
    assert_eq!(ledger.totals(DAY, 0), Totals::default());
}

#[test]
fn a_new_day_starts_empty_and_old_settlements_do_not_count_in_it() {
    let ledger = Ledger::default();
    ledger.reserve(DAY, "a", (90, 100, 0), (0, TTL)).unwrap();
    let tomorrow = DAY + 86_400;
    assert!(ledger
        .reserve(tomorrow, "b", (90, 100, 0), (0, TTL))
        .is_ok());
    assert!(!ledger.settle(DAY, "a", 90));
    assert_eq!(
        ledger.totals(tomorrow, 0),
        Totals {
            used: 0,
            reserved: 90
        }
    );
}

#[test]
fn concurrent_reservations_stay_within_the_limit() {
    let ledger = std::sync::Arc::new(Ledger::default());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let ledger = ledger.clone();
            std::thread::spawn(move || {
                (0..500)
                    .filter(|i| {
                        ledger
                            .reserve(DAY, &format!("{t}-{i}"), (3, 1_000, 0), (0, TTL))
                            .is_ok()
                    })
                    .count()
            })
        })
        .collect();
    let admitted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(admitted, 333);
    assert_eq!(ledger.totals(DAY, 0).reserved, 999);
}
