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

fn upstream(extra: &str) -> Result<Upstream, ConfigError> {
    let text = format!("[upstreams.a]\nendpoints = [\"http://a:1\", \"http://b:1\"]\n{extra}");
    let config = crate::Config::parse(&text, "t.toml", std::path::Path::new("."))?;
    Ok(config.upstreams["a"].clone())
}

#[test]
fn health_keys_default_to_passive_only() {
    let a = upstream("").unwrap();
    assert_eq!(a.unhealthy_after, DEFAULT_UNHEALTHY_AFTER);
    assert_eq!(a.eject_for, DEFAULT_EJECT_FOR);
    assert_eq!(a.health_check, None);
}

#[test]
fn health_keys_parse() {
    let a = upstream(
        "unhealthy_after = 2\neject_for = \"30s\"\nhealth_check = { path = \"/health?deep=1\", interval = \"2s\", timeout = \"500ms\" }\n",
    )
    .unwrap();
    assert_eq!(a.unhealthy_after, 2);
    assert_eq!(a.eject_for, Duration::from_secs(30));
    let check = a.health_check.unwrap();
    assert_eq!(check.path, "/health?deep=1");
    assert_eq!(check.interval, Duration::from_secs(2));
    assert_eq!(check.timeout, Duration::from_millis(500));
    let defaults = upstream("health_check = { path = \"/h\" }\n").unwrap();
    let check = defaults.health_check.unwrap();
    assert_eq!(check.interval, DEFAULT_HEALTH_INTERVAL);
    assert_eq!(check.timeout, DEFAULT_HEALTH_TIMEOUT);
}

#[test]
fn bad_health_keys_name_key_and_line() {
    for (extra, key, line, words) in [
        (
            "unhealthy_after = 0\n",
            "upstreams.a.unhealthy_after",
            3,
            "greater than 0",
        ),
        (
            "unhealthy_after = 5000000000\n",
            "upstreams.a.unhealthy_after",
            3,
            "at most",
        ),
        (
            "eject_for = \"0s\"\n",
            "upstreams.a.eject_for",
            3,
            "greater than 0s",
        ),
        (
            "\nhealth_check = { path = \"health\" }\n",
            "upstreams.a.health_check.path",
            4,
            "absolute path",
        ),
        (
            "health_check = { path = \"/h\", interval = \"1s\", timeout = \"2s\" }\n",
            "upstreams.a.health_check.timeout",
            3,
            "must not exceed",
        ),
        (
            "health_check = { path = \"/h\", interval = \"soon\" }\n",
            "upstreams.a.health_check.interval",
            3,
            "invalid duration",
        ),
        (
            "health_check = { path = \"/h\", every = \"1s\" }\n",
            "upstreams.a.health_check",
            3,
            "every",
        ),
    ] {
        let err = upstream(extra).unwrap_err();
        assert!(err.key.starts_with(key), "{extra:?}: key {}", err.key);
        assert_eq!(err.line, Some(line), "{extra:?}: {err}");
        assert!(err.message.contains(words), "{extra:?}: {}", err.message);
    }
}
