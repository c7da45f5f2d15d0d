use std::path::Path;
use std::sync::Arc;

use switchyard_config::Config;
use switchyard_state::budget::{BudgetGate, GateSettings};

use super::*;
use crate::stage::testing::{answer, boards, chat, flow, oneshot, table, Reached};

/// Boards with a budget gate configured by the `[budgets]` lines `budgets`.
fn budgeted(budgets: &str) -> Arc<crate::boards::Boards> {
    let config = Config::parse(&format!("[budgets]\n{budgets}"), "t.toml", Path::new(".")).unwrap();
    let boards = boards();
    let gate = BudgetGate::new(
        GateSettings::from_config(&config.budgets),
        boards.signals.clone(),
    );
    boards.budget.set(gate).unwrap();
    boards
}

#[tokio::test]
async fn an_enforced_budget_reserves_the_estimate_for_the_exchange() {
    let (table, boards) = (
        table(""),
        budgeted("daily_tokens = 100000\nenforce = true\n"),
    );
    let reached = Reached::default();
    let mut stage = BudgetLayer.layer(reached.clone());
    let mut asked = flow(&table, &boards, chat("m"));
    asked.ctx.facts_mut().prompt_tokens_estimate = 30;
    asked.ctx.facts_mut().max_tokens = Some(7);
    assert!(oneshot(&mut stage, asked).await.is_ok());
    let record = reached.last().into_record(200, None);
    // The prompt estimate plus the request's completion cap.
    assert_eq!(record.reservation.as_ref().map(|r| r.tokens), Some(37));
}

#[tokio::test]
async fn a_used_up_budget_stops_the_request_with_its_retry_after() {
    let (table, boards) = (table(""), budgeted("daily_tokens = 10\nenforce = true\n"));
    let reached = Reached::default();
    let mut stage = BudgetLayer.layer(reached.clone());
    let result = oneshot(&mut stage, flow(&table, &boards, chat("m"))).await;
    match answer(result) {
        Answer::Budget(Refusal::BudgetExhausted, secs) => assert!(secs > 0),
        other => panic!("not a budget refusal: {other:?}"),
    }
    assert_eq!(reached.count(), 0);
}

#[tokio::test]
async fn a_budget_only_alerted_on_or_an_opaque_request_reserves_nothing() {
    let table = table("");
    let boards = budgeted("daily_tokens = 10\n");
    let reached = Reached::default();
    let mut stage = BudgetLayer.layer(reached.clone());
    assert!(oneshot(&mut stage, flow(&table, &boards, chat("m")))
        .await
        .is_ok());
    let enforced = budgeted("daily_tokens = 10\nenforce = true\n");
    let models = http::Request::get("/v1/models")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert!(oneshot(&mut stage, flow(&table, &enforced, models))
        .await
        .is_ok());
    assert_eq!(reached.count(), 2);
    assert!(reached.last().into_record(200, None).reservation.is_none());
}
