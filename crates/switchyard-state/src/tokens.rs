//! Tokens used in the current budget day: counted by the data path with atomic adds, over
//! a budget day that starts at a configured time (UTC). The signals own the count; the
//! budget module saves it and admits against it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Seconds in a day.
pub const DAY: u64 = 86_400;

/// The start (Unix seconds) of the budget day containing `now`, for days that start `reset`
/// seconds after midnight UTC.
pub fn day_start(now: u64, reset: u64) -> u64 {
    let reset = reset % DAY;
    now.saturating_sub(reset) / DAY * DAY + reset
}

/// Tokens used in the current budget day. Only atomics: the data path never waits here.
#[derive(Debug, Default)]
pub struct Budget {
    /// Seconds after midnight UTC when a budget day starts.
    reset: AtomicU64,
    /// The start of the budget day `tokens` counts.
    day: AtomicU64,
    tokens: AtomicU64,
}

impl Budget {
    /// Adds an exchange's tokens at `now` (Unix seconds).
    pub fn add(&self, now: u64, tokens: u64) {
        let day = day_start(now, self.reset.load(Ordering::Relaxed));
        if self.day.load(Ordering::Relaxed) != day {
            // The first exchange of a new day resets the count; a race here can lose the
            // tokens of a few requests at the turn of the day, which a budget alert tolerates.
            self.day.store(day, Ordering::Relaxed);
            self.tokens.store(0, Ordering::Relaxed);
        }
        self.tokens.fetch_add(tokens, Ordering::Relaxed);
    }

    /// Tokens used in the budget day containing `now`.
    pub fn used(&self, now: u64) -> u64 {
        let day = day_start(now, self.reset.load(Ordering::Relaxed));
        if self.day.load(Ordering::Relaxed) != day {
            return 0;
        }
        self.tokens.load(Ordering::Relaxed)
    }

    /// Moves the start of the budget day. What the day in progress has used carries over to
    /// the re-aligned day containing `now`, rather than being dropped mid-day.
    pub fn set_reset_at(&self, reset_at: Duration, now: u64) {
        let new = reset_at.as_secs() % DAY;
        let old = self.reset.swap(new, Ordering::Relaxed);
        if old != new && self.day.load(Ordering::Relaxed) == day_start(now, old) {
            self.day.store(day_start(now, new), Ordering::Relaxed);
        }
    }

    /// The day counted and its tokens, as saved.
    pub(crate) fn saved(&self) -> Saved {
        Saved {
            day_start: self.day.load(Ordering::Relaxed),
            tokens: self.tokens.load(Ordering::Relaxed),
        }
    }

    /// Takes back a saved count if the budget day it was counted in has not ended at `now`.
    pub(crate) fn restore(&self, saved: Saved, now: u64) -> bool {
        let current = saved.day_start <= now && now < saved.day_start.saturating_add(DAY);
        if current {
            let day = day_start(now, self.reset.load(Ordering::Relaxed));
            self.day.store(day, Ordering::Relaxed);
            self.tokens.store(saved.tokens, Ordering::Relaxed);
        }
        current
    }
}

/// `budget.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Saved {
    /// Unix seconds when the budget day started.
    pub(crate) day_start: u64,
    pub(crate) tokens: u64,
}
