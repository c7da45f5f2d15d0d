//! Crash-safe state: the real binary, killed with SIGKILL at random moments, restarted on the
//! same state_dir, keeps what it answered; torn files fall back to their previous generation;
//! the token budget's count survives restarts.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::common::{admin_tokens, chat, client, metric, temp_dir, OPERATOR, VIEWER};

/// A gateway process and what its log said.
struct Gateway {
    child: Child,
    admin: SocketAddr,
    traffic: SocketAddr,
    lines: Receiver<String>,
    /// What it logged before it served.
    early: Vec<String>,
}

fn config(state_dir: &Path, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n\n\
         {}\
         [upstreams.demo]\nsim = {{ profile = \"instant\" }}\n\n\
         [[routes]]\nname = \"a\"\nmatch = {{ path_prefix = \"/v1/\" }}\nupstream = \"demo\"\n\n\
         [[routes]]\nname = \"b\"\nmatch = {{ path_prefix = \"/b/\" }}\nupstream = \"demo\"\n\n{extra}",
        state_dir.display(),
        admin_tokens(),
    )
}

/// Starts `switchyard serve` and waits (at most 20 s) for it to serve; `Err` carries what it
/// wrote to stderr if it exited instead.
fn spawn(config_path: &Path) -> Result<Gateway, (Option<i32>, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--log-format", "json", "--config"])
        .arg(config_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut early = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains("switchyard serving") => {
                let ready: Value = serde_json::from_str(&line).unwrap();
                let addr = |key: &str| ready[key].as_str().unwrap().parse().unwrap();
                return Ok(Gateway {
                    admin: addr("admin"),
                    traffic: addr("traffic"),
                    child,
                    lines,
                    early,
                });
            }
            Ok(line) => early.push(line),
            Err(RecvTimeoutError::Disconnected) => {
                let status = child.wait().unwrap();
                let mut stderr = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut stderr)
                    .unwrap();
                return Err((status.code(), stderr));
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!("the gateway did not start within 20 s");
            }
        }
    }
}

impl Gateway {
    fn start(config_path: &Path) -> Gateway {
        spawn(config_path).unwrap_or_else(|(code, stderr)| panic!("exited {code:?}: {stderr}"))
    }

    /// SIGKILL: no shutdown code runs.
    fn crash(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, and waits (at most 10 s) for a clean exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.crash();
        panic!("the gateway did not stop within 10 s of SIGTERM");
    }

    /// Log lines written so far.
    fn logged(&self) -> Vec<String> {
        let mut all = self.early.clone();
        all.extend(self.lines.try_iter());
        all
    }

    async fn status(&self) -> Value {
        let (status, body) = call(self.admin, "GET", "/admin/status", VIEWER, None)
            .await
            .unwrap();
        assert_eq!(status, 200);
        body
    }

    /// Route → the reason of its engaged kill switch, and its percentage.
    async fn kills(&self) -> Kills {
        kills_of(&self.status().await)
    }
}

type Kills = BTreeMap<String, Option<(String, Option<f64>)>>;

fn kills_of(status: &Value) -> Kills {
    status["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|route| {
            let switch = &route["kill_switch"];
            let state = (!switch.is_null()).then(|| {
                (
                    switch["reason"].as_str().unwrap().to_owned(),
                    switch["percent"].as_f64(),
                )
            });
            (route["name"].as_str().unwrap().to_owned(), state)
        })
        .collect()
}

/// One admin call; `Err` when the connection fails (the gateway was killed).
async fn call(
    admin: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    let request = Request::builder()
        .method(method)
        .uri(format!("http://{admin}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(
            body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string())),
        ))
        .unwrap();
    let response = client().request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// A kill (with a reason unique to the call, and maybe a percentage) or a revive.
#[derive(Debug, Clone)]
struct Op {
    route: &'static str,
    kill: Option<(String, Option<f64>)>,
}

impl Op {
    fn nth(round: usize, i: usize) -> Op {
        let route = if i.is_multiple_of(2) { "a" } else { "b" };
        let kill = match (i / 2 + round) % 3 {
            0 => Some((format!("round {round} call {i}"), None)),
            1 => Some((
                format!("round {round} call {i}"),
                Some((10 + i % 80) as f64),
            )),
            _ => None,
        };
        Op { route, kill }
    }

