use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::rescue::Answer;
use crate::stage::testing::{answer, boards, chat, flow, oneshot, table, table_to};

/// An upstream on 127.0.0.1 that reads one request head, answers `ok` and hands the head
/// back.
async fn upstream() -> (String, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let served = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request head ended early");
            head.extend_from_slice(&buf[..n]);
        }
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        stream.write_all(answer).await.unwrap();
        String::from_utf8_lossy(&head).to_lowercase()
    });
    (url, served)
}

#[tokio::test]
async fn the_request_goes_upstream_with_the_gateways_headers() {
    let (url, served) = upstream().await;
    let (table, boards) = (table_to(&url, ""), boards());
    let mut req = chat("gpt-4o");
    req.headers_mut()
        .insert(http::header::CONNECTION, "x-secret".parse().unwrap());
    req.headers_mut().insert("x-secret", "1".parse().unwrap());
    let flow = flow(&table, &boards, req);
    let id = flow.edge.request_id.1.to_str().unwrap().to_lowercase();
    let forwarded = oneshot(&mut Forward, flow)
        .await
        .unwrap_or_else(|_| panic!("the upstream answered"));
    assert_eq!(forwarded.response.status(), http::StatusCode::OK);
    let head = served.await.unwrap();
    assert!(
        head.starts_with("post /v1/chat/completions http/1.1"),
        "{head}"
    );
    assert!(head.contains("x-forwarded-for: 127.0.0.1"), "{head}");
    assert!(head.contains("x-forwarded-proto: http"), "{head}");
    assert!(head.contains(&format!("x-request-id: {id}")), "{head}");
    assert!(
        !head.contains("x-secret"),
        "a Connection-named header went upstream: {head}"
    );
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_failure() {
    let (table, boards) = (table(""), boards());
    let result = oneshot(&mut Forward, flow(&table, &boards, chat("gpt-4o"))).await;
    assert!(matches!(
        answer(result),
        Answer::Refuse(Refusal::UpstreamConnect)
    ));
}

#[tokio::test(start_paused = true)]
async fn an_upstream_silent_past_the_upstream_timeout_is_a_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let silent = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(stream);
    });
    let (table, boards) = (table_to(&url, ""), boards());
    let started = tokio::time::Instant::now();
    let result = oneshot(&mut Forward, flow(&table, &boards, chat("gpt-4o"))).await;
    assert!(matches!(
        answer(result),
        Answer::Refuse(Refusal::UpstreamTimeout)
    ));
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    silent.abort();
}
