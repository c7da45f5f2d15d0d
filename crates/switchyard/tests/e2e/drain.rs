//! Graceful drain: /ready answers 503 at once, the listener keeps accepting for drain_delay,
//! then refuses; requests in flight finish, up to drain_timeout.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use switchyard_sim::Profile;
use tokio::sync::mpsc;

use crate::common::*;

/// A stream of `chunks` content events, one a `interval_ms` apart.
fn slow_stream(chunks: u32, interval_ms: f64) -> Profile {
    Profile {
        stream_chunks: chunks,
        completion_tokens: chunks,
        chunk_interval_ms: interval_ms,
        ..Profile::default()
    }
}

/// Events of an OpenAI chat stream with usage: role, the content chunks, finish, usage, [DONE].
fn events_in_whole_stream(chunks: u32) -> usize {
    chunks as usize + 4
}

/// Opens a streamed chat completion and returns its body once the first event has arrived.
async fn open_stream(traffic: SocketAddr) -> (Incoming, Vec<u8>) {
    let req = Request::post(format!("http://{traffic}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(chat("gpt-4o", true).to_string())))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), client().request(req))
        .await
        .expect("response headers within 10 s")
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("a first event within 10 s")
        .expect("a frame")
        .unwrap();
    (body, first.into_data().unwrap().to_vec())
}

/// Reads the rest of a body: Ok(text) when it ended cleanly, Err(text so far) when broken.
async fn read_rest(mut body: Incoming, mut seen: Vec<u8>) -> Result<String, String> {
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    seen.extend_from_slice(&data);
                }
            }
            Err(_) => return Err(String::from_utf8_lossy(&seen).into_owned()),
        }
    }
    Ok(String::from_utf8_lossy(&seen).into_owned())
}

fn assert_intact(text: &str, chunks: u32) {
    assert!(
        text.ends_with("data: [DONE]\n\n"),
        "not a whole stream: {text}"
    );
    assert_eq!(
        text.matches("data: ").count(),
        events_in_whole_stream(chunks),
        "events are missing: {text}"
    );
}

