//! Errors and warnings that point at a key and a line of the file.

use std::borrow::Cow;
use std::fmt;

/// A configuration that cannot be used, with the place in the file to fix.
///
/// Display: `gateway.toml:14: routes[0].upstream: unknown upstream "x" (known: a, b)`.
/// The line and the key are left out of the text when unknown (e.g. an unreadable file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(origin, *line, key, message))]
pub struct ConfigError {
    /// The file path, or `<inline>` for text that did not come from a file.
    pub origin: String,
    /// 1-based line of the offending key or value; `None` when the file could not be read.
    pub line: Option<usize>,
    /// Dotted path like `routes[0].upstream` or `server.listen`; empty when not about a key.
    pub key: String,
    pub message: String,
}

/// Something legal but probably unintended; the config still loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub origin: String,
    /// 1-based line; `None` when the warning is about something absent from the file.
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&render(&self.origin, self.line, &self.key, &self.message))
    }
}

fn render(origin: &str, line: Option<usize>, key: &str, message: &str) -> String {
    let mut out = String::from(origin);
    if let Some(line) = line {
        out.push_str(&format!(":{line}"));
    }
    if !key.is_empty() {
        out.push_str(": ");
        out.push_str(key);
    }
    out.push_str(": ");
    out.push_str(message);
    out
}

/// 1-based line of a byte offset; offsets past the end count as the last line.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    let before = text.as_bytes().get(..end).unwrap_or_default();
    before.iter().filter(|b| **b == b'\n').count() + 1
}

/// One segment of a dotted key path, quoted the way TOML would need it when it is not a bare key
/// (so `models."gpt-4.1"` stays unambiguous).
pub(crate) fn seg(name: &str) -> Cow<'_, str> {
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(format!("{name:?}"))
    }
}

/// `prefix.name`, with `name` quoted when needed.
pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        seg(name).into_owned()
    } else {
        format!("{prefix}.{}", seg(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_origin_line_key_message() {
        let err = ConfigError {
            origin: "gateway.toml".into(),
            line: Some(14),
            key: "routes[0].upstream".into(),
            message: "unknown upstream \"suport-blue\" (known: demo, support-blue)".into(),
        };
        assert_eq!(
            err.to_string(),
            "gateway.toml:14: routes[0].upstream: unknown upstream \"suport-blue\" (known: demo, support-blue)"
        );
    }

    #[test]
    fn display_skips_missing_line_and_key() {
        let err = ConfigError {
            origin: "x.toml".into(),
            line: None,
            key: String::new(),
            message: "No such file".into(),
        };
        assert_eq!(err.to_string(), "x.toml: No such file");
    }

    #[test]
    fn lines_are_one_based() {
        let text = "a = 1\nb = 2\n";
        assert_eq!(line_of(text, 0), 1);
        assert_eq!(line_of(text, 5), 1);
        assert_eq!(line_of(text, 6), 2);
        assert_eq!(line_of(text, 1000), 3);
    }

    #[test]
    fn segments_quote_non_bare_keys() {
        assert_eq!(join("models", "gpt-4o"), "models.gpt-4o");
        assert_eq!(join("models", "gpt-4.1"), "models.\"gpt-4.1\"");
        assert_eq!(join("", "server"), "server");
    }
}
