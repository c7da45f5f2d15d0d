//! The circuit breaker in front of Redis on the request path.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use switchyard_core::metrics as names;

#[derive(Debug, Default)]
pub(super) struct Breaker {
    failures: AtomicU32,
    /// While open: when the next probe may go. The request that moves it forward is the
    /// probe, so a probe that never reports back (its client left) costs one cooldown.
    open_until_ms: AtomicU64,
}

impl Breaker {
    /// Closed: every call goes. Open: none until the cooldown passed, then one probe.
    pub(super) fn allow(&self, now: u64, threshold: u32, cooldown: Duration) -> bool {
        if self.failures.load(Ordering::Acquire) < threshold {
            return true;
        }
        let until = self.open_until_ms.load(Ordering::Acquire);
        let next = now.saturating_add(cooldown.as_millis() as u64);
        now >= until
            && self
                .open_until_ms
                .compare_exchange(until, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    pub(super) fn success(&self, threshold: u32) {
        if self.failures.swap(0, Ordering::AcqRel) >= threshold {
            tracing::info!("token budget: Redis answers again; circuit breaker closed");
            metrics::gauge!(names::BUDGET_BREAKER_OPEN).set(0.0);
        }
    }

    pub(super) fn failure(&self, now: u64, threshold: u32, cooldown: Duration) {
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures >= threshold {
            let until = now.saturating_add(cooldown.as_millis() as u64);
            self.open_until_ms.store(until, Ordering::Release);
            if failures == threshold {
                tracing::error!(
                    failures,
                    "token budget: Redis failing; circuit breaker open, the outage policy decides"
                );
                metrics::gauge!(names::BUDGET_BREAKER_OPEN).set(1.0);
            }
        }
    }
}
