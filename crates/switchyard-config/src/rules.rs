//! `[[rules]]`: behavioural baselines with an action, and `[incidents]`.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::ctx::Ctx;
use crate::error::ConfigError;

/// One `[[rules]]` table as written.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleSpec {
    /// Required, unique, `[a-z0-9_-]+`.
    #[schemars(with = "String")]
    name: Spanned<String>,
    /// Default: every route.
    #[schemars(with = "Option<String>")]
    route: Option<Spanned<String>>,
    /// Required.
    #[schemars(with = "String")]
    metric: Spanned<String>,
    /// The normal figure, for the record (shown in incidents and events).
    #[schemars(with = "Option<f64>")]
    baseline: Option<Spanned<f64>>,
    /// Exactly one of `above` and `below`.
    #[schemars(with = "Option<f64>")]
    above: Option<Spanned<f64>>,
    #[schemars(with = "Option<f64>")]
    below: Option<Spanned<f64>>,
    /// Default `5m`.
    #[schemars(with = "Option<String>")]
    window: Option<Spanned<String>>,
    /// Required.
    #[schemars(with = "String")]
    action: Spanned<String>,
    /// Requests in the window before the rule is judged. Default 20.
    #[schemars(with = "Option<u64>")]
    min_requests: Option<Spanned<u64>>,
    /// `throttle_and_alert`: admitted rate as a fraction of the window's rate. Default 0.5.
    #[schemars(with = "Option<f64>")]
    throttle_to: Option<Spanned<f64>>,
    /// `downgrade_model`: the model requests are rewritten to. Required for that action.
    #[schemars(with = "Option<String>")]
    downgrade_to: Option<Spanned<String>>,
    /// `downgrade_model` runs without an operator's approval. Default false.
    automatic: Option<bool>,
}

/// `[incidents]` as written.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct IncidentsSpec {
    /// Keep request and response bodies in sampled exchanges. Default false.
    capture_bodies: Option<bool>,
    /// Recent exchanges kept per incident, 0..=200. Default 20.
    #[schemars(with = "Option<u64>")]
    sample: Option<Spanned<u64>>,
}

/// What a rule watches, over its window, per route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleMetric {
    TokensPerRequest,
    /// Seconds.
    P95Latency,
    ErrorRate,
    /// US dollars.
    CostPerRequest,
    /// Mean fill of the model's context window, 0..=1: from the prompt tokens the upstream
    /// reported, the pre-send estimate where it reported none.
    ContextFill,
    /// Mean `score` the application reported through `/switchyard/v1/feedback`.
    FeedbackScore,
    /// Share of requests that completed: by finish reason, or by the application's feedback.
    CompletionRate,
}

impl RuleMetric {
    pub const ALL: [RuleMetric; 7] = [
        RuleMetric::TokensPerRequest,
        RuleMetric::P95Latency,
        RuleMetric::ErrorRate,
        RuleMetric::CostPerRequest,
        RuleMetric::ContextFill,
        RuleMetric::FeedbackScore,
        RuleMetric::CompletionRate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleMetric::TokensPerRequest => "tokens_per_request",
            RuleMetric::P95Latency => "p95_latency",
            RuleMetric::ErrorRate => "error_rate",
            RuleMetric::CostPerRequest => "cost_per_request",
            RuleMetric::ContextFill => "context_fill",
            RuleMetric::FeedbackScore => "feedback_score",
            RuleMetric::CompletionRate => "completion_rate",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    Alert,
    ThrottleAndAlert,
    RollbackAndNotify,
    DowngradeModel,
    Escalate,
}

impl RuleAction {
    pub const ALL: [RuleAction; 5] = [
        RuleAction::Alert,
        RuleAction::ThrottleAndAlert,
        RuleAction::RollbackAndNotify,
        RuleAction::DowngradeModel,
        RuleAction::Escalate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleAction::Alert => "alert",
            RuleAction::ThrottleAndAlert => "throttle_and_alert",
            RuleAction::RollbackAndNotify => "rollback_and_notify",
            RuleAction::DowngradeModel => "downgrade_model",
            RuleAction::Escalate => "escalate",
        }
    }
}

/// Which side of the threshold is bad.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    Above(f64),
    Below(f64),
}

impl Threshold {
    pub fn breached(self, value: f64) -> bool {
        match self {
            Threshold::Above(t) => value > t,
            Threshold::Below(t) => value < t,
        }
    }

