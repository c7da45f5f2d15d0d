//! Rules: each watches a metric of the upstreams' answers per route over its window; when it
//! breaches its threshold it fires its action (alert, throttle, rollback, model downgrade)
//! and opens an incident, and it clears when the metric is back.

use std::sync::Arc;

use serde_json::json;
use switchyard_config::{EventKind, Rule, RuleAction, RuleMetric, Threshold};
use switchyard_core::metrics as names;

use super::effects::Effects;
use super::rollouts::Fired;
use super::vocab::{event, figure, Actor, Cause, RuleCleared, RuleFired, RuleFiring, RuleStatus};
use super::{Controller, Inner};
use crate::incidents::Trigger;
use crate::kill::now_ms;
use crate::rollout::Phase;
use crate::signals::now_secs;
use crate::window::Bucket;

/// What a rule saw when it fired.
struct Breach<'a> {
    rule: &'a Rule,
    route: &'a str,
    value: f64,
    window: &'a Bucket,
    window_secs: u64,
}

/// What a fired rule's action did.
#[derive(Default)]
struct Acted {
    awaiting: bool,
    incident: Option<String>,
    throttle: Option<f64>,
    downgrade_to: Option<String>,
    note: Option<&'static str>,
    /// Fleet mode: a rollback proposed to the fleet, whose incident the winner opens.
    proposed: bool,
}

impl Controller {
    pub(super) fn look_at_rules(&self, inner: &mut Inner, effects: &mut Effects) {
        if inner.plan.rules.is_empty() {
            return;
        }
        let now = now_secs();
        let rules = inner.plan.rules.clone();
        let routes: Vec<String> = inner.plan.routes.iter().map(|r| r.name.clone()).collect();
        for rule in &rules {
            let window_secs = rule.window.as_secs().max(1);
            let from = now.saturating_sub(window_secs) + 1;
            for route in routes
                .iter()
                .filter(|r| rule.route.as_deref().is_none_or(|x| x == r.as_str()))
            {
                let Some(signals) = self.signals.get(route) else {
                    continue;
                };
                // What the upstreams did: the gateway's own refusals (a throttle a rule put
                // in force, among them) must not keep a rule firing or clear it.
                let w = signals.upstream_window(from, now);
                let value = metric_value(rule.metric, &w);
                let breached =
                    sample(rule.metric, &w) >= rule.min_requests && rule.threshold.breached(value);
                let key = (rule.name.clone(), route.clone());
                let was = inner.rules.contains_key(&key);
                metrics::gauge!(names::RULES_FIRING, "rule" => rule.name.clone(), "route" => route.clone())
                    .set(if breached { 1.0 } else { 0.0 });
                match (was, breached) {
                    (false, true) => {
                        let breach = Breach {
                            rule,
                            route,
                            value,
                            window: &w,
                            window_secs,
                        };
                        self.fire_rule(inner, &breach, effects);
                    }
                    (true, false) => self.clear_rule(inner, rule, route, value, effects),
                    (true, true) => {
                        if let Some(f) = inner.rules.get_mut(&key) {
                            f.value = value;
                        }
                    }
                    (false, false) => {}
                }
            }
        }
    }

    fn fire_rule(&self, inner: &mut Inner, b: &Breach<'_>, effects: &mut Effects) {
        let (rule, route, value) = (b.rule, b.route, b.value);
        let threshold = rule.threshold.value();
        let reason = format!(
            "rule {}: {} {} {} {}",
            rule.name,
            rule.metric.as_str(),
            figure(value),
            direction(rule.threshold),
            threshold
        );
        metrics::counter!(names::RULE_ACTIONS_TOTAL, "rule" => rule.name.clone(), "route" => route.to_owned(), "action" => rule.action.as_str()).increment(1);
        tracing::warn!(rule = %rule.name, route, value, threshold, action = rule.action.as_str(), "rule fired");
        let trigger = Trigger {
            name: rule.name.clone(),
            value,
            threshold,
            window_secs: b.window_secs,
            figures: rule_figures(rule, b.window),
        };
        let mut acted = self.act(inner, b, &trigger, &reason, effects);
        if acted.incident.is_none() && !acted.proposed {
            // The rule left the rollout as it was: before and after are the same.
            let rollout = inner.rollouts.get(route).cloned();
            let by = Actor::Rule(rule.name.clone());
            let states = rollout.as_ref().map(|r| (r, r));
            let draft = self.draft_incident(inner, "rule", route, &reason, &by, trigger, states);
            acted.incident = Some(self.open_incident(draft, effects));
        }
        inner.rules.insert(
            (rule.name.clone(), route.to_owned()),
            RuleFiring {
                rule: rule.name.clone(),
                route: route.to_owned(),
                metric: rule.metric,
                action: rule.action,
                value,
                threshold,
                since_ms: now_ms(),
                awaiting_approval: acted.awaiting,
                incident: acted.incident.clone(),
                throttle_rps: acted.throttle,
            },
        );
        if acted.throttle.is_some() {
            self.apply_throttles(inner, route);
        }
        effects.tell(event(EventKind::Rule, route, &fired_news(b, acted)));
    }

