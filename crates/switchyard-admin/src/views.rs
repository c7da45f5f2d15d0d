//! Shapes shared by several answers.

use serde::{Deserialize, Serialize};
use switchyard_control::FiringAlert;

/// A firing alert as status and incidents show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertView {
    pub alert: String,
    pub route: String,
    pub value: f64,
    pub threshold: f64,
    pub since: u64,
}

impl From<&FiringAlert> for AlertView {
    fn from(a: &FiringAlert) -> Self {
        AlertView {
            alert: a.kind.as_str().to_owned(),
            route: a.route.clone(),
            value: a.value,
            threshold: a.threshold,
            since: a.since,
        }
    }
}

pub fn alerts(firing: &[FiringAlert]) -> Vec<AlertView> {
    firing.iter().map(AlertView::from).collect()
}
