//! Safe change: POST /admin/routes/{route}/rollback and /promote, POST /admin/rules/{rule}/
//! approve and /release, GET /admin/experiments and /admin/experiments/{name}.

use http::{Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use serde_json::json;
use switchyard_control::controller::{ActionError, Shift, ShiftError};
use switchyard_control::experiment::ExperimentView;
use switchyard_control::rollout::RolloutState;
use switchyard_core::Body;

use crate::audit::AuditEntry;
use crate::auth::Principal;
use crate::mutation::{answer, record, reject};
use crate::reply::{self, ApiError};
use crate::request::json_body;
use crate::state::AdminState;

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ShiftBody {
    reason: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleBody {
    /// Required when the rule watches several routes.
    route: Option<String>,
    reason: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ShiftAnswer<'a> {
    route: &'a str,
    before: &'a RolloutState,
    after: &'a RolloutState,
    /// Microseconds from the call to the atomic store that put it in force.
    took_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    incident: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
}

/// The answer to an approve or a release; `downgrade_to` and `warning` are `null` when there is
/// none.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct RuleAnswer<'a> {
    // In name order, as this answer has always been written.
    /// `approve` or `release`.
    action: &'a str,
    /// The model now in force on the route (approve).
    downgrade_to: Option<&'a str>,
    route: &'a str,
    rule: &'a str,
    warning: Option<String>,
}

/// `GET /admin/experiments`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ExperimentList {
    experiments: Vec<ExperimentView>,
}

/// Which operator action on a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    Rollback,
    Promote,
}

impl Move {
    /// The action's name in the audit log and the logs.
    fn name(self) -> &'static str {
        match self {
            Move::Rollback => "rollback",
            Move::Promote => "promote",
        }
    }

    /// The reason recorded when the operator gives none.
    fn default_reason(self) -> &'static str {
        match self {
            Move::Rollback => "rolled back by an operator",
            Move::Promote => "promoted by an operator",
        }
    }
}

fn refusal(error: &ActionError) -> ApiError {
    let (status, code) = match error {
        ActionError::NoRollout(_) => (StatusCode::NOT_FOUND, "no_rollout"),
        ActionError::AlreadyThere { .. } => (StatusCode::CONFLICT, "already_there"),
        ActionError::NotAwaiting { .. } => (StatusCode::CONFLICT, "not_awaiting_approval"),
        ActionError::NotInForce { .. } => (StatusCode::CONFLICT, "not_in_force"),
        ActionError::UnknownRule(_) => (StatusCode::NOT_FOUND, "unknown_rule"),
        ActionError::UnknownRoute(_) => (StatusCode::NOT_FOUND, "unknown_route"),
        ActionError::NotADowngrade(_) => (StatusCode::CONFLICT, "not_a_downgrade"),
        ActionError::WhichRoute(..) => (StatusCode::BAD_REQUEST, "route_required"),
    };
    ApiError::new(status, code, error.to_string())
}

/// Rolls a route back to blue, or promotes green to every user; audited before the answer.
pub async fn shift(
    state: &AdminState,
    who: &Principal,
    route: &str,
    (query, body): (Option<&str>, Incoming),
    action: Move,
) -> Response<Body> {
    let name = action.name();
    let mut entry = AuditEntry::new(who, name, Some(route.to_owned()));
    let reason = match json_body::<ShiftBody>(body).await {
        Ok(body) => body.reason.filter(|r| !r.trim().is_empty()),
        Err(refusal) => return reject(state, entry, refusal),
    };
    entry.reason.clone_from(&reason);
    if !state
        .gateway
        .table()
        .routes
        .iter()
        .any(|r| &*r.name == route)
    {
        let message = format!("no route {route:?}; GET /admin/status lists the routes");
        let refusal = ApiError::new(StatusCode::NOT_FOUND, "unknown_route", message);
        return reject(state, entry, refusal);
    }
    let reason_text = reason.as_deref().unwrap_or(action.default_reason());
    let promote = action == Move::Promote;
    let local = crate::fleet::forced_local(query);
    let result = state
        .controller
        .shift(route, &who.name, reason_text, promote, local)
        .await;
    let shift: Shift = match result {
        Ok(shift) => shift,
        Err(ShiftError::Action(error)) => return reject(state, entry, refusal(&error)),
        Err(ShiftError::Fleet(error)) => {
            return reject(state, entry, crate::fleet::unavailable(&error))
        }
    };
    entry.before = json!(shift.before);
    entry.after = json!(shift.after);
    let mut warnings = Vec::new();
    if let Err(warning) = &shift.persisted {
        warnings.push(warning.clone());
    }
    record(state, &entry, &mut warnings);
    tracing::info!(route, by = %who.name, action = name, "rollout changed by an operator");
    let shifted = ShiftAnswer {
        route,
        before: &shift.before,
        after: &shift.after,
        took_us: shift.took_us,
        incident: shift.incident.as_deref(),
        warning: (!warnings.is_empty()).then(|| warnings.join("; ")),
    };
    answer(&shifted, &warnings)
}

/// Which operator action on a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleMove {
    Approve,
    Release,
}

/// Approves a downgrade a rule waits on, or lifts one in force.
pub async fn rule(
    state: &AdminState,
    who: &Principal,
    rule: &str,
    (query, body): (Option<&str>, Incoming),
    action: RuleMove,
) -> Response<Body> {
    let name = match action {
        RuleMove::Approve => "approve",
        RuleMove::Release => "release",
    };
    let mut entry = AuditEntry::new(who, name, Some(rule.to_owned()));
    let body = match json_body::<RuleBody>(body).await {
        Ok(body) => body,
        Err(refusal) => return reject(state, entry, refusal),
    };
    entry.reason = body.reason.filter(|r| !r.trim().is_empty());
    let route = body.route.as_deref();
    let approve = action == RuleMove::Approve;
    let local = crate::fleet::forced_local(query);
    let result = state
        .controller
        .rule_move(rule, route, &who.name, approve, local)
        .await;
    match result {
        Ok((route, model)) => {
            entry.target = Some(format!("{rule}@{route}"));
            entry.after = json!({ "route": route, "downgrade_to": model });
            let mut warnings = Vec::new();
            record(state, &entry, &mut warnings);
            let done = RuleAnswer {
                action: name,
                downgrade_to: model.as_deref(),
                route: &route,
                rule,
                warning: (!warnings.is_empty()).then(|| warnings.join("; ")),
            };
            answer(&done, &warnings)
        }
        Err(ShiftError::Action(error)) => reject(state, entry, refusal(&error)),
        Err(ShiftError::Fleet(error)) => reject(state, entry, crate::fleet::unavailable(&error)),
    }
}

/// GET /admin/experiments: every experiment's figures and verdict.
pub fn experiments(state: &AdminState) -> Response<Body> {
    let all: Vec<_> = state
        .gateway
        .signals()
        .experiments()
        .all()
        .iter()
        .map(|e| e.view())
        .collect();
    reply::json(StatusCode::OK, &ExperimentList { experiments: all })
}

/// GET /admin/experiments/{name}.
pub fn experiment(state: &AdminState, name: &str) -> Response<Body> {
    match state.gateway.signals().experiments().get(name) {
        Some(experiment) => reply::json(StatusCode::OK, &experiment.view()),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_experiment",
            format!("no experiment {name:?}; GET /admin/experiments lists them"),
        )
        .into_response(),
    }
}
