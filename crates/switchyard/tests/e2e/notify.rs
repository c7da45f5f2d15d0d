//! Webhook notifications: a receiver that is down, then slow, then up gets its event exactly
//! once; nobody waits for it meanwhile; a healthy receiver is not held up; alerts are sent.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard_sim::{Profile, Sim};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::common::*;

/// How a receiver treats the requests it gets.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Reads the request, answers only after 2 s.
    Slow,
    /// Records the request and answers 204 at once.
    Up,
}

/// A webhook receiver on a fixed port that can be down, slow or up.
pub(crate) struct Receiver {
    addr: SocketAddr,
    /// (x-switchyard-event header, JSON body) of each request answered in `Up` mode.
    got: Arc<Mutex<Vec<(String, Value)>>>,
    /// Requests seen in `Slow` mode.
    slow: Arc<AtomicUsize>,
    task: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Learns a free port and leaves nothing listening on it: the receiver starts down.
    async fn down() -> Receiver {
        let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        Receiver {
            addr,
            got: Arc::default(),
            slow: Arc::default(),
            task: None,
        }
    }

    pub(crate) async fn up() -> Receiver {
        let mut receiver = Receiver::down().await;
        receiver.listen(Mode::Up).await;
        receiver
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// (Re)starts listening in `mode`.
    async fn listen(&mut self, mode: Mode) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        let listener = TcpListener::bind(self.addr).await.unwrap();
        let (got, slow) = (self.got.clone(), self.slow.clone());
        self.task = Some(tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, mode, got.clone(), slow.clone()));
            }
        }));
    }

    pub(crate) fn events(&self) -> Vec<(String, Value)> {
        self.got.lock().unwrap().clone()
    }

    /// Waits up to `limit` until `n` events arrived.
    async fn wait_for(&self, n: usize, limit: Duration) -> Vec<(String, Value)> {
        let deadline = Instant::now() + limit;
        while self.events().len() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let events = self.events();
        assert!(
            events.len() >= n,
            "{} of {n} events after {limit:?}: {events:?}",
            events.len()
        );
        events
    }
}

/// Answers every request on one connection (the gateway's client keeps connections alive).
async fn serve(
    mut stream: TcpStream,
    mode: Mode,
    got: Arc<Mutex<Vec<(String, Value)>>>,
    slow: Arc<AtomicUsize>,
) {
    while let Some((event, body)) = read_request(&mut stream).await {
        if mode == Mode::Slow {
            slow.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(2)).await;
        } else {
            got.lock().unwrap().push((event, body));
        }
        let answer = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
        if stream.write_all(answer).await.is_err() {
            return;
        }
    }
}

/// One request's x-switchyard-event header and JSON body; `None` when the peer closes.
async fn read_request(stream: &mut TcpStream) -> Option<(String, Value)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut buf).await.ok().filter(|n| *n > 0)?;
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_ascii_lowercase();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
    };
    assert_eq!(
        header("content-type").as_deref(),
        Some("application/json"),
        "{head}"
    );
    let length: usize = header("content-length")?.parse().ok()?;
    while data.len() < head_end + length {
        let n = stream.read(&mut buf).await.ok().filter(|n| *n > 0)?;
        data.extend_from_slice(&buf[..n]);
    }
    let body = serde_json::from_slice(&data[head_end..head_end + length]).unwrap();
    Some((header("x-switchyard-event").unwrap_or_default(), body))
}

fn delivery_count(m: &str, webhook: SocketAddr, result: &str) -> f64 {
    let label = webhook.to_string();
    metric(
        m,
        "switchyard_webhook_deliveries_total",
        &[("webhook", &label), ("result", result)],
    )
}

const FALLBACK: &str =
    "[routes.kill_switch]\nfallback = { text = \"Resting; a person will answer by email.\" }\n";

/// Neither a request through the gateway nor an admin call may wait for a webhook.
const PROMPT: Duration = Duration::from_millis(500);

