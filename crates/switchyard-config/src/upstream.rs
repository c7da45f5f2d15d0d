//! `[upstreams.name]`: where routes send traffic (one URL, a pool of endpoints, or the simulator).

use std::collections::BTreeMap;
use std::time::Duration;

use http::Uri;
use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::ctx::Ctx;
use crate::error::{join, ConfigError};

/// One `[upstreams.name]` table as written. Exactly one of `url`, `endpoints`, `sim`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpstreamSpec {
    /// One endpoint: `http` or `https`, scheme + authority, optional path prefix (kept).
    #[schemars(with = "Option<String>")]
    url: Option<Spanned<String>>,
    /// A non-empty pool; each entry validated like `url`.
    #[schemars(with = "Option<Vec<String>>")]
    endpoints: Option<Spanned<Vec<Spanned<String>>>>,
    /// The simulated agent embedded in the gateway.
    #[schemars(with = "Option<SimSpec>")]
    sim: Option<Spanned<SimSpec>>,
    /// Default `5s`.
    #[schemars(with = "Option<String>")]
    connect_timeout: Option<Spanned<String>>,
    /// Consecutive failures (connect errors, 5xx, failed probes) that eject an endpoint.
    #[schemars(with = "Option<u64>")]
    unhealthy_after: Option<Spanned<u64>>,
    /// How long an ejected endpoint stays out before it is tried again.
    #[schemars(with = "Option<String>")]
    eject_for: Option<Spanned<String>>,
    /// The active probe; none by default.
    #[schemars(with = "Option<HealthCheckSpec>")]
    health_check: Option<Spanned<HealthCheckSpec>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct HealthCheckSpec {
    /// Required. Joined to each endpoint's URL like a client's path.
    #[schemars(with = "String")]
    path: Spanned<String>,
    /// Default `5s`.
    #[schemars(with = "Option<String>")]
    interval: Option<Spanned<String>>,
    /// Default `1s`; at most `interval`.
    #[schemars(with = "Option<String>")]
    timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SimSpec {
    /// Required. Which behaviour to simulate; the simulator validates the name.
    #[schemars(with = "String")]
    profile: Spanned<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub name: String,
    pub target: UpstreamTarget,
    pub connect_timeout: Duration,
    /// Consecutive failures that eject an endpoint from the pool.
    pub unhealthy_after: u32,
    /// How long an ejected endpoint stays out before one request or probe may try it again.
    pub eject_for: Duration,
    pub health_check: Option<HealthCheck>,
    /// Line of the upstream's table, for messages about it at runtime.
    pub line: usize,
}

/// `health_check = { path, interval, timeout }`: a GET to every endpoint each interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Starts with `/`; may carry a query.
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamTarget {
    /// Real HTTP endpoints; `url = ...` is a pool of one.
    Endpoints(Vec<Uri>),
    /// The embedded simulator; `profile` is checked by the simulator, not here.
    Sim { profile: String },
}

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_UNHEALTHY_AFTER: u32 = 3;
pub const DEFAULT_EJECT_FOR: Duration = Duration::from_secs(10);
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

pub(crate) type UpstreamSpecs = BTreeMap<Spanned<String>, Spanned<UpstreamSpec>>;

pub(crate) fn compile_upstreams(
    specs: &UpstreamSpecs,
    ctx: &Ctx,
) -> Result<BTreeMap<String, Upstream>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, spec) in specs {
        if name.get_ref().is_empty() {
            return Err(ctx.at(name, "upstreams", "an upstream name must not be empty"));
        }
        let key = join("upstreams", name.get_ref());
        let s = spec.get_ref();
        let upstream = Upstream {
            name: name.get_ref().clone(),
            target: compile_target(spec, &key, ctx)?,
            connect_timeout: ctx.duration(
                s.connect_timeout.as_ref(),
                &format!("{key}.connect_timeout"),
                DEFAULT_CONNECT_TIMEOUT,
            )?,
            unhealthy_after: unhealthy_after(s.unhealthy_after.as_ref(), &key, ctx)?,
            eject_for: ctx.duration(
                s.eject_for.as_ref(),
                &format!("{key}.eject_for"),
                DEFAULT_EJECT_FOR,
            )?,
            health_check: match &s.health_check {
                Some(check) => Some(compile_health_check(check, &key, ctx)?),
                None => None,
            },
            line: ctx.line(&spec.span()),
        };
        out.insert(name.get_ref().clone(), upstream);
    }
    Ok(out)
}

fn unhealthy_after(v: Option<&Spanned<u64>>, key: &str, ctx: &Ctx) -> Result<u32, ConfigError> {
    let key = format!("{key}.unhealthy_after");
    let n = ctx.positive(v, &key, u64::from(DEFAULT_UNHEALTHY_AFTER))?;
    match (u32::try_from(n), v) {
        (Ok(n), _) => Ok(n),
        (Err(_), Some(v)) => Err(ctx.at(v, &key, format!("must be at most {}", u32::MAX))),
        // The default always fits; this arm only keeps the match total.
        (Err(_), None) => Ok(DEFAULT_UNHEALTHY_AFTER),
    }
}

