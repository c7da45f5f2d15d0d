//! The live state the gateway keeps across tables, as the request path reads it.

use std::sync::{Arc, OnceLock};

use switchyard_state::budget::BudgetGate;
use switchyard_state::steer::Steering;
use switchyard_state::{KillBoard, Signals};

/// What outlives a table swap and every request reads: one `Arc` a request clones.
#[derive(Debug)]
pub(crate) struct Boards {
    pub signals: Arc<Signals>,
    pub kills: Arc<KillBoard>,
    /// The controller's live decisions: rollout shares, throttles, downgrades.
    pub steering: Arc<Steering>,
    /// The token budget requests reserve from, when the assembly set one.
    pub budget: OnceLock<Arc<BudgetGate>>,
}
