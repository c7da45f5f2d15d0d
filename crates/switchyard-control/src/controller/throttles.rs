//! The throttles rules put in force (`throttle_and_alert`). On one replica: the lowest rate
//! any rule firing on the route asks for. In fleet mode a rule's throttle is also shared, so
//! a rule that fires on one replica's slice of the traffic throttles the route on every
//! replica: each replica holds its own rules' throttles in the shared state and lifts them
//! when its rules clear; the lowest rate of all the throttles held on a route is in force.
//! Each replica admits that rate itself: the rate is per replica, as on one gateway.

use std::sync::atomic::Ordering;

use super::{lock, Controller, Inner};
use crate::fleet::rollouts::SharedThrottle;
use crate::fleet::{Change, FleetError};

impl Controller {
    /// Puts in force on `route` the lowest rate asked for by a rule firing here or, in fleet
    /// mode, by a throttle another live replica holds.
    pub(super) fn apply_throttles(&self, inner: &Inner, route: &str) {
        let local = inner
            .rules
            .values()
            .filter(|f| f.route == route)
            .filter_map(|f| f.throttle_rps);
        let lowest = local.chain(self.fleet_throttles(route)).reduce(f64::min);
        self.steering.update(route, |s| s.throttle_rps = lowest);
    }

    /// The rates other live replicas' throttles ask for on `route`.
    fn fleet_throttles(&self, route: &str) -> Vec<f64> {
        let Some(link) = self.fleet.get() else {
            return Vec::new();
        };
        let me = link.fleet.instance_id();
        let live = link.fleet.live_members();
        lock(&link.throttles)
            .iter()
            .filter(|t| t.route == route && t.replica != me && live.contains(&t.replica))
            .map(|t| t.rps)
            .collect()
    }

    /// The fleet's throttles arrived: the routes whose throttles changed get their rate again.
    pub(super) fn adopt_throttles(&self, inner: &Inner, shared: &[SharedThrottle]) {
        let Some(link) = self.fleet.get() else {
            return;
        };
        let changed: Vec<String> = {
            let mut applied = lock(&link.throttles);
            if *applied == shared {
                return;
            }
            let mut routes: Vec<String> = applied
                .iter()
                .chain(shared)
                .filter(|t| !(applied.contains(t) && shared.contains(t)))
                .map(|t| t.route.clone())
                .collect();
            routes.sort();
            routes.dedup();
            *applied = shared.to_vec();
            routes
        };
        for route in changed {
            if inner.plan.routes.iter().any(|r| r.name == route) {
                self.apply_throttles(inner, &route);
                tracing::info!(route, "rule throttles: the fleet's applied");
            }
        }
    }

    /// Fleet mode, every tick: the throttles this replica holds in the shared state follow
    /// the rules firing here, and the rollout lease's holder removes the throttles of
    /// replicas no longer in the fleet. One change at a time is on its way to Redis; what is
    /// left is done at the next tick, so a lost write or a Redis restart heals by itself.
    pub(super) fn share_throttles(&self, inner: &Inner) {
        let Some(link) = self.fleet.get() else {
            return;
        };
        if !link.fleet.is_up() {
            return;
        }
        let changes = throttle_changes(
            inner,
            &lock(&link.throttles),
            link.fleet.instance_id(),
            &link.fleet.live_members(),
            link.fleet.leads(),
        );
        if changes.is_empty() || link.throttling.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some((runtime, this, fleet)) = self.runner() else {
            link.throttling.store(false, Ordering::Release);
            return;
        };
        runtime.spawn(async move {
            for change in changes {
                match fleet.throttle(change).await {
                    Ok(()) | Err(FleetError::Refused(_)) => {}
                    Err(error) => {
                        tracing::debug!(%error, "rule throttle not shared yet; the next tick tries again");
                        break;
                    }
                }
            }
            if let Some(link) = this.fleet.get() {
                link.throttling.store(false, Ordering::Release);
            }
        });
    }
}

/// What makes the shared throttles what this replica's rules want: its firing rules'
/// throttles held, its cleared ones lifted, and (by the lease holder) those of replicas no
/// longer live removed.
fn throttle_changes(
    inner: &Inner,
    shared: &[SharedThrottle],
    me: &str,
    live: &[String],
    leads: bool,
) -> Vec<Change> {
    let wanted: Vec<SharedThrottle> = inner
        .rules
        .values()
        .filter_map(|f| {
            Some(SharedThrottle {
                route: f.route.clone(),
                rule: f.rule.clone(),
                replica: me.to_owned(),
                rps: f.throttle_rps?,
                since_ms: f.since_ms,
            })
        })
        .collect();
    let mut changes: Vec<Change> = wanted
        .iter()
        .filter(|t| !shared.contains(t))
        .map(|t| Change::Throttle {
            throttle: t.clone(),
        })
        .collect();
    for held in shared {
        let lifted = held.replica == me && !wanted.iter().any(|w| w.same_holder(held));
        // Membership is known from heartbeats: an empty list says nothing yet.
        let gone = leads && !live.is_empty() && !live.contains(&held.replica);
        if lifted || (held.replica != me && gone) {
            changes.push(Change::Unthrottle {
                throttle: held.clone(),
            });
        }
    }
    changes
}

#[cfg(test)]
mod tests;
