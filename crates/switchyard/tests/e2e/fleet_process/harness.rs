//! Three `switchyard serve` processes sharing one real redis-server: each with its own
//! gateway.toml and state_dir in a temp dir, both listeners on ephemeral ports of 127.0.0.1,
//! admin tokens from the environment. Every process is killed (SIGKILL) and reaped on drop,
//! so a failing test leaves none behind.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::Value;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::common::{chat, get, post_json, send, temp_dir, Answer, OPERATOR, VIEWER};
use crate::redis_server::RedisServer;

/// How often each replica reconciles with Redis: the most a lost pub/sub message costs.
pub const INTERVAL_MS: u64 = 500;
/// The text every killed request is answered with.
pub const FALLBACK: &str = "Resting; a person will answer.";
/// The environment variables the admin tokens are read from.
const OPERATOR_ENV: &str = "SWITCHYARD_E2E_OPERATOR_TOKEN";
const VIEWER_ENV: &str = "SWITCHYARD_E2E_VIEWER_TOKEN";
/// How long a process may take from spawn to serving, and then to ready.
const START_BOUND: Duration = Duration::from_secs(15);

/// Where the replicas send route `r`'s traffic.
#[derive(Clone)]
pub enum Upstream {
    /// The simulator embedded in each gateway, with this profile.
    Embedded(&'static str),
    /// A simulator the test runs, at this address.
    At(SocketAddr),
}

/// A gateway.toml for one replica: route `r` with a kill-switch fallback, the fleet section,
/// and `extra` (whole tables) at the end.
fn config(
    redis_url: &str,
    ns: &str,
    id: &str,
    state_dir: &Path,
    up: &Upstream,
    extra: &str,
) -> String {
    let target = match up {
        Upstream::Embedded(profile) => format!("sim = {{ profile = \"{profile}\" }}"),
        Upstream::At(addr) => format!("url = \"http://{addr}\""),
    };
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{state}\"\n\n\
         [[admin.tokens]]\nname = \"oncall\"\nrole = \"operator\"\nkind = \"human\"\ntoken_env = \"{OPERATOR_ENV}\"\n\n\
         [[admin.tokens]]\nname = \"dashboard\"\nrole = \"viewer\"\nkind = \"human\"\ntoken_env = \"{VIEWER_ENV}\"\n\n\
         [models.\"gpt-4o\"]\ncontext_window = 128000\ninput_usd_per_mtok = 2.5\noutput_usd_per_mtok = 10.0\n\n\
         [upstreams.up]\n{target}\n\n\
         [[routes]]\nname = \"r\"\nupstream = \"up\"\n\
         [routes.kill_switch]\nfallback = {{ text = \"{FALLBACK}\" }}\n\n\
         [fleet]\nredis_url = \"{redis_url}\"\nnamespace = \"{ns}\"\ninstance_id = \"{id}\"\n\
         reconcile_interval = \"{INTERVAL_MS}ms\"\ncommand_timeout = \"500ms\"\n\n{extra}",
        state = state_dir.display(),
    )
}

/// One `switchyard serve` process, killed on drop.
pub struct Replica {
    pub id: String,
    pub traffic: SocketAddr,
    pub admin: SocketAddr,
    child: Child,
    /// Its log, line by line: a thread drains the pipe into this channel, so the process
    /// never blocks on a full pipe.
    lines: UnboundedReceiver<String>,
    /// Its stderr, whole once it exited.
    stderr: Option<JoinHandle<String>>,
    /// Its gateway.toml and state_dir, removed on drop.
    dir: PathBuf,
}

impl Replica {
    /// Spawns the binary on a fresh state_dir and waits (bounded) for its "serving" log line,
    /// which names the bound ports. It does not wait for `/ready`: see [`Replica::ready`].
    pub async fn spawn(redis_url: &str, ns: &str, id: &str, up: &Upstream, extra: &str) -> Replica {
        let mut replica = Replica::launch(redis_url, ns, id, up, extra);
        replica.serving().await;
        replica
    }

