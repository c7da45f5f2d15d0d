//! Admission: per-route and per-user rate limits (exact, GCRA: see `limiter`) and a
//! concurrency limit with a bounded queue. Over a limit the answer is immediate; the upstream
//! never sees more than it was promised.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use switchyard_config::Limits;
use switchyard_state::Signals;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::limiter::{Gcra, Keyed, Single};

/// Why a request was shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// The route's admitted rate is used up.
    RouteRate,
    /// This user's admitted rate is used up.
    UserRate,
    /// A rule lowered the route's admitted rate.
    Throttled,
    /// Every slot is busy and the queue is full.
    QueueFull,
    /// The request waited `queue_timeout` without getting a slot.
    QueueTimeout,
}

impl Shed {
    pub fn as_str(self) -> &'static str {
        match self {
            Shed::RouteRate => "route_rate",
            Shed::UserRate => "user_rate",
            Shed::Throttled => "throttled",
            Shed::QueueFull => "queue_full",
            Shed::QueueTimeout => "queue_timeout",
        }
    }
}

/// A rate limit's rate and its state: one TAT for the route, one per user key.
struct RateLimit<S> {
    gcra: Gcra,
    state: S,
}

impl<S: Default> RateLimit<S> {
    fn new(per_second: f64) -> Self {
        RateLimit {
            gcra: Gcra::new(per_second),
            state: S::default(),
        }
    }
}

/// One route's admission state. Kept across reloads while the route's limits are unchanged,
/// so a reload neither resets rates nor forgets requests in the queue.
pub struct Admission {
    pub limits: Limits,
    slots: Option<Arc<Semaphore>>,
    queued: AtomicUsize,
    queued_gauge: metrics::Gauge,
    /// The origin of the rate limits' clock.
    epoch: Instant,
    route_rate: Option<RateLimit<Single>>,
    user_rate: Option<RateLimit<Keyed>>,
    /// A rule's throttle; its rate comes with each request, so a new rate applies at once.
    throttle: Single,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Admission {
    pub fn new(route: &str, limits: &Limits) -> Self {
        Admission {
            limits: limits.clone(),
            slots: limits.max_concurrency.map(|n| Arc::new(Semaphore::new(n))),
            queued: AtomicUsize::new(0),
            queued_gauge: metrics::gauge!(switchyard_core::metrics::QUEUED_REQUESTS, "route" => route.to_string()),
            route_rate: limits.requests_per_second.map(RateLimit::new),
            user_rate: limits.user_requests_per_second.map(RateLimit::new),
            epoch: switchyard_core::clock::now(),
            throttle: Single::default(),
        }
    }

    /// Concurrency slots free now (`usize::MAX` without a concurrency limit).
    #[cfg(test)]
    pub fn free_slots(&self) -> usize {
        self.slots
            .as_ref()
            .map_or(usize::MAX, |s| s.available_permits())
    }

    /// Nanoseconds since `epoch`.
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// A rule's throttle: route-wide, at `per_second`. When a rule changes the rate, what
    /// the old rate had used up carries over, at most one full burst of the new rate.
    pub fn check_throttle(&self, per_second: f64) -> Result<(), Shed> {
        if self.throttle.admit(Gcra::new(per_second), self.now()) {
            Ok(())
        } else {
            Err(Shed::Throttled)
        }
    }

    /// The rate limits: per user, then route-wide (requests without a user key are limited
    /// by the route's rate only). The user's comes first so that a user over its own limit
    /// does not use up the route's allowance of everyone else.
    pub fn check_rates(&self, user_key: Option<&str>) -> Result<(), Shed> {
        self.check_rates_at(user_key, self.now())
    }

    fn check_rates_at(&self, user_key: Option<&str>, now: u64) -> Result<(), Shed> {
        if let (Some(limit), Some(user)) = (&self.user_rate, user_key) {
            if !limit.state.admit(user, limit.gcra, now) {
                return Err(Shed::UserRate);
            }
        }
        if let Some(limit) = &self.route_rate {
            if !limit.state.admit(limit.gcra, now) {
                return Err(Shed::RouteRate);
            }
        }
        Ok(())
    }

    /// A concurrency slot now, or a place in the bounded queue to wait for one; refused
    /// when the queue is full. The place is the returned wait's: however the wait ends, it
    /// is given back.
    pub fn knock(self: &Arc<Self>, signals: &Arc<Signals>) -> Result<Door, Shed> {
        let Some(slots) = &self.slots else {
            return Ok(Door::Slot(None));
        };
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            return Ok(Door::Slot(Some(permit)));
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.limits.max_queue {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Shed::QueueFull);
        }
        let waiting = Waiting::new(self.clone(), signals.clone());
        let (slots, timeout) = (slots.clone(), self.limits.queue_timeout);
        // Tokio's acquire future has no name to keep it in; only a queued request pays
        // for the box.
        Ok(Door::Queue(QueueWait(Box::pin(async move {
            let _waiting = waiting;
            match tokio::time::timeout(timeout, slots.acquire_owned()).await {
                Ok(Ok(permit)) => Ok(Some(permit)),
                // The semaphore is never closed; treat it as a timeout should that change.
                Ok(Err(_)) | Err(_) => Err(Shed::QueueTimeout),
            }
        }))))
    }

