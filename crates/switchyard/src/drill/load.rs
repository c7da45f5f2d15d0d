//! Realistic traffic: a population of users, each in a conversation whose history grows turn
//! by turn, some streaming; every answer is recorded with when and where it was served.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::json;

use super::harness::Http;

/// One answer the drill's clients got.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub at: Instant,
    /// 0 when no answer came at all.
    pub status: u16,
    pub upstream: Option<String>,
    pub fallback: bool,
    /// `x-switchyard-error`: the gateway answered for a reason of its own.
    pub gateway_error: Option<String>,
    /// The `model` the answer named (the snapshot that served it).
    pub model: Option<String>,
    pub stream: bool,
}

impl Exchange {
    /// No answer, or the gateway could not get one from any upstream (its own 502 or 504):
    /// the request is lost. Upstream errors, sheds (429) and fallbacks are answers.
    pub fn lost(&self) -> bool {
        self.status == 0 || (matches!(self.status, 502 | 504) && self.gateway_error.is_some())
    }
}

/// Scores an answer the way the application's own evaluator would (None: no report).
pub type Evaluator = fn(&Exchange) -> Option<f64>;

/// How the traffic looks.
#[derive(Clone)]
pub struct Shape {
    /// Clients sending at once.
    pub workers: usize,
    /// Distinct users they act for.
    pub users: u32,
    /// Pause between one client's requests.
    pub pause: Duration,
    /// One request in `stream_every` streams.
    pub stream_every: u32,
    pub evaluator: Option<Evaluator>,
    /// Where the users' ids start, so two loads can act for different people.
    pub first_user: u32,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            workers: 4,
            users: 200,
            pause: Duration::from_millis(5),
            stream_every: 3,
            evaluator: None,
            first_user: 0,
        }
    }
}

/// The longest a load runs, whatever happens: every drill loop is bounded in time.
const HARD_LIMIT: Duration = Duration::from_secs(600);
/// The most requests one client sends.
const MAX_PER_WORKER: u64 = 1_000_000;
/// How long one request may take before it counts as lost.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(90);

/// Traffic running in the background until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Exchange>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(http: &Http, gateway: SocketAddr, shape: Shape) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..shape.workers)
            .map(|w| {
                let client = Client {
                    http: http.clone(),
                    gateway,
                    shape: shape.clone(),
                    stop: stop.clone(),
                    log: log.clone(),
                };
                tokio::spawn(client.run(w as u64))
            })
            .collect();
        Load { stop, log, tasks }
    }

    /// What has been answered so far.
    pub fn snapshot(&self) -> Vec<Exchange> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops the clients, waits for the requests in flight, and returns every exchange.
    pub async fn stop(self) -> Vec<Exchange> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut *log)
    }
}

struct Client {
    http: Http,
    gateway: SocketAddr,
    shape: Shape,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Exchange>>>,
}

impl Client {
    async fn run(self, worker: u64) {
        let started = switchyard_core::clock::now();
        let users = u64::from(self.shape.users.max(1));
        for n in 0..MAX_PER_WORKER {
            if self.stop.load(Ordering::Relaxed) || started.elapsed() > HARD_LIMIT {
                break;
            }
            // Users take turns: user u's k-th request is turn k of their conversation.
            let i = n * self.shape.workers as u64 + worker;
            let user = u64::from(self.shape.first_user) + i % users;
            let turn = (i / users) % 8 + 1;
            let stream = i.is_multiple_of(u64::from(self.shape.stream_every.max(1)));
            let exchange = self.ask(user, turn, stream).await;
            self.log
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(exchange);
            tokio::time::sleep(self.shape.pause).await;
        }
    }

