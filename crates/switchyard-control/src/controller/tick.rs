//! The tick: one look at every rollout, rule and experiment, every [`TICK`].

use std::sync::Arc;
use std::time::Duration;

use switchyard_core::metrics as names;

use super::effects::Effects;
use super::{lock, Controller, Inner};
use crate::signals::now_secs;

/// How often the controller looks.
pub const TICK: Duration = Duration::from_millis(100);

/// The error class history is written at most every this many ticks (5 s).
const HISTORY_EVERY_TICKS: u64 = 50;

/// The rollouts' stage request counts change constantly: written at most this often (every
/// transition is written at once).
const SAVE_DIRTY_AFTER: Duration = Duration::from_secs(5);

impl Controller {
    /// Looks every `TICK` until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks = 0u64;
        loop {
            interval.tick().await;
            self.tick();
            ticks += 1;
            if ticks.is_multiple_of(HISTORY_EVERY_TICKS) {
                self.save_history();
            }
        }
    }

    /// Writes the error class history if it moved, outside the decision lock.
    pub fn save_history(&self) {
        let keep = {
            let inner = lock(&self.inner);
            inner
                .plan
                .routes
                .iter()
                .map(|r| r.rollback.new_error_class_lookback.as_secs())
                .max()
                .unwrap_or(0)
        };
        // Classes seen during a long rollout must outlive the lookback: keep a week at least.
        let keep = keep.max(7 * 86_400);
        self.history
            .save_if_changed(&self.signals, now_secs(), keep);
    }

    /// One look at every rollout, rule and experiment; the files and webhooks it decided on
    /// are written and sent once the lock is released.
    pub fn tick(&self) {
        let mut effects = Effects::default();
        let mut inner = lock(&self.inner);
        self.decide(&mut inner, &mut effects);
        drop(inner);
        let _ = self.carry_out(effects); // logged; retried at the next transition
    }

    fn decide(&self, inner: &mut Inner, effects: &mut Effects) {
        inner.ticks += 1;
        let routes = inner.plan.routes.clone();
        for route in &routes {
            if inner.rollouts.contains_key(&route.name) {
                self.look_at_rollout(inner, route, effects);
            }
        }
        self.look_at_rules(inner, effects);
        self.share_throttles(inner);
        self.publish_counts(inner);
        if inner.ticks.is_multiple_of(10) {
            self.evaluate_experiments();
            self.publish_weights(inner);
        }
        if inner
            .dirty_since
            .is_some_and(|t| t.elapsed() >= SAVE_DIRTY_AFTER)
        {
            effects.save(inner);
        }
    }

    /// `switchyard_experiment_p_value{experiment}`: each experiment's sequential test.
    fn evaluate_experiments(&self) {
        for experiment in self.signals.experiments().all() {
            let outcome = experiment.evaluate();
            metrics::gauge!(names::EXPERIMENT_P_VALUE, "experiment" => experiment.name().clone())
                .set(outcome.p_value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{exchange, feed, rig, BASE};
    use crate::rollout::{Phase, RolloutStore};

    #[test]
    fn a_transition_is_on_disk_when_the_tick_returns() {
        let rig = rig(BASE);
        feed(&rig, 40, |_| exchange("green", 500, None, 100, 0.01));
        rig.controller.tick();
        let (_, states) = RolloutStore::open(&rig.dir).unwrap();
        assert_eq!(states["support"].phase, Phase::RolledBack);
    }

    #[test]
    fn stage_counts_are_written_after_a_while_not_every_tick() {
        let rig = rig(BASE);
        feed(&rig, 5, |_| exchange("green", 200, None, 100, 0.01));
        rig.controller.tick();
        assert_eq!(rig.controller.rollout("support").unwrap().stage_requests, 5);
        let (_, states) = RolloutStore::open(&rig.dir).unwrap();
        assert_eq!(states["support"].stage_requests, 0, "not yet written");
    }
}
