//! Signed webhooks end to end: `secret_file` in the config, a kill through the admin API, and a
//! receiver that checks the signature the way operations.md shows.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::common::*;

/// Accepts connections and sends each request's (lower-cased head, body) on; answers 204.
async fn receiver() -> (String, mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match stream.read(&mut buf).await {
                            Ok(n) if n > 0 => data.extend_from_slice(&buf[..n]),
                            _ => return,
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .and_then(|n| n.trim().parse().ok())
                        .unwrap_or(0);
                    if data.len() < end + 4 + length {
                        match stream.read(&mut buf).await {
                            Ok(n) if n > 0 => data.extend_from_slice(&buf[..n]),
                            _ => return,
                        }
                        continue;
                    }
                    let body = data[end + 4..end + 4 + length].to_vec();
                    data.drain(..end + 4 + length);
                    let _ = tx.send((head, body));
                    let answer = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, rx)
}

fn header<'a>(head: &'a str, name: &str) -> &'a str {
    head.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
        .unwrap_or("")
}

/// The receiver's check: recompute, compare, and refuse stale timestamps.
fn verify(secret: &[u8], head: &str, body: &[u8]) -> bool {
    let timestamp = header(head, "x-switchyard-timestamp");
    let Ok(at) = timestamp.parse::<u64>() else {
        return false;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now.abs_diff(at) > 300 {
        return false;
    }
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, &[timestamp.as_bytes(), b".", body].concat());
    let expected: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    header(head, "x-switchyard-signature") == format!("sha256={expected}")
}

#[tokio::test]
async fn a_kill_is_delivered_signed_with_the_configured_secret() {
    let (_sim, up) = sim(switchyard_sim::Profile::default()).await;
    let (url, mut deliveries) = receiver().await;
    let secret_file = temp_dir("webhook-secret").join("webhook.key");
    std::fs::write(&secret_file, "whsec-0123456789abcdef-e2e\n").unwrap();
    let hook = format!(
        "[[notify.webhooks]]\nurl = \"{url}\"\nevents = [\"kill\"]\nsecret_file = \"{}\"\n",
        secret_file.display()
    );
    let route = one_route("s-sign", &format!("http://{up}"), "");
    let gw = gateway(&format!("{}{hook}{route}", admin_tokens())).await;
    let body = json!({"reason": "signing drill"});
    let answer = admin(
        &gw,
        "POST",
        "/admin/routes/s-sign/kill",
        OPERATOR,
        Some(body),
    )
    .await;
    assert_eq!(answer.status, 200);
    let (head, body) = tokio::time::timeout(Duration::from_secs(5), deliveries.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(header(&head, "x-switchyard-event"), "kill");
    assert!(
        verify(b"whsec-0123456789abcdef-e2e", &head, &body),
        "the file's secret, trimmed, signs the delivery: {head}"
    );
    assert!(!verify(b"another-secret-0123456789", &head, &body));
    let mut tampered = body.clone();
    tampered.push(b' ');
    assert!(!verify(b"whsec-0123456789abcdef-e2e", &head, &tampered));
    gw.stop().await;
}
