//! The control plane: signals from every exchange, sliding windows, golden-signal alerts, and
//! webhook notifications.

pub mod alerts;
pub mod budget;
pub mod clock;
pub mod controller;
pub mod exchange;
pub mod experiment;
pub mod fleet;
pub mod handles;
pub mod histogram;
pub mod history;
pub mod incidents;
pub mod kill;
pub mod notify;
pub mod otlp;
pub mod rollout;
pub mod signals;
pub mod state_file;
pub mod stats;
pub mod steer;
pub mod telemetry;
pub mod webhook;
pub mod window;

pub use alerts::{AlertKind, Alerts, FiringAlert};
pub use exchange::{Exchange, FillSource, Outcome};
pub use incidents::{Incident, IncidentError, Incidents};
pub use kill::{Flip, KillBoard, KillSwitch, Segment};
pub use notify::{Event, Notifier};
pub use signals::{RouteSignals, Signals};
pub use switchyard_config::{EventKind, Webhook};
