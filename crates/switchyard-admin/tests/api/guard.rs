//! Mutations refused before the token is read: a foreign Host (DNS rebinding), a foreign Origin
//! (a web page), a body that does not say it is JSON.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::common::{start, Admin, OPERATOR};

/// A kill of `support` with exactly these headers (and the operator's token).
async fn kill_with(admin: &Admin, headers: &[(&str, &str)], body: &str) -> (StatusCode, Value) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{}/admin/routes/support/kill", admin.addr))
        .header("authorization", format!("Bearer {OPERATOR}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

const BODY: &str = r#"{"reason":"drill"}"#;
const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test]
async fn a_foreign_host_is_421() {
    let admin = start("guard-host").await;
    let (status, body) = kill_with(&admin, &[("host", "evil.example:9090"), JSON], BODY).await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "unknown_host");
    assert!(
        admin.state.kills.get("support").is_none(),
        "nothing engaged"
    );
    let port = admin.addr.port();
    for host in [format!("localhost:{port}"), admin.addr.to_string()] {
        let (status, body) = kill_with(&admin, &[("host", &host), JSON], BODY).await;
        assert_eq!(status, StatusCode::OK, "{host}: {body}");
    }
    // Reads are not guarded: Prometheus may scrape by any name.
    let answer =
        crate::common::send(admin.addr, Method::GET, "/metrics".into(), None, Vec::new()).await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn a_foreign_origin_is_403() {
    let admin = start("guard-origin").await;
    for origin in ["http://evil.example", "null", "http://127.0.0.1:1"] {
        let (status, body) = kill_with(&admin, &[("origin", origin), JSON], BODY).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin}: {body}");
        assert_eq!(body["error"]["code"], "foreign_origin");
    }
    assert!(
        admin.state.kills.get("support").is_none(),
        "nothing engaged"
    );
    let own = format!("http://{}", admin.addr);
    let (status, body) = kill_with(&admin, &[("origin", &own), JSON], BODY).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let admin = start("guard-type").await;
    for headers in [
        vec![("content-type", "application/x-www-form-urlencoded")],
        vec![("content-type", "text/plain")],
        vec![],
    ] {
        let (status, body) = kill_with(&admin, &headers, BODY).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{headers:?}: {body}"
        );
        assert_eq!(body["error"]["code"], "unsupported_media_type");
    }
    assert!(
        admin.state.kills.get("support").is_none(),
        "nothing engaged"
    );
    // No body, no content type needed: a revive without a reason.
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = Request::delete(format!("http://{}/admin/routes/support/kill", admin.addr))
        .header("authorization", format!("Bearer {OPERATOR}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(
        client.request(request).await.unwrap().status(),
        StatusCode::OK
    );
    let charset = [("content-type", "Application/JSON; charset=utf-8")];
    let (status, body) = kill_with(&admin, &charset, BODY).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
