//! The controller: advances staged rollouts, rolls them back when a trigger fires, runs the
//! rules' actions and keeps the experiments' sequential tests current. It works off the data
//! path on the signals' windows, and acts through [`Steering`], which requests read with one
//! atomic load.

mod judge;
mod shared;
pub use shared::{Decided, ShiftError};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use switchyard_config::{
    Config, EventKind, IncidentSettings, Rollback, Rollout, Rule, RuleAction, RuleMetric,
};
use switchyard_core::metrics as names;

use crate::alerts::Alerts;
use crate::history::ErrorHistory;
use crate::incidents::{AlertView, Evidence, Incident, Incidents, SampledExchange, Seen, Trigger};
use crate::kill::now_ms;
use crate::notify::{Event, Notifier};
use crate::rollout::{Phase, RolloutState, RolloutStore};
use crate::signals::{now_secs, Signals};
use crate::steer::Steering;
use crate::window::Bucket;

/// How often the controller looks.
pub const TICK: Duration = Duration::from_millis(100);

/// Who the controller's own actions are by.
pub const BY: &str = "controller";

/// The error class history is written at most every this many ticks (5 s).
const HISTORY_EVERY_TICKS: u64 = 50;

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

/// A rule firing on a route.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RuleFiring {
    pub rule: String,
    pub route: String,
    pub metric: &'static str,
    pub action: &'static str,
    pub value: f64,
    pub threshold: f64,
    pub since_ms: u64,
    /// A downgrade waiting for an operator's approval.
    pub awaiting_approval: bool,
    pub incident: Option<String>,
    /// The admitted rate this rule asks for (`throttle_and_alert`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttle_rps: Option<f64>,
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
    store: RolloutStore,
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

/// A trigger that fired: (name, value, threshold, figures).
struct Fired {
    name: String,
    value: f64,
    threshold: f64,
    window_secs: u64,
    figures: serde_json::Value,
    /// The earliest moment the condition can have become true.
    since: Instant,
    /// An operator's own words, instead of the trigger's figures.
    said: Option<String>,
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
            store,
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

