//! Admission: a rule's throttle, the rate limits (per user, then route-wide) and the
//! concurrency limit with its bounded queue. A request that waited in the queue meets the
//! kill switch again: the route may have been killed meanwhile. A fallback upstream is
//! not held to the route's limits: they protect the upstream that is killed.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::sync::OwnedSemaphorePermit;
use tower_layer::Layer;
use tower_service::Service;

use super::flow::{Flow, Stopped};
use super::future::Then;
use crate::admission::{Door, QueueWait};

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AdmissionLayer;

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admit<S>;

    fn layer(&self, inner: S) -> Admit<S> {
        Admit { inner }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Admit<S> {
    inner: S,
}

impl<S> Service<Flow> for Admit<S>
where
    S: Service<Flow, Error = Stopped> + Clone,
{
    type Response = S::Response;
    type Error = Stopped;
    type Future = Then<S, Queued, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Stopped>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, flow: Flow) -> Self::Future {
        let mut inner = super::take(&mut self.inner);
        if flow.fallback {
            return Then::inner(inner.call(flow), inner);
        }
        match door(&flow) {
            Err(shed) => Then::stop(flow.stop(shed), inner),
            Ok(Door::Queue(wait)) => Then::wait(
                Queued {
                    wait,
                    flow: Some(flow),
                },
                inner,
            ),
            Ok(Door::Slot(slot)) => match hold(flow, slot) {
                Ok(flow) => Then::inner(inner.call(flow), inner),
                Err(stop) => Then::stop(stop, inner),
            },
        }
    }
}

/// The throttle, the rates, then a slot now or a place in the queue.
fn door(flow: &Flow) -> Result<Door, crate::admission::Shed> {
    let admission = &flow.route().admission;
    if let Some(rps) = flow.steer.as_ref().and_then(|s| s.throttle_rps) {
        admission.check_throttle(rps)?;
    }
    admission.check_rates(flow.ctx.facts().user_key.as_deref())?;
    admission.knock(&flow.boards.signals)
}

/// The request holds its slot until it is recorded; one that got a slot meets the kill
/// switch again, as it may have waited for it.
fn hold(mut flow: Flow, slot: Option<OwnedSemaphorePermit>) -> Result<Flow, Stopped> {
    flow.ctx.hold_slot(slot);
    if flow.ctx.has_slot() {
        if let Err(answer) = super::kill::check(&mut flow) {
            return Err(flow.stop(answer));
        }
    }
    Ok(flow)
}

/// A request waiting in the route's queue for a concurrency slot.
pub(crate) struct Queued {
    // Declared first, dropped first: a request that leaves the queue gives its place back
    // before its cancellation is recorded.
    wait: QueueWait,
    flow: Option<Flow>,
}

impl Future for Queued {
    type Output = Result<Flow, Stopped>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let entered = ready!(Pin::new(&mut self.wait).poll(cx));
        let Some(flow) = self.flow.take() else {
            unreachable!("a queued request is handed on once")
        };
        Poll::Ready(match entered {
            Ok(slot) => hold(flow, slot),
            Err(shed) => Err(flow.stop(shed)),
        })
    }
}

#[cfg(test)]
mod tests;
