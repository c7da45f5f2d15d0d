//! The admin listener: Prometheus metrics and the admin API, never on the traffic port.

mod actions;
pub mod audit;
pub mod auth;
pub mod build;
mod change;
pub mod exposition;
mod fleet;
#[doc(hidden)]
pub mod fuzz;
mod guard;
mod kill;
mod mutation;
pub mod openapi;
mod reads;
mod reply;
mod request;
mod router;
mod server;
mod state;
mod status;
mod views;

pub use audit::{AuditEntry, AuditError, AuditLog};
pub use auth::Principal;
pub use request::MAX_BODY_BYTES;
pub use server::serve;
pub use state::{AdminParts, AdminState, ReloadOutcome, Reloader, StateError};
pub use switchyard_control::incidents::{Incident, IncidentError, Incidents};
pub use views::AlertView;
