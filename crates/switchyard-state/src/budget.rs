//! The gateway-wide daily token budget: counted by the data path with atomic adds, over a
//! budget day that starts at a configured time (UTC), and kept in `state_dir/budget.json` by a
//! control-plane task so a restart does not forget what the day has used.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::signals::{now_secs, Signals};
use crate::state_file::{self, WriteError};
use crate::tokens::Saved;

pub mod gate;
pub mod ledger;

pub use crate::tokens::{day_start, Budget, DAY};
pub use gate::{BudgetGate, GateSettings, Reservation, SharedBudget, Ticket, TicketKind, Verdict};

const FILE: &str = "budget.json";

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
