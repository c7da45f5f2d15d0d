//! `[routes.kill_switch]`: what a route answers while an operator has switched it off.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::ctx::Ctx;
use crate::error::{join, ConfigError};
use crate::upstream::Upstream;

/// `Retry-After` of the 503 a killed route without a fallback answers.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Content type of a static fallback that does not set one.
pub const DEFAULT_FALLBACK_CONTENT_TYPE: &str = "application/json";

/// `[routes.kill_switch]` as written.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct KillSwitchSpec {
    /// Default none: a killed route answers 503 with `Retry-After`.
    #[schemars(with = "Option<FallbackSpec>")]
    fallback: Option<Spanned<FallbackSpec>>,
    /// Default `30s`; whole seconds.
    #[schemars(with = "Option<String>")]
    retry_after: Option<Spanned<String>>,
}

/// `fallback = { ... }` as written: exactly one of `text`, `upstream`, or a static response.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct FallbackSpec {
    /// A completion in the route's dialect carrying this text. Not empty.
    #[schemars(with = "Option<String>")]
    text: Option<Spanned<String>>,
    /// Static response: `100..=599`, default 200.
    #[schemars(with = "Option<i64>")]
    status: Option<Spanned<i64>>,
    /// Static response: default `application/json`.
    #[schemars(with = "Option<String>")]
    content_type: Option<Spanned<String>>,
    /// Static response: extra headers, name (any case) to value.
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    headers: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
    /// Static response body, inline. Not with `body_file`.
    #[schemars(with = "Option<String>")]
    body: Option<Spanned<String>>,
    /// Static response body read from a file relative to the config file's directory.
    #[schemars(with = "Option<String>")]
    body_file: Option<Spanned<String>>,
    /// Another `[upstreams]` entry, not the route's own.
    #[schemars(with = "Option<String>")]
    upstream: Option<Spanned<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillSwitchConfig {
    /// `None`: a killed route answers 503 with `Retry-After`.
    pub fallback: Option<Fallback>,
    pub retry_after: Duration,
}

impl Default for KillSwitchConfig {
    fn default() -> Self {
        KillSwitchConfig {
            fallback: None,
            retry_after: DEFAULT_RETRY_AFTER,
        }
    }
}

/// What a killed route answers instead of its upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// A completion shaped like the request's dialect, carrying this text.
    Text(String),
    /// A fixed response. Header names are lower-cased and sorted; none is `content-type`.
    Static {
        status: StatusCode,
        content_type: String,
        headers: Vec<(HeaderName, HeaderValue)>,
        body: Bytes,
    },
    /// The name of another `[upstreams]` entry that serves the route's traffic instead.
    Upstream(String),
}

/// The route a kill switch belongs to.
pub(crate) struct RouteRef<'a> {
    /// `routes[i]`.
    pub(crate) key: &'a str,
    pub(crate) upstream: &'a str,
    pub(crate) line: usize,
}

const NO_FALLBACK: &str =
    "no fallback: a killed route answers 503 with Retry-After; set routes.kill_switch.fallback";

const SHAPES: &str =
    "text, upstream, or a static response (status, content_type, headers, body, body_file)";

pub(crate) fn compile_kill_switch(
    spec: Option<&Spanned<KillSwitchSpec>>,
    route: &RouteRef,
    upstreams: &BTreeMap<String, Upstream>,
    ctx: &mut Ctx,
) -> Result<KillSwitchConfig, ConfigError> {
    let key = format!("{}.kill_switch", route.key);
    let Some(spec) = spec else {
        ctx.warn_line(Some(route.line), &key, NO_FALLBACK);
        return Ok(KillSwitchConfig::default());
    };
    let s = spec.get_ref();
    let retry_after = retry_after(s.retry_after.as_ref(), &key, ctx)?;
    let fallback = match &s.fallback {
        Some(f) => Some(compile_fallback(
            f,
            &format!("{key}.fallback"),
            route,
            upstreams,
            ctx,
        )?),
        None => {
            ctx.warn(Some(&spec.span()), &key, NO_FALLBACK);
            None
        }
    };
    Ok(KillSwitchConfig {
        fallback,
        retry_after,
    })
}

