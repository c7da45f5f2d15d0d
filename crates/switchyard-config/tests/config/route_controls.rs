//! `[routes.kill_switch]` and `[routes.limits]`, plus the full example with admin tokens.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use switchyard_config::*;

use super::parse;

// Long: one config, its expected values key by key.
#[test]
fn full_controls_example_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/valid");
    let c = Config::load(&dir.join("controls.toml")).unwrap();
    let shown = format!("{c:?}");
    assert!(!shown.contains("SECRET"), "a token secret is in Debug");

    let tokens: Vec<_> = c
        .admin
        .tokens
        .iter()
        .map(|t| (t.name.as_str(), t.role, t.kind, t.secret.is_some(), t.line))
        .collect();
    assert_eq!(
        tokens,
        [
            ("oncall", Role::Operator, TokenKind::Human, true, 5),
            (
                "dashboard.ro",
                Role::Viewer,
                TokenKind::Automation,
                false,
                11
            ),
        ]
    );

    let [support, billing, faq, plain] = c.routes.as_slice() else {
        panic!("expected four routes")
    };
    let text = "The assistant is unavailable right now; a person will answer by email.";
    assert_eq!(
        support.kill_switch,
        KillSwitchConfig {
            fallback: Some(Fallback::Text(text.into())),
            retry_after: Duration::from_secs(45),
        }
    );
    assert_eq!(
        support.limits,
        Limits {
            max_concurrency: Some(64),
            max_queue: 500,
            queue_timeout: Duration::from_millis(2500),
            requests_per_second: Some(200.0),
            user_requests_per_second: Some(0.5),
        }
    );
    let body = std::fs::read(dir.join("fallbacks/support.json")).unwrap();
    let headers = vec![
        (
            HeaderName::from_static("cache-control"),
            HeaderValue::from_static("no-store"),
        ),
        (
            HeaderName::from_static("x-fallback"),
            HeaderValue::from_static("static"),
        ),
    ];
    let expected = Fallback::Static {
        status: StatusCode::SERVICE_UNAVAILABLE,
        content_type: DEFAULT_FALLBACK_CONTENT_TYPE.into(),
        headers,
        body: Bytes::from(body),
    };
    assert_eq!(billing.kill_switch.fallback, Some(expected));
    assert_eq!(billing.kill_switch.retry_after, DEFAULT_RETRY_AFTER);
    assert_eq!(billing.limits, Limits::default());
    assert_eq!(
        faq.kill_switch.fallback,
        Some(Fallback::Upstream("faq-bot".into()))
    );
    assert_eq!(
        (
            faq.limits.max_concurrency,
            faq.limits.max_queue,
            faq.limits.queue_timeout
        ),
        (Some(8), 0, DEFAULT_QUEUE_TIMEOUT)
    );
    assert_eq!(plain.kill_switch, KillSwitchConfig::default());

    // faq-bot only serves as a fallback: that is traffic, so it is not reported as unused.
    let got: Vec<_> = c
        .warnings
        .iter()
        .map(|w| (w.key.as_str(), w.line))
        .collect();
    assert_eq!(
        got,
        [
            ("admin.tokens[1].token_env", Some(15)),
            ("routes[3].kill_switch", Some(57)),
        ]
    );
}

#[test]
fn defaults_and_static_fallback_defaults() {
    assert_eq!(DEFAULT_RETRY_AFTER, Duration::from_secs(30));
    assert_eq!(DEFAULT_QUEUE_TIMEOUT, Duration::from_secs(5));
    let l = Limits::default();
    assert_eq!(
        (
            l.max_concurrency,
            l.max_queue,
            l.requests_per_second,
            l.user_requests_per_second
        ),
        (None, 0, None, None)
    );
    let text = format!("{R}kill_switch = {{ fallback = {{ body = \"down\" }} }}\n");
    let c = parse(&text).unwrap();
    let expected = Fallback::Static {
        status: StatusCode::OK,
        content_type: "application/json".into(),
        headers: Vec::new(),
        body: Bytes::from_static(b"down"),
    };
    assert_eq!(c.routes[0].kill_switch.fallback, Some(expected));
}

const NO_FALLBACK: &str =
    "no fallback: a killed route answers 503 with Retry-After; set routes.kill_switch.fallback";

