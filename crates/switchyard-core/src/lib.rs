//! Shared vocabulary of switchyard: body and error types, per-request facts, metric names,
//! the one clock, and (feature `client`) the one outbound HTTP client.

pub mod body;
#[cfg(feature = "client")]
pub mod client;
pub mod clock;
pub mod facts;
pub mod metrics;
pub mod split;
#[cfg(feature = "client")]
pub mod tls;
pub mod trace;

/// The error type carried between layers; leaf errors are small `thiserror` types.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

pub use body::Body;
pub use facts::{ErrorClass, RequestFacts, RequestId};
pub use trace::TraceContext;
