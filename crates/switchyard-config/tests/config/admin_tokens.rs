//! `[[admin.tokens]]`: secrets resolved at load time, warnings for unusable ones, and no secret
//! in any message or `Debug` output.
//!
//! Secrets come from files under tests/tokens (every one contains "SECRET") and from environment
//! variables that are either certainly unset or set by cargo itself: tests run in parallel
//! threads and may not set variables.

use std::path::{Path, PathBuf};

use switchyard_config::*;

fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

/// Relative `token_file`s resolve against tests/, where tests/tokens lives.
fn parse_here(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "gateway.toml", &tests_dir())
}

/// Everything a caller could print about a load.
fn all_text(result: &Result<Config, ConfigError>) -> String {
    match result {
        Ok(c) => {
            let warnings: Vec<String> = c.warnings.iter().map(|w| w.to_string()).collect();
            format!("{c:?}\n{c:#?}\n{}", warnings.join("\n"))
        }
        Err(e) => format!("{e}\n{e:?}"),
    }
}

fn assert_no_secret(result: &Result<Config, ConfigError>) {
    // Not printed on failure: the point is that it must not be shown.
    assert!(
        !all_text(result).contains("SECRET"),
        "a secret leaked into Debug, an error or a warning"
    );
}

const HEAD: &str = "[[admin.tokens]]\nname = \"a\"\nrole = \"operator\"\nkind = \"human\"\n";

#[test]
fn tokens_resolve_from_files_and_env() {
    let text = format!(
        "{HEAD}token_file = \"tokens/oncall.token\"\n\n[[admin.tokens]]\nname = \"ci.deploy-1\"\nrole = \"viewer\"\nkind = \"automation\"\ntoken_env = \"CARGO_PKG_NAME\"\n"
    );
    let result = parse_here(&text);
    assert_no_secret(&result);
    let c = result.unwrap();
    let [a, ci] = c.admin.tokens.as_slice() else {
        panic!("expected two tokens: {:?}", c.admin.tokens)
    };
    assert_eq!(
        (a.name.as_str(), a.role, a.kind, a.line),
        ("a", Role::Operator, TokenKind::Human, 1)
    );
    // Surrounding whitespace and newlines of the file are trimmed.
    assert!(a.secret.as_deref() == Some("sy-oncall-SECRET-7f3a9c1e2b4d6f80"));
    let file = tests_dir().join("tokens/oncall.token");
    assert_eq!(a.source, format!("file {}", file.display()));
    assert_eq!(
        (ci.name.as_str(), ci.role, ci.kind, ci.line),
        ("ci.deploy-1", Role::Viewer, TokenKind::Automation, 7)
    );
    assert_eq!(ci.source, "env CARGO_PKG_NAME");
    // cargo sets CARGO_PKG_NAME for the tests it runs; either way the config must agree with it.
    match std::env::var("CARGO_PKG_NAME") {
        Ok(name) => assert_eq!(ci.secret.as_deref(), Some(name.trim())),
        Err(_) => assert_eq!(ci.secret, None),
    }
    assert_eq!(
        (Role::Operator.as_str(), Role::Viewer.as_str()),
        ("operator", "viewer")
    );
    assert_eq!(
        (TokenKind::Human.as_str(), TokenKind::Automation.as_str()),
        ("human", "automation")
    );
    let shown = format!("{a:?}");
    assert!(shown.contains("secret: Some(\"<redacted>\")"), "{shown}");
    assert!(
        shown.contains("name: \"a\"") && shown.contains("Operator"),
        "{shown}"
    );
}

#[test]
fn unusable_secrets_are_warnings_not_errors() {
    let text = "[[admin.tokens]]\nname = \"env\"\nrole = \"viewer\"\nkind = \"automation\"\ntoken_env = \"SWITCHYARD_TEST_UNSET_TOKEN_51B7D0\"\n\
[[admin.tokens]]\nname = \"gone\"\nrole = \"viewer\"\nkind = \"human\"\ntoken_file = \"tokens/missing.token\"\n\
[[admin.tokens]]\nname = \"blank\"\nrole = \"viewer\"\nkind = \"human\"\ntoken_file = \"tokens/blank.token\"\n\
[[admin.tokens]]\nname = \"short\"\nrole = \"operator\"\nkind = \"human\"\ntoken_file = \"tokens/short.token\"\n";
    let result = parse_here(text);
    assert_no_secret(&result);
    let c = result.unwrap();
    let got: Vec<_> = c
        .warnings
        .iter()
        .filter(|w| w.key.starts_with("admin."))
        .map(|w| (w.key.as_str(), w.line))
        .collect();
    assert_eq!(
        got,
        [
            ("admin.tokens[0].token_env", Some(5)),
            ("admin.tokens[1].token_file", Some(10)),
            ("admin.tokens[2].token_file", Some(15)),
            ("admin.tokens[3].token_file", Some(20)),
        ]
    );
    let msgs: Vec<&str> = c.warnings.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(
        msgs[0],
        "SWITCHYARD_TEST_UNSET_TOKEN_51B7D0 is not set: this token cannot authenticate"
    );
    let missing = tests_dir()
        .join("tokens/missing.token")
        .display()
        .to_string();
    assert!(
        msgs[1].starts_with(&format!("cannot read {missing}: "))
            && msgs[1].ends_with(": this token cannot authenticate"),
        "{}",
        msgs[1]
    );
    let blank = tests_dir().join("tokens/blank.token").display().to_string();
    assert_eq!(
        msgs[2],
        format!("{blank} is empty: this token cannot authenticate")
    );
    assert!(msgs[3].starts_with("short token: "), "{}", msgs[3]);
    assert!(msgs[3].contains("fewer than 16 bytes"), "{}", msgs[3]);
    let secrets: Vec<bool> = c.admin.tokens.iter().map(|t| t.secret.is_some()).collect();
    // Only the short token can authenticate; three tokens without a secret never clash.
    assert_eq!(secrets, [false, false, false, true]);
    assert!(c.admin.tokens[3].secret.as_deref() == Some("SECRET-short"));
    assert_eq!(
        c.admin.tokens[0].source,
        "env SWITCHYARD_TEST_UNSET_TOKEN_51B7D0"
    );
}

