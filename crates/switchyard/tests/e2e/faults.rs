//! Faults and bad input: clear answers, never a crash or a hang.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use switchyard_sim::{MidStream, Profile};

use crate::common::*;

fn streaming_profile(chunks: u32, interval_ms: f64) -> Profile {
    Profile {
        stream_chunks: chunks,
        chunk_interval_ms: interval_ms,
        completion_tokens: chunks * 2,
        ..Profile::default()
    }
}

#[tokio::test]
async fn refused_upstream_is_a_502_in_each_dialect() {
    let gw = gateway(&one_route("refused", "http://127.0.0.1:9", "")).await;
    let openai = post_json(
        gw.traffic,
        "/v1/chat/completions",
        &[],
        chat("gpt-4o", false),
    )
    .await;
    assert_eq!(openai.status, 502);
    let json = openai.json();
    assert_eq!(json["error"]["code"], "upstream_connect_failed", "{json}");
    assert_eq!(json["error"]["type"], "server_error");
    let anthropic = post_json(
        gw.traffic,
        "/v1/messages",
        &[],
        messages("claude-sonnet-4-6", false),
    )
    .await;
    assert_eq!(anthropic.status, 502);
    let json = anthropic.json();
    assert_eq!(json["type"], "error");
    assert_eq!(json["error"]["type"], "api_error", "{json}");
    let m = eventually_metrics(&gw, "connect errors", |m| {
        metric(
            m,
            "switchyard_upstream_errors_total",
            &[("route", "refused"), ("class", "connect")],
        ) == 2.0
    })
    .await;
    assert_eq!(
        metric(&m, "switchyard_tokens_total", &[("route", "refused")]),
        0.0,
        "a refused request costs no tokens"
    );
    gw.stop().await;
}

#[tokio::test]
async fn no_response_headers_within_the_timeout_is_a_504() {
    let (_sim, up) = sim(Profile {
        hang_before_headers: true,
        ..Profile::default()
    })
    .await;
    let config = format!(
        "[server]\nupstream_timeout = \"300ms\"\n{}",
        one_route("slowpoke", &format!("http://{up}"), "")
    );
    let gw = gateway(&config).await;
    let started = Instant::now();
    let answer = post_json(
        gw.traffic,
        "/v1/chat/completions",
        &[],
        chat("gpt-4o", false),
    )
    .await;
    assert_eq!(answer.status, 504);
    assert_eq!(answer.json()["error"]["code"], "upstream_timeout");
    assert!(started.elapsed() < Duration::from_secs(3));
    eventually_metrics(&gw, "timeout errors", |m| {
        metric(
            m,
            "switchyard_upstream_errors_total",
            &[("route", "slowpoke"), ("class", "timeout")],
        ) == 1.0
    })
    .await;
    gw.stop().await;
}

#[tokio::test]
async fn an_upstream_reset_mid_stream_breaks_the_client_stream_without_a_final_chunk() {
    let profile = Profile {
        fail_mid_stream: Some(MidStream::Reset { after_chunks: 2 }),
        ..streaming_profile(8, 20.0)
    };
    let (_sim, up) = sim(profile).await;
    let gw = gateway(&one_route("resets", &format!("http://{up}"), "")).await;
    let body = chat("gpt-4o", true).to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let wire = String::from_utf8_lossy(&raw(gw.traffic, request.as_bytes()).await).to_string();
    assert!(wire.starts_with("HTTP/1.1 200"), "{wire}");
    assert!(wire.contains("transfer-encoding: chunked"), "{wire}");
    assert!(
        wire.contains("data: {"),
        "events before the reset reach the client: {wire}"
    );
    assert!(!wire.contains("[DONE]"), "no made-up end of stream: {wire}");
    assert!(
        !wire.ends_with("0\r\n\r\n"),
        "no final chunk after a reset: {wire}"
    );
    eventually_metrics(&gw, "reset errors", |m| {
        metric(
            m,
            "switchyard_upstream_errors_total",
            &[("route", "resets"), ("class", "reset")],
        ) == 1.0
    })
    .await;
    gw.stop().await;
}

