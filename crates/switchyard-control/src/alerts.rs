//! Golden-signal alerts, evaluated off the data path on the routes' sliding windows.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use metrics::gauge;
use switchyard_core::metrics as names;

use crate::notify::{Event, Notifier};
use crate::signals::{now_secs, RouteSignals, Signals};

/// The thresholds, with the seeds' defaults.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    pub p99_latency: Duration,
    pub error_rate: f64,
    pub window: Duration,
    pub traffic_spike: f64,
    pub baseline: Duration,
    pub min_requests: u64,
    pub queue_depth: u64,
    pub context_fill: f64,
    pub daily_tokens: Option<u64>,
    pub budget_alert_at: f64,
}

/// The alerts switchyard knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertKind {
    P99Latency,
    ErrorRate,
    TrafficSpike,
    QueueDepth,
    TokenBudget,
    ContextFill,
}

impl AlertKind {
    pub const ALL: [AlertKind; 6] = [
        AlertKind::P99Latency,
        AlertKind::ErrorRate,
        AlertKind::TrafficSpike,
        AlertKind::QueueDepth,
        AlertKind::TokenBudget,
        AlertKind::ContextFill,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::P99Latency => "p99_latency",
            AlertKind::ErrorRate => "error_rate",
            AlertKind::TrafficSpike => "traffic_spike",
            AlertKind::QueueDepth => "queue_depth",
            AlertKind::TokenBudget => "token_budget",
            AlertKind::ContextFill => "context_fill",
        }
    }
}

/// An alert that is firing now.
#[derive(Debug, Clone, PartialEq)]
pub struct FiringAlert {
    pub kind: AlertKind,
    /// The route, or `*` for gateway-wide alerts.
    pub route: String,
    /// The figure that crossed the threshold, and the threshold.
    pub value: f64,
    pub threshold: f64,
    /// Unix seconds when it started firing.
    pub since: u64,
}

/// The gateway-wide route label for alerts that belong to no single route.
pub const ALL_ROUTES: &str = "*";

/// Evaluates alerts and keeps which are firing.
#[derive(Debug)]
pub struct Alerts {
    signals: Arc<Signals>,
    settings: Mutex<AlertSettings>,
    firing: Mutex<BTreeMap<(AlertKind, String), FiringAlert>>,
    /// Told of every transition, firing and cleared.
    notifier: Mutex<Option<Notifier>>,
}

impl Alerts {
    pub fn new(signals: Arc<Signals>, settings: AlertSettings) -> Arc<Self> {
        Arc::new(Alerts {
            signals,
            settings: Mutex::new(settings),
            firing: Mutex::new(BTreeMap::new()),
            notifier: Mutex::new(None),
        })
    }

    /// Sends an `alert` event on every transition from now on.
    pub fn set_notifier(&self, notifier: Notifier) {
        *self.notifier.lock().unwrap_or_else(PoisonError::into_inner) = Some(notifier);
    }

    fn tell(&self, kind: AlertKind, route: &str, value: f64, threshold: f64, firing: bool) {
        let notifier = self.notifier.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(notifier) = notifier.as_ref() {
            notifier.notify(Event::alert(kind.as_str(), route, value, threshold, firing));
        }
    }

    /// New thresholds, from the next evaluation on.
    pub fn set_settings(&self, settings: AlertSettings) {
        *self.settings.lock().unwrap_or_else(PoisonError::into_inner) = settings;
    }

