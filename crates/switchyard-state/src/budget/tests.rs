use super::*;

/// 2026-12-04T00:00:00Z.
const MIDNIGHT: u64 = 1_796_342_400;
const H: u64 = 3600;

#[test]
fn days_start_at_midnight_by_default() {
    assert_eq!(MIDNIGHT % DAY, 0);
    assert_eq!(day_start(MIDNIGHT, 0), MIDNIGHT);
    assert_eq!(day_start(MIDNIGHT + DAY - 1, 0), MIDNIGHT);
    assert_eq!(day_start(MIDNIGHT - 1, 0), MIDNIGHT - DAY);
}

#[test]
fn days_start_at_the_reset_time_on_either_side_of_midnight() {
    let reset = 6 * H + 30 * 60; // 06:30 UTC
    assert_eq!(day_start(MIDNIGHT + reset, reset), MIDNIGHT + reset);
    assert_eq!(
        day_start(MIDNIGHT + reset - 1, reset),
        MIDNIGHT - DAY + reset
    );
    // 23:59 and 00:01 belong to the same budget day when it starts at 06:30.
    assert_eq!(
        day_start(MIDNIGHT - 60, reset),
        day_start(MIDNIGHT + 60, reset)
    );
    let late = 23 * H + 59 * 60; // 23:59 UTC
    assert_eq!(day_start(MIDNIGHT + late, late), MIDNIGHT + late);
    assert_eq!(day_start(MIDNIGHT + 12 * H, late), MIDNIGHT - DAY + late);
}

#[test]
fn the_count_resets_when_the_budget_day_turns_not_at_midnight() {
    let budget = Budget::default();
    budget.set_reset_at(Duration::from_secs(6 * H), MIDNIGHT);
    budget.add(MIDNIGHT - H, 100); // 23:00, the day that started at 06:00 yesterday
    budget.add(MIDNIGHT + H, 50); // 01:00, the same budget day
    assert_eq!(budget.used(MIDNIGHT + 5 * H), 150);
    assert_eq!(
        budget.used(MIDNIGHT + 6 * H),
        0,
        "a new day has nothing used"
    );
    budget.add(MIDNIGHT + 6 * H, 7);
    assert_eq!(budget.used(MIDNIGHT + 7 * H), 7);
}

#[test]
fn a_new_reset_time_carries_the_count_of_the_day_in_progress() {
    let budget = Budget::default();
    budget.add(MIDNIGHT + 10 * H, 40);
    budget.set_reset_at(Duration::from_secs(8 * H), MIDNIGHT + 10 * H);
    assert_eq!(budget.used(MIDNIGHT + 10 * H), 40);
    assert_eq!(budget.used(MIDNIGHT + DAY + 8 * H), 0);
}

#[test]
fn a_saved_count_comes_back_only_within_its_day() {
    let budget = Budget::default();
    let saved = Saved {
        day_start: MIDNIGHT,
        tokens: 900,
    };
    assert!(!budget.restore(saved, MIDNIGHT + DAY), "that day is over");
    assert_eq!(budget.used(MIDNIGHT + DAY), 0);
    assert!(budget.restore(saved, MIDNIGHT + 3 * H));
    assert_eq!(budget.used(MIDNIGHT + 3 * H), 900);
}

#[test]
fn the_store_writes_changes_only_and_reads_them_back() {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-budget-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    let signals = Signals::new();
    let store = BudgetStore::open(&dir, signals.clone()).unwrap();
    assert!(!store.save().unwrap(), "nothing used, nothing to write");
    signals.budget().add(now_secs(), 1234);
    assert!(store.save().unwrap());
    assert!(!store.save().unwrap(), "unchanged");
    let restarted = Signals::new();
    BudgetStore::open(&dir, restarted.clone()).unwrap();
    assert_eq!(restarted.tokens_today(), 1234);
    std::fs::remove_dir_all(dir).unwrap();
}
