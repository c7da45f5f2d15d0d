//! Metering: tokens, cost and context fill for both dialects, streaming and not.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use switchyard_sim::Profile;

use crate::common::*;

fn sse_usage(text: &str) -> serde_json::Value {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .rfind(|v| v.get("usage").is_some_and(|u| !u.is_null()))
        .map(|v| v["usage"].clone())
        .expect("a usage chunk")
}

async fn assert_tokens(
    gw: &switchyard::Running,
    route: &str,
    model: &str,
    prompt: u64,
    completion: u64,
) {
    let m = eventually_metrics(gw, "the exchange", |m| {
        metric(m, "switchyard_requests_total", &[("route", route)]) == 1.0
    })
    .await;
    let labels = |dir| [("route", route), ("model", model), ("direction", dir)];
    assert_eq!(
        metric(&m, "switchyard_tokens_total", &labels("prompt")),
        prompt as f64
    );
    assert_eq!(
        metric(&m, "switchyard_tokens_total", &labels("completion")),
        completion as f64
    );
    assert_eq!(
        metric(
            &m,
            "switchyard_context_fill_ratio_count",
            &[("route", route)]
        ),
        1.0
    );
    let (input, output) = if model == "gpt-4o" {
        (2.5, 10.0)
    } else {
        (3.0, 15.0)
    };
    let cost = (prompt as f64 * input + completion as f64 * output) / 1e6;
    let seen = metric(&m, "switchyard_cost_usd_total", &[("route", route)]);
    assert!((seen - cost).abs() < 1e-9, "cost {seen} != {cost}");
    assert!(m.contains("# TYPE switchyard_cost_usd_total counter"));
}

#[tokio::test]
async fn openai_json_usage_is_counted() {
    let (_sim, up) = sim(Profile::default()).await;
    let gw = gateway(&one_route("m-openai-json", &format!("http://{up}"), "")).await;
    let answer = post_json(
        gw.traffic,
        "/v1/chat/completions",
        &[],
        chat("gpt-4o", false),
    )
    .await;
    let usage = &answer.json()["usage"];
    let (p, c) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    );
    assert!(p > 0 && c > 0);
    assert_tokens(&gw, "m-openai-json", "gpt-4o", p, c).await;
    gw.stop().await;
}

#[tokio::test]
async fn openai_stream_usage_is_counted_from_the_final_chunk() {
    let (_sim, up) = sim(Profile {
        token_inflation: 3.0,
        ..Profile::default()
    })
    .await;
    let gw = gateway(&one_route("m-openai-sse", &format!("http://{up}"), "")).await;
    let answer = post_json(
        gw.traffic,
        "/v1/chat/completions",
        &[],
        chat("gpt-4o", true),
    )
    .await;
    let usage = sse_usage(&String::from_utf8_lossy(&answer.body));
    let (p, c) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    );
    assert_tokens(&gw, "m-openai-sse", "gpt-4o", p, c).await;
    gw.stop().await;
}

#[tokio::test]
async fn anthropic_json_usage_is_counted() {
    let (_sim, up) = sim(Profile::default()).await;
    let gw = gateway(&one_route("m-claude-json", &format!("http://{up}"), "")).await;
    let answer = post_json(
        gw.traffic,
        "/v1/messages",
        &[],
        messages("claude-sonnet-4-6", false),
    )
    .await;
    let usage = &answer.json()["usage"];
    let (p, c) = (
        usage["input_tokens"].as_u64().unwrap(),
        usage["output_tokens"].as_u64().unwrap(),
    );
    assert_tokens(&gw, "m-claude-json", "claude-sonnet-4-6", p, c).await;
    gw.stop().await;
}

