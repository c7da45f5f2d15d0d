//! `[routes.limits]`: how much of a route's traffic is admitted to its upstream.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::ctx::Ctx;
use crate::error::ConfigError;

/// Longest wait in a route's queue when `queue_timeout` is not set.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// `[routes.limits]` as written. Every key is optional; absent means unlimited.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsSpec {
    /// > 0. Requests in flight to the upstream at once.
    #[schemars(with = "Option<i64>")]
    max_concurrency: Option<Spanned<i64>>,
    /// >= 0, default 0. Requests waiting for a slot; needs `max_concurrency`.
    #[schemars(with = "Option<i64>")]
    max_queue: Option<Spanned<i64>>,
    /// > 0, default `5s`. Longest wait in the queue; needs `max_concurrency`.
    #[schemars(with = "Option<String>")]
    queue_timeout: Option<Spanned<String>>,
    /// > 0. Route-wide admitted requests per second.
    #[schemars(with = "Option<f64>")]
    requests_per_second: Option<Spanned<f64>>,
    /// > 0. Admitted requests per second per user key.
    #[schemars(with = "Option<f64>")]
    user_requests_per_second: Option<Spanned<f64>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// `None`: unlimited.
    pub max_concurrency: Option<usize>,
    /// Waiting requests beyond `max_concurrency`; 0 = no queue, excess is refused at once.
    pub max_queue: usize,
    pub queue_timeout: Duration,
    /// `None`: unlimited.
    pub requests_per_second: Option<f64>,
    /// `None`: unlimited.
    pub user_requests_per_second: Option<f64>,
}

/// Everything unlimited.
impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_concurrency: None,
            max_queue: 0,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            requests_per_second: None,
            user_requests_per_second: None,
        }
    }
}

/// `route_key` is `routes[i]`.
pub(crate) fn compile_limits(
    spec: Option<&LimitsSpec>,
    route_key: &str,
    ctx: &mut Ctx,
) -> Result<Limits, ConfigError> {
    let d = Limits::default();
    let Some(s) = spec else { return Ok(d) };
    let key = format!("{route_key}.limits");
    let max_concurrency = match &s.max_concurrency {
        Some(v) => Some(count(v, &format!("{key}.max_concurrency"), 1, ctx)?),
        None => None,
    };
    if max_concurrency.is_none() {
        no_queue_without_concurrency(s, &key, ctx)?;
    }
    let max_queue = match &s.max_queue {
        Some(v) => count(v, &format!("{key}.max_queue"), 0, ctx)?,
        None => d.max_queue,
    };
    let queue_timeout = ctx.duration(
        s.queue_timeout.as_ref(),
        &format!("{key}.queue_timeout"),
        d.queue_timeout,
    )?;
    if let (0, Some(v)) = (max_queue, &s.queue_timeout) {
        let msg = "has no effect while max_queue is 0: nothing waits, excess requests are refused at once";
        ctx.warn(Some(&v.span()), &format!("{key}.queue_timeout"), msg);
    }
    let rps = rate(
        s.requests_per_second.as_ref(),
        &key,
        "requests_per_second",
        ctx,
    )?;
    let user_rps = rate(
        s.user_requests_per_second.as_ref(),
        &key,
        "user_requests_per_second",
        ctx,
    )?;
    if let (Some(route), Some(user), Some(v)) = (rps, user_rps, &s.user_requests_per_second) {
        if user > route {
            warn_user_rate_above_route(v, user, route, &key, ctx);
        }
    }
    Ok(Limits {
        max_concurrency,
        max_queue,
        queue_timeout,
        requests_per_second: rps,
        user_requests_per_second: user_rps,
    })
}

/// Requests only queue for a concurrency slot: `max_queue` and `queue_timeout` without
/// `max_concurrency` are an error, reported at the first of them in the file.
fn no_queue_without_concurrency(s: &LimitsSpec, key: &str, ctx: &Ctx) -> Result<(), ConfigError> {
    let orphans = [
        ("max_queue", s.max_queue.as_ref().map(Spanned::span)),
        ("queue_timeout", s.queue_timeout.as_ref().map(Spanned::span)),
    ];
    let first = orphans
        .into_iter()
        .filter_map(|(name, span)| span.map(|span| (name, span)))
        .min_by_key(|(_, span)| span.start);
    match first {
        Some((name, span)) => {
            let msg =
                format!("{name} needs max_concurrency: requests only queue for a concurrency slot");
            Err(ctx.err(&span, &format!("{key}.{name}"), msg))
        }
        None => Ok(()),
    }
}

/// A per-user rate above the route's rate is legal but can never bind.
fn warn_user_rate_above_route(v: &Spanned<f64>, user: f64, route: f64, key: &str, ctx: &mut Ctx) {
    let msg = format!("{user} is above requests_per_second ({route}); one user can never reach it");
    ctx.warn(
        Some(&v.span()),
        &format!("{key}.user_requests_per_second"),
        msg,
    );
}

/// An integer count of at least `min` (0 or 1) that fits this platform's `usize`.
fn count(v: &Spanned<i64>, key: &str, min: i64, ctx: &Ctx) -> Result<usize, ConfigError> {
    let n = *v.get_ref();
    if n < min {
        let msg = if min > 0 {
            format!("must be greater than 0, got {n}")
        } else {
            format!("must not be negative, got {n}")
        };
        return Err(ctx.at(v, key, msg));
    }
    usize::try_from(n).map_err(|_| ctx.at(v, key, "too large for this platform"))
}

fn rate(
    v: Option<&Spanned<f64>>,
    key: &str,
    field: &str,
    ctx: &Ctx,
) -> Result<Option<f64>, ConfigError> {
    let Some(v) = v else { return Ok(None) };
    let x = *v.get_ref();
    if x.is_finite() && x > 0.0 {
        Ok(Some(x))
    } else {
        let msg = format!("must be a finite number greater than 0, got {x}");
        Err(ctx.at(v, &format!("{key}.{field}"), msg))
    }
}
