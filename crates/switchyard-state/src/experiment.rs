//! A/B experiments: per-variant figures, outcomes reported by applications, and the verdict of
//! the sequential test.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Serialize;
use switchyard_core::metrics as names;

use crate::exchange::Exchange;
use crate::histogram::Histogram;
use crate::kill::now_ms;
use crate::stats::{self, Arm, Sequential};

/// The `variant` label of requests outside every experiment's variant on a route that has
/// experiments.
pub const CONTROL: &str = "control";

/// Request ids remembered for feedback, newest kept; older reports are refused as unknown.
const MAX_JOINS: usize = 100_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What one arm has seen since the experiment started (or the gateway did).
#[derive(Debug, Clone, Default)]
struct Figures {
    requests: u64,
    errors: u64,
    /// Judged by finish reason, corrected by application feedback.
    completed: u64,
    completed_tokens: u64,
    latency: Histogram,
    cost_usd: f64,
    feedback: u64,
    feedback_success: u64,
    score_sum: f64,
    score_n: u64,
}

/// One arm's figures as the admin API shows them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ArmView {
    pub variant: String,
    pub requests: u64,
    pub error_rate: Option<f64>,
    pub completion_rate: Option<f64>,
    pub tokens_per_completed: Option<f64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub cost_per_request_usd: Option<f64>,
    pub feedback_reports: u64,
    pub feedback_success_rate: Option<f64>,
    pub mean_score: Option<f64>,
}

/// `GET /admin/experiments/{name}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ExperimentView {
    pub name: String,
    pub route: String,
    pub share: f64,
    pub started_at_ms: u64,
    /// Control first, then the variant.
    pub arms: Vec<ArmView>,
    /// The metric the test judges: completion rate (feedback replaces the finish reason of
    /// the requests it reports on).
    pub metric: &'static str,
    pub verdict: &'static str,
    /// Variant minus control.
    pub difference: Option<f64>,
    /// Always valid: it may be read at any time without inflating false positives.
    pub p_value: f64,
    pub alpha: f64,
    pub min_per_variant: u64,
    pub confident_per_variant: u64,
}

/// One experiment's state.
#[derive(Debug)]
pub struct ExperimentStats {
    /// Unique in this process: what remembered requests refer to it by.
    id: u64,
    name: Arc<str>,
    route: Arc<str>,
    share: Mutex<f64>,
    started_at_ms: u64,
    arms: Mutex<[Figures; 2]>,
    test: Mutex<Sequential>,
    completions: [metrics::Counter; 2],
}

impl ExperimentStats {
    fn new(id: u64, name: &str, route: &Arc<str>, share: f64, alpha: f64) -> Self {
        let counter = |variant: &str| {
            metrics::counter!(names::EXPERIMENT_COMPLETIONS_TOTAL,
                "experiment" => name.to_owned(), "route" => route.clone(), "variant" => variant.to_owned())
        };
        ExperimentStats {
            id,
            name: Arc::from(name),
            route: route.clone(),
            share: Mutex::new(share),
            started_at_ms: now_ms(),
            arms: Mutex::new([Figures::default(), Figures::default()]),
            test: Mutex::new(Sequential::new(stats::Settings {
                alpha,
                ..stats::Settings::default()
            })),
            completions: [counter(CONTROL), counter(name)],
        }
    }

    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The arm this exchange belongs to: 0 control, 1 variant, `None` for neither.
    fn arm_of(&self, exchange: &Exchange) -> Option<usize> {
        if *exchange.variant == *self.name {
            Some(1)
        } else if &*exchange.variant == CONTROL {
            Some(0)
        } else {
            None
        }
    }

