//! Rollouts: a stage advances once it baked on enough green traffic; green is rolled back to
//! blue when a trigger holds; operators roll back and promote.

use std::time::Instant;

use serde_json::json;
use switchyard_config::{EventKind, Rollback};
use switchyard_core::metrics as names;

use super::effects::Effects;
use super::vocab::{event, figure, Actor, Cause, PromoteNews, RollbackNews, RolloutNews};
use super::{lock, ActionError, Controller, Inner, RoutePlan, Shift};
use crate::incidents::Trigger;
use crate::kill::now_ms;
use crate::notify::Event;
use crate::rollout::{Phase, RolloutState};
use crate::signals::now_secs;
use crate::window::Bucket;

/// A trigger that fired, with what it read.
pub(super) struct Fired {
    pub cause: Cause,
    pub value: f64,
    pub threshold: f64,
    pub window_secs: u64,
    pub figures: serde_json::Value,
    /// The earliest moment the condition can have become true.
    pub since: Instant,
    /// An operator's (or a rule's) own words, instead of the trigger's figures.
    pub said: Option<String>,
}

/// What a rollback did, before its state reached the disk.
pub(super) struct RolledBack {
    pub before: RolloutState,
    pub after: RolloutState,
    pub incident: Option<String>,
    pub took_us: u64,
}

impl RolledBack {
    fn into_shift(self, persisted: Result<(), String>) -> Shift {
        Shift {
            before: self.before,
            after: self.after,
            incident: self.incident,
            took_us: self.took_us,
            persisted,
        }
    }
}

/// The log line and the webhook of a stage advance, on one replica or for the fleet.
pub(super) fn advance_event(after: &RolloutState, served: u64, fleet: bool) -> Event {
    let news = RolloutNews::advanced(after, served);
    tracing::info!(route = %after.route, percent = after.percent, served, status = news.status(), fleet, "rollout stage");
    event(EventKind::Rollout, &after.route, &news)
}

impl Controller {
    /// Green is judged from now on only: the failures that rolled an earlier attempt back
    /// must not roll this one back again.
    pub(super) fn clean_slate(&self, inner: &mut Inner, route: &str, green: &str) {
        if let Some(signals) = self.signals.get(route) {
            signals.reset_side(green);
        }
        inner.green_seen.remove(route);
    }

    pub(super) fn look_at_rollout(
        &self,
        inner: &mut Inner,
        route: &RoutePlan,
        effects: &mut Effects,
    ) {
        let Some(state) = inner.rollouts.get(&route.name).cloned() else {
            return;
        };
        let Some(signals) = self.signals.get(&route.name) else {
            return;
        };
        let now = now_secs();
        let look = switchyard_core::clock::now();
        let previous_look = inner
            .last_look
            .insert(route.name.clone(), look)
            .unwrap_or(look);
        let rb = &route.rollback;
        let from = now.saturating_sub(rb.window.as_secs().max(1)) + 1;
        let green = signals.side(&state.green, from, now);
        let blue = signals.side(&state.blue, from, now);
        // Nothing seen yet (a start, or a clean slate that reset green's windows): every
        // green exchange so far is new.
        let seen = inner.green_seen.insert(route.name.clone(), green.total);
        let new_green = green.total.saturating_sub(seen.unwrap_or(0));
        if state.phase == Phase::RolledBack {
            return;
        }
        let since = green.first_since_look.unwrap_or(previous_look);
        let fired =
            self.rollback_trigger(&route.name, &state, rb, &green.window, &blue.window, since);
        if let Some(fired) = fired {
            self.roll_back(inner, &route.name, fired, Actor::Controller, effects);
            return;
        }
        self.count_and_advance(inner, route, new_green, look, effects);
    }

