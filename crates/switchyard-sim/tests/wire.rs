//! Wire-level behaviour: injected resets and hangs, keep-alive and h2c.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use switchyard_sim::{MidStream, Profile};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{raw_exchange, start, wait_idle};

fn raw_chat(stream: bool) -> String {
    let body = json!({"model": "m", "stream": stream,
        "messages": [{"role": "user", "content": "hi"}]})
    .to_string();
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: sim\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn reset_mid_stream_closes_without_the_last_chunk() {
    let h = start(Profile {
        fail_mid_stream: Some(MidStream::Reset { after_chunks: 2 }),
        ..Profile::default()
    })
    .await;
    let out = String::from_utf8(raw_exchange(h.addr, &raw_chat(true)).await).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("transfer-encoding: chunked"), "{out}");
    assert_eq!(
        out.matches("chat.completion.chunk").count(),
        3,
        "role + 2 chunks: {out}"
    );
    assert!(!out.contains("[DONE]"));
    assert!(
        !out.ends_with("0\r\n\r\n"),
        "body must not terminate cleanly: {out}"
    );

    // Non-stream bodies are cut in half the same way.
    let out = String::from_utf8(raw_exchange(h.addr, &raw_chat(false)).await).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(!out.ends_with("0\r\n\r\n"), "{out}");
    assert!(
        !out.contains("\"usage\""),
        "only the first half is sent: {out}"
    );
}

#[tokio::test]
async fn hang_before_headers_sends_nothing() {
    let h = start(Profile {
        hang_before_headers: true,
        ..Profile::default()
    })
    .await;
    let body = json!({"model": "m", "messages": []}).to_string();
    let req = h.request(Method::POST, "/v1/chat/completions", &body);
    let waited = tokio::time::timeout(Duration::from_millis(300), h.client.request(req)).await;
    assert!(
        waited.is_err(),
        "headers arrived despite hang_before_headers"
    );
    // The echo path hangs too, so generic upstream timeouts can be drilled.
    let req = h.request(Method::GET, "/health", "");
    let waited = tokio::time::timeout(Duration::from_millis(100), h.client.request(req)).await;
    assert!(waited.is_err());
    assert!(
        wait_idle(&h.sim).await,
        "hung handlers outlive their clients"
    );
}

#[tokio::test]
async fn hang_mid_stream_stalls_and_stops_when_the_client_leaves() {
    let h = start(Profile {
        fail_mid_stream: Some(MidStream::Hang { after_chunks: 1 }),
        ..Profile::default()
    })
    .await;
    let mut stream = TcpStream::connect(h.addr).await.unwrap();
    stream.write_all(raw_chat(true).as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            Ok(other) => panic!("connection ended unexpectedly: {other:?}"),
            Err(_) => break,
        }
    }
    let seen = String::from_utf8(seen).unwrap();
    assert_eq!(seen.matches("chat.completion.chunk").count(), 2, "{seen}");
    assert_eq!(h.sim.in_flight(), 1);
    drop(stream);
    assert!(wait_idle(&h.sim).await, "the producer outlives its client");
}

/// Reads what arrives on `stream` for `window`; panics if the connection ends.
async fn read_for(stream: &mut TcpStream, window: Duration) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(read) = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
        match read {
            Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
            other => panic!("connection ended unexpectedly: {other:?}"),
        }
    }
    String::from_utf8(seen).unwrap()
}

#[tokio::test]
async fn a_hung_stream_with_heartbeats_sends_pings_until_the_client_leaves() {
    let h = start(Profile {
        fail_mid_stream: Some(MidStream::Hang { after_chunks: 0 }),
        heartbeat_ms: 50.0,
        ..Profile::default()
    })
    .await;
    let mut stream = TcpStream::connect(h.addr).await.unwrap();
    stream.write_all(raw_chat(true).as_bytes()).await.unwrap();
    let seen = read_for(&mut stream, Duration::from_millis(600)).await;
    assert_eq!(seen.matches("chat.completion.chunk").count(), 1, "{seen}");
    let pings = seen.matches(": ping\n\n").count();
    // 600 ms at one every 50 ms: about 12; a loaded machine may fire fewer timers.
    assert!((3..=13).contains(&pings), "{pings} pings: {seen}");
    assert!(!seen.contains("[DONE]"), "{seen}");
    assert_eq!(h.sim.in_flight(), 1);
    drop(stream);
    assert!(wait_idle(&h.sim).await, "the producer outlives its client");
}

#[tokio::test]
async fn heartbeats_fill_the_wait_between_chunks_and_the_stream_still_ends() {
    let h = start(Profile {
        chunk_interval_ms: 200.0,
        stream_chunks: 2,
        completion_tokens: 2,
        heartbeat_ms: 40.0,
        ..Profile::default()
    })
    .await;
    let request = raw_chat(true).replace("host: sim\r\n", "host: sim\r\nconnection: close\r\n");
    let out = String::from_utf8(raw_exchange(h.addr, &request).await).unwrap();
    assert!(out.contains("[DONE]"), "{out}");
    let pings = out.matches(": ping\n\n").count();
    assert!((2..=10).contains(&pings), "{pings} pings: {out}");
    // Without heartbeats, the same stream has none.
    h.sim.set_profile(Profile {
        heartbeat_ms: 0.0,
        ..h.sim.profile()
    });
    let out = String::from_utf8(raw_exchange(h.addr, &request).await).unwrap();
    assert!(out.contains("[DONE]") && !out.contains(": ping"), "{out}");
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let h = start(Profile::default()).await;
    let mut stream = TcpStream::connect(h.addr).await.unwrap();
    let mut buf = vec![0u8; 16384];
    for _ in 0..3 {
        stream.write_all(raw_chat(false).as_bytes()).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let head = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("content-length:"), "{head}");
    }
    assert_eq!(h.sim.requests(), 3);
}

#[tokio::test]
async fn h2c_prior_knowledge_works() {
    let h = start(Profile::default()).await;
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let body = json!({"model": "m", "stream": true,
        "messages": [{"role": "user", "content": "hi"}]});
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{}/v1/chat/completions", h.addr))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(bytes.ends_with(b"data: [DONE]\n\n"));

    h.sim.set_profile(Profile {
        fail_mid_stream: Some(MidStream::Reset { after_chunks: 1 }),
        ..Profile::default()
    });
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{}/v1/chat/completions", h.addr))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert!(
        resp.into_body().collect().await.is_err(),
        "h2 stream must be reset"
    );
}

#[tokio::test]
async fn a_graceful_stop_refuses_new_connections_and_finishes_the_streams_in_flight() {
    let sim = switchyard_sim::Sim::new(Profile {
        chunk_interval_ms: 50.0,
        stream_chunks: 6,
        completion_tokens: 6,
        ..Profile::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stop_signal = async move {
        let _ = stopped.await;
    };
    let server = tokio::spawn(sim.serve_until(listener, stop_signal, Duration::from_secs(5)));
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw_chat(true).as_bytes()).await.unwrap();
    let mut first = [0u8; 64];
    let n = stream.read(&mut first).await.unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"));

    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
        .await
        .expect("the connection closes once the stream is done")
        .unwrap();
    let rest = String::from_utf8(rest).unwrap();
    assert!(
        rest.contains("data: [DONE]") && rest.ends_with("0\r\n\r\n"),
        "{rest}"
    );
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve_until returns after the drain")
        .unwrap()
        .unwrap();
}
