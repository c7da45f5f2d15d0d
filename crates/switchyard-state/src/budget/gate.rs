//! Admission against the daily token budget: a request reserves its estimate before it is
//! forwarded and settles the tokens it really spent when it ends.
//!
//! One replica keeps the reservations in its own [`Ledger`], against the used count the
//! signals keep (and save in `state_dir`, so a restart remembers the day); in fleet mode
//! both live in Redis, behind a [`SharedBudget`] the control plane's fleet mode provides. With
//! `enforce` off (the default) nothing is reserved and nothing refused: the budget only
//! counts and alerts, as it always did.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use switchyard_config::Enforcement;
use switchyard_core::metrics as names;

use super::ledger::Ledger;
use super::{day_start, DAY};
use crate::kill::now_ms;
use crate::Signals;

/// The budget as the config in force sets it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GateSettings {
    pub daily_tokens: Option<u64>,
    /// Seconds after midnight UTC when a budget day starts.
    pub reset_secs: u64,
    pub enforcement: Enforcement,
}

impl GateSettings {
    pub fn from_config(budgets: &switchyard_config::Budgets) -> Self {
        GateSettings {
            daily_tokens: budgets.daily_tokens,
            reset_secs: budgets.reset_at.as_secs(),
            enforcement: budgets.enforcement.clone(),
        }
    }

    /// The budget, when one is enforced.
    pub fn enforced(&self) -> Option<u64> {
        self.daily_tokens.filter(|_| self.enforcement.enforce)
    }

    /// The start of the budget day containing `now_ms`.
    pub fn day(&self, now_ms: u64) -> u64 {
        day_start(now_ms / 1000, self.reset_secs)
    }

    /// Seconds until the budget day containing `now_ms` ends.
    pub fn secs_left_in_day(&self, now_ms: u64) -> u64 {
        (self.day(now_ms) + DAY)
            .saturating_sub(now_ms / 1000)
            .max(1)
    }
}

/// A budget several replicas share (fleet mode keeps it in Redis). Once a gate has joined
/// one, reservations go to it instead of the gate's own ledger.
pub trait SharedBudget: std::fmt::Debug + Send + Sync + 'static {
    /// Reserves `tokens` for request `id`: `Ok(Some)` admitted, `Ok(None)` exhausted, `Err`
    /// refused because the shared state is out of reach and the policy is `fail_closed`.
    /// Boxed: only fleet mode comes here, once per request, next to a Redis round trip.
    fn admit<'a>(
        &'a self,
        settings: &'a GateSettings,
        budget: u64,
        id: Box<str>,
        tokens: u64,
    ) -> Pin<Box<dyn Future<Output = Result<Option<Ticket>, ()>> + Send + 'a>>;

    /// Settles a reservation with the tokens really spent; never waits.
    fn settle(&self, ticket: Ticket, tokens: u64);

    /// The implementation, for the control plane that joined it.
    fn as_any(&self) -> &dyn Any;
}

/// How a shared reservation was made, and so how it settles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketKind {
    /// Held in the shared store under its id.
    Exact,
    /// Taken from this replica's lease.
    Lease,
    /// Admitted by the outage policy, in the local ledger of outage `epoch`.
    Outage { epoch: u64 },
}

/// A reservation made through a [`SharedBudget`].
#[derive(Debug)]
pub struct Ticket {
    pub kind: TicketKind,
    pub day: u64,
    pub id: Box<str>,
    /// The estimate reserved.
    pub tokens: u64,
}

/// What admission decided.
#[derive(Debug)]
pub enum Verdict {
    /// Not enforced, or not a request that spends tokens: nothing was reserved.
    Unmetered,
    Admitted(Reservation),
    /// The day's budget is used or reserved (429); retry once the day turns.
    Exhausted {
        retry_after_secs: u64,
    },
    /// Fleet mode, Redis out of reach, `outage_policy = "fail_closed"` (503).
    Unavailable,
}

/// Where a reservation is held.
#[derive(Debug)]
enum Held {
    Local { day: u64, id: Box<str> },
    Fleet(Ticket),
}

/// Tokens held for one request until it settles. Dropped without settling, it settles its
/// estimate: what a request that vanished may have cost.
#[derive(Debug)]
pub struct Reservation {
    gate: Arc<BudgetGate>,
    held: Option<Held>,
    pub tokens: u64,
}

impl Reservation {
    /// Replaces the reservation with `tokens` really spent.
    pub fn settle(mut self, tokens: u64) {
        self.settle_held(tokens);
    }