/// `Retry-After` carries whole seconds, so a fraction could not be sent as written.
fn retry_after(v: Option<&Spanned<String>>, key: &str, ctx: &Ctx) -> Result<Duration, ConfigError> {
    let key = format!("{key}.retry_after");
    let d = ctx.duration(v, &key, DEFAULT_RETRY_AFTER)?;
    match v {
        Some(v) if d.subsec_nanos() != 0 => {
            let msg = format!(
                "must be whole seconds (Retry-After carries seconds), got {:?}",
                v.get_ref()
            );
            Err(ctx.at(v, &key, msg))
        }
        _ => Ok(d),
    }
}

fn compile_fallback(
    spec: &Spanned<FallbackSpec>,
    key: &str,
    route: &RouteRef,
    upstreams: &BTreeMap<String, Upstream>,
    ctx: &Ctx,
) -> Result<Fallback, ConfigError> {
    check_one_shape(spec, key, ctx)?;
    let s = spec.get_ref();
    if let Some(text) = &s.text {
        if text.get_ref().trim().is_empty() {
            return Err(ctx.at(text, &format!("{key}.text"), "must not be empty"));
        }
        return Ok(Fallback::Text(text.get_ref().clone()));
    }
    if let Some(upstream) = &s.upstream {
        let name = upstream.get_ref();
        let upstream_key = format!("{key}.upstream");
        if name == route.upstream {
            let msg = format!(
                "{name:?} is the route's own upstream; a fallback must send traffic elsewhere"
            );
            return Err(ctx.at(upstream, &upstream_key, msg));
        }
        if !upstreams.contains_key(name) {
            let msg = crate::upstream::unknown_upstream(name, upstreams);
            return Err(ctx.at(upstream, &upstream_key, msg));
        }
        return Ok(Fallback::Upstream(name.clone()));
    }
    compile_static(s, key, ctx)
}

fn check_one_shape(spec: &Spanned<FallbackSpec>, key: &str, ctx: &Ctx) -> Result<(), ConfigError> {
    let s = spec.get_ref();
    let mut given: Vec<(&str, Range<usize>)> = Vec::new();
    if let Some(v) = &s.text {
        given.push(("text", v.span()));
    }
    if let Some(v) = &s.upstream {
        given.push(("upstream", v.span()));
    }
    // The static keys count as one shape; the first of them written stands for all.
    let statics = [
        ("status", s.status.as_ref().map(Spanned::span)),
        ("content_type", s.content_type.as_ref().map(Spanned::span)),
        ("headers", s.headers.as_ref().map(Spanned::span)),
        ("body", s.body.as_ref().map(Spanned::span)),
        ("body_file", s.body_file.as_ref().map(Spanned::span)),
    ];
    let first_static = statics
        .into_iter()
        .filter_map(|(name, span)| span.map(|span| (name, span)))
        .min_by_key(|(_, span)| span.start);
    given.extend(first_static);
    // Blame the later of two conflicting keys: that is the one that made the fallback ambiguous.
    given.sort_by_key(|(_, span)| span.start);
    match given.as_slice() {
        [] => Err(ctx.err(&spec.span(), key, format!("needs one of {SHAPES}"))),
        [(first, _), (second, span), ..] => {
            let msg =
                format!("{first} and {second} are both set; a fallback is exactly one of {SHAPES}");
            Err(ctx.err(span, &format!("{key}.{second}"), msg))
        }
        [_] => Ok(()),
    }
}

fn compile_static(s: &FallbackSpec, key: &str, ctx: &Ctx) -> Result<Fallback, ConfigError> {
    let status = fallback_status(s, key, ctx)?;
    let content_type = fallback_content_type(s, key, ctx)?;
    let headers = match &s.headers {
        Some(h) => compile_headers(h.get_ref(), &format!("{key}.headers"), ctx)?,
        None => Vec::new(),
    };
    let body = fallback_body(s, key, ctx)?;
    Ok(Fallback::Static {
        status,
        content_type,
        headers,
        body,
    })
}

