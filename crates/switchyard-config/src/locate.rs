//! Recovers the key path of a TOML syntax or serde error from its byte span.
//!
//! `toml::de::Error` carries a span but keeps its key path private, so the document is parsed
//! again (with recovery, for syntax errors) and the span is looked up in the parsed tree.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::error::{join, line_of, ConfigError};

pub(crate) fn from_toml_error(err: &toml::de::Error, text: &str, origin: &str) -> ConfigError {
    let message = err.message().trim().to_owned();
    let Some(span) = err.span() else {
        return ConfigError {
            origin: origin.to_owned(),
            line: None,
            key: String::new(),
            message,
        };
    };
    let (tree, _) = DeTable::parse_recoverable(text);
    let mut key = key_at(tree.get_ref(), span.start);
    // A missing field is reported on the table that lacks it; name the field itself.
    if let Some(field) = missing_field(&message) {
        key = join(&key, field);
    }
    ConfigError {
        origin: origin.to_owned(),
        line: Some(line_of(text, span.start)),
        key,
        message,
    }
}

fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// One key or array element of the document with where it was written.
struct Node {
    path: String,
    depth: usize,
    key: Option<Range<usize>>,
    value: Range<usize>,
}

/// The dotted path of the key or value at `offset`.
///
/// Preference: a key whose text covers the offset (unknown fields), then the smallest value
/// covering it (wrong types, missing fields), then the last key before it (syntax errors, which
/// usually point just past the last thing that parsed).
fn key_at(root: &DeTable<'_>, offset: usize) -> String {
    let mut nodes = Vec::new();
    collect_table(root, "", 0, &mut nodes);
    let covers = |r: &Range<usize>| r.start <= offset && offset < r.end;
    let smallest = |f: &dyn Fn(&Node) -> Option<Range<usize>>| {
        nodes
            .iter()
            .filter_map(|n| {
                f(n).filter(covers)
                    .map(|r| (r.len(), usize::MAX - n.depth, n))
            })
            .min_by_key(|(len, depth, _)| (*len, *depth))
            .map(|(_, _, n)| n.path.clone())
    };
    smallest(&|n| n.key.clone())
        .or_else(|| smallest(&|n| Some(n.value.clone())))
        .or_else(|| {
            nodes
                .iter()
                .filter_map(|n| n.key.as_ref().map(|k| (k.start, n)))
                .filter(|(start, _)| *start <= offset)
                .max_by_key(|(start, n)| (*start, n.depth))
                .map(|(_, n)| n.path.clone())
        })
        .unwrap_or_default()
}

fn collect_table(table: &DeTable<'_>, prefix: &str, depth: usize, out: &mut Vec<Node>) {
    for (k, v) in table.iter() {
        let path = join(prefix, k.get_ref());
        out.push(Node {
            path: path.clone(),
            depth,
            key: Some(k.span()),
            value: v.span(),
        });
        collect_value(v, &path, depth + 1, out);
    }
}

fn collect_value(v: &Spanned<DeValue<'_>>, path: &str, depth: usize, out: &mut Vec<Node>) {
    match v.get_ref() {
        DeValue::Table(t) => collect_table(t, path, depth, out),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                out.push(Node {
                    path: item_path.clone(),
                    depth,
                    key: None,
                    value: item.span(),
                });
                collect_value(item, &item_path, depth + 1, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(text: &str, needle: &str) -> String {
        let offset = text.find(needle).unwrap();
        let (tree, _) = DeTable::parse_recoverable(text);
        key_at(tree.get_ref(), offset)
    }

    #[test]
    fn finds_keys_values_and_array_elements() {
        let text = "[server]\nlisten = \"x\"\n\n[[routes]]\nname = \"a\"\n[[routes]]\nname = \"b\"\nuser_key = [\"p\", \"q\"]\n";
        assert_eq!(key_of(text, "listen"), "server.listen");
        assert_eq!(key_of(text, "\"x\""), "server.listen");
        assert_eq!(key_of(text, "\"b\""), "routes[1].name");
        assert_eq!(key_of(text, "\"q\""), "routes[1].user_key[1]");
        assert_eq!(key_of(text, "[[routes]]\nname = \"b\""), "routes[1]");
    }

    #[test]
    fn quotes_dotted_table_names() {
        let text = "[models.\"gpt-4.1\"]\ncontext_window = \"x\"\n";
        assert_eq!(key_of(text, "\"x\""), "models.\"gpt-4.1\".context_window");
    }

    #[test]
    fn missing_field_name_is_extracted() {
        assert_eq!(missing_field("missing field `upstream`"), Some("upstream"));
        assert_eq!(missing_field("unknown field `x`"), None);
    }
}
