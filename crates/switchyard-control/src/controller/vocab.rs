//! The controller's words: what set a decision off ([`Cause`]), who took it ([`Actor`]), what
//! a rule is doing ([`RuleFiring`]) and what the webhooks are told. Each serialises to the
//! exact text the admin API, the incident records and the webhooks have always carried.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use switchyard_config::{EventKind, RuleAction, RuleMetric};

use crate::alerts::AlertKind;
use crate::notify::Event;
use crate::rollout::{Phase, RolloutState};

/// What set a rollback off. Written as `error_rate`, `p99_latency`, `cost_increase`,
/// `new_error_class`, `alert:<kind>`, `rule:<name>` or `operator`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    ErrorRate,
    P99Latency,
    CostIncrease,
    NewErrorClass,
    /// A golden-signal alert of the route fired while traffic was shifting.
    Alert(AlertKind),
    /// A rule whose action is `rollback_and_notify`.
    Rule(String),
    Operator,
}

impl Cause {
    /// The `trigger` label of `switchyard_rollbacks_total`: rules folded into `rule` (rule
    /// names are open-ended), the others as written.
    pub fn label(&self) -> String {
        match self {
            Cause::Rule(_) => "rule".to_owned(),
            other => other.to_string(),
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cause::ErrorRate => f.write_str("error_rate"),
            Cause::P99Latency => f.write_str("p99_latency"),
            Cause::CostIncrease => f.write_str("cost_increase"),
            Cause::NewErrorClass => f.write_str("new_error_class"),
            Cause::Alert(kind) => write!(f, "alert:{}", kind.as_str()),
            Cause::Rule(name) => write!(f, "rule:{name}"),
            Cause::Operator => f.write_str("operator"),
        }
    }
}

impl Serialize for Cause {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Who took a decision. Written as `controller`, `rule:<name>`, or the operator's token name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    Controller,
    Rule(String),
    Operator(String),
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Actor::Controller => f.write_str(super::BY),
            Actor::Rule(name) => write!(f, "rule:{name}"),
            Actor::Operator(name) => f.write_str(name),
        }
    }
}

impl Serialize for Actor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What the controller decided for the fleet, for the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    Rollback,
    Advance,
}

impl DecisionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Rollback => "rollback",
            DecisionKind::Advance => "advance",
        }
    }
}

/// A rule firing on a route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleFiring {
    pub rule: String,
    pub route: String,
    #[serde(serialize_with = "metric_out", deserialize_with = "metric_in")]
    #[schema(value_type = String)]
    pub metric: RuleMetric,
    #[serde(serialize_with = "action_out", deserialize_with = "action_in")]
    #[schema(value_type = String)]
    pub action: RuleAction,
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

fn metric_out<S: Serializer>(m: &RuleMetric, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.as_str())
}

fn action_out<S: Serializer>(a: &RuleAction, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(a.as_str())
}

fn metric_in<'de, D: Deserializer<'de>>(d: D) -> Result<RuleMetric, D::Error> {
    let text = String::deserialize(d)?;
    RuleMetric::ALL
        .into_iter()
        .find(|m| m.as_str() == text)
        .ok_or_else(|| serde::de::Error::custom(format!("unknown rule metric {text:?}")))
}

fn action_in<'de, D: Deserializer<'de>>(d: D) -> Result<RuleAction, D::Error> {
    let text = String::deserialize(d)?;
    RuleAction::ALL
        .into_iter()
        .find(|a| a.as_str() == text)
        .ok_or_else(|| serde::de::Error::custom(format!("unknown rule action {text:?}")))
}

/// `rollout` webhooks: a rollout started, advanced a stage or completed.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub(super) enum RolloutNews {
    Started {
        green: String,
        blue: String,
        percent: f64,
    },
    Advanced(Stage),
    Completed(Stage),
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Stage {
    green: String,
    percent: f64,
    stage: usize,
    green_requests_in_stage: u64,
}

impl RolloutNews {
    pub(super) fn started(state: &RolloutState) -> Self {
        RolloutNews::Started {
            green: state.green.clone(),
            blue: state.blue.clone(),
            percent: state.percent,
        }
    }

    /// The stage `after` reached, after `served` green requests in the previous one.
    pub(super) fn advanced(after: &RolloutState, served: u64) -> Self {
        let stage = Stage {
            green: after.green.clone(),
            percent: after.percent,
            stage: after.stage,
            green_requests_in_stage: served,
        };
        if after.phase == Phase::Complete {
            RolloutNews::Completed(stage)
        } else {
            RolloutNews::Advanced(stage)
        }
    }

    pub(super) fn status(&self) -> &'static str {
        match self {
            RolloutNews::Started { .. } => "started",
            RolloutNews::Advanced(_) => "advanced",
            RolloutNews::Completed(_) => "completed",
        }
    }
}

/// `rollback` webhooks.
#[derive(Debug, Clone, Serialize)]
pub(super) struct RollbackNews {
    pub trigger: Cause,
    pub value: f64,
    pub threshold: f64,
    pub by: Actor,
    pub green: String,
    pub blue: String,
    pub incident: Option<String>,
    /// From the moment the condition became true; absent for an operator's rollback made
    /// through the fleet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_latency_ms: Option<f64>,
}

