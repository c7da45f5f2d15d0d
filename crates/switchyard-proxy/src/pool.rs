//! The data path's upstream connections, kept per endpoint of an upstream (by its index, no
//! hashing): idle HTTP/1.1 connections, newest first, and one shared HTTP/2 connection where
//! an https endpoint picks `h2` by ALPN.
//!
//! An HTTP/1.1 connection goes back to its endpoint when the response body has been read to
//! its end ([`UpstreamBody`]); a body dropped before its end closes the connection instead.
//! Idle connections are dropped after [`ClientSettings::pool_idle_timeout`] unused (at
//! checkout, and by a sweeper that runs once per timeout), and an endpoint keeps at most
//! [`MAX_IDLE`] of them. Health probes, webhooks and the OTLP exporter keep the shared client
//! of `switchyard_core::client`.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::client::legacy::connect::Connection;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use switchyard_core::client::{https_connector, ClientSettings, HttpsConnector};
use switchyard_core::{Body, BoxError};
use tokio::time::Instant;
use tower_service::Service;

use crate::upstream::Endpoint;

/// The most idle HTTP/1.1 connections an endpoint keeps; a connection finishing its response
/// while as many wait is closed. Far above what one gateway's traffic to one endpoint keeps
/// busy, low enough that a burst does not leave thousands of sockets open for the idle
/// timeout.
pub const MAX_IDLE: usize = 256;

/// The connections of one upstream, by endpoint.
#[derive(Clone)]
pub struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    slots: Box<[Slot]>,
    connector: HttpsConnector,
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    idle_timeout: Duration,
    /// Whether the sweeper of expired idle connections has been started.
    sweeping: AtomicBool,
}

/// One endpoint's connections and what its requests need from it.
struct Slot {
    /// scheme://authority: what the connector dials.
    dst: Uri,
    scheme: Scheme,
    authority: Authority,
    /// The `Host` of its HTTP/1.1 requests: the host, and the port unless it is the scheme's
    /// default.
    host: Option<HeaderValue>,
    idle: Mutex<Idle>,
}

#[derive(Default)]
struct Idle {
    /// Oldest first: checkout takes from the back, expiry trims the front.
    h1: VecDeque<Parked>,
    h2: Option<Shared2>,
}

struct Parked {
    tx: http1::SendRequest<Body>,
    since: Instant,
}

struct Shared2 {
    tx: http2::SendRequest<Body>,
    /// Last handed out: an HTTP/2 connection unused for the idle timeout is let go.
    since: Instant,
}

enum Conn {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

/// Why an upstream request got no response.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Dialing failed: refused, unreachable, timed out or the TLS handshake failed. Nothing
    /// was sent.
    #[error("could not connect: {0}")]
    Connect(BoxError),
    /// The connection failed after it was made: the request may have reached the upstream.
    #[error("upstream connection failed: {0}")]
    Send(#[source] hyper::Error),
}

impl Error {
    /// Whether the request could not even connect (so another endpoint may be tried).
    pub fn is_connect(&self) -> bool {
        matches!(self, Error::Connect(_))
    }
}

/// An upstream response on its way: one allocation per attempt, whatever it goes through.
pub type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<UpstreamBody>, Error>> + Send + 'static>>;

impl Pool {
    /// A pool for `endpoints`, dialing within `connect_timeout`. Fails only when rustls
    /// refuses its own configuration.
    pub fn new(connect_timeout: Duration, endpoints: &[Endpoint]) -> Result<Pool, rustls::Error> {
        let settings = settings(connect_timeout);
        let connector = https_connector(&settings)?;
        Ok(Pool::with_connector(connector, &settings, endpoints))
    }

    fn with_connector(
        connector: HttpsConnector,
        settings: &ClientSettings,
        endpoints: &[Endpoint],
    ) -> Pool {
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new());
        let shared = Shared {
            slots: endpoints.iter().map(Slot::new).collect(),
            connector,
            h1: http1::Builder::new(),
            h2,
            idle_timeout: settings.pool_idle_timeout,
            sweeping: AtomicBool::new(false),
        };
        Pool {
            shared: Arc::new(shared),
        }
    }

    /// Sends `req` (origin-form URI, `Host` unset) to endpoint `index`: on an idle connection
    /// if one is ready, else on a new one. A request an idle connection closed before taking
    /// goes on another (the legacy pool did the same).
    pub fn send(&self, index: usize, req: Request<Body>) -> ResponseFuture {
        Box::pin(send(self.shared.clone(), index, req))
    }