    /// Starts the process; its ports are known once [`Replica::serving`] returned.
    fn launch(redis_url: &str, ns: &str, id: &str, up: &Upstream, extra: &str) -> Replica {
        let dir = temp_dir(&format!("fleet-process-{id}"));
        let path = dir.join("gateway.toml");
        let text = config(redis_url, ns, id, &dir.join("state"), up, extra);
        std::fs::write(&path, text).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["serve", "--log-format", "json", "--config"])
            .arg(&path)
            .env(OPERATOR_ENV, OPERATOR)
            .env(VIEWER_ENV, VIEWER)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let unbound = SocketAddr::from(([127, 0, 0, 1], 0));
        Replica {
            id: id.to_owned(),
            traffic: unbound,
            admin: unbound,
            lines: read_lines(child.stdout.take().unwrap()),
            stderr: Some(read_all(child.stderr.take().unwrap())),
            child,
            dir,
        }
    }

    /// Waits (bounded) for the "serving" log line and takes the bound ports from it.
    async fn serving(&mut self) {
        let mut early = Vec::new();
        let lines = &mut self.lines;
        let serving = tokio::time::timeout(START_BOUND, async {
            while let Some(line) = lines.recv().await {
                if line.contains("switchyard serving") {
                    return Some(line);
                }
                early.push(line);
            }
            None
        })
        .await;
        let Ok(Some(line)) = serving else {
            // It may have exited already (a config error): kill only what still runs.
            let _ = self.child.kill();
            let status = self.child.wait().unwrap();
            let stderr = self.stderr.take().unwrap().join().unwrap_or_default();
            panic!(
                "replica {} did not serve (waited at most {START_BOUND:?}; {status})\n--- stdout\n{}\n--- stderr\n{stderr}",
                self.id,
                early.join("\n"),
            );
        };
        let serving: Value = serde_json::from_str(&line).unwrap();
        let addr = |key: &str| serving[key].as_str().unwrap().parse().unwrap();
        self.traffic = addr("traffic");
        self.admin = addr("admin");
    }

    /// Polls `/ready` (bounded) until it answers 200; returns its document.
    pub async fn ready(&self) -> Value {
        let started = std::time::Instant::now();
        loop {
            let answer = get(self.traffic, "/ready").await;
            if answer.status == 200 {
                return answer.json();
            }
            assert!(
                started.elapsed() < START_BOUND,
                "replica {} not ready: {} {:?}",
                self.id,
                answer.status,
                answer.body
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGKILL: no shutdown code runs. Returns how it ended.
    pub fn crash(&mut self) -> ExitStatus {
        self.child.kill().unwrap();
        self.child.wait().unwrap()
    }

    /// A chat request on route `r`, from user `u1`.
    pub async fn ask(&self) -> Answer {
        self.ask_as("u1").await
    }

    /// A chat request on route `r`, from `user`.
    pub async fn ask_as(&self, user: &str) -> Answer {
        post_json(
            self.traffic,
            "/v1/chat/completions",
            &[("x-user-id", user)],
            chat("gpt-4o", false),
        )
        .await
    }

    /// An admin call, as the operator for changes and as the viewer for reads.
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
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
        send(request).await
    }

    pub async fn status(&self) -> Value {
        let answer = self.admin("GET", "/admin/status", None).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        answer.json()
    }

    /// Route `r`'s kill switch as `/admin/status` shows it (`null` when not engaged).
    pub async fn kill_switch(&self) -> Value {
        let doc = self.status().await;
        let route = doc["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "r");
        route.unwrap()["kill_switch"].clone()
    }

    pub async fn metrics(&self) -> String {
        String::from_utf8(get(self.admin, "/metrics").await.body.to_vec()).unwrap()
    }

    /// Sends requests (bounded) until one is answered with (`true`) or without the fallback.
    pub async fn until_fallback(&self, wanted: bool, within: Duration) {
        let started = std::time::Instant::now();
        loop {
            let answer = self.ask().await;
            assert_eq!(answer.status, 200, "replica {}: {:?}", self.id, answer.body);
            if is_fallback(&answer) == wanted {
                return;
            }
            assert!(
                started.elapsed() < within,
                "replica {} still answers {} the fallback after {within:?}",
                self.id,
                if wanted { "without" } else { "with" },
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether the kill switch's fallback answered (its header, and its text in the body).
pub fn is_fallback(answer: &Answer) -> bool {
    let marked = answer.headers.contains_key("x-switchyard-fallback");
    if marked {
        let text = answer.json()["choices"][0]["message"]["content"].clone();
        assert_eq!(text, FALLBACK, "the fallback's text: {:?}", answer.body);
    }
    marked
}

/// The process's stdout, line by line, read on a thread of its own.
fn read_lines(stdout: impl Read + Send + 'static) -> UnboundedReceiver<String> {
    let (tx, rx) = unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The process's stderr, read whole on a thread of its own until the process exits.
fn read_all(mut stderr: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// A unique namespace per test, so tests share nothing even on one Redis.
fn namespace() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("fleet-process-{}-{n}", std::process::id())
}

/// A redis-server and the replicas sharing it. The replicas go first on drop.
pub struct Fleet {
    pub replicas: Vec<Replica>,
    pub redis: RedisServer,
    pub ns: String,
    up: Upstream,
    extra: String,
}

impl Fleet {
    /// Starts redis-server and `n` replicas `g0`, `g1`, … at once, and waits until each is
    /// ready; `None` (the test skips) when redis-server is not installed.
    pub async fn start(n: usize, up: Upstream, extra: &str) -> Option<Fleet> {
        let redis = RedisServer::start().await?;
        let ns = namespace();
        let url = redis.url();
        // Launched together, so that they start side by side; dropped (killed) if one fails.
        let mut replicas: Vec<Replica> = (0..n)
            .map(|i| Replica::launch(&url, &ns, &format!("g{i}"), &up, extra))
            .collect();
        for replica in &mut replicas {
            replica.serving().await;
        }
        for replica in &replicas {
            let ready = replica.ready().await;
            assert_eq!(ready["fleet"], "shared", "replica {}: {ready}", replica.id);
        }
        Some(Fleet {
            replicas,
            redis,
            ns,
            up,
            extra: extra.to_owned(),
        })
    }

    /// Spawns one more replica on a fresh state_dir; not waited for `/ready`.
    pub async fn join(&self, id: &str) -> Replica {
        Replica::spawn(&self.redis.url(), &self.ns, id, &self.up, &self.extra).await
    }
}
