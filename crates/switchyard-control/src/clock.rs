//! Time, read through the one clock module of the workspace.

pub use switchyard_core::clock::*;
