//! The gateway as a `tower::Service`: what the listeners serve, and what a program that
//! embeds the gateway calls or wraps in layers of its own.

use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use switchyard_core::{Body, BoxError};

use crate::gateway::Gateway;
use crate::peer::Peer;

/// The answer to one request, boxed once at the gateway's edge.
pub type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send + 'static>>;

/// The gateway's request path as a service for any request body. It never fails: every
/// problem becomes an answer in the client's dialect.
///
/// The client's address is the request's [`Peer`] extension when it carries one, else the
/// peer the proxy was made for (the listener makes one per connection).
#[derive(Debug, Clone)]
pub struct Proxy {
    gateway: Arc<Gateway>,
    peer: Peer,
}

impl Proxy {
    /// A proxy for requests that come with no connection (in-process callers): unless a
    /// request carries a [`Peer`], its client is `0.0.0.0:0` over plain HTTP.
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Proxy::for_peer(
            gateway,
            Peer {
                addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
                tls: false,
            },
        )
    }

    /// A proxy for the requests of one connection.
    pub fn for_peer(gateway: Arc<Gateway>, peer: Peer) -> Self {
        Proxy { gateway, peer }
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }
}

impl<B> tower_service::Service<Request<B>> for Proxy
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Admission happens per route, inside the call, where its answer can be shaped.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let peer = req.extensions().get::<Peer>().copied().unwrap_or(self.peer);
        Box::pin(self.gateway.clone().handle(req, peer))
    }
}

#[cfg(test)]
mod tests;
