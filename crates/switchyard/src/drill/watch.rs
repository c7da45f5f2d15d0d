//! Watching a replica's `/admin/status` from the injection on: when the gateway first saw the
//! incident, and when it took traffic off the bad path.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::harness::{Http, Replica};

/// How often status is read: the resolution of the detection and containment figures.
const POLL: Duration = Duration::from_millis(20);

/// What the watch saw, measured from the injection.
#[derive(Debug, Default)]
pub struct Seen {
    pub detected: Option<Duration>,
    pub contained: Option<Duration>,
    /// The status at detection.
    pub at_detection: Option<Value>,
    /// The last status read.
    pub last: Value,
    /// Every alert seen firing while watching, as `alert@route`.
    pub alerts: std::collections::BTreeSet<String>,
}

/// Reads status until `contain` holds (after `detect`), or `limit` passes.
/// `contain` gets the status and may look at anything else it captured (the traffic log).
pub async fn watch(
    replica: &Replica,
    http: &Http,
    since: Instant,
    limit: Duration,
    detect: impl Fn(&Value) -> bool,
    mut contain: impl FnMut(&Value) -> bool,
) -> Seen {
    let mut seen = Seen::default();
    let deadline = since + limit;
    while switchyard_core::clock::now() < deadline {
        if let Ok(status) = replica.status(http).await {
            if seen.detected.is_none() && detect(&status) {
                seen.detected = Some(since.elapsed());
                seen.at_detection = Some(status.clone());
            }
            if seen.contained.is_none() && contain(&status) {
                seen.contained = Some(since.elapsed());
            }
            for a in status["alerts_firing"].as_array().into_iter().flatten() {
                if let (Some(name), Some(route)) = (a["alert"].as_str(), a["route"].as_str()) {
                    seen.alerts.insert(format!("{name}@{route}"));
                }
            }
            seen.last = status;
            if seen.detected.is_some() && seen.contained.is_some() {
                break;
            }
        }
        tokio::time::sleep(POLL).await;
    }
    seen
}

/// Whether a built-in alert fires on the route.
pub fn alert(status: &Value, name: &str, route: &str) -> bool {
    firing(status, "alerts_firing", "alert", name, route)
}

/// Whether a rule fires on the route.
pub fn rule(status: &Value, name: &str, route: &str) -> bool {
    firing(status, "rules_firing", "rule", name, route)
}

fn firing(status: &Value, list: &str, key: &str, name: &str, route: &str) -> bool {
    status[list]
        .as_array()
        .is_some_and(|all| all.iter().any(|a| a[key] == name && a["route"] == route))
}

/// The names of the alerts firing on the route.
pub fn alerts_on(status: &Value, route: &str) -> Vec<String> {
    status["alerts_firing"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|a| a["route"] == route)
                .filter_map(|a| a["alert"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The route's status object.
pub fn route<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["routes"]
        .as_array()
        .and_then(|all| all.iter().find(|r| r["name"] == name))
        .unwrap_or(&Value::Null)
}

/// The rollout's phase on the route (`shifting`, `complete`, `rolled_back`), or "".
pub fn phase<'a>(status: &'a Value, name: &str) -> &'a str {
    route(status, name)["rollout"]["phase"]
        .as_str()
        .unwrap_or_default()
}

/// Why the rollout ended, as the controller said.
pub fn rollout_reason(status: &Value, name: &str) -> String {
    route(status, name)["rollout"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Polls for the newest incident of a kind, up to `limit`.
pub async fn incident(
    replica: &Replica,
    http: &Http,
    kind: &str,
    limit: Duration,
) -> Option<Value> {
    let deadline = switchyard_core::clock::now() + limit;
    while switchyard_core::clock::now() < deadline {
        if let Ok(Some(incident)) = replica.incident(http, kind).await {
            return Some(incident);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_readers_find_alerts_rules_and_phases_by_route() {
        let status = json!({
            "routes": [{"name": "support", "rollout": {"phase": "rolled_back", "reason": "cost_increase 0.6 over 0.5"}}],
            "alerts_firing": [{"alert": "error_rate", "route": "support"}, {"alert": "queue_depth", "route": "*"}],
            "rules_firing": [{"rule": "token_explosion", "route": "support"}],
        });
        assert!(alert(&status, "error_rate", "support"));
        assert!(!alert(&status, "error_rate", "other"));
        assert!(rule(&status, "token_explosion", "support"));
        assert_eq!(alerts_on(&status, "support"), vec!["error_rate"]);
        assert_eq!(phase(&status, "support"), "rolled_back");
        assert_eq!(phase(&status, "nope"), "");
        assert!(rollout_reason(&status, "support").starts_with("cost_increase"));
    }
}
