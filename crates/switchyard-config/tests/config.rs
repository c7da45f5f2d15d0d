#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use switchyard_config::*;

#[path = "config/admin_tokens.rs"]
mod admin_tokens;
#[path = "config/notify.rs"]
mod notify;
#[path = "config/route_controls.rs"]
mod route_controls;
#[path = "config/shipped.rs"]
mod shipped;

const FULL: &str = include_str!("valid/full.toml");
const MINIMAL: &str = "[upstreams.x]\nurl = \"http://127.0.0.1:7001\"\n\n[[routes]]\nname = \"r\"\nupstream = \"x\"\n";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "gateway.toml", Path::new("/etc/switchyard"))
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

// Long: one config, its expected values key by key.
#[test]
fn full_example_parses_to_expected_values() {
    let c = parse(FULL).unwrap();
    assert_eq!(c.origin, "gateway.toml");
    assert_eq!(c.version.len(), 16);
    let tls = Tls {
        cert: PathBuf::from("/etc/switchyard/certs/gateway.pem"),
        key: PathBuf::from("/etc/switchyard/certs/gateway.key"),
    };
    assert_eq!(
        c.server,
        Server {
            tls: Some(tls),
            ..Server::default()
        }
    );
    assert_eq!(c.admin.listen, addr("127.0.0.1:9090"));
    assert_eq!(c.admin.state_dir, PathBuf::from("/etc/switchyard/var"));
    assert_eq!(
        c.log,
        Log {
            format: LogFormat::Text,
            level: "info".into()
        }
    );

    let gpt = &c.models["gpt-4o"];
    assert_eq!(gpt.context_window, 128_000);
    assert_eq!(
        (gpt.input_usd_per_mtok, gpt.output_usd_per_mtok),
        (2.5, 10.0)
    );
    assert_eq!(gpt.aliases, vec!["gpt-4o-2024-08-06".to_string()]);

    let blue = &c.upstreams["support-blue"];
    let one: http::Uri = "http://127.0.0.1:7001".parse().unwrap();
    assert_eq!(blue.target, UpstreamTarget::Endpoints(vec![one]));
    assert_eq!(
        (blue.name.as_str(), blue.line, blue.connect_timeout),
        ("support-blue", 25, Duration::from_secs(5))
    );
    let UpstreamTarget::Endpoints(pool) = &c.upstreams["pool"].target else {
        panic!("pool is not endpoints")
    };
    assert_eq!(
        pool.iter().map(|u| u.to_string()).collect::<Vec<_>>(),
        ["http://10.0.0.5:8000/", "http://10.0.0.6:8000/"]
    );
    let demo = &c.upstreams["demo"];
    assert_eq!(
        demo.target,
        UpstreamTarget::Sim {
            profile: "healthy".into()
        }
    );
    assert_eq!(demo.connect_timeout, Duration::from_secs(2));

    let r = &c.routes[0];
    assert_eq!(
        (r.name.as_str(), r.upstream.as_str(), r.line),
        ("support", "support-blue", 33)
    );
    assert_eq!(r.dialect, DialectSetting::Auto);
    let header = (
        HeaderName::from_static("x-agent"),
        HeaderValue::from_static("support"),
    );
    let matcher = RouteMatch {
        path_prefix: "/v1/".into(),
        headers: vec![header],
        host: Some("api.example.com".into()),
    };
    assert_eq!(r.matcher, matcher);
    assert_eq!(r.user_key, default_user_key());

    assert_eq!(c.alerts, Alerts::default());
    assert_eq!(
        c.budgets,
        Budgets {
            daily_tokens: Some(50_000_000),
            alert_at: 0.8,
            reset_at: Duration::from_secs(6 * 3600 + 30 * 60),
            ..Budgets::default()
        }
    );
    assert_eq!(
        c.telemetry,
        Telemetry {
            otlp_endpoint: Some("http://127.0.0.1:4318/v1/traces".parse().unwrap()),
            sampling_ratio: 0.5,
            batch_size: 256,
            batch_delay: Duration::from_secs(2),
            queue_size: 4096,
            export_timeout: Duration::from_secs(5),
            service_name: "switchyard-edge".into(),
        }
    );
    // The route has no kill-switch fallback; pool and demo are defined but no route uses them.
    let unused: Vec<_> = c
        .warnings
        .iter()
        .map(|w| (w.key.as_str(), w.line))
        .collect();
    assert_eq!(
        unused,
        [
            ("routes[0].kill_switch", Some(33)),
            ("upstreams.demo", Some(29)),
            ("upstreams.pool", Some(27))
        ]
    );
}

