//! What every scenario stands on: a scaled clock, an HTTP client, simulated upstreams driven
//! through their control endpoint, and gateway replicas started in-process on free ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use switchyard::Running;
use switchyard_config::Config;
use switchyard_sim::{Profile, Sim};
use tokio::task::JoinHandle;

/// The admin token every drill replica accepts (a human operator, as `ctl` would use).
pub const OPERATOR_TOKEN: &str = "drill-operator-0123456789abcdef";

/// Seconds of the incidents as the seeds tell them, divided by `--speed`.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub speed: f64,
}

impl Scale {
    /// A nominal duration in seconds, scaled (never below one millisecond).
    pub fn dur(self, nominal_secs: f64) -> Duration {
        Duration::from_secs_f64((nominal_secs / self.speed).max(0.001))
    }

    /// A nominal duration as a config value in whole seconds, at least `floor` seconds
    /// (windows and bakes are counted in whole seconds).
    pub fn toml_secs(self, nominal_secs: f64, floor: u64) -> String {
        let secs = (nominal_secs / self.speed).round().max(floor as f64);
        format!("\"{secs}s\"")
    }

    /// A nominal latency in milliseconds, scaled.
    pub fn ms(self, nominal_ms: f64) -> f64 {
        nominal_ms / self.speed
    }
}

/// A status and a whole body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Result<Value, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("not JSON ({e})"))
    }
}

/// Plain HTTP/1 to 127.0.0.1, one deadline per exchange.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    pub fn new() -> Self {
        Http {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
        timeout: Duration,
    ) -> Result<Reply, String> {
        let mut req = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(body.map_or_else(Bytes::new, Bytes::from)))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let response = self.client.request(req).await.map_err(|e| e.to_string())?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok(Reply {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("no answer from {url} within {timeout:?}"))?
    }
}

/// A simulated agent on a free loopback port; its profile is changed through `/sim/profile`,
/// the way an operator's fault injection would reach a real one.
pub struct Upstream {
    pub addr: SocketAddr,
    task: JoinHandle<std::io::Result<()>>,
}

