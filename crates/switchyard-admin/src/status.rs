//! GET /admin/status: what is in force now.

use serde::Serialize;
use switchyard_control::controller::RuleFiring;
use switchyard_control::fleet::FleetStatus;
use switchyard_control::rollout::RolloutState;
use switchyard_control::steer::Steering;
use switchyard_control::{FiringAlert, KillBoard, KillSwitch};
use switchyard_proxy::Table;

use crate::views::{self, AlertView};

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Status<'a> {
    config_version: &'a str,
    routes: Vec<RouteStatus<'a>>,
    alerts_firing: Vec<AlertView>,
    rules_firing: &'a [RuleFiring],
    tokens_today: u64,
    open_incidents: usize,
    /// Fleet mode only.
    #[serde(skip_serializing_if = "Option::is_none")]
    fleet: Option<FleetStatus>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct RouteStatus<'a> {
    name: &'a str,
    upstream: &'a str,
    endpoints: Vec<String>,
    weights: Vec<Weight<'a>>,
    kill_switch: Option<KillSwitch>,
    fallback: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    rollout: Option<&'a RolloutState>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    experiments: Vec<ExperimentStatus<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    throttle_rps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    downgrade_to: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Weight<'a> {
    upstream: &'a str,
    percent: f64,
    endpoints: Vec<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ExperimentStatus<'a> {
    name: &'a str,
    share: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    set_model: Option<&'a str>,
}

/// Everything the status document is made of, read once per request.
pub struct Inputs<'a> {
    pub table: &'a Table,
    pub kills: &'a KillBoard,
    pub firing: &'a [FiringAlert],
    pub rollouts: &'a [RolloutState],
    pub rules: &'a [RuleFiring],
    pub steering: &'a Steering,
    pub tokens_today: u64,
    pub open_incidents: usize,
    pub fleet: Option<FleetStatus>,
}

/// The status document, pretty-printed for people reading it with curl.
pub fn render(inputs: &Inputs<'_>) -> String {
    let routes = inputs
        .table
        .routes
        .iter()
        .map(|route| {
            let rollout = inputs.rollouts.iter().find(|r| *r.route == *route.name);
            let steer = inputs.steering.get(&route.name);
            let weights = weights(inputs.table, rollout, &route.upstream.name);
            RouteStatus {
                name: &route.name,
                upstream: &route.upstream.name,
                endpoints: route
                    .upstream
                    .endpoints
                    .iter()
                    .map(|e| format!("{}://{}{}", e.scheme, e.authority, e.base_path))
                    .collect(),
                weights,
                kill_switch: inputs.kills.get(&route.name).map(|k| (*k).clone()),
                fallback: route.kill.kind(),
                rollout,
                experiments: route
                    .variants
                    .iter()
                    .map(|v| ExperimentStatus {
                        name: &v.name,
                        share: v.share,
                        upstream: v.upstream.as_ref().map(|u| &*u.name),
                        set_model: v.set_model.as_deref(),
                    })
                    .collect(),
                throttle_rps: steer.as_ref().and_then(|s| s.throttle_rps),
                downgrade_to: steer
                    .as_ref()
                    .and_then(|s| s.downgrade_to.as_ref().map(|m| m.to_string())),
            }
        })
        .collect();
    let status = Status {
        config_version: &inputs.table.version,
        routes,
        alerts_firing: views::alerts(inputs.firing),
        rules_firing: inputs.rules,
        tokens_today: inputs.tokens_today,
        open_incidents: inputs.open_incidents,
        fleet: inputs.fleet.clone(),
    };
    serde_json::to_string_pretty(&status).unwrap_or_else(|_| "{}".into())
}

/// Where the route's users go: blue and green by the rollout's share, or all to the upstream.
fn weights<'a>(
    table: &Table,
    rollout: Option<&'a RolloutState>,
    upstream: &'a str,
) -> Vec<Weight<'a>> {
    match rollout {
        Some(r) => vec![
            Weight {
                upstream: &r.blue,
                percent: 100.0 - r.green_share() * 100.0,
                endpoints: endpoint_labels(table, &r.blue),
            },
            Weight {
                upstream: &r.green,
                percent: r.green_share() * 100.0,
                endpoints: endpoint_labels(table, &r.green),
            },
        ],
        None => vec![Weight {
            upstream,
            percent: 100.0,
            endpoints: endpoint_labels(table, upstream),
        }],
    }
}

/// The endpoint labels of the named upstream; none when the table has no such upstream.
fn endpoint_labels(table: &Table, name: &str) -> Vec<String> {
    table
        .upstreams
        .iter()
        .find(|u| &*u.name == name)
        .map(|u| u.endpoints.iter().map(|e| e.label.to_string()).collect())
        .unwrap_or_default()
}
