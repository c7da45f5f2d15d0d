//! Where the gateway is in its life: starting, ready, or draining. `/ready` reports it.

use std::sync::atomic::{AtomicU8, Ordering};

/// What `/ready` says before it looks at the upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// State (kill switches, rollouts) is still being loaded: not ready.
    Starting,
    /// Serving: ready when an upstream is reachable.
    Serving,
    /// Shutting down: never ready again, so load balancers take the replica out.
    Draining,
}

/// One atomic, read by every `/ready` and written three times in a process's life.
#[derive(Debug, Default)]
pub struct Lifecycle(AtomicU8);

const STARTING: u8 = 0;
const SERVING: u8 = 1;
const DRAINING: u8 = 2;

impl Lifecycle {
    pub fn phase(&self) -> Phase {
        match self.0.load(Ordering::Acquire) {
            STARTING => Phase::Starting,
            SERVING => Phase::Serving,
            _ => Phase::Draining,
        }
    }

    /// Everything the data path reads is loaded. A draining gateway stays draining.
    pub fn serving(&self) {
        let _ = self
            .0
            .compare_exchange(STARTING, SERVING, Ordering::AcqRel, Ordering::Acquire);
    }

    /// From now on `/ready` answers 503.
    pub fn drain(&self) {
        self.0.store(DRAINING, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_not_ready_and_draining_is_final() {
        let life = Lifecycle::default();
        assert_eq!(life.phase(), Phase::Starting);
        life.serving();
        assert_eq!(life.phase(), Phase::Serving);
        life.drain();
        life.serving();
        assert_eq!(life.phase(), Phase::Draining);
    }

    #[test]
    fn a_drain_before_serving_is_not_undone() {
        let life = Lifecycle::default();
        life.drain();
        life.serving();
        assert_eq!(life.phase(), Phase::Draining);
    }
}
