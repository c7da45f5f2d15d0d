use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::admission::Shed;
use crate::rescue::{Answer, Refusal};
use crate::stage::testing::{answer, boards, chat, flow, kill, oneshot, table, Reached};

const ONE_SLOT: &str =
    "[routes.limits]\nmax_concurrency = 1\nmax_queue = 1\nqueue_timeout = \"2s\"\n";

#[tokio::test]
async fn a_throttle_steer_read_sheds_over_its_rate() {
    let (table, boards) = (table(""), boards());
    let reached = Reached::default();
    let mut stage = AdmissionLayer.layer(reached.clone());
    let mut shed = 0;
    for _ in 0..4 {
        let mut flow = flow(&table, &boards, chat("gpt-4o"));
        flow.steer = Some(Arc::new(switchyard_state::steer::Steer {
            throttle_rps: Some(2.0),
            ..Default::default()
        }));
        if let Err(stop) = oneshot(&mut stage, flow).await {
            assert!(matches!(stop.answer, Answer::Shed(Shed::Throttled)));
            shed += 1;
        }
    }
    assert_eq!((reached.count(), shed), (2, 2));
}

#[tokio::test]
async fn a_user_over_its_rate_is_shed_and_a_fallback_is_not_held_to_it() {
    let (table, boards) = (
        table("[routes.limits]\nuser_requests_per_second = 1.0\n"),
        boards(),
    );
    let reached = Reached::default();
    let mut stage = AdmissionLayer.layer(reached.clone());
    let user = |flow: Flow| {
        let mut flow = flow;
        flow.ctx.facts_mut().user_key = Some("u1".into());
        flow
    };
    assert!(oneshot(&mut stage, user(flow(&table, &boards, chat("m"))))
        .await
        .is_ok());
    let again = oneshot(&mut stage, user(flow(&table, &boards, chat("m")))).await;
    assert!(matches!(answer(again), Answer::Shed(Shed::UserRate)));
    let mut fallback = user(flow(&table, &boards, chat("m")));
    fallback.fallback = true;
    assert!(oneshot(&mut stage, fallback).await.is_ok());
    assert_eq!(reached.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_queued_request_waits_the_queue_timeout_then_is_shed() {
    let (table, boards) = (table(ONE_SLOT), boards());
    let reached = Reached::default();
    let mut stage = AdmissionLayer.layer(reached.clone());
    // The first request takes the only slot and keeps it while the inner service holds it.
    oneshot(&mut stage, flow(&table, &boards, chat("m")))
        .await
        .unwrap_or_else(|_| panic!("the first request is admitted"));
    assert!(reached.0.lock().unwrap()[0].ctx.has_slot());
    let started = tokio::time::Instant::now();
    let queued = tokio::spawn({
        let mut stage = stage.clone();
        let flow = flow(&table, &boards, chat("m"));
        async move { oneshot(&mut stage, flow).await.map(|_| ()) }
    });
    tokio::task::yield_now().await;
    assert_eq!(
        boards
            .signals
            .queued()
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // The queue is full: a third request is shed at once.
    let third = oneshot(&mut stage, flow(&table, &boards, chat("m"))).await;
    assert!(matches!(answer(third), Answer::Shed(Shed::QueueFull)));
    let waited = queued.await.unwrap();
    assert!(matches!(answer(waited), Answer::Shed(Shed::QueueTimeout)));
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(
        boards
            .signals
            .queued()
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_killed_while_it_waited_in_the_queue_is_stopped_when_it_gets_its_slot() {
    let (table, boards) = (table(ONE_SLOT), boards());
    let reached = Reached::default();
    let mut stage = AdmissionLayer.layer(reached.clone());
    oneshot(&mut stage, flow(&table, &boards, chat("m")))
        .await
        .unwrap_or_else(|_| panic!("the first request is admitted"));
    let queued = tokio::spawn({
        let mut stage = stage.clone();
        let flow = flow(&table, &boards, chat("m"));
        async move { oneshot(&mut stage, flow).await.map(|_| ()) }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    kill(&boards);
    // The first request ends: its slot goes to the one in the queue.
    drop(reached.last());
    let waited = queued.await.unwrap();
    assert!(matches!(answer(waited), Answer::Refuse(Refusal::Killed)));
    assert_eq!(reached.count(), 0);
}
