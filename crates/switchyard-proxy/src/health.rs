//! Endpoint health: consecutive failures eject an endpoint from its upstream's ring for a
//! while; after that one request or probe may try it (half-open), and one success rejoins it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// When a run of failures ejects an endpoint, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    pub unhealthy_after: u32,
    pub eject_for: Duration,
}

/// Milliseconds on a process-wide monotonic clock, never 0 (0 means "not ejected").
pub fn now_ms() -> u64 {
    switchyard_core::clock::mono_ms()
}

/// One endpoint's health. Lock-free: the data path reads it on every pick.
#[derive(Debug)]
pub struct EndpointHealth {
    upstream: Arc<str>,
    endpoint: Arc<str>,
    failures: AtomicU32,
    /// `now_ms` at which the ejection ends; 0 while the endpoint is in the ring.
    ejected_until: AtomicU64,
    gauge: metrics::Gauge,
}

impl EndpointHealth {
    pub fn new(upstream: Arc<str>, endpoint: Arc<str>) -> Self {
        let gauge = metrics::gauge!(switchyard_core::metrics::ENDPOINT_HEALTHY, "upstream" => upstream.clone(), "endpoint" => endpoint.clone());
        gauge.set(1.0);
        EndpointHealth {
            upstream,
            endpoint,
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            gauge,
        }
    }

    /// In the ring, or its ejection is over (half-open: it may be tried).
    pub fn available(&self, now: u64) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until == 0 || now >= until
    }

    /// In the ring and not waiting for a trial.
    pub fn healthy(&self) -> bool {
        self.ejected_until.load(Ordering::Relaxed) == 0
    }

    pub fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        if self.ejected_until.swap(0, Ordering::Relaxed) != 0 {
            self.gauge.set(1.0);
            tracing::info!(upstream = %self.upstream, endpoint = %self.endpoint, "endpoint rejoined");
        }
    }

    pub fn failure(&self, policy: HealthPolicy) {
        self.failure_at(policy, now_ms());
    }

    /// The failure count stays at or above the threshold until a success, so a failed trial
    /// after an ejection ejects again at once.
    fn failure_at(&self, policy: HealthPolicy, now: u64) {
        let failures = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if failures < policy.unhealthy_after {
            return;
        }
        let eject_ms = u64::try_from(policy.eject_for.as_millis()).unwrap_or(u64::MAX);
        let until = now.saturating_add(eject_ms).max(1);
        if self.ejected_until.swap(until, Ordering::Relaxed) == 0 {
            self.gauge.set(0.0);
            tracing::warn!(upstream = %self.upstream, endpoint = %self.endpoint, failures, eject_for = ?policy.eject_for, "endpoint ejected");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: HealthPolicy = HealthPolicy {
        unhealthy_after: 3,
        eject_for: Duration::from_secs(10),
    };

    fn cell() -> EndpointHealth {
        EndpointHealth::new(Arc::from("up"), Arc::from("http://a:1"))
    }

    #[test]
    fn ejects_after_consecutive_failures_only() {
        let h = cell();
        h.failure_at(POLICY, 100);
        h.failure_at(POLICY, 100);
        h.success();
        h.failure_at(POLICY, 100);
        h.failure_at(POLICY, 100);
        assert!(h.available(100) && h.healthy());
        h.failure_at(POLICY, 100);
        assert!(!h.available(100) && !h.healthy());
        assert!(!h.available(10_099));
    }

    #[test]
    fn half_open_after_eject_for() {
        let h = cell();
        for _ in 0..3 {
            h.failure_at(POLICY, 100);
        }
        // Tried again once the ejection is over; one failure sends it back out...
        assert!(h.available(10_100));
        h.failure_at(POLICY, 10_100);
        assert!(!h.available(10_200));
        // ...and one success brings it back in.
        assert!(h.available(20_100));
        h.success();
        assert!(h.healthy() && h.available(20_100));
        h.failure_at(POLICY, 20_200);
        assert!(h.available(20_200), "the count started over");
    }
}