    /// Idle HTTP/1.1 connections of endpoint `index` not known to be closed.
    #[cfg(test)]
    fn idle_open(&self, index: usize) -> usize {
        self.shared.slots[index]
            .lock()
            .h1
            .iter()
            .filter(|p| !p.tx.is_closed())
            .count()
    }
}

/// What the legacy client of an upstream was built with: the same dialing, the same idle
/// timeout.
fn settings(connect_timeout: Duration) -> ClientSettings {
    ClientSettings {
        connect_timeout: Some(connect_timeout),
        tcp_keepalive: Some(Duration::from_secs(60)),
        http2: true,
        pool_idle_timeout: Duration::from_secs(90),
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("endpoints", &self.shared.slots.len())
            .finish_non_exhaustive()
    }
}

/// One attempt: checkout or dial, then the exchange, in one future (one allocation).
async fn send(
    shared: Arc<Shared>,
    index: usize,
    mut req: Request<Body>,
) -> Result<Response<UpstreamBody>, Error> {
    let Some(slot) = shared.slots.get(index) else {
        return Err(Error::Connect("no such endpoint".into()));
    };
    loop {
        let (conn, reused) = match slot.checkout(shared.idle_timeout) {
            Some(conn) => (conn, true),
            None => (shared.dial(index).await?, false),
        };
        let mut tx = match conn {
            Conn::H2(mut tx) => {
                slot.absolute_form(&mut req);
                match tx.try_send_request(req).await {
                    Ok(response) => return Ok(response.map(UpstreamBody::done_with)),
                    Err(mut error) => match error.take_message() {
                        Some(back) if reused => {
                            req = back;
                            continue;
                        }
                        _ => return Err(Error::Send(error.into_error())),
                    },
                }
            }
            Conn::H1(tx) => tx,
        };
        slot.origin_form(&mut req);
        match tx.try_send_request(req).await {
            Ok(response) => {
                let back = Back { shared, index, tx };
                return Ok(response.map(|body| UpstreamBody::returning(body, back)));
            }
            Err(mut error) => match error.take_message() {
                // Closed by the upstream before it took the request: nothing was sent.
                Some(back) if reused => req = back,
                _ => return Err(Error::Send(error.into_error())),
            },
        }
    }
}

impl Shared {
    /// A new connection to endpoint `index`, its task spawned; an HTTP/2 one is shared.
    async fn dial(self: &Arc<Self>, index: usize) -> Result<Conn, Error> {
        let Some(slot) = self.slots.get(index) else {
            return Err(Error::Connect("no such endpoint".into()));
        };
        self.start_sweeping();
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(Error::Connect)?;
        let io = connector
            .call(slot.dst.clone())
            .await
            .map_err(Error::Connect)?;
        if io.connected().is_negotiated_h2() {
            let (mut tx, conn) = self.h2.handshake(io).await.map_err(Error::Send)?;
            tokio::spawn(async move {
                if let Err(error) = conn.await {
                    tracing::debug!(%error, "upstream connection ended");
                }
            });
            tx.ready().await.map_err(Error::Send)?;
            slot.lock().h2 = Some(Shared2 {
                tx: tx.clone(),
                since: Instant::now(),
            });
            return Ok(Conn::H2(tx));
        }
        let (tx, conn) = self.h1.handshake(io).await.map_err(Error::Send)?;
        tokio::spawn(async move {
            if let Err(error) = conn.with_upgrades().await {
                tracing::debug!(%error, "upstream connection ended");
            }
        });
        Ok(Conn::H1(tx))
    }

    /// Starts the sweeper once, on the first dial (always inside the runtime); it ends with
    /// the pool.
    fn start_sweeping(self: &Arc<Self>) {
        if self.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        let every = self.idle_timeout.max(Duration::from_millis(100));
        tokio::spawn(sweep(Arc::downgrade(self), every));
    }

    /// Puts an HTTP/1.1 connection whose response was read whole back in endpoint `index`.
    fn park(&self, index: usize, tx: http1::SendRequest<Body>) {
        let Some(slot) = self.slots.get(index) else {
            return;
        };
        if tx.is_closed() {
            return;
        }
        let mut idle = slot.lock();
        if idle.h1.len() < MAX_IDLE {
            let since = Instant::now();
            idle.h1.push_back(Parked { tx, since });
        }
    }
}

