//! Rollouts in the shared state: one record per route, numbered by an epoch, changed only by
//! decisions that name the epoch and the decision count they were taken on.
//!
//! A decision is a compare-and-set on the record as much as on the document: it applies only
//! if the rollout is still the same attempt (`epoch`) and, for the controller's own
//! decisions, nothing was decided since it looked (`decisions`). Two replicas that see the
//! same failing green both propose a rollback; the first one written wins, the second finds
//! the outcome already taken and changes nothing. A rollback therefore happens once per
//! epoch, however many replicas saw it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::rollout::{Phase, RolloutState};

/// One route's rollout as the fleet shares it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedRollout {
    /// The attempt: grows by one each time a replica starts a new rollout on the route
    /// (a new green or blue in its config).
    pub epoch: u64,
    /// Decisions taken in this epoch (stages, rollbacks, promotions); a decision proposed on
    /// an older count is refused.
    #[serde(default)]
    pub decisions: u64,
    /// The replica that took the last decision, or started the epoch.
    #[serde(default)]
    pub replica: String,
    pub state: RolloutState,
}

/// What a decision does to a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Decision {
    /// Every user back to blue.
    RollBack { reason: String, by: String },
    /// Every user to green.
    Promote { reason: String, by: String },
    /// The next stage, from the stage it was judged at.
    Advance { from_stage: usize },
}

/// A decision on one route's rollout, as proposed by one replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub route: String,
    pub epoch: u64,
    /// The decision count the proposer saw; `None` for an operator's decision, which applies
    /// whatever was decided since (it is refused only if it changes nothing).
    pub decisions: Option<u64>,
    pub decision: Decision,
    pub replica: String,
    pub at_ms: u64,
}

/// Why a proposal changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the fleet has no rollout on route {0:?}")]
    NoRollout(String),
    #[error("the fleet's rollout on route {route:?} is epoch {current}, not {proposed}")]
    OtherEpoch {
        route: String,
        current: u64,
        proposed: u64,
    },
    #[error("no downgrade is in force on route {0:?} in the fleet")]
    NotInForce(String),
    #[error("the fleet holds no such throttle on route {0:?}")]
    NoThrottle(String),
    #[error("the fleet already holds this throttle on route {0:?}")]
    Throttled(String),
    #[error("the fleet already has this rollout on route {0:?}")]
    Registered(String),
    #[error("already decided: route {route:?} is {phase} (decided by {replica})")]
    Decided {
        route: String,
        phase: &'static str,
        replica: String,
    },
}

impl Proposal {
    /// Applies the proposal to the records; returns the route's rollout before and after.
    pub fn apply(
        &self,
        rollouts: &mut BTreeMap<String, SharedRollout>,
    ) -> Result<(RolloutState, RolloutState), Refusal> {
        let record = rollouts
            .get_mut(&self.route)
            .ok_or_else(|| Refusal::NoRollout(self.route.clone()))?;
        if record.epoch != self.epoch {
            return Err(Refusal::OtherEpoch {
                route: self.route.clone(),
                current: record.epoch,
                proposed: self.epoch,
            });
        }
        let decided = |record: &SharedRollout| Refusal::Decided {
            route: self.route.clone(),
            phase: record.state.phase.as_str(),
            replica: record.replica.clone(),
        };
        if self.decisions.is_some_and(|seen| seen != record.decisions) {
            return Err(decided(record));
        }
        let before = record.state.clone();
        let open = match &self.decision {
            Decision::RollBack { .. } => before.phase != Phase::RolledBack,
            Decision::Promote { .. } => before.phase != Phase::Complete,
            Decision::Advance { from_stage } => {
                before.phase == Phase::Shifting && before.stage == *from_stage
            }
        };
        if !open {
            return Err(decided(record));
        }
        let state = &mut record.state;
        match &self.decision {
            Decision::RollBack { reason, by } => state.roll_back(self.at_ms, reason, by),
            Decision::Promote { reason, by } => state.promote(self.at_ms, reason, by),
            Decision::Advance { .. } => state.advance(self.at_ms),
        }
        state.stage_requests = 0;
        record.decisions += 1;
        state.decisions = record.decisions;
        record.replica.clone_from(&self.replica);
        Ok((before, record.state.clone()))
    }
}

/// Registers a replica's rollout in the shared records: a route without a record, or whose
/// record is an older attempt at another green or blue, gets a new epoch. A record for the
/// same blue and green is left as it is (the replica adopts it); so is a newer one for another
/// green (the replica runs an older config, and must not undo the fleet's newer rollout).
/// Returns the new epoch, or `None` when nothing changed.
///
/// The epoch is above the document's `version` (the version this change is written over):
/// versions only grow, so an epoch is never reused, even when a record was lost (a replica
/// of an older layout rewrote the document without it) and is registered again.
pub fn start(
    rollouts: &mut BTreeMap<String, SharedRollout>,
    local: &RolloutState,
    replica: &str,
    version: u64,
) -> Option<u64> {
    let epoch = match rollouts.get(&local.route) {
        None => version + 1,
        Some(r) if same_attempt(&r.state, local) => return None,
        Some(r) if r.state.started_at_ms >= local.started_at_ms => return None,
        Some(r) => (r.epoch + 1).max(version + 1),
    };
    let mut state = local.clone();
    state.stage_requests = 0;
    state.epoch = epoch;
    state.decisions = 0;
    rollouts.insert(
        local.route.clone(),
        SharedRollout {
            epoch,
            decisions: 0,
            replica: replica.to_owned(),
            state,
        },
    );
    Some(epoch)
}

/// Whether two states are the same rollout (same route, blue and green).
pub fn same_attempt(a: &RolloutState, b: &RolloutState) -> bool {
    a.route == b.route && a.blue == b.blue && a.green == b.green
}

/// A model downgrade an operator approved, in force on every replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedDowngrade {
    pub rule: String,
    pub model: String,
    pub by: String,
    pub at_ms: u64,
}

/// A throttle a rule firing on one replica put in force on a route: every replica admits at
/// most `rps` requests a second on the route while it lasts (the lowest of all the throttles
/// in force there wins). The replica that holds it lifts it when its rule clears.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedThrottle {
    pub route: String,
    pub rule: String,
    /// The replica whose rule fired.
    pub replica: String,
    pub rps: f64,
    pub since_ms: u64,
}

impl SharedThrottle {
    /// Whether `other` is the same rule's throttle from the same replica on the same route.
    pub fn same_holder(&self, other: &SharedThrottle) -> bool {
        self.route == other.route && self.rule == other.rule && self.replica == other.replica
    }
}

/// What a replica's controller does with the fleet's rollouts.
pub trait RolloutHost: Send + Sync {
    /// Puts the fleet's rollouts and approved downgrades in force on this replica.
    fn adopt(&self, shared: &super::store::SharedState);
    /// This replica's rollouts, to register those the fleet does not have yet.
    fn local_rollouts(&self) -> Vec<RolloutState>;
}

#[cfg(test)]
mod tests;
