//! The built-in HTTP/1.1 path's upstream side: with `server.http1 = "builtin"`, requests to a
//! plain-`http` endpoint are written, and their answers read, by the task that serves the
//! client, on keep-alive connections of the gateway's own, instead of through hyper-util's pool
//! and a connection task per upstream connection.
//!
//! A connection is reused only after its answer was read to the end with nothing left over and
//! the upstream did not ask to close. A reused connection that fails before a byte of the
//! answer arrived (the upstream closed it while it sat idle) is replaced by a new one and the
//! request sent again, once, when its body was known whole and sending it twice cannot do harm:
//! none of it had been written, or it is replayable (`GET`, `HEAD`, `OPTIONS`, `TRACE`, or it
//! carries an `Idempotency-Key`). A `POST` that went out is never sent twice: the upstream may
//! have acted on it.

mod body;
mod head;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::uri::Authority;
use http::{header, HeaderMap, Method, Request, Response};
use http_body::Body as _;
use http_body_util::BodyExt;
use switchyard_core::{clock, Body, BoxError};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

pub(crate) use body::{Decoded, Decoder, Framing, OwnBody};
pub(crate) use head::answer_head;

/// Idle connections kept per endpoint; more are closed as they come back.
const MAX_IDLE: usize = 256;

/// How much is read at a time while an answer's head comes in.
const READ_CHUNK: usize = 8192;

/// The longest answer head read; a longer one fails the exchange.
const MAX_HEAD: usize = 64 * 1024;

/// One upstream's connections of the built-in path: an idle list per endpoint.
#[derive(Debug)]
pub(crate) struct Own {
    idle: Box<[Arc<Idle>]>,
    connect_timeout: Duration,
}

/// How long a connection may sit idle before it is closed (hyper-util's pool: the same).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// How often the idle lists are swept for connections past [`IDLE_TIMEOUT`] or closed by the
/// upstream.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// TCP keepalive on upstream connections, as the hyper client sets it.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// Idle keep-alive connections to one endpoint, the most recently used last, each with the
/// moment it came back.
#[derive(Debug, Default)]
pub(crate) struct Idle {
    conns: Mutex<Vec<(TcpStream, Instant)>>,
    sweeping: AtomicBool,
}

impl Idle {
    fn take(&self) -> Option<TcpStream> {
        loop {
            let (stream, since) = self.conns.lock().ok()?.pop()?;
            if fresh(since) && still_open(&stream) {
                return Some(stream);
            }
        }
    }

    pub(crate) fn put(self: &Arc<Self>, stream: TcpStream) {
        if let Ok(mut conns) = self.conns.lock() {
            if conns.len() < MAX_IDLE {
                conns.push((stream, clock::now()));
            }
        }
        if !self.sweeping.swap(true, Ordering::Relaxed) {
            tokio::spawn(sweep(Arc::downgrade(self)));
        }
    }
}

fn fresh(since: Instant) -> bool {
    clock::now().saturating_duration_since(since) < IDLE_TIMEOUT
}

/// A connection the upstream closed while it sat idle reads as ready (EOF or stray bytes):
/// never reuse it.
fn still_open(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Closes idle connections past [`IDLE_TIMEOUT`] or closed by the upstream, until the list is
/// dropped (the routing table it belongs to was replaced).
async fn sweep(idle: Weak<Idle>) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(idle) = idle.upgrade() else { return };
        if let Ok(mut conns) = idle.conns.lock() {
            conns.retain(|(stream, since)| fresh(*since) && still_open(stream));
        };
    }
}

impl Own {
    pub(crate) fn new(endpoints: usize, connect_timeout: Duration) -> Own {
        Own {
            idle: (0..endpoints).map(|_| Arc::default()).collect(),
            connect_timeout,
        }
    }

    /// Endpoint `index`'s idle list and the connect timeout.
    pub(crate) fn for_endpoint(&self, index: usize) -> (Arc<Idle>, Duration) {
        (
            self.idle.get(index).cloned().unwrap_or_default(),
            self.connect_timeout,
        )
    }
}

/// Why an exchange ended without an answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// The endpoint could not be reached (refused, unreachable, connect timeout).
    #[error("connect: {0}")]
    Connect(io::Error),
    /// The connection broke or the upstream's answer was not HTTP/1.1 this path reads.
    #[error("{0}")]
    Broken(BoxError),
}

fn broken(what: impl Into<BoxError>) -> Failure {
    Failure::Broken(what.into())
}

