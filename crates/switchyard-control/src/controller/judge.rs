//! Fleet mode: stages are judged on the fleet's traffic, by the replica holding the lease.
//!
//! Every replica publishes its last complete second of blue and green on each rolling-out
//! route (the control-plane tick, once a second). The lease holder, once a stage has baked,
//! reads the seconds since the stage started, sums them over the live replicas, and advances
//! only if the fleet's green served `min_requests`, no trigger holds on the fleet's window,
//! no replica's own slice of green is failing, and every live replica published. Without the
//! lease, or without Redis, no replica advances: the rollout stays where it is.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::effects::Effects;
use super::vocab::Actor;
use super::{lock, Controller, RoutePlan};
use crate::fleet::counts::{self, Counts, FleetWindow, TTL_SECS};
use crate::kill::now_ms;
use crate::rollout::{Phase, RolloutState};
use crate::signals::now_secs;

/// How often the lease holder judges the baked stages.
const JUDGE_EVERY: Duration = Duration::from_millis(500);

impl Controller {
    /// Publishes the last complete second of every rollout's blue and green, once a second.
    pub(super) fn publish_counts(&self, inner: &super::Inner) {
        let Some(link) = self.fleet.get() else {
            return;
        };
        let second = now_secs().saturating_sub(1);
        if link.published.swap(second, Ordering::Relaxed) == second {
            return;
        }
        for (route, state) in &inner.rollouts {
            let Some(signals) = self.signals.get(route) else {
                continue;
            };
            let green = Counts::from(&signals.side_window(&state.green, second, second));
            let blue = Counts::from(&signals.side_window(&state.blue, second, second));
            link.fleet.publish_counts(route, second, green, blue);
        }
    }

    /// Judges baked stages while this replica holds the lease, until the controller is gone.
    pub(super) async fn judge_loop(this: Weak<Controller>) {
        let mut tick = tokio::time::interval(JUDGE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(controller) = this.upgrade() else {
                return;
            };
            controller.judge().await;
        }
    }

    /// The stages baked now, with what judging them needs.
    fn baked(&self) -> Vec<(RoutePlan, RolloutState)> {
        let inner = lock(&self.inner);
        let now = now_ms();
        inner
            .plan
            .routes
            .iter()
            .filter_map(|route| {
                let rollout = route.rollout.as_ref()?;
                let state = inner.rollouts.get(&route.name)?;
                let baked = now.saturating_sub(state.stage_started_at_ms)
                    >= rollout.bake.as_millis() as u64;
                let open = state.phase == Phase::Shifting
                    && state.epoch > 0
                    && !inner.in_flight.contains(&route.name);
                (baked && open).then(|| (route.clone(), state.clone()))
            })
            .collect()
    }

    async fn judge(self: &Arc<Self>) {
        let Some(fleet) = self.fleet().cloned() else {
            return;
        };
        if !fleet.leads() {
            return;
        }
        let live = fleet.live_members();
        for (route, state) in self.baked() {
            // The last second every replica has surely published.
            let to = now_secs().saturating_sub(2);
            // The seconds wholly inside the stage, at most as far back as counts are kept.
            let from = state
                .stage_started_at_ms
                .div_ceil(1000)
                .max(to.saturating_sub(TTL_SECS - 1));
            let Ok(seconds) = fleet.read_counts(&route.name, from, to).await else {
                return; // Redis trouble: nothing advances
            };
            let stage = counts::sum(&seconds, &live);
            // The triggers read the rollback window: the stage's last seconds.
            let recent = to.saturating_sub(route.rollback.window.as_secs().max(1)) + 1;
            let skip = usize::try_from(recent.saturating_sub(from)).unwrap_or(0);
            let trigger = counts::sum(seconds.get(skip..).unwrap_or_default(), &live);
            self.judge_stage(&route, &state, &stage, &trigger);
        }
    }

    /// Advances (or rolls back) one baked stage on the fleet's windows: `stage` since the
    /// stage started, `trigger` over the rollback window.
    fn judge_stage(
        &self,
        route: &RoutePlan,
        state: &RolloutState,
        w: &FleetWindow,
        trigger: &FleetWindow,
    ) {
        if route.rollout.is_none() {
            return;
        }
        if !w.silent.is_empty() {
            tracing::debug!(route = %route.name, silent = ?w.silent, "stage not judged: replicas without counts");
            return;
        }
        let mut effects = Effects::default();
        let mut inner = lock(&self.inner);
        self.judge_locked(&mut inner, route, state, (w, trigger), &mut effects);
        drop(inner);
        let _ = self.carry_out(effects); // logged; in force either way
    }

    /// [`Controller::judge_stage`], under the decision lock.
    fn judge_locked(
        &self,
        inner: &mut super::Inner,
        route: &RoutePlan,
        state: &RolloutState,
        (w, trigger): (&FleetWindow, &FleetWindow),
        effects: &mut Effects,
    ) {
        let (Some(rollout), rb) = (route.rollout.as_ref(), &route.rollback) else {
            return;
        };
        let Some(current) = inner.rollouts.get(&route.name) else {
            return;
        };
        if current.epoch != state.epoch || current.decisions != state.decisions {
            return; // decided meanwhile
        }
        let fired = self.rollback_trigger(
            &route.name,
            current,
            rb,
            &trigger.green,
            &trigger.blue,
            switchyard_core::clock::now(),
        );
        if let Some(fired) = fired {
            self.roll_back(inner, &route.name, fired, Actor::Controller, effects);
            return;
        }
        let failing = trigger
            .green_by_replica
            .iter()
            .find(|(_, b)| b.requests > 0 && b.error_rate() > rb.error_rate);
        if let Some((replica, b)) = failing {
            tracing::info!(route = %route.name, replica, error_rate = b.error_rate(),
                "stage held: green is failing on one replica");
            return;
        }
        if w.green.requests >= rollout.min_requests {
            let route_name = route.name.clone();
            if let Some(s) = inner.rollouts.get_mut(&route_name) {
                s.stage_requests = w.green.requests;
            }
            self.propose_advance(inner, &route_name);
        }
    }
}

/// Spawns the judge for `controller` on the current runtime, if there is one.
pub(super) fn spawn(controller: &Arc<Controller>) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(Controller::judge_loop(Arc::downgrade(controller)));
    }
}