#[test]
fn routes_without_fallback_warn_at_the_route_or_the_kill_switch() {
    let text = format!(
        "{R}\n[[routes]]\nname = \"t\"\nmatch = {{ path_prefix = \"/t/\" }}\nupstream = \"a\"\n\n[routes.kill_switch]\nretry_after = \"10s\"\n\n[[routes]]\nname = \"u\"\nmatch = {{ path_prefix = \"/u/\" }}\nupstream = \"a\"\nkill_switch = {{ retry_after = \"5s\" }}\n"
    );
    let c = parse(&text).unwrap();
    let got: Vec<_> = c
        .warnings
        .iter()
        .map(|w| (w.key.as_str(), w.line, w.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("routes[0].kill_switch", Some(5), NO_FALLBACK),
            ("routes[1].kill_switch", Some(14), NO_FALLBACK),
            ("routes[2].kill_switch", Some(21), NO_FALLBACK),
            (
                "upstreams.b",
                Some(3),
                "no route sends traffic to upstream \"b\""
            ),
        ]
    );
    assert_eq!(c.routes[1].kill_switch.retry_after, Duration::from_secs(10));
    assert_eq!(
        c.warnings[0].to_string(),
        format!("gateway.toml:5: routes[0].kill_switch: {NO_FALLBACK}")
    );
}

#[test]
fn limits_that_cannot_bind_warn() {
    let text = format!(
        "{R}[routes.kill_switch]\nfallback = {{ upstream = \"b\" }}\n[routes.limits]\nmax_concurrency = 4\nqueue_timeout = \"1s\"\nrequests_per_second = 10\nuser_requests_per_second = 20\n"
    );
    let c = parse(&text).unwrap();
    let got: Vec<_> = c
        .warnings
        .iter()
        .map(|w| (w.key.as_str(), w.line))
        .collect();
    assert_eq!(
        got,
        [
            ("routes[0].limits.queue_timeout", Some(12)),
            ("routes[0].limits.user_requests_per_second", Some(14)),
        ]
    );
    assert!(
        c.warnings[0].message.contains("max_queue is 0"),
        "{}",
        c.warnings[0]
    );
    assert!(
        c.warnings[1]
            .message
            .contains("above requests_per_second (10)"),
        "{}",
        c.warnings[1]
    );
}

/// Two upstreams and one route, `a`, ending on line 7; cases add lines from line 8.
const R: &str = "[upstreams.a]\nurl = \"http://a:1\"\n[upstreams.b]\nurl = \"http://b:1\"\n[[routes]]\nname = \"r\"\nupstream = \"a\"\n";

