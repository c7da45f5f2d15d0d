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
use std::time::Instant;

use serde_json::json;
use switchyard_config::EventKind;
use switchyard_core::metrics as names;

use super::{lock, ActionError, Controller, Inner, Shift};
use crate::fleet::rollouts::{
    same_attempt, Decision, Proposal, RolloutHost, SharedDowngrade, SharedRollout,
};
use crate::fleet::store::SharedState;
use crate::fleet::streams::Sink;
use crate::fleet::{Change, Fleet, FleetError};
use crate::incidents::{Incident, Trigger};
use crate::kill::now_ms;
use crate::notify::Event;
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
    downgrades: std::sync::Mutex<BTreeMap<String, SharedDowngrade>>,
}

/// A decision the controller took for the fleet (Redis accepted it, or Redis was out of
/// reach and it was taken here), for the audit log.
#[derive(Debug, Clone)]
pub struct Decided {
    /// `rollback` or `advance`.
    pub action: &'static str,
    pub route: String,
    /// `controller` or `rule:<name>`.
    pub by: String,
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
    fn runner(&self) -> Option<(tokio::runtime::Handle, Arc<Controller>, Arc<Fleet>)> {
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
        (reason, by): (&str, &str),
        draft: Incident,
        detail: serde_json::Value,
    ) {
        let route = before.route.clone();
        let proposal = Proposal {
            route: route.clone(),
            epoch: before.epoch,
            decisions: Some(before.decisions),
            decision: Decision::RollBack {
                reason: reason.to_owned(),
                by: by.to_owned(),
            },
            replica: self
                .fleet()
                .map(|f| f.instance_id().to_owned())
                .unwrap_or_default(),
            at_ms: now_ms(),
        };
        let Some((runtime, this, fleet)) = self.runner() else {
            let id = self.write_incident(draft);
            self.notify_rollback(&route, detail, &id);
            return;
        };
        inner.in_flight.insert(route);
        runtime.spawn(async move {
            let outcome = fleet.decide(proposal.clone()).await;
            this.rollback_decided(&fleet, proposal, outcome, draft, detail);
        });
    }

