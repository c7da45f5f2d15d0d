//! GET /admin/status: what is in force now.

use std::collections::BTreeMap;

use serde::Serialize;
use switchyard_control::{FiringAlert, KillBoard, KillSwitch};
use switchyard_proxy::Table;

use crate::views::{self, AlertView};

#[derive(Serialize)]
struct Status<'a> {
    config_version: &'a str,
    routes: Vec<RouteStatus<'a>>,
    alerts_firing: Vec<AlertView>,
    tokens_today: u64,
    open_incidents: usize,
}

#[derive(Serialize)]
struct RouteStatus<'a> {
    name: &'a str,
    upstream: &'a str,
    endpoints: Vec<String>,
    weights: Vec<Weight<'a>>,
    kill_switch: Option<KillSwitch>,
    fallback: &'a str,
}

#[derive(Serialize)]
struct Weight<'a> {
    upstream: &'a str,
    percent: f64,
}

/// Everything the status document is made of, read once per request.
pub struct Inputs<'a> {
    pub table: &'a Table,
    pub kills: &'a KillBoard,
    pub fallbacks: &'a BTreeMap<String, String>,
    pub firing: &'a [FiringAlert],
    pub tokens_today: u64,
    pub open_incidents: usize,
}

/// The status document, pretty-printed for people reading it with curl.
pub fn render(inputs: &Inputs<'_>) -> String {
    let routes = inputs
        .table
        .routes
        .iter()
        .map(|route| RouteStatus {
            name: &route.name,
            upstream: &route.upstream.name,
            endpoints: route
                .upstream
                .endpoints
                .iter()
                .map(|e| format!("{}://{}{}", e.scheme, e.authority, e.base_path))
                .collect(),
            weights: vec![Weight {
                upstream: &route.upstream.name,
                percent: 100.0,
            }],
            kill_switch: inputs.kills.get(&route.name).map(|k| (*k).clone()),
            fallback: inputs
                .fallbacks
                .get(&*route.name)
                .map_or("none", String::as_str),
        })
        .collect();
    let status = Status {
        config_version: &inputs.table.version,
        routes,
        alerts_firing: views::alerts(inputs.firing),
        tokens_today: inputs.tokens_today,
        open_incidents: inputs.open_incidents,
    };
    serde_json::to_string_pretty(&status).unwrap_or_else(|_| "{}".into())
}
