//! Forward: the pooled client per upstream and the upstream request.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::ResponseFuture;
use pin_project_lite::pin_project;
use switchyard_core::client::{https_client, ClientSettings};
use switchyard_core::{Body, BoxError};

use crate::h1_client::{self as own, OwnBody};
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
    Response(Response<UpstreamBody>),
    /// No endpoint at all (an upstream without endpoints cannot be configured).
    NoEndpoint,
    BadTarget,
    /// Refused or unreachable, on the retry too if there was one.
    Connect,
    Timeout,
    Failed(BoxError),
}

pin_project! {
    /// An upstream answer's body: read by hyper's client, or by the built-in HTTP/1.1 path.
    #[project = UpstreamBodyProj]
    pub enum UpstreamBody {
        Hyper { #[pin] body: Incoming },
        Own { #[pin] body: OwnBody },
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        match self.project() {
            UpstreamBodyProj::Hyper { body } => body.poll_frame(cx).map_err(Into::into),
            UpstreamBodyProj::Own { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Hyper { body } => body.is_end_stream(),
            UpstreamBody::Own { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            UpstreamBody::Hyper { body } => body.size_hint(),
            UpstreamBody::Own { body } => body.size_hint(),
        }
    }
}

/// The built-in path's exchange, boxed once per attempt (hyper's is boxed by hyper-util).
type OwnSend = Pin<Box<dyn Future<Output = Result<Response<OwnBody>, own::Failure>> + Send>>;

pin_project! {
    /// One attempt on its way: the upstream's response headers, within the deadline.
    #[project = AttemptProj]
    pub enum Attempt {
        Hyper { #[pin] sending: tokio::time::Timeout<ResponseFuture> },
        Own { #[pin] sending: tokio::time::Timeout<OwnSend> },
    }
}

/// How an attempt ended, before it is judged.
pub enum Ended {
    TimedOut,
    Hyper(Result<Response<Incoming>, hyper_util::client::legacy::Error>),
    Own(Result<Response<OwnBody>, own::Failure>),
}

impl Future for Attempt {
    type Output = Ended;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Ended> {
        match self.project() {
            AttemptProj::Hyper { sending } => sending
                .poll(cx)
                .map(|ended| ended.map_or(Ended::TimedOut, Ended::Hyper)),
            AttemptProj::Own { sending } => sending
                .poll(cx)
                .map(|ended| ended.map_or(Ended::TimedOut, Ended::Own)),
        }
    }
}

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
    if let (Some(builtin), true) = (&upstream.own, endpoint.scheme == Scheme::HTTP) {
        let (idle, connect_timeout) = builtin.for_endpoint(index);
        let authority = endpoint.authority.clone();
        let sending: OwnSend =
            Box::pin(async move { own::send(idle, &authority, connect_timeout, req).await });
        return Ok(Attempt::Own {
            sending: tokio::time::timeout_at(deadline, sending),
        });
    }
    Ok(Attempt::Hyper {
        sending: tokio::time::timeout_at(deadline, upstream.client.request(req)),
    })
}

/// How the attempt on endpoint `index` ended. Connect errors and 5xx answers count against
/// the endpoint's health, other answers for it.
pub fn settle(upstream: &Upstream, index: usize, ended: Ended) -> Sent {
    let health = upstream.health_of(index);
    let response = match ended {
        Ended::TimedOut => return Sent::Timeout,
        Ended::Hyper(Err(error)) if error.is_connect() => None,
        Ended::Own(Err(own::Failure::Connect(_))) => None,
        Ended::Hyper(Err(error)) => return Sent::Failed(error.into()),
        Ended::Own(Err(own::Failure::Broken(error))) => return Sent::Failed(error),
        Ended::Hyper(Ok(response)) => Some(response.map(|body| UpstreamBody::Hyper { body })),
        Ended::Own(Ok(response)) => Some(response.map(|body| UpstreamBody::Own { body })),
    };
    let Some(response) = response else {
        if let Some(h) = health {
            h.failure(upstream.policy);
        }
        return Sent::Connect;
    };
    if let Some(h) = health {
        if response.status().is_server_error() {
            h.failure(upstream.policy);
        } else {
            h.success();
        }
    }
    Sent::Response(response)
}
