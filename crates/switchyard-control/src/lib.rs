//! The control plane: signals from every exchange, sliding windows, and golden-signal alerts.

pub mod alerts;
pub mod exchange;
pub mod handles;
pub mod histogram;
pub mod kill;
pub mod signals;
pub mod window;

pub use alerts::{AlertKind, Alerts, FiringAlert};
pub use exchange::{Exchange, Outcome};
pub use kill::{Flip, KillBoard, KillSwitch, Segment};
pub use signals::{RouteSignals, Signals};