/// Sends `req` to the endpoint at `authority` (`idle`: its idle connections) and reads the
/// answer's head; the body follows as it is read.
pub(crate) async fn send(
    idle: Arc<Idle>,
    authority: &Authority,
    connect_timeout: Duration,
    req: Request<Body>,
) -> Result<Response<OwnBody>, Failure> {
    let (parts, mut body) = req.into_parts();
    let whole = whole_now(&mut body).await.map_err(broken)?;
    let mut out = Vec::with_capacity(512 + whole.as_ref().map_or(0, Bytes::len));
    let length = whole
        .as_ref()
        .map(|b| b.len() as u64)
        .or(body.size_hint().exact());
    head::request(&mut out, &parts, authority, length);
    let head_only = parts.method == Method::HEAD;
    let replayable = replayable(&parts.method, &parts.headers);
    if let Some(whole) = &whole {
        out.extend_from_slice(whole);
    }
    // A kept connection first, if there is one; a new one after a kept one failed unanswered.
    let mut kept = idle.take();
    loop {
        let reused = kept.is_some();
        let stream = match kept.take() {
            Some(stream) => stream,
            None => connect(authority, connect_timeout).await?,
        };
        let rest = whole.is_none().then_some(&mut body);
        match exchange(stream, &out, rest, length, head_only).await {
            Ok(answer) => return Ok(answer.into_response(idle)),
            // Nothing of an answer came: the upstream closed the idle connection as the
            // request went out. Once more on a new one, if sending it again is harmless.
            Err((Failure::Broken(error), reached))
                if reused
                    && whole.is_some()
                    && (reached == Reached::Nothing
                        || (reached == Reached::Sent && replayable)) =>
            {
                tracing::debug!(%error, "a reused upstream connection failed; on a new one");
            }
            Err((failure, _)) => return Err(failure),
        }
    }
}

/// The body, if all of it is at hand now (the gateway's inspected bodies always are).
async fn whole_now(body: &mut Body) -> Result<Option<Bytes>, BoxError> {
    let mut whole: Option<BytesMut> = None;
    let mut first: Option<Bytes> = None;
    loop {
        let next = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(std::pin::Pin::new(&mut *body).poll_frame(cx))
        })
        .await;
        match next {
            std::task::Poll::Pending => {
                // Part of it is still to come: what was polled goes first, the rest streams.
                let taken = whole.map(BytesMut::freeze).or(first);
                if let Some(taken) = taken {
                    let rest = std::mem::replace(body, switchyard_core::body::empty());
                    *body = prepend(taken, rest);
                }
                return Ok(None);
            }
            std::task::Poll::Ready(None) => {
                return Ok(Some(
                    whole.map(BytesMut::freeze).or(first).unwrap_or_default(),
                ));
            }
            std::task::Poll::Ready(Some(frame)) => {
                let Ok(data) = frame?.into_data() else {
                    continue;
                };
                match (&mut whole, first.take()) {
                    (Some(whole), _) => whole.extend_from_slice(&data),
                    (None, None) => first = Some(data),
                    (None, Some(earlier)) => {
                        let mut joined = BytesMut::from(&earlier[..]);
                        joined.extend_from_slice(&data);
                        whole = Some(joined);
                    }
                }
            }
        }
    }
}

/// `first`, then the rest of `rest`.
fn prepend(first: Bytes, rest: Body) -> Body {
    Prepended {
        first: Some(first),
        rest,
    }
    .boxed_unsync()
}

/// A body whose first bytes were already polled out of it.
struct Prepended {
    first: Option<Bytes>,
    rest: Body,
}

impl http_body::Body for Prepended {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        if let Some(first) = self.first.take() {
            return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(first))));
        }
        std::pin::Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let first = self.first.as_ref().map_or(0, |b| b.len() as u64);
        let rest = self.rest.size_hint();
        match rest.exact() {
            Some(n) => http_body::SizeHint::with_exact(n + first),
            None => {
                let mut hint = http_body::SizeHint::new();
                hint.set_lower(rest.lower() + first);
                hint
            }
        }
    }
}

