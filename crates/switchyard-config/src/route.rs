//! `[[routes]]`: which requests go to which upstream, and how the gateway reads them.

use std::collections::BTreeMap;
use std::ops::Range;

use http::{HeaderName, HeaderValue};
use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::ctx::{is_label_name, Ctx};
use crate::error::{join, ConfigError};
use crate::kill_switch::{compile_kill_switch, KillSwitchConfig, KillSwitchSpec, RouteRef};
use crate::limits::{compile_limits, Limits, LimitsSpec};
use crate::rollout::{
    compile_experiments, compile_rollback, compile_rollout, Experiment, ExperimentSpec, Rollback,
    RollbackSpec, Rollout, RolloutSpec,
};
use crate::upstream::Upstream;

/// One `[[routes]]` table as written.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteSpec {
    /// Required, unique, `[a-z0-9_-]+`: it becomes a metric label and a URL segment.
    #[schemars(with = "String")]
    name: Spanned<String>,
    /// Default: every request (`path_prefix = "/"`, no header or host condition).
    #[serde(default, rename = "match")]
    matcher: MatchSpec,
    /// `openai`, `anthropic`, `auto` or `opaque`. Default `auto`.
    #[schemars(with = "Option<DialectSetting>")]
    dialect: Option<Spanned<DialectSetting>>,
    /// Default `["header:x-user-id", "body:user", "body:metadata.user_id", "client_ip"]`.
    #[schemars(with = "Option<Vec<String>>")]
    user_key: Option<Vec<Spanned<String>>>,
    /// Required unless `[routes.rollout]` names blue; must name an `[upstreams]` entry.
    #[schemars(with = "Option<String>")]
    upstream: Option<Spanned<String>>,
    /// Default: no fallback (a killed route answers 503), `retry_after = "30s"`.
    #[schemars(with = "Option<KillSwitchSpec>")]
    kill_switch: Option<Spanned<KillSwitchSpec>>,
    /// Default: unlimited.
    limits: Option<LimitsSpec>,
    /// Default: none; the route serves `upstream`.
    rollout: Option<RolloutSpec>,
    /// Default: the seed's triggers.
    #[schemars(with = "Option<RollbackSpec>")]
    rollback: Option<Spanned<RollbackSpec>>,
    /// Default: none.
    #[serde(default)]
    #[schemars(with = "Vec<ExperimentSpec>")]
    experiments: Vec<Spanned<ExperimentSpec>>,
}

/// `match = { ... }` as written; every condition must hold.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct MatchSpec {
    /// Default `/`.
    #[schemars(with = "Option<String>")]
    path_prefix: Option<Spanned<String>>,
    /// Default none. Header name (any case) to exact value.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    header: BTreeMap<Spanned<String>, Spanned<String>>,
    /// Default any host. Compared case-insensitively, port included when given.
    #[schemars(with = "Option<String>")]
    host: Option<Spanned<String>>,
}

/// Not `Eq`: [`Limits`] holds rates as `f64`.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub name: String,
    pub matcher: RouteMatch,
    pub dialect: DialectSetting,
    pub user_key: Vec<UserKeySource>,
    pub upstream: String,
    /// What the route answers while killed.
    pub kill_switch: KillSwitchConfig,
    /// Admission limits; [`Limits::default`] is unlimited.
    pub limits: Limits,
    /// Blue/green: `upstream` is blue.
    pub rollout: Option<Rollout>,
    pub rollback: Rollback,
    /// A/B experiments, in file order: a request joins the first whose share holds it.
    pub experiments: Vec<Experiment>,
    /// Line of the route's `[[routes]]` header.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    pub path_prefix: String,
    /// Names lower-cased; sorted by name.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Lower-cased.
    pub host: Option<String>,
}

impl Default for RouteMatch {
    fn default() -> Self {
        RouteMatch {
            path_prefix: "/".to_owned(),
            headers: Vec::new(),
            host: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
pub enum DialectSetting {
    #[serde(rename = "openai")]
    OpenAi,
    #[serde(rename = "anthropic")]
    Anthropic,
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "opaque")]
    Opaque,
}

/// Where the per-user key of a request comes from; the first source that yields a value wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserKeySource {
    Header(HeaderName),
    /// Dot path into the JSON request body, e.g. `metadata.user_id`.
    Body(String),
    ClientIp,
}

pub const DEFAULT_USER_KEY: [&str; 4] = [
    "header:x-user-id",
    "body:user",
    "body:metadata.user_id",
    "client_ip",
];

/// The default `user_key` list, compiled.
pub fn default_user_key() -> Vec<UserKeySource> {
    DEFAULT_USER_KEY
        .iter()
        .filter_map(|s| parse_user_key(s).ok())
        .collect()
}

