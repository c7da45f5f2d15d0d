use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use http_body::Frame;
use http_body_util::Full;

use super::*;
use crate::rescue::{Answer, Refusal};
use crate::stage::testing::{answer, boards, chat, flow, oneshot, outbound, table, Reached};

/// A body whose first bytes come and whose end never does.
struct Trickle(bool);

impl http_body::Body for Trickle {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if std::mem::replace(&mut self.0, true) {
            return Poll::Pending;
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"{\"model\"")))))
    }
}

#[tokio::test]
async fn a_chat_is_read_whole_and_its_facts_and_body_handed_on() {
    let (table, boards) = (table(""), boards());
    let reached = Reached::default();
    let mut stage = InspectLayer.layer(reached.clone());
    let req = chat("gpt-4o");
    let sent = req.body().clone();
    assert!(oneshot(&mut stage, flow(&table, &boards, req))
        .await
        .is_ok());
    let mut flow = reached.last();
    let facts = flow.ctx.facts();
    assert_eq!(facts.model.as_deref(), Some("gpt-4o"));
    assert_eq!(facts.user_key.as_deref(), Some("u1"));
    assert!(!facts.unparsed);
    let expected = http_body_util::BodyExt::collect(sent)
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(flow.replay.as_ref(), Some(&expected));
    assert_eq!(outbound(&mut flow).await, expected);
}

#[tokio::test]
async fn a_body_over_the_limit_is_stopped_before_it_goes_further() {
    let (table, boards) = (table(""), boards());
    let reached = Reached::default();
    let mut stage = InspectLayer.layer(reached.clone());
    // No Content-Length: the limit is found while reading.
    let req = Request::post("/v1/chat/completions")
        .body(Full::new(Bytes::from(vec![b'x'; 2048])))
        .unwrap();
    let result = oneshot(&mut stage, flow(&table, &boards, req)).await;
    assert!(matches!(
        answer(result),
        Answer::Refuse(Refusal::BodyTooLarge)
    ));
    assert_eq!(reached.count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_body_that_never_ends_is_refused_at_the_read_timeout() {
    let (table, boards) = (table(""), boards());
    let reached = Reached::default();
    let mut stage = InspectLayer.layer(reached.clone());
    let req = Request::post("/v1/chat/completions")
        .body(Trickle(false))
        .unwrap();
    let started = tokio::time::Instant::now();
    let result = oneshot(&mut stage, flow(&table, &boards, req)).await;
    assert!(matches!(
        answer(result),
        Answer::Refuse(Refusal::BodyTimeout)
    ));
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert_eq!(reached.count(), 0);
}

#[tokio::test]
async fn a_request_that_is_no_llm_operation_streams_through_unread() {
    let (table, boards) = (table(""), boards());
    let reached = Reached::default();
    let mut stage = InspectLayer.layer(reached.clone());
    let req = Request::post("/v1/files").body(Trickle(false)).unwrap();
    assert!(oneshot(&mut stage, flow(&table, &boards, req))
        .await
        .is_ok());
    let flow = reached.last();
    assert!(
        flow.replay.is_none(),
        "a streamed body cannot be sent again"
    );
    assert_eq!(flow.ctx.facts().model, None);
    assert_eq!(flow.ctx.facts().user_key, None);
}
