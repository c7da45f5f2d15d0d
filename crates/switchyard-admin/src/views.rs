//! Shapes shared by several answers.

pub use switchyard_control::incidents::AlertView;
use switchyard_control::FiringAlert;

pub fn alerts(firing: &[FiringAlert]) -> Vec<AlertView> {
    firing.iter().map(AlertView::from).collect()
}