pub(crate) fn compile_routes(
    specs: &[Spanned<RouteSpec>],
    upstreams: &BTreeMap<String, Upstream>,
    ctx: &mut Ctx,
) -> Result<Vec<Route>, ConfigError> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut routes = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let key = format!("routes[{i}]");
        let route = compile_route(spec, &key, upstreams, ctx)?;
        let name = spec.get_ref().name.get_ref();
        if let Some(first) = seen.insert(name, route.line) {
            let msg = format!("duplicate route name {name:?} (first defined on line {first})");
            return Err(ctx.at(&spec.get_ref().name, &format!("{key}.name"), msg));
        }
        for (j, experiment) in route.experiments.iter().enumerate() {
            let earlier = routes
                .iter()
                .flat_map(|r: &Route| r.experiments.iter())
                .chain(route.experiments[..j].iter())
                .find(|e| e.name == experiment.name);
            if let Some(first) = earlier {
                let msg = format!(
                    "duplicate experiment name {:?} (first defined on line {}): experiments are looked up by name",
                    experiment.name, first.line
                );
                let span = spec.get_ref().experiments[j].get_ref().name_span();
                return Err(ctx.err(&span, &format!("{key}.experiments[{j}].name"), msg));
            }
        }
        routes.push(route);
    }
    Ok(routes)
}

fn compile_route(
    spec: &Spanned<RouteSpec>,
    key: &str,
    upstreams: &BTreeMap<String, Upstream>,
    ctx: &mut Ctx,
) -> Result<Route, ConfigError> {
    let s = spec.get_ref();
    let name = s.name.get_ref();
    if !is_label_name(name) {
        let msg = format!("invalid route name {name:?}: use [a-z0-9_-]+ (it becomes a metric label and a URL segment)");
        return Err(ctx.at(&s.name, &format!("{key}.name"), msg));
    }
    let rollout = match &s.rollout {
        Some(spec) => Some(compile_rollout(spec, key, upstreams, ctx)?),
        None => None,
    };
    let upstream = route_upstream(spec, rollout.as_ref(), key, upstreams, ctx)?;
    let dialect = s.dialect.as_ref().map(|d| *d.get_ref()).unwrap_or_default();
    let user_key = match &s.user_key {
        Some(list) => compile_user_key(list, dialect, key, ctx)?,
        None => default_user_key(),
    };
    let matcher = compile_match(&s.matcher, &format!("{key}.match"), ctx)?;
    let line = ctx.line(&spec.span());
    let route = RouteRef {
        key,
        upstream,
        line,
    };
    let kill_switch = compile_kill_switch(s.kill_switch.as_ref(), &route, upstreams, ctx)?;
    let limits = compile_limits(s.limits.as_ref(), key, ctx)?;
    let rollback = compile_rollback(s.rollback.as_ref(), key, rollout.is_some(), ctx)?;
    let experiments = compile_experiments(&s.experiments, key, upstreams, ctx)?;
    Ok(Route {
        name: name.clone(),
        matcher,
        dialect,
        user_key,
        upstream: upstream.clone(),
        kill_switch,
        limits,
        rollout,
        rollback,
        experiments,
        line,
    })
}

/// `upstream`: written, or the rollout's blue; when both, they must agree; an `[upstreams]` entry.
fn route_upstream<'a>(
    spec: &'a Spanned<RouteSpec>,
    rollout: Option<&'a Rollout>,
    key: &str,
    upstreams: &BTreeMap<String, Upstream>,
    ctx: &Ctx,
) -> Result<&'a String, ConfigError> {
    let s = spec.get_ref();
    let upstream = match (&s.upstream, rollout) {
        (Some(u), Some(r)) if *u.get_ref() != r.blue => {
            let msg = format!(
                "{:?} is not the rollout's blue {:?}: a rollout replaces upstream; drop upstream or make it blue",
                u.get_ref(),
                r.blue
            );
            return Err(ctx.at(u, &format!("{key}.upstream"), msg));
        }
        (Some(u), _) => u.get_ref(),
        (None, Some(r)) => &r.blue,
        (None, None) => {
            let msg = "missing upstream: name an [upstreams] entry, or add [routes.rollout]";
            return Err(ctx.at(spec, &format!("{key}.upstream"), msg));
        }
    };
    if !upstreams.contains_key(upstream) {
        let msg = crate::upstream::unknown_upstream(upstream, upstreams);
        let span = s
            .upstream
            .as_ref()
            .map_or_else(|| spec.span(), Spanned::span);
        return Err(ctx.err(&span, &format!("{key}.upstream"), msg));
    }
    Ok(upstream)
}