#[tokio::test]
async fn a_silent_stream_is_ended_by_the_idle_timeout() {
    let profile = Profile {
        fail_mid_stream: Some(MidStream::Hang { after_chunks: 1 }),
        ..streaming_profile(8, 10.0)
    };
    let (_sim, up) = sim(profile).await;
    let config = format!(
        "[server]\nstream_idle_timeout = \"300ms\"\n{}",
        one_route("idle", &format!("http://{up}"), "")
    );
    let gw = gateway(&config).await;
    let req = Request::post(format!("http://{}/v1/chat/completions", gw.traffic))
        .body(Full::new(Bytes::from(chat("gpt-4o", true).to_string())))
        .unwrap();
    let response = client().request(req).await.unwrap();
    assert_eq!(response.status(), 200);
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(5), response.into_body().collect())
        .await
        .unwrap();
    assert!(
        result.is_err(),
        "the client sees the stream fail, not end cleanly"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    eventually_metrics(&gw, "idle timeout", |m| {
        metric(
            m,
            "switchyard_upstream_errors_total",
            &[("route", "idle"), ("class", "timeout")],
        ) == 1.0
    })
    .await;
    gw.stop().await;
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_the_upstream_request() {
    let profile = Profile {
        fail_mid_stream: Some(MidStream::Hang { after_chunks: 1 }),
        ..streaming_profile(8, 10.0)
    };
    let (sim, up) = sim(profile).await;
    let gw = gateway(&one_route("walkaway", &format!("http://{up}"), "")).await;
    let req = Request::post(format!("http://{}/v1/chat/completions", gw.traffic))
        .body(Full::new(Bytes::from(chat("gpt-4o", true).to_string())))
        .unwrap();
    let response = client().request(req).await.unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    assert_eq!(sim.in_flight(), 1);
    drop(body);
    let deadline = Instant::now() + Duration::from_secs(3);
    while sim.in_flight() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        sim.in_flight(),
        0,
        "the upstream request outlived its client"
    );
    eventually_metrics(&gw, "the cancelled request", |m| {
        metric(m, "switchyard_requests_total", &[("route", "walkaway")]) == 1.0
    })
    .await;
    gw.stop().await;
}

#[tokio::test]
async fn oversized_head_uri_and_smuggling_attempts_get_4xx() {
    let (sim, up) = sim(Profile::default()).await;
    let config = format!(
        "[server]\nmax_header_bytes = 131072\n{}",
        one_route("heads", &format!("http://{up}"), r#"dialect = "opaque""#)
    );
    let gw = gateway(&config).await;
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200_000)
    );
    let wire = raw(gw.traffic, big_header.as_bytes()).await;
    assert!(
        wire.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&wire)
    );
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "u".repeat(70_000));
    let wire = raw(gw.traffic, long_uri.as_bytes()).await;
    assert!(
        wire.starts_with(b"HTTP/1.1 414"),
        "{}",
        String::from_utf8_lossy(&wire)
    );
    assert_eq!(sim.requests(), 0, "nothing malformed reached the upstream");
    gw.stop().await;
}

