//! Unit tests: fixed JSON in, exact text out; no server needed.

mod actions;
mod errors;
mod history;
mod json;
mod status;
mod text;

use super::text::View;

/// 2026-11-22T11:34:00Z: every fixture's "now".
pub const NOW: u64 = 1_795_347_240_000;

pub fn plain() -> View {
    View {
        now_ms: NOW,
        color: false,
    }
}

pub fn parse<T: serde::de::DeserializeOwned>(json: serde_json::Value) -> T {
    serde_json::from_value(json).unwrap()
}

/// Every line fits a phone's 80 columns.
pub fn assert_narrow(text: &str) {
    for line in text.lines() {
        assert!(line.chars().count() <= 80, "too wide: {line:?}");
    }
}
