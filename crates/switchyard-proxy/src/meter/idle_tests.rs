//! The stream idle timeout on paused time: it counts the silence since the last frame, to the
//! millisecond, however long the stream lasts.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame};
use http_body_util::BodyExt;
use switchyard_config::Config;
use switchyard_core::RequestId;
use switchyard_llm::{Dialect, Operation};
use switchyard_state::Signals;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{IdleTimeout, Metered, Record, Scan};
use crate::boards::Boards;

/// A body whose frames are sent through a channel; it ends when the sender is dropped.
struct Channel(mpsc::Receiver<Bytes>);

impl HttpBody for Channel {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|data| Ok(Frame::data(data))))
    }
}

fn record() -> Record {
    let toml = "[upstreams.up]\nurl = \"http://127.0.0.1:9\"\n\n[[routes]]\nname = \"r\"\n\
                upstream = \"up\"\nmatch = { path_prefix = \"/v1/\" }\n";
    let config = Config::parse(toml, "test.toml", Path::new(".")).unwrap();
    let signals = Signals::new();
    let table = Boards::new(signals.clone())
        .prepare(&config, &HashMap::new())
        .unwrap();
    let route = &table.routes[0];
    let client = SocketAddr::from((Ipv4Addr::LOCALHOST, 1));
    let id = RequestId(Arc::from("test"));
    Record {
        started: switchyard_core::clock::now(),
        ttfb: None,
        ttft: None,
        facts: crate::inspect::minimal(route, id, client, (Dialect::OpenAi, Operation::Other)),
        dialect: Dialect::OpenAi,
        status: 200,
        status_error: None,
        model: None,
        route: route.signals.clone(),
        signals,
        _in_flight: None,
        _slot: None,
        capture: None,
        refused: false,
        reservation: None,
    }
}

/// Sends one frame after each of `gaps`, then falls silent (keeping the sender) or ends.
/// Returns whether the body ended cleanly, and when.
async fn stream(gaps: &[u64], end: bool) -> (bool, Duration) {
    let (tx, rx) = mpsc::channel(1024);
    let started = Instant::now();
    let body = Metered::new(Channel(rx), Scan::None, record(), Duration::from_secs(1));
    let gaps = gaps.to_vec();
    let sender = tokio::spawn(async move {
        for gap in gaps {
            tokio::time::sleep(Duration::from_millis(gap)).await;
            tx.send(Bytes::from_static(b"data: x\n\n")).await.unwrap();
        }
        if !end {
            std::future::pending::<()>().await;
        }
    });
    let result = body.collect().await;
    sender.abort();
    if let Err(error) = &result {
        assert!(error.is::<IdleTimeout>(), "{error}");
    }
    (result.is_ok(), started.elapsed())
}

fn near(elapsed: Duration, ms: u64) -> bool {
    let ms = Duration::from_millis(ms);
    elapsed >= ms && elapsed <= ms + Duration::from_millis(5)
}

#[tokio::test(start_paused = true)]
async fn a_stream_longer_than_the_timeout_with_short_gaps_completes() {
    let (ok, elapsed) = stream(&[600; 8], true).await;
    assert!(ok, "no timeout while frames keep coming");
    assert!(near(elapsed, 4800), "{elapsed:?}");
}

#[tokio::test(start_paused = true)]
async fn the_timeout_counts_from_the_last_frame() {
    let (ok, elapsed) = stream(&[0, 600, 300, 900], false).await;
    assert!(!ok);
    assert!(near(elapsed, 2800), "{elapsed:?}");
}

#[tokio::test(start_paused = true)]
async fn a_stream_silent_from_the_start_times_out() {
    let (ok, elapsed) = stream(&[], false).await;
    assert!(!ok);
    assert!(near(elapsed, 1000), "{elapsed:?}");
}

#[tokio::test(start_paused = true)]
async fn a_gap_just_under_the_timeout_is_allowed_one_at_it_is_not() {
    let (ok, _) = stream(&[999, 999, 999], true).await;
    assert!(ok);
    let (ok, elapsed) = stream(&[999, 1001], true).await;
    assert!(!ok);
    assert!(near(elapsed, 1999), "{elapsed:?}");
}

#[tokio::test(start_paused = true)]
async fn a_first_look_at_the_timer_without_budget_still_arms_it() {
    let (_tx, rx) = mpsc::channel::<Bytes>(1);
    let timeout = Duration::from_secs(1);
    let mut body = Box::pin(Metered::new(Channel(rx), Scan::None, record(), timeout));
    let (spend, mut spent) = mpsc::channel::<()>(1024);
    for _ in 0..1024 {
        spend.try_send(()).unwrap();
    }
    let started = Instant::now();
    let pending = std::future::poll_fn(|cx| {
        // A ready channel answers Pending once the task's budget is spent.
        while spent.poll_recv(cx).is_ready() {}
        Poll::Ready(body.as_mut().poll_frame(cx).is_pending())
    })
    .await;
    assert!(pending);
    let result = tokio::time::timeout(Duration::from_secs(5), body.collect()).await;
    let error = result.expect("the idle timeout fires").unwrap_err();
    assert!(error.is::<IdleTimeout>(), "{error}");
    assert!(near(started.elapsed(), 1000), "{:?}", started.elapsed());
}
