//! `server.http1 = "builtin"`: the gateway's own HTTP/1.1 loop, on raw sockets. What it does
//! not serve itself goes to hyper on the same connection; what RFC 9112 §6 refuses, it
//! refuses with a JSON body. (The whole suite also runs on it: SWITCHYARD_E2E_HTTP1=builtin.)

use std::net::SocketAddr;
use std::time::Duration;

use switchyard_sim::Profile;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{chat, gateway, one_route, sim};
use crate::wire::find;

async fn builtin_gateway(profile: Profile) -> switchyard::Running {
    let (_sim, up) = sim(profile).await;
    let route = one_route("r", &format!("http://{up}"), "");
    gateway(&format!(
        "[server]\nhttp1 = \"builtin\"\ndrain_delay = \"0s\"\n{route}"
    ))
    .await
}

fn post(body: &str, extra: &str) -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Reads until `count` complete responses with a Content-Length or chunked body are in
/// `got`, or the connection closes, or 5 s pass.
async fn read_answers(stream: &mut TcpStream, count: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let mut chunk = [0u8; 8192];
        while answers(&got).len() < count {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    got
}

/// The complete responses in `wire`: (status, head, body as framed).
fn answers(wire: &[u8]) -> Vec<(u16, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = wire;
    while let Some(end) = find(rest, b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..end]).to_lowercase();
        let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        let after = &rest[end + 4..];
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse::<usize>().ok());
        let (body, used) = if let Some(n) = length {
            if after.len() < n {
                break;
            }
            (after[..n].to_vec(), n)
        } else if head.contains("transfer-encoding: chunked") {
            match find(after, b"\r\n0\r\n\r\n")
                .or_else(|| after.starts_with(b"0\r\n\r\n").then_some(0))
            {
                Some(at) if at == 0 && after.starts_with(b"0\r\n\r\n") => (Vec::new(), 5),
                Some(at) => (after[..at + 2].to_vec(), at + 7),
                None => break,
            }
        } else {
            (Vec::new(), 0)
        };
        out.push((status, head, body));
        rest = &after[used..];
    }
    out
}

async fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

#[tokio::test]
async fn keep_alive_and_pipelined_requests_are_answered_in_order_on_one_connection() {
    let gw = builtin_gateway(Profile::default()).await;
    let body = chat("gpt-4o", false).to_string();
    let mut stream = connect(gw.traffic).await;
    for _ in 0..3 {
        stream.write_all(post(&body, "").as_bytes()).await.unwrap();
        let wire = read_answers(&mut stream, 1).await;
        let got = answers(&wire);
        assert_eq!(got.len(), 1, "{}", String::from_utf8_lossy(&wire));
        assert_eq!(got[0].0, 200, "{}", got[0].1);
        assert!(got[0].1.contains("\r\ndate: "), "{}", got[0].1);
        let json: serde_json::Value = serde_json::from_slice(&got[0].2).unwrap();
        assert!(
            json["usage"]["prompt_tokens"].as_u64().unwrap() > 0,
            "{json}"
        );
    }
    // Three at once, the last one split across writes.
    let three = format!(
        "{}{}{}",
        post(&body, ""),
        post(&body, "X-N: 2\r\n"),
        post(&body, "X-N: 3\r\n")
    );
    let (first, last) = three.as_bytes().split_at(three.len() - 40);
    stream.write_all(first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    stream.write_all(last).await.unwrap();
    let wire = read_answers(&mut stream, 3).await;
    let got = answers(&wire);
    assert_eq!(got.len(), 3, "{}", String::from_utf8_lossy(&wire));
    assert!(got.iter().all(|(status, _, _)| *status == 200));
    let ids: std::collections::HashSet<_> = got
        .iter()
        .map(|(_, head, _)| {
            head.lines()
                .find(|l| l.starts_with("x-request-id"))
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 3, "three exchanges, three ids");
    gw.stop().await;
}

#[tokio::test]
async fn a_stream_is_chunked_event_by_event_and_the_connection_is_kept() {
    let profile = Profile {
        stream_chunks: 4,
        chunk_interval_ms: 30.0,
        ..Profile::default()
    };
    let gw = builtin_gateway(profile).await;
    let mut stream = connect(gw.traffic).await;
    stream
        .write_all(post(&chat("gpt-4o", true).to_string(), "").as_bytes())
        .await
        .unwrap();
    // The head arrives before the events are all made: it is not held back for the body.
    let mut first = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut first))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&first[..n]).to_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
    assert!(
        !head.contains("[done]"),
        "the whole stream came with the head: {head}"
    );
    let mut wire = first[..n].to_vec();
    wire.extend(read_answers(&mut stream, 1).await);
    let got = answers(&wire);
    assert_eq!(got.len(), 1, "{}", String::from_utf8_lossy(&wire));
    let body = String::from_utf8_lossy(&got[0].2).into_owned();
    assert!(body.contains("data: [DONE]"), "{body}");
    assert!(body.matches("data: ").count() >= 5, "{body}");
    // The same connection carries the next request.
    stream
        .write_all(post(&chat("gpt-4o", false).to_string(), "").as_bytes())
        .await
        .unwrap();
    let next = answers(&read_answers(&mut stream, 1).await);
    assert_eq!(next.first().map(|a| a.0), Some(200));
    gw.stop().await;
}

