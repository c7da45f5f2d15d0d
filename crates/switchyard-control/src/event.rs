//! What a webhook can be told: the event record and the JSON body every receiver gets.

use serde::Serialize;
use serde_json::{json, Map, Value};
use switchyard_config::EventKind;

use crate::kill::{now_ms, KillSwitch, Segment};

/// Something a webhook can be told.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    /// Unix milliseconds when it happened.
    pub at_ms: u64,
    pub route: Option<String>,
    /// The kind's own fields, merged into the top level of the JSON body.
    pub detail: Value,
}

impl Event {
    pub fn new(kind: EventKind, route: Option<String>, detail: Value) -> Event {
        Event {
            kind,
            at_ms: now_ms(),
            route,
            detail,
        }
    }

    /// An alert started (`firing`) or stopped firing.
    pub fn alert(alert: &str, route: &str, value: f64, threshold: f64, firing: bool) -> Event {
        let news = AlertNews {
            alert,
            value,
            threshold,
            firing,
        };
        Event::new(EventKind::Alert, Some(route.to_owned()), detail(&news))
    }

    /// A kill, or a revive: `switch` is the switch engaged, or the one released (if any).
    pub fn flip(
        kind: EventKind,
        route: &str,
        reason: Option<&str>,
        by: &str,
        switch: Option<&KillSwitch>,
    ) -> Event {
        let news = FlipNews {
            reason,
            by,
            percent: switch.and_then(|s| s.percent),
            segment: switch.and_then(|s| s.segment.as_ref()),
        };
        Event::new(kind, Some(route.to_owned()), detail(&news))
    }

    /// A kill opened incident `id` of `kind`.
    pub fn incident(id: &str, kind: &str, route: &str) -> Event {
        let news = IncidentNews { id, kind };
        Event::new(EventKind::Incident, Some(route.to_owned()), detail(&news))
    }

    /// A human acknowledged incident `id`.
    pub fn ack(id: &str, route: &str, by: &str, note: Option<&str>) -> Event {
        let news = AckNews { id, by, note };
        Event::new(EventKind::Ack, Some(route.to_owned()), detail(&news))
    }

    /// A reload: `result` is `applied` or `rejected` (then with the reason as `error`).
    pub fn reload(version: &str, previous: &str, error: Option<&str>) -> Event {
        let news = ReloadNews {
            version,
            previous,
            result: if error.is_some() {
                "rejected"
            } else {
                "applied"
            },
            error,
        };
        Event::new(EventKind::Reload, None, detail(&news))
    }

    /// The body a webhook receives: `event`, `at_ms`, `route` (when there is one) and the
    /// kind's own fields, in one flat object (keys in alphabetical order).
    pub fn to_json(&self) -> Value {
        let mut body = Map::new();
        body.insert("event".into(), json!(self.kind.as_str()));
        body.insert("at_ms".into(), json!(self.at_ms));
        if let Some(route) = &self.route {
            body.insert("route".into(), json!(route));
        }
        match &self.detail {
            Value::Object(fields) => {
                for (key, value) in fields {
                    // The envelope's own fields win: a detail cannot rename the event.
                    body.entry(key.clone()).or_insert_with(|| value.clone());
                }
            }
            Value::Null => {}
            other => {
                body.insert("detail".into(), other.clone());
            }
        }
        Value::Object(body)
    }
}

/// The fields of an `alert` event.
#[derive(Serialize)]
struct AlertNews<'a> {
    alert: &'a str,
    value: f64,
    threshold: f64,
    firing: bool,
}

/// The fields of a `kill` or `revive` event; `percent` and `segment` are null for a whole
/// route.
#[derive(Serialize)]
struct FlipNews<'a> {
    reason: Option<&'a str>,
    by: &'a str,
    percent: Option<f64>,
    segment: Option<&'a Segment>,
}

/// The fields of an `incident` event.
#[derive(Serialize)]
struct IncidentNews<'a> {
    id: &'a str,
    kind: &'a str,
}

/// The fields of an `ack` event; `note` is null when none was given.
#[derive(Serialize)]
struct AckNews<'a> {
    id: &'a str,
    by: &'a str,
    note: Option<&'a str>,
}

/// The fields of a `reload` event.
#[derive(Serialize)]
struct ReloadNews<'a> {
    version: &'a str,
    previous: &'a str,
    /// `applied` or `rejected`.
    result: &'static str,
    /// Why it was rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// A payload as the event's detail. These are plain structs of strings and numbers, which
/// always serialize.
fn detail<T: Serialize>(news: &T) -> Value {
    serde_json::to_value(news).unwrap_or(Value::Null)
}
