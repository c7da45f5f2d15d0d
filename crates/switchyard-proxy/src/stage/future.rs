//! The one future type the stages share: a stage's own work, then its inner service's.
//! Named and pinned by hand, so a stage costs no allocation per request.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tower_service::Service;

use super::flow::{Flow, Stopped};

/// A stage with nothing to await: its work is done when its call returns.
pub(crate) type Now = std::future::Ready<Result<Flow, Stopped>>;

pin_project! {
    /// A stage's answer: it awaits `P` (the stage's own wait, if any), then calls `S` with
    /// the request `P` hands on and answers with what `S` answers; or it stopped.
    pub(crate) struct Then<S, P, F> {
        #[pin]
        state: State<P, F>,
        service: S,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<P, F> {
        Before { #[pin] wait: P },
        Inner { #[pin] future: F },
        Stopped { stop: Option<Stopped> },
    }
}

impl<S, P, F> Then<S, P, F> {
    /// The stage waits on `wait` before calling `service`.
    pub fn wait(wait: P, service: S) -> Self {
        Then {
            state: State::Before { wait },
            service,
        }
    }

    /// The stage already called its inner service.
    pub fn inner(future: F, service: S) -> Self {
        Then {
            state: State::Inner { future },
            service,
        }
    }

    /// The stage answered: the request goes no further.
    pub fn stop(stop: Stopped, service: S) -> Self {
        Then {
            state: State::Stopped { stop: Some(stop) },
            service,
        }
    }
}

impl<S, P, F, R> Future for Then<S, P, F>
where
    S: Service<Flow, Response = R, Error = Stopped, Future = F>,
    P: Future<Output = Result<Flow, Stopped>>,
    F: Future<Output = Result<R, Stopped>>,
{
    type Output = Result<R, Stopped>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Before { wait } => match ready!(wait.poll(cx)) {
                    Ok(flow) => {
                        let future = this.service.call(flow);
                        this.state.set(State::Inner { future });
                    }
                    Err(stop) => return Poll::Ready(Err(stop)),
                },
                StateProj::Inner { future } => return future.poll(cx),
                StateProj::Stopped { stop } => match stop.take() {
                    Some(stop) => return Poll::Ready(Err(stop)),
                    None => unreachable!("a stopped stage's future is polled once"),
                },
            }
        }
    }
}
