//! `[[notify.webhooks]]`: defaults, event lists, and errors with key and line.

use std::path::Path;
use std::time::Duration;

use switchyard_config::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "gateway.toml", Path::new("/etc/switchyard"))
}

#[test]
fn no_section_means_no_webhooks() {
    assert_eq!(parse("").unwrap().notify, Notify::default());
}

#[test]
fn defaults_subscribe_to_everything() {
    let c = parse("[[notify.webhooks]]\nurl = \"http://127.0.0.1:9999/hook\"\n").unwrap();
    let [hook] = c.notify.webhooks.as_slice() else {
        panic!("expected one webhook: {:?}", c.notify)
    };
    assert_eq!(
        hook.url,
        "http://127.0.0.1:9999/hook".parse::<http::Uri>().unwrap()
    );
    assert_eq!(hook.events, EventKind::ALL.to_vec());
    assert_eq!(hook.timeout, DEFAULT_WEBHOOK_TIMEOUT);
    assert_eq!(hook.timeout, Duration::from_secs(5));
    assert_eq!(hook.retries, 5);
    assert!(hook.wants(EventKind::Reload));
}

#[test]
fn every_key_is_read_and_duplicates_collapse() {
    let text = "[[notify.webhooks]]\nurl = \"https://hooks.example.com/a?key=k\"\n\
                events = [\"kill\", \"ack\", \"kill\"]\ntimeout = \"250ms\"\nretries = 0\n\n\
                [[notify.webhooks]]\nurl = \"http://10.0.0.9:8080\"\nevents = [\"alert\"]\n";
    let c = parse(text).unwrap();
    let [a, b] = c.notify.webhooks.as_slice() else {
        panic!("expected two webhooks: {:?}", c.notify)
    };
    assert_eq!(a.events, [EventKind::Kill, EventKind::Ack]);
    assert_eq!((a.timeout, a.retries), (Duration::from_millis(250), 0));
    assert!(!a.wants(EventKind::Alert));
    assert_eq!(b.events, [EventKind::Alert]);
    assert_eq!(b.url.port_u16(), Some(8080));
}

/// (expected key, expected line, fragment of the message, file text)
const INVALID: &[(&str, usize, &str, &str)] = &[
    ("notify.webhooks[0].url", 1, "missing field `url`", "[[notify.webhooks]]\nretries = 1\n"),
    ("notify.webhooks[0].url", 2, "unsupported scheme \"ftp\"", "[[notify.webhooks]]\nurl = \"ftp://h/x\"\n"),
    ("notify.webhooks[1].url", 4, "needs a scheme", "[[notify.webhooks]]\nurl = \"http://a:1\"\n[[notify.webhooks]]\nurl = \"127.0.0.1:9999\"\n"),
    ("notify.webhooks[0].url", 2, "user info", "[[notify.webhooks]]\nurl = \"http://u:pw@h:1/\"\n"),
    ("notify.webhooks[0].events[1]", 3, "unknown event \"rollbacks\" (known: alert, kill, revive, incident, ack, reload, rollout, rollback, promote, rule)", "[[notify.webhooks]]\nurl = \"http://a:1\"\nevents = [\"kill\", \"rollbacks\"]\n"),
    ("notify.webhooks[0].events", 3, "at least one event", "[[notify.webhooks]]\nurl = \"http://a:1\"\nevents = []\n"),
    ("notify.webhooks[0].timeout", 3, "greater than 0s", "[[notify.webhooks]]\nurl = \"http://a:1\"\ntimeout = \"0s\"\n"),
    ("notify.webhooks[0].timeout", 3, "invalid duration", "[[notify.webhooks]]\nurl = \"http://a:1\"\ntimeout = \"5 seconds\"\n"),
    ("notify.webhooks[0].retries", 3, "invalid value", "[[notify.webhooks]]\nurl = \"http://a:1\"\nretries = -1\n"),
    ("notify.webhooks[0].headers", 3, "unknown field `headers`", "[[notify.webhooks]]\nurl = \"http://a:1\"\nheaders = { authorization = \"x\" }\n"),
    ("notify.email", 2, "unknown field `email`", "[notify]\nemail = \"oncall@example.com\"\n"),
];

#[test]
fn invalid_webhooks_name_key_and_line() {
    for (key, line, fragment, text) in INVALID {
        let e = match parse(text) {
            Ok(_) => panic!("accepted, expected {key}:{line}\n{text}"),
            Err(e) => e,
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

/// Relative `secret_file`s resolve against tests/, where tests/tokens lives.
fn parse_in_tests(text: &str) -> Result<Config, ConfigError> {
    Config::parse(
        text,
        "gateway.toml",
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests"),
    )
}

#[test]
fn secrets_come_from_a_file_or_the_environment_and_never_show() {
    let hook = "[[notify.webhooks]]\nurl = \"http://a:1\"\n";
    let c = parse_in_tests(&format!("{hook}secret_file = \"tokens/oncall.token\"\n")).unwrap();
    let Signing::Signed(secret) = &c.notify.webhooks[0].signing else {
        panic!("expected a signed webhook: {:?}", c.notify)
    };
    assert_eq!(secret.as_bytes(), b"sy-oncall-SECRET-7f3a9c1e2b4d6f80");
    assert!(
        !format!("{c:?}").contains("SECRET"),
        "the secret leaked into Debug"
    );
    // Set by cargo for every test: a variable that is certainly there.
    let c = parse_in_tests(&format!("{hook}secret_env = \"CARGO_PKG_NAME\"\n")).unwrap();
    let expected = Signing::Signed(Secret::new("switchyard-config"));
    assert_eq!(c.notify.webhooks[0].signing, expected);
    let c = parse_in_tests(hook).unwrap();
    assert_eq!(c.notify.webhooks[0].signing, Signing::Unsigned);
}

#[test]
fn an_unloadable_secret_is_a_warning_and_the_webhook_sends_nothing() {
    let text = "[[notify.webhooks]]\nurl = \"http://a:1\"\nsecret_env = \"SWITCHYARD_TEST_CERTAINLY_UNSET_7c1\"\n";
    let c = parse_in_tests(text).unwrap();
    assert_eq!(
        c.notify.webhooks[0].signing,
        Signing::Unavailable("env SWITCHYARD_TEST_CERTAINLY_UNSET_7c1".into())
    );
    let Some(w) = c.warnings.iter().find(|w| w.key.starts_with("notify")) else {
        panic!("expected a warning: {:?}", c.warnings)
    };
    assert_eq!(
        (w.key.as_str(), w.line),
        ("notify.webhooks[0].secret_env", Some(3))
    );
    assert!(
        w.message
            .ends_with("this webhook's events will not be sent"),
        "{w}"
    );
    let both =
        "[[notify.webhooks]]\nurl = \"http://a:1\"\nsecret_env = \"X\"\nsecret_file = \"f\"\n";
    let e = parse_in_tests(both).unwrap_err();
    assert_eq!(
        (e.key.as_str(), e.line),
        ("notify.webhooks[0].secret_file", Some(4))
    );
    assert!(e.message.contains("use at most one"), "{e}");
    let literal = "[[notify.webhooks]]\nurl = \"http://a:1\"\nsecret_env = \"whsec-abc-123\"\n";
    let e = parse_in_tests(literal).unwrap_err();
    assert!(e.message.contains("not the secret itself"), "{e}");
    assert!(!e.message.contains("whsec"), "{e}");
}