    /// Adds an exchange; returns its arm and whether it counted as completed.
    fn record(&self, exchange: &Exchange) -> Option<(usize, bool)> {
        let arm = self.arm_of(exchange)?;
        let completed = exchange.completed();
        let mut arms = lock(&self.arms);
        let f = &mut arms[arm];
        f.requests += 1;
        f.errors += u64::from(exchange.is_error());
        f.latency.record(exchange.alert_latency());
        f.cost_usd += exchange.cost_usd;
        if completed {
            f.completed += 1;
            f.completed_tokens += exchange.prompt_tokens + exchange.completion_tokens;
            self.completions[arm].increment(1);
        }
        Some((arm, completed))
    }

    fn test_arms(&self) -> (Arm, Arm) {
        let arms = lock(&self.arms);
        let arm = |f: &Figures| Arm {
            trials: f.requests,
            successes: f.completed,
        };
        (arm(&arms[0]), arm(&arms[1]))
    }

    /// Feeds the sequential test the current counts. Called on a fixed schedule by the
    /// controller and on every read: the test stays valid however often it looks.
    pub fn evaluate(&self) -> stats::Outcome {
        let (a, b) = self.test_arms();
        lock(&self.test).update(a, b)
    }

    pub fn view(&self) -> ExperimentView {
        let outcome = self.evaluate();
        let settings = lock(&self.test).settings();
        let arms = lock(&self.arms);
        let view = |variant: &str, f: &Figures| ArmView {
            variant: variant.to_owned(),
            requests: f.requests,
            error_rate: per(f.errors as f64, f.requests),
            completion_rate: per(f.completed as f64, f.requests),
            tokens_per_completed: per(f.completed_tokens as f64, f.completed),
            latency_p50_ms: f.latency.quantile(0.5).map(|d| d.as_secs_f64() * 1000.0),
            latency_p99_ms: f.latency.quantile(0.99).map(|d| d.as_secs_f64() * 1000.0),
            cost_per_request_usd: per(f.cost_usd, f.requests),
            feedback_reports: f.feedback,
            feedback_success_rate: per(f.feedback_success as f64, f.feedback),
            mean_score: per(f.score_sum, f.score_n),
        };
        ExperimentView {
            name: self.name.to_string(),
            route: self.route.to_string(),
            share: *lock(&self.share),
            started_at_ms: self.started_at_ms,
            arms: vec![view(CONTROL, &arms[0]), view(&self.name, &arms[1])],
            metric: "completion_rate",
            verdict: outcome.verdict.as_str(),
            difference: outcome.difference,
            p_value: outcome.p_value,
            alpha: settings.alpha,
            min_per_variant: settings.min_per_arm,
            confident_per_variant: settings.confident_per_arm,
        }
    }
}

fn per(x: f64, n: u64) -> Option<f64> {
    (n > 0).then(|| x / n as f64)
}

/// An application's report on one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Feedback {
    pub success: bool,
    pub score: Option<f64>,
}

/// Why a report was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedbackError {
    /// Not a request of an experiment, or too old to remember.
    Unknown,
    /// This request was reported on already.
    Duplicate,
}

/// Experiments one request can be joined to for feedback: a route with more has the rest
/// judged by finish reason only.
const JOIN_WIDTH: usize = 4;

/// What a request counted for in one experiment. The experiment is named by id, not held:
/// remembering a request touches no shared reference count.
#[derive(Clone)]
struct Join {
    experiment: u64,
    arm: usize,
    completed: bool,
    /// The exchange's tokens, moved in or out of the completed requests' total with it.
    tokens: u64,
}

/// One remembered request.
struct Slot {
    key: u128,
    joins: [Option<Join>; JOIN_WIDTH],
    reported: bool,
    /// Its route (`RouteSignals` id) and upstream (`upstream_key`), for route-level feedback.
    route: u64,
    upstream: u64,
    completed: bool,
}

/// What a report was joined to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The experiments and variants it counted for.
    pub counted: Vec<(String, String)>,
    pub route: u64,
    pub upstream: u64,
    /// The request had completed by its finish reason.
    pub completed: bool,
}

/// An upstream's name as remembered requests hold it: a hash, so remembering touches no
/// shared reference count.
pub fn upstream_key(name: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(name.as_bytes())
}

