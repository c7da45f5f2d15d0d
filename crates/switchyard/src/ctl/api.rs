//! What the admin API answers (docs: the admin API contract, v0.3).
//!
//! Every field has a default and unknown fields are ignored, so a server that adds or drops an
//! optional field never breaks the on-call engineer's client mid-incident.

use serde::Deserialize;
/// The gateway's own types where the answer carries them whole: a rule firing in
/// `rules_firing`, an incident's trigger.
pub use switchyard_control::controller::RuleFiring;
pub use switchyard_control::incidents::Trigger;

/// `{"error":{"code","message"}}`, the body of every error answer.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ErrorBody {
    pub error: ApiError,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ApiError {
    pub code: String,
    pub message: String,
}

/// GET /admin/status.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Status {
    pub config_version: String,
    pub routes: Vec<Route>,
    pub alerts_firing: Vec<Alert>,
    pub rules_firing: Vec<RuleFiring>,
    pub tokens_today: Option<u64>,
    pub open_incidents: Option<u64>,
    /// Fleet mode only.
    pub fleet: Option<Fleet>,
}

/// `fleet` in GET /admin/status: this replica's standing and the members it sees.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Fleet {
    pub mode: String,
    pub instance_id: String,
    pub state_version: u64,
    pub divergent: bool,
    pub members: Vec<Member>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Member {
    pub instance_id: String,
    pub state_version: u64,
    pub config_version: String,
    pub divergent: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Route {
    pub name: String,
    pub upstream: String,
    pub endpoints: Vec<String>,
    pub weights: Vec<Weight>,
    pub kill_switch: Option<KillSwitch>,
    pub fallback: Option<String>,
    pub rollout: Option<Rollout>,
    pub throttle_rps: Option<f64>,
    pub downgrade_to: Option<String>,
    pub experiments: Vec<RouteExperiment>,
}

/// An experiment on a route, as status lists it.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct RouteExperiment {
    pub name: String,
    pub share: f64,
}

/// A route's rollout, as status and rollback/promote answers carry it.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct Rollout {
    pub blue: String,
    pub green: String,
    pub stages: Vec<f64>,
    pub stage: usize,
    pub percent: f64,
    pub phase: String,
    pub stage_requests: u64,
    pub reason: Option<String>,
    pub by: Option<String>,
}

/// POST /admin/routes/{route}/rollback and /promote.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ShiftReply {
    pub route: String,
    pub before: Rollout,
    pub after: Rollout,
    pub took_us: Option<u64>,
    pub incident: Option<String>,
    pub warning: Option<String>,
}

/// POST /admin/rules/{rule}/approve and /release.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RuleReply {
    pub rule: String,
    pub route: String,
    pub action: String,
    pub downgrade_to: Option<String>,
    pub warning: Option<String>,
}

/// A value seen in an incident's window, with its count.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct Seen {
    pub value: String,
    pub count: u64,
}

/// An incident's evidence (the sample of exchanges is left to `--json`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct Evidence {
    pub exchanges_examined: u64,
    pub response_models: Vec<Seen>,
    pub prompt_fingerprints: Vec<Seen>,
    pub sample: Vec<serde_json::Value>,
}

/// GET /admin/experiments/{name}.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Experiment {
    pub name: String,
    pub route: String,
    pub share: f64,
    pub arms: Vec<ExperimentArm>,
    pub metric: String,
    pub verdict: String,
    pub difference: Option<f64>,
    pub p_value: f64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ExperimentArm {
    pub variant: String,
    pub requests: u64,
    pub error_rate: Option<f64>,
    pub completion_rate: Option<f64>,
    pub tokens_per_completed: Option<f64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub cost_per_request_usd: Option<f64>,
    pub feedback_reports: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Weight {
    pub upstream: String,
    pub percent: f64,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct KillSwitch {
    pub route: String,
    pub reason: String,
    pub percent: Option<f64>,
    pub segment: Option<Segment>,
    pub engaged_at_ms: Option<u64>,
    pub by: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct Segment {
    pub header: String,
    pub value: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct Alert {
    pub alert: String,
    pub route: String,
    pub value: f64,
    pub threshold: f64,
    /// Unix seconds or milliseconds: see [`crate::ctl::text::epoch_ms`].
    pub since: u64,
}

/// POST and DELETE /admin/routes/{route}/kill.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct KillReply {
    pub route: String,
    pub engaged: bool,
    pub kill_switch: Option<KillSwitch>,
    pub before: Option<KillSwitch>,
    pub effective_at_ms: u64,
    pub took_us: Option<u64>,
    /// Absent means the server did not say; only an explicit `false` deserves a warning.
    pub persisted: Option<bool>,
    pub incident: Option<String>,
    /// What was not saved (the audit entry, the incident), when something was not.
    pub warning: Option<String>,
}

/// POST /admin/reload, both the 200 and the 422 body.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ReloadReply {
    pub result: String,
    pub config_version: String,
    pub previous_version: Option<String>,
    pub error: Option<ApiError>,
    pub warning: Option<String>,
}

/// GET /admin/incidents.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Incidents {
    pub incidents: Vec<Incident>,
}

/// One incident: the list carries a summary, GET /admin/incidents/{id} the full record.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Incident {
    pub id: String,
    pub kind: Option<String>,
    pub route: String,
    pub opened_at_ms: u64,
    pub reason: String,
    pub by: String,
    pub config_version: Option<String>,
    pub before: Option<KillSwitch>,
    pub after: Option<KillSwitch>,
    pub rollout_before: Option<Rollout>,
    pub rollout_after: Option<Rollout>,
    pub trigger: Option<Trigger>,
    pub evidence: Option<Evidence>,
    pub alerts_firing: Vec<Alert>,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at_ms: Option<u64>,
    pub ack_note: Option<String>,
    /// Set on an ack whose audit entry was not written.
    pub warning: Option<String>,
}

/// GET /admin/audit.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Audit {
    pub entries: Vec<AuditEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AuditEntry {
    pub at_ms: u64,
    pub who: String,
    pub role: String,
    pub kind: String,
    pub action: String,
    pub target: Option<String>,
    pub reason: Option<String>,
    pub result: String,
}
