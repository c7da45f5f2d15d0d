//! Forward: the pooled client per upstream and the upstream request.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::ResponseFuture;
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

/// One attempt on its way: the upstream's response headers, within the deadline.
pub type Attempt = tokio::time::Timeout<ResponseFuture>;

/// The copy of a request a second attempt sends, made before the first consumes it and
/// only where a second attempt is possible: the body is known whole and there is another
/// endpoint to try.
pub fn again(upstream: &Upstream, parts: &Parts, replay: Option<&Bytes>) -> Option<(Parts, Bytes)> {
    let bytes = replay.filter(|_| upstream.endpoints.len() >= 2)?.clone();
    let mut again = Request::new(()).into_parts().0;
    again.method = parts.method.clone();
    again.uri = parts.uri.clone();
    again.headers = parts.headers.clone();
    Some((again, bytes))
}

/// Why an attempt could not start.
#[derive(Debug, Clone, Copy)]
pub enum Unsent {
    NoEndpoint,
    BadTarget,
}

impl From<Unsent> for Sent {
    fn from(unsent: Unsent) -> Sent {
        match unsent {
            Unsent::NoEndpoint => Sent::NoEndpoint,
            Unsent::BadTarget => Sent::BadTarget,
        }
    }
}

/// Starts an attempt on endpoint `index`, or says why none can start.
pub fn start(
    upstream: &Upstream,
    index: usize,
    (parts, body): (Parts, Body),
    (request_id, deadline): (&HeaderValue, tokio::time::Instant),
) -> Result<Attempt, Unsent> {
    let Some(endpoint) = upstream.endpoints.get(index) else {
        return Err(Unsent::NoEndpoint);
    };
    let Ok(uri) = upstream_uri(endpoint, parts.uri.path_and_query()) else {
        return Err(Unsent::BadTarget);
    };
    let mut req = Request::from_parts(parts, body);
    prepare(&mut req, uri, request_id);
    Ok(tokio::time::timeout_at(
        deadline,
        upstream.client.request(req),
    ))
}

/// How the attempt on endpoint `index` ended. Connect errors and 5xx answers count against
/// the endpoint's health, other answers for it.
pub fn settle(upstream: &Upstream, index: usize, ended: <Attempt as Future>::Output) -> Sent {
    let health = upstream.health_of(index);
    match ended {
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
