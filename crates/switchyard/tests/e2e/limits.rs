//! Rate limits at scale: many users, each within its own limit, through a real gateway.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use switchyard_sim::Profile;

use crate::common::*;

const USERS: usize = 5_000;
const WORKERS: usize = 32;

/// One chat completion as `user`; the status.
async fn as_user(client: &TestClient, gw: &switchyard::Running, user: &str) -> u16 {
    let req = Request::post(format!("http://{}/v1/chat/completions", gw.traffic))
        .header("content-type", "application/json")
        .header("x-user-id", user)
        .body(Full::new(Bytes::from(chat("gpt-4o", false).to_string())))
        .unwrap();
    let response = client.request(req).await.expect("response");
    let status = response.status().as_u16();
    response.into_body().collect().await.expect("body");
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_users_within_their_limit_get_no_429() {
    let (sim, up) = sim(Profile::default()).await;
    // A burst of 2 per user: each user's two requests at once are within its limit.
    let limits = "[routes.limits]\nuser_requests_per_second = 2\n";
    let gw = Arc::new(gateway(&one_route("many", &format!("http://{up}"), limits)).await);
    let client = client();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (gw, client, next) = (gw.clone(), client.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            loop {
                let user = next.fetch_add(1, Ordering::Relaxed);
                if user >= USERS {
                    return statuses;
                }
                let key = format!("user-{user}");
                for _ in 0..2 {
                    statuses.push(as_user(&client, &gw, &key).await);
                }
            }
        }));
    }
    let all = async {
        let mut statuses = Vec::new();
        for worker in workers {
            statuses.extend(worker.await.unwrap());
        }
        statuses
    };
    let statuses = tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("5,000 users served within a minute");
    assert_eq!(statuses.len(), 2 * USERS);
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(refused, 0, "users within their limit were refused");
    assert!(statuses.iter().all(|s| *s == 200));
    assert_eq!(sim.requests(), (2 * USERS) as u64);
    // The limit is on: four requests at once are over it (the burst is 2; how many come
    // back in 429 depends on how fast they follow each other, never none).
    let mut over = Vec::new();
    for _ in 0..4 {
        over.push(as_user(&client, &gw, "greedy").await);
    }
    let refused = over.iter().filter(|s| **s == 429).count();
    assert!((1..=2).contains(&refused), "{over:?}");
    let text = metrics(&gw).await;
    let shed = metric(
        &text,
        "switchyard_shed_requests_total",
        &[("route", "many"), ("reason", "user_rate")],
    );
    assert_eq!(shed, refused as f64);
    Arc::try_unwrap(gw).ok().unwrap().stop().await;
}
