//! Meter: the upstream's response on its way out. Its head gets the gateway's headers; its
//! body is wrapped to count usage (tokens, time to first byte and token) and record the
//! exchange when it ends, however it ends.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{header, Response};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;
use switchyard_core::{body, Body, BoxError, ErrorClass};
use switchyard_llm::Operation;
use switchyard_state::Outcome;
use tower_layer::Layer;
use tower_service::Service;

use super::flow::{Flow, Stopped};
use super::forward::Forwarded;
use super::rescue::KILLED;
use crate::headers::{strip_hop_by_hop, X_FALLBACK, X_REQUEST_ID};
use crate::meter::{Metered, Scan};

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MeterLayer;

impl<S> Layer<S> for MeterLayer {
    type Service = Meter<S>;

    fn layer(&self, inner: S) -> Meter<S> {
        Meter { inner }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Meter<S> {
    inner: S,
}

impl<S, B> Service<Flow> for Meter<S>
where
    S: Service<Flow, Response = Forwarded<B>, Error = Stopped>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Stopped;
    type Future = Metering<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Stopped>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, flow: Flow) -> Self::Future {
        Metering {
            inner: self.inner.call(flow),
        }
    }
}

pin_project! {
    pub(crate) struct Metering<F> {
        #[pin]
        inner: F,
    }
}

impl<F, B> Future for Metering<F>
where
    F: Future<Output = Result<Forwarded<B>, Stopped>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, Stopped>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let forwarded = ready!(self.project().inner.poll(cx))?;
        Poll::Ready(Ok(respond(forwarded)))
    }
}

fn respond<B>(Forwarded { response, flow }: Forwarded<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, upstream_body) = response.into_parts();
    // Both framings from the upstream: hyper read the body by Transfer-Encoding, so the
    // Content-Length is a lie that would cut or pad the body downstream; an intermediary
    // removes it before forwarding (RFC 9112 §6.3).
    if parts.headers.contains_key(header::TRANSFER_ENCODING) {
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    strip_hop_by_hop(&mut parts.headers);
    parts
        .headers
        .insert(X_REQUEST_ID, flow.edge.request_id.1.clone());
    flow.routing_headers(&mut parts.headers);
    if flow.fallback {
        parts.headers.insert(X_FALLBACK, KILLED);
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let (dialect, op) = (flow.edge.dialect, flow.edge.op);
    let scan = if op == Operation::Other {
        Scan::None
    } else {
        Scan::for_response(dialect, content_type)
    };
    let idle_timeout = flow.settings().stream_idle_timeout;
    let status = parts.status.as_u16();
    let record = flow.into_record(status, ErrorClass::of_status(status));
    if http_body::Body::is_end_stream(&upstream_body) {
        record.finish(Outcome::Complete, None, &scan);
        return Response::from_parts(parts, body::empty());
    }
    let metered = Metered::new(upstream_body, scan, *record, idle_timeout);
    Response::from_parts(parts, metered.boxed_unsync())
}

#[cfg(test)]
mod tests;
