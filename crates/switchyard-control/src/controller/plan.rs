//! A config put in force: rollouts whose green changed start over, rules and downgrades that
//! are gone take their action with them.

use std::collections::BTreeMap;
use std::sync::Arc;

use switchyard_config::{Config, EventKind, RuleAction};
use switchyard_core::metrics as names;

use super::effects::Effects;
use super::vocab::{event, RolloutNews};
use super::{lock, Controller, Inner, Plan, RoutePlan};
use crate::kill::now_ms;
use crate::rollout::{Phase, RolloutState};

impl Controller {
    /// Puts a config in force: rollouts whose green changed start over at their first
    /// stage; the others keep their stage, phase and outcome.
    pub fn apply(&self, config: &Config) {
        let mut effects = Effects::default();
        let mut inner = lock(&self.inner);
        let started = self.reconcile_rollouts(&mut inner, config);
        inner.plan = Plan {
            version: config.version.clone(),
            routes: route_plans(config),
            rules: config.rules.clone(),
            incidents: config.incidents.clone(),
        };
        let names: Vec<String> = inner.plan.routes.iter().map(|r| r.name.clone()).collect();
        self.steering.retain(&names);
        self.drop_gone_rules(&mut inner, &names);
        self.drop_stale_downgrades(&mut inner, &names);
        for route in &inner.plan.routes {
            let state = inner.rollouts.get(&route.name);
            self.steering.update(&route.name, |steer| {
                steer.green = state.map(|s| Arc::from(s.green.as_str()));
                steer.green_share = state.map_or(0.0, RolloutState::green_share);
            });
        }
        self.publish_weights(&inner);
        effects.save(&mut inner);
        drop(inner);
        for state in &started {
            tracing::info!(route = %state.route, green = %state.green, percent = state.percent, "rollout started");
            effects.tell(event(
                EventKind::Rollout,
                &state.route,
                &RolloutNews::started(state),
            ));
        }
        let _ = self.carry_out(effects); // logged; the config is in force either way
    }

    /// The rollouts `config` asks for, kept or started; returns those started.
    fn reconcile_rollouts(&self, inner: &mut Inner, config: &Config) -> Vec<RolloutState> {
        let now = now_ms();
        let mut started = Vec::new();
        let mut rollouts = BTreeMap::new();
        for route in &config.routes {
            let Some(rollout) = &route.rollout else {
                continue;
            };
            let kept = inner
                .rollouts
                .remove(&route.name)
                .filter(|s| s.green == rollout.green && s.blue == rollout.blue);
            let state = match kept {
                Some(mut state) => {
                    if state.stages != rollout.stages && state.phase == Phase::Shifting {
                        // New stages apply from the next advance (the first stage above the
                        // share in force); the share in force stays.
                        state.stage = rollout
                            .stages
                            .iter()
                            .rposition(|p| *p <= state.percent)
                            .unwrap_or(0);
                        state.stages = rollout.stages.clone();
                    }
                    state
                }
                None => {
                    let state = RolloutState::start(
                        &route.name,
                        &rollout.blue,
                        &rollout.green,
                        &rollout.stages,
                        now,
                    );
                    started.push(state.clone());
                    self.clean_slate(inner, &route.name, &rollout.green);
                    state
                }
            };
            rollouts.insert(route.name.clone(), state);
        }
        for (route, old) in &inner.rollouts {
            let kept = rollouts.get(route).is_some_and(|s| s.green == old.green);
            if !kept {
                metrics::gauge!(names::ROUTE_WEIGHT, "route" => route.clone(), "upstream" => old.green.clone()).set(0.0);
            }
            if !rollouts.contains_key(route) {
                metrics::gauge!(names::ROLLOUT_STAGE, "route" => route.clone()).set(0.0);
            }
        }
        inner.rollouts = rollouts;
        started
    }

    /// A rule that is gone (or no longer watches the route) takes its action with it.
    fn drop_gone_rules(&self, inner: &mut Inner, names: &[String]) {
        let gone: Vec<(String, String)> = inner
            .rules
            .iter()
            .filter(|((rule, route), f)| {
                !names.contains(route)
                    || !inner.plan.rules.iter().any(|r| {
                        r.name == *rule
                            && r.action == f.action
                            && r.route.as_deref().is_none_or(|x| x == route)
                    })
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in gone {
            if let Some(firing) = inner.rules.remove(&key) {
                if firing.action == RuleAction::ThrottleAndAlert {
                    self.apply_throttles(inner, &key.1);
                }
                metrics::gauge!(names::RULES_FIRING, "rule" => key.0.clone(), "route" => key.1.clone()).set(0.0);
            }
        }
    }

    /// A downgrade lasts while the rule that put it in force still says the same thing.
    fn drop_stale_downgrades(&self, inner: &mut Inner, names: &[String]) {
        let stale: Vec<String> = inner
            .downgrades
            .iter()
            .filter(|(route, (rule, model))| {
                !names.contains(route)
                    || !inner.plan.rules.iter().any(|r| {
                        r.name == *rule
                            && r.action == RuleAction::DowngradeModel
                            && r.downgrade_to.as_deref() == Some(model.as_str())
                            && r.route.as_deref().is_none_or(|x| x == route.as_str())
                    })
            })
            .map(|(route, _)| route.clone())
            .collect();
        for route in stale {
            inner.downgrades.remove(&route);
            self.steering.update(&route, |s| s.downgrade_to = None);
        }
    }
}

fn route_plans(config: &Config) -> Vec<RoutePlan> {
    config
        .routes
        .iter()
        .map(|r| RoutePlan {
            name: r.name.clone(),
            upstream: r.upstream.clone(),
            rollout: r.rollout.clone(),
            rollback: r.rollback.clone(),
        })
        .collect()
}
