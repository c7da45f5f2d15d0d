//! `[[notify.webhooks]]`: where the gateway posts what happened (alerts, kills, reloads, ...).

use std::time::Duration;

use http::Uri;
use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::ctx::Ctx;
use crate::error::ConfigError;
use crate::token::{from_env, from_file, SecretUse};

/// `[notify]` as written.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NotifySpec {
    #[serde(default)]
    #[schemars(with = "Vec<WebhookSpec>")]
    webhooks: Vec<Spanned<WebhookSpec>>,
}

/// One `[[notify.webhooks]]` table as written.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct WebhookSpec {
    /// Required: `http` or `https`, with a host.
    #[schemars(with = "String")]
    url: Spanned<String>,
    /// Default: every event kind.
    #[schemars(with = "Option<Vec<String>>")]
    events: Option<Spanned<Vec<Spanned<String>>>>,
    /// Per attempt. Default `5s`.
    #[schemars(with = "Option<String>")]
    timeout: Option<Spanned<String>>,
    /// Attempts after the first. Default 5.
    retries: Option<u32>,
    /// The name of an environment variable holding the signing secret. Default: unsigned.
    #[schemars(with = "Option<String>")]
    secret_env: Option<Spanned<String>>,
    /// A file holding the signing secret, relative to the config file's directory.
    #[schemars(with = "Option<String>")]
    secret_file: Option<Spanned<String>>,
}

/// What a webhook can be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// An alert started or stopped firing.
    Alert,
    Kill,
    Revive,
    /// A kill opened an incident.
    Incident,
    /// A human acknowledged an incident.
    Ack,
    /// A configuration reload was applied or rejected.
    Reload,
    /// A rollout started, advanced a stage or completed.
    Rollout,
    /// A rollout was rolled back, automatically or by an operator.
    Rollback,
    /// An operator promoted green to every user.
    Promote,
    /// A rule fired, cleared, or waits for approval.
    Rule,
}

impl EventKind {
    pub const ALL: [EventKind; 10] = [
        EventKind::Alert,
        EventKind::Kill,
        EventKind::Revive,
        EventKind::Incident,
        EventKind::Ack,
        EventKind::Reload,
        EventKind::Rollout,
        EventKind::Rollback,
        EventKind::Promote,
        EventKind::Rule,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Alert => "alert",
            EventKind::Kill => "kill",
            EventKind::Revive => "revive",
            EventKind::Incident => "incident",
            EventKind::Ack => "ack",
            EventKind::Reload => "reload",
            EventKind::Rollout => "rollout",
            EventKind::Rollback => "rollback",
            EventKind::Promote => "promote",
            EventKind::Rule => "rule",
        }
    }

    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// A validated webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: Uri,
    /// Without duplicates, in the order written.
    pub events: Vec<EventKind>,
    pub timeout: Duration,
    pub retries: u32,
    /// How deliveries are signed.
    pub signing: Signing,
}

/// Whether a webhook's deliveries carry an HMAC-SHA256 signature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Signing {
    /// No `secret_env` or `secret_file`: sent without a signature.
    #[default]
    Unsigned,
    /// Signed with this secret.
    Signed(Secret),
    /// A secret is configured but could not be loaded (warned about): nothing is sent, since
    /// a receiver that checks signatures would refuse an unsigned delivery anyway. The text
    /// names the variable or file.
    Unavailable(String),
}

/// A signing secret; its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

const WEBHOOK_SECRET: SecretUse = SecretUse {
    noun: "secret",
    without: "this webhook's events will not be sent",
};

impl Webhook {
    pub fn wants(&self, kind: EventKind) -> bool {
        self.events.contains(&kind)
    }
}

/// `[notify]`: no webhooks by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notify {
    pub webhooks: Vec<Webhook>,
}

pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_WEBHOOK_RETRIES: u32 = 5;

