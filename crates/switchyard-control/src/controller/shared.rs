//! Fleet mode: the controller's decisions go through the fleet's shared state.
//!
//! An automatic rollback is in force on this replica at once (safety first), and proposed to
//! the fleet as a decision on the rollout's epoch; the replica whose proposal Redis accepts
//! opens the incident and notifies, the others find it decided and take the fleet's state.
//! A stage advance is proposed the same way and put in force only once Redis accepted it.
//! The fleet's records reach the controller through [`RolloutHost::adopt`].

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock, Weak};

use serde_json::json;
use switchyard_core::metrics as names;

use super::effects::Effects;
use super::rollouts::{advance_event, promote_event, rollback_event};
use super::vocab::{Actor, Cause, DecisionKind, RollbackNews};
use super::{lock, ActionError, Controller, Inner, Shift};
use crate::fleet::rollouts::{
    same_attempt, Decision, Proposal, RolloutHost, SharedDowngrade, SharedRollout, SharedThrottle,
};
use crate::fleet::store::SharedState;
use crate::fleet::streams::Sink;
use crate::fleet::{Change, Fleet, FleetError};
use crate::incidents::{Incident, Trigger};
use crate::kill::now_ms;
use crate::rollout::{Phase, RolloutState};

/// The controller's tie to its fleet.
pub(super) struct Link {
    pub(super) fleet: Arc<Fleet>,
    this: Weak<Controller>,
    /// Where the decisions this replica took for the fleet are audited.
    audit: OnceLock<Sink<Decided>>,
    /// The last second whose counts were published.
    pub(super) published: AtomicU64,
    /// The fleet's approved downgrades as last applied here.
    pub(super) downgrades: std::sync::Mutex<BTreeMap<String, SharedDowngrade>>,
    /// The fleet's rule throttles as last adopted here.
    pub(super) throttles: std::sync::Mutex<Vec<SharedThrottle>>,
    /// A change to this replica's throttles in the fleet is on its way to Redis.
    pub(super) throttling: std::sync::atomic::AtomicBool,
}

/// A decision the controller took for the fleet (Redis accepted it, or Redis was out of
/// reach and it was taken here), for the audit log.
#[derive(Debug, Clone)]
pub struct Decided {
    pub action: DecisionKind,
    pub route: String,
    /// The controller, or a rule.
    pub by: Actor,
    pub reason: Option<String>,
    pub before: RolloutState,
    pub after: RolloutState,
    /// `false` when Redis was out of reach: in force on this replica, replayed later.
    pub shared: bool,
}

/// Why an operator's rollback or promotion was not made.
#[derive(Debug, thiserror::Error)]
pub enum ShiftError {
    #[error(transparent)]
    Action(#[from] ActionError),
    #[error(transparent)]
    Fleet(#[from] FleetError),
}

/// How a proposal ended, for `switchyard_fleet_decisions_total{result}`.
fn result_label(outcome: &Result<(RolloutState, RolloutState), FleetError>) -> &'static str {
    match outcome {
        Ok(_) => "won",
        Err(FleetError::Refused(_)) => "deduplicated",
        Err(FleetError::Unavailable(_) | FleetError::Contended) => "local",
    }
}

fn count(decision: &'static str, result: &'static str) {
    metrics::counter!(names::FLEET_DECISIONS_TOTAL, "decision" => decision, "result" => result)
        .increment(1);
}

impl Controller {
    /// Fleet mode: decisions go through `fleet`, and the fleet's rollouts come back here.
    pub fn join_fleet(self: &Arc<Self>, fleet: Arc<Fleet>) {
        let host: Weak<dyn RolloutHost> = Arc::downgrade(self) as Weak<dyn RolloutHost>;
        fleet.set_host(host);
        let _ = self.fleet.set(Link {
            fleet,
            this: Arc::downgrade(self),
            audit: OnceLock::new(),
            published: AtomicU64::new(0),
            downgrades: std::sync::Mutex::default(),
            throttles: std::sync::Mutex::default(),
            throttling: std::sync::atomic::AtomicBool::new(false),
        });
        super::judge::spawn(self);
    }

    /// Fleet mode: where the decisions this replica takes for the fleet are audited.
    pub fn set_decision_sink(&self, sink: Sink<Decided>) {
        if let Some(link) = self.fleet.get() {
            let _ = link.audit.set(sink);
        }
    }