    /// Puts a config in force: rollouts whose green changed start over at their first
    /// stage; the others keep their stage, phase and outcome.
    pub fn apply(&self, config: &Config) {
        let mut inner = lock(&self.inner);
        let now = now_ms();
        let mut started = Vec::new();
        let routes: Vec<RoutePlan> = config
            .routes
            .iter()
            .map(|r| RoutePlan {
                name: r.name.clone(),
                upstream: r.upstream.clone(),
                rollout: r.rollout.clone(),
                rollback: r.rollback.clone(),
            })
            .collect();
        let mut rollouts = BTreeMap::new();
        for route in &routes {
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
                    self.clean_slate(&mut inner, &route.name, &rollout.green);
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
        inner.plan = Plan {
            version: config.version.clone(),
            routes,
            rules: config.rules.clone(),
            incidents: config.incidents.clone(),
        };
        let names: Vec<String> = inner.plan.routes.iter().map(|r| r.name.clone()).collect();
        self.steering.retain(&names);
        // A rule that is gone (or no longer watches the route) takes its action with it.
        let gone: Vec<(String, String)> = inner
            .rules
            .iter()
            .filter(|((rule, route), f)| {
                !names.contains(route)
                    || !inner.plan.rules.iter().any(|r| {
                        r.name == *rule
                            && r.action.as_str() == f.action
                            && r.route.as_deref().is_none_or(|x| x == route)
                    })
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in gone {
            if let Some(firing) = inner.rules.remove(&key) {
                if firing.action == RuleAction::ThrottleAndAlert.as_str() {
                    self.apply_throttles(&inner, &key.1);
                }
                metrics::gauge!(names::RULES_FIRING, "rule" => key.0.clone(), "route" => key.1.clone()).set(0.0);
            }
        }
        // A downgrade lasts while the rule that put it in force still says the same thing.
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
        for route in &inner.plan.routes {
            let state = inner.rollouts.get(&route.name);
            self.steering.update(&route.name, |steer| {
                steer.green = state.map(|s| Arc::from(s.green.as_str()));
                steer.green_share = state.map_or(0.0, RolloutState::green_share);
            });
        }
        self.publish_weights(&inner);
        let _ = self.save(&mut inner); // logged; the config is in force either way
        drop(inner);
        for state in started {
            tracing::info!(route = %state.route, green = %state.green, percent = state.percent, "rollout started");
            self.notifier.notify(Event::new(
                EventKind::Rollout,
                Some(state.route.clone()),
                json!({"status": "started", "green": state.green, "blue": state.blue, "percent": state.percent}),
            ));
        }
    }

    /// Green is judged from now on only: the failures that rolled an earlier attempt back
    /// must not roll this one back again.
    fn clean_slate(&self, inner: &mut Inner, route: &str, green: &str) {
        if let Some(signals) = self.signals.get(route) {
            signals.reset_side(green);
        }
        inner.green_seen.remove(route);
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

    /// Looks every `TICK` until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks = 0u64;
        loop {
            interval.tick().await;
            self.tick();
            ticks += 1;
            if ticks.is_multiple_of(HISTORY_EVERY_TICKS) {
                self.save_history();
            }
        }
    }

    /// Writes the error class history if it moved, outside the decision lock.
    pub fn save_history(&self) {
        let keep = {
            let inner = lock(&self.inner);
            inner
                .plan
                .routes
                .iter()
                .map(|r| r.rollback.new_error_class_lookback.as_secs())
                .max()
                .unwrap_or(0)
        };
        // Classes seen during a long rollout must outlive the lookback: keep a week at least.
        let keep = keep.max(7 * 86_400);
        self.history
            .save_if_changed(&self.signals, now_secs(), keep);
    }

    /// One look at every rollout, rule and experiment.
    pub fn tick(&self) {
        let mut inner = lock(&self.inner);
        inner.ticks += 1;
        let routes = inner.plan.routes.clone();
        for route in &routes {
            if inner.rollouts.contains_key(&route.name) {
                self.look_at_rollout(&mut inner, route);
            }
        }
        self.look_at_rules(&mut inner);
        self.publish_counts(&inner);
        if inner.ticks.is_multiple_of(10) {
            for experiment in self.signals.experiments().all() {
                let outcome = experiment.evaluate();
                metrics::gauge!(names::EXPERIMENT_P_VALUE, "experiment" => experiment.name().clone())
                    .set(outcome.p_value);
            }
            self.publish_weights(&inner);
        }
        // The stage's request count changes constantly; it is written at most every 5 s,
        // and every transition is written at once.
        if inner
            .dirty_since
            .is_some_and(|t| t.elapsed() >= Duration::from_secs(5))
        {
            let _ = self.save(&mut inner); // logged; retried at the next transition
        }
    }

    fn look_at_rollout(&self, inner: &mut Inner, route: &RoutePlan) {
        let Some(state) = inner.rollouts.get(&route.name).cloned() else {
            return;
        };
        let Some(signals) = self.signals.get(&route.name) else {
            return;
        };
        let now = now_secs();
        let look = Instant::now();
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
            self.roll_back(inner, &route.name, fired, BY);
            return;
        }
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
        if current.phase == Phase::Shifting
            && baked
            && current.stage_requests >= rollout.min_requests
        {
            if self.fleet().is_some() {
                // The fleet's stages advance once, judged on the fleet's traffic by the
                // replica holding the lease (controller/judge.rs).
                return;
            }
            let served = current.stage_requests;
            current.advance(now_ms());
            let after = current.clone();
            self.steering.update(&route.name, |steer| {
                steer.green_share = after.green_share();
            });
            let _ = self.save(inner); // logged; the stage is in force either way
            self.publish_weights(inner);
            let status = if after.phase == Phase::Complete {
                "completed"
            } else {
                "advanced"
            };
            tracing::info!(route = %route.name, percent = after.percent, served, status, "rollout stage");
            self.notifier.notify(Event::new(
                EventKind::Rollout,
                Some(route.name.clone()),
                json!({"status": status, "green": after.green, "percent": after.percent, "stage": after.stage, "green_requests_in_stage": served}),
            ));
        }
    }

    /// The first of the seed's triggers that holds for green, or any firing alert of the
    /// route while traffic is shifting.
    fn rollback_trigger(
        &self,
        route: &str,
        state: &RolloutState,
        rb: &Rollback,
        green: &Bucket,
        blue: &Bucket,
        since: Instant,
    ) -> Option<Fired> {
        let window_secs = rb.window.as_secs().max(1);
        let figures = |extra: serde_json::Value| {
            let mut base = json!({
                "green_requests": green.requests,
                "green_errors": green.errors,
                "green_error_rate": green.error_rate(),
                "green_p99_ms": green.latency.quantile(0.99).map(|d| d.as_secs_f64() * 1000.0),
                "green_cost_per_request_usd": green.cost_per_request(),
                "blue_requests": blue.requests,
                "blue_error_rate": blue.error_rate(),
                "blue_p99_ms": blue.latency.quantile(0.99).map(|d| d.as_secs_f64() * 1000.0),
                "blue_cost_per_request_usd": blue.cost_per_request(),
                "percent_on_green": state.percent,
            });
            if let (Some(base), serde_json::Value::Object(extra)) = (base.as_object_mut(), extra) {
                base.extend(extra);
            }
            base
        };
        let fired = |name: &str, value: f64, threshold: f64, extra| Fired {
            name: name.to_owned(),
            value,
            threshold,
            window_secs,
            figures: figures(extra),
            since,
            said: None,
        };
        if state.phase == Phase::Shifting && rb.on_alert {
            let firing = self.alerts.firing();
            if let Some(alert) = firing.iter().find(|a| a.route == route) {
                let name = format!("alert:{}", alert.kind.as_str());
                return Some(fired(&name, alert.value, alert.threshold, json!({})));
            }
        }
        if green.requests < rb.min_requests {
            return None;
        }
        if green.error_rate() > rb.error_rate {
            return Some(fired(
                "error_rate",
                green.error_rate(),
                rb.error_rate,
                json!({}),
            ));
        }
        let p99 = green.latency.quantile(0.99).unwrap_or_default();
        if p99 > rb.p99_latency {
            return Some(fired(
                "p99_latency",
                p99.as_secs_f64(),
                rb.p99_latency.as_secs_f64(),
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
            return Some(fired(
                "cost_increase",
                g / b - 1.0,
                rb.cost_increase,
                json!({}),
            ));
        }
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
                let extra = json!({"error_class": class.to_string(), "count": count});
                return Some(fired(
                    "new_error_class",
                    rate,
                    rb.new_error_class_rate,
                    extra,
                ));
            }
        }
        None
    }

    /// All traffic to blue by one atomic store; then the record, the metric, the incident
    /// and the webhooks.
    fn roll_back(&self, inner: &mut Inner, route: &str, fired: Fired, by: &str) -> Option<Shift> {
        let called = Instant::now();
        let before = inner.rollouts.get(route)?.clone();
        let state = inner.rollouts.get_mut(route)?;
        let reason = fired.said.clone().unwrap_or_else(|| {
            format!(
                "{} {} over {} in the last {}s",
                fired.name,
                figure(fired.value),
                figure(fired.threshold),
                fired.window_secs
            )
        });
        state.roll_back(now_ms(), &reason, by);
        let after = state.clone();
        let swapped = self.steering.update(route, |steer| steer.green_share = 0.0);
        let decision = swapped.saturating_duration_since(fired.since);
        let took_us = swapped.saturating_duration_since(called).as_micros() as u64;
        let persisted = self.save(inner);
        metrics::counter!(names::ROLLBACKS_TOTAL, "route" => route.to_owned(), "trigger" => trigger_label(&fired.name)).increment(1);
        if fired.said.is_none() {
            // An operator's rollback has no condition to measure from.
            metrics::histogram!(names::ROLLBACK_DECISION_SECONDS, "route" => route.to_owned())
                .record(decision.as_secs_f64());
        }
        self.publish_weights(inner);
        tracing::warn!(route, trigger = %fired.name, value = fired.value, threshold = fired.threshold,
            decision_ms = decision.as_secs_f64() * 1000.0, "rolled back to blue");
        let mut figures = fired.figures.clone();
        if let Some(map) = figures.as_object_mut() {
            map.insert(
                "decision_latency_ms".into(),
                json!(decision.as_secs_f64() * 1000.0),
            );
        }
        let trigger = Trigger {
            name: fired.name.clone(),
            value: fired.value,
            threshold: fired.threshold,
            window_secs: fired.window_secs,
            figures,
        };
        if fired.name != "operator" && self.fleet().is_some() && before.epoch > 0 {
            // Decided once for the fleet: the replica whose proposal Redis accepts opens the
            // incident and notifies; the rollback is in force here already either way.
            let draft = self.draft_incident(
                inner,
                "rollback",
                route,
                &reason,
                by,
                trigger,
                Some((&before, &after)),
            );
            let detail = json!({"trigger": fired.name, "value": fired.value, "threshold": fired.threshold,
                   "by": by, "green": after.green, "blue": after.blue,
                   "decision_latency_ms": decision.as_secs_f64() * 1000.0});
            self.propose_rollback(inner, &before, (&reason, by), draft, detail);
            return Some(Shift {
                before,
                after,
                incident: None,
                took_us,
                persisted,
            });
        }
        let incident = self.open_incident(
            inner,
            "rollback",
            route,
            &reason,
            by,
            trigger,
            Some((&before, &after)),
        );
        self.notifier.notify(Event::new(
            EventKind::Rollback,
            Some(route.to_owned()),
            json!({"trigger": fired.name, "value": fired.value, "threshold": fired.threshold,
                   "by": by, "green": after.green, "blue": after.blue, "incident": incident,
                   "decision_latency_ms": decision.as_secs_f64() * 1000.0}),
        ));
        Some(Shift {
            before,
            after,
            incident,
            took_us,
            persisted,
        })
    }

    /// An operator's rollback: all traffic to blue now.
    pub fn rollback(&self, route: &str, by: &str, reason: &str) -> Result<Shift, ActionError> {
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
        let window = inner.rollback_window(route);
        let fired = Fired {
            name: "operator".into(),
            value: 0.0,
            threshold: 0.0,
            window_secs: window,
            figures: json!({"reason": reason}),
            since: Instant::now(),
            said: Some(reason.to_owned()),
        };
        self.roll_back(&mut inner, route, fired, by)
            .ok_or_else(|| ActionError::NoRollout(route.to_owned()))
    }

    /// An operator's promotion: every user to green now.
    pub fn promote(&self, route: &str, by: &str, reason: &str) -> Result<Shift, ActionError> {
        let called = Instant::now();
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
        let persisted = self.save(&mut inner);
        self.publish_weights(&inner);
        self.notifier.notify(Event::new(
            EventKind::Promote,
            Some(route.to_owned()),
            json!({"by": by, "reason": reason, "green": after.green, "from": before.phase.as_str()}),
        ));
        Ok(Shift {
            before,
            after,
            incident: None,
            took_us: swapped.saturating_duration_since(called).as_micros() as u64,
            persisted,
        })
    }

    fn look_at_rules(&self, inner: &mut Inner) {
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
                // Tokens and cost are judged per answered request, so that is their sample.
                let sample = match rule.metric {
                    RuleMetric::TokensPerRequest | RuleMetric::CostPerRequest => w.answered,
                    // A mean score is only as good as the reports behind it.
                    RuleMetric::FeedbackScore => w.score_n,
                    _ => w.requests,
                };
                let breached = sample >= rule.min_requests && rule.threshold.breached(value);
                let key = (rule.name.clone(), route.clone());
                let was = inner.rules.contains_key(&key);
                metrics::gauge!(names::RULES_FIRING, "rule" => rule.name.clone(), "route" => route.clone())
                    .set(if breached { 1.0 } else { 0.0 });
                match (was, breached) {
                    (false, true) => self.fire_rule(inner, rule, route, value, &w, window_secs),
                    (true, false) => self.clear_rule(inner, rule, route, value),
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

    fn fire_rule(
        &self,
        inner: &mut Inner,
        rule: &Rule,
        route: &str,
        value: f64,
        w: &Bucket,
        window_secs: u64,
    ) {
        let threshold = rule.threshold.value();
        let figures = json!({
            "metric": rule.metric.as_str(),
            "baseline": rule.baseline,
            "direction": match rule.threshold { switchyard_config::Threshold::Above(_) => "above", switchyard_config::Threshold::Below(_) => "below" },
            "requests": w.requests,
            "tokens_per_request": w.tokens_per_request(),
            "error_rate": w.error_rate(),
            "cost_per_request_usd": w.cost_per_request(),
            "p95_latency_ms": w.latency.quantile(0.95).map(|d| d.as_secs_f64() * 1000.0),
            "mean_context_fill": w.mean_fill(),
            "action": rule.action.as_str(),
        });
        let reason = format!(
            "rule {}: {} {} {} {}",
            rule.name,
            rule.metric.as_str(),
            figure(value),
            if matches!(rule.threshold, switchyard_config::Threshold::Above(_)) {
                "above"
            } else {
                "below"
            },
            threshold
        );
        metrics::counter!(names::RULE_ACTIONS_TOTAL, "rule" => rule.name.clone(), "route" => route.to_owned(), "action" => rule.action.as_str()).increment(1);
        tracing::warn!(rule = %rule.name, route, value, threshold, action = rule.action.as_str(), "rule fired");
        let trigger = Trigger {
            name: rule.name.clone(),
            value,
            threshold,
            window_secs,
            figures,
        };
        let mut awaiting = false;
        let mut incident = None;
        let mut throttle = None;
        let mut proposed = false;
        let mut detail = json!({"rule": rule.name, "metric": rule.metric.as_str(), "value": value,
            "threshold": threshold, "baseline": rule.baseline, "action": rule.action.as_str(), "status": "firing"});
        match rule.action {
            RuleAction::Alert | RuleAction::Escalate => {}
            RuleAction::ThrottleAndAlert => {
                // The rate over the seconds actually observed: a window that began at a
                // restart or a reload is not full of silence.
                let observed = self
                    .signals
                    .get(route)
                    .map_or(window_secs, |s| now_secs().saturating_sub(s.born()) + 1)
                    .clamp(1, window_secs);
                let rate = w.requests as f64 / observed as f64;
                let rps = (rate * rule.throttle_to).max(1.0);
                throttle = Some(rps);
                detail["throttle_rps"] = json!(rps);
            }
            RuleAction::DowngradeModel if rule.automatic => {
                let model = rule.downgrade_to.clone().unwrap_or_default();
                self.steering
                    .update(route, |s| s.downgrade_to = Some(Arc::from(model.as_str())));
                inner
                    .downgrades
                    .insert(route.to_owned(), (rule.name.clone(), model.clone()));
                detail["downgrade_to"] = json!(model);
            }
            RuleAction::DowngradeModel => {
                awaiting = true;
                detail["status"] = json!("awaiting_approval");
                detail["downgrade_to"] = json!(rule.downgrade_to);
            }
            RuleAction::RollbackAndNotify => {
                let can = inner
                    .rollouts
                    .get(route)
                    .is_some_and(|s| s.phase != Phase::RolledBack);
                if can {
                    let fired = Fired {
                        name: format!("rule:{}", rule.name),
                        value,
                        threshold,
                        window_secs,
                        figures: trigger.figures.clone(),
                        since: Instant::now(),
                        said: Some(reason.clone()),
                    };
                    let shift = self.roll_back(inner, route, fired, &format!("rule:{}", rule.name));
                    // Fleet mode: the replica whose rollback Redis accepts opens the incident.
                    proposed = shift.as_ref().is_some_and(|s| s.incident.is_none());
                    incident = shift.and_then(|s| s.incident);
                } else {
                    detail["note"] =
                        json!("nothing to roll back: the route has no rollout shifting traffic");
                }
            }
        }
        if incident.is_none() && !proposed {
            // The rule left the rollout as it was: before and after are the same.
            let rollout = inner.rollouts.get(route).cloned();
            let by = format!("rule:{}", rule.name);
            let states = rollout.as_ref().map(|r| (r, r));
            incident = self.open_incident(inner, "rule", route, &reason, &by, trigger, states);
        }
        detail["incident"] = json!(incident);
        inner.rules.insert(
            (rule.name.clone(), route.to_owned()),
            RuleFiring {
                rule: rule.name.clone(),
                route: route.to_owned(),
                metric: rule.metric.as_str(),
                action: rule.action.as_str(),
                value,
                threshold,
                since_ms: now_ms(),
                awaiting_approval: awaiting,
                incident,
                throttle_rps: throttle,
            },
        );
        if throttle.is_some() {
            self.apply_throttles(inner, route);
        }
        self.notifier
            .notify(Event::new(EventKind::Rule, Some(route.to_owned()), detail));
    }

    /// The throttle in force on a route: the lowest rate any firing rule asks for.
    fn apply_throttles(&self, inner: &Inner, route: &str) {
        let lowest = inner
            .rules
            .values()
            .filter(|f| f.route == route)
            .filter_map(|f| f.throttle_rps)
            .reduce(f64::min);
        self.steering.update(route, |s| s.throttle_rps = lowest);
    }

    fn clear_rule(&self, inner: &mut Inner, rule: &Rule, route: &str, value: f64) {
        inner.rules.remove(&(rule.name.clone(), route.to_owned()));
        if rule.action == RuleAction::ThrottleAndAlert {
            self.apply_throttles(inner, route);
        }
        tracing::info!(rule = %rule.name, route, value, "rule cleared");
        self.notifier.notify(Event::new(
            EventKind::Rule,
            Some(route.to_owned()),
            json!({"rule": rule.name, "value": value, "status": "cleared", "action": rule.action.as_str()}),
        ));
    }

    /// The route an operator's action on `rule` is for: the one named, or the only one
    /// `candidates` leaves.
    fn rule_route(
        inner: &Inner,
        rule: &str,
        route: Option<&str>,
        candidates: impl Fn(&str) -> bool,
    ) -> Result<(Rule, String), ActionError> {
        let spec = inner
            .plan
            .rules
            .iter()
            .find(|r| r.name == rule)
            .cloned()
            .ok_or_else(|| ActionError::UnknownRule(rule.to_owned()))?;
        if spec.action != RuleAction::DowngradeModel {
            return Err(ActionError::NotADowngrade(rule.to_owned()));
        }
        let watched: Vec<String> = inner
            .plan
            .routes
            .iter()
            .map(|r| r.name.clone())
            .filter(|r| spec.route.as_deref().is_none_or(|x| x == r))
            .collect();
        let route = match route {
            Some(route) if watched.iter().any(|r| r == route) => route.to_owned(),
            Some(route) => return Err(ActionError::UnknownRoute(route.to_owned())),
            None => {
                let open: Vec<&String> = watched.iter().filter(|r| candidates(r)).collect();
                match open.as_slice() {
                    [only] => (*only).clone(),
                    [] => watched.first().cloned().unwrap_or_default(),
                    _ => {
                        let names = open
                            .iter()
                            .map(|r| r.as_str())
                            .collect::<Vec<_>>()
                            .join(", ");
                        return Err(ActionError::WhichRoute(rule.to_owned(), names));
                    }
                }
            }
        };
        Ok((spec, route))
    }

    /// An operator approves a downgrade a rule is waiting on; returns the route and model.
    pub fn approve(
        &self,
        rule: &str,
        route: Option<&str>,
        by: &str,
    ) -> Result<(String, String), ActionError> {
        let mut inner = lock(&self.inner);
        let waiting = |r: &str| {
            inner
                .rules
                .get(&(rule.to_owned(), r.to_owned()))
                .is_some_and(|f| f.awaiting_approval)
        };
        let (spec, route) = Self::rule_route(&inner, rule, route, waiting)?;
        let model = spec.downgrade_to.clone().unwrap_or_default();
        let firing = inner
            .rules
            .get_mut(&(rule.to_owned(), route.clone()))
            .filter(|f| f.awaiting_approval)
            .ok_or_else(|| ActionError::NotAwaiting {
                rule: rule.to_owned(),
                route: route.clone(),
            })?;
        firing.awaiting_approval = false;
        self.steering
            .update(&route, |s| s.downgrade_to = Some(Arc::from(model.as_str())));
        inner
            .downgrades
            .insert(route.clone(), (rule.to_owned(), model.clone()));
        tracing::warn!(rule, route = %route, by, model = %model, "model downgrade approved");
        self.notifier.notify(Event::new(
            EventKind::Rule,
            Some(route.clone()),
            json!({"rule": rule, "status": "approved", "by": by, "downgrade_to": model}),
        ));
        Ok((route, model))
    }

    /// An operator lifts the downgrade a rule put in force on a route; returns the route.
    pub fn release(
        &self,
        rule: &str,
        route: Option<&str>,
        by: &str,
    ) -> Result<String, ActionError> {
        let mut inner = lock(&self.inner);
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
        self.steering.update(&route, |s| s.downgrade_to = None);
        inner.downgrades.remove(&route);
        tracing::info!(rule, route = %route, by, "model downgrade released");
        self.notifier.notify(Event::new(
            EventKind::Rule,
            Some(route.clone()),
            json!({"rule": rule, "status": "released", "by": by}),
        ));
        Ok(route)
    }

    /// Opens an automatic incident with the window's evidence; `rollouts` is the route's
    /// rollout before and after, when it has one.
    #[allow(clippy::too_many_arguments)]
    fn open_incident(
        &self,
        inner: &Inner,
        kind: &str,
        route: &str,
        reason: &str,
        by: &str,
        trigger: Trigger,
        rollouts: Option<(&RolloutState, &RolloutState)>,
    ) -> Option<String> {
        let draft = self.draft_incident(inner, kind, route, reason, by, trigger, rollouts);
        Some(self.write_incident(draft))
    }

    /// Writes an incident and tells the webhooks; returns its id.
    fn write_incident(&self, draft: Incident) -> String {
        let kind = draft.kind.clone();
        let route = draft.route.clone();
        let (incident, written) = self.incidents.open_incident(draft);
        if let Err(error) = written {
            tracing::error!(%error, id = %incident.id, "incident not saved");
        }
        self.notifier
            .notify(Event::incident(&incident.id, &kind, &route));
        incident.id
    }

    /// An automatic incident with the window's evidence, not yet written.
    #[allow(clippy::too_many_arguments)]
    fn draft_incident(
        &self,
        inner: &Inner,
        kind: &str,
        route: &str,
        reason: &str,
        by: &str,
        trigger: Trigger,
        rollouts: Option<(&RolloutState, &RolloutState)>,
    ) -> Incident {
        let window = trigger.window_secs;
        let evidence = self.evidence(route, window, &inner.plan.incidents);
        Incident {
            id: String::new(),
            kind: kind.to_owned(),
            route: route.to_owned(),
            opened_at_ms: now_ms(),
            reason: reason.to_owned(),
            by: by.to_owned(),
            config_version: inner.plan.version.clone(),
            before: None,
            after: None,
            rollout_before: rollouts.map(|(b, _)| json!(b)),
            rollout_after: rollouts.map(|(_, a)| json!(a)),
            trigger: Some(trigger),
            evidence: Some(evidence),
            alerts_firing: self.alerts.firing().iter().map(AlertView::from).collect(),
            acknowledged_by: None,
            acknowledged_at_ms: None,
            ack_note: None,
        }
    }

    /// What the route served in the last `window_secs`: model versions, prompt fingerprints,
    /// and a sample of exchanges.
    pub fn evidence(&self, route: &str, window_secs: u64, settings: &IncidentSettings) -> Evidence {
        let now = now_secs();
        let from = now.saturating_sub(window_secs) + 1;
        let recent = self
            .signals
            .get(route)
            .map(|s| s.recent(from, now))
            .unwrap_or_default();
        let mut models: HashMap<String, u64> = HashMap::new();
        let mut prints: HashMap<String, u64> = HashMap::new();
        for (_, ex) in &recent {
            if let Some(m) = &ex.response_model {
                *models.entry(m.clone()).or_default() += 1;
            }
            if let Some(f) = ex.prompt_fingerprint {
                *prints.entry(format!("{f:016x}")).or_default() += 1;
            }
        }
        let ranked = |map: HashMap<String, u64>| {
            let mut list: Vec<Seen> = map
                .into_iter()
                .map(|(value, count)| Seen { value, count })
                .collect();
            list.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
            list
        };
        let sample = recent
            .iter()
            .rev()
            .take(settings.sample)
            .map(|(at, ex)| SampledExchange {
                at_ms: at * 1000,
                request_id: ex.request_id.to_string(),
                upstream: ex.upstream.to_string(),
                variant: ex.variant.to_string(),
                model: ex.requested_model.clone(),
                response_model: ex.response_model.clone(),
                prompt_fingerprint: ex.prompt_fingerprint.map(|f| format!("{f:016x}")),
                status: ex.status,
                outcome: ex.outcome.as_str().to_owned(),
                error_class: ex.error_label().map(|c| c.to_string()),
                finish_reason: ex.finish_reason.clone(),
                latency_ms: ex.duration.as_secs_f64() * 1000.0,
                ttfb_ms: ex.ttfb.map(|t| t.as_secs_f64() * 1000.0),
                prompt_tokens: ex.prompt_tokens,
                completion_tokens: ex.completion_tokens,
                cost_usd: ex.cost_usd,
                request_body: ex
                    .bodies
                    .as_ref()
                    .filter(|_| settings.capture_bodies)
                    .map(|b| b.0.clone()),
                response_body: ex
                    .bodies
                    .as_ref()
                    .filter(|_| settings.capture_bodies)
                    .map(|b| b.1.clone()),
            })
            .collect();
        Evidence {
            from_ms: from * 1000,
            to_ms: (now + 1) * 1000,
            exchanges_examined: recent.len() as u64,
            response_models: ranked(models),
            prompt_fingerprints: ranked(prints),
            sample,
        }
    }

    /// `switchyard_route_weight{route, upstream}`: the share of users each upstream serves.
    fn publish_weights(&self, inner: &Inner) {
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

    /// Writes every rollout to state_dir; a failure is logged and returned, and the state
    /// stays in force in memory either way.
    fn save(&self, inner: &mut Inner) -> Result<(), String> {
        inner.dirty_since = None;
        self.store.save(&inner.rollouts).map_err(|error| {
            tracing::error!(%error, "rollout state not saved; it stays in force in memory");
            format!("the rollout state was not saved to state_dir ({error}); it is in force but a restart would not see it")
        })
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

/// The `trigger` label: rules folded into `rule` (rule names are open-ended); the seed's
/// triggers, `alert:<kind>` and `operator` as they are.
fn trigger_label(name: &str) -> String {
    if name.starts_with("rule:") {
        "rule".to_owned()
    } else {
        name.to_owned()
    }
}

/// A figure for people: six significant digits, so 0.000001 and 42.5 both read right.
fn figure(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let decimals = (5 - x.abs().log10().floor() as i64).clamp(0, 12) as usize;
    let text = format!("{x:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::path::Path;

    use super::*;
    use crate::alerts::AlertSettings;
    use crate::exchange::{Exchange, Outcome};
    use crate::signals::Spans;

    const BASE: &str = r#"
[upstreams.blue]
url = "http://127.0.0.1:9"
[upstreams.green]
url = "http://127.0.0.1:10"
[[routes]]
name = "support"
[routes.rollout]
blue = "blue"
green = "green"
stages = [50, 100]
bake = "1h"
[routes.rollback]
min_requests = 20
error_window = "30s"
"#;

    struct Rig {
        controller: Arc<Controller>,
        signals: Arc<Signals>,
        route: Arc<crate::signals::RouteSignals>,
        _dir: std::path::PathBuf,
    }

    fn rig(text: &str) -> Rig {
        let config = Config::parse(text, "test.toml", Path::new(".")).unwrap();
        let dir = std::env::temp_dir().join(format!("sy-controller-{}", fastrand::u64(..)));
        let signals = Signals::new();
        let settings = AlertSettings {
            p99_latency: Duration::from_secs(30),
            error_rate: 0.5,
            window: Duration::from_secs(60),
            traffic_spike: 1e9,
            baseline: Duration::from_secs(60),
            min_requests: 1_000_000,
            queue_depth: 1_000_000,
            context_fill: 1.0,
            daily_tokens: None,
            budget_alert_at: 1.0,
        };
        let alerts = Alerts::new(signals.clone(), settings);
        let incidents = Arc::new(Incidents::open(&dir).unwrap());
        let (store, states) = RolloutStore::open(&dir).unwrap();
        let parts = (
            signals.clone(),
            alerts,
            Notifier::disabled(),
            incidents,
            Steering::new(),
        );
        let controller = Controller::new(parts, store, states);
        controller.apply(&config);
        let spans = Spans {
            window: Duration::from_secs(60),
            baseline: Duration::from_secs(60),
            context_fill: 1.0,
        };
        let route = signals.route("support", spans);
        Rig {
            controller,
            signals,
            route,
            _dir: dir,
        }
    }

    fn exchange(upstream: &str, status: u16, class: Option<&str>, ms: u64, cost: f64) -> Exchange {
        Exchange {
            request_id: Arc::from(format!("r{}", fastrand::u64(..))),
            route: Arc::from("support"),
            upstream: Arc::from(upstream),
            variant: Arc::from("none"),
            model: Arc::from("gpt-4o"),
            status,
            error: switchyard_core::ErrorClass::of_status(status),
            upstream_error_type: class.map(str::to_owned),
            outcome: Outcome::Complete,
            duration: Duration::from_millis(ms),
            ttfb: None,
            ttft: None,
            prompt_tokens: 10,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            completion_tokens: 10,
            cost_usd: cost,
            context_fill: None,
            fill_source: crate::FillSource::Estimated,
            streamed: false,
            requested_model: Some("gpt-4o".into()),
            response_model: Some("gpt-4o-2026".into()),
            finish_reason: Some("stop".into()),
            prompt_fingerprint: Some(7),
            bodies: None,
            refused: false,
            gen_ai_operation: Some("chat"),
            gen_ai_system: "openai",
            trace: switchyard_core::TraceContext::default(),
        }
    }

    fn feed(rig: &Rig, n: usize, make: impl Fn(usize) -> Exchange) {
        for i in 0..n {
            rig.signals.record(&rig.route, make(i));
        }
    }

    fn trigger_of(rig: &Rig) -> Option<String> {
        rig.controller.tick();
        let state = rig.controller.rollout("support").unwrap();
        (state.phase == Phase::RolledBack).then(|| state.reason.unwrap_or_default())
    }

    #[test]
    fn a_slow_green_is_rolled_back_on_p99() {
        let rig = rig(&BASE.replace(
            "min_requests = 20",
            "min_requests = 20\np99_latency = \"2s\"",
        ));
        feed(&rig, 40, |_| exchange("blue", 200, None, 100, 0.01));
        feed(&rig, 19, |_| exchange("green", 200, None, 5_000, 0.01));
        assert_eq!(
            trigger_of(&rig),
            None,
            "19 green requests are not enough to judge"
        );
        feed(&rig, 20, |_| exchange("green", 200, None, 5_000, 0.01));
        let reason = trigger_of(&rig).expect("rolled back");
        assert!(reason.starts_with("p99_latency"), "{reason}");
        assert_eq!(
            rig.controller
                .steering()
                .get("support")
                .unwrap()
                .green_share,
            0.0
        );
    }

    #[test]
    fn a_promotion_is_judged_on_what_green_does_after_it() {
        let rig = rig(BASE);
        feed(&rig, 40, |_| exchange("green", 500, None, 100, 0.01));
        assert!(trigger_of(&rig)
            .expect("rolled back")
            .starts_with("error_rate"));
        rig.controller
            .promote("support", "oncall", "fixed")
            .unwrap();
        // The failures that rolled it back are in this very second: they must not count.
        rig.controller.tick();
        assert_eq!(
            rig.controller.rollout("support").unwrap().phase,
            Phase::Complete
        );
        feed(&rig, 40, |_| exchange("green", 200, None, 100, 0.01));
        rig.controller.tick();
        assert_eq!(
            rig.controller.rollout("support").unwrap().phase,
            Phase::Complete
        );
        feed(&rig, 40, |_| exchange("green", 500, None, 100, 0.01));
        assert!(trigger_of(&rig)
            .expect("a complete rollout still rolls back")
            .starts_with("error_rate"));
    }

    #[test]
    fn a_costlier_green_is_rolled_back_against_blue() {
        let rig = rig(BASE);
        feed(&rig, 30, |_| exchange("blue", 200, None, 100, 0.010));
        feed(&rig, 30, |_| exchange("green", 200, None, 100, 0.014));
        assert_eq!(
            trigger_of(&rig),
            None,
            "40 % more is within the 50 % allowed"
        );
        feed(&rig, 60, |_| exchange("green", 200, None, 100, 0.030));
        let reason = trigger_of(&rig).expect("rolled back");
        assert!(reason.starts_with("cost_increase"), "{reason}");
    }

    #[test]
    fn an_error_class_blue_never_showed_is_rolled_back_above_its_rate() {
        let rig = rig(&BASE.replace("min_requests = 20", "min_requests = 20\nerror_rate = 0.5"));
        // Both sides fail the same way now and then: not new.
        feed(&rig, 200, |i| {
            exchange(
                "blue",
                if i % 50 == 0 { 500 } else { 200 },
                Some("overloaded_error"),
                100,
                0.01,
            )
        });
        feed(&rig, 200, |i| {
            exchange(
                "green",
                if i % 50 == 0 { 500 } else { 200 },
                Some("overloaded_error"),
                100,
                0.01,
            )
        });
        assert_eq!(trigger_of(&rig), None);
        // Green starts raising a class blue never did: 1 in 200 is above 0.1 %.
        feed(&rig, 1, |_| {
            exchange("green", 500, Some("context_length_exceeded"), 100, 0.01)
        });
        let reason = trigger_of(&rig).expect("rolled back");
        assert!(reason.starts_with("new_error_class"), "{reason}");
        let incident = &rig.controller.incidents().list()[0];
        let trigger = incident.trigger.as_ref().unwrap();
        assert_eq!(trigger.figures["error_class"], "context_length_exceeded");
        let evidence = incident.evidence.as_ref().unwrap();
        assert_eq!(evidence.response_models[0].value, "gpt-4o-2026");
        assert_eq!(evidence.prompt_fingerprints[0].value, "0000000000000007");
    }

    #[test]
    fn two_throttles_on_a_route_keep_the_lower_rate_until_both_clear() {
        let rules = r#"
[[rules]]
name = "tokens"
metric = "tokens_per_request"
above = 5
window = "30s"
min_requests = 5
action = "throttle_and_alert"
throttle_to = 0.5

[[rules]]
name = "cost"
metric = "cost_per_request"
above = 0.001
window = "30s"
min_requests = 5
action = "throttle_and_alert"
throttle_to = 0.1
"#;
        let rig = rig(&format!("{BASE}{rules}"));
        feed(&rig, 100, |_| exchange("blue", 200, None, 100, 0.01));
        rig.controller.tick();
        assert_eq!(rig.controller.rules_firing().len(), 2);
        let both = rig
            .controller
            .steering()
            .get("support")
            .unwrap()
            .throttle_rps
            .unwrap();
        // Dropping the stricter rule leaves the other's throttle in force.
        let only_tokens = format!(
            "{BASE}{}",
            &rules[..rules.find("[[rules]]\nname = \"cost\"").unwrap()]
        );
        rig.controller
            .apply(&Config::parse(&only_tokens, "test.toml", Path::new(".")).unwrap());
        let left = rig
            .controller
            .steering()
            .get("support")
            .unwrap()
            .throttle_rps
            .unwrap();
        assert!(
            left > both,
            "{left} should be the laxer rule's rate, above {both}"
        );
        assert_eq!(rig.controller.rules_firing().len(), 1);
    }

    #[test]
    fn a_reload_without_the_rule_lifts_its_throttle() {
        let rules = r#"
[[rules]]
name = "tokens"
metric = "tokens_per_request"
above = 5
window = "30s"
min_requests = 5
action = "throttle_and_alert"
"#;
        let text = format!("{BASE}{rules}");
        let rig = rig(&text);
        feed(&rig, 10, |_| exchange("blue", 200, None, 100, 0.01));
        rig.controller.tick();
        assert_eq!(rig.controller.rules_firing().len(), 1);
        assert!(rig
            .controller
            .steering()
            .get("support")
            .unwrap()
            .throttle_rps
            .is_some());
        let config = Config::parse(BASE, "test.toml", Path::new(".")).unwrap();
        rig.controller.apply(&config);
        assert!(rig.controller.rules_firing().is_empty());
        assert_eq!(
            rig.controller
                .steering()
                .get("support")
                .unwrap()
                .throttle_rps,
            None
        );
        assert_eq!(
            rig.controller.rollout("support").unwrap().phase,
            Phase::Shifting,
            "the rollout is untouched"
        );
    }
}