    /// Adds the look's new green requests to the stage, and advances a stage that baked on
    /// enough of them.
    fn count_and_advance(
        &self,
        inner: &mut Inner,
        route: &RoutePlan,
        new_green: u64,
        look: Instant,
        effects: &mut Effects,
    ) {
        let Some(rollout) = &route.rollout else {
            return;
        };
        let Some(current) = inner.rollouts.get_mut(&route.name) else {
            return;
        };
        if new_green > 0 && current.phase == Phase::Shifting {
            current.stage_requests += new_green;
            inner.dirty_since.get_or_insert(look);
        }
        let baked =
            now_ms().saturating_sub(current.stage_started_at_ms) >= rollout.bake.as_millis() as u64;
        // A stage without enough green traffic has not shown it is healthy: never advance on
        // missing signal.
        let ready = current.phase == Phase::Shifting
            && baked
            && current.stage_requests >= rollout.min_requests;
        // The fleet's stages advance once, judged on the fleet's traffic by the replica
        // holding the lease (controller/judge.rs).
        if !ready || self.fleet().is_some() {
            return;
        }
        let served = current.stage_requests;
        current.advance(now_ms());
        let after = current.clone();
        self.steering.update(&route.name, |steer| {
            steer.green_share = after.green_share();
        });
        effects.save(inner);
        self.publish_weights(inner);
        effects.tell(advance_event(&after, served, false));
    }

    /// The first of the seed's triggers that holds for green, or any firing alert of the
    /// route while traffic is shifting.
    // Long: the triggers in their order of precedence, read in one place.
    pub(super) fn rollback_trigger(
        &self,
        route: &str,
        state: &RolloutState,
        rb: &Rollback,
        green: &Bucket,
        blue: &Bucket,
        since: Instant,
    ) -> Option<Fired> {
        let window_secs = rb.window.as_secs().max(1);
        let fired = |cause: Cause, value: f64, threshold: f64, extra| Fired {
            cause,
            value,
            threshold,
            window_secs,
            figures: figures(state, green, blue, extra),
            since,
            said: None,
        };
        if state.phase == Phase::Shifting && rb.on_alert {
            let firing = self.alerts.firing();
            if let Some(alert) = firing.iter().find(|a| a.route == route) {
                let cause = Cause::Alert(alert.kind);
                return Some(fired(cause, alert.value, alert.threshold, json!({})));
            }
        }
        if green.requests < rb.min_requests {
            return None;
        }
        if green.error_rate() > rb.error_rate {
            let rate = green.error_rate();
            return Some(fired(Cause::ErrorRate, rate, rb.error_rate, json!({})));
        }
        let p99 = green.latency.quantile(0.99).unwrap_or_default();
        if p99 > rb.p99_latency {
            let limit = rb.p99_latency.as_secs_f64();
            return Some(fired(
                Cause::P99Latency,
                p99.as_secs_f64(),
                limit,
                json!({}),
            ));
        }
        // The comparisons with blue need blue traffic in the same window: while everyone is
        // on green there is nothing to compare with.
        if state.phase != Phase::Shifting || blue.requests < rb.min_requests {
            return None;
        }
        let (g, b) = (green.cost_per_request(), blue.cost_per_request());
        if b > 0.0 && g > b * (1.0 + rb.cost_increase) {
            let more = g / b - 1.0;
            return Some(fired(
                Cause::CostIncrease,
                more,
                rb.cost_increase,
                json!({}),
            ));
        }
        let (class, count, rate) = self.new_error_class(route, state, rb, green, blue)?;
        let extra = json!({"error_class": class, "count": count});
        Some(fired(
            Cause::NewErrorClass,
            rate,
            rb.new_error_class_rate,
            extra,
        ))
    }

    /// An error class of green's above its rate that blue never produced: (class, count,
    /// rate).
    fn new_error_class(
        &self,
        route: &str,
        state: &RolloutState,
        rb: &Rollback,
        green: &Bucket,
        blue: &Bucket,
    ) -> Option<(String, u64, f64)> {
        // A class is new only if blue has not produced it during the rollout's life nor
        // within the lookback: blue merely having had no such error in this window (a
        // 0.3 % error rate often has none in two minutes) does not make green's new.
        let since = (state.started_at_ms / 1000)
            .min(now_secs().saturating_sub(rb.new_error_class_lookback.as_secs()));
        let blue_known = self
            .signals
            .get(route)
            .map(|s| s.produced(&state.blue))
            .unwrap_or_default();
        for (class, count) in &green.classes {
            if blue.classes.iter().any(|(c, _)| c == class)
                || blue_known.iter().any(|(c, at)| c == class && *at >= since)
            {
                continue;
            }
            let rate = *count as f64 / green.requests as f64;
            if rate > rb.new_error_class_rate {
                return Some((class.to_string(), *count, rate));
            }
        }
        None
    }

