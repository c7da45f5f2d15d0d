//! The harness: start gateways and simulators on ephemeral ports, talk HTTP to them.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use switchyard::Running;
use switchyard_config::Config;
use switchyard_sim::{Profile, Sim};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Waits (at most `within`, looking every millisecond) until `check` holds; returns how long
/// it took, or `None` if it never did.
pub async fn until(within: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let started = std::time::Instant::now();
    while started.elapsed() < within {
        if check() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    check().then(|| started.elapsed())
}

/// Starts a gateway on the config text, with both listeners on ephemeral ports.
pub async fn gateway(toml: &str) -> Running {
    let mut config = Config::parse(toml, "test.toml", Path::new(".")).expect("valid test config");
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.state_dir = temp_dir("state");
    http1_from_env(&mut config);
    switchyard::start(config).await.expect("gateway starts")
}

/// `SWITCHYARD_E2E_HTTP1=builtin` runs the suite's gateways on the built-in HTTP/1.1 path
/// (`server.http1`), unless a test's own config chose one.
pub fn http1_from_env(config: &mut Config) {
    if std::env::var("SWITCHYARD_E2E_HTTP1").is_ok_and(|v| v == "builtin") {
        config.server.http1 = switchyard_config::Http1Engine::Builtin;
    }
}

/// A fresh directory under the system temp dir, unique to this call.
pub fn temp_dir(what: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("switchyard-e2e-{}-{what}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The secrets of the tokens `admin_tokens` configures.
pub const OPERATOR: &str = "operator-secret-0123456789";
pub const VIEWER: &str = "viewer-secret-0123456789";
pub const ROBOT: &str = "robot-secret-0123456789";

/// `[[admin.tokens]]` for a human operator, a human viewer and an automation operator,
/// with their secrets in files.
pub fn admin_tokens() -> String {
    let dir = temp_dir("tokens");
    let mut toml = String::new();
    for (name, role, kind, secret) in [
        ("oncall", "operator", "human", OPERATOR),
        ("dashboard", "viewer", "human", VIEWER),
        ("bot", "operator", "automation", ROBOT),
    ] {
        let file = dir.join(format!("{name}.token"));
        std::fs::write(&file, secret).unwrap();
        toml.push_str(&format!(
            "[[admin.tokens]]\nname = \"{name}\"\nrole = \"{role}\"\nkind = \"{kind}\"\ntoken_file = \"{}\"\n\n",
            file.display()
        ));
    }
    toml
}

/// An admin API call with a bearer token.
pub async fn admin(
    running: &Running,
    method: &str,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> Answer {
    let req = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", running.admin))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(
            body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string())),
        ))
        .unwrap();
    send(req).await
}

/// Starts a simulated agent with the profile.
pub async fn sim(profile: Profile) -> (Sim, SocketAddr) {
    let sim = Sim::new(profile);
    let (addr, _task) = switchyard_sim::spawn("127.0.0.1:0".parse().unwrap(), sim.clone())
        .await
        .unwrap();
    (sim, addr)
}

/// A config with one route named `route` to a URL upstream, with gpt-4o and claude models.
pub fn one_route(route: &str, upstream_url: &str, extra: &str) -> String {
    format!(
        r#"
[models."gpt-4o"]
context_window = 128000
input_usd_per_mtok = 2.5
output_usd_per_mtok = 10.0
aliases = ["gpt-4o-sim-2026-01"]

[models."claude-sonnet-4-6"]
context_window = 200000
input_usd_per_mtok = 3.0
output_usd_per_mtok = 15.0

[upstreams.up]
url = "{upstream_url}"

[[routes]]
name = "{route}"
upstream = "up"
{extra}
"#
    )
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// The answer to a request, body read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

pub async fn send(req: Request<Full<Bytes>>) -> Answer {
    let response = client().request(req).await.expect("response");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn post_json(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: serde_json::Value,
) -> Answer {
    let mut req =
        Request::post(format!("http://{addr}{path}")).header("content-type", "application/json");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    send(req.body(Full::new(Bytes::from(body.to_string()))).unwrap()).await
}

pub async fn get(addr: SocketAddr, path: &str) -> Answer {
    send(
        Request::get(format!("http://{addr}{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await
}

/// The sum of a metric's samples whose labels include all of `labels`.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.split(['{', ' ']).next() == Some(name))
        .filter(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub async fn metrics(running: &Running) -> String {
    String::from_utf8(get(running.admin, "/metrics").await.body.to_vec()).unwrap()
}

/// Polls until `check` holds on the metrics text, or panics after 5 s.
pub async fn eventually_metrics(
    running: &Running,
    what: &str,
    check: impl Fn(&str) -> bool,
) -> String {
    for _ in 0..100 {
        let text = metrics(running).await;
        if check(&text) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("metrics never showed {what}:\n{}", metrics(running).await);
}

/// Writes raw bytes on a fresh connection and reads until the peer closes or 3 s pass.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut out)).await;
    out
}

pub fn chat(model: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "stream_options": {"include_usage": true},
        "messages": [
            {"role": "system", "content": "You are the support agent."},
            {"role": "user", "content": "My order has not arrived, what can I do about it?"}
        ]
    })
}

pub fn messages(model: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "max_tokens": 400,
        "system": "You are the support agent.",
        "metadata": {"user_id": "user-42"},
        "messages": [{"role": "user", "content": "My order has not arrived, what can I do about it?"}]
    })
}
