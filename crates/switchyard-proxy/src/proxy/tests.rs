//! The request path in memory: a `Proxy` called with `Full` bodies, no listener.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use switchyard_config::Config;
use switchyard_core::Body;
use switchyard_state::{KillBoard, KillSwitch, Signals};
use tower_service::Service;

use super::Proxy;
use crate::gateway::Gateway;

/// A gateway with one route `r` on `/v1/` to `upstream`, with `extra` in the route's table.
fn proxy(upstream: &str, extra: &str) -> Proxy {
    let toml = format!(
        "[server]\nmax_body_bytes = 1024\n\n[upstreams.up]\nurl = \"{upstream}\"\n\n\
         [[routes]]\nname = \"r\"\nupstream = \"up\"\nmatch = {{ path_prefix = \"/v1/\" }}\n{extra}"
    );
    let config = Config::parse(&toml, "test.toml", Path::new(".")).unwrap();
    let signals = Signals::new();
    let table = crate::Boards::new(signals.clone())
        .prepare(&config, &HashMap::new())
        .unwrap();
    let kills = KillBoard::in_memory();
    Proxy::new(Gateway::with_kill_board(table, signals, kills))
}

fn chat(len: usize) -> Request<Full<Bytes>> {
    let body = format!(
        r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(len)
    );
    Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("x-request-id", "req-1")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

async fn call(proxy: &mut Proxy, req: Request<Full<Bytes>>) -> Response<Body> {
    std::future::poll_fn(|cx| Service::<Request<Full<Bytes>>>::poll_ready(proxy, cx))
        .await
        .unwrap();
    proxy.call(req).await.unwrap()
}

/// Engages route `r`'s kill switch for every request.
fn engage(proxy: &Proxy) {
    let _flip = proxy.gateway().kills().engage(KillSwitch {
        route: "r".into(),
        reason: "test".into(),
        percent: None,
        segment: None,
        engaged_at_ms: 0,
        by: "test".into(),
    });
}

async fn json(response: Response<Body>) -> serde_json::Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn a_request_no_route_matches_is_a_404_in_its_dialect() {
    // Nothing listens on port 9: the upstream is never dialled.
    let mut proxy = proxy("http://127.0.0.1:9", "");
    let mut req = chat(1);
    *req.uri_mut() = "/elsewhere/v1/chat/completions".parse().unwrap();
    let response = call(&mut proxy, req).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.headers()["x-switchyard-error"], "no_route");
    assert_eq!(response.headers()["x-request-id"], "req-1");
    let body = json(response).await;
    assert_eq!(body["error"]["code"], "no_route", "{body}");
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_by_the_rescue_before_any_dial() {
    let mut proxy = proxy("http://127.0.0.1:9", "");
    let response = call(&mut proxy, chat(4096)).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        response.headers()["x-switchyard-error"],
        "request_too_large"
    );
    assert_eq!(response.headers()["x-switchyard-route"], "r");
    assert_eq!(response.headers()["x-switchyard-upstream"], "up");
}

#[tokio::test]
async fn an_engaged_kill_switch_answers_with_the_fallback_in_the_dialect() {
    let mut proxy = proxy(
        "http://127.0.0.1:9",
        "[routes.kill_switch]\nfallback = { text = \"resting\" }\n",
    );
    engage(&proxy);
    let response = call(&mut proxy, chat(1)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-switchyard-fallback"], "kill_switch");
    assert_eq!(response.headers()["x-request-id"], "req-1");
    let body = json(response).await;
    assert_eq!(
        body["choices"][0]["message"]["content"], "resting",
        "{body}"
    );
}

#[tokio::test]
async fn without_a_fallback_a_killed_route_is_a_503_with_retry_after() {
    let mut proxy = proxy("http://127.0.0.1:9", "");
    engage(&proxy);
    let response = call(&mut proxy, chat(1)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["x-switchyard-error"], "route_killed");
    assert!(response.headers().contains_key("retry-after"));
}

/// An upstream that accepts connections and never answers: it holds the route's only slot.
async fn silent_upstream() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

#[tokio::test(start_paused = true)]
async fn a_queued_request_is_shed_with_a_503_after_the_queue_timeout() {
    let (listener, url) = silent_upstream().await;
    let accept = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        // Held open, never answered.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(stream);
    });
    let limits = "[routes.limits]\nmax_concurrency = 1\nmax_queue = 1\nqueue_timeout = \"2s\"\n";
    let proxy = proxy(&url, limits);
    let mut first = proxy.clone();
    let holding = tokio::spawn(async move { call(&mut first, chat(1)).await });
    let admission = proxy.gateway().table().routes[0].admission.clone();
    while admission.free_slots() > 0 {
        tokio::task::yield_now().await;
    }
    let mut second = proxy.clone();
    let started = tokio::time::Instant::now();
    let response = call(&mut second, chat(1)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["x-switchyard-error"], "queue_timeout");
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert!(
        !holding.is_finished(),
        "the first request still holds the slot"
    );
    holding.abort();
    accept.abort();
}
