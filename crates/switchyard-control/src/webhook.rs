//! Delivery to one webhook: its own queue and task, so a slow or dead receiver only ever
//! delays its own events. Each event is POSTed with a per-attempt timeout, signed when the
//! webhook has a secret, and retried with exponential backoff and jitter.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use metrics::counter;
use switchyard_config::{Signing, Webhook};
use switchyard_core::client::{https_client, ClientSettings, HttpsClient};
use switchyard_core::metrics as names;
use tokio::sync::mpsc;

use crate::event::Event;

/// Shared by every webhook: pooled, http and https (rustls, webpki roots).
pub(crate) type HookClient = HttpsClient<Full<Bytes>>;

/// HTTP/1.1 only; idle connections go back after 30 s (receivers are called rarely).
pub(crate) const CLIENT: ClientSettings = ClientSettings {
    connect_timeout: None,
    tcp_keepalive: None,
    http2: false,
    pool_idle_timeout: Duration::from_secs(30),
};

/// Events waiting for one webhook; beyond this they are dropped, not queued without end.
pub(crate) const QUEUE: usize = 1024;

/// The first retry waits this long; each further one twice as long as the one before.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A receiver's answer is read only so the connection can go back to the pool; nobody
/// needs more of it than this.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

pub(crate) fn client() -> Result<HookClient, rustls::Error> {
    https_client(&CLIENT)
}

/// The ceiling of the wait before retry number `retry` (1-based): 0.5 s, 1 s, 2 s, 4 s, ...
/// at most 30 s.
pub fn backoff(retry: u32) -> Duration {
    let doublings = retry.saturating_sub(1).min(16);
    FIRST_BACKOFF
        .saturating_mul(1u32 << doublings)
        .min(MAX_BACKOFF)
}

/// The wait before retry number `retry`: "equal jitter", half the ceiling plus a random part
/// of the other half. Every gateway that lost the same receiver at the same moment would
/// otherwise retry in step; the fixed half keeps a floor under the wait.
pub fn jittered(retry: u32, random: impl FnOnce(u64) -> u64) -> Duration {
    let ceiling = u64::try_from(backoff(retry).as_millis()).unwrap_or(u64::MAX);
    let half = ceiling / 2;
    let spread = ceiling - half;
    Duration::from_millis(half + random(spread + 1).min(spread))
}

/// The headers a signed delivery carries.
pub const TIMESTAMP_HEADER: &str = "x-switchyard-timestamp";
pub const SIGNATURE_HEADER: &str = "x-switchyard-signature";