#[test]
fn same_secret_twice_is_an_error_that_does_not_show_it() {
    for second in ["tokens/b.token", "tokens/a.token"] {
        let text = format!(
            "{HEAD}token_file = \"tokens/a.token\"\n\n[[admin.tokens]]\nname = \"b\"\nrole = \"viewer\"\nkind = \"automation\"\ntoken_file = \"{second}\"\n"
        );
        let result = parse_here(&text);
        assert_no_secret(&result);
        let e = result.unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.line),
            ("admin.tokens[1].token_file", Some(11))
        );
        assert_eq!(
            e.message,
            "same secret as token \"a\" (line 1); every token needs its own secret"
        );
    }
}

#[test]
fn shipped_duplicate_secret_file_fails_without_showing_it() {
    let path = tests_dir().join("invalid/duplicate-token-secret.toml");
    let result = Config::load(&path);
    assert_no_secret(&result);
    let e = result.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:12: admin.tokens[1].token_file: same secret as token \"alice\" (line 2); every token needs its own secret",
            path.display()
        )
    );
}

/// (expected key, expected line, fragment of the message, lines after HEAD or a whole file)
const CORPUS: &[(&str, usize, &str, &str)] = &[
    ("admin.tokens[0].token_file", 6, "token_env and token_file are both set; use exactly one", "+token_env = \"X_TOKEN\"\ntoken_file = \"tokens/a.token\"\n"),
    ("admin.tokens[0].token_env", 6, "token_env and token_file are both set", "+token_file = \"tokens/a.token\"\ntoken_env = \"X_TOKEN\"\n"),
    ("admin.tokens[0]", 1, "needs exactly one of token_env or token_file", "+"),
    ("admin.tokens[0].token_file", 5, "must not be empty", "+token_file = \"\"\n"),
    ("admin.tokens[0].token_env", 5, "must be the name of an environment variable", "+token_env = \"sk-SECRET-0123456789abcdef\"\n"),
    ("admin.tokens[0].token", 5, "unknown field `token`", "+token = \"sk-live\"\n"),
    ("admin.tokens[1].name", 7, "duplicate token name \"a\" (first defined on line 1)", "+token_env = \"X_TOKEN\"\n[[admin.tokens]]\nname = \"a\"\nrole = \"viewer\"\nkind = \"human\"\ntoken_env = \"Y_TOKEN\"\n"),
    ("admin.tokens[0].name", 2, "invalid token name \"On Call\": use [a-z0-9_.-]+", "[[admin.tokens]]\nname = \"On Call\"\nrole = \"viewer\"\nkind = \"human\"\ntoken_env = \"X_TOKEN\"\n"),
    ("admin.tokens[0].role", 3, "unknown variant `admin`", "[[admin.tokens]]\nname = \"a\"\nrole = \"admin\"\nkind = \"human\"\ntoken_env = \"X_TOKEN\"\n"),
    ("admin.tokens[0].kind", 1, "missing field `kind`", "[[admin.tokens]]\nname = \"a\"\nrole = \"viewer\"\ntoken_env = \"X_TOKEN\"\n"),
    ("admin.tokens[0].kind", 5, "unknown variant `robot`", "\n[[admin.tokens]]\nname = \"a\"\nrole = \"viewer\"\nkind = \"robot\"\ntoken_env = \"X_TOKEN\"\n"),
    ("admin.tokens[0].name", 1, "missing field `name`", "[[admin.tokens]]\nrole = \"viewer\"\nkind = \"human\"\ntoken_env = \"X_TOKEN\"\n"),
];

#[test]
fn invalid_tokens_name_key_and_line() {
    for (key, line, fragment, text) in CORPUS {
        let text = match text.strip_prefix('+') {
            Some(rest) => format!("{HEAD}{rest}"),
            None => (*text).to_owned(),
        };
        let result = parse_here(&text);
        assert_no_secret(&result);
        let Err(e) = result else {
            panic!("accepted, expected {key}:{line}\n{text}")
        };
        assert_eq!(
            (e.key.as_str(), e.line),
            (*key, Some(*line)),
            "{e}\n--- text ---\n{text}"
        );
        assert!(
            e.message.contains(fragment),
            "message {:?} lacks {fragment:?}",
            e.message
        );
    }
}

#[test]
fn allowed_hosts_are_dns_names_lower_cased() {
    let c =
        parse_here("[admin]\nallowed_hosts = [\"Gateway-1.Internal\", \"gw\", \"gw\"]\n").unwrap();
    assert_eq!(c.admin.allowed_hosts, ["gateway-1.internal", "gw"]);
    for bad in ["http://gw", "gw:9090", "", "gw..internal", "g w"] {
        let text = format!("[admin]\nallowed_hosts = [\"ok\",\n  \"{bad}\"]\n");
        let e = parse_here(&text).unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.line),
            ("admin.allowed_hosts[1]", Some(3)),
            "{bad:?}: {e}"
        );
        assert!(e.message.contains("without scheme or port"), "{e}");
    }
}
