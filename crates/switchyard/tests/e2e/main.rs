//! End-to-end tests: real gateways and simulated agents on 127.0.0.1, real HTTP clients.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Real servers on real sockets: time is measured on the real clock.
#![allow(clippy::disallowed_methods)]

mod abuse;
mod abuse_flood;
mod abuse_h2;
mod abuse_upstream;
mod affinity;
mod alerts;
mod brake;
mod builtin_http1;
mod cli;
mod common;
mod ctl;
mod disk;
mod drain;
mod drills;
mod embedding;
mod experiments;
mod faults;
mod fleet;
mod fleet_budget;
mod fleet_process;
mod fleet_rollout;
mod fleet_rules;
mod limits;
mod metering;
mod notify;
mod ops;
mod proxy;
mod redis_server;
mod reload;
mod rollout;
mod rollout_ops;
mod rules;
mod sdk;
mod signing;
mod state;
mod streaming;
mod telemetry;
mod trust;
mod wire;
