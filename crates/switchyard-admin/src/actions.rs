//! POST /admin/reload and POST /admin/incidents/{id}/ack.

use http::{Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use serde_json::json;
use switchyard_control::kill::now_ms;
use switchyard_control::Event;
use switchyard_core::Body;

use crate::audit::AuditEntry;
use crate::auth::Principal;
use crate::mutation::{answer, on_disk, record, reject};
use crate::reads::unknown_incident;
use crate::reply::{self, ApiError};
use crate::request::json_body;
use crate::state::{AdminState, ReloadOutcome};
use switchyard_control::incidents::{Incident, IncidentError};

/// An optional reason for a reload, kept in the audit log.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReloadBody {
    reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AckBody {
    note: Option<String>,
}

fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.trim().is_empty())
}

/// What the answer says when the audit entry could not be written.
fn warning(warnings: &[String]) -> Option<String> {
    (!warnings.is_empty()).then(|| warnings.join("; "))
}

#[derive(Serialize)]
struct Applied<'a> {
    result: &'static str,
    config_version: &'a str,
    previous_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
}

#[derive(Serialize)]
struct Rejected<'a> {
    result: &'static str,
    config_version: &'a str,
    error: serde_json::Value,
}

/// The incident record, with a warning only if the audit entry was lost.
#[derive(Serialize)]
struct Acknowledged<'a> {
    #[serde(flatten)]
    incident: &'a Incident,
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
}

/// Asks the binary to reload; either way the outcome is audited before the answer.
pub async fn reload(state: &AdminState, who: &Principal, body: Incoming) -> Response<Body> {
    let mut entry = AuditEntry::new(who, "reload", None);
    match json_body::<ReloadBody>(body).await {
        Ok(body) => entry.reason = non_empty(body.reason),
        Err(refusal) => return reject(state, entry, refusal),
    }
    match state.reloader.reload().await {
        Ok(outcome) => applied(state, who, entry, &outcome),
        Err(message) => rejected(state, who, entry, message),
    }
}

fn applied(
    state: &AdminState,
    who: &Principal,
    mut entry: AuditEntry,
    outcome: &ReloadOutcome,
) -> Response<Body> {
    entry.before = json!(outcome.previous);
    entry.after = json!(outcome.version);
    let mut warnings = Vec::new();
    record(state, &entry, &mut warnings);
    tracing::info!(by = %who.name, version = %outcome.version, previous = %outcome.previous, "configuration reloaded");
    let done = Applied {
        result: "applied",
        config_version: &outcome.version,
        previous_version: &outcome.previous,
        warning: warning(&warnings),
    };
    answer(&done, &warnings)
}

/// The 422 of the contract: not the error shape alone, since it also says which version
/// stays in force.
fn rejected(
    state: &AdminState,
    who: &Principal,
    mut entry: AuditEntry,
    message: String,
) -> Response<Body> {
    let in_force = state.gateway.table().version.clone();
    entry.before = json!(in_force);
    entry.after = json!(in_force);
    let entry = entry.rejected(&message);
    if let Err(error) = on_disk(|| state.audit.append(&entry)) {
        tracing::error!(%error, "audit entry of a rejected reload not written");
    }
    tracing::warn!(by = %who.name, %message, "configuration reload rejected");
    let error = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "config_rejected", message);
    let answer = Rejected {
        result: "rejected",
        config_version: &in_force,
        error: error.object(),
    };
    reply::json(StatusCode::UNPROCESSABLE_ENTITY, &answer)
}

fn ack_refusal(error: IncidentError) -> ApiError {
    match error {
        IncidentError::Unknown(id) => unknown_incident(&id),
        IncidentError::AlreadyAcknowledged { id, by, at_ms } => ApiError::new(
            StatusCode::CONFLICT,
            "already_acknowledged",
            format!("{id} was already acknowledged by {by} (at {at_ms} ms); nothing to do"),
        ),
        IncidentError::Io { .. } | IncidentError::Write(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "state_not_saved",
            format!("the acknowledgement could not be saved, so it was not made: {error}"),
        ),
    }
}

/// Acknowledges an incident: a human operator says they have it in hand.
pub async fn ack(state: &AdminState, who: &Principal, id: &str, body: Incoming) -> Response<Body> {
    let mut entry = AuditEntry::new(who, "ack", Some(id.to_owned()));
    let note = match json_body::<AckBody>(body).await {
        Ok(body) => non_empty(body.note),
        Err(refusal) => return reject(state, entry, refusal),
    };
    entry.reason = note.clone();
    match state.incidents.ack(id, &who.name, now_ms(), note) {
        Ok(incident) => {
            entry.before = json!({ "acknowledged_by": null });
            entry.after = json!({
                "acknowledged_by": incident.acknowledged_by,
                "acknowledged_at_ms": incident.acknowledged_at_ms,
            });
            let mut warnings = Vec::new();
            record(state, &entry, &mut warnings);
            tracing::info!(incident = id, by = %who.name, "incident acknowledged");
            let note = incident.ack_note.as_deref();
            let event = Event::ack(id, &incident.route, &who.name, note);
            state.notifier.notify(event);
            let done = Acknowledged {
                incident: &incident,
                warning: warning(&warnings),
            };
            answer(&done, &warnings)
        }
        Err(error) => {
            if let IncidentError::AlreadyAcknowledged { by, at_ms, .. } = &error {
                entry.before = json!({ "acknowledged_by": by, "acknowledged_at_ms": at_ms });
            }
            reject(state, entry, ack_refusal(error))
        }
    }
}
