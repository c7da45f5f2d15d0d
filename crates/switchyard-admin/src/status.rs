//! GET /admin/status: what is in force now.

use serde::Serialize;
use switchyard_control::FiringAlert;
use switchyard_proxy::Table;

#[derive(Serialize)]
struct Status<'a> {
    config_version: &'a str,
    routes: Vec<RouteStatus<'a>>,
    alerts_firing: Vec<Alert<'a>>,
    tokens_today: u64,
}

#[derive(Serialize)]
struct RouteStatus<'a> {
    name: &'a str,
    upstream: &'a str,
    endpoints: Vec<String>,
    weights: Vec<Weight<'a>>,
}

#[derive(Serialize)]
struct Weight<'a> {
    upstream: &'a str,
    percent: f64,
}

#[derive(Serialize)]
struct Alert<'a> {
    alert: &'a str,
    route: &'a str,
    value: f64,
    threshold: f64,
    since: u64,
}

/// The status document.
pub fn render(table: &Table, firing: &[FiringAlert], tokens_today: u64) -> String {
    let routes = table
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
        })
        .collect();
    let alerts_firing = firing
        .iter()
        .map(|a| Alert {
            alert: a.kind.as_str(),
            route: &a.route,
            value: a.value,
            threshold: a.threshold,
            since: a.since,
        })
        .collect();
    let status = Status {
        config_version: &table.version,
        routes,
        alerts_firing,
        tokens_today,
    };
    serde_json::to_string_pretty(&status).unwrap_or_else(|_| "{}".into())
}
