//! `[budgets]` enforcement: admission against the daily token budget, by reservation.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::ctx::Ctx;
use crate::error::ConfigError;

/// `[budgets]` as written.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BudgetsSpec {
    /// Default none (no budget). > 0.
    #[schemars(with = "Option<u64>")]
    pub(crate) daily_tokens: Option<Spanned<u64>>,
    /// Fraction of the budget that raises an alert, `0..=1`. Default 0.8.
    #[schemars(with = "Option<f64>")]
    pub(crate) alert_at: Option<Spanned<f64>>,
    /// When the budget day starts, `"HH:MM"` in UTC. Default `"00:00"`.
    #[schemars(with = "Option<String>")]
    pub(crate) reset_at: Option<Spanned<String>>,
    /// Refuse requests (429 `budget_exhausted`) once the day's budget is used or reserved.
    /// Default false: the budget only counts and raises its alert.
    #[schemars(with = "Option<bool>")]
    pub(crate) enforce: Option<Spanned<bool>>,
    /// Completion tokens reserved for a request that names no `max_tokens`. Default 4096.
    #[schemars(with = "Option<u64>")]
    pub(crate) reserve_max_tokens: Option<Spanned<u64>>,
    /// How long a reservation of a request that never settles is held. Default `10m`.
    #[schemars(with = "Option<String>")]
    pub(crate) reservation_ttl: Option<Spanned<String>>,
    /// Fleet mode: tokens a replica reserves from Redis at a time and admits from locally.
    /// Default none: exact mode, one Redis round trip per admission.
    #[schemars(with = "Option<u64>")]
    pub(crate) lease_tokens: Option<Spanned<u64>>,
    /// Fleet mode, Redis out of reach: `fail_closed`, `local_share` or `fail_open`.
    /// Default `local_share`.
    #[schemars(with = "Option<String>")]
    pub(crate) outage_policy: Option<Spanned<String>>,
    /// Consecutive failed Redis budget calls that open the circuit breaker. Default 3.
    #[schemars(with = "Option<u64>")]
    pub(crate) breaker_failures: Option<Spanned<u64>>,
    /// How long the open breaker waits before one probe call. Default `1s`.
    #[schemars(with = "Option<String>")]
    pub(crate) breaker_cooldown: Option<Spanned<String>>,
}

/// What a fleet replica does with the budget while Redis is out of reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutagePolicy {
    /// Refuse every request that needs the budget (503 `budget_unavailable`).
    FailClosed,
    /// Each live replica may spend the remaining budget divided by the members last seen.
    #[default]
    LocalShare,
    /// Admit everything; the tokens are counted and settled into Redis when it is back.
    FailOpen,
}

impl OutagePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            OutagePolicy::FailClosed => "fail_closed",
            OutagePolicy::LocalShare => "local_share",
            OutagePolicy::FailOpen => "fail_open",
        }
    }
}

/// Default `reserve_max_tokens`.
pub const DEFAULT_RESERVE_MAX_TOKENS: u64 = 4096;
/// Default `reservation_ttl`.
pub const DEFAULT_RESERVATION_TTL: Duration = Duration::from_secs(600);
/// Default `breaker_failures`.
pub const DEFAULT_BREAKER_FAILURES: u32 = 3;
/// Default `breaker_cooldown`.
pub const DEFAULT_BREAKER_COOLDOWN: Duration = Duration::from_secs(1);

/// How requests are admitted against `daily_tokens`.
#[derive(Debug, Clone, PartialEq)]
pub struct Enforcement {
    /// Refuse admission once used + reserved + the request's estimate would pass the budget.
    pub enforce: bool,
    pub reserve_max_tokens: u64,
    pub reservation_ttl: Duration,
    /// Fleet mode: tokens reserved from Redis at a time; `None` is exact mode.
    pub lease_tokens: Option<u64>,
    pub outage_policy: OutagePolicy,
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
}

impl Default for Enforcement {
    fn default() -> Self {
        Enforcement {
            enforce: false,
            reserve_max_tokens: DEFAULT_RESERVE_MAX_TOKENS,
            reservation_ttl: DEFAULT_RESERVATION_TTL,
            lease_tokens: None,
            outage_policy: OutagePolicy::default(),
            breaker_failures: DEFAULT_BREAKER_FAILURES,
            breaker_cooldown: DEFAULT_BREAKER_COOLDOWN,
        }
    }
}

fn outage_policy(spec: &BudgetsSpec, ctx: &Ctx) -> Result<OutagePolicy, ConfigError> {
    let Some(v) = &spec.outage_policy else {
        return Ok(OutagePolicy::default());
    };
    match v.get_ref().as_str() {
        "fail_closed" => Ok(OutagePolicy::FailClosed),
        "local_share" => Ok(OutagePolicy::LocalShare),
        "fail_open" => Ok(OutagePolicy::FailOpen),
        other => Err(ctx.at(
            v,
            "budgets.outage_policy",
            format!("unknown policy {other:?} (known: fail_closed, local_share, fail_open)"),
        )),
    }
}

