//! The files shipped under tests/valid and tests/invalid.

use std::path::Path;

use switchyard_config::*;

#[test]
fn shipped_valid_file_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/valid/full.toml");
    let c = Config::load(&path).unwrap();
    assert_eq!(
        c.server.tls.unwrap().cert,
        path.parent().unwrap().join("certs/gateway.pem")
    );
}

/// Every file in tests/invalid starts with `# expect: <key> <line>`.
#[test]
fn shipped_invalid_files_fail_at_the_expected_key_and_line() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap();
        let (key, line) = expect.rsplit_once(' ').unwrap();
        let e = Config::load(&path).unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.line),
            (key, Some(line.parse().unwrap())),
            "{}: {e}",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 6, "only {checked} invalid files");
}
