//! `[[admin.tokens]]`: who may call the admin API, with which role, and where the secret lives.
//!
//! Secrets are read when the file is loaded and never appear in a message: errors and warnings
//! name the token, the environment variable or the file, and `Debug` prints `<redacted>`.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::ctx::Ctx;
use crate::error::ConfigError;

/// A secret shorter than this loads, with a warning.
pub const MIN_TOKEN_BYTES: usize = 16;

/// One `[[admin.tokens]]` table as written. Exactly one of `token_env`, `token_file`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenSpec {
    /// Required, unique, `[a-z0-9_.-]+`: it is written to the audit log.
    #[schemars(with = "String")]
    name: Spanned<String>,
    /// Required: `operator` or `viewer`.
    role: Role,
    /// Required: `human` or `automation`.
    kind: TokenKind,
    /// The name of an environment variable holding the secret.
    #[schemars(with = "Option<String>")]
    token_env: Option<Spanned<String>>,
    /// A file holding the secret, relative to the config file's directory.
    #[schemars(with = "Option<String>")]
    token_file: Option<Spanned<String>>,
}

/// What a token may do on the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read-only.
    Viewer,
    /// Read and act (kill switches, limits, ...).
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }
}

/// Who holds a token: a person or a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Human,
    Automation,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Human => "human",
            TokenKind::Automation => "automation",
        }
    }
}

/// A validated admin token. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken {
    pub name: String,
    pub role: Role,
    pub kind: TokenKind,
    /// `None` when the variable was unset, the file unreadable or the secret empty (all warned
    /// about): such a token cannot authenticate. Trimmed of surrounding whitespace.
    pub secret: Option<String>,
    /// Where the secret comes from, for messages: `env NAME` or `file /abs/path`.
    pub source: String,
    /// Line of the token's `[[admin.tokens]]` header.
    pub line: usize,
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminToken")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("kind", &self.kind)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("source", &self.source)
            .field("line", &self.line)
            .finish()
    }
}

/// Where a secret came from, and the key and span to blame for it.
pub(crate) struct Resolved {
    pub(crate) key: String,
    pub(crate) span: Range<usize>,
    pub(crate) source: String,
    pub(crate) secret: Option<String>,
}

/// What a secret is for, in the words its messages use.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SecretUse {
    /// `token` or `secret`: "short token: ...", "not the token itself".
    pub(crate) noun: &'static str,
    /// What happens without it: "this token cannot authenticate".
    pub(crate) without: &'static str,
}

const ADMIN_TOKEN: SecretUse = SecretUse {
    noun: "token",
    without: "this token cannot authenticate",
};

pub(crate) fn compile_tokens(
    specs: &[Spanned<TokenSpec>],
    ctx: &mut Ctx,
) -> Result<Vec<AdminToken>, ConfigError> {
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut tokens: Vec<AdminToken> = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let key = format!("admin.tokens[{i}]");
        let s = spec.get_ref();
        let name = s.name.get_ref();
        let name_ok = !name.is_empty()
            && name.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
            });
        if !name_ok {
            let msg = format!(
                "invalid token name {name:?}: use [a-z0-9_.-]+ (it is written to the audit log)"
            );
            return Err(ctx.at(&s.name, &format!("{key}.name"), msg));
        }
        let line = ctx.line(&spec.span());
        if let Some(first) = names.insert(name, line) {
            let msg = format!("duplicate token name {name:?} (first defined on line {first})");
            return Err(ctx.at(&s.name, &format!("{key}.name"), msg));
        }
        let resolved = resolve_secret(spec, &key, ctx)?;
        if let Some(secret) = &resolved.secret {
            // Two names for one secret would make the audit log name the wrong person.
            if let Some(twin) = tokens.iter().find(|t| t.secret.as_ref() == Some(secret)) {
                let msg = format!(
                    "same secret as token {:?} (line {}); every token needs its own secret",
                    twin.name, twin.line
                );
                return Err(ctx.err(&resolved.span, &resolved.key, msg));
            }
        }
        tokens.push(AdminToken {
            name: name.clone(),
            role: s.role,
            kind: s.kind,
            secret: resolved.secret,
            source: resolved.source,
            line,
        });
    }
    Ok(tokens)
}

