//! The admin API over real HTTP: authentication, kill switches, reloads, incidents, audit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod auth;
mod common;
mod guard;
mod incidents;
mod kill;
mod reload;
mod status;
