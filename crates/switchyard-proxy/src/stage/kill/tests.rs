use super::*;
use crate::rescue::Answer;
use crate::stage::testing::{answer, boards, chat, flow, kill, oneshot, table, Reached};

#[tokio::test]
async fn a_route_without_an_engaged_switch_passes() {
    let (table, boards) = (table(""), boards());
    let reached = Reached::default();
    let mut stage = KillLayer.layer(reached.clone());
    let response = oneshot(&mut stage, flow(&table, &boards, chat("gpt-4o"))).await;
    assert!(response.is_ok());
    let passed = reached.last();
    assert!(!passed.fallback);
    assert_eq!(&*passed.upstream.name, "up");
}

#[tokio::test]
async fn an_engaged_switch_without_a_fallback_stops_the_request_as_killed() {
    let (table, boards) = (table(""), boards());
    kill(&boards);
    let reached = Reached::default();
    let mut stage = KillLayer.layer(reached.clone());
    let result = oneshot(&mut stage, flow(&table, &boards, chat("gpt-4o"))).await;
    assert!(matches!(answer(result), Answer::Refuse(Refusal::Killed)));
    assert_eq!(reached.count(), 0);
}

#[tokio::test]
async fn an_engaged_switch_with_a_fallback_upstream_moves_the_request_there() {
    let (table, boards) = (
        table("[routes.kill_switch]\nfallback = { upstream = \"spare\" }\n"),
        boards(),
    );
    kill(&boards);
    let reached = Reached::default();
    let mut stage = KillLayer.layer(reached.clone());
    oneshot(&mut stage, flow(&table, &boards, chat("gpt-4o")))
        .await
        .unwrap_or_else(|_| panic!("stopped"));
    let passed = reached.last();
    assert!(passed.fallback);
    assert_eq!(&*passed.upstream.name, "spare");
    assert_eq!(&*passed.ctx.facts().upstream, "spare");
}

#[tokio::test]
async fn a_made_fallback_is_the_answer_and_nothing_goes_further() {
    let (table, boards) = (
        table("[routes.kill_switch]\nfallback = { text = \"resting\" }\n"),
        boards(),
    );
    kill(&boards);
    let reached = Reached::default();
    let mut stage = KillLayer.layer(reached.clone());
    let result = oneshot(&mut stage, flow(&table, &boards, chat("gpt-4o"))).await;
    match answer(result) {
        Answer::Fallback(response) => assert_eq!(response.status(), 200),
        other => panic!("not the made fallback: {other:?}"),
    }
    assert_eq!(reached.count(), 0);
}