async fn timed_chat(gw: &switchyard::Running) -> Answer {
    let started = Instant::now();
    let answer = post_json(
        gw.traffic,
        "/v1/chat/completions",
        &[],
        chat("gpt-4o", false),
    )
    .await;
    assert!(
        started.elapsed() < PROMPT,
        "a request took {:?}",
        started.elapsed()
    );
    answer
}

async fn timed_admin(gw: &switchyard::Running, method: &str, body: Value) -> Answer {
    let started = Instant::now();
    let path = "/admin/routes/n-flaky/kill";
    let answer = admin(gw, method, path, OPERATOR, Some(body)).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert!(
        started.elapsed() < PROMPT,
        "{method} took {:?}",
        started.elapsed()
    );
    answer
}

fn kinds(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(kind, _)| kind.as_str()).collect()
}

/// A gateway with two webhooks: `flaky` (kills and revives, short timeout, many retries) and
/// `healthy` (everything).
async fn two_receivers() -> (switchyard::Running, Receiver, Receiver, Sim) {
    let (sim, up) = sim(Profile::default()).await;
    let flaky = Receiver::down().await;
    let healthy = Receiver::up().await;
    let hooks = format!(
        "[[notify.webhooks]]\nurl = \"{}\"\nevents = [\"kill\", \"revive\"]\ntimeout = \"300ms\"\nretries = 10\n\n\
         [[notify.webhooks]]\nurl = \"{}\"\n\n",
        flaky.url(),
        healthy.url()
    );
    let route = one_route("n-flaky", &format!("http://{up}"), FALLBACK);
    let gw = gateway(&format!("{hooks}{}{route}", admin_tokens())).await;
    (gw, flaky, healthy, sim)
}

/// Down, then slow: refused attempts, then one that reaches the receiver and times out;
/// meanwhile a revive and a request go through at once.
async fn down_then_slow(gw: &switchyard::Running, flaky: &mut Receiver) {
    eventually_metrics(gw, "a refused attempt", |m| {
        delivery_count(m, flaky.addr, "retried") >= 1.0
    })
    .await;
    flaky.listen(Mode::Slow).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while flaky.slow.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        flaky.slow.load(Ordering::SeqCst) >= 1,
        "no attempt reached the slow receiver"
    );
    timed_admin(gw, "DELETE", json!({"reason": "drill over"})).await;
    assert_eq!(timed_chat(gw).await.status, 200);
    tokio::time::sleep(Duration::from_millis(400)).await; // past the 300 ms attempt timeout
}

