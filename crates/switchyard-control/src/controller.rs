//! The controller: advances staged rollouts, rolls them back when a trigger fires, runs the
//! rules' actions and keeps the experiments' sequential tests current. It works off the data
//! path on the signals' windows, and acts through [`Steering`], which requests read with one
//! atomic load.
//!
//! One room per concern: `plan` (a config put in force), `tick` (one look at everything),
//! `rollouts` (stages, triggers, rollback and promote), `rules` (firings and throttles),
//! `downgrades` (approve and release), `evidence` (incidents), `shared` and `judge` (fleet
//! mode). Decisions are taken under one lock and leave [`effects::Effects`]: the state file,
//! the incident records and the webhooks are written and sent once the lock is released.

mod downgrades;
mod effects;
mod evidence;
mod judge;
mod plan;
mod rollouts;
mod rules;
mod shared;
#[cfg(test)]
mod testing;
mod throttles;
mod tick;
mod vocab;

pub use shared::{Decided, ShiftError};
pub use tick::TICK;
pub use vocab::{Actor, Cause, DecisionKind, RuleFiring};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use switchyard_config::{IncidentSettings, Rollback, Rollout, Rule};

use crate::alerts::Alerts;
use crate::history::ErrorHistory;
use crate::incidents::Incidents;
use crate::notify::Notifier;
use crate::rollout::{RolloutState, RolloutStore};
use crate::signals::Signals;
use crate::steer::Steering;

/// Who the controller's own actions are by.
pub const BY: &str = "controller";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One route as the controller needs it.
#[derive(Debug, Clone)]
struct RoutePlan {
    name: String,
    upstream: String,
    rollout: Option<Rollout>,
    rollback: Rollback,
}

/// What the config asks of the controller.
#[derive(Debug, Clone, Default)]
struct Plan {
    version: String,
    routes: Vec<RoutePlan>,
    rules: Vec<Rule>,
    incidents: IncidentSettings,
}

/// Why an operator's action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("route {0:?} has no rollout")]
    NoRollout(String),
    #[error("route {route:?} is already {phase}")]
    AlreadyThere { route: String, phase: &'static str },
    #[error("no rule {0:?}; GET /admin/status lists the rules firing, gateway.toml all of them")]
    UnknownRule(String),
    #[error("rule {0:?} does not downgrade a model: there is nothing to approve or release")]
    NotADowngrade(String),
    #[error("route {0:?} is not one the rule watches")]
    UnknownRoute(String),
    #[error("rule {0:?} applies to several routes ({1}); name one with {{\"route\": ...}}")]
    WhichRoute(String, String),
    #[error("rule {rule:?} is not waiting for approval on route {route:?}")]
    NotAwaiting { rule: String, route: String },
    #[error("rule {rule:?} has no downgrade in force on route {route:?}")]
    NotInForce { rule: String, route: String },
}

/// What a rollback or promotion did.
#[derive(Debug, Clone)]
pub struct Shift {
    pub before: RolloutState,
    pub after: RolloutState,
    pub incident: Option<String>,
    /// Microseconds from the call to the atomic store.
    pub took_us: u64,
    /// Whether the new state reached state_dir; it is in force either way.
    pub persisted: Result<(), String>,
}

#[derive(Debug, Default)]
struct Inner {
    plan: Plan,
    rollouts: BTreeMap<String, RolloutState>,
    /// Green exchanges counted so far, per route, to add each look's new ones to the stage.
    green_seen: HashMap<String, u64>,
    rules: BTreeMap<(String, String), RuleFiring>,
    /// When each route was last looked at.
    last_look: HashMap<String, Instant>,
    /// Route → the rule whose downgrade is in force there, and its model.
    downgrades: HashMap<String, (String, String)>,
    dirty_since: Option<Instant>,
    ticks: u64,
    /// The number of the last snapshot of `rollouts` handed to the writer: a write never
    /// replaces a newer snapshot with an older one.
    snapshots: u64,
    /// Fleet mode: routes with a decision on its way to Redis; the fleet's older state is
    /// not adopted for them meanwhile.
    in_flight: HashSet<String>,
}

impl Inner {
    /// The rollback window of `route` in seconds, for an operator's trigger (120 if the route
    /// is gone from the plan).
    fn rollback_window(&self, route: &str) -> u64 {
        self.plan
            .routes
            .iter()
            .find(|r| r.name == route)
            .map_or(120, |r| r.rollback.window.as_secs())
    }
}

/// See the module documentation.
pub struct Controller {
    signals: Arc<Signals>,
    alerts: Arc<Alerts>,
    notifier: Notifier,
    incidents: Arc<Incidents>,
    steering: Arc<Steering>,
    writer: effects::StateWriter,
    history: ErrorHistory,
    inner: Mutex<Inner>,
    /// Fleet mode: decisions go through the fleet's shared state.
    fleet: OnceLock<shared::Link>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller").finish_non_exhaustive()
    }
}

impl Controller {
    /// A controller with the rollouts persisted in `store` (`states` as loaded from it).
    pub fn new(
        parts: (
            Arc<Signals>,
            Arc<Alerts>,
            Notifier,
            Arc<Incidents>,
            Arc<Steering>,
        ),
        store: RolloutStore,
        states: BTreeMap<String, RolloutState>,
    ) -> Arc<Self> {
        let (signals, alerts, notifier, incidents, steering) = parts;
        let history = ErrorHistory::open(store.dir(), &signals);
        Arc::new(Controller {
            history,
            signals,
            alerts,
            notifier,
            incidents,
            steering,
            writer: effects::StateWriter::new(store),
            inner: Mutex::new(Inner {
                rollouts: states,
                ..Inner::default()
            }),
            fleet: OnceLock::new(),
        })
    }

    pub fn steering(&self) -> &Arc<Steering> {
        &self.steering
    }

    pub fn incidents(&self) -> &Arc<Incidents> {
        &self.incidents
    }

    /// Every rollout, by route.
    pub fn rollouts(&self) -> Vec<RolloutState> {
        lock(&self.inner).rollouts.values().cloned().collect()
    }

    pub fn rollout(&self, route: &str) -> Option<RolloutState> {
        lock(&self.inner).rollouts.get(route).cloned()
    }

    /// Rules firing now.
    pub fn rules_firing(&self) -> Vec<RuleFiring> {
        lock(&self.inner).rules.values().cloned().collect()
    }
}