    /// All traffic to blue by one atomic store; then the record, the metric, the incident
    /// and the webhooks (left to `effects`).
    pub(super) fn roll_back(
        &self,
        inner: &mut Inner,
        route: &str,
        fired: Fired,
        by: Actor,
        effects: &mut Effects,
    ) -> Option<RolledBack> {
        let called = switchyard_core::clock::now();
        let before = inner.rollouts.get(route)?.clone();
        let state = inner.rollouts.get_mut(route)?;
        let reason = fired.said.clone().unwrap_or_else(|| {
            format!(
                "{} {} over {} in the last {}s",
                fired.cause,
                figure(fired.value),
                figure(fired.threshold),
                fired.window_secs
            )
        });
        state.roll_back(now_ms(), &reason, &by.to_string());
        let after = state.clone();
        let swapped = self.steering.update(route, |steer| steer.green_share = 0.0);
        let decision = swapped.saturating_duration_since(fired.since);
        let took_us = swapped.saturating_duration_since(called).as_micros() as u64;
        effects.save(inner);
        metrics::counter!(names::ROLLBACKS_TOTAL, "route" => route.to_owned(), "trigger" => fired.cause.label()).increment(1);
        if fired.said.is_none() {
            // An operator's rollback has no condition to measure from.
            metrics::histogram!(names::ROLLBACK_DECISION_SECONDS, "route" => route.to_owned())
                .record(decision.as_secs_f64());
        }
        self.publish_weights(inner);
        let decision_ms = decision.as_secs_f64() * 1000.0;
        tracing::warn!(route, trigger = %fired.cause, value = fired.value, threshold = fired.threshold,
            decision_ms, "rolled back to blue");
        let mut rolled = RolledBack {
            before,
            after,
            incident: None,
            took_us,
        };
        let said = (reason.as_str(), by);
        rolled.incident = self.tell_rollback(inner, &rolled, fired, said, decision_ms, effects);
        Some(rolled)
    }

    /// The incident and the webhook of a rollback in force: here, or (fleet mode, for an
    /// automatic decision) by whichever replica's proposal Redis accepts.
    fn tell_rollback(
        &self,
        inner: &mut Inner,
        rolled: &RolledBack,
        fired: Fired,
        (reason, by): (&str, Actor),
        decision_ms: f64,
        effects: &mut Effects,
    ) -> Option<String> {
        let (before, after) = (&rolled.before, &rolled.after);
        let route = after.route.as_str();
        let trigger = trigger_of(&fired, Some(decision_ms));
        let states = Some((before, after));
        let draft = self.draft_incident(inner, "rollback", route, reason, &by, trigger, states);
        let news = RollbackNews {
            trigger: fired.cause.clone(),
            value: fired.value,
            threshold: fired.threshold,
            by: by.clone(),
            green: after.green.clone(),
            blue: after.blue.clone(),
            incident: None,
            decision_latency_ms: Some(decision_ms),
        };
        if fired.cause != Cause::Operator && self.fleet().is_some() && before.epoch > 0 {
            // Decided once for the fleet: the replica whose proposal Redis accepts opens the
            // incident and notifies; the rollback is in force here already either way.
            self.propose_rollback(inner, before, (reason, &by), draft, news, effects);
            return None;
        }
        let id = self.open_incident(draft, effects);
        effects.tell(rollback_event(route, news, &id));
        Some(id)
    }

    /// An operator's rollback: all traffic to blue now; answered once the state is on disk.
    pub fn rollback(&self, route: &str, by: &str, reason: &str) -> Result<Shift, ActionError> {
        let mut effects = Effects::default();
        let mut inner = lock(&self.inner);
        let state = inner
            .rollouts
            .get(route)
            .ok_or_else(|| ActionError::NoRollout(route.to_owned()))?;
        if state.phase == Phase::RolledBack {
            return Err(ActionError::AlreadyThere {
                route: route.to_owned(),
                phase: Phase::RolledBack.as_str(),
            });
        }
        let fired = Fired {
            cause: Cause::Operator,
            value: 0.0,
            threshold: 0.0,
            window_secs: inner.rollback_window(route),
            figures: json!({"reason": reason}),
            since: switchyard_core::clock::now(),
            said: Some(reason.to_owned()),
        };
        let by = Actor::Operator(by.to_owned());
        let rolled = self.roll_back(&mut inner, route, fired, by, &mut effects);
        drop(inner);
        let persisted = self.carry_out(effects);
        let rolled = rolled.ok_or_else(|| ActionError::NoRollout(route.to_owned()))?;
        Ok(rolled.into_shift(persisted))
    }

