//! Upstreams that send garbage and peers that are slow: a 502 before the response headers,
//! an abnormal end after them, never garbage forwarded as a valid answer; bounded buffering.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::*;
use crate::wire::*;

async fn through(upstream_answer: Vec<u8>) -> (String, bool) {
    let up = scripted(upstream_answer).await;
    let gw = gateway(&one_route(
        "garbage",
        &format!("http://{up}"),
        r#"dialect = "opaque""#,
    ))
    .await;
    let answer = exchange(
        gw.traffic,
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    gw.stop().await;
    answer
}

fn status_of(wire: &str) -> Option<u16> {
    wire.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

#[tokio::test]
async fn garbage_before_the_headers_is_a_502() {
    let big = format!("HTTP/1.1 200 OK\r\nx-big: {}\r\n\r\n", "b".repeat(1 << 20));
    for (case, answer) in [
        (
            "invalid status line",
            b"HTTP/1.1 abc OK\r\ncontent-length: 0\r\n\r\n".to_vec(),
        ),
        ("not HTTP", b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec()),
        (
            "status 1000",
            b"HTTP/1.1 1000 Big\r\ncontent-length: 0\r\n\r\n".to_vec(),
        ),
        (
            "space before the colon",
            b"HTTP/1.1 200 OK\r\ncontent-length : 2\r\n\r\nok".to_vec(),
        ),
        (
            "two Content-Length values",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok!".to_vec(),
        ),
        ("a 1 MiB header", big.into_bytes()),
        ("closed before a byte", Vec::new()),
    ] {
        let (wire, _) = through(answer).await;
        assert_eq!(status_of(&wire), Some(502), "{case}: {wire:.300}");
        assert!(wire.contains("upstream_failed"), "{case}: {wire:.300}");
    }
}

#[tokio::test]
async fn a_short_body_ends_abnormally_and_a_long_one_is_cut_at_its_length() {
    let (wire, closed) =
        through(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly-twenty-bytes...".to_vec())
            .await;
    assert_eq!(status_of(&wire), Some(200), "{wire}");
    let body = wire.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert!(
        closed,
        "the client is not left waiting for the missing bytes"
    );
    assert!(
        !wire.to_ascii_lowercase().contains("content-length: 100") || body.len() < 100,
        "a short body is never completed: {wire}"
    );

    let (wire, _) = through(
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\n\r\nextra".to_vec(),
    )
    .await;
    let body = wire.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert!(
        body == "hello" || body == "5\r\nhello\r\n0\r\n\r\n",
        "{wire}"
    );
    assert_eq!(wire.matches("HTTP/1.1 ").count(), 1, "{wire}");
}

#[tokio::test]
async fn content_length_with_chunked_from_the_upstream_is_framed_one_way() {
    let (wire, _) = through(
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            .to_vec(),
    )
    .await;
    let lower = wire.to_ascii_lowercase();
    match status_of(&wire) {
        Some(502) => {}
        Some(200) => {
            assert!(
                !(lower.contains("content-length:") && lower.contains("transfer-encoding:")),
                "both framings forwarded: {wire}"
            );
            assert!(wire.contains("hello"), "{wire}");
        }
        other => panic!("{other:?}: {wire}"),
    }
}

#[tokio::test]
async fn a_broken_chunk_after_the_headers_ends_the_response_abnormally() {
    let (wire, closed) = through(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nbroken\r\n0\r\n\r\n"
            .to_vec(),
    )
    .await;
    assert_eq!(status_of(&wire), Some(200), "{wire}");
    assert!(closed);
    assert!(
        !wire.ends_with("0\r\n\r\n"),
        "no clean end after a broken chunk: {wire}"
    );
    assert!(!wire.contains("broken"), "{wire}");
}

/// An upstream that streams `total` bytes as fast as the gateway takes them; how many it
/// got to write before the gateway stopped reading.
async fn firehose(total: usize) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let count = written.clone();
    tokio::spawn(async move {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let mut head = [0u8; 4096];
        let _ = stream.read(&mut head).await;
        let start = format!("HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {total}\r\n\r\n");
        if stream.write_all(start.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b'z'; 64 * 1024];
        for _ in 0..total / chunk.len() {
            match tokio::time::timeout(Duration::from_secs(2), stream.write_all(&chunk)).await {
                Ok(Ok(())) => count.fetch_add(chunk.len(), Ordering::Relaxed),
                _ => return,
            };
        }
    });
    (addr, written)
}

/// A client that reads the headers of a 256 MiB answer and then nothing: the gateway holds
/// a bounded amount (socket buffers and one read buffer each way), not the stream.
#[tokio::test]
async fn a_slow_reader_of_a_large_stream_holds_bounded_buffers() {
    const TOTAL: usize = 256 * 1024 * 1024;
    let (up, written) = firehose(TOTAL).await;
    let gw = gateway(&one_route(
        "firehose",
        &format!("http://{up}"),
        r#"dialect = "opaque""#,
    ))
    .await;
    let mut client = TcpStream::connect(gw.traffic).await.unwrap();
    client
        .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 1024];
    let n = client.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"));
    // Wait until the upstream is blocked: its count stops moving.
    let mut last = usize::MAX;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = written.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    let held = written.load(Ordering::Relaxed);
    assert!(
        held < 64 * 1024 * 1024,
        "{} MiB left the upstream for a client that reads nothing",
        held >> 20
    );
    drop(client);
    gw.stop().await;
}

/// A body trickled in byte by byte: an inspected request goes to the upstream only once
/// whole, exactly once; nothing half-read is forwarded.
#[tokio::test]
async fn a_slow_upload_is_forwarded_once_and_only_whole() {
    let (recorded, up) = recorder().await;
    let gw = gateway(&one_route("trickle", &format!("http://{up}"), "")).await;
    let body = chat("gpt-4o", false).to_string();
    let mut client = TcpStream::connect(gw.traffic).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    client.write_all(head.as_bytes()).await.unwrap();
    for (i, piece) in body.as_bytes().chunks(body.len() / 20 + 1).enumerate() {
        assert_eq!(
            recorded.count(),
            0,
            "forwarded before the body was whole (piece {i})"
        );
        client.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
    let seen = recorded.requests();
    assert_eq!(seen.len(), 1);
    assert!(
        find(&seen[0], body.as_bytes()).is_some(),
        "the body arrived whole"
    );

    // The same client dying halfway: nothing reaches the upstream.
    let mut client = TcpStream::connect(gw.traffic).await.unwrap();
    client.write_all(head.as_bytes()).await.unwrap();
    client
        .write_all(&body.as_bytes()[..body.len() / 2])
        .await
        .unwrap();
    drop(client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(recorded.count(), 1, "{}", recorded.heads());
    gw.stop().await;
}

/// A body that stops arriving is a 408 once `body_read_timeout` runs out; nothing is
/// forwarded and the connection is not held.
#[tokio::test]
async fn a_body_that_stops_arriving_is_a_408() {
    let (recorded, up) = recorder().await;
    let config = format!(
        "[server]\nbody_read_timeout = \"300ms\"\n{}",
        one_route("stall", &format!("http://{up}"), "")
    );
    let gw = gateway(&config).await;
    let body = chat("gpt-4o", false).to_string();
    let mut client = TcpStream::connect(gw.traffic).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    client.write_all(head.as_bytes()).await.unwrap();
    client
        .write_all(&body.as_bytes()[..body.len() / 2])
        .await
        .unwrap();
    let mut wire = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), client.read_to_end(&mut wire))
        .await
        .is_ok();
    let wire = String::from_utf8_lossy(&wire);
    assert!(wire.starts_with("HTTP/1.1 408"), "{wire}");
    assert!(wire.contains("request_body_timeout"), "{wire}");
    assert!(closed, "the connection is closed after the 408");
    assert_eq!(recorded.count(), 0, "{}", recorded.heads());
    gw.stop().await;
}