/// Polls until a TCP connect to `addr` is refused, or panics after `within`.
async fn until_refused(addr: SocketAddr, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            _ => {
                assert!(
                    Instant::now() < deadline,
                    "{addr} still accepts connections"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Polls /ready until it answers 503 "draining", or panics after 5 s.
async fn until_draining(traffic: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ready = get(traffic, "/ready").await;
        if ready.status == 503 {
            assert_eq!(ready.json()["status"], "draining");
            return;
        }
        assert!(Instant::now() < deadline, "/ready never said draining");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn drain_config(up: SocketAddr, server: &str) -> String {
    format!(
        "[server]\n{server}\n{}",
        one_route("drained", &format!("http://{up}"), "")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_lets_the_stream_in_flight_finish_and_refuses_connections_after_drain_delay() {
    let (_sim, up) = sim(slow_stream(12, 300.0)).await;
    let gw = gateway(&drain_config(
        up,
        "drain_delay = \"2s\"\ndrain_timeout = \"30s\"",
    ))
    .await;
    let traffic = gw.traffic;
    assert_eq!(get(traffic, "/ready").await.status, 200);
    let (body, first) = open_stream(traffic).await;
    let stream = tokio::spawn(read_rest(body, first));
    let began = Instant::now();
    let drain = tokio::spawn(gw.drain());
    until_draining(traffic).await;
    // Still accepting during drain_delay: load balancers have not all noticed yet.
    let during = post_json(traffic, "/v1/chat/completions", &[], chat("gpt-4o", false)).await;
    assert_eq!(during.status, 200);
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "too slow to see the delay"
    );
    until_refused(traffic, Duration::from_secs(5)).await;
    assert!(
        began.elapsed() >= Duration::from_secs(2),
        "refused before drain_delay: {:?}",
        began.elapsed()
    );
    assert!(
        !stream.is_finished(),
        "the stream ended before the listener closed"
    );
    let text = tokio::time::timeout(Duration::from_secs(10), stream)
        .await
        .expect("the stream ends within 10 s")
        .unwrap()
        .expect("the stream was cut");
    assert_intact(&text, 12);
    let drained = tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .expect("the drain ends once the stream has")
        .unwrap();
    assert_eq!(drained, switchyard::Drained { cut: 0 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_cuts_a_stream_that_outlives_it() {
    let (_sim, up) = sim(slow_stream(10, 1000.0)).await;
    let gw = gateway(&drain_config(
        up,
        "drain_delay = \"0s\"\ndrain_timeout = \"1s\"",
    ))
    .await;
    let traffic = gw.traffic;
    let (body, first) = open_stream(traffic).await;
    let stream = tokio::spawn(read_rest(body, first));
    let began = Instant::now();
    let drained = tokio::time::timeout(Duration::from_secs(5), gw.drain())
        .await
        .expect("the drain ends at drain_timeout");
    assert_eq!(drained, switchyard::Drained { cut: 1 });
    assert!(
        began.elapsed() >= Duration::from_secs(1),
        "cut before drain_timeout: {:?}",
        began.elapsed()
    );
    let cut = tokio::time::timeout(Duration::from_secs(5), stream)
        .await
        .expect("the client sees the cut at once")
        .unwrap()
        .expect_err("a cut stream must not end cleanly");
    assert!(!cut.contains("[DONE]"), "{cut}");
    until_refused(traffic, Duration::from_secs(1)).await;
}

/// `switchyard serve` as a child process, its JSON log lines on a channel.
struct Served {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    traffic: SocketAddr,
}

impl Served {
    async fn start(config: &str) -> Served {
        let dir = temp_dir("drain-serve");
        let path = dir.join("gateway.toml");
        std::fs::write(
            &path,
            config.replace("STATE_DIR", &dir.join("state").display().to_string()),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["serve", "--log-format", "json", "--config"])
            .arg(&path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
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
        let mut served = Served {
            child,
            lines,
            traffic: "0.0.0.0:0".parse().unwrap(),
        };
        let ready: serde_json::Value =
            serde_json::from_str(&served.line_with("switchyard serving").await).unwrap();
        served.traffic = ready["traffic"].as_str().unwrap().parse().unwrap();
        served
    }

    /// The next log line containing `needle`, within 15 s.
    async fn line_with(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .unwrap_or_else(|_| panic!("no log line with {needle:?} within 15 s"))
                .unwrap_or_else(|| panic!("the log ended before {needle:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap()
            .success());
    }

    /// The exit status, waiting up to `within`.
    async fn exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("switchyard did not exit within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn binary_config(up: SocketAddr) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndrain_delay = \"1s\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"STATE_DIR\"\n{}",
        one_route("drained", &format!("http://{up}"), "")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_ten_second_stream_finish_then_exits_0() {
    let (_sim, up) = sim(slow_stream(10, 1000.0)).await;
    let mut served = Served::start(&binary_config(up)).await;
    let traffic = served.traffic;
    assert_eq!(get(traffic, "/ready").await.status, 200);
    let began = Instant::now();
    let (body, first) = open_stream(traffic).await;
    let stream = tokio::spawn(read_rest(body, first));
    served.signal("TERM");
    until_draining(traffic).await;
    served.line_with("no longer accepting connections").await;
    let refused = tokio::net::TcpStream::connect(traffic).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused),
        "a new connection after drain_delay: {refused:?}"
    );
    assert!(
        !stream.is_finished(),
        "the stream ended before the listener closed"
    );
    let text = tokio::time::timeout(Duration::from_secs(20), stream)
        .await
        .expect("the stream ends within 20 s")
        .unwrap()
        .expect("the stream was cut");
    assert_intact(&text, 10);
    assert!(
        began.elapsed() >= Duration::from_secs(9),
        "the stream was not the ten-second one: {:?}",
        began.elapsed()
    );
    let status = served.exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{status}");
    let drained: serde_json::Value =
        serde_json::from_str(&served.line_with("shut down").await).unwrap();
    assert_eq!(drained["cut"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let (_sim, up) = sim(slow_stream(10, 1000.0)).await;
    let mut served = Served::start(&binary_config(up)).await;
    let (body, first) = open_stream(served.traffic).await;
    let stream = tokio::spawn(read_rest(body, first));
    served.signal("TERM");
    served.line_with("shutdown signal: draining").await;
    let second = Instant::now();
    served.signal("INT");
    let status = served.exit(Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(1), "{status}");
    assert!(
        second.elapsed() < Duration::from_secs(2),
        "{:?}",
        second.elapsed()
    );
    let cut = tokio::time::timeout(Duration::from_secs(5), stream)
        .await
        .expect("the client sees the exit")
        .unwrap()
        .expect_err("the stream cannot have finished");
    assert!(!cut.contains("[DONE]"), "{cut}");
}