/// `promote` webhooks.
#[derive(Debug, Clone, Serialize)]
pub(super) struct PromoteNews {
    pub by: Actor,
    pub reason: String,
    pub green: String,
    pub from: Phase,
}

/// Where a rule stands, in `rule` webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RuleStatus {
    Firing,
    AwaitingApproval,
    Cleared,
    Approved,
    Released,
}

/// `rule` webhooks: a rule fired (or waits for approval).
#[derive(Debug, Clone, Serialize)]
pub(super) struct RuleFired {
    pub rule: String,
    #[serde(serialize_with = "metric_out")]
    pub metric: RuleMetric,
    pub value: f64,
    pub threshold: f64,
    pub baseline: Option<f64>,
    #[serde(serialize_with = "action_out")]
    pub action: RuleAction,
    pub status: RuleStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttle_rps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downgrade_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
    pub incident: Option<String>,
}

/// `rule` webhooks: a rule cleared.
#[derive(Debug, Clone, Serialize)]
pub(super) struct RuleCleared {
    pub rule: String,
    pub value: f64,
    pub status: RuleStatus,
    #[serde(serialize_with = "action_out")]
    pub action: RuleAction,
}

/// `rule` webhooks: an operator approved or released a downgrade.
#[derive(Debug, Clone, Serialize)]
pub(super) struct RuleMoved {
    pub rule: String,
    pub status: RuleStatus,
    pub by: Actor,
    /// Absent on a release made on this replica alone; the model (or null) otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downgrade_to: Option<Option<String>>,
}

/// A webhook event whose fields are `payload`'s.
pub(super) fn event(kind: EventKind, route: &str, payload: &impl Serialize) -> Event {
    let detail = serde_json::to_value(payload).unwrap_or_default();
    Event::new(kind, Some(route.to_owned()), detail)
}

/// A figure for people: six significant digits, so 0.000001 and 42.5 both read right.
pub(super) fn figure(x: f64) -> String {
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
    use serde_json::json;

    use super::*;

    #[test]
    fn causes_and_actors_read_as_they_always_have() {
        let causes = [
            (Cause::ErrorRate, "error_rate", "error_rate"),
            (Cause::NewErrorClass, "new_error_class", "new_error_class"),
            (
                Cause::Alert(AlertKind::ErrorRate),
                "alert:error_rate",
                "alert:error_rate",
            ),
            (Cause::Rule("spend".into()), "rule:spend", "rule"),
            (Cause::Operator, "operator", "operator"),
        ];
        for (cause, text, label) in causes {
            assert_eq!(json!(cause), json!(text));
            assert_eq!(cause.label(), label);
        }
        assert_eq!(json!(Actor::Controller), json!("controller"));
        assert_eq!(json!(Actor::Rule("spend".into())), json!("rule:spend"));
        assert_eq!(json!(Actor::Operator("oncall".into())), json!("oncall"));
    }

    #[test]
    fn a_rule_firing_round_trips_with_its_metric_and_action_as_text() {
        let firing = RuleFiring {
            rule: "spend".into(),
            route: "support".into(),
            metric: RuleMetric::CostPerRequest,
            action: RuleAction::ThrottleAndAlert,
            value: 0.5,
            threshold: 0.1,
            since_ms: 7,
            awaiting_approval: false,
            incident: None,
            throttle_rps: Some(3.0),
        };
        let text = json!(firing);
        assert_eq!(text["metric"], "cost_per_request");
        assert_eq!(text["action"], "throttle_and_alert");
        assert_eq!(serde_json::from_value::<RuleFiring>(text).unwrap(), firing);
        let unknown = json!({"rule": "r", "route": "x", "metric": "vibes", "action": "alert",
            "value": 1.0, "threshold": 1.0});
        assert!(serde_json::from_value::<RuleFiring>(unknown).is_err());
    }

    #[test]
    fn webhook_payloads_keep_their_fields() {
        let mut state = RolloutState::start("support", "blue", "green", &[50.0, 100.0], 1);
        let started = json!(RolloutNews::started(&state));
        assert_eq!(
            started,
            json!({"status": "started", "green": "green", "blue": "blue", "percent": 50.0})
        );
        state.advance(2);
        let done = json!(RolloutNews::advanced(&state, 40));
        assert_eq!(
            done,
            json!({"status": "completed", "green": "green", "percent": 100.0, "stage": 1,
                   "green_requests_in_stage": 40})
        );
        let released = RuleMoved {
            rule: "r".into(),
            status: RuleStatus::Released,
            by: Actor::Operator("oncall".into()),
            downgrade_to: None,
        };
        assert_eq!(
            json!(released),
            json!({"rule": "r", "status": "released", "by": "oncall"})
        );
        let fleet_release = RuleMoved {
            downgrade_to: Some(None),
            ..released
        };
        assert_eq!(json!(fleet_release)["downgrade_to"], json!(null));
    }

    #[test]
    fn figures_read_right_at_every_scale() {
        assert_eq!(figure(0.000001), "0.000001");
        assert_eq!(figure(42.5), "42.5");
        assert_eq!(figure(0.0), "0");
        assert_eq!(figure(123456.0), "123456");
    }
}
