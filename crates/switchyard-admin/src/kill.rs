//! POST and DELETE /admin/routes/{route}/kill: switch a route off and on again.

use http::{HeaderName, HeaderValue, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;
use switchyard_config::EventKind;
use switchyard_control::kill::now_ms;
use switchyard_control::{Event, Flip, KillSwitch, Segment};
use switchyard_core::Body;

use crate::audit::AuditEntry;
use crate::auth::Principal;
use crate::fleet;
use crate::mutation::{answer, record, reject, FlipAnswer};
use crate::reply::ApiError;
use crate::request::json_body;
use crate::state::AdminState;
use crate::views;
use switchyard_control::fleet::Change;
use switchyard_control::incidents::Incident;

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "wrong refunds", "percent": 25.0}))]
pub(crate) struct KillBody {
    /// Why the route is killed; it goes to the incident. Required, not blank.
    #[schema(value_type = String, required = true, min_length = 1)]
    reason: Option<String>,
    /// Kill only this percentage of users (sticky by user key); leave it out to kill all.
    #[schema(exclusive_minimum = 0.0, maximum = 100.0)]
    percent: Option<f64>,
    /// Kill only requests whose header has this value.
    segment: Option<SegmentBody>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SegmentBody {
    /// A header name, in any case.
    header: String,
    /// Its value, exactly.
    value: String,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReviveBody {
    /// Kept in the audit log.
    reason: Option<String>,
}

fn unknown_route(state: &AdminState, route: &str) -> ApiError {
    let table = state.gateway.table();
    let names: Vec<&str> = table.routes.iter().map(|r| &*r.name).collect();
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_route",
        format!("no route {route:?}; the routes are: {}", names.join(", ")),
    )
}

fn route_exists(state: &AdminState, route: &str) -> bool {
    state
        .gateway
        .table()
        .routes
        .iter()
        .any(|r| &*r.name == route)
}

/// The switch the body asks for, or why it cannot be had.
pub(crate) fn validate(body: KillBody, route: &str, by: &str) -> Result<KillSwitch, ApiError> {
    let reason = body.reason.as_deref().map(str::trim).unwrap_or("");
    if reason.is_empty() {
        return Err(ApiError::bad_request(
            "reason is required: say why the route is being killed (it goes to the incident)",
        ));
    }
    if let Some(p) = body.percent {
        // NaN fails both comparisons and is refused with the rest.
        if !(p > 0.0 && p <= 100.0) {
            return Err(ApiError::bad_request(format!(
                "percent must be above 0 and at most 100, not {p}; leave it out to kill everything"
            )));
        }
    }
    let segment = body.segment.map(check_segment).transpose()?;
    Ok(KillSwitch {
        route: route.to_owned(),
        reason: reason.to_owned(),
        percent: body.percent,
        segment,
        engaged_at_ms: now_ms(),
        by: by.to_owned(),
    })
}

fn check_segment(segment: SegmentBody) -> Result<Segment, ApiError> {
    let header = HeaderName::from_bytes(segment.header.as_bytes()).map_err(|_| {
        ApiError::bad_request(format!(
            "segment.header {:?} is not a valid header name",
            segment.header
        ))
    })?;
    if segment.value.is_empty() || HeaderValue::from_str(&segment.value).is_err() {
        return Err(ApiError::bad_request(format!(
            "segment.value {:?} is not a valid, non-empty header value",
            segment.value
        )));
    }
    Ok(Segment {
        // Lower-cased, the form the data path and the status page show.
        header: header.as_str().to_owned(),
        value: segment.value,
    })
}

/// Opens the kill's incident, with the alerts firing at this moment; returns its id.
fn open_incident(state: &AdminState, flip: &Flip, warnings: &mut Vec<String>) -> String {
    let Some(after) = &flip.after else {
        return String::new(); // an engage always has an after; nothing to open otherwise
    };
    let (incident, written) = state.incidents.open_incident(Incident {
        id: String::new(),
        kind: "kill".into(),
        route: after.route.clone(),
        opened_at_ms: flip.effective_at_ms,
        reason: after.reason.clone(),
        by: after.by.clone(),
        config_version: state.gateway.table().version.clone(),
        before: flip.before.clone(),
        after: flip.after.clone(),
        rollout_before: None,
        rollout_after: None,
        trigger: None,
        evidence: None,
        alerts_firing: views::alerts(&state.alerts.firing()),
        acknowledged_by: None,
        acknowledged_at_ms: None,
        ack_note: None,
    });
    if let Err(error) = written {
        warnings.push(format!("incident {} was not saved: {error}", incident.id));
    }
    incident.id
}

/// Engages the kill switch, then opens the incident and audits it; answers only once the
/// switch is in force for the next request and, unless the answer is a 503, on disk.
pub async fn kill(
    state: &AdminState,
    who: &Principal,
    route: &str,
    query: Option<&str>,
    body: Incoming,
) -> Response<Body> {
    let mut entry = AuditEntry::new(who, "kill", Some(route.to_owned()));
    let body = match json_body::<KillBody>(body).await {
        Ok(body) => body,
        Err(refusal) => return reject(state, entry, refusal),
    };
    entry.reason = body.reason.clone();
    if !route_exists(state, route) {
        return reject(state, entry, unknown_route(state, route));
    }
    let switch = match validate(body, route, &who.name) {
        Ok(switch) => switch,
        Err(refusal) => return reject(state, entry, refusal),
    };
    let change = Change::Engage {
        switch: switch.clone(),
    };
    let flip = match fleet::flip(state, change, query).await {
        Ok(flip) => flip,
        Err(refusal) => return reject(state, entry, refusal),
    };
    let mut warnings = Vec::new();
    if let Err(error) = &flip.persisted {
        warnings.push(format!(
            "the kill switch was not saved and will not survive a restart: {error}"
        ));
    }
    let incident = open_incident(state, &flip, &mut warnings);
    entry.reason = Some(switch.reason.clone());
    entry.before = json!(flip.before);
    entry.after = json!(flip.after);
    record(state, &entry, &mut warnings);
    tracing::warn!(route, by = %who.name, reason = %switch.reason, incident = %incident, "kill switch engaged");
    let notifier = &state.notifier;
    notifier.notify(Event::flip(
        EventKind::Kill,
        route,
        Some(&switch.reason),
        &who.name,
        Some(&switch),
    ));
    if !incident.is_empty() {
        notifier.notify(Event::incident(&incident, "kill", route));
    }
    let flipped = FlipAnswer {
        incident: Some(incident),
        ..FlipAnswer::new(route, &flip, &warnings)
    };
    answer(&flipped, &warnings)
}

/// Releases the kill switch. A route the configuration no longer has can still be revived,
/// so a switch left over from before a reload is never stuck. Answered, like a kill, once
/// the release is on disk, or with a 503 saying what was not saved.
pub async fn revive(
    state: &AdminState,
    who: &Principal,
    route: &str,
    query: Option<&str>,
    body: Incoming,
) -> Response<Body> {
    let mut entry = AuditEntry::new(who, "revive", Some(route.to_owned()));
    let body = match json_body::<ReviveBody>(body).await {
        Ok(body) => body,
        Err(refusal) => return reject(state, entry, refusal),
    };
    entry.reason = body.reason.filter(|r| !r.trim().is_empty());
    if !route_exists(state, route) && state.kills.get(route).is_none() {
        return reject(state, entry, unknown_route(state, route));
    }
    let change = Change::Release {
        route: route.to_owned(),
    };
    let flip = match fleet::flip(state, change, query).await {
        Ok(flip) => flip,
        Err(refusal) => return reject(state, entry, refusal),
    };
    let mut warnings = Vec::new();
    if let Err(error) = &flip.persisted {
        warnings.push(format!(
            "the release was not saved: after a restart the route would be killed again: {error}"
        ));
    }
    entry.before = json!(flip.before);
    entry.after = json!(flip.after);
    record(state, &entry, &mut warnings);
    tracing::info!(route, by = %who.name, "kill switch released");
    let (reason, released) = (entry.reason.as_deref(), flip.before.as_ref());
    let event = Event::flip(EventKind::Revive, route, reason, &who.name, released);
    state.notifier.notify(event);
    answer(&FlipAnswer::new(route, &flip, &warnings), &warnings)
}