    fn rollback_decided(
        &self,
        fleet: &Fleet,
        proposal: Proposal,
        outcome: Result<(RolloutState, RolloutState), FleetError>,
        mut draft: Incident,
        detail: serde_json::Value,
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
                action: "rollback",
                route: route.clone(),
                by: draft.by.clone(),
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
                let id = self.write_incident(draft);
                self.notify_rollback(&route, detail, &id);
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
                let id = self.write_incident(draft);
                self.notify_rollback(&route, detail, &id);
            }
        }
    }

    fn notify_rollback(&self, route: &str, mut detail: serde_json::Value, incident: &str) {
        detail["incident"] = json!(incident);
        self.notifier.notify(Event::new(
            EventKind::Rollback,
            Some(route.to_owned()),
            detail,
        ));
    }

    /// The decision is settled in Redis: takes the fleet's records for the route again.
    fn settle(&self, fleet: &Fleet, route: &str) {
        let records = fleet.shared_rollouts();
        let mut inner = lock(&self.inner);
        inner.in_flight.remove(route);
        self.adopt_records(&mut inner, &records);
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
                    action: "advance",
                    route: proposal.route.clone(),
                    by: super::BY.to_owned(),
                    reason: Some(format!(
                        "stage {} baked on the fleet's traffic",
                        before.stage
                    )),
                    before,
                    after: after.clone(),
                    shared: true,
                });
                this.notify_advance(&after, served);
            }
        });
    }

    fn notify_advance(&self, after: &RolloutState, served: u64) {
        let status = if after.phase == Phase::Complete {
            "completed"
        } else {
            "advanced"
        };
        tracing::info!(route = %after.route, percent = after.percent, served, status, "rollout stage (fleet)");
        self.notifier.notify(Event::new(
            EventKind::Rollout,
            Some(after.route.clone()),
            json!({"status": status, "green": after.green, "percent": after.percent, "stage": after.stage, "green_requests_in_stage": served}),
        ));
    }

    /// An operator's rollback or promotion. In fleet mode it is made through Redis and
    /// answered once this replica applied it; `local` forces it on this replica only.
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
        let called = Instant::now();
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
            self.notifier.notify(Event::new(
                EventKind::Promote,
                Some(route.to_owned()),
                json!({"by": by, "reason": reason, "green": after.green, "from": before.phase.as_str()}),
            ));
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
        let draft = self.draft_incident(&inner, "rollback", route, reason, by, trigger, states);
        drop(inner);
        metrics::counter!(names::ROLLBACKS_TOTAL, "route" => route.to_owned(), "trigger" => "operator").increment(1);
        let id = self.write_incident(draft);
        self.notify_rollback(
            route,
            json!({"trigger": "operator", "value": 0.0, "threshold": 0.0, "by": by,
                   "green": after.green, "blue": after.blue}),
            &id,
        );
        Some(id)
    }

    /// Puts the downgrades operators approved anywhere in the fleet in force here, and lifts
    /// those the fleet no longer has.
    fn adopt_downgrades(&self, inner: &mut Inner, shared: &BTreeMap<String, SharedDowngrade>) {
        let Some(link) = self.fleet.get() else {
            return;
        };
        let mut applied = lock(&link.downgrades);
        if *applied == *shared {
            return;
        }
        for (route, d) in shared {
            if applied.get(route) == Some(d) || !inner.plan.routes.iter().any(|r| r.name == *route)
            {
                continue;
            }
            self.steering.update(route, |s| {
                s.downgrade_to = Some(Arc::from(d.model.as_str()))
            });
            inner
                .downgrades
                .insert(route.clone(), (d.rule.clone(), d.model.clone()));
            if let Some(firing) = inner.rules.get_mut(&(d.rule.clone(), route.clone())) {
                firing.awaiting_approval = false;
            }
            tracing::info!(route, rule = %d.rule, model = %d.model, by = %d.by, "model downgrade: the fleet's approval applied");
        }
        for (route, d) in applied.iter() {
            if shared.contains_key(route) {
                continue;
            }
            if inner
                .downgrades
                .get(route)
                .is_some_and(|(rule, _)| *rule == d.rule)
            {
                inner.downgrades.remove(route);
                self.steering.update(route, |s| s.downgrade_to = None);
                tracing::info!(route, rule = %d.rule, "model downgrade: lifted by the fleet");
            }
        }
        applied.clone_from(shared);
    }

    /// An operator approves (or lifts) a rule's model downgrade. In fleet mode it is made
    /// through Redis, for every replica, and answered once this replica applied it; `local`
    /// forces it on this replica only. Returns the route and the model now in force.
    pub async fn rule_move(
        &self,
        rule: &str,
        route: Option<&str>,
        by: &str,
        approve: bool,
        local: bool,
    ) -> Result<(String, Option<String>), ShiftError> {
        let single = || -> Result<(String, Option<String>), ActionError> {
            if approve {
                self.approve(rule, route, by).map(|(r, m)| (r, Some(m)))
            } else {
                self.release(rule, route, by).map(|r| (r, None))
            }
        };
        let Some(fleet) = self.fleet().cloned() else {
            return Ok(single()?);
        };
        if local {
            let (route, model) = single()?;
            let change = self.downgrade_change(rule, &route, model.as_deref(), by);
            fleet.keep_pending(change);
            return Ok((route, model));
        }
        let (route, model) = self.check_rule_move(rule, route, approve)?;
        let change = self.downgrade_change(rule, &route, model.as_deref(), by);
        fleet.downgrade(change).await.map_err(|e| match e {
            FleetError::Refused(_) => ShiftError::Action(ActionError::NotInForce {
                rule: rule.to_owned(),
                route: route.clone(),
            }),
            other => ShiftError::Fleet(other),
        })?;
        let status = if approve { "approved" } else { "released" };
        tracing::warn!(rule, route = %route, by, status, "model downgrade changed for the fleet");
        self.notifier.notify(Event::new(
            EventKind::Rule,
            Some(route.clone()),
            json!({"rule": rule, "status": status, "by": by, "downgrade_to": model}),
        ));
        Ok((route, model))
    }

    fn downgrade_change(&self, rule: &str, route: &str, model: Option<&str>, by: &str) -> Change {
        match model {
            Some(model) => Change::Downgrade {
                route: route.to_owned(),
                downgrade: SharedDowngrade {
                    rule: rule.to_owned(),
                    model: model.to_owned(),
                    by: by.to_owned(),
                    at_ms: now_ms(),
                },
            },
            None => Change::Lift {
                route: route.to_owned(),
            },
        }
    }

    /// What an approve or a release would do, checked without doing it.
    fn check_rule_move(
        &self,
        rule: &str,
        route: Option<&str>,
        approve: bool,
    ) -> Result<(String, Option<String>), ActionError> {
        let inner = lock(&self.inner);
        if approve {
            let waiting = |r: &str| {
                inner
                    .rules
                    .get(&(rule.to_owned(), r.to_owned()))
                    .is_some_and(|f| f.awaiting_approval)
            };
            let (spec, route) = Self::rule_route(&inner, rule, route, waiting)?;
            if !waiting(&route) {
                return Err(ActionError::NotAwaiting {
                    rule: rule.to_owned(),
                    route,
                });
            }
            return Ok((route, Some(spec.downgrade_to.unwrap_or_default())));
        }
        let in_force = |r: &str| {
            self.steering
                .get(r)
                .is_some_and(|s| s.downgrade_to.is_some())
        };
        let (_, route) = Self::rule_route(&inner, rule, route, in_force)?;
        if !in_force(&route) {
            return Err(ActionError::NotInForce {
                rule: rule.to_owned(),
                route,
            });
        }
        Ok((route, None))
    }

    /// Puts the fleet's records in force for the rollouts this replica runs.
    fn adopt_records(&self, inner: &mut Inner, records: &BTreeMap<String, SharedRollout>) {
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
            let _ = self.save(inner); // logged; in force either way
            self.publish_weights(inner);
        }
    }
}

impl RolloutHost for Controller {
    fn adopt(&self, shared: &SharedState) {
        let mut inner = lock(&self.inner);
        self.adopt_records(&mut inner, &shared.rollouts);
        self.adopt_downgrades(&mut inner, &shared.downgrades);
    }

    fn local_rollouts(&self) -> Vec<RolloutState> {
        lock(&self.inner).rollouts.values().cloned().collect()
    }
}
