use std::time::Duration;

use serde_json::{json, Value};
use switchyard_config::EventKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::kill::KillSwitch;

use super::*;

fn hook(url: String, events: Vec<EventKind>, timeout: Duration) -> Webhook {
    Webhook {
        url: url.parse().unwrap(),
        events,
        timeout,
        retries: 0,
        signing: switchyard_config::Signing::Unsigned,
    }
}

#[test]
fn bodies_put_the_envelope_first_and_merge_the_detail() {
    let kill = KillSwitch {
        route: "support".into(),
        reason: "drill".into(),
        percent: Some(10.0),
        segment: None,
        engaged_at_ms: 1,
        by: "oncall".into(),
    };
    let event = Event::flip(
        EventKind::Kill,
        "support",
        Some("drill"),
        "oncall",
        Some(&kill),
    );
    let body = event.to_json();
    assert_eq!(body["event"], "kill");
    assert_eq!(body["route"], "support");
    assert_eq!(
        (&body["reason"], &body["by"]),
        (&json!("drill"), &json!("oncall"))
    );
    assert_eq!(
        (&body["percent"], &body["segment"]),
        (&json!(10.0), &Value::Null)
    );
    assert_eq!(body["at_ms"], json!(event.at_ms));
    let reload = Event::reload("b", "a", Some("bad")).to_json();
    assert_eq!(reload.get("route"), None);
    assert_eq!(
        (&reload["result"], &reload["error"]),
        (&json!("rejected"), &json!("bad"))
    );
    assert_eq!(Event::reload("b", "a", None).to_json()["result"], "applied");
}

#[test]
fn a_disabled_notifier_ignores_events() {
    let notifier = Notifier::disabled();
    notifier.notify(Event::incident("inc-1", "kill", "r"));
    assert_eq!((notifier.webhooks(), notifier.dropped()), (0, 0));
}

/// A receiver that takes connections and never answers: the first event sits in its
/// attempt, the queue fills, and the rest are dropped without the caller waiting.
#[tokio::test]
async fn a_full_queue_drops_without_waiting() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let _silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let notifier = Notifier::new(vec![hook(
        url,
        EventKind::ALL.to_vec(),
        Duration::from_secs(60),
    )]);
    let started = switchyard_core::clock::now();
    for i in 0..3000 {
        notifier.notify(Event::incident(&format!("inc-{i}"), "kill", "r"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // 3000 events, one being sent or waiting, 1024 queued: the rest were dropped.
    assert!(notifier.dropped() >= 3000 - 1025, "{}", notifier.dropped());
}

/// Reads one request; answers 204.
async fn receive(listener: &TcpListener) -> String {
    let (mut stream, _) = listener.accept().await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("\"event\"") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let answer = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
    stream.write_all(answer).await.unwrap();
    String::from_utf8(seen).unwrap()
}

#[tokio::test]
async fn subscribed_events_are_posted_as_json_with_their_kind() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let events = vec![EventKind::Ack];
    let notifier = Notifier::new(vec![hook(url, events, Duration::from_secs(5))]);
    notifier.notify(Event::reload("b", "a", None)); // not subscribed
    notifier.notify(Event::ack("inc-7", "support", "alice", Some("on it")));
    let request = tokio::time::timeout(Duration::from_secs(5), receive(&listener))
        .await
        .unwrap();
    let lower = request.to_ascii_lowercase();
    assert!(lower.starts_with("post /hook http/1.1\r\n"), "{request}");
    assert!(
        lower.contains("content-type: application/json\r\n"),
        "{request}"
    );
    assert!(lower.contains("x-switchyard-event: ack\r\n"), "{request}");
    let body: Value = serde_json::from_str(request.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["event"], "ack");
    assert_eq!(
        (&body["id"], &body["note"]),
        (&json!("inc-7"), &json!("on it"))
    );
}

/// Reads one whole request (headers and `content-length` bytes of body).
async fn read_request(stream: &mut tokio::net::TcpStream) -> (String, Vec<u8>) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            if seen.len() >= end + 4 + length {
                return (head, seen[end + 4..end + 4 + length].to_vec());
            }
        }
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
}

/// A receiver as operations.md describes one: recomputes the HMAC with its own secret,
/// checks the timestamp is recent, answers 204 or 401, and reports its verdict.
async fn verifying_receiver(listener: &TcpListener, secret: &[u8]) -> bool {
    let (mut stream, _) = listener.accept().await.unwrap();
    let (head, body) = read_request(&mut stream).await;
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
    };
    let timestamp = header("x-switchyard-timestamp").unwrap_or_default();
    let sent = header("x-switchyard-signature").unwrap_or_default();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let message = [timestamp.as_bytes(), b".", &body].concat();
    let tag = sent
        .strip_prefix("sha256=")
        .filter(|hex| hex.len() == 64)
        .map(|hex| {
            (0..32)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0))
                .collect::<Vec<u8>>()
        })
        .unwrap_or_default();
    let fresh = timestamp.parse::<u64>().is_ok_and(|t| {
        let now = switchyard_core::clock::system_now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        now.abs_diff(t) <= 300
    });
    let valid = fresh && ring::hmac::verify(&key, &message, &tag).is_ok();
    let answer: &[u8] = if valid {
        b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"
    } else {
        b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n"
    };
    stream.write_all(answer).await.unwrap();
    valid
}

#[tokio::test]
async fn signed_deliveries_verify_with_the_secret_and_only_with_it() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let signed = |secret: &str| Webhook {
        signing: switchyard_config::Signing::Signed(switchyard_config::Secret::new(secret)),
        ..hook(url.clone(), EventKind::ALL.to_vec(), Duration::from_secs(5))
    };
    let within = Duration::from_secs(5);
    let right = Notifier::new(vec![signed("receiver-secret-0123456789")]);
    right.notify(Event::ack("inc-7", "support", "alice", Some("on it")));
    let verdict = tokio::time::timeout(
        within,
        verifying_receiver(&listener, b"receiver-secret-0123456789"),
    );
    assert!(verdict.await.unwrap(), "a delivery signed with the secret");
    let wrong = Notifier::new(vec![signed("someone-elses-secret-000")]);
    wrong.notify(Event::ack("inc-8", "support", "alice", None));
    let verdict = tokio::time::timeout(
        within,
        verifying_receiver(&listener, b"receiver-secret-0123456789"),
    );
    assert!(
        !verdict.await.unwrap(),
        "a delivery signed with another secret"
    );
    let unsigned = Notifier::new(vec![hook(url.clone(), EventKind::ALL.to_vec(), within)]);
    unsigned.notify(Event::ack("inc-9", "support", "alice", None));
    let verdict = tokio::time::timeout(
        within,
        verifying_receiver(&listener, b"receiver-secret-0123456789"),
    );
    assert!(!verdict.await.unwrap(), "an unsigned delivery");
}

/// A webhook whose secret could not be loaded sends nothing rather than sending unsigned.
#[tokio::test]
async fn a_webhook_without_its_secret_sends_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let hook = Webhook {
        signing: switchyard_config::Signing::Unavailable("env UNSET".into()),
        ..hook(url, EventKind::ALL.to_vec(), Duration::from_secs(5))
    };
    let notifier = Notifier::new(vec![hook]);
    notifier.notify(Event::ack("inc-1", "support", "alice", None));
    let accepted = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
    assert!(accepted.is_err(), "a delivery was attempted");
}