#[tokio::test]
async fn a_receiver_down_then_slow_then_up_gets_the_kill_once_and_nobody_waits() {
    let (gw, mut flaky, healthy, _sim) = two_receivers().await;
    let body = json!({"reason": "webhook drill", "percent": 50.0});
    let kill = timed_admin(&gw, "POST", body).await;
    let incident = kill.json()["incident"].as_str().unwrap().to_owned();
    assert_eq!(timed_chat(&gw).await.status, 200);

    // The healthy receiver has the kill and its incident while the other one is still down.
    let events = healthy.wait_for(2, Duration::from_secs(2)).await;
    assert!(flaky.events().is_empty());
    assert_eq!(kinds(&events), ["kill", "incident"]);
    assert_eq!(events[1].1["id"], json!(incident));
    assert_eq!(events[1].1["route"], "n-flaky");

    down_then_slow(&gw, &mut flaky).await;

    // Up: the kill arrives, then the revive queued behind it; each exactly once.
    flaky.listen(Mode::Up).await;
    flaky.wait_for(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // time for any duplicate to show up
    let events = flaky.events();
    assert_eq!(kinds(&events), ["kill", "revive"], "{events:?}");
    let kill = &events[0].1;
    assert_eq!(
        (&kill["event"], &kill["route"]),
        (&json!("kill"), &json!("n-flaky"))
    );
    assert_eq!(
        (&kill["reason"], &kill["by"]),
        (&json!("webhook drill"), &json!("oncall"))
    );
    assert_eq!(
        (&kill["percent"], &kill["segment"]),
        (&json!(50.0), &Value::Null)
    );
    assert!(kill["at_ms"].as_u64().unwrap() > 1_700_000_000_000);
    assert_eq!(events[1].1["reason"], "drill over");
    assert_eq!(
        healthy.wait_for(3, Duration::from_secs(2)).await[2].0,
        "revive"
    );

    let m = metrics(&gw).await;
    assert_eq!(delivery_count(&m, flaky.addr, "delivered"), 2.0);
    assert!(delivery_count(&m, flaky.addr, "retried") >= 2.0);
    assert_eq!(delivery_count(&m, flaky.addr, "failed"), 0.0);
    assert_eq!(delivery_count(&m, healthy.addr, "delivered"), 3.0);
    gw.stop().await;
}

#[tokio::test]
async fn an_alert_that_fires_is_sent() {
    let (_sim, up) = sim(Profile::default()).await;
    let receiver = Receiver::up().await;
    let alerts = "[alerts]\nwindow = \"1s\"\nbaseline = \"10s\"\nmin_requests = 5\n";
    let hook = format!(
        "[[notify.webhooks]]\nurl = \"{}\"\nevents = [\"alert\"]\n",
        receiver.url()
    );
    // A 20-token context window: one request fills it, and context_fill fires.
    let route = one_route("n-alert", &format!("http://{up}"), "")
        .replace("context_window = 128000", "context_window = 20");
    let gw = gateway(&format!("{alerts}{hook}{route}")).await;
    assert_eq!(timed_chat(&gw).await.status, 200);
    let events = receiver.wait_for(1, Duration::from_secs(5)).await;
    let (kind, alert) = &events[0];
    assert_eq!(kind, "alert");
    assert_eq!(
        (&alert["alert"], &alert["route"]),
        (&json!("context_fill"), &json!("n-alert"))
    );
    assert_eq!(alert["firing"], true);
    assert_eq!(
        (&alert["value"], &alert["threshold"]),
        (&json!(1.0), &json!(0.8))
    );
    // The window moves on, the alert clears, and that is sent too.
    let events = receiver.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(
        (&events[1].1["alert"], &events[1].1["firing"]),
        (&json!("context_fill"), &json!(false))
    );
    gw.stop().await;
}

#[tokio::test]
async fn reloads_change_the_webhooks_and_are_sent_applied_or_rejected() {
    let (_sim, up) = sim(Profile::default()).await;
    let (first, second) = (Receiver::up().await, Receiver::up().await);
    let hook = |r: &Receiver| {
        format!(
            "[[notify.webhooks]]\nurl = \"{}\"\nevents = [\"reload\"]\n",
            r.url()
        )
    };
    let route = one_route("n-reload", &format!("http://{up}"), "");
    let text = format!("[server]\n{}{}{route}", admin_tokens(), hook(&first));
    let (gw, path) = crate::reload::gateway_from_file(&text).await;

    // The new config adds a webhook: the reload event already goes to both.
    std::fs::write(&path, format!("{text}\n{}", hook(&second))).unwrap();
    let answer = admin(&gw, "POST", "/admin/reload", OPERATOR, None).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let applied = &first.wait_for(1, Duration::from_secs(5)).await[0].1;
    assert_eq!(applied["result"], "applied");
    assert_eq!(applied["version"], answer.json()["config_version"]);
    assert_eq!(applied["previous"], answer.json()["previous_version"]);
    assert_eq!(
        second.wait_for(1, Duration::from_secs(5)).await[0].1,
        *applied
    );

    // A broken file is refused, and that is news too (the file watch may refuse it as well).
    std::fs::write(
        &path,
        format!("{text}\n[[notify.webhooks]]\nurl = \"ftp://x\"\n"),
    )
    .unwrap();
    let answer = admin(&gw, "POST", "/admin/reload", OPERATOR, None).await;
    assert_eq!(answer.status, 422, "{:?}", answer.body);
    let events = second.wait_for(2, Duration::from_secs(5)).await;
    for (_, rejected) in &events[1..] {
        assert_eq!(rejected["result"], "rejected");
        assert_eq!(rejected["version"], applied["version"]);
        assert!(
            rejected["error"]
                .as_str()
                .unwrap()
                .contains("notify.webhooks[1].url"),
            "{rejected}"
        );
    }
    gw.stop().await;
}
