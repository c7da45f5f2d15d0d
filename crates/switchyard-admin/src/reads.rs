//! The read endpoints: status, incidents, audit.

use http::{Response, StatusCode};
use serde::Serialize;
use switchyard_core::Body;

use crate::audit::AuditEntry;
use crate::reply::{self, respond, ApiError, JSON};
use crate::state::AdminState;
use crate::status;
use switchyard_control::fleet::streams::{newest_per_id, Stream};
use switchyard_control::fleet::Fleet;
use switchyard_control::incidents::{Incident, Summary};

/// How many audit entries `GET /admin/audit` returns without `limit`, and at most.
pub const DEFAULT_AUDIT_LIMIT: usize = 100;
pub const MAX_AUDIT_LIMIT: usize = 1000;

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct IncidentList<'a> {
    incidents: Vec<Listed<'a>>,
    /// Fleet mode only: `fleet` (every replica's, read from Redis) or `local` (this
    /// replica's alone: Redis is out of reach).
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'static str>,
}

/// An incident in a list.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Listed<'a> {
    #[serde(flatten)]
    summary: Summary<'a>,
    /// Fleet mode only: the replica that opened it.
    #[serde(skip_serializing_if = "Option::is_none")]
    replica: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AuditPage {
    entries: Vec<Audited>,
    /// Fleet mode only: `fleet` or `local`, as for incidents.
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'static str>,
}

/// An audit entry in a page.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Audited {
    #[serde(flatten)]
    entry: AuditEntry,
    /// Fleet mode only: the replica that wrote it.
    #[serde(skip_serializing_if = "Option::is_none")]
    replica: Option<String>,
}

/// How many incidents a fleet-wide list reads from the stream at most.
const FLEET_INCIDENTS: usize = 1000;

pub fn status(state: &AdminState) -> Response<Body> {
    let table = state.gateway.table();
    let text = status::render(&status::Inputs {
        table: &table,
        kills: &state.kills,
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

pub async fn incidents(state: &AdminState) -> Response<Body> {
    let (all, source) = match &state.fleet {
        Some(fleet) => match fleet_incidents(fleet).await {
            Some(all) => (all, Some("fleet")),
            None => (
                local_incidents(state, Some(fleet.instance_id())),
                Some("local"),
            ),
        },
        None => (local_incidents(state, None), None),
    };
    let incidents = all
        .iter()
        .map(|(replica, i)| Listed {
            summary: i.summary(),
            replica: replica.clone(),
        })
        .collect();
    reply::json(StatusCode::OK, &IncidentList { incidents, source })
}

fn local_incidents(state: &AdminState, replica: Option<&str>) -> Vec<(Option<String>, Incident)> {
    let replica = replica.map(str::to_owned);
    let all = state.incidents.list();
    all.into_iter().map(|i| (replica.clone(), i)).collect()
}

/// Every replica's incidents, newest first, each as it is now; `None` without Redis.
async fn fleet_incidents(fleet: &Fleet) -> Option<Vec<(Option<String>, Incident)>> {
    let entries = fleet
        .read_stream(Stream::Incidents, FLEET_INCIDENTS)
        .await
        .ok()?;
    let parsed = entries.into_iter().filter_map(|e| {
        let incident: Incident = serde_json::from_str(&e.body).ok()?;
        Some((incident.id.clone(), (Some(e.replica), incident)))
    });
    let mut all = newest_per_id(parsed.collect());
    all.sort_by(|a, b| (b.1.opened_at_ms, &b.1.id).cmp(&(a.1.opened_at_ms, &a.1.id)));
    Some(all)
}

pub fn unknown_incident(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_incident",
        format!("no incident {id:?}; GET /admin/incidents lists them"),
    )
}

/// One incident: this replica's, or in fleet mode any replica's.
pub async fn incident(state: &AdminState, id: &str) -> Response<Body> {
    if let Some(incident) = state.incidents.get(id) {
        return reply::json(StatusCode::OK, &incident);
    }
    if let Some(fleet) = &state.fleet {
        let found = fleet_incidents(fleet)
            .await
            .and_then(|all| all.into_iter().find(|(_, i)| i.id == id));
        if let Some((_, incident)) = found {
            return reply::json(StatusCode::OK, &incident);
        }
    }
    unknown_incident(id).into_response()
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

pub async fn audit(state: &AdminState, query: Option<&str>) -> Response<Body> {
    let limit = match audit_limit(query) {
        Ok(limit) => limit,
        Err(refusal) => return refusal.into_response(),
    };
    if let Some(fleet) = &state.fleet {
        if let Ok(entries) = fleet.read_stream(Stream::Audit, limit).await {
            // Read newest first; a page is oldest first, as the file is.
            let entries = entries
                .into_iter()
                .rev()
                .filter_map(|e| {
                    let entry = serde_json::from_str(&e.body).ok()?;
                    Some(Audited {
                        entry,
                        replica: Some(e.replica),
                    })
                })
                .collect();
            let page = AuditPage {
                entries,
                source: Some("fleet"),
            };
            return reply::json(StatusCode::OK, &page);
        }
    }
    let replica = state.fleet.as_ref().map(|f| f.instance_id().to_owned());
    match state.audit.tail(limit) {
        Ok(entries) => {
            let entries = entries
                .into_iter()
                .map(|entry| Audited {
                    entry,
                    replica: replica.clone(),
                })
                .collect();
            let source = state.fleet.as_ref().map(|_| "local");
            reply::json(StatusCode::OK, &AuditPage { entries, source })
        }
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
