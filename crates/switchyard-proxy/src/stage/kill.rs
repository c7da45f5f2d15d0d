//! Kill switch: one atomic load per request, so a switch engaged a microsecond ago applies.
//! The request passes, moves to the route's fallback upstream, or is answered (the made
//! fallback, or 503 without one).

use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use super::flow::{Flow, FlowState, Stopped};
use super::future::{Now, Then};
use crate::rescue::{Answer, Refusal};
use crate::table::CompiledFallback;

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KillLayer;

impl<S> Layer<S> for KillLayer {
    type Service = Kill<S>;

    fn layer(&self, inner: S) -> Kill<S> {
        Kill { inner }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Kill<S> {
    inner: S,
}

impl<S> Service<Flow> for Kill<S>
where
    S: Service<Flow, Error = Stopped> + Clone,
{
    type Response = S::Response;
    type Error = Stopped;
    type Future = Then<S, Now, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Stopped>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut flow: Flow) -> Self::Future {
        let mut inner = super::take(&mut self.inner);
        match check(&mut flow) {
            Ok(()) => Then::inner(inner.call(flow), inner),
            Err(answer) => Then::stop(flow.stop(answer), inner),
        }
    }
}

/// The kill switch as it stands now. A request already on the fallback upstream passes:
/// the switch that sent it there is the one being checked.
pub(super) fn check(flow: &mut Flow) -> Result<(), Answer> {
    // The state itself, so its fields are borrowed apart.
    let flow: &mut FlowState = flow;
    if flow.fallback {
        return Ok(());
    }
    let route = &flow.table.routes[flow.route];
    let Some(kill) = flow.boards.kills.get(&route.name) else {
        return Ok(());
    };
    if !kill.applies(&flow.parts.headers, flow.ctx.facts().user_key.as_deref()) {
        return Ok(());
    }
    match &route.kill.fallback {
        None => Err(Refusal::Killed.into()),
        Some(CompiledFallback::Upstream(upstream)) => {
            flow.ctx.facts_mut().upstream = upstream.name.clone();
            flow.upstream = upstream.clone();
            flow.fallback = true;
            Ok(())
        }
        Some(fallback) => {
            let stream = flow.ctx.facts().stream;
            match fallback.respond(flow.edge.dialect, flow.edge.op, stream) {
                Some(answer) => Err(Answer::Fallback(Box::new(answer))),
                None => Err(Refusal::Killed.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests;