// Long: one config, its expected values key by key.
#[test]
fn defaults_fill_every_optional_key() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.server, Server::default());
    assert_eq!(c.server.listen, addr("127.0.0.1:8080"));
    assert_eq!(c.server.max_body_bytes, 8 * 1024 * 1024);
    assert_eq!(c.server.upstream_timeout, Duration::from_secs(300));
    assert_eq!(c.server.header_read_timeout, Duration::from_secs(10));
    assert_eq!(c.server.stream_idle_timeout, Duration::from_secs(120));
    assert!(c.server.routing_headers);
    assert_eq!(c.server.max_header_bytes, 65_536);
    assert_eq!(c.server.drain_delay, Duration::from_secs(5));
    assert_eq!(c.server.drain_timeout, Duration::from_secs(300));
    assert_eq!(c.server.trusted_hops, 0);
    assert_eq!(c.server.body_read_timeout, Duration::from_secs(60));
    assert_eq!(
        c.admin,
        Admin {
            listen: addr("127.0.0.1:9090"),
            state_dir: "/etc/switchyard/var".into(),
            tokens: Vec::new(),
            allowed_hosts: Vec::new(),
        }
    );
    assert_eq!(c.log, Log::default());
    let a = &c.alerts;
    assert_eq!(
        (a.p99_latency, a.window, a.baseline),
        (
            Duration::from_secs(30),
            Duration::from_secs(300),
            Duration::from_secs(3600)
        )
    );
    assert_eq!(
        (a.error_rate, a.traffic_spike, a.context_fill),
        (0.01, 3.0, 0.8)
    );
    assert_eq!((a.min_requests, a.queue_depth), (20, 500));
    assert_eq!(
        c.budgets,
        Budgets {
            daily_tokens: None,
            alert_at: 0.8,
            reset_at: Duration::ZERO,
            ..Budgets::default()
        }
    );
    assert_eq!(c.upstreams["x"].connect_timeout, Duration::from_secs(5));
    let r = &c.routes[0];
    assert_eq!(
        (r.dialect, &r.matcher),
        (DialectSetting::Auto, &RouteMatch::default())
    );
    let names = [
        UserKeySource::Header(HeaderName::from_static("x-user-id")),
        UserKeySource::Body("user".into()),
        UserKeySource::Body("metadata.user_id".into()),
        UserKeySource::ClientIp,
    ];
    assert_eq!(r.user_key, names);
    assert_eq!(r.kill_switch, KillSwitchConfig::default());
    assert_eq!(r.limits, Limits::default());
    assert!(c.models.is_empty());
    // The only warning: a route without a kill-switch fallback.
    let keys: Vec<_> = c
        .warnings
        .iter()
        .map(|w| (w.key.as_str(), w.line))
        .collect();
    assert_eq!(
        keys,
        [("routes[0].kill_switch", Some(4))],
        "{:?}",
        c.warnings
    );
}

#[test]
fn an_empty_fragment_parses_but_warns_about_no_routes() {
    let c = parse("").unwrap();
    assert!(c.routes.is_empty() && c.upstreams.is_empty());
    assert_eq!(c.warnings.len(), 1);
    let w = &c.warnings[0];
    assert_eq!(
        (w.key.as_str(), w.line, w.message.as_str()),
        ("routes", None, "no routes: every request answers 404")
    );
}

