//! The harness: an admin server on 127.0.0.1:0 over a small gateway, and an HTTP client.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use switchyard_admin::{AdminParts, AdminState, ReloadOutcome, Reloader};
use switchyard_config::{AdminToken, Config, Role, TokenKind};
use switchyard_control::alerts::AlertSettings;
use switchyard_control::{Alerts, KillBoard, Signals};
use switchyard_proxy::Gateway;
use tokio::sync::oneshot;

pub const OPERATOR: &str = "oncall-secret-0123456789";
pub const BOT: &str = "bot-operator-secret-0123";
pub const VIEWER: &str = "viewer-secret-0123456789";
pub const AUTOMATION_VIEWER: &str = "dashboard-secret-012345";

/// Two routes on an upstream at a closed port; `support` falls back to another upstream.
pub const CONFIG: &str = r#"
[upstreams.dead]
url = "http://127.0.0.1:9"
[upstreams.faq-bot]
url = "http://127.0.0.1:9/faq"

[[routes]]
name = "support"
match = { path_prefix = "/support/" }
upstream = "dead"
kill_switch = { fallback = { upstream = "faq-bot" } }

[[routes]]
name = "research"
match = { path_prefix = "/research/" }
upstream = "dead"
"#;

pub fn config() -> Config {
    Config::parse(CONFIG, "gateway.toml", Path::new(".")).unwrap()
}

fn token(name: &str, role: Role, kind: TokenKind, secret: Option<&str>) -> AdminToken {
    AdminToken {
        name: name.into(),
        role,
        kind,
        secret: secret.map(str::to_owned),
        source: format!("env {}", name.to_uppercase()),
        line: 1,
    }
}

/// oncall (human operator), ci-bot (automation operator), watcher (human viewer),
/// dashboard (automation viewer) and ghost (an operator whose secret was never found).
pub fn tokens() -> Vec<AdminToken> {
    vec![
        token("ghost", Role::Operator, TokenKind::Human, None),
        token("oncall", Role::Operator, TokenKind::Human, Some(OPERATOR)),
        token("ci-bot", Role::Operator, TokenKind::Automation, Some(BOT)),
        token("watcher", Role::Viewer, TokenKind::Human, Some(VIEWER)),
        token(
            "dashboard",
            Role::Viewer,
            TokenKind::Automation,
            Some(AUTOMATION_VIEWER),
        ),
    ]
}

/// Answers every reload with what the test put in `next`.
pub struct StubReloader {
    pub next: Mutex<Result<ReloadOutcome, String>>,
}

impl Reloader for StubReloader {
    fn reload(&self) -> Pin<Box<dyn Future<Output = Result<ReloadOutcome, String>> + Send + '_>> {
        let answer = self.next.lock().unwrap().clone();
        Box::pin(async move { answer })
    }
}

/// A fresh directory under the system's temp dir, unique to this test and run.
pub fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-admin-{test}-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn alert_settings() -> AlertSettings {
    AlertSettings {
        p99_latency: Duration::from_secs(10),
        error_rate: 0.5,
        window: Duration::from_secs(60),
        traffic_spike: 10.0,
        baseline: Duration::from_secs(600),
        min_requests: 10,
        queue_depth: 100,
        context_fill: 0.9,
        // A budget of one token, alerting at 0 %: fires on the first evaluation.
        daily_tokens: Some(1),
        budget_alert_at: 0.0,
    }
}

pub struct Admin {
    pub addr: SocketAddr,
    pub state: AdminState,
    pub dir: PathBuf,
    pub reloader: Arc<StubReloader>,
    stop: Option<oneshot::Sender<()>>,
    /// Whether dropping removes `dir` (not when a restart will reopen it).
    remove_dir: bool,
}

