//! The read endpoints: status, incidents, audit.

use http::{Response, StatusCode};
use serde::Serialize;
use switchyard_core::Body;

use crate::audit::AuditEntry;
use crate::reply::{self, respond, ApiError, JSON};
use crate::state::AdminState;
use crate::status;
use switchyard_control::incidents::Summary;

/// How many audit entries `GET /admin/audit` returns without `limit`, and at most.
pub const DEFAULT_AUDIT_LIMIT: usize = 100;
pub const MAX_AUDIT_LIMIT: usize = 1000;

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct IncidentList<'a> {
    incidents: Vec<Summary<'a>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AuditPage {
    entries: Vec<AuditEntry>,
}

pub fn status(state: &AdminState) -> Response<Body> {
    let table = state.gateway.table();
    let fallbacks = state.fallbacks.load();
    let text = status::render(&status::Inputs {
        table: &table,
        kills: &state.kills,
        fallbacks: &fallbacks,
        firing: &state.alerts.firing(),
        rollouts: &state.controller.rollouts(),
        rules: &state.controller.rules_firing(),
        steering: state.gateway.steering(),
        tokens_today: state.gateway.signals().tokens_today(),
        open_incidents: state.incidents.open_count(),
        fleet: state.fleet.as_ref().map(|f| f.status()),
    });
    respond(StatusCode::OK, JSON, text)
}

pub fn incidents(state: &AdminState) -> Response<Body> {
    let all = state.incidents.list();
    let incidents = all.iter().map(|i| i.summary()).collect();
    reply::json(StatusCode::OK, &IncidentList { incidents })
}

pub fn unknown_incident(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_incident",
        format!("no incident {id:?}; GET /admin/incidents lists them"),
    )
}

pub fn incident(state: &AdminState, id: &str) -> Response<Body> {
    match state.incidents.get(id) {
        Some(incident) => reply::json(StatusCode::OK, &incident),
        None => unknown_incident(id).into_response(),
    }
}

/// `limit` from the query string: absent means the default, above the maximum means the
/// maximum, anything but a positive integer is refused.
fn audit_limit(query: Option<&str>) -> Result<usize, ApiError> {
    let value = query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(key, _)| *key == "limit")
        .map(|(_, value)| value);
    let Some(value) = value else {
        return Ok(DEFAULT_AUDIT_LIMIT);
    };
    match value.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n.min(MAX_AUDIT_LIMIT)),
        _ => Err(ApiError::bad_request(format!(
            "limit must be a whole number from 1 to {MAX_AUDIT_LIMIT}, not {value:?}"
        ))),
    }
}

pub fn audit(state: &AdminState, query: Option<&str>) -> Response<Body> {
    let limit = match audit_limit(query) {
        Ok(limit) => limit,
        Err(refusal) => return refusal.into_response(),
    };
    match state.audit.tail(limit) {
        Ok(entries) => reply::json(StatusCode::OK, &AuditPage { entries }),
        Err(error) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "audit_unreadable",
            format!("the audit log could not be read: {error}"),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(audit_limit(None).unwrap(), 100);
        assert_eq!(audit_limit(Some("x=1")).unwrap(), 100);
        assert_eq!(audit_limit(Some("x=1&limit=5")).unwrap(), 5);
        assert_eq!(audit_limit(Some("limit=5000")).unwrap(), 1000);
        assert!(audit_limit(Some("limit=0")).is_err());
        assert!(audit_limit(Some("limit=")).is_err());
        assert!(audit_limit(Some("limit=-3")).is_err());
        assert!(audit_limit(Some("limit")).is_err());
    }
}
