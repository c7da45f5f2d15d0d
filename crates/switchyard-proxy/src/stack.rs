//! A route's request path, erased: what enters it and the one box it is kept in. It knows
//! the routing table only as a type parameter, so the table can hold its routes' stacks.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Request, Response};
use switchyard_core::{Body, RequestId, TraceContext};
use switchyard_llm::{Dialect, Operation};

use crate::boards::Boards;
use crate::peer::Peer;

/// What the edge learnt of a request before its route's stack runs.
pub(crate) struct Edge {
    pub started: Instant,
    pub peer: Peer,
    /// The client's address for user keys, rate limits and logs: the peer's, or what
    /// `trusted_hops` proxies in front say it is.
    pub client: SocketAddr,
    pub request_id: (RequestId, HeaderValue),
    pub dialect: Dialect,
    pub op: Operation,
    /// The gateway's hop of the request's trace.
    pub trace: TraceContext,
    /// The host the client asked for, passed on as `x-forwarded-host`.
    pub host: Option<String>,
}

/// A request entering the stack of route number `route` of `table`.
pub(crate) struct Entry<T> {
    pub table: Arc<T>,
    pub route: usize,
    pub boards: Arc<Boards>,
    pub request: Request<Body>,
    pub edge: Edge,
}

/// The answer of a route's stack: the one future boxed per request below the edge.
pub(crate) type StackFuture = Pin<Box<dyn Future<Output = Response<Body>> + Send + 'static>>;

/// A compiled stack of layers behind one call. Never fails: every answer a stage decides on
/// is shaped into a response inside.
pub(crate) trait Stack<T>: Send + Sync {
    fn call(&self, entry: Entry<T>) -> StackFuture;
}

/// How the stack of a route of `Self` is assembled: the table asks for its routes' stacks
/// without knowing the stages, which know the table.
pub trait Assemble: Sized {
    fn route_stack() -> RouteStack<Self>;
}

/// A route's stack, assembled and boxed once when the table is prepared.
pub struct RouteStack<T>(Box<dyn Stack<T>>);

impl<T: Assemble> RouteStack<T> {
    pub(crate) fn assemble() -> Self {
        T::route_stack()
    }
}

impl<T> RouteStack<T> {
    pub(crate) fn new(stack: impl Stack<T> + 'static) -> Self {
        RouteStack(Box::new(stack))
    }

    pub(crate) fn call(&self, entry: Entry<T>) -> StackFuture {
        self.0.call(entry)
    }
}

impl<T> std::fmt::Debug for RouteStack<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RouteStack")
    }
}