fn resolve_secret(
    spec: &Spanned<TokenSpec>,
    key: &str,
    ctx: &mut Ctx,
) -> Result<Resolved, ConfigError> {
    let s = spec.get_ref();
    match (&s.token_env, &s.token_file) {
        (Some(env), Some(file)) => {
            // Blame the later of the two: that is the line that made the table ambiguous.
            let (span, field) = if file.span().start > env.span().start {
                (file.span(), "token_file")
            } else {
                (env.span(), "token_env")
            };
            let msg = "token_env and token_file are both set; use exactly one";
            Err(ctx.err(&span, &format!("{key}.{field}"), msg))
        }
        (None, None) => Err(ctx.err(
            &spec.span(),
            key,
            "needs exactly one of token_env or token_file",
        )),
        (Some(env), None) => from_env(env, &format!("{key}.token_env"), ctx, ADMIN_TOKEN),
        (None, Some(file)) => from_file(file, &format!("{key}.token_file"), ctx, ADMIN_TOKEN),
    }
}

/// A secret from the environment variable `env` names; unset or not UTF-8 is a warning.
pub(crate) fn from_env(
    env: &Spanned<String>,
    key: &str,
    ctx: &mut Ctx,
    usage: SecretUse,
) -> Result<Resolved, ConfigError> {
    let name = env.get_ref();
    if !is_env_name(name) {
        // The value is not echoed: a string that is no variable name may be the secret itself.
        let msg = format!(
            "must be the name of an environment variable ([A-Za-z_][A-Za-z0-9_]*), not the {} itself",
            usage.noun
        );
        return Err(ctx.at(env, key, msg));
    }
    let span = env.span();
    let raw = match std::env::var_os(name) {
        None => {
            let msg = format!("{name} is not set: {}", usage.without);
            ctx.warn(Some(&span), key, msg);
            None
        }
        Some(value) => match value.into_string() {
            Ok(value) => Some(value),
            Err(_) => {
                let msg = format!("{name} is not valid UTF-8: {}", usage.without);
                ctx.warn(Some(&span), key, msg);
                None
            }
        },
    };
    let secret = raw.and_then(|raw| check_secret(&raw, name, &span, key, ctx, usage));
    Ok(Resolved {
        key: key.to_owned(),
        span,
        source: format!("env {name}"),
        secret,
    })
}

/// A secret from a file, relative to the config file's directory; unreadable is a warning.
pub(crate) fn from_file(
    file: &Spanned<String>,
    key: &str,
    ctx: &mut Ctx,
    usage: SecretUse,
) -> Result<Resolved, ConfigError> {
    let joined = ctx.path(file, key)?;
    // Messages are also read at runtime, from another working directory: make the path absolute.
    let path = std::path::absolute(&joined).unwrap_or(joined);
    let shown = path.display().to_string();
    let span = file.span();
    let secret = match std::fs::read_to_string(&path) {
        Ok(raw) => check_secret(&raw, &shown, &span, key, ctx, usage),
        Err(e) => {
            let msg = format!("cannot read {shown}: {e}: {}", usage.without);
            ctx.warn(Some(&span), key, msg);
            None
        }
    };
    Ok(Resolved {
        key: key.to_owned(),
        span,
        source: format!("file {shown}"),
        secret,
    })
}

/// Trims the secret and warns about empty and short ones; `what` names the variable or file.
fn check_secret(
    raw: &str,
    what: &str,
    span: &Range<usize>,
    key: &str,
    ctx: &mut Ctx,
    usage: SecretUse,
) -> Option<String> {
    let secret = raw.trim();
    if secret.is_empty() {
        let msg = format!("{what} is empty: {}", usage.without);
        ctx.warn(Some(span), key, msg);
        return None;
    }
    if secret.len() < MIN_TOKEN_BYTES {
        let msg = format!(
            "short {}: {what} holds fewer than {MIN_TOKEN_BYTES} bytes; use a long random secret (e.g. 32 random bytes, hex-encoded)",
            usage.noun
        );
        ctx.warn(Some(span), key, msg);
    }
    Some(secret.to_owned())
}

fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names() {
        for ok in ["SWITCHYARD_TOKEN", "_x", "a1"] {
            assert!(is_env_name(ok), "{ok:?}");
        }
        for bad in ["", "1A", "A-B", "A=B", "a b", "sk-live-0123456789"] {
            assert!(!is_env_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn debug_redacts_the_secret() {
        let token = AdminToken {
            name: "oncall".into(),
            role: Role::Operator,
            kind: TokenKind::Human,
            secret: Some("hunter2-hunter2-hunter2".into()),
            source: "env X".into(),
            line: 3,
        };
        let shown = format!("{token:?} {token:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert_eq!(
            (Role::Viewer.as_str(), TokenKind::Automation.as_str()),
            ("viewer", "automation")
        );
    }
}