    fn apply(&self, kills: &mut Kills) {
        kills.insert(self.route.to_owned(), self.kill.clone());
    }
}

/// What the storm did: the calls answered, in order, and the one sent but not answered.
#[derive(Default)]
struct Storm {
    answered: Vec<Op>,
    in_flight: Option<Op>,
}

/// Sequential kills and revives until the gateway stops answering; `answered` is told of
/// each answer.
async fn storm(admin: SocketAddr, round: usize, log: &mut Storm, answered: &Notify) {
    for i in 0.. {
        let op = Op::nth(round, i);
        let path = format!("/admin/routes/{}/kill", op.route);
        log.in_flight = Some(op.clone());
        let result = match &op.kill {
            Some((reason, percent)) => {
                let mut body = json!({ "reason": reason });
                if let Some(p) = percent {
                    body["percent"] = json!(p);
                }
                call(admin, "POST", &path, OPERATOR, Some(body)).await
            }
            None => call(admin, "DELETE", &path, OPERATOR, None).await,
        };
        match result {
            Ok((200, _)) => {
                log.answered.push(op);
                log.in_flight = None;
                answered.notify_one();
            }
            Ok((status, body)) => panic!("{op:?} answered {status}: {body}"),
            Err(_) => return, // killed
        }
    }
}

fn random_below(n: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    u64::from(nanos) % n
}

