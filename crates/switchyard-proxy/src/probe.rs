//! Active health probes: one background task per endpoint of an upstream with a
//! `health_check`, off the data path, stopped when the upstream leaves the config.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{Request, Uri};
use switchyard_config::HealthCheck;
use tokio::task::AbortHandle;

use crate::forward;
use crate::health::{EndpointHealth, HealthPolicy};
use crate::upstream::{Upstream, UpstreamClient};

/// Running probes by upstream name.
pub type Probes = HashMap<Arc<str>, Running>;

/// What a probe was started with: a reload that changes none of it keeps the probe running.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    check: HealthCheck,
    endpoints: Vec<Arc<str>>,
    policy: HealthPolicy,
}

#[derive(Debug)]
pub struct Running {
    plan: Plan,
    tasks: Vec<AbortHandle>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn plan_of(upstream: &Upstream) -> Option<Plan> {
    Some(Plan {
        check: upstream.health_check.clone()?,
        endpoints: upstream.endpoints.iter().map(|e| e.label.clone()).collect(),
        policy: upstream.policy,
    })
}

/// Makes the running probes match a table's upstreams (which hold their health).
pub fn reconcile(probes: &mut Probes, upstreams: &[Arc<Upstream>]) {
    let wanted: HashMap<Arc<str>, (Plan, &Arc<Upstream>)> = upstreams
        .iter()
        .filter_map(|u| Some((u.name.clone(), (plan_of(u)?, u))))
        .collect();
    // Dropping a `Running` aborts its tasks.
    probes.retain(|name, running| wanted.get(name).is_some_and(|(p, _)| *p == running.plan));
    for (name, (plan, upstream)) in wanted {
        if probes.contains_key(&name) {
            continue;
        }
        if let Some(running) = start(plan, upstream) {
            probes.insert(name, running);
        }
    }
}

pub fn stop_all(probes: &mut Probes) {
    probes.clear();
}

fn start(plan: Plan, upstream: &Upstream) -> Option<Running> {
    // Tables are compiled inside the runtime in the binary; a table adopted elsewhere (a
    // unit test) simply gets no probe.
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let path = PathAndQuery::try_from(plan.check.path.as_str()).ok()?;
    // The probe's own pool, so its connect timeout is the probe timeout.
    let client = match forward::client(plan.check.timeout) {
        Ok(client) => client,
        Err(error) => {
            tracing::warn!(%error, upstream = %upstream.name, "health probe not started");
            return None;
        }
    };
    let cells = &upstream.health;
    let mut tasks = Vec::with_capacity(cells.len());
    for (endpoint, cell) in upstream.endpoints.iter().zip(cells.iter()) {
        let Ok(uri) = forward::upstream_uri(endpoint, Some(&path)) else {
            continue;
        };
        let task = probe_loop(client.clone(), uri, cell.clone(), plan.clone());
        tasks.push(runtime.spawn(task).abort_handle());
    }
    Some(Running { plan, tasks })
}

async fn probe_loop(client: UpstreamClient, uri: Uri, cell: Arc<EndpointHealth>, plan: Plan) {
    let mut ticks = tokio::time::interval(plan.check.interval);
    // A stalled runtime must not fire a burst of probes to catch up.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if probe_once(&client, &uri, plan.check.timeout).await {
            cell.success();
        } else {
            cell.failure(plan.policy);
        }
    }
}

/// A 2xx within the timeout is a success; anything else is a failure.
async fn probe_once(client: &UpstreamClient, uri: &Uri, timeout: Duration) -> bool {
    let Ok(req) = Request::get(uri.clone()).body(switchyard_core::body::empty()) else {
        return false;
    };
    match tokio::time::timeout(timeout, client.request(req)).await {
        Ok(Ok(response)) => response.status().is_success(),
        Ok(Err(error)) => {
            tracing::debug!(%error, %uri, "health probe failed");
            false
        }
        Err(_) => false,
    }
}
