//! `[upstreams.name]`: where routes send traffic (one URL, a pool of endpoints, or the simulator).

use std::collections::BTreeMap;
use std::time::Duration;

use http::Uri;
use serde::Deserialize;
use toml::Spanned;

use crate::ctx::Ctx;
use crate::error::{join, ConfigError};

/// One `[upstreams.name]` table as written. Exactly one of `url`, `endpoints`, `sim`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpstreamSpec {
    /// One endpoint: `http` or `https`, scheme + authority, optional path prefix (kept).
    url: Option<Spanned<String>>,
    /// A non-empty pool; each entry validated like `url`.
    endpoints: Option<Spanned<Vec<Spanned<String>>>>,
    /// The simulated agent embedded in the gateway.
    sim: Option<Spanned<SimSpec>>,
    /// Default `5s`.
    connect_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimSpec {
    /// Required. Which behaviour to simulate; the simulator validates the name.
    profile: Spanned<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub name: String,
    pub target: UpstreamTarget,
    pub connect_timeout: Duration,
    /// Line of the upstream's table, for messages about it at runtime.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamTarget {
    /// Real HTTP endpoints; `url = ...` is a pool of one.
    Endpoints(Vec<Uri>),
    /// The embedded simulator; `profile` is checked by the simulator, not here.
    Sim { profile: String },
}

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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
        let upstream = Upstream {
            name: name.get_ref().clone(),
            target: compile_target(spec, &key, ctx)?,
            connect_timeout: ctx.duration(
                spec.get_ref().connect_timeout.as_ref(),
                &format!("{key}.connect_timeout"),
                DEFAULT_CONNECT_TIMEOUT,
            )?,
            line: ctx.line(&spec.span()),
        };
        out.insert(name.get_ref().clone(), upstream);
    }
    Ok(out)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn accepts_http_https_and_path_prefix() {
        assert_eq!(
            parse_endpoint("http://127.0.0.1:7001").unwrap().port_u16(),
            Some(7001)
        );
        assert_eq!(
            parse_endpoint("https://api.example.com").unwrap().host(),
            Some("api.example.com")
        );
        assert_eq!(parse_endpoint("http://h:1/base").unwrap().path(), "/base");
    }

    #[test]
    fn rejects_other_shapes() {
        for bad in [
            "ftp://x",
            "127.0.0.1:7001",
            "/just/a/path",
            "http://",
            "http://user:pw@h:1",
            "http://h:1/base?x=1",
            "http://h :1",
            "",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
