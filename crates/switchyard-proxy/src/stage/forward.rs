//! Forward: the innermost stage. The request gets the headers the upstream must see from
//! us and goes to the endpoint the ring picks; on a refused connection, once more to the
//! next endpoint when the body is known whole. It answers with the upstream's response
//! head, or stops with 502 or 504.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use switchyard_core::body;
use tower_service::Service;

use super::flow::{Flow, FlowState, Stopped};
use crate::forward::{self, Attempt, Sent, UpstreamBody};
use crate::headers::{
    append_list, forwarded_for, strip_hop_by_hop, X_FORWARDED_FOR, X_FORWARDED_HOST,
    X_FORWARDED_PROTO,
};
use crate::rescue::Refusal;

/// The upstream's response, with the request it answers.
pub(crate) struct Forwarded<B> {
    pub response: Response<B>,
    pub flow: Flow,
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Forward;

impl Service<Flow> for Forward {
    type Response = Forwarded<UpstreamBody>;
    type Error = Stopped;
    type Future = Sending;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Stopped>> {
        // The upstream's pool queues for itself; its timeout covers the wait.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut flow: Flow) -> Sending {
        forward_headers(&mut flow);
        flow.ctx.sent();
        Sending::start(flow)
    }
}

/// The headers the upstream must see from the gateway, without the client's hop-by-hop.
fn forward_headers(flow: &mut Flow) {
    // The state itself, so its fields are borrowed apart.
    let flow: &mut FlowState = flow;
    let headers = &mut flow.parts.headers;
    strip_hop_by_hop(headers);
    let peer = flow.edge.peer;
    if let Some(entry) = forwarded_for(peer.addr.ip()) {
        append_list(headers, X_FORWARDED_FOR, entry);
    }
    let proto = HeaderValue::from_static(if peer.tls { "https" } else { "http" });
    append_list(headers, X_FORWARDED_PROTO, proto);
    if let Some(host) = flow
        .edge
        .host
        .as_deref()
        .and_then(|h| HeaderValue::from_str(h).ok())
    {
        headers.insert(X_FORWARDED_HOST, host);
    }
    crate::trace::propagate(headers, &flow.edge.trace);
    let route = &flow.table.routes[flow.route];
    if let Some(variant) = flow.variant.and_then(|i| route.variants.get(i)) {
        for (name, value) in &variant.headers {
            flow.parts.headers.insert(name.clone(), value.clone());
        }
    }
}

pin_project! {
    /// A request on its way to the upstream, on its first attempt or its second.
    pub(crate) struct Sending {
        #[pin]
        step: Step,
        flow: Option<Flow>,
        index: usize,
        // Boxed: it exists only where a second attempt is possible.
        again: Option<Box<(http::request::Parts, bytes::Bytes)>>,
        deadline: tokio::time::Instant,
    }
}

pin_project! {
    #[project = StepProj]
    enum Step {
        First { #[pin] attempt: Attempt },
        Second { #[pin] attempt: Attempt },
        Ended { sent: Option<Sent> },
    }
}

impl Sending {
    fn start(mut flow: Flow) -> Sending {
        // One deadline for both attempts together.
        let deadline = tokio::time::Instant::now() + flow.settings().upstream_timeout;
        let parts = std::mem::replace(&mut flow.parts, Request::new(()).into_parts().0);
        let body = std::mem::replace(&mut flow.body, body::empty());
        let upstream = &flow.upstream;
        let (step, index, again) = match upstream.choose(flow.ctx.facts().user_key.as_deref(), None)
        {
            None => (Step::ended(Sent::NoEndpoint), 0, None),
            Some(first) => {
                let again = forward::again(upstream, &parts, flow.replay.as_ref()).map(Box::new);
                let at = (&flow.edge.request_id.1, deadline);
                match forward::start(upstream, first, (parts, body), at) {
                    Ok(attempt) => (Step::First { attempt }, first, again),
                    Err(unsent) => (Step::ended(unsent.into()), first, None),
                }
            }
        };
        Sending {
            step,
            flow: Some(flow),
            index,
            again,
            deadline,
        }
    }
}

impl Step {
    fn ended(sent: Sent) -> Step {
        Step::Ended { sent: Some(sent) }
    }
}

impl Future for Sending {
    type Output = Result<Forwarded<UpstreamBody>, Stopped>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let Some(flow) = this.flow.as_ref() else {
                unreachable!("a sent request is answered once")
            };
            let next = match this.step.as_mut().project() {
                StepProj::First { attempt } => {
                    let ended = ready!(attempt.poll(cx));
                    match forward::settle(&flow.upstream, *this.index, ended) {
                        Sent::Connect => retry(flow, this.index, this.again.take(), *this.deadline),
                        sent => Step::ended(sent),
                    }
                }
                StepProj::Second { attempt } => {
                    let ended = ready!(attempt.poll(cx));
                    Step::ended(forward::settle(&flow.upstream, *this.index, ended))
                }
                StepProj::Ended { sent } => {
                    let (Some(sent), Some(flow)) = (sent.take(), this.flow.take()) else {
                        unreachable!("a sent request is answered once")
                    };
                    return Poll::Ready(answer(flow, sent));
                }
            };
            this.step.set(next);
        }
    }
}

/// The second attempt, after a refused connection: chosen after the failure was counted,
/// so an endpoint it just ejected is skipped too.
fn retry(
    flow: &Flow,
    index: &mut usize,
    again: Option<Box<(http::request::Parts, bytes::Bytes)>>,
    deadline: tokio::time::Instant,
) -> Step {
    let upstream = &flow.upstream;
    let user_key = flow.ctx.facts().user_key.as_deref();
    let Some((again, second)) = again.zip(upstream.choose(user_key, Some(*index))) else {
        return Step::ended(Sent::Connect);
    };
    tracing::debug!(upstream = %upstream.name, "connect failed; trying the next endpoint");
    let (parts, bytes) = *again;
    *index = second;
    let at = (&flow.edge.request_id.1, deadline);
    match forward::start(upstream, second, (parts, body::full(bytes)), at) {
        Ok(attempt) => Step::Second { attempt },
        Err(unsent) => Step::ended(unsent.into()),
    }
}

fn answer(flow: Flow, sent: Sent) -> Result<Forwarded<UpstreamBody>, Stopped> {
    let refusal = match sent {
        Sent::Response(response) => return Ok(Forwarded { response, flow }),
        Sent::NoEndpoint | Sent::Connect => Refusal::UpstreamConnect,
        Sent::BadTarget => Refusal::BadTarget,
        Sent::Timeout => Refusal::UpstreamTimeout,
        Sent::Failed(error) => {
            tracing::debug!(%error, route = %flow.route().name, "upstream failed before its response");
            Refusal::UpstreamFailed
        }
    };
    Err(flow.stop(refusal))
}

#[cfg(test)]
mod tests;