pub(crate) fn compile_notify(spec: &NotifySpec, ctx: &mut Ctx) -> Result<Notify, ConfigError> {
    let mut webhooks = Vec::with_capacity(spec.webhooks.len());
    for (i, hook) in spec.webhooks.iter().enumerate() {
        let key = format!("notify.webhooks[{i}]");
        let s = hook.get_ref();
        let url = parse_webhook_url(s.url.get_ref())
            .map_err(|m| ctx.at(&s.url, &format!("{key}.url"), m))?;
        webhooks.push(Webhook {
            url,
            events: compile_events(s.events.as_ref(), &format!("{key}.events"), ctx)?,
            timeout: ctx.duration(
                s.timeout.as_ref(),
                &format!("{key}.timeout"),
                DEFAULT_WEBHOOK_TIMEOUT,
            )?,
            retries: s.retries.unwrap_or(DEFAULT_WEBHOOK_RETRIES),
            signing: compile_signing(s, &key, ctx)?,
        });
    }
    Ok(Notify { webhooks })
}

/// `secret_env` or `secret_file`, at most one, read like an admin token's secret.
fn compile_signing(spec: &WebhookSpec, key: &str, ctx: &mut Ctx) -> Result<Signing, ConfigError> {
    let resolved = match (&spec.secret_env, &spec.secret_file) {
        (None, None) => return Ok(Signing::Unsigned),
        (Some(env), Some(file)) => {
            let (later, field) = if file.span().start > env.span().start {
                (file.span(), "secret_file")
            } else {
                (env.span(), "secret_env")
            };
            let msg = "secret_env and secret_file are both set; use at most one";
            return Err(ctx.err(&later, &format!("{key}.{field}"), msg));
        }
        (Some(env), None) => from_env(env, &format!("{key}.secret_env"), ctx, WEBHOOK_SECRET)?,
        (None, Some(file)) => from_file(file, &format!("{key}.secret_file"), ctx, WEBHOOK_SECRET)?,
    };
    Ok(match resolved.secret {
        Some(secret) => Signing::Signed(Secret(secret)),
        None => Signing::Unavailable(resolved.source),
    })
}

fn compile_events(
    list: Option<&Spanned<Vec<Spanned<String>>>>,
    key: &str,
    ctx: &Ctx,
) -> Result<Vec<EventKind>, ConfigError> {
    let Some(list) = list else {
        return Ok(EventKind::ALL.to_vec());
    };
    if list.get_ref().is_empty() {
        let msg = "must name at least one event; remove the webhook to turn it off";
        return Err(ctx.at(list, key, msg));
    }
    let mut events = Vec::with_capacity(list.get_ref().len());
    for (i, name) in list.get_ref().iter().enumerate() {
        let Some(kind) = EventKind::parse(name.get_ref()) else {
            let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
            let msg = format!(
                "unknown event {:?} (known: {})",
                name.get_ref(),
                known.join(", ")
            );
            return Err(ctx.at(name, &format!("{key}[{i}]"), msg));
        };
        if !events.contains(&kind) {
            events.push(kind);
        }
    }
    Ok(events)
}

/// A webhook URL: `http`/`https` with a host. Unlike an upstream's, a query string is allowed
/// (some receivers take their key there), so the gateway never logs more than host and port.
fn parse_webhook_url(text: &str) -> Result<Uri, String> {
    parse_http_url(text)
}

/// An `http` or `https` URL with a host and no user info; path and query as written. Shared by
/// webhooks and the OTLP endpoint.
pub(crate) fn parse_http_url(text: &str) -> Result<Uri, String> {
    let uri: Uri = text
        .parse()
        .map_err(|e| format!("invalid URL {text:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(format!("unsupported scheme {other:?}: use http or https")),
        None => return Err(format!("URL {text:?} needs a scheme: http:// or https://")),
    }
    match uri.authority() {
        Some(a) if a.as_str().contains('@') => Err("the URL must not contain user info".to_owned()),
        Some(a) if !a.host().is_empty() => Ok(uri),
        _ => Err(format!("URL {text:?} needs a host")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_need_http_and_a_host() {
        let ok = parse_webhook_url("https://hooks.example.com/x?key=1").unwrap();
        assert_eq!(ok.query(), Some("key=1"));
        for bad in ["ftp://x", "x:1", "/path", "http://", "http://u:p@h:1/", ""] {
            assert!(parse_webhook_url(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn event_names_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(EventKind::parse("Kill"), None);
    }
}