#[tokio::test]
async fn a_chunked_request_body_is_served_by_hyper_on_the_same_connection() {
    let gw = builtin_gateway(Profile::default()).await;
    let body = chat("gpt-4o", false).to_string();
    let mut stream = connect(gw.traffic).await;
    stream.write_all(post(&body, "").as_bytes()).await.unwrap();
    assert_eq!(
        answers(&read_answers(&mut stream, 1).await)
            .first()
            .map(|a| a.0),
        Some(200)
    );
    let chunked = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    stream.write_all(chunked.as_bytes()).await.unwrap();
    assert_eq!(
        answers(&read_answers(&mut stream, 1).await)
            .first()
            .map(|a| a.0),
        Some(200)
    );
    stream.write_all(post(&body, "").as_bytes()).await.unwrap();
    assert_eq!(
        answers(&read_answers(&mut stream, 1).await)
            .first()
            .map(|a| a.0),
        Some(200)
    );
    gw.stop().await;
}

#[tokio::test]
async fn refused_framing_gets_a_json_error_and_the_connection_closes() {
    let gw = builtin_gateway(Profile::default()).await;
    for (request, status, code) in [
        ("POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "bad_request"),
        ("POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, "unsupported_transfer_coding"),
        ("POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, "bad_request"),
    ] {
        let mut stream = connect(gw.traffic).await;
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut wire = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut wire)).await.is_ok();
        assert!(closed, "{request:?}: the connection stays open");
        let got = answers(&wire);
        assert_eq!(got.len(), 1, "{}", String::from_utf8_lossy(&wire));
        let (got_status, head, body) = &got[0];
        assert_eq!(*got_status, status, "{head}");
        assert!(head.contains(&format!("x-switchyard-error: {code}")), "{head}");
        assert!(head.contains("connection: close"), "{head}");
        let json: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(json["error"]["code"], code, "{json}");
    }
    let big = format!(
        "GET / HTTP/1.1\r\nHost: gw\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let mut stream = connect(gw.traffic).await;
    stream.write_all(big.as_bytes()).await.unwrap();
    let wire = read_answers(&mut stream, 1).await;
    assert!(
        wire.starts_with(b"HTTP/1.1 431 "),
        "{}",
        String::from_utf8_lossy(&wire[..wire.len().min(200)])
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_head_request_gets_no_body_and_the_next_request_is_read_right() {
    let gw = builtin_gateway(Profile::default()).await;
    let mut stream = connect(gw.traffic).await;
    stream
        .write_all(b"HEAD /v1/models HTTP/1.1\r\nHost: gw\r\n\r\nGET /v1/models HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let mut wire = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let mut chunk = [0u8; 8192];
        while wire.windows(9).filter(|w| w == b"HTTP/1.1 ").count() < 2 || !wire.ends_with(b"}") {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => wire.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&wire);
    let second = text
        .find("\r\n\r\nHTTP/1.1 ")
        .map(|at| at + 4)
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        text[..second].ends_with("\r\n\r\n"),
        "the HEAD answer carries a body: {text}"
    );
    assert_eq!(text[..second].matches("HTTP/1.1 ").count(), 1, "{text}");
    assert!(text[second..].starts_with("HTTP/1.1 "), "{text}");
    gw.stop().await;
}

#[tokio::test]
async fn a_drain_closes_idle_connections_and_lets_a_stream_finish() {
    let profile = Profile {
        stream_chunks: 5,
        chunk_interval_ms: 100.0,
        ..Profile::default()
    };
    let gw = builtin_gateway(profile).await;
    let mut idle = connect(gw.traffic).await;
    idle.write_all(post(&chat("gpt-4o", false).to_string(), "").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        answers(&read_answers(&mut idle, 1).await)
            .first()
            .map(|a| a.0),
        Some(200)
    );
    let mut streaming = connect(gw.traffic).await;
    streaming
        .write_all(post(&chat("gpt-4o", true).to_string(), "").as_bytes())
        .await
        .unwrap();
    let mut first = [0u8; 512];
    let n = streaming.read(&mut first).await.unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"));
    let drained = tokio::spawn(gw.drain());
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(2), idle.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "the idle connection stays open: {closed:?}"
    );
    let mut wire = first[..n].to_vec();
    tokio::time::timeout(Duration::from_secs(5), streaming.read_to_end(&mut wire))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&wire);
    assert!(
        text.contains("data: [DONE]") && text.ends_with("0\r\n\r\n"),
        "{text}"
    );
    assert_eq!(drained.await.unwrap().cut, 0);
}

/// An upstream that answers `answer(n)` to the n-th request of each connection and, after
/// `serve` of them, reads the next request and closes without answering (an idle connection
/// closed as a request went out). An answer that says `connection: close` closes after it.
/// Returns its address and how many connections it accepted and requests it read.
async fn forgetful_upstream(
    serve: usize,
    answer: fn(usize) -> Vec<u8>,
) -> (
    SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = std::sync::Arc::new(AtomicUsize::new(0));
    let requests = std::sync::Arc::new(AtomicUsize::new(0));
    let (c, r) = (conns.clone(), requests.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let r = r.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                for n in 0.. {
                    // One request: its head, then its Content-Length body.
                    let total = loop {
                        if let Some(end) = find(&buf, b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length: "))
                                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                            if buf.len() >= end + 4 + length {
                                break end + 4 + length;
                            }
                        }
                        let mut chunk = [0u8; 8192];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&chunk[..k]),
                        }
                    };
                    buf.drain(..total);
                    r.fetch_add(1, Ordering::SeqCst);
                    if n == serve {
                        return;
                    }
                    let answer = answer(n);
                    if stream.write_all(&answer).await.is_err()
                        || find(&answer, b"connection: close").is_some()
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, conns, requests)
}

/// `n` POSTs in turn on one connection to the gateway: each answer's status, body and head.
async fn post_in_turn(gw: &switchyard::Running, n: usize) -> Vec<(u16, String, String)> {
    let mut stream = connect(gw.traffic).await;
    let mut got = Vec::new();
    for _ in 0..n {
        stream
            .write_all(b"POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\nhi")
            .await
            .unwrap();
        let wire = read_answers(&mut stream, 1).await;
        let Some((status, head, body)) = answers(&wire).into_iter().next() else {
            panic!("no answer: {}", String::from_utf8_lossy(&wire));
        };
        got.push((status, String::from_utf8_lossy(&body).into_owned(), head));
    }
    got
}

async fn gateway_to(up: SocketAddr) -> switchyard::Running {
    let route = one_route("r", &format!("http://{up}"), r#"dialect = "opaque""#);
    gateway(&format!("[server]\nhttp1 = \"builtin\"\n{route}")).await
}

#[tokio::test]
async fn a_kept_connection_closed_under_a_request_is_replaced_only_when_resending_is_harmless() {
    use std::sync::atomic::Ordering;
    let ok = |_| b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec();
    let (up, conns, requests) = forgetful_upstream(3, ok).await;
    let gw = gateway_to(up).await;
    let mut stream = connect(gw.traffic).await;
    let mut send = async |key: &str| {
        let request =
            format!("POST /echo HTTP/1.1\r\nHost: gw\r\n{key}Content-Length: 5\r\n\r\nhello");
        stream.write_all(request.as_bytes()).await.unwrap();
        let got = answers(&read_answers(&mut stream, 1).await);
        assert_eq!(got.len(), 1);
        (got[0].0, got[0].2.clone())
    };
    // Three answers a connection; the fourth request is read and the connection closed.
    for _ in 0..3 {
        assert_eq!(send("").await, (200, b"ok".to_vec()));
    }
    // A POST that went out may have been acted on: a 502, never a second send.
    assert_eq!(send("").await.0, 502);
    assert_eq!(
        (
            conns.load(Ordering::SeqCst),
            requests.load(Ordering::SeqCst)
        ),
        (1, 4)
    );
    for _ in 0..3 {
        assert_eq!(send("").await, (200, b"ok".to_vec()));
    }
    // One the client made idempotent is sent again, once, on a new connection.
    let keyed = send("Idempotency-Key: 7f3a\r\n").await;
    assert_eq!(keyed, (200, b"ok".to_vec()));
    assert_eq!(
        (
            conns.load(Ordering::SeqCst),
            requests.load(Ordering::SeqCst)
        ),
        (3, 9),
        "8 sent by the client, 1 sent again"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_new_connection_closed_under_a_request_is_a_502_not_a_retry() {
    use std::sync::atomic::Ordering;
    let (up, conns, requests) = forgetful_upstream(0, |_| Vec::new()).await;
    let gw = gateway_to(up).await;
    let mut stream = connect(gw.traffic).await;
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    let got = answers(&read_answers(&mut stream, 1).await);
    assert_eq!(got.first().map(|a| a.0), Some(502));
    assert!(
        got[0].1.contains("x-switchyard-error: upstream_failed"),
        "{}",
        got[0].1
    );
    assert_eq!(
        (
            conns.load(Ordering::SeqCst),
            requests.load(Ordering::SeqCst)
        ),
        (1, 1)
    );
    gw.stop().await;
}

#[tokio::test]
async fn interim_chunked_trailered_and_close_delimited_answers_are_read() {
    let script = |n: usize| -> Vec<u8> {
        match n {
            0 => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n".to_vec(),
            1 => b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nnext".to_vec(),
            _ => b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end".to_vec(),
        }
    };
    let (up, conns, _) = forgetful_upstream(usize::MAX, script).await;
    let gw = gateway_to(up).await;
    let got = post_in_turn(&gw, 3).await;
    assert!(got.iter().all(|a| a.0 == 200), "{got:?}");
    let bodies: Vec<&str> = got.iter().map(|a| a.1.as_str()).collect();
    assert!(
        bodies[0].contains("hello") && bodies[0].contains(" world"),
        "{bodies:?}"
    );
    assert!(bodies[1].ends_with("next"), "{bodies:?}");
    assert!(bodies[2].contains("until the end"), "{bodies:?}");
    assert_eq!(
        conns.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one connection for all three"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_conflicting_length_is_a_502_and_a_length_beside_chunks_is_not_trusted_after() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let script = |_| -> Vec<u8> {
        match CALLS.fetch_add(1, Ordering::SeqCst) {
            0 => b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd".to_vec(),
            1 => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 50\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec(),
            _ => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
        }
    };
    let (up, conns, _) = forgetful_upstream(usize::MAX, script).await;
    let gw = gateway_to(up).await;
    let got = post_in_turn(&gw, 3).await;
    assert_eq!(got[0].0, 502, "{got:?}");
    assert!(
        got[0].2.contains("x-switchyard-error: upstream_failed"),
        "{got:?}"
    );
    // Read as chunks (passed on chunked), not as the 50 bytes the length claimed.
    assert_eq!(
        (got[1].0, got[1].1.as_str()),
        (200, "3\r\nabc\r\n"),
        "{got:?}"
    );
    assert_eq!((got[2].0, got[2].1.as_str()), (200, "ok"), "{got:?}");
    // Neither the refused answer's connection nor the one framed both ways is used again.
    assert_eq!(conns.load(Ordering::SeqCst), 3);
    gw.stop().await;
}

#[tokio::test]
async fn a_reload_does_not_switch_the_upstream_side_to_the_builtin_client() {
    use crate::common::{admin, admin_tokens, temp_dir, OPERATOR};
    // Each connection answers one request, then reads the next and closes unanswered: hyper's
    // client answers that second request 502, the built-in client sends it again and gets 200.
    let ok = |_| b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec();
    let (up, _, _) = forgetful_upstream(1, ok).await;
    let route = one_route("r", &format!("http://{up}"), r#"dialect = "opaque""#);
    let text = |server: &str| {
        format!(
            "{}[admin]\nlisten = \"127.0.0.1:0\"\n[server]\n{server}{route}",
            admin_tokens()
        )
    };
    let path = temp_dir("engine-reload").join("gateway.toml");
    std::fs::write(&path, text("")).unwrap();
    let mut config = switchyard_config::Config::load(&path).unwrap();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    let gw = switchyard::start_with(config, Some(path.clone()))
        .await
        .unwrap();
    std::fs::write(&path, text("http1 = \"builtin\"\n")).unwrap();
    let reloaded = admin(&gw, "POST", "/admin/reload", OPERATOR, None).await;
    assert_eq!(reloaded.status, 200, "{:?}", reloaded.body);
    let statuses: Vec<u16> = post_in_turn(&gw, 2).await.iter().map(|a| a.0).collect();
    assert_eq!(
        statuses,
        [200, 502],
        "hyper's client still sends after the reload"
    );
    gw.stop().await;
}
