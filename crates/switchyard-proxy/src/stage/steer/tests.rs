use http_body_util::BodyExt;

use super::*;
use crate::stage::testing::{boards, chat, flow, oneshot, table, Reached};

/// One experiment `e` every user is in, which sets the model and a header.
const ALL_IN: &str = "[[routes.experiments]]\nname = \"e\"\nshare = 1.0\n\
    variant = { set_model = \"gpt-4o-mini\", headers = { x-test = \"1\" } }\n";

async fn steered(table: &Arc<Table>, boards: &Arc<crate::boards::Boards>, inspect: bool) -> Flow {
    let reached = Reached::default();
    let mut stage = SteerLayer.layer(reached.clone());
    let mut flow = flow(table, boards, chat("gpt-4o"));
    if inspect {
        // What inspect leaves: the body known whole.
        let body = std::mem::replace(&mut flow.body, body::empty());
        let bytes = body.collect().await.unwrap().to_bytes();
        flow.body = body::full(bytes.clone());
        flow.replay = Some(bytes);
    }
    oneshot(&mut stage, flow)
        .await
        .unwrap_or_else(|_| panic!("steer never stops a request"));
    reached.last()
}

#[tokio::test]
async fn a_variant_places_the_request_and_rewrites_its_model() {
    let (table, boards) = (table(ALL_IN), boards());
    let mut flow = steered(&table, &boards, true).await;
    assert!(flow.steered);
    assert_eq!(flow.variant().map(|v| &*v.name), Some("e"));
    assert_eq!(flow.ctx.facts().variant.as_deref(), Some("e"));
    assert_eq!(flow.ctx.facts().model.as_deref(), Some("gpt-4o-mini"));
    let length = flow.parts.headers[header::CONTENT_LENGTH].clone();
    let body = std::mem::replace(&mut flow.body, body::empty());
    let sent = body.collect().await.unwrap().to_bytes();
    assert!(std::str::from_utf8(&sent)
        .unwrap()
        .contains(r#""model":"gpt-4o-mini""#));
    assert_eq!(length, sent.len().to_string().as_str());
    assert_eq!(flow.replay.as_ref(), Some(&sent));
}

#[tokio::test]
async fn a_body_not_read_whole_is_placed_but_not_rewritten() {
    let (table, boards) = (table(ALL_IN), boards());
    let flow = steered(&table, &boards, false).await;
    assert_eq!(flow.variant().map(|v| &*v.name), Some("e"));
    assert_eq!(
        flow.ctx.facts().model,
        None,
        "the facts follow only a rewrite"
    );
    assert!(flow.replay.is_none());
}

#[tokio::test]
async fn a_downgrade_in_force_rewrites_every_request() {
    let (table, boards) = (table(""), boards());
    boards.steering.update("r", |s| {
        s.downgrade_to = Some(Arc::from("gpt-4o-mini"));
        s.throttle_rps = Some(3.0);
    });
    let flow = steered(&table, &boards, true).await;
    assert_eq!(flow.ctx.facts().model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(flow.variant().map(|v| &*v.name), None);
    assert_eq!(
        flow.ctx.facts().variant,
        None,
        "no experiments, no variant label"
    );
    // Admission applies the throttle steer read.
    assert_eq!(flow.steer.as_ref().and_then(|s| s.throttle_rps), Some(3.0));
}

#[tokio::test]
async fn a_request_on_the_fallback_upstream_is_not_steered() {
    let (table, boards) = (table(ALL_IN), boards());
    let reached = Reached::default();
    let mut stage = SteerLayer.layer(reached.clone());
    let mut flow = flow(&table, &boards, chat("gpt-4o"));
    flow.fallback = true;
    oneshot(&mut stage, flow)
        .await
        .unwrap_or_else(|_| panic!("steer never stops a request"));
    let flow = reached.last();
    assert!(!flow.steered);
    assert!(flow.variant().is_none());
    assert_eq!(&*flow.upstream.name, "up");
}
