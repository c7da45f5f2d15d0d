//! The live state that outlives tables — route signals with their windows, experiment
//! figures, endpoint health, kill switches, the controller's steering, the token budget —
//! kept by stable names (route, experiment, upstream and endpoint), as every request reads
//! it. How a table is prepared against it and put in force is in `reconcile`.

use std::sync::{Arc, OnceLock};

use switchyard_state::budget::BudgetGate;
use switchyard_state::steer::Steering;
use switchyard_state::{KillBoard, Signals};

use crate::registry::HealthRegistry;

/// What outlives a table swap: one `Arc` the gateway holds and a request clones.
#[derive(Debug)]
pub struct Boards {
    pub(crate) signals: Arc<Signals>,
    pub(crate) kills: Arc<KillBoard>,
    /// The controller's live decisions: rollout shares, throttles, downgrades.
    pub(crate) steering: Arc<Steering>,
    /// The token budget requests reserve from, when the assembly set one.
    pub(crate) budget: OnceLock<Arc<BudgetGate>>,
    /// Endpoint health and probes, by (upstream, endpoint).
    pub(crate) health: HealthRegistry,
}

impl Boards {
    /// Boards over `signals` with kill switches in memory and no steering yet: enough to
    /// prepare a table before the gateway exists.
    pub fn new(signals: Arc<Signals>) -> Self {
        Boards::with(signals, KillBoard::in_memory(), Steering::new())
    }

    pub fn with(signals: Arc<Signals>, kills: Arc<KillBoard>, steering: Arc<Steering>) -> Self {
        Boards {
            signals,
            kills,
            steering,
            budget: OnceLock::new(),
            health: HealthRegistry::default(),
        }
    }

    pub fn signals(&self) -> &Arc<Signals> {
        &self.signals
    }
}
