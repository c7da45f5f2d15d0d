//! Kill-switch changes in fleet mode: through Redis, or forced on this replica only.

use http::StatusCode;
use switchyard_control::fleet::{Change, FleetError};
use switchyard_control::Flip;

use crate::reply::ApiError;
use crate::state::AdminState;

/// Whether the query asks to change this replica only (`?local=true`).
pub(crate) fn forced_local(query: Option<&str>) -> bool {
    query
        .unwrap_or("")
        .split('&')
        .any(|pair| pair == "local=true" || pair == "local=1")
}

/// Puts `change` in force: on this replica alone without `[fleet]`; fleet-wide (answered
/// once Redis accepted it and this replica applied it) with it; on this replica only,
/// marked divergent, when the caller forces it with `?local=true`.
pub async fn flip(
    state: &AdminState,
    change: Change,
    query: Option<&str>,
) -> Result<Flip, ApiError> {
    let Some(fleet) = &state.fleet else {
        return Ok(match change {
            Change::Engage { switch } => state.kills.engage(switch),
            Change::Release { route } => state.kills.release(&route),
            _ => return Err(ApiError::bad_request("not a kill-switch change")),
        });
    };
    if forced_local(query) {
        return Ok(fleet.change_locally(change));
    }
    fleet
        .change(change)
        .await
        .map_err(|error| unavailable(&error))
}

/// The 503 of a fleet-wide change Redis did not take.
pub(crate) fn unavailable(error: &FleetError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "fleet_unavailable",
        format!(
            "{error}: the change was not made on any replica. Retry, or add ?local=true to \
             force it on this replica only (marked divergent, replayed into Redis when it is back)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_flag() {
        assert!(forced_local(Some("local=true")));
        assert!(forced_local(Some("x=1&local=1")));
        assert!(!forced_local(Some("local=false")));
        assert!(!forced_local(None));
    }
}
