//! The built-in HTTP/1.1 path (`server.http1 = "builtin"`): one task per client connection
//! reads request heads with httparse, calls the gateway, and writes its answers in framing of
//! its own, without hyper's server in between.
//!
//! It serves the common case: HTTP/1.1 keep-alive requests whose body has a Content-Length
//! and arrives with the head. Anything else on a connection (HTTP/2 prior knowledge,
//! HTTP/1.0, a chunked request body, `Expect`, an upgrade, CONNECT, a body larger than
//! `max_body_bytes` or one that trickles in) is handed to hyper with the bytes read so far,
//! and hyper serves the connection from there on. What it refuses itself is what RFC 9112 §6
//! says to refuse before forwarding: Content-Length with Transfer-Encoding, more than one or
//! an invalid Content-Length, a Transfer-Encoding that does not end in chunked (400), a
//! transfer coding other than chunked (501), and a head over `max_header_bytes` (431).

mod encode;
pub(crate) mod head;
mod rewind;

use std::convert::Infallible;
use std::time::Duration;

use bytes::BytesMut;
use http::{header, Response};
use http_body::Body as _;
use http_body_util::BodyExt;
use switchyard_core::Body;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tower_service::Service;

use crate::proxy::Proxy;
pub(crate) use rewind::Rewind;

/// How much is read at a time while a head comes in.
const READ_CHUNK: usize = 4096;

/// A body that has not arrived this long after its head is left to hyper, whose reading
/// applies the route's `body_read_timeout`.
const BODY_WAIT: Duration = Duration::from_millis(250);

/// The listener's limits, as hyper's server gets them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) header_read_timeout: Duration,
    pub(crate) max_header_bytes: usize,
    pub(crate) max_body_bytes: usize,
}

/// How a connection left this path.
pub(crate) enum Ended {
    /// Closed: by the client, after `Connection: close`, a refusal, a drain or a timeout.
    Closed,
    /// hyper serves it from here, starting with the bytes not yet served.
    HandOver(Rewind),
}

/// What reading a head came to.
enum Step {
    Serve(head::Head),
    Refuse(head::Refusal),
    HandOver,
    Close,
}

/// Serves the connection's requests until it closes or is handed over. `drain` turns true
/// when the listener drains: an idle connection closes, one with a request in flight closes
/// after the answer.
pub(crate) async fn serve(
    mut stream: TcpStream,
    mut proxy: Proxy,
    settings: Settings,
    mut drain: watch::Receiver<bool>,
) -> Ended {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    loop {
        let head = match read_head(&mut stream, &mut buf, &settings, &mut drain).await {
            Step::Serve(head) => head,
            Step::HandOver => return Ended::HandOver(Rewind::new(buf, stream)),
            Step::Refuse(refusal) => return refuse(stream, &mut out, refusal).await,
            Step::Close => return Ended::Closed,
        };
        let total = match usize::try_from(head.body) {
            Ok(body) if body <= settings.max_body_bytes => head.len + body,
            _ => return Ended::HandOver(Rewind::new(buf, stream)),
        };
        match read_body(&mut stream, &mut buf, total).await {
            Arrived::Whole => {}
            Arrived::Slow => return Ended::HandOver(Rewind::new(buf, stream)),
            Arrived::Gone => return Ended::Closed,
        }
        let bytes = buf.split_to(total).freeze();
        let request = match head.request(&bytes) {
            Ok(request) => request,
            Err(refusal) => return refuse(stream, &mut out, refusal).await,
        };
        drop(bytes);
        let answer = proxy.call(request);
        let Some(response) = until_client_leaves(&stream, &mut buf, &settings, answer).await else {
            return Ended::Closed;
        };
        let close = head.close || *drain.borrow();
        let kept = write(
            &mut stream,
            &mut buf,
            &mut out,
            response,
            (&head, close),
            &settings,
        );
        if !kept.await || close {
            let _ = stream.shutdown().await;
            return Ended::Closed;
        }
    }
}

/// Reads until a head is complete, within `header_read_timeout` of starting to wait for it.
async fn read_head(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    settings: &Settings,
    drain: &mut watch::Receiver<bool>,
) -> Step {
    let deadline = Instant::now() + settings.header_read_timeout;
    loop {
        if !buf.is_empty() {
            match head::parse(buf, settings.max_header_bytes) {
                head::Parsed::Partial => {}
                head::Parsed::Head(head) => return Step::Serve(head),
                head::Parsed::Refuse(refusal) => return Step::Refuse(refusal),
                head::Parsed::HandOver => return Step::HandOver,
            }
        }
        let idle = buf.is_empty();
        buf.reserve(READ_CHUNK);
        let read = tokio::select! {
            biased;
            read = tokio::io::AsyncReadExt::read_buf(stream, buf) => read,
            _ = drain.wait_for(|&draining| draining), if idle => return Step::Close,
            () = tokio::time::sleep_until(deadline) => return Step::Close,
        };
        if !matches!(read, Ok(n) if n > 0) {
            return Step::Close;
        }
    }
}

/// Whether the body came.
enum Arrived {
    Whole,
    Slow,
    Gone,
}

