//! `switchyard ctl`: the real binary against a real gateway's admin API.

use std::path::PathBuf;
use std::process::Command;

use switchyard::Running;

use crate::common::*;

/// What one ctl run printed and how it exited.
pub(crate) struct Out {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `switchyard ctl ARGS` with the URL and token in the environment, as an operator would.
/// Off the runtime's thread: the gateway answering it runs on this runtime.
pub(crate) async fn ctl(url: &str, token: Option<&str>, args: &[&str]) -> Out {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command
        .arg("ctl")
        .args(args)
        .env("SWITCHYARD_ADMIN_URL", url)
        .env_remove("SWITCHYARD_ADMIN_TOKEN");
    if let Some(token) = token {
        command.env("SWITCHYARD_ADMIN_TOKEN", token);
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    Out {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn config() -> String {
    one_route(
        "support",
        "http://127.0.0.1:1",
        &format!("\n{}", admin_tokens()),
    )
}

async fn started() -> (Running, String) {
    let gw = gateway(&config()).await;
    let url = format!("http://{}", gw.admin);
    (gw, url)
}

// Long: one scenario told in order; each step starts from the state the previous one left.
#[tokio::test(flavor = "multi_thread")]
async fn ctl_status_kill_status_revive_status() {
    let (_gw, url) = started().await;
    let status = ctl(&url, Some(OPERATOR), &["status"]).await;
    assert_eq!(status.code, Some(0), "{status:?}");
    assert!(status.stdout.contains("\nsupport  ok "), "{status:?}");
    assert!(status.stdout.contains("no alerts firing"), "{status:?}");

    let args = [
        "kill",
        "support",
        "--reason",
        "bad answers",
        "--percent",
        "25",
    ];
    let kill = ctl(&url, Some(OPERATOR), &args).await;
    assert_eq!(kill.code, Some(0), "{kill:?}");
    assert!(
        kill.stdout.starts_with("support KILLED (25% of users) at "),
        "{kill:?}"
    );
    assert!(
        kill.stdout.contains("in force for new requests (took "),
        "{kill:?}"
    );
    assert!(kill.stdout.contains("\nIncident inc-"), "{kill:?}");
    assert!(
        kill.stdout
            .ends_with("Revive: switchyard ctl revive support\n"),
        "{kill:?}"
    );
    assert_eq!(kill.stderr, "", "persisted, so no warning");

    let status = ctl(&url, Some(VIEWER), &["status"]).await;
    assert_eq!(status.code, Some(0), "{status:?}");
    assert!(
        status.stdout.contains("\nsupport  KILLED  up "),
        "{status:?}"
    );
    assert!(
        status.stdout.contains("killed: 25% of users, since "),
        "{status:?}"
    );
    assert!(
        status.stdout.contains("by oncall: bad answers"),
        "{status:?}"
    );
    assert!(status.stdout.contains("1 open incident"), "{status:?}");

    let revive = ctl(
        &url,
        Some(OPERATOR),
        &["revive", "support", "--reason", "fixed"],
    )
    .await;
    assert_eq!(revive.code, Some(0), "{revive:?}");
    assert!(
        revive.stdout.starts_with("support revived at "),
        "{revive:?}"
    );
    assert!(
        revive
            .stdout
            .contains("It had been killed (25% of users) since "),
        "{revive:?}"
    );

    let status = ctl(&url, Some(VIEWER), &["status"]).await;
    assert!(status.stdout.contains("\nsupport  ok "), "{status:?}");
    assert!(!status.stdout.contains("KILLED"), "{status:?}");
}

// Long: one scenario told in order; each step starts from the state the previous one left.
#[tokio::test(flavor = "multi_thread")]
async fn ctl_incidents_ack_and_audit() {
    let (_gw, url) = started().await;
    let kill = ctl(
        &url,
        Some(OPERATOR),
        &["kill", "support", "--reason", "drill"],
    )
    .await;
    assert_eq!(kill.code, Some(0), "{kill:?}");
    let listed = ctl(&url, Some(VIEWER), &["incidents", "--json"]).await;
    assert_eq!(listed.code, Some(0), "{listed:?}");
    let json: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let id = json["incidents"][0]["id"].as_str().unwrap().to_string();
    assert!(
        kill.stdout.contains(&format!("Incident {id} opened.")),
        "{kill:?}"
    );

    let table = ctl(&url, Some(VIEWER), &["incidents"]).await;
    assert!(table.stdout.starts_with("ID "), "{table:?}");
    assert!(
        table.stdout.contains(&format!("{id}  support  kill ")),
        "{table:?}"
    );
    assert!(table.stdout.contains("by oncall: drill"), "{table:?}");

    let details = ctl(&url, Some(VIEWER), &["incident", &id]).await;
    assert_eq!(details.code, Some(0), "{details:?}");
    assert!(
        details.stdout.contains("after     killed: all traffic"),
        "{details:?}"
    );
    assert!(details
        .stdout
        .contains(&format!("acked     no (switchyard ctl ack {id})")));

    let ack = ctl(&url, Some(OPERATOR), &["ack", &id, "--note", "on it"]).await;
    assert_eq!(ack.code, Some(0), "{ack:?}");
    assert!(
        ack.stdout
            .starts_with(&format!("{id} acknowledged by oncall at ")),
        "{ack:?}"
    );
    assert!(ack.stdout.contains("Note: on it"), "{ack:?}");
    let again = ctl(&url, Some(OPERATOR), &["ack", &id]).await;
    assert_eq!(again.code, Some(1), "{again:?}");
    assert!(
        again.stderr.contains("already acknowledged by oncall"),
        "{again:?}"
    );

    let audit = ctl(&url, Some(VIEWER), &["audit", "--limit", "10"]).await;
    assert_eq!(audit.code, Some(0), "{audit:?}");
    let rows: Vec<Vec<&str>> = audit
        .stdout
        .lines()
        .filter(|l| !l.starts_with(' '))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["AT", "WHO", "ACTION", "TARGET", "RESULT"],
        "{audit:?}"
    );
    assert_eq!(
        rows[1][1..],
        ["oncall", "kill", "support", "ok"],
        "{audit:?}"
    );
    assert_eq!(rows[2][1..], ["oncall", "ack", &id, "ok"], "{audit:?}");
    assert_eq!(
        rows[3][1..],
        ["oncall", "ack", &id, "rejected"],
        "{audit:?}"
    );
    assert!(audit.stdout.contains("    reason: drill\n"), "{audit:?}");
    assert!(audit.stdout.contains("    why: "), "{audit:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ctl_refusals_exit_with_the_right_code_and_never_echo_the_token() {
    let (_gw, url) = started().await;
    let wrong = ctl(&url, Some("not-a-real-token-42"), &["status"]).await;
    assert_eq!(wrong.code, Some(3), "{wrong:?}");
    assert!(wrong.stderr.starts_with(
        "error: not authenticated: set SWITCHYARD_ADMIN_TOKEN (or --token) to an admin token\n"
    ));
    assert!(
        !format!("{wrong:?}").contains("not-a-real-token-42"),
        "{wrong:?}"
    );
    let none = ctl(&url, None, &["status"]).await;
    assert_eq!(none.code, Some(3), "{none:?}");
    assert!(none.stderr.contains("(no token was given)"), "{none:?}");

    let viewer = ctl(&url, Some(VIEWER), &["kill", "support", "--reason", "x"]).await;
    assert_eq!(viewer.code, Some(3), "{viewer:?}");
    assert!(
        viewer.stderr.ends_with("this needs an operator token\n"),
        "{viewer:?}"
    );

    let typo = ctl(&url, Some(OPERATOR), &["kill", "suport", "--reason", "x"]).await;
    assert_eq!(typo.code, Some(1), "{typo:?}");
    assert!(typo.stderr.contains("the routes are: support"), "{typo:?}");

    ctl(&url, Some(OPERATOR), &["kill", "support", "--reason", "x"]).await;
    let id = ctl(&url, Some(ROBOT), &["incidents", "--json"])
        .await
        .stdout;
    let id: serde_json::Value = serde_json::from_str(&id).unwrap();
    let id = id["incidents"][0]["id"].as_str().unwrap().to_string();
    let robot = ctl(&url, Some(ROBOT), &["ack", &id]).await;
    assert_eq!(robot.code, Some(3), "{robot:?}");
    assert!(
        robot
            .stderr
            .ends_with("only a human token may acknowledge\n"),
        "{robot:?}"
    );

    let json = ctl(&url, Some(OPERATOR), &["incident", "inc-nope", "--json"]).await;
    assert_eq!(json.code, Some(1), "{json:?}");
    let body: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(body["error"]["code"], "unknown_incident", "{json:?}");
}

#[tokio::test]
async fn ctl_an_unreachable_api_exits_2_and_says_what_to_check() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let out = ctl(&url, Some(OPERATOR), &["status"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert_eq!(
        out.stderr,
        format!(
            "error: cannot reach the admin API at {url}: connection refused \
             — is switchyard running? is SWITCHYARD_ADMIN_URL right?\n"
        )
    );
    assert_eq!(out.stdout, "");
}

async fn gateway_from_file(text: &str) -> (Running, PathBuf) {
    let path = temp_dir("ctl-reload").join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    let mut config = switchyard_config::Config::load(&path).unwrap();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    crate::common::http1_from_env(&mut config);
    let gw = switchyard::start_with(config, Some(path.clone()))
        .await
        .unwrap();
    (gw, path)
}

#[tokio::test(flavor = "multi_thread")]
async fn ctl_reload_unchanged_then_rejected_names_the_line() {
    let state = temp_dir("ctl-state");
    let good = format!(
        "[server]\n[admin]\nstate_dir = \"{}\"\n{}{}",
        state.display(),
        admin_tokens(),
        one_route("support", "http://127.0.0.1:1", "")
    );
    let (gw, path) = gateway_from_file(&good).await;
    let url = format!("http://{}", gw.admin);
    let version = gw.gateway.table().version.clone();

    let same = ctl(&url, Some(OPERATOR), &["reload"]).await;
    assert_eq!(same.code, Some(0), "{same:?}");
    assert_eq!(
        same.stdout,
        format!("config {version} in force (unchanged: the file matches what is serving)\n")
    );

    let bad = good.replace("upstream = \"up\"", "upstream = \"nope\"");
    let line = bad.lines().position(|l| l.contains("\"nope\"")).unwrap() + 1;
    std::fs::write(&path, &bad).unwrap();
    let rejected = ctl(&url, Some(OPERATOR), &["reload"]).await;
    assert_eq!(rejected.code, Some(1), "{rejected:?}");
    let expected = format!(
        "error: config rejected: {}:{line}: routes[0].upstream: ",
        path.display()
    );
    assert!(rejected.stderr.starts_with(&expected), "{rejected:?}");
    assert!(
        rejected
            .stderr
            .contains(&format!("the old config keeps serving (version {version})")),
        "{rejected:?}"
    );
    let status = ctl(&url, Some(OPERATOR), &["status"]).await;
    assert!(
        status.stdout.starts_with(&format!("config {version}")),
        "{status:?}"
    );
}