    /// The rule's action, put in force.
    // Long: one arm per action, each short; split up they would only pass `acted` around.
    fn act(
        &self,
        inner: &mut Inner,
        b: &Breach<'_>,
        trigger: &Trigger,
        reason: &str,
        effects: &mut Effects,
    ) -> Acted {
        let (rule, route) = (b.rule, b.route);
        let mut acted = Acted::default();
        match rule.action {
            RuleAction::Alert | RuleAction::Escalate => {}
            RuleAction::ThrottleAndAlert => {
                // The rate over the seconds actually observed: a window that began at a
                // restart or a reload is not full of silence.
                let observed = self
                    .signals
                    .get(route)
                    .map_or(b.window_secs, |s| now_secs().saturating_sub(s.born()) + 1)
                    .clamp(1, b.window_secs);
                let rate = b.window.requests as f64 / observed as f64;
                acted.throttle = Some((rate * rule.throttle_to).max(1.0));
            }
            RuleAction::DowngradeModel if rule.automatic => {
                let model = rule.downgrade_to.clone().unwrap_or_default();
                self.steering
                    .update(route, |s| s.downgrade_to = Some(Arc::from(model.as_str())));
                inner
                    .downgrades
                    .insert(route.to_owned(), (rule.name.clone(), model.clone()));
                self.share_downgrade(&rule.name, route, &model);
                acted.downgrade_to = Some(model);
            }
            RuleAction::DowngradeModel => {
                acted.awaiting = true;
                acted.downgrade_to.clone_from(&rule.downgrade_to);
            }
            RuleAction::RollbackAndNotify => {
                let can = inner
                    .rollouts
                    .get(route)
                    .is_some_and(|s| s.phase != Phase::RolledBack);
                if !can {
                    acted.note =
                        Some("nothing to roll back: the route has no rollout shifting traffic");
                    return acted;
                }
                let fired = Fired {
                    cause: Cause::Rule(rule.name.clone()),
                    value: b.value,
                    threshold: trigger.threshold,
                    window_secs: b.window_secs,
                    figures: trigger.figures.clone(),
                    since: switchyard_core::clock::now(),
                    said: Some(reason.to_owned()),
                };
                let by = Actor::Rule(rule.name.clone());
                let rolled = self.roll_back(inner, route, fired, by, effects);
                // Fleet mode: the replica whose rollback Redis accepts opens the incident.
                acted.proposed = rolled.as_ref().is_some_and(|s| s.incident.is_none());
                acted.incident = rolled.and_then(|s| s.incident);
            }
        }
        acted
    }

    fn clear_rule(
        &self,
        inner: &mut Inner,
        rule: &Rule,
        route: &str,
        value: f64,
        effects: &mut Effects,
    ) {
        inner.rules.remove(&(rule.name.clone(), route.to_owned()));
        if rule.action == RuleAction::ThrottleAndAlert {
            self.apply_throttles(inner, route);
        }
        tracing::info!(rule = %rule.name, route, value, "rule cleared");
        let news = RuleCleared {
            rule: rule.name.clone(),
            value,
            status: RuleStatus::Cleared,
            action: rule.action,
        };
        effects.tell(event(EventKind::Rule, route, &news));
    }
}

/// The `rule` webhook of a rule that fired.
fn fired_news(b: &Breach<'_>, acted: Acted) -> RuleFired {
    RuleFired {
        rule: b.rule.name.clone(),
        metric: b.rule.metric,
        value: b.value,
        threshold: b.rule.threshold.value(),
        baseline: b.rule.baseline,
        action: b.rule.action,
        status: if acted.awaiting {
            RuleStatus::AwaitingApproval
        } else {
            RuleStatus::Firing
        },
        throttle_rps: acted.throttle,
        downgrade_to: acted.downgrade_to,
        note: acted.note,
        incident: acted.incident,
    }
}

fn direction(threshold: Threshold) -> &'static str {
    match threshold {
        Threshold::Above(_) => "above",
        Threshold::Below(_) => "below",
    }
}

/// What the rule read in its window, for the incident.
fn rule_figures(rule: &Rule, w: &Bucket) -> serde_json::Value {
    json!({
        "metric": rule.metric.as_str(),
        "baseline": rule.baseline,
        "direction": direction(rule.threshold),
        "requests": w.requests,
        "tokens_per_request": w.tokens_per_request(),
        "error_rate": w.error_rate(),
        "cost_per_request_usd": w.cost_per_request(),
        "p95_latency_ms": w.latency.quantile(0.95).map(|d| d.as_secs_f64() * 1000.0),
        "mean_context_fill": w.mean_fill(),
        "action": rule.action.as_str(),
    })
}

/// The number of samples behind a metric's value.
fn sample(metric: RuleMetric, w: &Bucket) -> u64 {
    match metric {
        // Tokens and cost are judged per answered request, so that is their sample.
        RuleMetric::TokensPerRequest | RuleMetric::CostPerRequest => w.answered,
        // A mean score is only as good as the reports behind it.
        RuleMetric::FeedbackScore => w.score_n,
        _ => w.requests,
    }
}

fn metric_value(metric: RuleMetric, w: &Bucket) -> f64 {
    match metric {
        RuleMetric::TokensPerRequest => w.tokens_per_request(),
        RuleMetric::P95Latency => w.latency.quantile(0.95).map_or(0.0, |d| d.as_secs_f64()),
        RuleMetric::ErrorRate => w.error_rate(),
        RuleMetric::CostPerRequest => w.cost_per_request(),
        RuleMetric::ContextFill => w.mean_fill(),
        RuleMetric::FeedbackScore => w.mean_score(),
        RuleMetric::CompletionRate => w.completion_rate(),
    }
}

#[cfg(test)]
mod tests;
