//! What every mutation shares: the audit entry written before the answer, and warnings.

use http::Response;
use serde::Serialize;
use switchyard_control::{Flip, KillSwitch};
use switchyard_core::Body;

use crate::audit::AuditEntry;
use crate::reply::ApiError;
use crate::state::AdminState;

/// Records a refused mutation and answers with the refusal.
pub fn reject(state: &AdminState, entry: AuditEntry, refusal: ApiError) -> Response<Body> {
    let entry = entry.rejected(&refusal.message);
    if let Err(error) = state.audit.append(&entry) {
        // The refusal changed nothing, so it still goes out; the log says what was lost.
        tracing::error!(%error, action = %entry.action, who = %entry.who, "audit entry not written");
    }
    refusal.into_response()
}

/// Records a mutation that took effect. A failed write cannot undo the mutation, so it
/// becomes a warning in the answer instead.
pub fn record(state: &AdminState, entry: &AuditEntry, warnings: &mut Vec<String>) {
    if let Err(error) = state.audit.append(entry) {
        tracing::error!(%error, action = %entry.action, who = %entry.who, "audit entry not written");
        warnings.push(format!("the audit entry was not written: {error}"));
    }
}

/// The answer to a kill or a revive, in the contract's field order.
#[derive(Debug, Serialize)]
pub struct FlipAnswer<'a> {
    pub route: &'a str,
    pub engaged: bool,
    /// The switch now in force; only a kill has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kill_switch: Option<&'a KillSwitch>,
    pub before: Option<&'a KillSwitch>,
    pub effective_at_ms: u64,
    pub took_us: u64,
    pub persisted: bool,
    /// The incident a kill opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

impl<'a> FlipAnswer<'a> {
    /// `persisted` is false, and `warning` says why, when anything was not written.
    pub fn new(route: &'a str, flip: &'a Flip, warnings: &[String]) -> Self {
        let warning = (!warnings.is_empty()).then(|| {
            format!(
                "the change is in force but not all of it was saved: {}",
                warnings.join("; ")
            )
        });
        FlipAnswer {
            route,
            engaged: flip.after.is_some(),
            kill_switch: flip.after.as_ref(),
            before: flip.before.as_ref(),
            effective_at_ms: flip.effective_at_ms,
            took_us: flip.took_us,
            persisted: warnings.is_empty(),
            incident: None,
            warning,
        }
    }
}
