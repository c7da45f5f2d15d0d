use http_body_util::Full;

use super::*;
use crate::stage::testing::{boards, chat, flow, oneshot, table};

/// The forward stage's stand-in: answers with `status` and `body`, without an upstream.
#[derive(Clone)]
struct Upstream(http::StatusCode, &'static str);

impl Service<Flow> for Upstream {
    type Response = Forwarded<Full<Bytes>>;
    type Error = Stopped;
    type Future = std::future::Ready<Result<Forwarded<Full<Bytes>>, Stopped>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Stopped>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, flow: Flow) -> Self::Future {
        let mut response = Response::new(Full::new(Bytes::from_static(self.1.as_bytes())));
        *response.status_mut() = self.0;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        headers.insert(header::CONNECTION, "keep-alive".parse().unwrap());
        std::future::ready(Ok(Forwarded { response, flow }))
    }
}

#[tokio::test]
async fn the_upstreams_answer_gets_the_gateways_headers_and_its_body_untouched() {
    let (table, boards) = (table(""), boards());
    let mut stage = MeterLayer.layer(Upstream(http::StatusCode::OK, "{\"ok\":true}"));
    let flow = flow(&table, &boards, chat("gpt-4o"));
    let id = flow.edge.request_id.1.clone();
    let response = oneshot(&mut stage, flow)
        .await
        .unwrap_or_else(|_| panic!("meter never stops a request"));
    let headers = response.headers();
    assert_eq!(headers[X_REQUEST_ID], id);
    assert_eq!(headers["x-switchyard-route"], "r");
    assert_eq!(headers["x-switchyard-upstream"], "up");
    assert!(
        !headers.contains_key(header::CONNECTION),
        "hop-by-hop headers stay behind"
    );
    assert!(!headers.contains_key(X_FALLBACK));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "{\"ok\":true}");
}

#[tokio::test]
async fn an_answer_from_the_fallback_upstream_says_so() {
    let (table, boards) = (table(""), boards());
    let mut stage = MeterLayer.layer(Upstream(http::StatusCode::BAD_GATEWAY, ""));
    let mut flow = flow(&table, &boards, chat("gpt-4o"));
    flow.fallback = true;
    let response = oneshot(&mut stage, flow)
        .await
        .unwrap_or_else(|_| panic!("meter never stops a request"));
    assert_eq!(response.status(), http::StatusCode::BAD_GATEWAY);
    assert_eq!(response.headers()[X_FALLBACK], "kill_switch");
    assert!(http_body::Body::is_end_stream(response.body()));
}
