//! Signals, alerts and the control loop.
