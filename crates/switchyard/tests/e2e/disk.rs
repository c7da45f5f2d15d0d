//! A full disk under state_dir: the real binary keeps serving every request, counts each
//! failed write in `switchyard_state_write_errors_total{file}`, and answers an admin change it
//! cannot make durable with `503 state_not_saved` while the change stays in force; once space
//! is free again the next change is durable and survives a restart.
//!
//! The state_dir is a 64 KiB tmpfs filled to the last byte (mounting needs root, as CI has);
//! the audit log variant points `audit.jsonl` at `/dev/full`, where every write fails.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

use crate::common::{admin_tokens, chat, client, metric, temp_dir, OPERATOR, VIEWER};

/// ENOSPC: what a full file system answers a write.
const NO_SPACE: i32 = 28;

/// A small tmpfs mounted for one test, unmounted (and its mount point removed) on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount -o size=`); fails the test, saying why, when it cannot.
    fn mount(size: &str) -> Tmpfs {
        let dir = temp_dir("tmpfs");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output();
        match out {
            Ok(out) if out.status.success() => Tmpfs { dir },
            Ok(out) => panic!(
                "cannot mount a tmpfs on {} ({}): the disk-full tests need root (CI runs as \
                 root); mount said: {}",
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(error) => panic!("cannot run mount for the disk-full tests: {error}"),
        }
    }

    fn filler(&self) -> PathBuf {
        self.dir.join("filler")
    }

    /// Fills the file system to the last byte, and checks that a small write now fails.
    fn fill(&self) {
        let mut file = std::fs::File::create(self.filler()).unwrap();
        for chunk in [4096usize, 1] {
            loop {
                match file.write(&vec![0u8; chunk]) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(NO_SPACE) => break,
                    Err(e) => panic!("filling the tmpfs: {e}"),
                }
            }
        }
        drop(file);
        let probe = std::fs::write(self.dir.join("probe"), b"x");
        assert_eq!(
            probe.as_ref().err().and_then(std::io::Error::raw_os_error),
            Some(NO_SPACE),
            "the tmpfs is not full: {probe:?}"
        );
        let _ = std::fs::remove_file(self.dir.join("probe"));
    }

    fn free(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.dir).status();
        if !unmounted.is_ok_and(|s| s.success()) {
            // Still busy (a process that did not exit yet): detach it now, freed when idle.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// A `switchyard serve` process, killed on drop.
struct Gateway {
    child: Child,
    admin: SocketAddr,
    traffic: SocketAddr,
    _lines: Receiver<String>,
}

impl Gateway {
    /// Starts the binary on the config and waits (at most 20 s) until it serves.
    fn start(config: &Path) -> Gateway {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["serve", "--log-format", "json", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let reader = std::io::BufReader::new(stdout);
            for line in reader.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines.recv_timeout(left).unwrap_or_else(|e| {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the gateway did not start within 20 s ({e})")
            });
            if line.contains("switchyard serving") {
                let ready: Value = serde_json::from_str(&line).unwrap();
                let addr = |key: &str| ready[key].as_str().unwrap().parse().unwrap();
                return Gateway {
                    admin: addr("admin"),
                    traffic: addr("traffic"),
                    child,
                    _lines: lines,
                };
            }
        }
    }

    /// SIGTERM, and waits (at most 10 s) for the process to exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the gateway did not stop within 10 s of SIGTERM");
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let token = if method == "GET" { VIEWER } else { OPERATOR };
        let request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.admin))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Full::new(
                body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string())),
            ))
            .unwrap();
        let response = client().request(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn kill(&self, reason: &str) -> (u16, Value) {
        let body = json!({ "reason": reason });
        self.call("POST", "/admin/routes/agent/kill", Some(body))
            .await
    }

    async fn revive(&self) -> (u16, Value) {
        self.call("DELETE", "/admin/routes/agent/kill", None).await
    }

    async fn metrics(&self) -> String {
        let request = Request::get(format!("http://{}/metrics", self.admin))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = client().request(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    /// Write errors counted for `file` so far.
    async fn write_errors(&self, file: &str) -> f64 {
        let text = self.metrics().await;
        metric(
            &text,
            "switchyard_state_write_errors_total",
            &[("file", file)],
        )
    }

    /// Polls (at most 20 s) until the count of write errors for `file` is above zero.
    async fn eventually_write_errors(&self, file: &str) -> f64 {
        for _ in 0..400 {
            let count = self.write_errors(file).await;
            if count > 0.0 {
                return count;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "no write error counted for {file}:\n{}",
            self.metrics().await
        );
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One route with a text fallback, a token budget (saved every 2 s while it moves) and the
/// in-process sim upstream.
fn write_config(state_dir: &Path) -> PathBuf {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n\n\
         {}\
         [budgets]\ndaily_tokens = 1000000000\n\n\
         [upstreams.demo]\nsim = {{ profile = \"instant\" }}\n\n\
         [[routes]]\nname = \"agent\"\nmatch = {{ path_prefix = \"/v1/\" }}\nupstream = \"demo\"\n\
         kill_switch = {{ fallback = {{ text = \"Paused by the operators.\" }} }}\n",
        state_dir.display(),
        admin_tokens(),
    );
    let path = temp_dir("disk-config").join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// What the traffic saw: answers by kind, and every failure described.
#[derive(Debug, Default)]
struct Seen {
    served: u64,
    fallbacks: u64,
    failures: Vec<String>,
}

/// One request, JSON or streaming; `Ok(true)` when the kill switch's fallback answered.
async fn one_request(traffic: SocketAddr, stream: bool) -> Result<bool, String> {
    let body = chat("gpt-4o", stream).to_string();
    let request = Request::post(format!("http://{traffic}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = client().request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let fallback = response.headers().contains_key("x-switchyard-fallback");
    let body = response.into_body().collect().await;
    let body = body.map_err(|e| format!("body broke: {e}"))?.to_bytes();
    let complete = if stream {
        body.ends_with(b"data: [DONE]\n\n")
    } else {
        serde_json::from_slice::<Value>(&body).is_ok_and(|v| v["choices"].is_array())
    };
    if status != 200 || !complete {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    Ok(fallback)
}

/// Sends requests from four workers, alternating JSON and streams, until `stop` is set.
fn traffic(traffic: SocketAddr, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Seen> {
    tokio::spawn(async move {
        let mut workers = tokio::task::JoinSet::new();
        for worker in 0..4u64 {
            let stop = stop.clone();
            workers.spawn(async move {
                let mut seen = Seen::default();
                let mut n = worker;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    match one_request(traffic, n % 2 == 0).await {
                        Ok(true) => seen.fallbacks += 1,
                        Ok(false) => seen.served += 1,
                        Err(failure) => seen.failures.push(failure),
                    }
                }
                seen
            });
        }
        let mut all = Seen::default();
        while let Some(seen) = workers.join_next().await {
            let seen = seen.unwrap();
            all.served += seen.served;
            all.fallbacks += seen.fallbacks;
            all.failures.extend(seen.failures);
        }
        all
    })
}

/// Waits (at most about 20 s) until at least `n` more requests went through.
async fn requests_after(gateway: &Gateway, n: f64) {
    let count = |text: &str| metric(text, "switchyard_requests_total", &[]);
    let before = count(&gateway.metrics().await);
    for _ in 0..800 {
        if count(&gateway.metrics().await) >= before + n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the traffic did not move");
}

fn assert_not_durable(answer: &(u16, Value), file: &str) {
    let (status, body) = answer;
    assert_eq!(*status, 503, "{body}");
    assert_eq!(body["error"]["code"], "state_not_saved", "{body}");
    assert_eq!(body["persisted"], false, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("not durable"), "{message}");
    assert!(message.contains(file), "names the file: {message}");
    assert!(
        message.contains("No space left on device"),
        "names the OS error: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_state_dir_serves_every_request_and_a_kill_still_takes_effect() {
    let disk = Tmpfs::mount("64k");
    let config = write_config(&disk.dir);
    let gateway = Gateway::start(&config);
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(gateway.traffic, stop.clone());
    requests_after(&gateway, 20.0).await;

    disk.fill();
    requests_after(&gateway, 20.0).await;
    let killed = gateway.kill("disk full drill").await;
    assert_not_durable(&killed, "kill_switches.json");
    // In force although not on disk: a live kill is safer than none.
    assert_eq!(killed.1["engaged"], true, "{}", killed.1);
    let answer = one_request(gateway.traffic, false).await;
    assert_eq!(answer, Ok(true), "the next request gets the fallback");
    let streamed = one_request(gateway.traffic, true).await;
    assert_eq!(streamed, Ok(true), "a stream gets the fallback too");
    requests_after(&gateway, 20.0).await;

    let revived = gateway.revive().await;
    assert_not_durable(&revived, "kill_switches.json");
    assert_eq!(revived.1["engaged"], false, "{}", revived.1);
    requests_after(&gateway, 20.0).await;
    for file in [
        "kill_switches.json",
        "incidents",
        "audit.jsonl",
        "budget.json",
    ] {
        gateway.eventually_write_errors(file).await;
    }

    disk.free();
    let killed = gateway.kill("after the disk was freed").await;
    assert_eq!(killed.0, 200, "{}", killed.1);
    assert_eq!(killed.1["persisted"], true, "{}", killed.1);
    requests_after(&gateway, 20.0).await;
    stop.store(true, Ordering::Relaxed);
    let seen = load.await.unwrap();
    assert!(seen.failures.is_empty(), "requests failed: {seen:?}");
    assert!(seen.served > 50 && seen.fallbacks > 0, "{seen:?}");
    let status = gateway.call("GET", "/admin/status", None).await.1;
    let errors = gateway.write_errors("kill_switches.json").await;
    gateway.stop();

    // Durable: a restart on the same state_dir has the kill made after the disk was freed.
    let restarted = Gateway::start(&config);
    let after = restarted.call("GET", "/admin/status", None).await.1;
    let switch = &after["routes"][0]["kill_switch"];
    assert_eq!(switch["reason"], "after the disk was freed", "{after}");
    assert_eq!(status["routes"][0]["kill_switch"], *switch);
    assert_eq!(errors, 2.0, "the kill and the revive while full");
    restarted.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_audit_log_on_dev_full_answers_503_and_keeps_the_kill() {
    assert!(
        Path::new("/dev/full").exists(),
        "/dev/full is missing: this test needs it"
    );
    let state_dir = temp_dir("dev-full");
    std::os::unix::fs::symlink("/dev/full", state_dir.join("audit.jsonl")).unwrap();
    let gateway = Gateway::start(&write_config(&state_dir));
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(gateway.traffic, stop.clone());
    requests_after(&gateway, 20.0).await;

    let killed = gateway.kill("audit log on a full device").await;
    assert_not_durable(&killed, "audit.jsonl");
    // The switch and its incident are on disk; only the audit entry is missing.
    assert_eq!(killed.1["engaged"], true, "{}", killed.1);
    let incident = killed.1["incident"].as_str().unwrap();
    assert!(state_dir
        .join("incidents")
        .join(format!("{incident}.json"))
        .exists());
    assert_eq!(one_request(gateway.traffic, true).await, Ok(true));
    assert_eq!(gateway.eventually_write_errors("audit.jsonl").await, 1.0);
    assert_eq!(gateway.write_errors("kill_switches.json").await, 0.0);
    requests_after(&gateway, 20.0).await;
    stop.store(true, Ordering::Relaxed);
    let seen = load.await.unwrap();
    assert!(seen.failures.is_empty(), "requests failed: {seen:?}");
    assert!(seen.fallbacks > 0, "{seen:?}");
    gateway.stop();
    let _ = std::fs::remove_dir_all(state_dir);
}
