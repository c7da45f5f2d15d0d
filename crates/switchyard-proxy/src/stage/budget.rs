//! Budget: the request's estimated tokens (prompt estimate and completion cap) reserved
//! from the enforced daily budget. Last before forwarding, so a request refused by any
//! stage above reserves nothing. Only LLM operations spend tokens.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use switchyard_llm::{Dialect, Operation};
use switchyard_state::budget::Verdict;
use tower_layer::Layer;
use tower_service::Service;

use super::flow::{Flow, Stopped};
use super::future::Then;
use crate::rescue::{Answer, Refusal};

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BudgetLayer;

impl<S> Layer<S> for BudgetLayer {
    type Service = Budget<S>;

    fn layer(&self, inner: S) -> Budget<S> {
        Budget { inner }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Budget<S> {
    inner: S,
}

impl<S> Service<Flow> for Budget<S>
where
    S: Service<Flow, Error = Stopped> + Clone,
{
    type Response = S::Response;
    type Error = Stopped;
    type Future = Then<S, Reserving, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Stopped>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, flow: Flow) -> Self::Future {
        let mut inner = super::take(&mut self.inner);
        let Some(gate) = flow.boards.budget.get() else {
            return Then::inner(inner.call(flow), inner);
        };
        let (dialect, op) = (flow.edge.dialect, flow.edge.op);
        // Unenforced, the gate would answer `Unmetered` without awaiting anything.
        let enforced = gate.settings().enforced().is_some();
        if !enforced || op == Operation::Other || dialect == Dialect::Opaque {
            return Then::inner(inner.call(flow), inner);
        }
        let facts = flow.ctx.facts();
        let tokens = gate.estimate(facts.prompt_tokens_estimate, facts.max_tokens);
        let (gate, id) = (gate.clone(), facts.request_id.0.clone());
        // The gate's own future, boxed: it is foreign and unnamed, and awaited only while a
        // budget is enforced.
        let verdict = Box::pin(async move { gate.admit(&id, tokens).await });
        Then::wait(
            Reserving {
                verdict,
                flow: Some(flow),
            },
            inner,
        )
    }
}

/// A request waiting for the gate's verdict.
pub(crate) struct Reserving {
    // Declared first, dropped first: the gate's call ends before the cancellation is recorded.
    verdict: Pin<Box<dyn Future<Output = Verdict> + Send>>,
    flow: Option<Flow>,
}

impl Future for Reserving {
    type Output = Result<Flow, Stopped>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let verdict = ready!(self.verdict.as_mut().poll(cx));
        let Some(mut flow) = self.flow.take() else {
            unreachable!("a reserving request is handed on once")
        };
        let refused = match verdict {
            Verdict::Unmetered => return Poll::Ready(Ok(flow)),
            Verdict::Admitted(reservation) => {
                flow.ctx.hold_reservation(Some(reservation));
                return Poll::Ready(Ok(flow));
            }
            Verdict::Exhausted { retry_after_secs } => {
                Answer::Budget(Refusal::BudgetExhausted, retry_after_secs)
            }
            Verdict::Unavailable => Answer::Budget(Refusal::BudgetUnavailable, 1),
        };
        Poll::Ready(Err(flow.stop(refused)))
    }
}

#[cfg(test)]
mod tests;
