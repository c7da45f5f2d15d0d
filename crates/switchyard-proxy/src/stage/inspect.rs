//! Inspect: what the request says about itself. Inspectable LLM requests are read whole (up
//! to `max_body_bytes`, within `body_read_timeout`) to be understood; everything else
//! streams through untouched. A body known whole can be sent again if the first endpoint
//! refuses the connection.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use pin_project_lite::pin_project;
use switchyard_core::body;
use switchyard_llm::Operation;
use tower_layer::Layer;
use tower_service::Service;

use super::flow::{Flow, Stopped};
use super::future::Then;
use crate::inspect::{read_body, ReadBody};

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct InspectLayer;

impl<S> Layer<S> for InspectLayer {
    type Service = Inspect<S>;

    fn layer(&self, inner: S) -> Inspect<S> {
        Inspect { inner }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Inspect<S> {
    inner: S,
}

impl<S> Service<Flow> for Inspect<S>
where
    S: Service<Flow, Error = Stopped> + Clone,
{
    type Response = S::Response;
    type Error = Stopped;
    type Future = Then<S, Reading, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Stopped>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut flow: Flow) -> Self::Future {
        let mut inner = super::take(&mut self.inner);
        if flow.edge.op == Operation::Other {
            let empty = http_body::Body::is_end_stream(&flow.body);
            *flow.ctx.facts_mut() = flow.facts(None);
            flow.replay = empty.then(Bytes::new);
            let flow = inspected(flow);
            return Then::inner(inner.call(flow), inner);
        }
        let settings = flow.settings();
        let limits = (settings.max_body_bytes, settings.body_read_timeout);
        let body = std::mem::replace(&mut flow.body, body::empty());
        let read = read_body(body, &flow.parts.headers, limits);
        Then::wait(
            Reading {
                read,
                flow: Some(flow),
            },
            inner,
        )
    }
}

pin_project! {
    /// An inspectable request's body on its way in.
    pub(crate) struct Reading {
        #[pin]
        read: ReadBody,
        flow: Option<Flow>,
    }
}

impl Future for Reading {
    type Output = Result<Flow, Stopped>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let read = ready!(this.read.poll(cx));
        let Some(mut flow) = this.flow.take() else {
            unreachable!("an inspected request is handed on once")
        };
        Poll::Ready(match read {
            Ok(bytes) => {
                *flow.ctx.facts_mut() = flow.facts(Some(&bytes));
                flow.body = body::full(bytes.clone());
                flow.replay = Some(bytes);
                Ok(inspected(flow))
            }
            Err(refusal) => {
                *flow.ctx.facts_mut() = flow.facts(None);
                Err(flow.stop(refusal))
            }
        })
    }
}

/// What follows a request's facts: its text kept for incidents, an unparsed one counted.
fn inspected(mut flow: Flow) -> Flow {
    if flow.settings().capture_bodies {
        if let Some(bytes) = flow.replay.as_ref() {
            let kept = &bytes[..bytes.len().min(crate::meter::CAPTURE_BYTES)];
            flow.capture = Some(String::from_utf8_lossy(kept).into_owned());
        }
    }
    if flow.ctx.facts().unparsed {
        metrics::counter!(switchyard_core::metrics::UNPARSED_REQUESTS_TOTAL, "route" => flow.route().name.clone()).increment(1);
    }
    flow
}

#[cfg(test)]
mod tests;
