//! The control plane: signals from every exchange, sliding windows, golden-signal alerts, and
//! webhook notifications.
//!
//! The state both planes share lives in `switchyard-state`; its modules are re-exported here
//! under their old paths.

pub mod alerts;
pub mod clock;
pub mod controller;
pub mod event;
pub mod fleet;
pub mod incidents;
pub mod notify;
pub mod rollout;
pub mod webhook;

pub use switchyard_state::{
    budget, exchange, experiment, handles, histogram, history, kill, otlp, signals, state_file,
    stats, steer, telemetry, window,
};

pub use alerts::{AlertKind, Alerts, FiringAlert};
pub use incidents::{Incident, IncidentError, Incidents};
pub use notify::{Event, Notifier};
pub use switchyard_config::{EventKind, Webhook};
pub use switchyard_state::{Exchange, FillSource, Outcome};
pub use switchyard_state::{Flip, KillBoard, KillSwitch, Segment};
pub use switchyard_state::{RouteSignals, Signals};