/// A file is what a gateway runs on: an empty or cut-off one must not load as a gateway that
/// answers 404 to everything.
#[test]
fn a_file_without_server_or_routes_is_refused_on_line_one() {
    let path = Path::new("/etc/switchyard/gateway.toml");
    let cases = [
        ("", "server", "the file is empty"),
        ("\n# nothing yet\n", "server", "needs a [server] table"),
        (MINIMAL, "server", "needs a [server] table"),
        ("[server]\n", "routes", "no routes"),
        (
            "[server]\n[upstreams.x]\nurl = \"http://127.0.0.1:7001\"\n",
            "routes",
            "no routes",
        ),
    ];
    for (text, key, fragment) in cases {
        let e = Config::load_text(path, text).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), (key, Some(1)), "{text:?}: {e}");
        assert!(e.message.contains(fragment), "{text:?}: {e}");
        assert!(
            e.to_string()
                .starts_with(&format!("/etc/switchyard/gateway.toml:1: {key}: ")),
            "{e}"
        );
    }
    // An empty [server] table is enough: every key in it has a default.
    let c = Config::load_text(path, &format!("[server]\n{MINIMAL}")).unwrap();
    assert_eq!(c.server, Server::default());
    assert_eq!(c.routes.len(), 1);
    // Errors about keys come first: they say more than "no routes".
    let e = Config::load_text(path, "[alerts]\nwindow = \"0s\"\n").unwrap_err();
    assert_eq!((e.key.as_str(), e.line), ("alerts.window", Some(2)));
}

#[test]
fn drain_keys_take_durations_and_drain_delay_may_be_zero() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(
        (c.server.drain_delay, c.server.drain_timeout),
        (Duration::from_secs(5), Duration::from_secs(300))
    );
    assert_eq!(
        (DEFAULT_DRAIN_DELAY, DEFAULT_DRAIN_TIMEOUT),
        (c.server.drain_delay, c.server.drain_timeout)
    );
    let c = parse(&format!(
        "[server]\ndrain_delay = \"0s\"\ndrain_timeout = \"1.5s\"\n{MINIMAL}"
    ))
    .unwrap();
    assert_eq!(
        (c.server.drain_delay, c.server.drain_timeout),
        (Duration::ZERO, Duration::from_millis(1500))
    );
}

#[test]
fn version_hashes_the_exact_text() {
    let a = parse(MINIMAL).unwrap().version;
    assert_eq!(a, parse(MINIMAL).unwrap().version);
    assert_ne!(a, parse(&format!("{MINIMAL}\n")).unwrap().version);
    assert!(a.chars().all(|ch| ch.is_ascii_hexdigit()));
}

#[test]
fn model_lookup_by_name_or_alias_returns_canonical_name() {
    let c = parse(FULL).unwrap();
    assert_eq!(c.model("gpt-4o").unwrap().0, "gpt-4o");
    let (name, m) = c.model("gpt-4o-2024-08-06").unwrap();
    assert_eq!((name, m.context_window), ("gpt-4o", 128_000));
    assert!(c.model("gpt-5").is_none());
}

#[test]
fn warnings_carry_key_and_line() {
    let text = r#"[upstreams.a]
url = "http://a:1"
[upstreams.idle]
url = "http://b:1"

[[routes]]
name = "raw"
dialect = "opaque"
user_key = ["header:x-user", "body:user"]
upstream = "a"

[[routes]]
name = "twin"
upstream = "a"
dialect = "opaque"
user_key = ["client_ip"]

[alerts]
window = "2h"

[budgets]
alert_at = 0.5
"#;
    let c = parse(text).unwrap();
    let got: Vec<_> = c
        .warnings
        .iter()
        .map(|w| (w.key.as_str(), w.line))
        .collect();
    assert_eq!(
        got,
        [
            ("routes[0].user_key[1]", Some(9)),
            ("routes[0].kill_switch", Some(6)),
            ("routes[1].kill_switch", Some(12)),
            ("alerts.window", Some(19)),
            ("budgets.alert_at", Some(22)),
            ("upstreams.idle", Some(3)),
            ("routes[1].match", Some(12)),
        ]
    );
    assert!(
        c.warnings[0].message.contains("opaque"),
        "{}",
        c.warnings[0]
    );
    assert!(c.warnings[5]
        .to_string()
        .starts_with("gateway.toml:3: upstreams.idle: "));
}

#[test]
fn unknown_server_key_is_reported_with_its_line() {
    let e = parse("[server]\nlisten = \"127.0.0.1:8080\"\nmax_body_byte = 10\n").unwrap_err();
    assert_eq!((e.key.as_str(), e.line), ("server.max_body_byte", Some(3)));
    assert!(e.message.contains("unknown field `max_body_byte`"), "{e}");
    assert!(
        e.message.contains("`max_body_bytes`"),
        "expected keys are listed: {e}"
    );
}