    fn audit(&self, decided: Decided) {
        if let Some(sink) = self.fleet.get().and_then(|link| link.audit.get()) {
            sink.send(&decided);
        }
    }

    pub(super) fn fleet(&self) -> Option<&Arc<Fleet>> {
        self.fleet.get().map(|link| &link.fleet)
    }

    /// The runtime, this controller and the fleet, to run a decision on (unit tests tick
    /// without a runtime, and without a fleet).
    pub(super) fn runner(&self) -> Option<(tokio::runtime::Handle, Arc<Controller>, Arc<Fleet>)> {
        let link = self.fleet.get()?;
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        Some((runtime, link.this.upgrade()?, link.fleet.clone()))
    }

    /// Proposes the rollback just put in force here; the incident is opened by whichever
    /// replica Redis accepts first, or here if Redis is out of reach.
    pub(super) fn propose_rollback(
        &self,
        inner: &mut Inner,
        before: &RolloutState,
        (reason, by): (&str, &Actor),
        draft: Incident,
        news: RollbackNews,
        effects: &mut Effects,
    ) {
        let route = before.route.clone();
        let proposal = Proposal {
            route: route.clone(),
            epoch: before.epoch,
            decisions: Some(before.decisions),
            decision: Decision::RollBack {
                reason: reason.to_owned(),
                by: by.to_string(),
            },
            replica: self
                .fleet()
                .map(|f| f.instance_id().to_owned())
                .unwrap_or_default(),
            at_ms: now_ms(),
        };
        let Some((runtime, this, fleet)) = self.runner() else {
            let id = self.open_incident(draft, effects);
            effects.tell(rollback_event(&route, news, &id));
            return;
        };
        inner.in_flight.insert(route);
        runtime.spawn(async move {
            let outcome = fleet.decide(proposal.clone()).await;
            this.rollback_decided(&fleet, proposal, outcome, draft, news);
        });
    }

    // Long: one arm per way the fleet can answer, each with its own audit and incident.
    fn rollback_decided(
        &self,
        fleet: &Fleet,
        proposal: Proposal,
        outcome: Result<(RolloutState, RolloutState), FleetError>,
        mut draft: Incident,
        news: RollbackNews,
    ) {
        let route = proposal.route.clone();
        let result = result_label(&outcome);
        count("rollback", result);
        let decided = |shared: bool| {
            let before = draft.rollout_before.clone();
            let after = draft.rollout_after.clone();
            let parse = |v: Option<serde_json::Value>| {
                v.and_then(|v| serde_json::from_value::<RolloutState>(v).ok())
            };
            let (Some(before), Some(after)) = (parse(before), parse(after)) else {
                return None;
            };
            Some(Decided {
                action: DecisionKind::Rollback,
                route: route.clone(),
                by: news.by.clone(),
                reason: Some(draft.reason.clone()),
                before,
                after,
                shared,
            })
        };
        match outcome {
            Ok(_) => {
                self.settle(fleet, &route);
                if let Some(decided) = decided(true) {
                    self.audit(decided);
                }
                self.open_and_tell(draft, &route, news);
            }
            Err(FleetError::Refused(refusal)) => {
                self.settle(fleet, &route);
                tracing::info!(route, %refusal, "rollback already decided by the fleet; taking its state");
            }
            Err(error) => {
                // Safety first: the rollback stays in force here, and is replayed into Redis
                // (deduplicated by epoch) once it is back.
                tracing::error!(route, %error, "fleet: rollback kept on this replica; replayed when Redis is back");
                // Replayed whatever the fleet decided meanwhile in the epoch, unless it is
                // rolled back already: a green failing here is not undone by a later advance.
                let proposal = Proposal {
                    decisions: None,
                    ..proposal
                };
                fleet.keep_pending(Change::Decide { proposal });
                lock(&self.inner).in_flight.remove(&route);
                if let Some(decided) = decided(false) {
                    self.audit(decided);
                }
                if let Some(trigger) = draft.trigger.as_mut() {
                    trigger.figures["fleet"] = json!(
                        "Redis out of reach: decided on this replica, replayed when it is back"
                    );
                }
                self.open_and_tell(draft, &route, news);
            }
        }
    }

