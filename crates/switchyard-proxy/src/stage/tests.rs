use tower_layer::Layer;

use super::testing::{boards, chat, entry, flow, kill, table};
use super::*;

#[tokio::test]
async fn a_stages_answer_comes_out_of_the_stack_shaped_by_the_rescue() {
    let (table, boards) = (table(""), boards());
    kill(&boards);
    let response = table.routes[0]
        .stack
        .call(entry(&table, &boards, chat("gpt-4o")))
        .await;
    assert_eq!(response.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    let headers = response.headers();
    assert_eq!(headers["x-switchyard-error"], "route_killed");
    assert_eq!(headers["x-switchyard-route"], "r");
    assert!(headers.contains_key("retry-after"));
    assert!(headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn a_request_moves_between_stages_as_a_pointer_in_a_small_future() {
    assert_eq!(std::mem::size_of::<Flow>(), std::mem::size_of::<usize>());
    let (table, boards) = (table(""), boards());
    let service = forward::Forward;
    let service = meter::MeterLayer.layer(service);
    let service = budget::BudgetLayer.layer(service);
    let service = admission::AdmissionLayer.layer(service);
    let service = steer::SteerLayer.layer(service);
    let service = kill::KillLayer.layer(service);
    let mut service = inspect::InspectLayer.layer(service);
    let future = service.call(flow(&table, &boards, chat("gpt-4o")));
    // Every stage's future nests in the one box; moved at each stage's step, it must stay
    // a few cache lines.
    let size = std::mem::size_of_val(&future);
    assert!(size <= 512, "the stack's future is {size} bytes");
}
