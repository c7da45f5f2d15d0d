//! Delivery to one webhook: its own queue and task, so a slow or dead receiver only ever
//! delays its own events. Each event is POSTed with a per-attempt timeout and retried with
//! exponential backoff.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use metrics::counter;
use switchyard_config::Webhook;
use switchyard_core::metrics as names;
use tokio::sync::mpsc;

use crate::notify::Event;

/// Shared by every webhook: pooled, http and https (rustls, webpki roots).
pub(crate) type HookClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Events waiting for one webhook; beyond this they are dropped, not queued without end.
pub(crate) const QUEUE: usize = 1024;

/// The first retry waits this long; each further one twice as long as the one before.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A receiver's answer is read only so the connection can go back to the pool; nobody
/// needs more of it than this.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

pub(crate) fn client() -> Result<HookClient, rustls::Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let tls = crate::tls::client_config()?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector))
}

/// The wait before retry number `retry` (1-based): 0.5 s, 1 s, 2 s, 4 s, ... at most 30 s.
pub fn backoff(retry: u32) -> Duration {
    let doublings = retry.saturating_sub(1).min(16);
    FIRST_BACKOFF
        .saturating_mul(1u32 << doublings)
        .min(MAX_BACKOFF)
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
            let wait = backoff(attempt);
            tracing::info!(webhook = %self.label, event = event.kind.as_str(), %delivery, error = %why, retry_in_ms = wait.as_millis() as u64, "webhook attempt failed; will retry");
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(&self, event: &Event, delivery: &str, body: Bytes) -> Result<(), Failure> {
        let request = Request::post(self.webhook.url.clone())
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
    #![allow(clippy::unwrap_used)]
    use super::*;

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
