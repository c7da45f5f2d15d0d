//! A route's request path as a stack of tower layers, assembled once per route when the
//! table is prepared and boxed once. Every stage takes the request as a [`Flow`] and hands
//! it on, or stops it with an answer that the edge [`rescue`](rescue::rescue) shapes: the
//! one place answers are counted, recorded and given the client's dialect.
//!
//! Every stage is always ready: admission waits inside the call, where its answer can be
//! shaped. Stage futures are named types, nested in the stack's one boxed future; the
//! request is boxed once too, so stages hand on a pointer. A wait that is not the stack's
//! own (a queue slot, an enforced budget's reservation) is boxed only when it happens.

mod admission;
mod budget;
mod flow;
mod forward;
mod future;
mod inspect;
mod kill;
mod meter;
mod rescue;
mod steer;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::Response;
use pin_project_lite::pin_project;
use switchyard_core::Body;
use tower_layer::Layer;
use tower_service::Service;

pub(crate) use flow::{Flow, Stopped};

use crate::stack::{Assemble, Entry, RouteStack, Stack, StackFuture};
use crate::table::Table;

impl Assemble for Table {
    fn route_stack() -> RouteStack<Table> {
        assemble()
    }
}

/// The stack a route runs, innermost first, each layer wrapping the ones before it.
fn assemble() -> RouteStack<Table> {
    // Forward: the upstream's response head, or 502/504.
    let service = forward::Forward;
    // Meter: the gateway's headers on the response; its body counted and recorded as it
    // streams.
    let service = meter::MeterLayer.layer(service);
    // Budget: last before forwarding, so a request refused above reserves no tokens.
    let service = budget::BudgetLayer.layer(service);
    // Admission: throttle, rates, the concurrency slot or its queue, then the kill switch
    // again for a request that waited. After steer: a rule's throttle comes with it.
    let service = admission::AdmissionLayer.layer(service);
    // Steer: rollout, experiment variant, downgrade; the model rewrite needs the body.
    let service = steer::SteerLayer.layer(service);
    // Kill switch: before anything spends an allowance on a route that is switched off.
    let service = kill::KillLayer.layer(service);
    // Inspect: outermost, so every stage decides on the request's facts.
    let service = inspect::InspectLayer.layer(service);
    RouteStack::new(Erased(service))
}

/// The route's stack behind the table's one box: opens the request's flow and rescues the
/// answer a stage stopped it with.
#[derive(Clone)]
struct Erased<S>(S);

impl<S> Stack<Table> for Erased<S>
where
    S: Service<Flow, Response = Response<Body>, Error = Stopped> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    fn call(&self, entry: Entry<Table>) -> StackFuture {
        let flow = Flow::open(entry);
        let mut service = self.0.clone();
        Box::pin(Rescued {
            inner: service.call(flow),
        })
    }
}

pin_project! {
    /// The stack's answer: the upstream's response, or the rescue of a stage's answer.
    struct Rescued<F> {
        #[pin]
        inner: F,
    }
}

impl<F> Future for Rescued<F>
where
    F: Future<Output = Result<Response<Body>, Stopped>>,
{
    type Output = Response<Body>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response<Body>> {
        Poll::Ready(match ready!(self.project().inner.poll(cx)) {
            Ok(response) => response,
            Err(stop) => rescue::rescue(*stop),
        })
    }
}

/// The inner service for one call, leaving a clone in its place (tower's rule for a
/// service whose readiness was checked: call the one that said ready).
fn take<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}