/// Content-Length with Transfer-Encoding: the framing a smuggling attack relies on. Either
/// reading RFC 9112 §6.3 allows is safe, and each listener takes one: hyper lets
/// Transfer-Encoding win, drops Content-Length and closes the connection after the answer;
/// the built-in HTTP/1.1 path (`server.http1 = "builtin"`) refuses the request with a 400 and
/// closes. Either way a request hidden behind it is never read.
#[tokio::test]
async fn content_length_with_transfer_encoding_cannot_smuggle_a_request() {
    let (sim, up) = sim(Profile::default()).await;
    let gw = gateway(&one_route(
        "smuggle",
        &format!("http://{up}"),
        r#"dialect = "opaque""#,
    ))
    .await;
    let smuggle = "POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n\
        0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let wire = String::from_utf8_lossy(&raw(gw.traffic, smuggle.as_bytes()).await).to_string();
    assert_eq!(
        wire.matches("HTTP/1.1 ").count(),
        1,
        "one answer, then the connection closes: {wire}"
    );
    if wire.starts_with("HTTP/1.1 400 ") {
        assert_eq!(sim.requests(), 0, "a refused request reached the upstream");
        gw.stop().await;
        return;
    }
    let echo: serde_json::Value =
        serde_json::from_str(wire.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(echo["path"], "/first");
    assert_eq!(echo["body_bytes"], 0);
    assert!(echo["headers"].get("content-length").is_none(), "{echo}");
    assert_eq!(
        sim.requests(),
        1,
        "the smuggled request never reached the upstream"
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_oversized_llm_body_is_a_413_before_the_upstream_is_dialled() {
    let (sim, up) = sim(Profile::default()).await;
    let config = format!(
        "[server]\nmax_body_bytes = 1024\n{}",
        one_route("bigbody", &format!("http://{up}"), "")
    );
    let gw = gateway(&config).await;
    let mut big = chat("gpt-4o", false);
    big["messages"][1]["content"] = serde_json::Value::String("x".repeat(4096));
    let answer = post_json(gw.traffic, "/v1/chat/completions", &[], big.clone()).await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.json()["error"]["code"], "request_too_large");
    // Chunked, so no Content-Length announces the size: the limit still holds.
    let body = big.to_string();
    let chunked = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let wire = raw(gw.traffic, chunked.as_bytes()).await;
    assert!(
        wire.starts_with(b"HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&wire)
    );
    assert_eq!(sim.requests(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn a_client_dying_mid_upload_is_never_forwarded_truncated() {
    let (sim, up) = sim(Profile::default()).await;
    let gw = gateway(&one_route("upload", &format!("http://{up}"), "")).await;
    let partial = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"model\":\"gpt-4o\",";
    let _ = raw(gw.traffic, partial.as_bytes()).await; // times out reading, then drops the socket
    let chunked = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"model\":\"gpt-4o";
    let mut stream = tokio::net::TcpStream::connect(gw.traffic).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, chunked.as_bytes())
        .await
        .unwrap();
    drop(stream);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sim.requests(), 0, "a truncated body reached the upstream");
    gw.stop().await;
}

#[tokio::test]
async fn a_body_that_does_not_parse_is_forwarded_unchanged_and_counted() {
    let (sim, up) = sim(Profile::default()).await;
    let gw = gateway(&one_route("garbled", &format!("http://{up}"), "")).await;
    let req = Request::post(format!("http://{}/v1/chat/completions", gw.traffic))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{not json at all")))
        .unwrap();
    let answer = send(req).await;
    assert_eq!(answer.status, 400, "the upstream judges its own API");
    assert!(answer.json()["error"].is_object());
    assert_eq!(sim.requests(), 1);
    eventually_metrics(&gw, "the unparsed count", |m| {
        metric(
            m,
            "switchyard_unparsed_requests_total",
            &[("route", "garbled")],
        ) == 1.0
    })
    .await;
    gw.stop().await;
}

#[tokio::test]
async fn a_client_that_gives_up_before_the_headers_is_still_recorded() {
    let (_sim, up) = sim(Profile {
        hang_before_headers: true,
        ..Profile::default()
    })
    .await;
    let gw = gateway(&one_route("gave-up", &format!("http://{up}"), "")).await;
    let req = Request::post(format!("http://{}/v1/chat/completions", gw.traffic))
        .body(Full::new(Bytes::from(chat("gpt-4o", false).to_string())))
        .unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(300), client().request(req)).await;
    assert!(
        waited.is_err(),
        "the upstream never answers, so the client gives up"
    );
    let m = eventually_metrics(&gw, "the abandoned request", |m| {
        metric(
            m,
            "switchyard_requests_total",
            &[("route", "gave-up"), ("status", "none")],
        ) == 1.0
    })
    .await;
    let seconds = metric(
        &m,
        "switchyard_request_duration_seconds_sum",
        &[("route", "gave-up")],
    );
    assert!(
        seconds >= 0.25,
        "the time the client waited is in the latency: {seconds}"
    );
    assert_eq!(
        metric(&m, "switchyard_in_flight_requests", &[("route", "gave-up")]),
        0.0
    );
    gw.stop().await;
}