pub(crate) fn compile(
    spec: &BudgetsSpec,
    daily_tokens: Option<u64>,
    ctx: &mut Ctx,
) -> Result<Enforcement, ConfigError> {
    let d = Enforcement::default();
    let enforce = spec.enforce.as_ref().is_some_and(|v| *v.get_ref());
    if let (true, None, Some(v)) = (enforce, daily_tokens, &spec.enforce) {
        let msg = "needs budgets.daily_tokens (the budget to enforce)";
        return Err(ctx.at(v, "budgets.enforce", msg));
    }
    let reserve_max_tokens = ctx.positive(
        spec.reserve_max_tokens.as_ref(),
        "budgets.reserve_max_tokens",
        d.reserve_max_tokens,
    )?;
    let reservation_ttl = ctx.duration(
        spec.reservation_ttl.as_ref(),
        "budgets.reservation_ttl",
        d.reservation_ttl,
    )?;
    let lease_tokens = match &spec.lease_tokens {
        None => None,
        Some(v) => {
            let n = ctx.positive(Some(v), "budgets.lease_tokens", 0)?;
            if daily_tokens.is_some_and(|budget| n > budget) {
                let msg = format!("{n} is more than budgets.daily_tokens; a lease is a part of it");
                return Err(ctx.at(v, "budgets.lease_tokens", msg));
            }
            Some(n)
        }
    };
    let breaker_failures = ctx.positive(
        spec.breaker_failures.as_ref(),
        "budgets.breaker_failures",
        u64::from(d.breaker_failures),
    )?;
    let breaker_failures = u32::try_from(breaker_failures).map_err(|_| {
        let span = spec.breaker_failures.as_ref().map(|v| v.span());
        ctx.err(
            &span.unwrap_or(0..0),
            "budgets.breaker_failures",
            "is too large",
        )
    })?;
    let breaker_cooldown = ctx.duration(
        spec.breaker_cooldown.as_ref(),
        "budgets.breaker_cooldown",
        d.breaker_cooldown,
    )?;
    Ok(Enforcement {
        enforce,
        reserve_max_tokens,
        reservation_ttl,
        lease_tokens,
        outage_policy: outage_policy(spec, ctx)?,
        breaker_failures,
        breaker_cooldown,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::Config;

    fn parse(budgets: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("[budgets]\n{budgets}"), "t.toml", Path::new("."))
    }

    #[test]
    fn enforcement_is_off_by_default_and_defaults_apply() {
        let c = parse("daily_tokens = 100\n").unwrap();
        assert_eq!(c.budgets.enforcement, Enforcement::default());
        assert!(!c.budgets.enforcement.enforce);
        let c = parse(
            "daily_tokens = 100\nenforce = true\nlease_tokens = 10\noutage_policy = \"fail_closed\"\n\
             reserve_max_tokens = 50\nreservation_ttl = \"30s\"\nbreaker_failures = 2\nbreaker_cooldown = \"250ms\"\n",
        )
        .unwrap();
        let e = c.budgets.enforcement;
        assert!(e.enforce);
        assert_eq!(e.lease_tokens, Some(10));
        assert_eq!(e.outage_policy, OutagePolicy::FailClosed);
        assert_eq!(e.reserve_max_tokens, 50);
        assert_eq!(e.reservation_ttl, Duration::from_secs(30));
        assert_eq!(e.breaker_failures, 2);
        assert_eq!(e.breaker_cooldown, Duration::from_millis(250));
    }

    #[test]
    fn bad_values_name_the_key_and_line() {
        let cases = [
            (
                "enforce = true\n",
                "budgets.enforce",
                2,
                "needs budgets.daily_tokens",
            ),
            (
                "daily_tokens = 10\noutage_policy = \"ignore\"\n",
                "budgets.outage_policy",
                3,
                "unknown policy",
            ),
            (
                "daily_tokens = 10\nlease_tokens = 11\n",
                "budgets.lease_tokens",
                3,
                "more than",
            ),
            (
                "daily_tokens = 10\nlease_tokens = 0\n",
                "budgets.lease_tokens",
                3,
                "greater than 0",
            ),
            (
                "daily_tokens = 10\nreserve_max_tokens = 0\n",
                "budgets.reserve_max_tokens",
                3,
                "greater than 0",
            ),
            (
                "daily_tokens = 10\nreservation_ttl = \"0s\"\n",
                "budgets.reservation_ttl",
                3,
                "greater than 0s",
            ),
            (
                "daily_tokens = 10\nbreaker_failures = 0\n",
                "budgets.breaker_failures",
                3,
                "greater than 0",
            ),
            (
                "daily_tokens = 10\nbreaker_cooldown = \"soon\"\n",
                "budgets.breaker_cooldown",
                3,
                "invalid duration",
            ),
        ];
        for (text, key, line, message) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!((e.key.as_str(), e.line), (key, Some(line)), "{text}");
            assert!(e.message.contains(message), "{text}: {}", e.message);
        }
    }
}