#[tokio::test]
async fn anthropic_stream_usage_takes_input_from_start_and_cumulative_output_from_delta() {
    let (_sim, up) = sim(Profile {
        stream_chunks: 5,
        completion_tokens: 40,
        ..Profile::default()
    })
    .await;
    let gw = gateway(&one_route("m-claude-sse", &format!("http://{up}"), "")).await;
    let answer = post_json(
        gw.traffic,
        "/v1/messages",
        &[],
        messages("claude-sonnet-4-6", true),
    )
    .await;
    let text = String::from_utf8_lossy(&answer.body).to_string();
    let datas: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    let start = datas.iter().find(|d| d["type"] == "message_start").unwrap();
    let delta = datas
        .iter()
        .rev()
        .find(|d| d["type"] == "message_delta")
        .unwrap();
    let p = start["message"]["usage"]["input_tokens"].as_u64().unwrap();
    let c = delta["usage"]["output_tokens"].as_u64().unwrap();
    assert_eq!(c, 40);
    assert_tokens(&gw, "m-claude-sse", "claude-sonnet-4-6", p, c).await;
    gw.stop().await;
}

#[tokio::test]
async fn a_cancelled_stream_is_still_recorded_with_what_was_seen() {
    let profile = Profile {
        stream_chunks: 20,
        chunk_interval_ms: 100.0,
        completion_tokens: 40,
        ..Profile::default()
    };
    let (_sim, up) = sim(profile).await;
    let gw = gateway(&one_route("m-cancel", &format!("http://{up}"), "")).await;
    let req = Request::post(format!("http://{}/v1/messages", gw.traffic))
        .body(Full::new(Bytes::from(
            messages("claude-sonnet-4-6", true).to_string(),
        )))
        .unwrap();
    let mut body = client().request(req).await.unwrap().into_body();
    let mut seen = String::new();
    while !seen.contains("content_block_delta") {
        let frame = body.frame().await.unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(frame.data_ref().unwrap()));
    }
    let start = seen
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .next()
        .unwrap();
    let input = serde_json::from_str::<serde_json::Value>(start).unwrap()["message"]["usage"]
        ["input_tokens"]
        .as_u64()
        .unwrap();
    drop(body);
    let m = eventually_metrics(&gw, "the cancelled exchange", |m| {
        metric(m, "switchyard_requests_total", &[("route", "m-cancel")]) == 1.0
    })
    .await;
    let prompt = metric(
        &m,
        "switchyard_tokens_total",
        &[("route", "m-cancel"), ("direction", "prompt")],
    );
    assert_eq!(
        prompt, input as f64,
        "message_start's input tokens survive the cancel"
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    gw.stop().await;
}

#[tokio::test]
async fn context_fill_is_measured_against_the_models_window() {
    let (_sim, up) = sim(Profile::default()).await;
    let mut body = chat("gpt-4o", false);
    body["messages"][1]["content"] = serde_json::Value::String("word ".repeat(400));
    let (dialect, op) = switchyard_llm::classify(
        switchyard_llm::DialectSetting::Auto,
        "POST",
        "/v1/chat/completions",
    );
    let estimate = switchyard_llm::inspect(dialect, op, body.to_string().as_bytes(), &[])
        .prompt_tokens_estimate;
    // A window the request fills to 85 %.
    let window = (estimate as f64 / 0.85).round() as u64;
    let config = one_route("m-fill", &format!("http://{up}"), "").replace(
        "context_window = 128000",
        &format!("context_window = {window}"),
    );
    let gw = gateway(&config).await;
    let answer = post_json(gw.traffic, "/v1/chat/completions", &[], body).await;
    assert_eq!(answer.status, 200);
    let m = eventually_metrics(&gw, "the fill", |m| {
        metric(
            m,
            "switchyard_context_fill_ratio_count",
            &[("route", "m-fill")],
        ) == 1.0
    })
    .await;
    let below_80 = metric(
        &m,
        "switchyard_context_fill_ratio_bucket",
        &[("route", "m-fill"), ("le", "0.8")],
    );
    let below_95 = metric(
        &m,
        "switchyard_context_fill_ratio_bucket",
        &[("route", "m-fill"), ("le", "0.95")],
    );
    assert_eq!(
        (below_80, below_95),
        (0.0, 1.0),
        "fill lands between 0.8 and 0.95"
    );
    gw.stop().await;
}
