//! The admin listener: Prometheus metrics and the admin API, never on the traffic port.

pub mod exposition;
mod server;
mod status;

pub use server::{serve, AdminState};