fn compile_match(spec: &MatchSpec, key: &str, ctx: &Ctx) -> Result<RouteMatch, ConfigError> {
    let mut m = RouteMatch::default();
    if let Some(prefix) = &spec.path_prefix {
        let p = prefix.get_ref();
        let valid = p.starts_with('/')
            && p.parse::<http::uri::PathAndQuery>()
                .is_ok_and(|pq| pq.query().is_none());
        if !valid {
            let msg = format!(
                "invalid path_prefix {p:?}: must start with \"/\" and be a URL path without query"
            );
            return Err(ctx.at(prefix, &format!("{key}.path_prefix"), msg));
        }
        m.path_prefix = p.clone();
    }
    m.headers = compile_headers(&spec.header, &format!("{key}.header"), ctx)?;
    if let Some(host) = &spec.host {
        let h = host.get_ref().to_ascii_lowercase();
        let valid = !h.is_empty() && !h.contains('@') && h.parse::<http::uri::Authority>().is_ok();
        if !valid {
            let msg = format!(
                "invalid host {:?}: expected a host name, optionally with :port",
                host.get_ref()
            );
            return Err(ctx.at(host, &format!("{key}.host"), msg));
        }
        m.host = Some(h);
    }
    Ok(m)
}

/// Names are lower-cased, so two spellings of one header in the file would silently collide.
fn compile_headers(
    spec: &BTreeMap<Spanned<String>, Spanned<String>>,
    key: &str,
    ctx: &Ctx,
) -> Result<Vec<(HeaderName, HeaderValue)>, ConfigError> {
    let mut first_seen: BTreeMap<String, Range<usize>> = BTreeMap::new();
    let mut headers = Vec::with_capacity(spec.len());
    for (name, value) in spec {
        let header_key = join(key, name.get_ref());
        let lower = name.get_ref().to_ascii_lowercase();
        let header = HeaderName::from_bytes(lower.as_bytes()).map_err(|_| {
            let msg = format!("invalid header name {:?}", name.get_ref());
            ctx.at(name, &header_key, msg)
        })?;
        let value_ok = HeaderValue::from_str(value.get_ref()).map_err(|_| {
            let msg = format!("invalid header value {:?}", value.get_ref());
            ctx.at(value, &header_key, msg)
        })?;
        if let Some(first) = first_seen.insert(lower, name.span()) {
            let line = ctx.line(&first);
            let msg = format!("header {header} is matched twice (first on line {line})");
            return Err(ctx.at(name, &header_key, msg));
        }
        headers.push((header, value_ok));
    }
    headers.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    Ok(headers)
}

fn compile_user_key(
    list: &[Spanned<String>],
    dialect: DialectSetting,
    key: &str,
    ctx: &mut Ctx,
) -> Result<Vec<UserKeySource>, ConfigError> {
    let mut out = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let entry_key = format!("{key}.user_key[{i}]");
        let source = parse_user_key(entry.get_ref()).map_err(|m| ctx.at(entry, &entry_key, m))?;
        if dialect == DialectSetting::Opaque && matches!(source, UserKeySource::Body(_)) {
            let msg = format!(
                "{:?} never yields a user: the route's dialect is opaque, so its bodies are not parsed",
                entry.get_ref()
            );
            ctx.warn(Some(&entry.span()), &entry_key, msg);
        }
        out.push(source);
    }
    Ok(out)
}

/// One `user_key` entry: `header:NAME`, `body:dot.path` or `client_ip`.
pub fn parse_user_key(text: &str) -> Result<UserKeySource, String> {
    if text == "client_ip" {
        return Ok(UserKeySource::ClientIp);
    }
    if let Some(name) = text.strip_prefix("header:") {
        return HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
            .map(UserKeySource::Header)
            .map_err(|_| format!("invalid header name {name:?} in user_key {text:?}"));
    }
    if let Some(path) = text.strip_prefix("body:") {
        if path.is_empty() || path.split('.').any(str::is_empty) {
            return Err(format!(
                "invalid body path {path:?} in user_key {text:?}: use dot-separated field names like metadata.user_id"
            ));
        }
        return Ok(UserKeySource::Body(path.to_owned()));
    }
    Err(format!(
        "unknown user_key source {text:?} (expected \"header:NAME\", \"body:dot.path\" or \"client_ip\")"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_key_sources() {
        assert_eq!(parse_user_key("client_ip"), Ok(UserKeySource::ClientIp));
        assert_eq!(
            parse_user_key("header:X-User-Id"),
            Ok(UserKeySource::Header(HeaderName::from_static("x-user-id")))
        );
        assert_eq!(
            parse_user_key("body:metadata.user_id"),
            Ok(UserKeySource::Body("metadata.user_id".into()))
        );
        for bad in [
            "cookie:x",
            "header:",
            "header:bad name",
            "body:",
            "body:a..b",
            "body:.a",
            "ip",
        ] {
            assert!(parse_user_key(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn default_user_key_compiles_completely() {
        assert_eq!(default_user_key().len(), DEFAULT_USER_KEY.len());
    }
}
