//! Live state shared by the data path and the control plane: what every exchange records
//! (signals, windows, histograms, experiment figures, the token budget) and the boards the
//! control plane writes and the data path reads (kill switches, steering).
//!
//! Nothing here depends on the control plane: where fleet mode (Redis) takes part, it does so
//! through small interfaces implemented above ([`fleet::FleetStanding`],
//! [`budget::SharedBudget`]).

pub mod budget;
pub mod exchange;
pub mod experiment;
pub mod fleet;
pub mod handles;
pub mod histogram;
pub mod history;
pub mod kill;
pub mod otlp;
pub mod signals;
pub mod state_file;
pub mod stats;
pub mod steer;
pub mod telemetry;
pub mod tokens;
pub mod window;

pub use exchange::{Exchange, FillSource, Outcome};
pub use kill::{Flip, KillBoard, KillSwitch, Segment};
pub use signals::{RouteSignals, Signals};