    fn settle_held(&mut self, tokens: u64) {
        match self.held.take() {
            None => {}
            Some(Held::Local { day, id }) => {
                // The tokens themselves are counted by the signals, which record the exchange
                // before it settles: for a moment they count twice, never not at all.
                let _ = tokens;
                self.gate.ledger.release(day, &id);
                self.gate.publish_local();
            }
            Some(Held::Fleet(ticket)) => {
                if let Some(fleet) = self.gate.fleet.get() {
                    fleet.settle(ticket, tokens);
                }
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let estimate = self.tokens;
        self.settle_held(estimate);
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct BudgetGate {
    settings: ArcSwap<GateSettings>,
    /// A single replica's used count (the fleet's is in Redis).
    signals: Arc<Signals>,
    ledger: Ledger,
    fleet: OnceLock<Arc<dyn SharedBudget>>,
}

impl BudgetGate {
    pub fn new(settings: GateSettings, signals: Arc<Signals>) -> Arc<Self> {
        Arc::new(BudgetGate {
            settings: ArcSwap::from_pointee(settings),
            signals,
            ledger: Ledger::default(),
            fleet: OnceLock::new(),
        })
    }

    /// A reload: the new budget applies to the next admission.
    pub fn configure(&self, settings: GateSettings) {
        self.settings.store(Arc::new(settings));
    }

    pub fn settings(&self) -> Arc<GateSettings> {
        self.settings.load_full()
    }

    /// Fleet mode: reservations go to the shared budget from now on.
    pub fn join_fleet(&self, fleet: Arc<dyn SharedBudget>) {
        let _ = self.fleet.set(fleet);
    }

    /// The shared budget joined, if any.
    pub fn shared(&self) -> Option<&Arc<dyn SharedBudget>> {
        self.fleet.get()
    }

    /// The tokens a request reserves: its prompt estimate and its completion cap (or
    /// `reserve_max_tokens` when it sets none).
    pub fn estimate(&self, prompt_estimate: u64, max_tokens: Option<u64>) -> u64 {
        let cap = max_tokens.unwrap_or(self.settings.load().enforcement.reserve_max_tokens);
        prompt_estimate.saturating_add(cap)
    }

    /// Reserves `tokens` for the request `request_id`, or refuses it. The only awaiting is
    /// fleet mode's one Redis call, bounded by `command_timeout` and the circuit breaker.
    pub async fn admit(self: &Arc<Self>, request_id: &str, tokens: u64) -> Verdict {
        let settings = self.settings.load_full();
        let Some(budget) = settings.enforced() else {
            return Verdict::Unmetered;
        };
        // Unique per admission: a client may send the same request id twice.
        let id: Box<str> = format!("{request_id}#{:016x}", fastrand::u64(..)).into();
        if let Some(fleet) = self.fleet.get() {
            return match fleet.admit(&settings, budget, id, tokens).await {
                Ok(Some(ticket)) => self.reservation(Held::Fleet(ticket), tokens),
                Ok(None) => exhausted(&settings),
                Err(()) => Verdict::Unavailable,
            };
        }
        let now = now_ms();
        let day = settings.day(now);
        let ttl = settings.enforcement.reservation_ttl.as_millis() as u64;
        let used = self.signals.budget().used(now / 1000);
        let reserved = self
            .ledger
            .reserve(day, &id, (tokens, budget, used), (now, ttl));
        self.publish_local();
        match reserved {
            Ok(_) => self.reservation(Held::Local { day, id }, tokens),
            Err(_) => exhausted(&settings),
        }
    }

    fn reservation(self: &Arc<Self>, held: Held, tokens: u64) -> Verdict {
        Verdict::Admitted(Reservation {
            gate: self.clone(),
            held: Some(held),
            tokens,
        })
    }

    /// The single replica's counts, for the gauges.
    fn publish_local(&self) {
        let settings = self.settings.load();
        let now = now_ms();
        let totals = self.ledger.totals(settings.day(now), now);
        let used = self.signals.budget().used(now / 1000);
        metrics::gauge!(names::BUDGET_USED_TOKENS).set(used as f64);
        metrics::gauge!(names::BUDGET_RESERVED_TOKENS).set(totals.reserved as f64);
    }
}

fn exhausted(settings: &GateSettings) -> Verdict {
    Verdict::Exhausted {
        retry_after_secs: settings.secs_left_in_day(now_ms()),
    }
}

#[cfg(test)]
mod tests;