    pub fn settings(&self) -> AlertSettings {
        self.settings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The alerts firing now, ordered by kind and route.
    pub fn firing(&self) -> Vec<FiringAlert> {
        let firing = self.firing.lock().unwrap_or_else(PoisonError::into_inner);
        firing.values().cloned().collect()
    }

    /// Evaluates every alert once.
    pub fn evaluate(&self) {
        let settings = self.settings();
        let now = now_secs();
        let mut seen = Vec::new();
        for route in self.signals.routes() {
            for (kind, value, threshold, breached) in route_checks(&route, &settings, now) {
                seen.push((kind, route.name().to_string(), value, threshold, breached));
            }
        }
        let queued = self
            .signals
            .queued()
            .load(std::sync::atomic::Ordering::Relaxed) as f64;
        gauge!(names::QUEUED_REQUESTS).set(queued);
        let depth = settings.queue_depth as f64;
        seen.push((
            AlertKind::QueueDepth,
            ALL_ROUTES.into(),
            queued,
            depth,
            queued > depth,
        ));
        if let Some(budget) = settings.daily_tokens.filter(|b| *b > 0) {
            let used = self.signals.tokens_today() as f64 / budget as f64;
            gauge!(names::TOKEN_BUDGET_USED_RATIO).set(used);
            let at = settings.budget_alert_at;
            seen.push((
                AlertKind::TokenBudget,
                ALL_ROUTES.into(),
                used,
                at,
                used >= at,
            ));
        }
        for (kind, route, value, threshold, breached) in seen {
            self.transition(kind, route, value, threshold, breached, now);
        }
    }

    fn transition(
        &self,
        kind: AlertKind,
        route: String,
        value: f64,
        threshold: f64,
        breached: bool,
        now: u64,
    ) {
        let mut firing = self.firing.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (kind, route);
        let was = firing.contains_key(&key);
        if breached {
            let since = firing.get(&key).map_or(now, |f| f.since);
            let alert = FiringAlert {
                kind,
                route: key.1.clone(),
                value,
                threshold,
                since,
            };
            firing.insert(key.clone(), alert);
            if !was {
                tracing::warn!(alert = kind.as_str(), route = %key.1, value, threshold, "alert firing");
                self.tell(kind, &key.1, value, threshold, true);
            }
        } else if was {
            firing.remove(&key);
            tracing::info!(alert = kind.as_str(), route = %key.1, value, threshold, "alert cleared");
            self.tell(kind, &key.1, value, threshold, false);
        }
        gauge!(names::ALERTS_FIRING, "alert" => kind.as_str(), "route" => key.1).set(if breached {
            1.0
        } else {
            0.0
        });
    }

    /// Evaluates every `tick` until the task is dropped.
    pub async fn run(self: Arc<Self>, tick: Duration) {
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            self.evaluate();
        }
    }
}

/// (kind, value, threshold, breached) for each per-route alert.
fn route_checks(
    route: &RouteSignals,
    s: &AlertSettings,
    now: u64,
) -> Vec<(AlertKind, f64, f64, bool)> {
    let window_secs = s.window.as_secs().max(1);
    // The current second is still filling; the window is the last full `window_secs`.
    let (from, to) = (now.saturating_sub(window_secs), now.saturating_sub(1));
    let w = route.window(from, to);
    let enough = w.requests >= s.min_requests.max(1);
    let mut checks = Vec::with_capacity(4);
    let p99 = w.latency.quantile(0.99).map_or(0.0, |d| d.as_secs_f64());
    let limit = s.p99_latency.as_secs_f64();
    checks.push((AlertKind::P99Latency, p99, limit, enough && p99 > limit));
    let rate = if w.requests == 0 {
        0.0
    } else {
        w.errors as f64 / w.requests as f64
    };
    checks.push((
        AlertKind::ErrorRate,
        rate,
        s.error_rate,
        enough && rate > s.error_rate,
    ));
    checks.push(traffic_check(route, s, from, to, w.requests));
    let fill = w.fill_over as f64;
    checks.push((
        AlertKind::ContextFill,
        fill,
        s.context_fill,
        w.fill_over > 0,
    ));
    checks
}

/// The window's request rate against the trailing baseline's. The baseline covers only the
/// seconds that were observed (a gateway that just started has little history, not a quiet
/// one), and needs at least one window's worth of them to mean anything.
fn traffic_check(
    route: &RouteSignals,
    s: &AlertSettings,
    from: u64,
    to: u64,
    requests: u64,
) -> (AlertKind, f64, f64, bool) {
    let window_secs = (to + 1 - from) as f64;
    let base_from = from
        .saturating_sub(s.baseline.as_secs().max(1))
        .max(route.born());
    let base_secs = from.saturating_sub(base_from);
    let base_requests = route.requests(base_from, from.saturating_sub(1));
    let rate = requests as f64 / window_secs;
    let base_rate = base_requests as f64 / base_secs.max(1) as f64;
    let ratio = if base_rate > 0.0 {
        rate / base_rate
    } else {
        0.0
    };
    let enough = base_secs as f64 >= window_secs && base_requests >= s.min_requests.max(1);
    let breached = enough && ratio > s.traffic_spike;
    (AlertKind::TrafficSpike, ratio, s.traffic_spike, breached)
}

#[cfg(test)]
mod tests;