#[test]
fn error_display_matches_the_documented_shape() {
    let text = "[upstreams.demo]\nsim = { profile = \"healthy\" }\n[upstreams.support-blue]\nurl = \"http://127.0.0.1:7001\"\n\n[[routes]]\nname = \"support\"\nupstream = \"suport-blue\"\n";
    let e = parse(text).unwrap_err();
    assert_eq!(e.to_string(), "gateway.toml:8: routes[0].upstream: unknown upstream \"suport-blue\" (known: demo, support-blue)");
}

#[test]
fn load_resolves_paths_against_the_file_and_reports_read_errors() {
    let dir = std::env::temp_dir().join(format!("switchyard-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        format!("[server]\n{MINIMAL}[admin]\nstate_dir = \"state\"\n"),
    )
    .unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c.admin.state_dir, dir.join("state"));
    assert_eq!(c.origin, path.display().to_string());
    std::fs::remove_dir_all(&dir).unwrap();
    let e = Config::load(&dir.join("missing.toml")).unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (None, ""));
    assert!(!e.message.is_empty());
}

/// (expected key, expected line, fragment of the message, file text)
const CORPUS: &[(&str, usize, &str, &str)] = &[
    ("server.listen", 2, "invalid basic string", "[server]\nlisten = \"127.0.0.1:8080\nmax_body_bytes = 5\n"),
    ("upstreams.b", 8, "unclosed table", "[upstreams.a]\nurl = \"http://127.0.0.1:7001\"\n\n[[routes]]\nname = \"a\"\nupstream = \"a\"\n\n[upstreams.b"),
    ("routes[0].upstream", 4, "missing upstream", "[upstreams.a]\nurl = \"http://127.0.0.1:7001\"\n\n[[routes]]\nname = \"a\"\n"),
    ("routes[0].upstream", 6, "string values must be quoted", "[upstreams.a]\nurl = \"http://a:1\"\n\n[[routes]]\nname = \"a\"\nupstream = "),
    ("rollout", 4, "unknown field `rollout`", "[server]\nlisten = \"127.0.0.1:8080\"\n\n[rollout]\nstages = 3\n"),
    ("listen", 2, "unknown field `listen`", "# top level\nlisten = \"127.0.0.1:8080\"\n"),
    ("server.max_body_byte", 3, "expected one of", "[server]\nlisten = \"127.0.0.1:8080\"\nmax_body_byte = 10\n"),
    ("routes[0].timeout", 7, "unknown field `timeout`", "[upstreams.a]\nurl = \"http://a:1\"\n\n[[routes]]\nname = \"a\"\nupstream = \"a\"\ntimeout = \"5s\"\n"),
    ("routes[0].match.bogus", 3, "unknown field `bogus`", "[[routes]]\nname = \"a\"\nmatch = { path_prefix = \"/\", bogus = 1 }\nupstream = \"a\"\n"),
    ("models.x.price", 3, "unknown field `price`", "[models.x]\ncontext_window = 8\nprice = 1\n"),
    ("server.max_body_bytes", 2, "invalid type", "[server]\nmax_body_bytes = \"8MB\"\n"),
    ("routes[0].name", 1, "missing field `name`", "[[routes]]\nupstream = \"a\"\n"),
    ("routes[0].upstream", 8, "unknown upstream \"suport-blue\" (known: demo, support-blue)", "[upstreams.demo]\nsim = { profile = \"healthy\" }\n[upstreams.support-blue]\nurl = \"http://127.0.0.1:7001\"\n\n[[routes]]\nname = \"support\"\nupstream = \"suport-blue\"\n"),
    ("routes[1].name", 9, "duplicate route name \"a\" (first defined on line 4)", "[upstreams.a]\nurl = \"http://a:1\"\n\n[[routes]]\nname = \"a\"\nupstream = \"a\"\n\n[[routes]]\nname = \"a\"\nupstream = \"a\"\n"),
    ("routes[0].name", 2, "invalid route name", "[[routes]]\nname = \"Support\"\nupstream = \"a\"\n"),
    ("alerts.window", 2, "invalid duration \"10 minutes\"", "[alerts]\nwindow = \"10 minutes\"\n"),
    ("alerts.window", 3, "greater than 0s", "[alerts]\np99_latency = \"1s\"\nwindow = \"0s\"\n"),
    ("upstreams.a.connect_timeout", 3, "greater than 0s", "[upstreams.a]\nurl = \"http://a:1\"\nconnect_timeout = \"0ms\"\n"),
    ("upstreams.a.url", 2, "unsupported scheme \"ftp\"", "[upstreams.a]\nurl = \"ftp://x\"\n"),
    ("upstreams.pool.endpoints[1]", 2, "needs a scheme", "[upstreams.pool]\nendpoints = [\"http://a:1\", \"b:1\"]\n"),
    ("upstreams.pool.endpoints", 3, "at least one", "\n[upstreams.pool]\nendpoints = []\n"),
    ("upstreams.a.sim", 3, "url and sim are both set", "[upstreams.a]\nurl = \"http://a:1\"\nsim = { profile = \"healthy\" }\n"),
    ("upstreams.a", 2, "exactly one of url, endpoints or sim", "\n[upstreams.a]\nconnect_timeout = \"1s\"\n"),
    ("upstreams.a.url", 3, "duplicate key", "[upstreams.a]\nurl = \"http://a:1\"\nurl = \"http://b:1\"\n"),
    ("alerts.error_rate", 2, "between 0 and 1", "[alerts]\nerror_rate = 1.5\n"),
    ("alerts.traffic_spike", 2, "greater than 1", "[alerts]\ntraffic_spike = 1.0\n"),
    ("budgets.daily_tokens", 2, "greater than 0", "[budgets]\ndaily_tokens = 0\n"),
    ("budgets.reset_at", 3, "invalid time of day \"24:00\"", "[budgets]\ndaily_tokens = 10\nreset_at = \"24:00\"\n"),
    ("budgets.reset_at", 2, "expected \"HH:MM\"", "[budgets]\nreset_at = \"6:00\"\n"),
    ("budgets.reset_at", 2, "invalid type", "[budgets]\nreset_at = 600\n"),
    ("budgets.enforce", 2, "invalid type", "[budgets]\nenforce = \"yes\"\ndaily_tokens = 10\n"),
    ("budgets.outage_policy", 3, "unknown policy \"open\"", "[budgets]\ndaily_tokens = 10\noutage_policy = \"open\"\n"),
    ("budgets.reservation_ttl", 3, "invalid duration", "[budgets]\ndaily_tokens = 10\nreservation_ttl = \"forever\"\n"),
    ("routes[0].match.header.\"x agent\"", 5, "invalid header name", "[upstreams.a]\nurl = \"http://a:1\"\n[[routes]]\nname = \"a\"\nmatch = { header = { \"x agent\" = \"support\" } }\nupstream = \"a\"\n"),
    ("routes[0].match.header.x-agent", 4, "matched twice (first on line 4)", "[upstreams.a]\nurl = \"http://a:1\"\n[[routes]]\nmatch = { header = { \"X-Agent\" = \"a\", \"x-agent\" = \"b\" } }\nname = \"a\"\nupstream = \"a\"\n"),
    ("routes[0].match.host", 4, "invalid host", "[upstreams.a]\nurl = \"http://a:1\"\n[[routes]]\nmatch = { host = \"api example.com\" }\nname = \"a\"\nupstream = \"a\"\n"),
    ("routes[0].match.path_prefix", 4, "must start with", "[upstreams.a]\nurl = \"http://a:1\"\n[[routes]]\nmatch = { path_prefix = \"v1/\" }\nname = \"a\"\nupstream = \"a\"\n"),
    ("routes[0].user_key[1]", 5, "unknown user_key source \"cookie:x\"", "[upstreams.a]\nurl = \"http://a:1\"\n[[routes]]\nname = \"a\"\nuser_key = [\"client_ip\", \"cookie:x\"]\nupstream = \"a\"\n"),
    ("routes[0].dialect", 3, "unknown variant `gpt`", "[[routes]]\nname = \"a\"\ndialect = \"gpt\"\nupstream = \"a\"\n"),
    ("admin.listen", 4, "the admin API needs its own address", "[server]\nlisten = \"127.0.0.1:9000\"\n[admin]\nlisten = \"127.0.0.1:9000\"\n"),
    ("server.listen", 2, "admin.listen (default)", "[server]\nlisten = \"127.0.0.1:9090\"\n"),
    ("server.listen", 2, "invalid socket address", "[server]\nlisten = \"localhost:8080\"\n"),
    ("server.max_header_bytes", 2, "at least 8192", "[server]\nmax_header_bytes = 1024\n"),
    ("server.drain_delay", 3, "invalid duration \"5\"", "[server]\nlisten = \"127.0.0.1:8080\"\ndrain_delay = \"5\"\n"),
    ("server.drain_delay", 2, "invalid type", "[server]\ndrain_delay = 5\n"),
    ("server.body_read_timeout", 2, "greater than 0s", "[server]\nbody_read_timeout = \"0s\"\n"),
    ("server.trusted_hops", 2, "between 0 and 16, got 17", "[server]\ntrusted_hops = 17\n"),
    ("server.drain_timeout", 2, "greater than 0s", "[server]\ndrain_timeout = \"0s\"\n"),
    ("server.drain_timeout", 2, "unknown unit", "[server]\ndrain_timeout = \"5 min\"\n"),
    ("server.tls.key", 2, "missing field `key`", "[server]\ntls = { cert = \"a.pem\" }\n"),
    ("models.gpt-4o.context_window", 2, "greater than 0", "[models.\"gpt-4o\"]\ncontext_window = 0\n"),
    ("models.b.aliases[0]", 5, "already a model name", "[models.a]\ncontext_window = 8\n[models.b]\ncontext_window = 8\naliases = [\"a\"]\n"),
    ("log.format", 2, "unknown variant `yaml`", "[log]\nformat = \"yaml\"\n"),
    ("telemetry.otlp_endpoint", 2, "unsupported scheme \"grpc\"", "[telemetry]\notlp_endpoint = \"grpc://127.0.0.1:4317\"\n"),
    ("telemetry.sampling_ratio", 3, "between 0 and 1", "[telemetry]\notlp_endpoint = \"http://c:4318/v1/traces\"\nsampling_ratio = 2.0\n"),
    ("telemetry.batch_size", 2, "between 1 and 1048576", "[telemetry]\nbatch_size = 0\n"),
    ("telemetry.queue_size", 3, "between 1 and 1048576", "[telemetry]\n\nqueue_size = 0\n"),
    ("telemetry.export_timeout", 2, "greater than 0s", "[telemetry]\nexport_timeout = \"0s\"\n"),
    ("telemetry.batch_delay", 2, "invalid duration", "[telemetry]\nbatch_delay = \"soon\"\n"),
    ("telemetry.endpoint", 2, "unknown field `endpoint`", "[telemetry]\nendpoint = \"http://c:4318\"\n"),
];