/// (expected key, expected line, fragment of the message, lines appended to `R`)
const CORPUS: &[(&str, usize, &str, &str)] = &[
    ("routes[0].kill_switch.fallback.upstream", 9, "unknown upstream \"faq\" (known: a, b)", "[routes.kill_switch]\nfallback = { upstream = \"faq\" }\n"),
    ("routes[0].kill_switch.fallback.upstream", 9, "\"a\" is the route's own upstream", "[routes.kill_switch]\nfallback = { upstream = \"a\" }\n"),
    ("routes[0].kill_switch.fallback.upstream", 9, "text and upstream are both set; a fallback is exactly one of text, upstream, or a static response", "[routes.kill_switch]\nfallback = { text = \"x\", upstream = \"b\" }\n"),
    ("routes[0].kill_switch.fallback.text", 11, "status and text are both set", "[routes.kill_switch.fallback]\nstatus = 200\nbody = \"{}\"\ntext = \"x\"\n"),
    ("routes[0].kill_switch.fallback.body", 10, "upstream and body are both set", "[routes.kill_switch.fallback]\nupstream = \"b\"\nbody = \"{}\"\n"),
    ("routes[0].kill_switch.fallback.text", 9, "must not be empty", "[routes.kill_switch]\nfallback = { text = \" \" }\n"),
    ("routes[0].kill_switch.fallback", 9, "needs one of text, upstream, or a static response", "[routes.kill_switch]\nfallback = {}\n"),
    ("routes[0].kill_switch.fallback.status", 9, "must be an HTTP status from 100 to 599, got 700", "[routes.kill_switch]\nfallback = { status = 700 }\n"),
    ("routes[0].kill_switch.fallback.status", 9, "got 99", "[routes.kill_switch]\nfallback = { status = 99 }\n"),
    ("routes[0].kill_switch.fallback.body_file", 10, "body and body_file are both set; use one", "[routes.kill_switch.fallback]\nbody = \"{}\"\nbody_file = \"f.json\"\n"),
    ("routes[0].kill_switch.fallback.body_file", 9, "cannot read /etc/switchyard/fallbacks/missing.json", "[routes.kill_switch]\nfallback = { body_file = \"fallbacks/missing.json\" }\n"),
    ("routes[0].kill_switch.fallback.body_file", 9, "must not be empty", "[routes.kill_switch]\nfallback = { body_file = \"\" }\n"),
    ("routes[0].kill_switch.fallback.headers.\"x a\"", 9, "invalid header name \"x a\"", "[routes.kill_switch]\nfallback = { headers = { \"x a\" = \"1\" } }\n"),
    ("routes[0].kill_switch.fallback.headers.Content-Type", 9, "set it with content_type", "[routes.kill_switch]\nfallback = { headers = { \"Content-Type\" = \"text/plain\" } }\n"),
    ("routes[0].kill_switch.fallback.headers.content-length", 9, "the gateway sets it", "[routes.kill_switch]\nfallback = { headers = { \"content-length\" = \"2\" } }\n"),
    ("routes[0].kill_switch.fallback.headers.x-a", 9, "set twice (first on line 9)", "[routes.kill_switch]\nfallback = { headers = { \"X-A\" = \"1\", \"x-a\" = \"2\" } }\n"),
    ("routes[0].kill_switch.fallback.content_type", 9, "invalid content type \"\"", "[routes.kill_switch]\nfallback = { content_type = \"\" }\n"),
    ("routes[0].kill_switch.retry_after", 9, "must be greater than 0s", "[routes.kill_switch]\nretry_after = \"0s\"\n"),
    ("routes[0].kill_switch.retry_after", 8, "must be whole seconds", "kill_switch = { retry_after = \"1.5s\", fallback = { text = \"x\" } }\n"),
    ("routes[0].kill_switch.retry_after", 9, "invalid duration \"soon\"", "[routes.kill_switch]\nretry_after = \"soon\"\n"),
    ("routes[0].kill_switch.fallbak", 9, "unknown field `fallbak`", "[routes.kill_switch]\nfallbak = { text = \"x\" }\n"),
    ("routes[0].kill_switch.fallback.txt", 9, "unknown field `txt`", "[routes.kill_switch]\nfallback = { txt = \"x\" }\n"),
    ("routes[0].limits.max_concurrency", 9, "must be greater than 0, got 0", "[routes.limits]\nmax_concurrency = 0\n"),
    ("routes[0].limits.max_concurrency", 9, "must be greater than 0, got -4", "[routes.limits]\nmax_concurrency = -4\n"),
    ("routes[0].limits.max_concurrency", 9, "invalid type", "[routes.limits]\nmax_concurrency = 1.5\n"),
    ("routes[0].limits.max_queue", 10, "must not be negative, got -1", "[routes.limits]\nmax_concurrency = 4\nmax_queue = -1\n"),
    ("routes[0].limits.max_queue", 9, "max_queue needs max_concurrency", "[routes.limits]\nmax_queue = 10\n"),
    ("routes[0].limits.queue_timeout", 9, "queue_timeout needs max_concurrency", "[routes.limits]\nqueue_timeout = \"1s\"\nmax_queue = 3\n"),
    ("routes[0].limits.queue_timeout", 10, "greater than 0s", "[routes.limits]\nmax_concurrency = 4\nqueue_timeout = \"0s\"\n"),
    ("routes[0].limits.requests_per_second", 9, "must be a finite number greater than 0, got 0", "[routes.limits]\nrequests_per_second = 0\n"),
    ("routes[0].limits.requests_per_second", 9, "got -2.5", "[routes.limits]\nrequests_per_second = -2.5\n"),
    ("routes[0].limits.requests_per_second", 9, "got NaN", "[routes.limits]\nrequests_per_second = nan\n"),
    ("routes[0].limits.user_requests_per_second", 8, "got 0", "limits = { user_requests_per_second = 0.0 }\n"),
    ("routes[0].limits.max_inflight", 9, "unknown field `max_inflight`", "[routes.limits]\nmax_inflight = 3\n"),
];

#[test]
fn invalid_controls_name_key_and_line() {
    for (key, line, fragment, tail) in CORPUS {
        let text = format!("{R}{tail}");
        let Err(e) = parse(&text) else {
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