impl Admin {
    /// Stops serving and hands back the state dir for a restart.
    pub fn stop(mut self) -> PathBuf {
        self.remove_dir = false;
        self.dir.clone()
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Builds the state the binary would, over `dir`.
pub fn state(dir: &Path) -> (AdminState, Arc<StubReloader>) {
    let config = config();
    let signals = Signals::new();
    let mut table = switchyard_proxy::Boards::new(signals.clone())
        .prepare(&config, &HashMap::new())
        .unwrap();
    table.tokens = tokens();
    let kills = KillBoard::open(dir).unwrap();
    let steering = switchyard_control::steer::Steering::new();
    let gateway = Gateway::with_boards(table, signals.clone(), kills.clone(), steering.clone());
    let alerts = Alerts::new(signals.clone(), alert_settings());
    let notifier = switchyard_control::Notifier::disabled();
    let (store, rollouts) = switchyard_control::rollout::RolloutStore::open(dir).unwrap();
    let incidents = Arc::new(switchyard_control::Incidents::open(dir).unwrap());
    let controller = switchyard_control::controller::Controller::new(
        (
            signals,
            alerts.clone(),
            notifier.clone(),
            incidents,
            steering,
        ),
        store,
        rollouts,
    );
    controller.apply(&config);
    let reloader = Arc::new(StubReloader {
        next: Mutex::new(Err("no reload expected".into())),
    });
    let parts = AdminParts {
        gateway,
        alerts,
        metrics: switchyard_admin::exposition::install(),
        kills,
        reloader: reloader.clone(),
        notifier,
        controller,
        fleet: None,
    };
    (AdminState::new(parts, dir).unwrap(), reloader)
}

/// Serves the admin API for `test` in a new state dir.
pub async fn start(test: &str) -> Admin {
    serve_on(temp_dir(test)).await
}

/// Serves the admin API over an existing state dir (a restart).
pub async fn serve_on(dir: PathBuf) -> Admin {
    let (state, reloader) = state(&dir);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(switchyard_admin::serve(
        listener,
        state.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    Admin {
        addr,
        state,
        dir,
        reloader,
        stop: Some(stop),
        remove_dir: true,
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The `error.code` of an error answer.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// One request to `addr`, the body read whole.
pub async fn send(
    addr: SocketAddr,
    method: Method,
    path: String,
    authorization: Option<String>,
    body: Vec<u8>,
) -> Answer {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    if !body.is_empty() {
        // As switchyard ctl does: a mutation's body must say it is JSON.
        request = request.header("content-type", "application/json");
    }
    let request = request.body(Full::new(Bytes::from(body))).unwrap();
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

impl Admin {
    /// Sends a request with `authorization: Bearer <token>` when a token is given.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> Answer {
        let auth = token.map(bearer);
        self.raw(method, path, auth.as_deref(), body.to_owned().into_bytes())
            .await
    }

    /// Sends a request with the `authorization` header exactly as given.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        authorization: Option<&str>,
        body: Vec<u8>,
    ) -> Answer {
        send(
            self.addr,
            method,
            path.to_owned(),
            authorization.map(str::to_owned),
            body,
        )
        .await
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.call(Method::GET, path, Some(token), "").await
    }

    pub async fn post(&self, path: &str, token: &str, body: &str) -> Answer {
        self.call(Method::POST, path, Some(token), body).await
    }

    pub async fn delete(&self, path: &str, token: &str, body: &str) -> Answer {
        self.call(Method::DELETE, path, Some(token), body).await
    }

    /// Kills `route` as the human operator, expecting success; returns the answer's JSON.
    pub async fn kill(&self, route: &str, body: &str) -> Value {
        let answer = self
            .post(&format!("/admin/routes/{route}/kill"), OPERATOR, body)
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        answer.json()
    }

    /// Every audit entry, oldest first.
    pub async fn audit(&self) -> Vec<Value> {
        let answer = self.get("/admin/audit?limit=1000", VIEWER).await;
        assert_eq!(answer.status, StatusCode::OK);
        answer.json()["entries"].as_array().unwrap().clone()
    }
}
