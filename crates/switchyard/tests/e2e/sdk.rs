//! The official OpenAI and Anthropic SDKs parse what the gateway sends: upstream answers and
//! kill-switch fallbacks, JSON and streamed.

use std::process::Command;

use switchyard_sim::Profile;

use crate::common::*;

const TEXT: &str = "The assistant is resting. A person will answer by email.";

/// Runs the SDK script against the gateway; `None` when the SDKs are not installed here.
fn sdk_run(gw: &switchyard::Running) -> Option<serde_json::Value> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/clients.py");
    let probe = Command::new("python3")
        .args(["-c", "import openai, anthropic"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs the SDKs: pip install openai anthropic"
        );
        eprintln!(
            "note: the openai and anthropic Python SDKs are not installed; SDK checks skipped"
        );
        return None;
    }
    let out = Command::new("python3")
        .arg(script)
        .arg(format!("http://{}", gw.traffic))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "SDK client failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_clients_parse_upstream_answers_and_fallbacks() {
    let (_sim, up) = sim(Profile {
        completion_tokens: 12,
        stream_chunks: 3,
        ..Profile::default()
    })
    .await;
    let config = format!(
        "{}{}[routes.kill_switch]\nfallback = {{ text = \"{TEXT}\" }}\n",
        admin_tokens(),
        one_route("sdk", &format!("http://{up}"), "")
    );
    let gw = gateway(&config).await;
    let Some(live) = tokio::task::block_in_place(|| sdk_run(&gw)) else {
        return gw.stop().await;
    };
    for key in [
        "openai",
        "openai_stream",
        "responses",
        "responses_stream",
        "anthropic",
        "anthropic_stream",
    ] {
        let text = live[key].as_str().unwrap();
        assert!(!text.is_empty() && text != TEXT, "{key}: {text:?}");
    }
    let killed = admin(
        &gw,
        "POST",
        "/admin/routes/sdk/kill",
        OPERATOR,
        Some(serde_json::json!({"reason": "sdk drill"})),
    )
    .await;
    assert_eq!(killed.status, 200);
    let fallback = tokio::task::block_in_place(|| sdk_run(&gw)).unwrap();
    for key in [
        "openai",
        "openai_stream",
        "responses",
        "responses_stream",
        "anthropic",
        "anthropic_stream",
    ] {
        assert_eq!(fallback[key], TEXT, "{key}");
    }
    gw.stop().await;
}
