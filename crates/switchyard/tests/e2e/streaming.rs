//! Streaming: events reach the client as the upstream sends them.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use switchyard_sim::Profile;

use crate::common::*;

/// Reads a response body frame by frame: (arrival time since start, bytes).
async fn timed_frames(
    addr: std::net::SocketAddr,
    path: &str,
    body: serde_json::Value,
) -> Vec<(Duration, Bytes)> {
    let req = Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let started = Instant::now();
    let response = client().request(req).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = response.into_body();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            frames.push((started.elapsed(), data));
        }
    }
    frames
}

#[tokio::test]
async fn sse_events_reach_the_client_before_the_upstream_sends_its_last() {
    let profile = Profile {
        stream_chunks: 6,
        chunk_interval_ms: 100.0,
        completion_tokens: 12,
        ..Profile::default()
    };
    let (_sim, up) = sim(profile).await;
    let gw = gateway(&one_route("live", &format!("http://{up}"), "")).await;
    let frames = timed_frames(gw.traffic, "/v1/chat/completions", chat("gpt-4o", true)).await;
    let first = frames.first().unwrap().0;
    let last = frames.last().unwrap().0;
    // The upstream spaces six content chunks 100 ms apart: a buffering proxy would deliver
    // everything at once, at the end.
    assert!(
        last - first >= Duration::from_millis(400),
        "first {first:?}, last {last:?}"
    );
    assert!(
        frames.len() >= 6,
        "events were coalesced into {} frames",
        frames.len()
    );
    let text: String = frames
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b))
        .collect();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    gw.stop().await;
}

#[tokio::test]
async fn anthropic_streams_pass_through_event_for_event() {
    let profile = Profile {
        stream_chunks: 4,
        chunk_interval_ms: 30.0,
        completion_tokens: 8,
        ..Profile::default()
    };
    let (_sim, up) = sim(profile).await;
    let gw = gateway(&one_route("claude-live", &format!("http://{up}"), "")).await;
    let frames = timed_frames(
        gw.traffic,
        "/v1/messages",
        messages("claude-sonnet-4-6", true),
    )
    .await;
    let text: String = frames
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b))
        .collect();
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(events.first(), Some(&"message_start"));
    assert_eq!(events.last(), Some(&"message_stop"));
    assert_eq!(
        events
            .iter()
            .filter(|e| **e == "content_block_delta")
            .count(),
        4
    );
    gw.stop().await;
}