impl Upstream {
    pub async fn start(profile: Profile) -> Result<Upstream, String> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let (addr, task) = switchyard_sim::spawn(any, Sim::new(profile))
            .await
            .map_err(|e| format!("starting a simulated upstream: {e}"))?;
        Ok(Upstream { addr, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `PATCH /sim/profile`: the fields given replace the current ones.
    pub async fn patch(&self, http: &Http, fields: Value) -> Result<(), String> {
        patch_url(http, &self.url(), fields).await
    }

    /// `POST /sim/profile/{name}`: switches to a named profile.
    pub async fn switch(&self, http: &Http, name: &str) -> Result<(), String> {
        let url = format!("{}/sim/profile/{name}", self.url());
        let reply = http.send(Method::POST, &url, &[], None, CONTROL).await?;
        ok(&reply, "POST /sim/profile/{name}")
    }

    /// Requests the upstream is serving now (`GET /sim/stats`).
    pub async fn in_flight(&self, http: &Http) -> Result<u64, String> {
        let url = format!("{}/sim/stats", self.url());
        let reply = http.send(Method::GET, &url, &[], None, CONTROL).await?;
        ok(&reply, "GET /sim/stats")?;
        Ok(reply.json()?["in_flight"].as_u64().unwrap_or(0))
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `PATCH {base}/sim/profile`.
pub async fn patch_url(http: &Http, base: &str, fields: Value) -> Result<(), String> {
    let url = format!("{base}/sim/profile");
    let reply = http
        .send(Method::PATCH, &url, &[], Some(fields.to_string()), CONTROL)
        .await?;
    ok(&reply, "PATCH /sim/profile")
}

/// How long a control or admin call may take.
pub const CONTROL: Duration = Duration::from_secs(5);

fn ok(reply: &Reply, what: &str) -> Result<(), String> {
    if reply.status / 100 == 2 {
        Ok(())
    } else {
        Err(format!(
            "{what} answered {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        ))
    }
}

/// One gateway, in-process, listeners on free ports, its own state directory.
pub struct Replica {
    running: Option<Running>,
    pub traffic: SocketAddr,
    pub admin: SocketAddr,
    dir: PathBuf,
}

impl Replica {
    /// Starts a gateway on `body` (routes, upstreams, rules…) plus an operator token.
    pub async fn start(body: &str, dir: &Path) -> Result<Replica, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let token_file = dir.join("operator.token");
        std::fs::write(&token_file, OPERATOR_TOKEN)
            .map_err(|e| format!("{}: {e}", token_file.display()))?;
        let text = format!(
            "[[admin.tokens]]\nname = \"drill-oncall\"\nrole = \"operator\"\nkind = \"human\"\ntoken_file = \"{}\"\n\n{body}",
            token_file.display()
        );
        let mut config = Config::parse(&text, "drill.toml", dir)
            .map_err(|e| format!("the drill's gateway config: {e}"))?;
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        config.server.listen = any;
        config.admin.listen = any;
        config.admin.state_dir = dir.join("state");
        let running = switchyard::start(config)
            .await
            .map_err(|e| format!("starting the gateway: {e}"))?;
        Ok(Replica {
            traffic: running.traffic,
            admin: running.admin,
            running: Some(running),
            dir: dir.to_path_buf(),
        })
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// `GET` on the admin API with the operator token.
    pub async fn get(&self, http: &Http, path: &str) -> Result<Value, String> {
        let url = format!("{}{path}", self.admin_url());
        let bearer = format!("Bearer {OPERATOR_TOKEN}");
        let reply = http
            .send(
                Method::GET,
                &url,
                &[("authorization", &bearer)],
                None,
                CONTROL,
            )
            .await?;
        ok(&reply, path)?;
        reply.json()
    }

    pub async fn status(&self, http: &Http) -> Result<Value, String> {
        self.get(http, "/admin/status").await
    }

    /// The newest incident of a kind, in full.
    pub async fn incident(&self, http: &Http, kind: &str) -> Result<Option<Value>, String> {
        let list = self.get(http, "/admin/incidents").await?;
        let id = list["incidents"]
            .as_array()
            .and_then(|all| all.iter().find(|i| i["kind"] == kind))
            .and_then(|i| i["id"].as_str())
            .map(str::to_owned);
        match id {
            Some(id) => Ok(Some(
                self.get(http, &format!("/admin/incidents/{id}")).await?,
            )),
            None => Ok(None),
        }
    }

    /// Stops the gateway and removes its state directory.
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh directory for one replica of one scenario.
pub fn scratch(scenario: &str, replica: usize) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "switchyard-drill-{}-{scenario}-{replica}-{n}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Whether the incident carries the evidence an on-call engineer replays from: the models
/// that answered and the prompt fingerprints.
pub fn has_evidence(incident: &Value) -> bool {
    let listed = |key: &str| {
        incident["evidence"][key]
            .as_array()
            .is_some_and(|v| !v.is_empty())
    };
    listed("response_models") && listed("prompt_fingerprints")
}

/// The models shown in an incident's evidence, e.g. "gpt-4o-sim-2026-01 ×120".
pub fn evidence_models(incident: &Value) -> String {
    incident["evidence"]["response_models"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|m| format!("{} ×{}", m["value"].as_str().unwrap_or("?"), m["count"]))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// A webhook receiver on a free loopback port: the pager, as far as the drill is concerned.
pub struct Pager {
    pub addr: SocketAddr,
    events: std::sync::Arc<std::sync::Mutex<Vec<(std::time::Instant, Value)>>>,
    task: JoinHandle<()>,
}

impl Pager {
    pub async fn start() -> Result<Pager, String> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| format!("starting the webhook receiver: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("the webhook receiver's address: {e}"))?;
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = tokio::spawn(receive(listener, events.clone()));
        Ok(Pager { addr, events, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    /// When the first event that `pick` accepts arrived.
    pub fn first(&self, pick: impl Fn(&Value) -> bool) -> Option<std::time::Instant> {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|(_, event)| pick(event))
            .map(|(at, _)| *at)
    }
}

impl Drop for Pager {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Events = std::sync::Arc<std::sync::Mutex<Vec<(std::time::Instant, Value)>>>;

/// The most connections the receiver takes: the gateway keeps its connection open, so a few
/// are plenty.
const MAX_CONNECTIONS: usize = 10_000;

async fn receive(listener: tokio::net::TcpListener, events: Events) {
    for _ in 0..MAX_CONNECTIONS {
        let Ok((stream, _)) = listener.accept().await else {
            break;
        };
        let events = events.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let events = events.clone();
                async move {
                    if let Ok(body) = req.into_body().collect().await {
                        if let Ok(event) = serde_json::from_slice::<Value>(&body.to_bytes()) {
                            events
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .push((switchyard_core::clock::now(), event));
                        }
                    }
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}
