//! What the data path asks of fleet mode, whose Redis client lives in the control plane.

/// How the replica stands with the fleet, as `/ready` reports it.
pub trait FleetStanding: std::fmt::Debug + Send + Sync {
    /// `shared` while Redis answers, else `degraded`.
    fn mode(&self) -> &'static str;
}