    pub fn value(self) -> f64 {
        match self {
            Threshold::Above(t) | Threshold::Below(t) => t,
        }
    }
}

/// A validated rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    /// `None`: every route.
    pub route: Option<String>,
    pub metric: RuleMetric,
    pub baseline: Option<f64>,
    pub threshold: Threshold,
    pub window: Duration,
    pub action: RuleAction,
    pub min_requests: u64,
    pub throttle_to: f64,
    pub downgrade_to: Option<String>,
    pub automatic: bool,
    pub line: usize,
}

/// `[incidents]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentSettings {
    pub capture_bodies: bool,
    pub sample: usize,
}

impl Default for IncidentSettings {
    fn default() -> Self {
        IncidentSettings {
            capture_bodies: false,
            sample: 20,
        }
    }
}

pub(crate) fn compile_incidents(
    spec: &IncidentsSpec,
    ctx: &Ctx,
) -> Result<IncidentSettings, ConfigError> {
    let d = IncidentSettings::default();
    let sample = match &spec.sample {
        Some(v) if *v.get_ref() > 200 => {
            let msg = format!("must be at most 200, got {}", v.get_ref());
            return Err(ctx.at(v, "incidents.sample", msg));
        }
        Some(v) => *v.get_ref() as usize,
        None => d.sample,
    };
    Ok(IncidentSettings {
        capture_bodies: spec.capture_bodies.unwrap_or(d.capture_bodies),
        sample,
    })
}

pub(crate) fn compile_rules(
    specs: &[Spanned<RuleSpec>],
    routes: &[crate::Route],
    ctx: &mut Ctx,
) -> Result<Vec<Rule>, ConfigError> {
    let mut out: Vec<Rule> = Vec::with_capacity(specs.len());
    for (i, spanned) in specs.iter().enumerate() {
        let key = format!("rules[{i}]");
        let rule = compile_rule(spanned, &key, routes, ctx)?;
        if let Some(first) = out.iter().find(|r| r.name == rule.name) {
            let msg = format!(
                "duplicate rule name {:?} (first defined on line {})",
                rule.name, first.line
            );
            return Err(ctx.at(&spanned.get_ref().name, &format!("{key}.name"), msg));
        }
        out.push(rule);
    }
    Ok(out)
}

fn compile_rule(
    spanned: &Spanned<RuleSpec>,
    key: &str,
    routes: &[crate::Route],
    ctx: &mut Ctx,
) -> Result<Rule, ConfigError> {
    let s = spanned.get_ref();
    let name = s.name.get_ref();
    if !crate::ctx::is_label_name(name) {
        let msg = format!("invalid rule name {name:?}: use [a-z0-9_-]+ (it becomes a metric label and a URL segment)");
        return Err(ctx.at(&s.name, &format!("{key}.name"), msg));
    }
    let route = rule_route(s, key, routes, ctx)?;
    let metric = named(
        &RuleMetric::ALL,
        RuleMetric::as_str,
        &s.metric,
        "metric",
        key,
        ctx,
    )?;
    let action = named(
        &RuleAction::ALL,
        RuleAction::as_str,
        &s.action,
        "action",
        key,
        ctx,
    )?;
    let threshold = rule_threshold(s, key, ctx)?;
    let baseline = match &s.baseline {
        Some(b) => Some(finite(b, &format!("{key}.baseline"), ctx)?),
        None => None,
    };
    let window = ctx.duration(
        s.window.as_ref(),
        &format!("{key}.window"),
        Duration::from_secs(300),
    )?;
    let min_requests = ctx.positive(s.min_requests.as_ref(), &format!("{key}.min_requests"), 20)?;
    let throttle_to = rule_throttle_to(s, key, ctx)?;
    let downgrade_to = rule_downgrade_to(s, action, key, ctx)?;
    if action == RuleAction::RollbackAndNotify {
        warn_if_nothing_to_roll_back(s, key, route.as_deref(), routes, ctx);
    }
    Ok(Rule {
        name: name.clone(),
        route,
        metric,
        baseline,
        threshold,
        window,
        action,
        min_requests,
        throttle_to,
        downgrade_to,
        automatic: s.automatic.unwrap_or(false),
        line: ctx.line(&spanned.span()),
    })
}