    /// Opens the incident of a rollback decided for the fleet, and tells the webhooks.
    fn open_and_tell(&self, draft: Incident, route: &str, news: RollbackNews) {
        let mut effects = Effects::default();
        let id = self.open_incident(draft, &mut effects);
        effects.tell(rollback_event(route, news, &id));
        let _ = self.carry_out(effects); // the incident's write is logged
    }

    /// The decision is settled in Redis: takes the fleet's records for the route again.
    fn settle(&self, fleet: &Fleet, route: &str) {
        let records = fleet.shared_rollouts();
        let mut effects = Effects::default();
        let mut inner = lock(&self.inner);
        inner.in_flight.remove(route);
        self.adopt_records(&mut inner, &records, &mut effects);
        drop(inner);
        let _ = self.carry_out(effects); // logged; in force either way
    }

    /// A stage baked on this replica: proposes the advance to the fleet, once.
    pub(super) fn propose_advance(&self, inner: &mut Inner, route: &str) {
        let Some(state) = inner.rollouts.get(route) else {
            return;
        };
        if state.epoch == 0 || inner.in_flight.contains(route) {
            return; // not registered yet, or a decision on its way
        }
        let proposal = Proposal {
            route: route.to_owned(),
            epoch: state.epoch,
            decisions: Some(state.decisions),
            decision: Decision::Advance {
                from_stage: state.stage,
            },
            replica: self
                .fleet()
                .map(|f| f.instance_id().to_owned())
                .unwrap_or_default(),
            at_ms: now_ms(),
        };
        let served = state.stage_requests;
        let Some((runtime, this, fleet)) = self.runner() else {
            return;
        };
        inner.in_flight.insert(route.to_owned());
        runtime.spawn(async move {
            let outcome = fleet.decide(proposal.clone()).await;
            let result = match result_label(&outcome) {
                // Without Redis a stage does not advance: the rollout is frozen.
                "local" => "frozen",
                other => other,
            };
            count("advance", result);
            this.settle(&fleet, &proposal.route);
            if let Ok((before, after)) = outcome {
                this.audit(Decided {
                    action: DecisionKind::Advance,
                    route: proposal.route.clone(),
                    by: Actor::Controller,
                    reason: Some(format!(
                        "stage {} baked on the fleet's traffic",
                        before.stage
                    )),
                    before,
                    after: after.clone(),
                    shared: true,
                });
                this.notifier.notify(advance_event(&after, served, true));
            }
        });
    }

    /// An operator's rollback or promotion. In fleet mode it is made through Redis and
    /// answered once this replica applied it; `local` forces it on this replica only.
    // Long: the single-replica, forced-local and fleet paths, checked in that order.
    pub async fn shift(
        &self,
        route: &str,
        by: &str,
        reason: &str,
        promote: bool,
        local: bool,
    ) -> Result<Shift, ShiftError> {
        let single = || {
            if promote {
                self.promote(route, by, reason)
            } else {
                self.rollback(route, by, reason)
            }
        };
        let Some(fleet) = self.fleet().cloned() else {
            return Ok(single()?);
        };
        let decision = if promote {
            Decision::Promote {
                reason: reason.to_owned(),
                by: by.to_owned(),
            }
        } else {
            Decision::RollBack {
                reason: reason.to_owned(),
                by: by.to_owned(),
            }
        };
        if local {
            let shift = single()?;
            let proposal = self.operator_proposal(&fleet, &shift.before, decision);
            fleet.keep_pending(Change::Decide { proposal });
            return Ok(shift);
        }
        let called = switchyard_core::clock::now();
        let current = self
            .rollout(route)
            .ok_or_else(|| ActionError::NoRollout(route.to_owned()))?;
        let there = if promote {
            Phase::Complete
        } else {
            Phase::RolledBack
        };
        if current.phase == there {
            return Err(ActionError::AlreadyThere {
                route: route.to_owned(),
                phase: there.as_str(),
            }
            .into());
        }
        if current.epoch == 0 {
            let why = "the rollout is not registered with the fleet yet (within one reconcile interval of a start or reload)";
            return Err(FleetError::Unavailable(why.into()).into());
        }
        let proposal = self.operator_proposal(&fleet, &current, decision);
        let (before, after) = fleet.decide(proposal).await.map_err(|e| match e {
            FleetError::Refused(_) => ShiftError::Action(ActionError::AlreadyThere {
                route: route.to_owned(),
                phase: there.as_str(),
            }),
            other => ShiftError::Fleet(other),
        })?;
        let took_us = called.elapsed().as_micros() as u64;
        let incident = self.after_operator_shift(&before, &after, by, reason, promote);
        Ok(Shift {
            before,
            after,
            incident,
            took_us,
            persisted: Ok(()),
        })
    }

