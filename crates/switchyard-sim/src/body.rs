//! Response bodies: whole buffers, and channel-fed bodies for real streaming.

use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::profile::{MidStream, Profile};
use crate::InFlight;

/// The error a body ends with when a mid-stream reset is injected.
#[derive(Debug)]
pub struct BodyError;

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("simulated mid-stream reset")
    }
}

impl std::error::Error for BodyError {}

type Item = Result<Frame<Bytes>, BodyError>;

/// Either a complete buffer (gets a content-length) or frames from a producer task.
pub enum SimBody {
    Full(Option<Bytes>),
    Channel(mpsc::Receiver<Item>),
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        match self.get_mut() {
            SimBody::Full(data) => Poll::Ready(data.take().map(|b| Ok(Frame::data(b)))),
            SimBody::Channel(rx) => rx.poll_recv(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, SimBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SimBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            SimBody::Full(None) => SizeHint::with_exact(0),
            SimBody::Channel(_) => SizeHint::default(),
        }
    }
}

/// Serializes a typed response; our structs cannot fail to serialize, so an
/// empty buffer on error is unreachable in practice and avoids a panic path.
/// Larger request bodies are refused rather than buffered.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// A request body, whole, up to [`MAX_BODY`].
pub(crate) async fn read_body(body: Incoming) -> Result<Bytes, String> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => Err(format!("could not read the request body: {e}")),
    }
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// A JSON response with a fixed-size body.
pub(crate) fn json(status: StatusCode, body: Vec<u8>) -> Response<SimBody> {
    let mut resp = Response::new(SimBody::Full(Some(Bytes::from(body))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A JSON response that honours the profile's mid-stream failure by cutting
/// the body in half; otherwise a plain fixed-size response.
pub(crate) fn json_with_faults(
    profile: &Profile,
    body: Vec<u8>,
    guard: InFlight,
) -> Response<SimBody> {
    let Some(fault) = profile.fail_mid_stream else {
        return json(StatusCode::OK, body);
    };
    let mut head = Bytes::from(body);
    let tail = head.split_off(head.len() / 2);
    let script = Script {
        events: vec![head, tail],
        content: 1..1,
    };
    let mut resp = Response::new(spawn_producer(script, Pace::default(), Some(fault), guard));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Pre-rendered SSE events; `content` marks the token-delta events, which are
/// paced by the chunk interval and counted for mid-stream faults.
pub(crate) struct Script {
    pub events: Vec<Bytes>,
    pub content: Range<usize>,
}

/// `data: {json}\n\n`
pub(crate) fn sse_data<T: Serialize>(value: &T) -> Bytes {
    let mut out = b"data: ".to_vec();
    if serde_json::to_writer(&mut out, value).is_err() {
        out.truncate(6);
    }
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// `event: NAME\ndata: {json}\n\n`
pub(crate) fn sse_event<T: Serialize>(name: &str, value: &T) -> Bytes {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    let body_start = out.len();
    if serde_json::to_writer(&mut out, value).is_err() {
        out.truncate(body_start);
    }
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// Streams the script as `text/event-stream`, one frame per event.
pub(crate) fn sse(profile: &Profile, script: Script, guard: InFlight) -> Response<SimBody> {
    let pace = Pace {
        interval: Duration::from_secs_f64(profile.chunk_interval_ms.max(0.0) / 1000.0),
        first: Duration::from_secs_f64(profile.first_token_delay_ms.max(0.0) / 1000.0),
        heartbeat: Duration::from_secs_f64(profile.heartbeat_ms.max(0.0) / 1000.0),
    };
    let body = spawn_producer(script, pace, profile.fail_mid_stream, guard);
    let mut resp = Response::new(body);
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// How content events are paced: `interval` before each, `first` more before the first;
/// a `: ping` comment every `heartbeat` (when not zero) while waiting.
#[derive(Debug, Clone, Copy, Default)]
struct Pace {
    interval: Duration,
    first: Duration,
    heartbeat: Duration,
}

/// The SSE comment a waiting stream sends; clients and parsers ignore it.
const PING: &[u8] = b": ping\n\n";

impl Pace {
    /// Waits `delay`, sending a heartbeat every `heartbeat` meanwhile; `false` when the
    /// client went away.
    async fn wait(&self, tx: &mpsc::Sender<Item>, delay: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + delay;
        if self.heartbeat.is_zero() {
            tokio::time::sleep_until(deadline).await;
            return !tx.is_closed();
        }
        loop {
            let next = tokio::time::Instant::now() + self.heartbeat;
            if next >= deadline {
                tokio::time::sleep_until(deadline).await;
                return !tx.is_closed();
            }
            if !self.beat(tx).await {
                return false;
            }
        }
    }

    /// Sleeps one heartbeat, then sends a ping; `false` when the client went away meanwhile.
    async fn beat(&self, tx: &mpsc::Sender<Item>) -> bool {
        tokio::select! {
            () = tokio::time::sleep(self.heartbeat) => {}
            () = tx.closed() => return false,
        }
        let ping = Frame::data(Bytes::from_static(PING));
        tx.send(Ok(ping)).await.is_ok()
    }
}

fn spawn_producer(
    script: Script,
    pace: Pace,
    fault: Option<MidStream>,
    guard: InFlight,
) -> SimBody {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(produce(tx, script, pace, fault, guard));
    SimBody::Channel(rx)
}

async fn produce(
    tx: mpsc::Sender<Item>,
    script: Script,
    pace: Pace,
    fault: Option<MidStream>,
    _guard: InFlight,
) {
    let interval = pace.interval;
    let cut = fault.map(|f| {
        let at = script
            .content
            .start
            .saturating_add(f.after_chunks() as usize);
        (f, at.min(script.content.end))
    });
    let Script { events, content } = script;
    for (i, event) in events.into_iter().enumerate() {
        let first = i == content.start && content.contains(&i) && !pace.first.is_zero();
        if first && !pace.wait(&tx, pace.first).await {
            return;
        }
        if content.contains(&i) && !interval.is_zero() && !pace.wait(&tx, interval).await {
            return;
        }
        if let Some((fault, at)) = cut {
            if i == at {
                return fail(&tx, fault, pace).await;
            }
        }
        // A failed send means the client went away: stop producing.
        if tx.send(Ok(Frame::data(event))).await.is_err() {
            return;
        }
    }
    if let Some((fault, _)) = cut {
        fail(&tx, fault, pace).await;
    }
}

async fn fail(tx: &mpsc::Sender<Item>, fault: MidStream, pace: Pace) {
    match fault {
        // Held open with heartbeats, when the profile sends them, until the client leaves.
        MidStream::Hang { .. } if !pace.heartbeat.is_zero() => while pace.beat(tx).await {},
        MidStream::Hang { .. } => tx.closed().await,
        MidStream::Reset { .. } => {
            // hyper drops unflushed output when a body errors, so let the
            // connection take and flush the chunks the client is owed first.
            while tx.capacity() < tx.max_capacity() {
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            let _ = tx.send(Err(BodyError)).await;
        }
    }
}