async fn sweep(shared: Weak<Shared>, every: Duration) {
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = Instant::now();
        for slot in &shared.slots {
            slot.expire(now, shared.idle_timeout);
        }
    }
}

impl Slot {
    fn new(endpoint: &Endpoint) -> Slot {
        let scheme = endpoint.scheme.clone();
        let authority = endpoint.authority.clone();
        // As the legacy client wrote it: the port only where it is not the scheme's default.
        let default = if scheme == Scheme::HTTPS { 443 } else { 80 };
        let host = match authority.port() {
            Some(port) if port.as_u16() != default => {
                HeaderValue::from_str(&format!("{}:{}", authority.host(), port))
            }
            _ => HeaderValue::from_str(authority.host()),
        };
        let dst = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .unwrap_or_default();
        Slot {
            dst,
            scheme,
            authority,
            host: host.ok(),
            idle: Mutex::new(Idle::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection ready for a request: the shared HTTP/2 one, else the newest idle
    /// HTTP/1.1 one that is ready. Expired and closed ones are dropped on the way; one not
    /// ready yet (its previous exchange still finishing) stays for a later request.
    fn checkout(&self, timeout: Duration) -> Option<Conn> {
        let mut idle = self.lock();
        if let Some(h2) = &mut idle.h2 {
            if !h2.tx.is_closed() {
                h2.since = Instant::now();
                return Some(Conn::H2(h2.tx.clone()));
            }
            idle.h2 = None;
        }
        if idle.h1.is_empty() {
            return None;
        }
        let now = Instant::now();
        while idle
            .h1
            .front()
            .is_some_and(|p| now.saturating_duration_since(p.since) > timeout)
        {
            idle.h1.pop_front();
        }
        let mut i = idle.h1.len();
        while i > 0 {
            i -= 1;
            let tx = &idle.h1[i].tx;
            if tx.is_closed() {
                idle.h1.remove(i);
            } else if tx.is_ready() {
                return idle.h1.remove(i).map(|p| Conn::H1(p.tx));
            }
        }
        None
    }

    /// Drops the connections idle past `timeout`, and the closed ones.
    fn expire(&self, now: Instant, timeout: Duration) {
        let fresh = |since: Instant| now.saturating_duration_since(since) <= timeout;
        let mut idle = self.lock();
        idle.h1.retain(|p| !p.tx.is_closed() && fresh(p.since));
        if idle
            .h2
            .as_ref()
            .is_some_and(|h2| h2.tx.is_closed() || !fresh(h2.since))
        {
            idle.h2 = None;
        }
    }

    /// HTTP/1.1 wants the path alone and a `Host`.
    fn origin_form(&self, req: &mut Request<Body>) {
        if req.uri().scheme().is_some() {
            let pq = req.uri().path_and_query().cloned();
            *req.uri_mut() = pq.map_or_else(Uri::default, Uri::from);
        }
        if let Some(host) = &self.host {
            req.headers_mut()
                .entry(http::header::HOST)
                .or_insert_with(|| host.clone());
        }
    }

    /// HTTP/2 takes the scheme and authority from the URI.
    fn absolute_form(&self, req: &mut Request<Body>) {
        if req.uri().scheme().is_some() {
            return;
        }
        let pq = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        if let Ok(uri) = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
        {
            *req.uri_mut() = uri;
        }
    }
}

/// Where an HTTP/1.1 connection goes back once its response is read whole.
struct Back {
    shared: Arc<Shared>,
    index: usize,
    tx: http1::SendRequest<Body>,
}

/// An upstream response body. Read to its end, it puts its HTTP/1.1 connection back in the
/// pool; dropped before, it lets the connection close.
pub struct UpstreamBody {
    inner: Incoming,
    back: Option<Back>,
}

impl UpstreamBody {
    fn returning(inner: Incoming, back: Back) -> UpstreamBody {
        UpstreamBody {
            inner,
            back: Some(back),
        }
    }

    /// A body that owes no connection back (HTTP/2: the connection is shared).
    fn done_with(inner: Incoming) -> UpstreamBody {
        UpstreamBody { inner, back: None }
    }

    fn release(&mut self) {
        if let Some(Back { shared, index, tx }) = self.back.take() {
            shared.park(index, tx);
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.release(),
            // The last frame of a body of known length: the connection is done with it now.
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.release(),
            Poll::Ready(Some(Err(_))) => this.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // An empty body (204, HEAD, Content-Length: 0) is dropped without being read.
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("pooled", &self.back.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