    fn operator_proposal(
        &self,
        fleet: &Fleet,
        state: &RolloutState,
        decision: Decision,
    ) -> Proposal {
        Proposal {
            route: state.route.clone(),
            epoch: state.epoch,
            decisions: None,
            decision,
            replica: fleet.instance_id().to_owned(),
            at_ms: now_ms(),
        }
    }

    /// What an operator's fleet-wide shift leaves on the replica that took the call: the
    /// incident of a rollback, the webhooks, the metric.
    fn after_operator_shift(
        &self,
        before: &RolloutState,
        after: &RolloutState,
        by: &str,
        reason: &str,
        promote: bool,
    ) -> Option<String> {
        let route = after.route.as_str();
        let mut inner = lock(&self.inner);
        if promote {
            self.clean_slate(&mut inner, route, &after.green);
            drop(inner);
            self.notifier
                .notify(promote_event(before, after, by, reason));
            return None;
        }
        let window = inner.rollback_window(route);
        let trigger = Trigger {
            name: "operator".into(),
            value: 0.0,
            threshold: 0.0,
            window_secs: window,
            figures: json!({"reason": reason}),
        };
        let states = Some((before, after));
        let by = Actor::Operator(by.to_owned());
        let draft = self.draft_incident(&inner, "rollback", route, reason, &by, trigger, states);
        drop(inner);
        metrics::counter!(names::ROLLBACKS_TOTAL, "route" => route.to_owned(), "trigger" => Cause::Operator.label()).increment(1);
        let news = RollbackNews {
            trigger: Cause::Operator,
            value: 0.0,
            threshold: 0.0,
            by,
            green: after.green.clone(),
            blue: after.blue.clone(),
            incident: None,
            decision_latency_ms: None,
        };
        let mut effects = Effects::default();
        let id = self.open_incident(draft, &mut effects);
        effects.tell(rollback_event(route, news, &id));
        let _ = self.carry_out(effects); // the incident's write is logged
        Some(id)
    }

    /// Puts the fleet's records in force for the rollouts this replica runs.
    fn adopt_records(
        &self,
        inner: &mut Inner,
        records: &BTreeMap<String, SharedRollout>,
        effects: &mut Effects,
    ) {
        let mut changed = false;
        for (route, record) in records {
            if inner.in_flight.contains(route) {
                continue;
            }
            let Some(local) = inner.rollouts.get_mut(route) else {
                continue;
            };
            // Another blue or green: the replicas run different configs; each keeps its own.
            if !same_attempt(local, &record.state)
                || (local.epoch == record.epoch && local.decisions == record.decisions)
            {
                continue;
            }
            let was = local.phase;
            let same_stage = local.stage == record.state.stage && was == record.state.phase;
            let requests = local.stage_requests;
            *local = record.state.clone();
            local.epoch = record.epoch;
            local.decisions = record.decisions;
            if same_stage {
                local.stage_requests = requests;
            }
            let after = local.clone();
            if was == Phase::RolledBack && after.phase != Phase::RolledBack {
                // Promoted elsewhere: green is judged from now on only.
                self.clean_slate(inner, route, &after.green);
            }
            self.steering
                .update(route, |steer| steer.green_share = after.green_share());
            tracing::info!(
                route,
                phase = after.phase.as_str(),
                percent = after.percent,
                epoch = after.epoch,
                by = record.replica.as_str(),
                "rollout: the fleet's state applied"
            );
            changed = true;
        }
        if changed {
            effects.save(inner);
            self.publish_weights(inner);
        }
    }
}

impl RolloutHost for Controller {
    fn adopt(&self, shared: &SharedState) {
        let mut effects = Effects::default();
        let mut inner = lock(&self.inner);
        self.adopt_records(&mut inner, &shared.rollouts, &mut effects);
        self.adopt_downgrades(&mut inner, &shared.downgrades);
        self.adopt_throttles(&inner, &shared.throttles);
        drop(inner);
        let _ = self.carry_out(effects); // logged; in force either way
    }

    fn local_rollouts(&self) -> Vec<RolloutState> {
        lock(&self.inner).rollouts.values().cloned().collect()
    }
}
