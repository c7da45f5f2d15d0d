//! The few paths the gateway answers itself on the traffic listener: /health, /ready and
//! the /switchyard/ prefix. Nothing else is shadowed.

use std::time::Duration;

use http::{header, HeaderValue, Method, Response, StatusCode};
use switchyard_core::{body, Body};

use crate::table::Table;

/// The reserved prefix for the gateway's own endpoints on the traffic listener.
pub const RESERVED_PREFIX: &str = "/switchyard/";

/// How long /ready waits to dial an upstream.
const READY_DIAL: Duration = Duration::from_millis(500);

/// Whether the gateway answers this path itself.
pub fn is_local(path: &str) -> bool {
    path == "/health" || path == "/ready" || path.starts_with(RESERVED_PREFIX)
}

/// Answers a local path.
pub async fn answer(method: &Method, path: &str, table: &Table) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD && !path.starts_with(RESERVED_PREFIX) {
        return json(StatusCode::METHOD_NOT_ALLOWED, r#"{"error":{"message":"use GET","type":"invalid_request_error","code":"method_not_allowed"}}"#.into());
    }
    match path {
        "/health" => json(StatusCode::OK, format!(r#"{{"status":"ok","config_version":"{}"}}"#, table.version)),
        "/ready" => {
            let reachable = any_upstream_reachable(table).await;
            let status = if reachable { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            let text = if reachable { "ready" } else { "no upstream reachable" };
            json(status, format!(r#"{{"status":"{text}","config_version":"{}"}}"#, table.version))
        }
        _ => json(
            StatusCode::NOT_FOUND,
            r#"{"error":{"message":"unknown switchyard endpoint","type":"invalid_request_error","code":"not_found"}}"#.into(),
        ),
    }
}

fn json(status: StatusCode, text: String) -> Response<Body> {
    let mut response = Response::new(body::full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Ready means: a config is loaded and at least one upstream accepts a TCP connection.
async fn any_upstream_reachable(table: &Table) -> bool {
    let mut dials = tokio::task::JoinSet::new();
    for upstream in &table.upstreams {
        for endpoint in &upstream.endpoints {
            let port = endpoint.authority.port_u16().unwrap_or(
                if endpoint.scheme == http::uri::Scheme::HTTPS {
                    443
                } else {
                    80
                },
            );
            let host = endpoint
                .authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            dials.spawn(async move {
                tokio::time::timeout(
                    READY_DIAL,
                    tokio::net::TcpStream::connect((host.as_str(), port)),
                )
                .await
                .is_ok_and(|r| r.is_ok())
            });
        }
    }
    while let Some(result) = dials.join_next().await {
        if result.unwrap_or(false) {
            return true;
        }
    }
    false
}