fn compile_health_check(
    spec: &Spanned<HealthCheckSpec>,
    key: &str,
    ctx: &Ctx,
) -> Result<HealthCheck, ConfigError> {
    let key = format!("{key}.health_check");
    let s = spec.get_ref();
    let path = s.path.get_ref();
    if !path.starts_with('/') || path.parse::<http::uri::PathAndQuery>().is_err() {
        let msg = format!("invalid path {path:?}: expected an absolute path such as \"/health\"");
        return Err(ctx.at(&s.path, &format!("{key}.path"), msg));
    }
    let interval = ctx.duration(
        s.interval.as_ref(),
        &format!("{key}.interval"),
        DEFAULT_HEALTH_INTERVAL,
    )?;
    let timeout_key = format!("{key}.timeout");
    let timeout = ctx.duration(s.timeout.as_ref(), &timeout_key, DEFAULT_HEALTH_TIMEOUT)?;
    // A probe still running when the next one is due would pile up on a stuck endpoint.
    if timeout > interval {
        let span = s
            .timeout
            .as_ref()
            .map_or_else(|| spec.span(), Spanned::span);
        let msg = format!("must not exceed the interval ({interval:?}), got {timeout:?}");
        return Err(ctx.err(&span, &timeout_key, msg));
    }
    Ok(HealthCheck {
        path: path.clone(),
        interval,
        timeout,
    })
}

fn compile_target(
    spec: &Spanned<UpstreamSpec>,
    key: &str,
    ctx: &Ctx,
) -> Result<UpstreamTarget, ConfigError> {
    check_exactly_one(spec, key, ctx)?;
    let s = spec.get_ref();
    match (&s.url, &s.endpoints, &s.sim) {
        (Some(url), _, _) => {
            let uri =
                parse_endpoint(url.get_ref()).map_err(|m| ctx.at(url, &format!("{key}.url"), m))?;
            Ok(UpstreamTarget::Endpoints(vec![uri]))
        }
        (_, Some(list), _) => compile_endpoints(list, &format!("{key}.endpoints"), ctx),
        (_, _, Some(sim)) => {
            let profile = &sim.get_ref().profile;
            if profile.get_ref().trim().is_empty() {
                return Err(ctx.at(profile, &format!("{key}.sim.profile"), "must not be empty"));
            }
            Ok(UpstreamTarget::Sim {
                profile: profile.get_ref().clone(),
            })
        }
        (None, None, None) => Err(ctx.err(&spec.span(), key, EXACTLY_ONE)),
    }
}

const EXACTLY_ONE: &str = "needs exactly one of url, endpoints or sim";

fn check_exactly_one(
    spec: &Spanned<UpstreamSpec>,
    key: &str,
    ctx: &Ctx,
) -> Result<(), ConfigError> {
    let s = spec.get_ref();
    let mut given = Vec::new();
    if let Some(v) = &s.url {
        given.push(("url", v.span()));
    }
    if let Some(v) = &s.endpoints {
        given.push(("endpoints", v.span()));
    }
    if let Some(v) = &s.sim {
        given.push(("sim", v.span()));
    }
    // Blame the later of two conflicting keys: that is the line that made the table ambiguous.
    given.sort_by_key(|(_, span)| span.start);
    match given.as_slice() {
        [] => Err(ctx.err(&spec.span(), key, EXACTLY_ONE)),
        [(first, _), (second, span), ..] => {
            let msg = format!(
                "{first} and {second} are both set; use exactly one of url, endpoints or sim"
            );
            Err(ctx.err(span, &format!("{key}.{second}"), msg))
        }
        [_] => Ok(()),
    }
}

fn compile_endpoints(
    list: &Spanned<Vec<Spanned<String>>>,
    key: &str,
    ctx: &Ctx,
) -> Result<UpstreamTarget, ConfigError> {
    if list.get_ref().is_empty() {
        return Err(ctx.at(list, key, "must list at least one endpoint"));
    }
    let mut uris = Vec::with_capacity(list.get_ref().len());
    for (i, url) in list.get_ref().iter().enumerate() {
        let uri =
            parse_endpoint(url.get_ref()).map_err(|m| ctx.at(url, &format!("{key}[{i}]"), m))?;
        uris.push(uri);
    }
    Ok(UpstreamTarget::Endpoints(uris))
}

/// An upstream base URL: `http`/`https`, with a host, optionally a path prefix; nothing else.
pub fn parse_endpoint(text: &str) -> Result<Uri, String> {
    let uri: Uri = text
        .parse()
        .map_err(|e| format!("invalid URL {text:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => {
            return Err(format!(
                "unsupported scheme {other:?} in {text:?}: use http or https"
            ))
        }
        None => return Err(format!("URL {text:?} needs a scheme: http:// or https://")),
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("URL {text:?} needs a host"));
    };
    if authority.host().is_empty() {
        return Err(format!("URL {text:?} needs a host"));
    }
    // Credentials in a URL end up in logs and metrics labels; headers are the place for them.
    if authority.as_str().contains('@') {
        return Err(format!("URL {text:?} must not contain user info"));
    }
    if uri.query().is_some() {
        return Err(format!(
            "URL {text:?} must not have a query string (only a path prefix)"
        ));
    }
    Ok(uri)
}

/// The error for a name that is not an `[upstreams]` entry, listing the ones that are.
pub(crate) fn unknown_upstream(name: &str, upstreams: &BTreeMap<String, Upstream>) -> String {
    if upstreams.is_empty() {
        return format!("unknown upstream {name:?} (no [upstreams] are defined)");
    }
    let known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
    format!("unknown upstream {name:?} (known: {})", known.join(", "))
}

#[cfg(test)]
mod tests;
