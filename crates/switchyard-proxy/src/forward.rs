//! Forward: the pooled client per upstream and the upstream request.

use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use switchyard_core::client::{https_client, ClientSettings};
use switchyard_core::Body;

use crate::upstream::{Endpoint, Upstream, UpstreamClient};

/// Builds an upstream's client (and a probe's); the connect timeout is the caller's own.
pub fn client(connect_timeout: Duration) -> Result<UpstreamClient, rustls::Error> {
    https_client(&ClientSettings {
        connect_timeout: Some(connect_timeout),
        tcp_keepalive: Some(Duration::from_secs(60)),
        http2: true,
        pool_idle_timeout: Duration::from_secs(90),
    })
}

/// The upstream URI: the endpoint's base path joined with the client's path and query.
pub fn upstream_uri(
    endpoint: &Endpoint,
    path_and_query: Option<&PathAndQuery>,
) -> Result<Uri, http::Error> {
    let pq = path_and_query.map_or("/", PathAndQuery::as_str);
    let joined = if endpoint.base_path.is_empty() {
        PathAndQuery::try_from(pq)?
    } else {
        PathAndQuery::try_from(format!("{}{}", endpoint.base_path, pq))?
    };
    Uri::builder()
        .scheme(endpoint.scheme.clone())
        .authority(endpoint.authority.clone())
        .path_and_query(joined)
        .build()
}

/// Sets the request's URI and the headers the upstream must see from us.
pub fn prepare(req: &mut Request<Body>, uri: Uri, request_id: &HeaderValue) {
    *req.uri_mut() = uri;
    // HTTP/1.1 to the upstream regardless of how the client spoke; the pool upgrades to h2
    // where ALPN offers it.
    *req.version_mut() = http::Version::HTTP_11;
    req.headers_mut().remove(http::header::HOST);
    req.headers_mut()
        .insert(crate::headers::X_REQUEST_ID, request_id.clone());
}

/// How sending to the upstream ended.
pub enum Sent {
    Response(Response<Incoming>),
    /// No endpoint at all (an upstream without endpoints cannot be configured).
    NoEndpoint,
    BadTarget,
    /// Refused or unreachable, on the retry too if there was one.
    Connect,
    Timeout,
    Failed(hyper_util::client::legacy::Error),
}

/// What one request needs to be sent, and sent again.
pub struct Outbound<'a> {
    pub parts: Parts,
    pub body: Body,
    /// The whole body when it is known (an inspected or empty one): a request refused at
    /// connect was never sent, so it can go to the next endpoint of the ring.
    pub replay: Option<Bytes>,
    pub user_key: Option<&'a str>,
    pub request_id: &'a HeaderValue,
    /// For both attempts together.
    pub deadline: tokio::time::Instant,
}

/// Sends to the endpoint the ring picks; on a connect error, once more to the next one.
/// Connect errors and 5xx answers count against the endpoint's health, other answers for it.
pub async fn send(upstream: &Upstream, out: Outbound<'_>) -> Sent {
    let Some(first) = upstream.choose(out.user_key, None) else {
        return Sent::NoEndpoint;
    };
    // Copied before the first attempt consumes them, only where a second one is possible.
    let again = out
        .replay
        .clone()
        .filter(|_| upstream.endpoints.len() >= 2)
        .map(|bytes| {
            let mut parts = Request::new(()).into_parts().0;
            parts.method = out.parts.method.clone();
            parts.uri = out.parts.uri.clone();
            parts.headers = out.parts.headers.clone();
            (parts, bytes)
        });
    let at = (out.request_id, out.deadline);
    match attempt(upstream, first, (out.parts, out.body), at).await {
        Sent::Connect => {}
        sent => return sent,
    }
    // Chosen after the failure was counted, so an endpoint it just ejected is skipped too.
    let Some(((parts, bytes), second)) = again.zip(upstream.choose(out.user_key, Some(first)))
    else {
        return Sent::Connect;
    };
    tracing::debug!(upstream = %upstream.name, "connect failed; trying the next endpoint");
    let body = switchyard_core::body::full(bytes);
    attempt(upstream, second, (parts, body), at).await
}

async fn attempt(
    upstream: &Upstream,
    index: usize,
    (parts, body): (Parts, Body),
    (request_id, deadline): (&HeaderValue, tokio::time::Instant),
) -> Sent {
    let Some(endpoint) = upstream.endpoints.get(index) else {
        return Sent::NoEndpoint;
    };
    let Ok(uri) = upstream_uri(endpoint, parts.uri.path_and_query()) else {
        return Sent::BadTarget;
    };
    let mut req = Request::from_parts(parts, body);
    prepare(&mut req, uri, request_id);
    let health = upstream.health_of(index);
    match tokio::time::timeout_at(deadline, upstream.client.request(req)).await {
        Err(_) => Sent::Timeout,
        Ok(Err(error)) if error.is_connect() => {
            if let Some(h) = health {
                h.failure(upstream.policy);
            }
            Sent::Connect
        }
        Ok(Err(error)) => Sent::Failed(error),
        Ok(Ok(response)) => {
            if let Some(h) = health {
                if response.status().is_server_error() {
                    h.failure(upstream.policy);
                } else {
                    h.success();
                }
            }
            Sent::Response(response)
        }
    }
}
