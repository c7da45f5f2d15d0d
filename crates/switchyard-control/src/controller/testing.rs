//! An in-memory controller for the rooms' tests: a config, signals to feed, and `tick`
//! driven by hand.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use switchyard_config::Config;

use super::Controller;
use crate::alerts::{AlertSettings, Alerts};
use crate::exchange::{Exchange, Outcome};
use crate::incidents::Incidents;
use crate::notify::Notifier;
use crate::rollout::RolloutStore;
use crate::signals::{RouteSignals, Signals, Spans};
use crate::steer::Steering;

/// A route `support` rolling out from `blue` to `green`, judged after 20 requests.
pub(super) const BASE: &str = r#"
[upstreams.blue]
url = "http://127.0.0.1:9"
[upstreams.green]
url = "http://127.0.0.1:10"
[[routes]]
name = "support"
[routes.rollout]
blue = "blue"
green = "green"
stages = [50, 100]
bake = "1h"
[routes.rollback]
min_requests = 20
error_window = "30s"
"#;

pub(super) struct Rig {
    pub controller: Arc<Controller>,
    pub signals: Arc<Signals>,
    pub route: Arc<RouteSignals>,
    /// The state_dir.
    pub dir: PathBuf,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(super) fn config(text: &str) -> Config {
    Config::parse(text, "test.toml", Path::new(".")).unwrap()
}

pub(super) fn rig(text: &str) -> Rig {
    let dir = std::env::temp_dir().join(format!("sy-controller-{}", fastrand::u64(..)));
    let signals = Signals::new();
    // Alerts that never fire: the tests judge the rollouts' own triggers.
    let settings = AlertSettings {
        p99_latency: Duration::from_secs(30),
        error_rate: 0.5,
        window: Duration::from_secs(60),
        traffic_spike: 1e9,
        baseline: Duration::from_secs(60),
        min_requests: 1_000_000,
        queue_depth: 1_000_000,
        context_fill: 1.0,
        daily_tokens: None,
        budget_alert_at: 1.0,
    };
    let alerts = Alerts::new(signals.clone(), settings);
    let incidents = Arc::new(Incidents::open(&dir).unwrap());
    let (store, states) = RolloutStore::open(&dir).unwrap();
    let parts = (
        signals.clone(),
        alerts,
        Notifier::disabled(),
        incidents,
        Steering::new(),
    );
    let controller = Controller::new(parts, store, states);
    controller.apply(&config(text));
    let spans = Spans {
        window: Duration::from_secs(60),
        baseline: Duration::from_secs(60),
        context_fill: 1.0,
    };
    let route = signals.route("support", spans);
    Rig {
        controller,
        signals,
        route,
        dir,
    }
}

/// One exchange with `upstream` on route `support`.
pub(super) fn exchange(
    upstream: &str,
    status: u16,
    class: Option<&str>,
    ms: u64,
    cost: f64,
) -> Exchange {
    Exchange {
        request_id: Arc::from(format!("r{}", fastrand::u64(..))),
        route: Arc::from("support"),
        upstream: Arc::from(upstream),
        variant: Arc::from("none"),
        model: Arc::from("gpt-4o"),
        status,
        error: switchyard_core::ErrorClass::of_status(status),
        upstream_error_type: class.map(str::to_owned),
        outcome: Outcome::Complete,
        duration: Duration::from_millis(ms),
        ttfb: None,
        ttft: None,
        prompt_tokens: 10,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        completion_tokens: 10,
        cost_usd: cost,
        context_fill: None,
        fill_source: crate::FillSource::Estimated,
        streamed: false,
        requested_model: Some("gpt-4o".into()),
        response_model: Some("gpt-4o-2026".into()),
        finish_reason: Some("stop".into()),
        prompt_fingerprint: Some(7),
        bodies: None,
        refused: false,
        gen_ai_operation: Some("chat"),
        gen_ai_system: "openai",
        trace: switchyard_core::TraceContext::default(),
    }
}

pub(super) fn feed(rig: &Rig, n: usize, make: impl Fn(usize) -> Exchange) {
    for i in 0..n {
        rig.signals.record(&rig.route, make(i));
    }
}
