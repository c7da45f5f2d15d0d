use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use serde_json::json;

use crate::ctl::client::{normalise_url, parse_timeout, segment, Reply, Source};
use crate::ctl::commands::refusal;
use crate::ctl::{parse_percent, parse_segment, CtlArgs, CtlCommand, Failure};

fn answer(status: u16, body: serde_json::Value) -> Reply {
    Reply {
        status,
        body: Bytes::from(body.to_string()),
    }
}

fn error(status: u16, code: &str, message: &str) -> Failure {
    let reply = answer(status, json!({"error": {"code": code, "message": message}}));
    refusal(&reply, true, "/admin/x")
}

#[test]
fn ctl_errors_401_says_how_to_authenticate() {
    let reply = answer(
        401,
        json!({"error": {"code": "unauthorized", "message": "send it"}}),
    );
    let failure = refusal(&reply, false, "/admin/status");
    assert_eq!(failure.exit, 3);
    assert_eq!(
        failure.message,
        "not authenticated: set SWITCHYARD_ADMIN_TOKEN (or --token) to an admin token"
    );
    assert_eq!(failure.hints, ["(no token was given)"]);
    let with_token = refusal(&reply, true, "/admin/status");
    assert_eq!(with_token.hints, ["(the token given was not accepted)"]);
}

#[test]
fn ctl_errors_403_keeps_the_server_message_and_names_the_token_needed() {
    let viewer = error(403, "forbidden", "it needs a token with role operator");
    assert_eq!(viewer.exit, 3);
    assert_eq!(viewer.message, "it needs a token with role operator");
    assert_eq!(viewer.hints, ["this needs an operator token"]);
    let bot = error(403, "humans_only", "automation tokens may not acknowledge");
    assert_eq!(bot.exit, 3);
    assert_eq!(bot.hints, ["only a human token may acknowledge"]);
}

#[test]
fn ctl_errors_404_and_other_refusals_exit_1_with_the_server_message() {
    let route = error(
        404,
        "unknown_route",
        "no route \"suport\"; the routes are: support",
    );
    assert_eq!(
        (route.exit, route.message.as_str()),
        (1, "no route \"suport\"; the routes are: support")
    );
    assert_eq!(route.hints, ["`switchyard ctl status` lists the routes"]);
    let endpoint = error(404, "not_found", "no such admin endpoint");
    assert!(
        endpoint.hints[0].contains("does not serve /admin/x"),
        "{:?}",
        endpoint.hints
    );
    let acked = error(
        409,
        "already_acknowledged",
        "inc-1 was already acknowledged by bob",
    );
    assert_eq!(
        (acked.exit, acked.message.as_str()),
        (1, "inc-1 was already acknowledged by bob")
    );
    let bad = error(400, "bad_request", "reason is required");
    assert_eq!((bad.exit, bad.message.as_str()), (1, "reason is required"));
    assert!(
        bad.body.is_some(),
        "--json still prints the server's answer"
    );
}

#[test]
fn ctl_errors_a_non_json_answer_is_quoted() {
    let reply = Reply {
        status: 502,
        body: Bytes::from_static(b"Bad Gateway\n"),
    };
    let failure = refusal(&reply, true, "/admin/status");
    assert_eq!(failure.exit, 1);
    assert_eq!(
        failure.message,
        "the admin API answered HTTP 502: Bad Gateway"
    );
}

#[test]
fn ctl_errors_a_rejected_reload_names_the_line_and_keeps_the_old_config() {
    let reply = answer(
        422,
        json!({"result": "rejected", "config_version": "1a2b",
        "error": {"code": "config_rejected",
                  "message": "gateway.toml:12: routes[0].upstream: unknown upstream \"nope\""}}),
    );
    let failure = refusal(&reply, true, "/admin/reload");
    assert_eq!(failure.exit, 1);
    assert_eq!(
        failure.message,
        "config rejected: gateway.toml:12: routes[0].upstream: unknown upstream \"nope\""
    );
    assert_eq!(
        failure.hints,
        ["the old config keeps serving (version 1a2b); fix the file, `switchyard check`, then reload again"]
    );
}

#[test]
fn ctl_urls() {
    let ok = |raw| normalise_url(raw, Source::Env).unwrap();
    assert_eq!(ok("http://127.0.0.1:9090/"), "http://127.0.0.1:9090");
    assert_eq!(ok("127.0.0.1:9090"), "http://127.0.0.1:9090");
    assert_eq!(
        ok(" http://admin.internal:9090/gw "),
        "http://admin.internal:9090/gw"
    );
    let https = normalise_url("https://gw:9090", Source::Flag).unwrap_err();
    assert_eq!(https.exit, 2);
    assert!(https.message.contains("(from --url)"), "{}", https.message);
    assert!(
        https.message.contains("plain HTTP only"),
        "{}",
        https.message
    );
    assert!(normalise_url("http://", Source::Env).is_err());
    assert!(normalise_url("http://gw:9090/?x=1", Source::Env).is_err());
}

#[test]
fn ctl_path_segments_are_escaped() {
    assert_eq!(segment("support"), "support");
    assert_eq!(
        segment("inc-20261122T113000Z-3f9a"),
        "inc-20261122T113000Z-3f9a"
    );
    assert_eq!(segment("a/b c"), "a%2Fb%20c");
}

#[test]
fn ctl_flag_values() {
    assert_eq!(parse_timeout("10s"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_timeout("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_timeout("3"), Ok(Duration::from_secs(3)));
    assert!(parse_timeout("0s").is_err() && parse_timeout("10h").is_err());
    assert_eq!(parse_percent("25"), Ok(25.0));
    assert_eq!(parse_percent("12.5%"), Ok(12.5));
    assert!(parse_percent("0").is_err() && parse_percent("101").is_err());
    assert!(parse_percent("NaN").is_err());
    assert_eq!(
        parse_segment("x-tenant=acme"),
        Ok(("x-tenant".into(), "acme".into()))
    );
    assert!(parse_segment("x-tenant").is_err() && parse_segment("=acme").is_err());
}

#[derive(Parser)]
struct Harness {
    #[command(flatten)]
    ctl: CtlArgs,
}

#[test]
fn ctl_command_line_takes_shared_flags_after_the_command() {
    let h = Harness::try_parse_from([
        "ctl",
        "status",
        "--json",
        "--url",
        "gw:1",
        "--timeout",
        "2s",
    ])
    .unwrap();
    assert!(h.ctl.json);
    assert_eq!(h.ctl.url.as_deref(), Some("gw:1"));
    assert_eq!(h.ctl.timeout, Duration::from_secs(2));
    let h = Harness::try_parse_from([
        "ctl",
        "kill",
        "support",
        "--reason",
        "bad",
        "--percent",
        "25%",
        "--segment",
        "x-t=a",
    ])
    .unwrap();
    match h.ctl.command {
        CtlCommand::Kill {
            route,
            reason,
            percent,
            segment,
        } => {
            assert_eq!(
                (route.as_str(), reason.as_str(), percent),
                ("support", "bad", Some(25.0))
            );
            assert_eq!(segment, Some(("x-t".into(), "a".into())));
        }
        _ => panic!("not a kill"),
    }
    assert!(
        Harness::try_parse_from(["ctl", "kill", "support"]).is_err(),
        "a reason is required"
    );
    assert!(Harness::try_parse_from(["ctl", "kill", "support", "--reason", ""]).is_err());
    assert!(Harness::try_parse_from(["ctl", "audit", "--limit", "5000"]).is_err());
}