/// The last `MAX_JOINS` experiment requests, in a ring allocated once, indexed by a 128-bit
/// hash of the request id: remembering a request allocates nothing, so the data path does
/// not pay the allocator for feedback that may never come.
#[derive(Default)]
struct Joins {
    slots: Vec<Option<Slot>>,
    next: usize,
    index: HashMap<u128, usize>,
}

impl Joins {
    fn key(request_id: &str) -> u128 {
        xxhash_rust::xxh3::xxh3_128(request_id.as_bytes())
    }

    fn remember(&mut self, key: u128, joins: [Option<Join>; JOIN_WIDTH], of: (u64, u64, bool)) {
        if self.index.capacity() == 0 {
            self.index.reserve(MAX_JOINS);
            self.slots.reserve_exact(MAX_JOINS);
        }
        if let Some(at) = self.index.remove(&key) {
            // The same id again (a client reusing its request id): the newer one counts.
            if let Some(slot) = self.slots.get_mut(at) {
                *slot = None;
            }
        }
        let (route, upstream, completed) = of;
        let slot = Slot {
            key,
            joins,
            reported: false,
            route,
            upstream,
            completed,
        };
        let at = self.next;
        if at == self.slots.len() {
            self.slots.push(Some(slot));
        } else if let Some(old) = self.slots[at].replace(slot) {
            self.index.remove(&old.key);
        }
        self.index.insert(key, at);
        self.next = (at + 1) % MAX_JOINS;
    }

    fn get_mut(&mut self, key: u128) -> Option<&mut Slot> {
        let at = *self.index.get(&key)?;
        self.slots.get_mut(at)?.as_mut()
    }
}

/// Every experiment by name, and the request ids that feedback can join on.
#[derive(Default)]
pub struct Experiments {
    by_name: Mutex<HashMap<Arc<str>, Arc<ExperimentStats>>>,
    joins: Mutex<Joins>,
    next_id: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Experiments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Experiments").finish_non_exhaustive()
    }
}

impl Experiments {
    /// The experiment of this name for a table being prepared: the live one while the name
    /// and route stay the same (a reload keeps its figures), else a new one that nothing
    /// sees until [`Experiments::adopt`]. Changes nothing in force.
    pub fn prepare(
        &self,
        name: &str,
        route: &Arc<str>,
        share: f64,
        alpha: f64,
    ) -> Arc<ExperimentStats> {
        if let Some(existing) = lock(&self.by_name).get(name).filter(|e| e.route == *route) {
            return existing.clone();
        }
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Arc::new(ExperimentStats::new(id, name, route, share, alpha))
    }