    /// A concurrency slot, waiting in the bounded queue if all are busy.
    #[cfg(test)]
    pub async fn enter(
        self: &Arc<Self>,
        signals: &Arc<Signals>,
    ) -> Result<Option<OwnedSemaphorePermit>, Shed> {
        match self.knock(signals)? {
            Door::Slot(slot) => Ok(slot),
            Door::Queue(wait) => wait.await,
        }
    }
}

/// Where admission lets a request in: with a slot now (`None` without a concurrency
/// limit), or into the queue.
pub enum Door {
    Slot(Option<OwnedSemaphorePermit>),
    Queue(QueueWait),
}

/// A queued request's wait for a slot, up to `queue_timeout`.
pub struct QueueWait(
    Pin<Box<dyn Future<Output = Result<Option<OwnedSemaphorePermit>, Shed>> + Send>>,
);

impl Future for QueueWait {
    type Output = Result<Option<OwnedSemaphorePermit>, Shed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

/// Counts a request in the queue for as long as it waits, however the wait ends.
struct Waiting {
    admission: Arc<Admission>,
    signals: Arc<Signals>,
}

impl Waiting {
    fn new(admission: Arc<Admission>, signals: Arc<Signals>) -> Self {
        signals.queued().fetch_add(1, Ordering::Relaxed);
        admission.queued_gauge.increment(1.0);
        Waiting { admission, signals }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.admission.queued.fetch_sub(1, Ordering::AcqRel);
        self.admission.queued_gauge.decrement(1.0);
        self.signals.queued().fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits(concurrency: Option<usize>, queue: usize, rps: Option<f64>) -> Limits {
        Limits {
            max_concurrency: concurrency,
            max_queue: queue,
            queue_timeout: Duration::from_millis(100),
            requests_per_second: rps,
            user_requests_per_second: Some(2.0),
        }
    }

    #[tokio::test]
    async fn a_full_queue_sheds_at_once_and_a_slow_slot_times_out() {
        let signals = Signals::new();
        let admission = Arc::new(Admission::new("t", &limits(Some(1), 1, None)));
        let held = admission.enter(&signals).await.unwrap();
        assert!(held.is_some());
        let waiter = admission.enter(&signals);
        let (waited, shed) = tokio::join!(waiter, async {
            tokio::task::yield_now().await;
            admission.enter(&signals).await
        });
        assert_eq!(shed.unwrap_err(), Shed::QueueFull);
        assert_eq!(waited.unwrap_err(), Shed::QueueTimeout);
        assert_eq!(signals.queued().load(Ordering::Relaxed), 0);
        drop(held);
        assert!(admission.enter(&signals).await.unwrap().is_some());
    }

    #[test]
    fn rates_shed_over_the_limit_per_route_and_per_user() {
        let admission = Admission::new("t", &limits(None, 0, Some(5.0)));
        let admitted = (0..10)
            .filter(|_| admission.check_rates(None).is_ok())
            .count();
        assert_eq!(admitted, 5);
        let per_user = Admission::new("u", &limits(None, 0, None));
        assert!(per_user.check_rates(Some("a")).is_ok());
        assert!(per_user.check_rates(Some("a")).is_ok());
        assert_eq!(per_user.check_rates(Some("a")), Err(Shed::UserRate));
        assert!(per_user.check_rates(Some("b")).is_ok());
    }

    #[test]
    fn fractional_route_and_user_rates_are_exact() {
        const SEC: u64 = 1_000_000_000;
        let mut l = limits(None, 0, Some(1.5));
        l.user_requests_per_second = Some(0.5);
        let admission = Admission::new("f", &l);
        // The route's burst is 2, a user's is 1.
        assert!(admission.check_rates_at(Some("a"), 0).is_ok());
        // Refused for the user, without using the route's allowance.
        assert_eq!(admission.check_rates_at(Some("a"), 0), Err(Shed::UserRate));
        assert!(admission.check_rates_at(Some("b"), 0).is_ok());
        assert_eq!(admission.check_rates_at(Some("c"), 0), Err(Shed::RouteRate));
        // One route interval (2/3 s) later the route has room again.
        assert!(admission.check_rates_at(Some("d"), 2 * SEC / 3).is_ok());
        assert_eq!(
            admission.check_rates_at(Some("a"), 2 * SEC - 1),
            Err(Shed::UserRate)
        );
        assert!(admission.check_rates_at(Some("a"), 2 * SEC).is_ok());
    }

    #[test]
    fn a_throttle_follows_its_rate_as_a_rule_changes_it() {
        let admission = Admission::new("t", &limits(None, 0, None));
        let admitted = (0..10)
            .filter(|_| admission.check_throttle(3.0).is_ok())
            .count();
        assert_eq!(admitted, 3);
        // Loosened: the debt of the old rate is at most a full burst of the new one, so a
        // much higher rate admits again within one of its own intervals.
        let at_once = (0..200)
            .filter(|_| admission.check_throttle(1e6).is_ok())
            .count();
        assert!(at_once > 0, "a loosened throttle still refuses everything");
    }
}