/// `status`: a real HTTP status, default 200.
fn fallback_status(s: &FallbackSpec, key: &str, ctx: &Ctx) -> Result<StatusCode, ConfigError> {
    let Some(v) = &s.status else {
        return Ok(StatusCode::OK);
    };
    let code = *v.get_ref();
    u16::try_from(code)
        .ok()
        .filter(|c| (100..=599).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| {
            let msg = format!("must be an HTTP status from 100 to 599, got {code}");
            ctx.at(v, &format!("{key}.status"), msg)
        })
}

/// `content_type`: trimmed, non-empty and a legal header value.
fn fallback_content_type(s: &FallbackSpec, key: &str, ctx: &Ctx) -> Result<String, ConfigError> {
    let Some(v) = &s.content_type else {
        return Ok(DEFAULT_FALLBACK_CONTENT_TYPE.to_owned());
    };
    let ct = v.get_ref().trim();
    if ct.is_empty() || HeaderValue::from_str(ct).is_err() {
        let msg = format!("invalid content type {:?}", v.get_ref());
        return Err(ctx.at(v, &format!("{key}.content_type"), msg));
    }
    Ok(ct.to_owned())
}

/// `body` or `body_file` (read now), not both; empty when neither.
fn fallback_body(s: &FallbackSpec, key: &str, ctx: &Ctx) -> Result<Bytes, ConfigError> {
    match (&s.body, &s.body_file) {
        (Some(body), Some(file)) => {
            let (span, field) = if file.span().start > body.span().start {
                (file.span(), "body_file")
            } else {
                (body.span(), "body")
            };
            let msg = "body and body_file are both set; use one";
            Err(ctx.err(&span, &format!("{key}.{field}"), msg))
        }
        (Some(body), None) => Ok(Bytes::from(body.get_ref().clone())),
        (None, Some(file)) => {
            let file_key = format!("{key}.body_file");
            let path = ctx.path(file, &file_key)?;
            let data = std::fs::read(&path).map_err(|e| {
                ctx.at(
                    file,
                    &file_key,
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            Ok(Bytes::from(data))
        }
        (None, None) => Ok(Bytes::new()),
    }
}

/// Headers the gateway sets itself (framing) or that have their own key are refused.
fn compile_headers(
    spec: &BTreeMap<Spanned<String>, Spanned<String>>,
    key: &str,
    ctx: &Ctx,
) -> Result<Vec<(HeaderName, HeaderValue)>, ConfigError> {
    let mut first_seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut headers = Vec::with_capacity(spec.len());
    for (name, value) in spec {
        let header_key = join(key, name.get_ref());
        let lower = name.get_ref().to_ascii_lowercase();
        let header = HeaderName::from_bytes(lower.as_bytes()).map_err(|_| {
            ctx.at(
                name,
                &header_key,
                format!("invalid header name {:?}", name.get_ref()),
            )
        })?;
        let refused = match header.as_str() {
            "content-type" => Some("set it with content_type"),
            "content-length" | "transfer-encoding" | "connection" => Some("the gateway sets it"),
            _ => None,
        };
        if let Some(why) = refused {
            return Err(ctx.at(
                name,
                &header_key,
                format!("header {header} is not allowed here: {why}"),
            ));
        }
        let value_ok = HeaderValue::from_str(value.get_ref()).map_err(|_| {
            ctx.at(
                value,
                &header_key,
                format!("invalid header value {:?}", value.get_ref()),
            )
        })?;
        if let Some(first) = first_seen.insert(lower, ctx.line(&name.span())) {
            let msg = format!("header {header} is set twice (first on line {first})");
            return Err(ctx.at(name, &header_key, msg));
        }
        headers.push((header, value_ok));
    }
    headers.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    Ok(headers)
}
