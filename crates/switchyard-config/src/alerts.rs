//! `[alerts]` thresholds and the `[budgets]` token budget.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::budgets::BudgetsSpec;
use crate::ctx::Ctx;
use crate::error::ConfigError;

/// `[alerts]` as written.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertsSpec {
    /// Default `30s`.
    #[schemars(with = "Option<String>")]
    p99_latency: Option<Spanned<String>>,
    /// Fraction of failed requests in the window, `0..=1`. Default 0.01.
    #[schemars(with = "Option<f64>")]
    error_rate: Option<Spanned<f64>>,
    /// Evaluation window. Default `5m`.
    #[schemars(with = "Option<String>")]
    window: Option<Spanned<String>>,
    /// Window rate over baseline rate, > 1. Default 3.0.
    #[schemars(with = "Option<f64>")]
    traffic_spike: Option<Spanned<f64>>,
    /// Trailing baseline window for `traffic_spike`. Default `1h`.
    #[schemars(with = "Option<String>")]
    baseline: Option<Spanned<String>>,
    /// Requests an error-rate or latency alert needs in the window. Default 20.
    min_requests: Option<u64>,
    /// Default 500.
    queue_depth: Option<u64>,
    /// Fraction of a model's context window a request fills, `0..=1`. Default 0.8.
    #[schemars(with = "Option<f64>")]
    context_fill: Option<Spanned<f64>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Alerts {
    pub p99_latency: Duration,
    pub error_rate: f64,
    pub window: Duration,
    pub traffic_spike: f64,
    pub baseline: Duration,
    pub min_requests: u64,
    pub queue_depth: u64,
    pub context_fill: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Budgets {
    pub daily_tokens: Option<u64>,
    pub alert_at: f64,
    /// When the budget day starts: this long after midnight UTC (whole minutes, under 24 h).
    pub reset_at: Duration,
    /// How requests are admitted against the budget (off by default).
    pub enforcement: crate::budgets::Enforcement,
}

impl Default for Alerts {
    fn default() -> Self {
        Alerts {
            p99_latency: Duration::from_secs(30),
            error_rate: 0.01,
            window: Duration::from_secs(5 * 60),
            traffic_spike: 3.0,
            baseline: Duration::from_secs(60 * 60),
            min_requests: 20,
            queue_depth: 500,
            context_fill: 0.8,
        }
    }
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            daily_tokens: None,
            alert_at: 0.8,
            reset_at: Duration::ZERO,
            enforcement: crate::budgets::Enforcement::default(),
        }
    }
}

pub(crate) fn compile_alerts(spec: &AlertsSpec, ctx: &mut Ctx) -> Result<Alerts, ConfigError> {
    let d = Alerts::default();
    let traffic_spike = match &spec.traffic_spike {
        Some(v) if !(v.get_ref().is_finite() && *v.get_ref() > 1.0) => {
            let msg = format!("must be a ratio greater than 1, got {}", v.get_ref());
            return Err(ctx.at(v, "alerts.traffic_spike", msg));
        }
        Some(v) => *v.get_ref(),
        None => d.traffic_spike,
    };
    let alerts = Alerts {
        p99_latency: ctx.duration(
            spec.p99_latency.as_ref(),
            "alerts.p99_latency",
            d.p99_latency,
        )?,
        error_rate: ctx.fraction(spec.error_rate.as_ref(), "alerts.error_rate", d.error_rate)?,
        window: ctx.duration(spec.window.as_ref(), "alerts.window", d.window)?,
        traffic_spike,
        baseline: ctx.duration(spec.baseline.as_ref(), "alerts.baseline", d.baseline)?,
        min_requests: spec.min_requests.unwrap_or(d.min_requests),
        queue_depth: spec.queue_depth.unwrap_or(d.queue_depth),
        context_fill: ctx.fraction(
            spec.context_fill.as_ref(),
            "alerts.context_fill",
            d.context_fill,
        )?,
    };
    if alerts.baseline <= alerts.window {
        // Legal, but a spike is measured against the baseline, so a baseline no longer than the
        // window compares the window mostly with itself.
        let (span, key) = match (&spec.baseline, &spec.window) {
            (Some(b), _) => (Some(b.span()), "alerts.baseline"),
            (None, Some(w)) => (Some(w.span()), "alerts.window"),
            (None, None) => (None, "alerts.baseline"),
        };
        let msg = format!(
            "baseline ({:?}) is not longer than window ({:?}); traffic_spike will rarely fire",
            alerts.baseline, alerts.window
        );
        ctx.warn(span.as_ref(), key, msg);
    }
    Ok(alerts)
}

pub(crate) fn compile_budgets(spec: &BudgetsSpec, ctx: &mut Ctx) -> Result<Budgets, ConfigError> {
    let d = Budgets::default();
    let daily_tokens = match &spec.daily_tokens {
        Some(v) => Some(ctx.positive(Some(v), "budgets.daily_tokens", 0)?),
        None => None,
    };
    let alert_at = ctx.fraction(spec.alert_at.as_ref(), "budgets.alert_at", d.alert_at)?;
    if let (None, Some(at)) = (daily_tokens, &spec.alert_at) {
        let msg = "has no effect without budgets.daily_tokens";
        ctx.warn(Some(&at.span()), "budgets.alert_at", msg);
    }
    let reset_at = match &spec.reset_at {
        Some(v) => {
            parse_time_of_day(v.get_ref()).map_err(|msg| ctx.at(v, "budgets.reset_at", msg))?
        }
        None => d.reset_at,
    };
    let enforcement = crate::budgets::compile(spec, daily_tokens, ctx)?;
    Ok(Budgets {
        daily_tokens,
        alert_at,
        reset_at,
        enforcement,
    })
}

/// `"HH:MM"` (24-hour clock, UTC) as the time since midnight.
fn parse_time_of_day(text: &str) -> Result<Duration, String> {
    let bad =
        || format!("invalid time of day {text:?}: expected \"HH:MM\" in UTC, such as \"06:00\"");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(h) || !two_digits(m) {
        return Err(bad());
    }
    let (h, m): (u64, u64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(Duration::from_secs(h * 3600 + m * 60))
}