    /// Puts a table's experiments in force with their share and significance level: they
    /// are the registry from now on, and experiments no longer configured leave it (their
    /// figures with them).
    pub fn adopt(&self, experiments: &[(Arc<ExperimentStats>, f64, f64)]) {
        let mut all = lock(&self.by_name);
        all.clear();
        for (stats, share, alpha) in experiments {
            *lock(&stats.share) = *share;
            lock(&stats.test).set_alpha(*alpha);
            all.insert(stats.name.clone(), stats.clone());
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<ExperimentStats>> {
        lock(&self.by_name).get(name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<ExperimentStats>> {
        let mut all: Vec<_> = lock(&self.by_name).values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Adds an exchange to the experiments of its route, and remembers it for feedback when
    /// it took part in one or its route takes feedback anyway (`remember`).
    pub fn record(
        &self,
        route: u64,
        experiments: &[Arc<ExperimentStats>],
        exchange: &Exchange,
        remember: bool,
    ) {
        let mut joins: [Option<Join>; JOIN_WIDTH] = Default::default();
        let mut any = false;
        for (i, experiment) in experiments.iter().enumerate() {
            if let Some((arm, completed)) = experiment.record(exchange) {
                if let Some(free) = joins.get_mut(i) {
                    *free = Some(Join {
                        experiment: experiment.id,
                        arm,
                        completed,
                        tokens: exchange.prompt_tokens + exchange.completion_tokens,
                    });
                    any = true;
                }
            }
        }
        if any || remember {
            let key = Joins::key(&exchange.request_id);
            let of = (
                route,
                upstream_key(&exchange.upstream),
                exchange.completed(),
            );
            lock(&self.joins).remember(key, joins, of);
        }
    }

    /// Applies an application's report: its verdict replaces the finish reason's for that
    /// request. Returns the experiments and variants it counted for.
    pub fn feedback(&self, request_id: &str, report: Feedback) -> Result<Joined, FeedbackError> {
        let mut joins = lock(&self.joins);
        let slot = joins
            .get_mut(Joins::key(request_id))
            .ok_or(FeedbackError::Unknown)?;
        if slot.reported {
            return Err(FeedbackError::Duplicate);
        }
        slot.reported = true;
        let joined: Vec<Join> = slot.joins.iter().flatten().cloned().collect();
        let (route, upstream, completed) = (slot.route, slot.upstream, slot.completed);
        drop(joins);
        let running: Vec<Arc<ExperimentStats>> = lock(&self.by_name).values().cloned().collect();
        let mut counted = Vec::with_capacity(JOIN_WIDTH);
        for join in &joined {
            // An experiment a reload removed since takes no more reports.
            let Some(experiment) = running.iter().find(|e| e.id == join.experiment) else {
                continue;
            };
            let mut arms = lock(&experiment.arms);
            let f = &mut arms[join.arm];
            f.feedback += 1;
            f.feedback_success += u64::from(report.success);
            if let Some(score) = report.score {
                f.score_sum += score;
                f.score_n += 1;
            }
            match (join.completed, report.success) {
                (true, false) => {
                    f.completed = f.completed.saturating_sub(1);
                    f.completed_tokens = f.completed_tokens.saturating_sub(join.tokens);
                }
                (false, true) => {
                    f.completed += 1;
                    f.completed_tokens += join.tokens;
                }
                _ => {}
            }
            let variant = if join.arm == 1 {
                experiment.name.to_string()
            } else {
                CONTROL.to_owned()
            };
            metrics::counter!(names::EXPERIMENT_FEEDBACK_TOTAL,
                "experiment" => experiment.name.clone(), "variant" => variant.clone(),
                "result" => if report.success { "success" } else { "failure" })
            .increment(1);
            counted.push((experiment.name.to_string(), variant));
        }
        Ok(Joined {
            counted,
            route,
            upstream,
            completed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_join_ring_forgets_the_oldest_and_allocates_once() {
        let mut joins = Joins::default();
        for n in 0..MAX_JOINS as u128 + 10 {
            joins.remember(n, Default::default(), (0, 0, false));
        }
        assert!(joins.get_mut(0).is_none(), "the oldest are forgotten");
        assert!(joins.get_mut(9).is_none());
        assert!(joins.get_mut(10).is_some());
        assert!(joins.get_mut(MAX_JOINS as u128 + 9).is_some());
        assert_eq!(joins.slots.len(), MAX_JOINS);
        assert_eq!(joins.index.len(), MAX_JOINS);
        assert_eq!(
            joins.slots.capacity(),
            MAX_JOINS,
            "the ring never grew past its size"
        );
    }

    #[test]
    fn a_reused_request_id_keeps_only_its_newest_exchange() {
        let mut joins = Joins::default();
        joins.remember(7, Default::default(), (0, 0, false));
        joins.remember(8, Default::default(), (0, 0, false));
        joins.remember(7, Default::default(), (0, 0, false));
        assert_eq!(joins.index.len(), 2);
        assert_eq!(joins.index[&7], 2);
        for n in 100..MAX_JOINS as u128 + 100 {
            joins.remember(n, Default::default(), (0, 0, false));
        }
        assert!(joins.get_mut(7).is_none() && joins.get_mut(8).is_none());
        assert_eq!(joins.index.len(), MAX_JOINS);
    }
}
