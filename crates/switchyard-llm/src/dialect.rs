//! Route dialect settings and classification of requests by method and path.

use std::fmt;
use std::str::FromStr;

/// What the route says (from config): "openai" | "anthropic" | "auto" | "opaque".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialectSetting {
    OpenAi,
    Anthropic,
    Auto,
    Opaque,
}

/// A dialect name in config that is not one of the accepted values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dialect {0:?}: expected one of \"openai\", \"anthropic\", \"auto\", \"opaque\"")]
pub struct UnknownDialect(pub String);

impl FromStr for DialectSetting {
    type Err = UnknownDialect;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim();
        let all = [
            ("openai", Self::OpenAi),
            ("anthropic", Self::Anthropic),
            ("auto", Self::Auto),
            ("opaque", Self::Opaque),
        ];
        all.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, d)| *d)
            .ok_or_else(|| UnknownDialect(s.to_owned()))
    }
}

/// The protocol a request speaks, as far as the gateway interprets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    OpenAi,
    Anthropic,
    Opaque,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
            Self::Opaque => "opaque",
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The API operation a request performs; only the named ones are inspected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    ChatCompletions,
    Completions,
    Responses,
    Embeddings,
    Messages,
    Other,
}

impl Operation {
    /// The OpenTelemetry GenAI semantic conventions' `gen_ai.operation.name`; `None` for
    /// requests that are not model calls.
    pub fn gen_ai_name(self) -> Option<&'static str> {
        match self {
            Operation::ChatCompletions | Operation::Responses | Operation::Messages => Some("chat"),
            Operation::Completions => Some("text_completion"),
            Operation::Embeddings => Some("embeddings"),
            Operation::Other => None,
        }
    }
}

/// Order matters: "/chat/completions" must win over its own suffix "/completions".
const OPENAI_SUFFIXES: [(&str, Operation); 4] = [
    ("/chat/completions", Operation::ChatCompletions),
    ("/completions", Operation::Completions),
    ("/responses", Operation::Responses),
    ("/embeddings", Operation::Embeddings),
];

const ANTHROPIC_SUFFIX: &str = "/v1/messages";

/// Decide dialect and operation from method and path.
///
/// Only POST requests are inspectable operations, matched by path suffix so mount
/// prefixes work ("/openai/v1/chat/completions"). A query string and a trailing slash
/// are ignored. `Auto` picks the dialect by path; a path it does not recognise is
/// treated as opaque. A forced dialect keeps its dialect (for error shaping) but maps
/// the other dialect's paths to `Operation::Other`.
pub fn classify(setting: DialectSetting, method: &str, path: &str) -> (Dialect, Operation) {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let path = path.strip_suffix('/').unwrap_or(path);
    let post = method.eq_ignore_ascii_case("POST");
    let openai = openai_operation(path);
    let anthropic = path.ends_with(ANTHROPIC_SUFFIX);
    let (dialect, op) = match setting {
        DialectSetting::Opaque => (Dialect::Opaque, None),
        DialectSetting::OpenAi => (Dialect::OpenAi, openai),
        DialectSetting::Anthropic => (Dialect::Anthropic, anthropic.then_some(Operation::Messages)),
        DialectSetting::Auto if anthropic => (Dialect::Anthropic, Some(Operation::Messages)),
        DialectSetting::Auto if openai.is_some() => (Dialect::OpenAi, openai),
        DialectSetting::Auto => (Dialect::Opaque, None),
    };
    let op = op.filter(|_| post).unwrap_or(Operation::Other);
    (dialect, op)
}

fn openai_operation(path: &str) -> Option<Operation> {
    OPENAI_SUFFIXES
        .iter()
        .find(|(suffix, _)| path.ends_with(suffix))
        .map(|(_, op)| *op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Dialect as D;
    use DialectSetting as S;
    use Operation as O;

    #[test]
    fn classify_table() {
        #[rustfmt::skip]
        let table = [
            (S::OpenAi, "POST", "/v1/chat/completions", D::OpenAi, O::ChatCompletions),
            (S::OpenAi, "POST", "/openai/v1/chat/completions", D::OpenAi, O::ChatCompletions),
            (S::OpenAi, "post", "/v1/chat/completions/", D::OpenAi, O::ChatCompletions),
            (S::OpenAi, "POST", "/v1/chat/completions?x=1", D::OpenAi, O::ChatCompletions),
            (S::OpenAi, "POST", "/openai/deployments/g/chat/completions", D::OpenAi, O::ChatCompletions),
            (S::OpenAi, "POST", "/v1/completions", D::OpenAi, O::Completions),
            (S::OpenAi, "POST", "/v1/responses", D::OpenAi, O::Responses),
            (S::OpenAi, "POST", "/v1/embeddings", D::OpenAi, O::Embeddings),
            (S::OpenAi, "GET", "/v1/chat/completions", D::OpenAi, O::Other),
            (S::OpenAi, "GET", "/v1/models", D::OpenAi, O::Other),
            (S::OpenAi, "POST", "/v1/messages", D::OpenAi, O::Other),
            (S::OpenAi, "POST", "/v1/responses/resp_1/cancel", D::OpenAi, O::Other),
            (S::Anthropic, "POST", "/v1/messages", D::Anthropic, O::Messages),
            (S::Anthropic, "POST", "/anthropic/v1/messages", D::Anthropic, O::Messages),
            (S::Anthropic, "POST", "/v1/messages/count_tokens", D::Anthropic, O::Other),
            (S::Anthropic, "POST", "/v1/chat/completions", D::Anthropic, O::Other),
            (S::Anthropic, "GET", "/v1/messages", D::Anthropic, O::Other),
            (S::Auto, "POST", "/v1/messages", D::Anthropic, O::Messages),
            (S::Auto, "POST", "/x/v1/chat/completions", D::OpenAi, O::ChatCompletions),
            (S::Auto, "POST", "/v1/embeddings", D::OpenAi, O::Embeddings),
            (S::Auto, "GET", "/v1/responses", D::OpenAi, O::Other),
            (S::Auto, "GET", "/v1/models", D::Opaque, O::Other),
            (S::Auto, "POST", "/healthz", D::Opaque, O::Other),
            (S::Opaque, "POST", "/v1/chat/completions", D::Opaque, O::Other),
            (S::Opaque, "POST", "/v1/messages", D::Opaque, O::Other),
        ];
        for (setting, method, path, dialect, op) in table {
            assert_eq!(
                classify(setting, method, path),
                (dialect, op),
                "{setting:?} {method} {path}"
            );
        }
    }

    #[test]
    fn settings_parse_and_reject() {
        assert_eq!("openai".parse::<S>().unwrap(), S::OpenAi);
        assert_eq!(" Anthropic ".parse::<S>().unwrap(), S::Anthropic);
        assert_eq!("auto".parse::<S>().unwrap(), S::Auto);
        assert_eq!("opaque".parse::<S>().unwrap(), S::Opaque);
        let err = "gemini".parse::<S>().unwrap_err().to_string();
        for name in ["gemini", "openai", "anthropic", "auto", "opaque"] {
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn dialect_names() {
        assert_eq!(D::OpenAi.as_str(), "openai");
        assert_eq!(D::Anthropic.as_str(), "anthropic");
        assert_eq!(D::Opaque.to_string(), "opaque");
    }
}