    /// An operator's promotion: every user to green now; answered once the state is on disk.
    pub fn promote(&self, route: &str, by: &str, reason: &str) -> Result<Shift, ActionError> {
        let called = switchyard_core::clock::now();
        let mut effects = Effects::default();
        let mut inner = lock(&self.inner);
        let state = inner
            .rollouts
            .get_mut(route)
            .ok_or_else(|| ActionError::NoRollout(route.to_owned()))?;
        if state.phase == Phase::Complete {
            return Err(ActionError::AlreadyThere {
                route: route.to_owned(),
                phase: Phase::Complete.as_str(),
            });
        }
        let before = state.clone();
        state.promote(now_ms(), reason, by);
        let after = state.clone();
        self.clean_slate(&mut inner, route, &after.green);
        let swapped = self.steering.update(route, |steer| steer.green_share = 1.0);
        effects.save(&mut inner);
        self.publish_weights(&inner);
        drop(inner);
        effects.tell(promote_event(&before, &after, by, reason));
        let persisted = self.carry_out(effects);
        Ok(Shift {
            before,
            after,
            incident: None,
            took_us: swapped.saturating_duration_since(called).as_micros() as u64,
            persisted,
        })
    }

    /// `switchyard_route_weight{route, upstream}`: the share of users each upstream serves.
    pub(super) fn publish_weights(&self, inner: &Inner) {
        for route in &inner.plan.routes {
            match inner.rollouts.get(&route.name) {
                Some(state) => {
                    let share = state.green_share();
                    metrics::gauge!(names::ROUTE_WEIGHT, "route" => route.name.clone(), "upstream" => state.blue.clone()).set(1.0 - share);
                    metrics::gauge!(names::ROUTE_WEIGHT, "route" => route.name.clone(), "upstream" => state.green.clone()).set(share);
                    metrics::gauge!(names::ROLLOUT_STAGE, "route" => route.name.clone())
                        .set(state.stage as f64);
                }
                None => {
                    metrics::gauge!(names::ROUTE_WEIGHT, "route" => route.name.clone(), "upstream" => route.upstream.clone()).set(1.0);
                }
            }
        }
    }
}

/// The webhook of a rollback, with the incident it opened.
pub(super) fn rollback_event(route: &str, mut news: RollbackNews, incident: &str) -> Event {
    news.incident = Some(incident.to_owned());
    event(EventKind::Rollback, route, &news)
}

/// The webhook of an operator's promotion.
pub(super) fn promote_event(
    before: &RolloutState,
    after: &RolloutState,
    by: &str,
    reason: &str,
) -> Event {
    let news = PromoteNews {
        by: Actor::Operator(by.to_owned()),
        reason: reason.to_owned(),
        green: after.green.clone(),
        from: before.phase,
    };
    event(EventKind::Promote, &after.route, &news)
}

/// Both sides' figures in the rollback window, and the trigger's own (`extra`).
fn figures(
    state: &RolloutState,
    green: &Bucket,
    blue: &Bucket,
    extra: serde_json::Value,
) -> serde_json::Value {
    let p99_ms = |b: &Bucket| b.latency.quantile(0.99).map(|d| d.as_secs_f64() * 1000.0);
    let mut base = json!({
        "green_requests": green.requests,
        "green_errors": green.errors,
        "green_error_rate": green.error_rate(),
        "green_p99_ms": p99_ms(green),
        "green_cost_per_request_usd": green.cost_per_request(),
        "blue_requests": blue.requests,
        "blue_error_rate": blue.error_rate(),
        "blue_p99_ms": p99_ms(blue),
        "blue_cost_per_request_usd": blue.cost_per_request(),
        "percent_on_green": state.percent,
    });
    if let (Some(base), serde_json::Value::Object(extra)) = (base.as_object_mut(), extra) {
        base.extend(extra);
    }
    base
}

/// The trigger an incident records for `fired`, with how long the decision took.
pub(super) fn trigger_of(fired: &Fired, decision_ms: Option<f64>) -> Trigger {
    let mut figures = fired.figures.clone();
    if let (Some(map), Some(ms)) = (figures.as_object_mut(), decision_ms) {
        map.insert("decision_latency_ms".into(), json!(ms));
    }
    Trigger {
        name: fired.cause.to_string(),
        value: fired.value,
        threshold: fired.threshold,
        window_secs: fired.window_secs,
        figures,
    }
}

#[cfg(test)]
mod tests;
