//! The gateway as a library: an outer layer of the embedding program around the request
//! path on a real listener, and the `Proxy` service called in process with a body of its own.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use switchyard_config::Config;
use switchyard_proxy::Proxy;
use switchyard_sim::Profile;
use tower_service::Service;

use crate::common::{chat, one_route, post_json, sim, temp_dir};

/// Stamps every response with `x-embedded` and counts the requests it saw.
#[derive(Clone)]
struct Stamp {
    seen: Arc<AtomicUsize>,
}

impl<S> tower_layer::Layer<S> for Stamp {
    type Service = Stamped<S>;

    fn layer(&self, inner: S) -> Stamped<S> {
        Stamped {
            inner,
            seen: self.seen.clone(),
        }
    }
}

#[derive(Clone)]
struct Stamped<S> {
    inner: S,
    seen: Arc<AtomicUsize>,
}

impl<S, B, R> Service<Request<B>> for Stamped<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<R>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.seen.fetch_add(1, Ordering::Relaxed);
        let answer = self.inner.call(req);
        Box::pin(async move {
            let mut response = answer.await?;
            response
                .headers_mut()
                .insert("x-embedded", HeaderValue::from_static("yes"));
            Ok(response)
        })
    }
}

fn config(toml: &str) -> Config {
    let mut config = Config::parse(toml, "test.toml", Path::new(".")).unwrap();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.state_dir = temp_dir("state");
    config
}

#[tokio::test]
async fn an_outer_layer_wraps_every_answer_on_the_traffic_listener() {
    let (_sim, up) = sim(Profile::default()).await;
    let stamp = Stamp {
        seen: Arc::new(AtomicUsize::new(0)),
    };
    let toml = one_route(
        "embedded",
        &format!("http://{up}"),
        "match = { path_prefix = \"/v1/\" }",
    );
    let gw = switchyard::start_layered(config(&toml), None, stamp.clone())
        .await
        .unwrap();
    let proxied = post_json(
        gw.traffic,
        "/v1/chat/completions",
        &[],
        chat("gpt-4o", false),
    )
    .await;
    assert_eq!(proxied.status, StatusCode::OK);
    assert_eq!(proxied.headers["x-embedded"], "yes");
    assert_eq!(proxied.headers["x-switchyard-route"], "embedded");
    // The gateway's own answers pass through the layer too.
    let unrouted = post_json(gw.traffic, "/elsewhere", &[], chat("gpt-4o", false)).await;
    assert_eq!(unrouted.status, StatusCode::NOT_FOUND);
    assert_eq!(unrouted.headers["x-embedded"], "yes");
    assert_eq!(stamp.seen.load(Ordering::Relaxed), 2);
    gw.stop().await;
}

#[tokio::test]
async fn the_proxy_serves_an_in_process_request_with_a_body_of_its_own() {
    let (_sim, up) = sim(Profile::default()).await;
    let toml = one_route("in-process", &format!("http://{up}"), "");
    let gw = switchyard::start(config(&toml)).await.unwrap();
    let mut proxy = Proxy::new(gw.gateway.clone());
    let req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(chat("gpt-4o", false).to_string())))
        .unwrap();
    std::future::poll_fn(|cx| Service::<Request<Full<Bytes>>>::poll_ready(&mut proxy, cx))
        .await
        .unwrap();
    let response = proxy.call(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-switchyard-upstream"], "up");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(json["choices"].is_array(), "{json}");
    gw.stop().await;
}