/// `sha256=` and the hex HMAC-SHA256, keyed with the secret, of `TIMESTAMP.BODY`: the
/// timestamp is signed with the body so a receiver can refuse a replayed delivery.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut context = ring::hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    let tag = context.sign();
    let mut text = String::with_capacity(7 + 64);
    text.push_str("sha256=");
    for byte in tag.as_ref() {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

fn unix_seconds() -> u64 {
    switchyard_core::clock::system_now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The metric label and log name of a webhook: host and port only, because the path or the
/// query of a webhook URL often carries its secret, and a host keeps the label set small.
pub fn label(webhook: &Webhook) -> String {
    let host = webhook.url.host().unwrap_or_default();
    let default_port = if webhook.url.scheme_str() == Some("https") {
        443
    } else {
        80
    };
    format!("{host}:{}", webhook.url.port_u16().unwrap_or(default_port))
}

/// One webhook's queue; dropping it lets the task finish what is queued and end.
pub(crate) struct Worker {
    pub(crate) webhook: Webhook,
    pub(crate) label: String,
    pub(crate) queue: mpsc::Sender<Arc<Event>>,
}

impl Worker {
    /// Starts the webhook's task on `runtime`.
    pub(crate) fn start(
        webhook: Webhook,
        client: HookClient,
        runtime: &tokio::runtime::Handle,
    ) -> Worker {
        let (queue, events) = mpsc::channel(QUEUE);
        let label = label(&webhook);
        let hook = Target {
            webhook: webhook.clone(),
            label: label.clone(),
            client,
        };
        runtime.spawn(hook.run(events));
        Worker {
            webhook,
            label,
            queue,
        }
    }
}

/// What the task delivers to.
struct Target {
    webhook: Webhook,
    label: String,
    client: HookClient,
}

/// Why an attempt did not deliver.
enum Failure {
    /// Worth another attempt: timeouts, refused connections, 5xx, 408, 429.
    Transient(String),
    /// The receiver will not take it however often it is sent (other 4xx).
    Permanent(String),
}

impl Target {
    async fn run(self, mut events: mpsc::Receiver<Arc<Event>>) {
        while let Some(event) = events.recv().await {
            self.deliver(&event).await;
        }
    }

    async fn deliver(&self, event: &Event) {
        if let Signing::Unavailable(source) = &self.webhook.signing {
            counter!(names::WEBHOOK_DELIVERIES_TOTAL, "webhook" => self.label.clone(), "result" => "failed")
                .increment(1);
            tracing::warn!(webhook = %self.label, event = event.kind.as_str(), secret = %source, "webhook secret not loaded; event not sent");
            return;
        }
        let body = Bytes::from(event.to_json().to_string());
        // The same id on every attempt lets a receiver drop a repeat of an attempt that
        // reached it but whose answer did not reach us.
        let delivery = format!("{:016x}", fastrand::u64(..));
        let outcome = |result: &'static str| {
            counter!(names::WEBHOOK_DELIVERIES_TOTAL, "webhook" => self.label.clone(), "result" => result)
                .increment(1);
        };
        let mut attempt = 0;
        loop {
            let why = match self.attempt(event, &delivery, body.clone()).await {
                Ok(()) => return outcome("delivered"),
                Err(Failure::Transient(why)) if attempt < self.webhook.retries => why,
                Err(Failure::Transient(why) | Failure::Permanent(why)) => {
                    outcome("failed");
                    let (webhook, kind) = (&self.label, event.kind.as_str());
                    tracing::warn!(%webhook, event = kind, %delivery, attempts = attempt + 1, error = %why, "webhook delivery failed; event given up");
                    return;
                }
            };
            outcome("retried");
            attempt += 1;
            let wait = jittered(attempt, |n| fastrand::u64(..n));
            tracing::info!(webhook = %self.label, event = event.kind.as_str(), %delivery, error = %why, retry_in_ms = wait.as_millis() as u64, "webhook attempt failed; will retry");
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(&self, event: &Event, delivery: &str, body: Bytes) -> Result<(), Failure> {
        let mut request = Request::post(self.webhook.url.clone());
        if let Signing::Signed(secret) = &self.webhook.signing {
            // Signed anew on every attempt, so a retry's timestamp is fresh.
            let now = unix_seconds();
            request = request
                .header(TIMESTAMP_HEADER, now)
                .header(SIGNATURE_HEADER, signature(secret.as_bytes(), now, &body));
        }
        let request = request
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("switchyard/", env!("CARGO_PKG_VERSION")),
            )
            .header("x-switchyard-event", event.kind.as_str())
            .header("x-switchyard-delivery", delivery)
            .body(Full::new(body))
            .map_err(|e| Failure::Permanent(e.to_string()))?;
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status();
            // Read the answer so the connection can be reused; its content does not matter.
            let _ = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await;
            Ok::<_, hyper_util::client::legacy::Error>(status)
        };
        let status = match tokio::time::timeout(self.webhook.timeout, exchange).await {
            Err(_) => {
                let took = self.webhook.timeout;
                return Err(Failure::Transient(format!("no answer within {took:?}")));
            }
            Ok(Err(error)) => return Err(Failure::Transient(error_chain(&error))),
            Ok(Ok(status)) => status,
        };
        classify(status)
    }
}

fn classify(status: StatusCode) -> Result<(), Failure> {
    if status.is_success() {
        return Ok(());
    }
    let why = format!("the receiver answered {status}");
    let retry = status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_redirection();
    Err(if retry {
        Failure::Transient(why)
    } else {
        Failure::Permanent(why)
    })
}

/// hyper's client errors say little at the top ("client error (Connect)"); the cause says why.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_between_half_the_ceiling_and_the_ceiling() {
        for retry in 1..=12 {
            let ceiling = backoff(retry);
            assert_eq!(jittered(retry, |_| 0), ceiling / 2);
            assert_eq!(jittered(retry, |n| n - 1), ceiling);
            assert_eq!(jittered(retry, |_| u64::MAX), ceiling, "clamped");
            for _ in 0..200 {
                let wait = jittered(retry, |n| fastrand::u64(..n));
                assert!(
                    wait >= ceiling / 2 && wait <= ceiling,
                    "{wait:?} {ceiling:?}"
                );
            }
        }
        let spread: std::collections::BTreeSet<u128> = (0..50)
            .map(|_| jittered(5, |n| fastrand::u64(..n)).as_millis())
            .collect();
        assert!(
            spread.len() > 10,
            "retries should not fall in step: {spread:?}"
        );
    }

    #[test]
    fn signatures_are_hmac_sha256_of_timestamp_dot_body() {
        // The value Python's hmac module gives, as in the receiver example of operations.md:
        // hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
        let body = br#"{"event":"kill"}"#;
        assert_eq!(
            signature(b"s3cret", 1_700_000_000, body),
            "sha256=7ded57f13ed13a9882ce956c5d4804a1dc8af20cf7a2973d5575b8517cc7c953"
        );
        assert_ne!(
            signature(b"s3cret", 1_700_000_001, body),
            signature(b"s3cret", 1_700_000_000, body)
        );
        assert_ne!(
            signature(b"other", 1_700_000_000, body),
            signature(b"s3cret", 1_700_000_000, body)
        );
    }

    #[test]
    fn backoff_doubles_from_half_a_second_up_to_thirty() {
        let waits: Vec<u128> = (1..=9).map(|r| backoff(r).as_millis()).collect();
        assert_eq!(
            waits,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
        assert_eq!(backoff(0), FIRST_BACKOFF);
    }

    #[test]
    fn labels_are_host_and_port_only() {
        let hook = |url: &str| Webhook {
            url: url.parse().unwrap(),
            events: Vec::new(),
            timeout: Duration::from_secs(1),
            retries: 0,
            signing: Signing::Unsigned,
        };
        assert_eq!(
            label(&hook("http://127.0.0.1:9999/hook?key=s3")),
            "127.0.0.1:9999"
        );
        assert_eq!(
            label(&hook("https://hooks.example.com/T0/B1/x")),
            "hooks.example.com:443"
        );
        assert_eq!(label(&hook("http://h/")), "h:80");
    }

    #[test]
    fn only_some_client_errors_are_worth_retrying() {
        let transient = |s: u16| {
            matches!(
                classify(StatusCode::from_u16(s).unwrap()),
                Err(Failure::Transient(_))
            )
        };
        assert!(classify(StatusCode::NO_CONTENT).is_ok());
        assert!(transient(500) && transient(503) && transient(429) && transient(408));
        assert!(!transient(400) && !transient(401) && !transient(404));
    }
}