#[test]
fn telemetry_defaults_and_values() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.telemetry, Telemetry::default());
    assert_eq!(c.telemetry.otlp_endpoint, None);
    assert_eq!(c.telemetry.sampling_ratio, 1.0);
    let text = format!(
        "{MINIMAL}[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318/v1/traces\"\n\
         sampling_ratio = 0.25\nbatch_size = 64\nbatch_delay = \"200ms\"\nqueue_size = 1000\n\
         export_timeout = \"2s\"\nservice_name = \"edge-gw\"\n"
    );
    let t = parse(&text).unwrap().telemetry;
    assert_eq!(
        t.otlp_endpoint.unwrap().to_string(),
        "http://127.0.0.1:4318/v1/traces"
    );
    assert_eq!(t.sampling_ratio, 0.25);
    assert_eq!((t.batch_size, t.queue_size), (64, 1000));
    assert_eq!(t.batch_delay, Duration::from_millis(200));
    assert_eq!(t.export_timeout, Duration::from_secs(2));
    assert_eq!(t.service_name, "edge-gw");
}

#[test]
fn invalid_corpus_names_key_and_line() {
    assert!(CORPUS.len() >= 15);
    for (key, line, fragment, text) in CORPUS {
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
        assert_eq!(e.origin, "gateway.toml");
    }
}

/// docs/config.schema.json is generated from the spec types; a change to them must regenerate it.
#[test]
fn the_committed_json_schema_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.schema.json");
    let generated = format!(
        "{}\n",
        serde_json::to_string_pretty(&json_schema()).unwrap()
    );
    if std::env::var_os("SWITCHYARD_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/config.schema.json is out of date with the config types; regenerate it with \
         `switchyard schema > docs/config.schema.json` \
         (or SWITCHYARD_BLESS=1 cargo test -p switchyard-config --test config json_schema)"
    );
}