// Long: one scenario told in order; each step starts from the state the previous one left.
#[tokio::test]
async fn sigkill_during_a_storm_of_kills_keeps_exactly_what_was_answered() {
    let dir = temp_dir("crash-storm");
    let path = dir.join("gateway.toml");
    std::fs::write(&path, config(&dir.join("state"), "")).unwrap();
    let mut gateway = Gateway::start(&path);
    let mut expected: Kills = gateway.kills().await;
    let (mut answered, mut in_flight_kept) = (0, 0);
    for round in 0..6 {
        let mut log = Storm::default();
        // A random moment after the round's first answer: mid-write, mid-answer, between calls.
        let delay = Duration::from_millis(random_below(400));
        let first = Notify::new();
        {
            let admin = gateway.admin;
            let child = &mut gateway.child;
            let killer = async {
                let _ = tokio::time::timeout(Duration::from_secs(20), first.notified()).await;
                tokio::time::sleep(delay).await;
                child.kill().unwrap();
            };
            tokio::select! {
                () = storm(admin, round, &mut log, &first) => {}
                () = killer => {}
            }
        }
        assert!(
            !log.answered.is_empty(),
            "round {round}: no call was answered within 20 s"
        );
        gateway.child.wait().unwrap();
        answered += log.answered.len();
        for op in &log.answered {
            op.apply(&mut expected);
        }
        gateway = Gateway::start(&path);
        let after = gateway.kills().await;
        // The call in flight when the process died may or may not have reached the disk
        // (its answer was never seen); every answered call did.
        let mut with_in_flight = expected.clone();
        if let Some(op) = &log.in_flight {
            op.apply(&mut with_in_flight);
        }
        if after != expected {
            assert_eq!(
                after,
                with_in_flight,
                "round {round}: after {} answered calls the state is neither theirs nor the \
                 unanswered call's",
                log.answered.len()
            );
            in_flight_kept += 1;
            expected = with_in_flight;
        }
    }
    assert!(
        answered >= 6,
        "the storms hardly ran: {answered} answered calls"
    );
    eprintln!("{answered} answered calls over 6 crashes; {in_flight_kept} unanswered calls had reached the disk");
    gateway.stop();
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_torn_state_file_starts_from_its_previous_generation_or_stops_the_start() {
    let dir = temp_dir("torn-state");
    let state = dir.join("state");
    let path = dir.join("gateway.toml");
    std::fs::write(&path, config(&state, "")).unwrap();
    let gateway = Gateway::start(&path);
    for (route, reason) in [("a", "first"), ("b", "second")] {
        let body = json!({ "reason": reason });
        let (status, answer) = call(
            gateway.admin,
            "POST",
            &format!("/admin/routes/{route}/kill"),
            OPERATOR,
            Some(body),
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{answer}");
    }
    gateway.crash();
    let file = state.join("kill_switches.json");
    let text = std::fs::read(&file).unwrap();
    std::fs::write(&file, &text[..text.len() / 2]).unwrap();

    let gateway = Gateway::start(&path);
    let kills = gateway.kills().await;
    assert_eq!(kills["a"], Some(("first".to_owned(), None)));
    assert_eq!(
        kills["b"], None,
        "the previous generation had only the first kill"
    );
    let loud = gateway
        .logged()
        .into_iter()
        .find(|l| l.contains("\"ERROR\"") && l.contains("kill_switches.json.prev"));
    assert!(loud.is_some(), "no error naming both files in the log");
    assert_eq!(
        std::fs::read(state.join("kill_switches.json.corrupt")).unwrap(),
        &text[..text.len() / 2],
        "the torn file is kept for inspection"
    );
    gateway.crash();

    std::fs::write(&file, b"[{\"route\":").unwrap();
    std::fs::remove_file(state.join("kill_switches.json.prev")).unwrap();
    let (code, stderr) = match spawn(&path) {
        Ok(gateway) => {
            gateway.crash();
            panic!("started without a usable kill_switches.json");
        }
        Err(failed) => failed,
    };
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    assert!(stderr.contains("move"), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Sends a chat request and waits (at most 5 s) for its tokens to be counted.
async fn use_tokens(gateway: &Gateway) -> u64 {
    let before = gateway.status().await["tokens_today"].as_u64().unwrap();
    let answer = crate::common::post_json(
        gateway.traffic,
        "/v1/chat/completions",
        &[],
        chat("gpt-4o", false),
    )
    .await;
    assert_eq!(answer.status, 200);
    for _ in 0..100 {
        let now = gateway.status().await["tokens_today"].as_u64().unwrap();
        if now > before {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the request's tokens were never counted");
}

/// Polls `budget.json` (at most 10 s) until it holds `tokens`.
fn saved_tokens(state: &Path, tokens: u64) {
    let file: PathBuf = state.join("budget.json");
    for _ in 0..200 {
        let saved = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        if saved.is_some_and(|s| s["tokens"] == tokens) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("budget.json never held {tokens} tokens");
}

#[tokio::test]
async fn the_token_budget_survives_a_crash_and_a_restart() {
    let dir = temp_dir("budget-restart");
    let state = dir.join("state");
    let path = dir.join("gateway.toml");
    // The budget day starts twelve hours from now: no turn of the day during the test.
    let hour = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 3600;
    let budgets = format!(
        "[budgets]\ndaily_tokens = 1000000\nreset_at = \"{:02}:00\"\n",
        (hour + 12) % 24
    );
    std::fs::write(&path, config(&state, &budgets)).unwrap();
    let gateway = Gateway::start(&path);
    let used = use_tokens(&gateway).await;
    assert!(used > 0);
    // Saved by the control plane's periodic task, then lost nothing to SIGKILL.
    saved_tokens(&state, used);
    gateway.crash();

    let gateway = Gateway::start(&path);
    assert_eq!(gateway.status().await["tokens_today"], used);
    let ratio = used as f64 / 1_000_000.0;
    let mut seen = 0.0;
    for _ in 0..100 {
        let metrics = crate::common::get(gateway.admin, "/metrics").await;
        let text = String::from_utf8_lossy(&metrics.body).into_owned();
        seen = metric(&text, "switchyard_token_budget_used_ratio", &[]);
        if (seen - ratio).abs() < 1e-9 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!((seen - ratio).abs() < 1e-9, "{seen} != {ratio}");

    // A graceful stop saves what the periodic task has not written yet.
    let more = use_tokens(&gateway).await;
    assert!(more > used);
    gateway.stop();
    let gateway = Gateway::start(&path);
    assert_eq!(gateway.status().await["tokens_today"], more);
    gateway.stop();
    std::fs::remove_dir_all(dir).unwrap();
}