async fn connect(authority: &Authority, timeout: Duration) -> Result<TcpStream, Failure> {
    let port = authority.port_u16().unwrap_or(80);
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let stream = tokio::time::timeout(timeout, TcpStream::connect((host, port)))
        .await
        .map_err(|_| {
            Failure::Connect(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
        })?
        .map_err(Failure::Connect)?;
    let _ = stream.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
    let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
    Ok(stream)
}

/// What one exchange read: the answer's head and the connection its body is read from.
struct Answer {
    head: head::ResponseHead,
    stream: TcpStream,
    buf: BytesMut,
}

impl Answer {
    fn into_response(self, idle: Arc<Idle>) -> Response<OwnBody> {
        let Answer { head, stream, buf } = self;
        let (parts, framing, reusable) = head.into_parts();
        let body = OwnBody::new(stream, buf, framing, reusable.then_some(idle));
        Response::from_parts(parts, body)
    }
}

/// How far an exchange got before it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reached {
    /// Not a byte of the request was written.
    Nothing,
    /// Some or all of the request went out; nothing of an answer came back.
    Sent,
    /// Part of an answer arrived.
    Answer,
}

/// Whether a request may be sent twice without harm (RFC 9110 §9.2.1's safe methods, or one
/// whose client made it idempotent with a key), as Go's HTTP client decides it too.
fn replayable(method: &Method, headers: &HeaderMap) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    ) || headers.contains_key("idempotency-key")
        || headers.contains_key("x-idempotency-key")
}

/// Writes the request (`out`: its head, and its body if whole; else `body` follows) and reads
/// the answer's head. On failure, how far it got.
async fn exchange(
    mut stream: TcpStream,
    out: &[u8],
    body: Option<&mut Body>,
    length: Option<u64>,
    head_only: bool,
) -> Result<Answer, (Failure, Reached)> {
    let sent = |error: io::Error| (broken(error), Reached::Sent);
    let first = stream
        .write(out)
        .await
        .map_err(|error| (broken(error), Reached::Nothing))?;
    stream.write_all(&out[first..]).await.map_err(sent)?;
    if let Some(body) = body {
        stream_body(&mut stream, body, length)
            .await
            .map_err(|e| (e, Reached::Sent))?;
    }
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        let read = tokio::io::AsyncReadExt::read_buf(&mut stream, &mut buf).await;
        let reached = if buf.is_empty() {
            Reached::Sent
        } else {
            Reached::Answer
        };
        match read {
            Ok(0) => {
                let why = "the upstream closed the connection before answering";
                return Err((broken(why), reached));
            }
            Ok(_) => {}
            Err(error) => return Err((broken(error), reached)),
        }
        // Interim answers (1xx) are skipped; the final one may already be in the buffer.
        match head::answer_head(&buf, head_only, MAX_HEAD) {
            // Interim heads count too: an endless run of them is no answer.
            Ok(None) if buf.len() > 2 * MAX_HEAD => {
                let why = "the upstream's answer heads are too large";
                return Err((broken(why), Reached::Answer));
            }
            Ok(None) => {}
            Ok(Some((interim, head))) => {
                let _ = buf.split_to(interim);
                let head_bytes = buf.split_to(head.len()).freeze();
                let head = head
                    .build(&head_bytes)
                    .map_err(|e| (broken(e), Reached::Answer))?;
                return Ok(Answer { head, stream, buf });
            }
            Err(error) => return Err((broken(error), Reached::Answer)),
        }
        buf.reserve(READ_CHUNK);
    }
}

/// Writes a body that was not whole at hand, frame by frame as it comes: as is when its
/// length is known, else chunked.
async fn stream_body(
    stream: &mut TcpStream,
    body: &mut Body,
    length: Option<u64>,
) -> Result<(), Failure> {
    let mut chunk = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(Failure::Broken)?.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        if length.is_some() {
            stream.write_all(&data).await.map_err(broken)?;
        } else {
            chunk.clear();
            crate::wire::chunk_size(&mut chunk, data.len());
            chunk.extend_from_slice(&data);
            chunk.extend_from_slice(b"\r\n");
            stream.write_all(&chunk).await.map_err(broken)?;
        }
    }
    if length.is_none() {
        stream
            .write_all(crate::wire::LAST_CHUNK)
            .await
            .map_err(broken)?;
    }
    Ok(())
}

/// Whether a request with this method and no body announces its empty body (as hyper does:
/// only for methods that are expected to carry one).
pub(crate) fn says_empty_length(method: &Method, headers: &HeaderMap) -> bool {
    headers.contains_key(header::CONTENT_LENGTH)
        || matches!(*method, Method::POST | Method::PUT | Method::PATCH)
}

#[cfg(test)]
mod tests;