/// `route`: absent means every route; present, it must name one.
fn rule_route(
    s: &RuleSpec,
    key: &str,
    routes: &[crate::Route],
    ctx: &Ctx,
) -> Result<Option<String>, ConfigError> {
    match &s.route {
        Some(r) if !routes.iter().any(|route| route.name == *r.get_ref()) => {
            let known: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
            let msg = format!(
                "unknown route {:?} (known: {})",
                r.get_ref(),
                known.join(", ")
            );
            Err(ctx.at(r, &format!("{key}.route"), msg))
        }
        Some(r) => Ok(Some(r.get_ref().clone())),
        None => Ok(None),
    }
}

/// The member of `all` whose name is written at `{key}.{field}`, or an error listing the names.
fn named<T: Copy>(
    all: &[T],
    as_str: fn(T) -> &'static str,
    written: &Spanned<String>,
    field: &str,
    key: &str,
    ctx: &Ctx,
) -> Result<T, ConfigError> {
    all.iter()
        .copied()
        .find(|m| as_str(*m) == written.get_ref())
        .ok_or_else(|| {
            let known: Vec<&str> = all.iter().map(|m| as_str(*m)).collect();
            let msg = format!(
                "unknown {field} {:?} (known: {})",
                written.get_ref(),
                known.join(", ")
            );
            ctx.at(written, &format!("{key}.{field}"), msg)
        })
}

/// Exactly one of `above` and `below`.
fn rule_threshold(s: &RuleSpec, key: &str, ctx: &Ctx) -> Result<Threshold, ConfigError> {
    match (&s.above, &s.below) {
        (Some(a), None) => Ok(Threshold::Above(finite(a, &format!("{key}.above"), ctx)?)),
        (None, Some(b)) => Ok(Threshold::Below(finite(b, &format!("{key}.below"), ctx)?)),
        (Some(_), Some(b)) => {
            let msg = "set above or below, not both";
            Err(ctx.at(b, &format!("{key}.below"), msg))
        }
        (None, None) => {
            let msg = "needs a threshold: above = N or below = N";
            Err(ctx.at(&s.name, &format!("{key}.above"), msg))
        }
    }
}

/// `throttle_to`: strictly between 0 and 1, default 0.5.
fn rule_throttle_to(s: &RuleSpec, key: &str, ctx: &Ctx) -> Result<f64, ConfigError> {
    match &s.throttle_to {
        Some(v) if *v.get_ref() > 0.0 && *v.get_ref() < 1.0 => Ok(*v.get_ref()),
        Some(v) => {
            let msg = format!(
                "must be between 0 and 1 (exclusive): the share of the current rate still admitted, got {}",
                v.get_ref()
            );
            Err(ctx.at(v, &format!("{key}.throttle_to"), msg))
        }
        None => Ok(0.5),
    }
}

/// `downgrade_to`: required, and not empty, for `downgrade_model`.
fn rule_downgrade_to(
    s: &RuleSpec,
    action: RuleAction,
    key: &str,
    ctx: &Ctx,
) -> Result<Option<String>, ConfigError> {
    let downgrade_to = s.downgrade_to.as_ref().map(|m| m.get_ref().clone());
    if action == RuleAction::DowngradeModel && downgrade_to.as_deref().is_none_or(str::is_empty) {
        let msg = "downgrade_model needs downgrade_to = \"<cheaper model>\"";
        return Err(ctx.at(&s.action, &format!("{key}.downgrade_to"), msg));
    }
    Ok(downgrade_to)
}

/// A `rollback_and_notify` rule over routes without a rollout is legal but does nothing.
fn warn_if_nothing_to_roll_back(
    s: &RuleSpec,
    key: &str,
    route: Option<&str>,
    routes: &[crate::Route],
    ctx: &mut Ctx,
) {
    let has_rollout = routes
        .iter()
        .filter(|r| route.is_none_or(|name| r.name == name))
        .any(|r| r.rollout.is_some());
    if !has_rollout {
        let msg = "rollback_and_notify has nothing to roll back: no route it watches has a [routes.rollout]";
        ctx.warn(Some(&s.action.span()), &format!("{key}.action"), msg);
    }
}

fn finite(v: &Spanned<f64>, key: &str, ctx: &Ctx) -> Result<f64, ConfigError> {
    let x = *v.get_ref();
    if x.is_finite() && x >= 0.0 {
        Ok(x)
    } else {
        Err(ctx.at(v, key, format!("must be a number of 0 or more, got {x}")))
    }
}