/// Reads until `buf` holds `total` bytes, head and body, waiting at most [`BODY_WAIT`].
async fn read_body(stream: &mut TcpStream, buf: &mut BytesMut, total: usize) -> Arrived {
    if buf.len() >= total {
        return Arrived::Whole;
    }
    buf.reserve(total - buf.len());
    let deadline = Instant::now() + BODY_WAIT;
    while buf.len() < total {
        let read = tokio::select! {
            biased;
            read = tokio::io::AsyncReadExt::read_buf(stream, buf) => read,
            () = tokio::time::sleep_until(deadline) => return Arrived::Slow,
        };
        if !matches!(read, Ok(n) if n > 0) {
            return Arrived::Gone;
        }
    }
    Arrived::Whole
}

/// Resolves when the client has closed the connection (or it broke). Bytes it sends
/// meanwhile (a pipelined request) are kept in `buf`, up to the head budget; past that they
/// wait in the socket and only the write side tells of a close.
async fn client_left(stream: &TcpStream, buf: &mut BytesMut, settings: &Settings) {
    loop {
        if buf.len() >= settings.max_header_bytes {
            return std::future::pending().await;
        }
        if stream.readable().await.is_err() {
            return;
        }
        buf.reserve(READ_CHUNK.min(settings.max_header_bytes - buf.len()).max(1));
        match stream.try_read_buf(buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// The gateway's answer, or `None` if the client left first (the answer is dropped, which
/// cancels the exchange, as hyper does).
async fn until_client_leaves(
    stream: &TcpStream,
    buf: &mut BytesMut,
    settings: &Settings,
    mut answer: crate::proxy::ResponseFuture,
) -> Option<Response<Body>> {
    tokio::select! {
        biased;
        response = &mut answer => Some(response.unwrap_or_else(|never: Infallible| match never {})),
        () = client_left(stream, buf, settings) => None,
    }
}

/// Writes the answer; whether the connection can carry another request after it.
async fn write(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    out: &mut Vec<u8>,
    response: Response<Body>,
    (head, close): (&head::Head, bool),
    settings: &Settings,
) -> bool {
    let (parts, mut body) = response.into_parts();
    let close = close || encode::asks_close(&parts);
    out.clear();
    let framing = encode::head(out, &parts, body.size_hint().exact(), head.head_only, close);
    let mut left = match framing {
        encode::Framing::None => return stream.write_all(out).await.is_ok() && !close,
        encode::Framing::Length(n) => n,
        encode::Framing::Chunked => 0,
    };
    let chunked = framing == encode::Framing::Chunked;
    loop {
        // Frames ready now go out in one write; the head waits for the first only if it is
        // ready, so a stream's head is never held back.
        let next = match std::future::poll_fn(|cx| {
            std::task::Poll::Ready(std::pin::Pin::new(&mut body).poll_frame(cx))
        })
        .await
        {
            std::task::Poll::Ready(next) => next,
            std::task::Poll::Pending => {
                if !out.is_empty() && stream.write_all(out).await.is_err() {
                    return false;
                }
                out.clear();
                tokio::select! {
                    biased;
                    next = body.frame() => next,
                    () = client_left(stream, buf, settings) => return false,
                }
            }
        };
        match next {
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if data.is_empty() {
                    continue;
                }
                if chunked {
                    crate::wire::chunk_size(out, data.len());
                    out.extend_from_slice(&data);
                    out.extend_from_slice(b"\r\n");
                } else {
                    let take = usize::try_from(left).map_or(data.len(), |l| l.min(data.len()));
                    out.extend_from_slice(&data[..take]);
                    left -= take as u64;
                    if take < data.len() {
                        // Longer than it said: what was promised goes out, then the
                        // connection closes.
                        let _ = stream.write_all(out).await;
                        return false;
                    }
                }
            }
            Some(Err(error)) => {
                // The upstream broke the body: the client sees it cut short, never whole.
                tracing::debug!(%error, "response body failed; closing the connection");
                let _ = stream.write_all(out).await;
                return false;
            }
            None => {
                if chunked {
                    out.extend_from_slice(crate::wire::LAST_CHUNK);
                }
                let written = stream.write_all(out).await.is_ok();
                out.clear();
                return written && left == 0 && !close;
            }
        }
    }
}

/// Answers a refused head and closes the connection.
async fn refuse(mut stream: TcpStream, out: &mut Vec<u8>, refusal: head::Refusal) -> Ended {
    let status = refusal.status();
    let body = switchyard_llm::error_body(
        switchyard_llm::Dialect::Opaque,
        status.as_u16(),
        refusal.code(),
        refusal.message(),
    );
    let response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(crate::headers::X_ERROR, refusal.code())
        .body(())
        .unwrap_or_default();
    let (parts, ()) = response.into_parts();
    out.clear();
    let length = Some(body.len() as u64);
    encode::head(out, &parts, length, false, true);
    out.extend_from_slice(&body);
    let _ = stream.write_all(out).await;
    let _ = stream.shutdown().await;
    Ended::Closed
}