    async fn ask(&self, user: u64, turn: u64, stream: bool) -> Exchange {
        let url = format!("http://{}/v1/chat/completions", self.gateway);
        let user_id = format!("user-{user}");
        let reply = self
            .http
            .send(
                Method::POST,
                &url,
                &[("x-user-id", &user_id)],
                Some(conversation(turn, stream).to_string()),
                REQUEST_TIMEOUT,
            )
            .await;
        let Ok(reply) = reply else {
            return Exchange {
                at: switchyard_core::clock::now(),
                status: 0,
                upstream: None,
                fallback: false,
                gateway_error: None,
                model: None,
                stream,
            };
        };
        let exchange = Exchange {
            at: switchyard_core::clock::now(),
            status: reply.status,
            upstream: reply.header("x-switchyard-upstream").map(str::to_owned),
            fallback: reply.header("x-switchyard-fallback").is_some(),
            gateway_error: reply.header("x-switchyard-error").map(str::to_owned),
            model: answered_model(&reply.body),
            stream,
        };
        if let (Some(evaluate), Some(id)) = (self.shape.evaluator, reply.header("x-request-id")) {
            if let Some(score) = evaluate(&exchange).filter(|_| reply.status == 200) {
                self.feedback(id, score).await;
            }
        }
        exchange
    }

    async fn feedback(&self, request_id: &str, score: f64) {
        let url = format!("http://{}/switchyard/v1/feedback", self.gateway);
        let body = json!({"request_id": request_id, "success": true, "score": score});
        // A lost report is not a lost request: the drill's figures count requests only.
        let _ = self
            .http
            .send(
                Method::POST,
                &url,
                &[],
                Some(body.to_string()),
                REQUEST_TIMEOUT,
            )
            .await;
    }
}

/// A support conversation at its `turn`: earlier questions, answers and a tool result.
fn conversation(turn: u64, stream: bool) -> serde_json::Value {
    let mut messages =
        vec![json!({"role": "system", "content": "You are the support agent of an online shop."})];
    for k in 1..turn {
        messages.push(json!({"role": "user", "content": format!("Question {k} about my order.")}));
        messages.push(
            json!({"role": "assistant", "content": format!("Answer {k}: let me look that up.")}),
        );
    }
    messages.push(
        json!({"role": "user", "content": "My order has not arrived, what can I do about it?"}),
    );
    json!({
        "model": "gpt-4o",
        "stream": stream,
        "stream_options": {"include_usage": true},
        "messages": messages,
    })
}

/// The first `"model":"…"` of a body, JSON or SSE.
fn answered_model(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("\"model\":\"")? + "\"model\":\"".len();
    let len = text[start..].find('"')?;
    Some(text[start..start + len].to_owned())
}

/// Counts of a slice of exchanges.
pub fn count(log: &[Exchange], pick: impl Fn(&Exchange) -> bool) -> u64 {
    log.iter().filter(|e| pick(e)).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answered_model_is_read_from_json_and_sse() {
        let json = br#"{"id":"x","model":"gpt-4o-sim-2026-01","choices":[]}"#;
        assert_eq!(answered_model(json).as_deref(), Some("gpt-4o-sim-2026-01"));
        let sse = b"data: {\"id\":\"x\",\"model\":\"gpt-4o-sim-2026-03\"}\n\ndata: [DONE]\n\n";
        assert_eq!(answered_model(sse).as_deref(), Some("gpt-4o-sim-2026-03"));
        assert_eq!(answered_model(b"{}"), None);
    }

    #[test]
    fn a_conversation_grows_with_its_turn() {
        let first = conversation(1, false);
        let fourth = conversation(4, true);
        assert_eq!(first["messages"].as_array().unwrap().len(), 2);
        assert_eq!(fourth["messages"].as_array().unwrap().len(), 8);
        assert_eq!(fourth["stream"], true);
    }

    #[test]
    fn lost_means_no_answer_or_no_upstream_reached() {
        let mut e = Exchange {
            at: switchyard_core::clock::now(),
            status: 0,
            upstream: None,
            fallback: false,
            gateway_error: None,
            model: None,
            stream: false,
        };
        assert!(e.lost());
        e.status = 502;
        assert!(!e.lost(), "an upstream's own 502 is an answer");
        e.gateway_error = Some("upstream_connect_failed".to_owned());
        assert!(e.lost());
        e.status = 429;
        assert!(!e.lost());
    }
}
