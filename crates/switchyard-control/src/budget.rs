//! The gateway-wide daily token budget: counted by the data path with atomic adds, over a
//! budget day that starts at a configured time (UTC), and kept in `state_dir/budget.json` by a
//! control-plane task so a restart does not forget what the day has used.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::signals::{now_secs, Signals};
use crate::state_file::{self, WriteError};

/// Seconds in a day.
pub const DAY: u64 = 86_400;

pub mod gate;
pub mod ledger;

pub use gate::{BudgetGate, GateSettings, Reservation, Verdict};

const FILE: &str = "budget.json";

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
    fn saved(&self) -> Saved {
        Saved {
            day_start: self.day.load(Ordering::Relaxed),
            tokens: self.tokens.load(Ordering::Relaxed),
        }
    }

    /// Takes back a saved count if the budget day it was counted in has not ended at `now`.
    fn restore(&self, saved: Saved, now: u64) -> bool {
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
struct Saved {
    /// Unix seconds when the budget day started.
    day_start: u64,
    tokens: u64,
}

/// Keeps the budget's count in `state_dir/budget.json`, off the data path.
#[derive(Debug)]
pub struct BudgetStore {
    path: PathBuf,
    signals: Arc<Signals>,
    /// What the file holds now, so an unchanged count is not rewritten.
    written: Mutex<Option<Saved>>,
}

impl BudgetStore {
    /// Reads the saved count back into `signals`' budget (whose reset time must already be
    /// set) if it belongs to the budget day in progress. An unusable file falls back to its
    /// previous generation; an error only when neither can be read.
    pub fn open(state_dir: &Path, signals: Arc<Signals>) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(state_dir)?;
        let path = state_dir.join(FILE);
        let saved = state_file::load::<Saved>(&path)?;
        if let Some(saved) = saved {
            let now = now_secs();
            if signals.budget().restore(saved, now) {
                tracing::info!(
                    tokens = saved.tokens,
                    "token budget: the day's count read back"
                );
            }
        }
        Ok(Arc::new(BudgetStore {
            path,
            signals,
            written: Mutex::new(saved),
        }))
    }

    /// Writes the count if it changed since the last write; `Ok(true)` when it wrote.
    pub fn save(&self) -> Result<bool, WriteError> {
        // Read under the lock: two saves racing (the periodic one and the one at shutdown)
        // then write in the order they read, so the newer count is the one left on disk.
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        let now = self.signals.budget().saved();
        let nothing_counted = written.is_none() && now.day_start == 0;
        if *written == Some(now) || nothing_counted {
            return Ok(false);
        }
        state_file::save(&self.path, &now)?;
        *written = Some(now);
        Ok(true)
    }

    /// Saves every `every` while the count changes. The writes run on the blocking pool, so
    /// an fsync never holds up a worker that serves requests.
    pub async fn run(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let store = self.clone();
            match tokio::task::spawn_blocking(move || store.save()).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::error!(%error, "token budget not saved"),
                Err(error) => tracing::error!(%error, "token budget save did not finish"),
            }
        }
    }
}

#[cfg(test)]
mod tests;
