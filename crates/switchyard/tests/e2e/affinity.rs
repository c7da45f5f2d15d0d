//! Endpoint affinity: a user stays on one endpoint; when an endpoint dies only its users move,
//! and no request fails (a refused connection is retried once on the next endpoint).

use std::net::SocketAddr;

use switchyard_sim::{Profile, Sim};
use tokio::task::JoinHandle;

use crate::common::*;

type SimTask = JoinHandle<std::io::Result<()>>;

async fn start_sim(addr: &str) -> (Sim, SocketAddr, SimTask) {
    let sim = Sim::new(Profile::default());
    let (addr, task) = switchyard_sim::spawn(addr.parse().unwrap(), sim.clone())
        .await
        .unwrap();
    (sim, addr, task)
}

/// Stops a simulator: its listener and connections are gone when this returns.
async fn stop_sim(task: SimTask) {
    task.abort();
    let _ = task.await;
}

fn pool(addrs: &[SocketAddr], extra: &str) -> String {
    let endpoints: Vec<String> = addrs.iter().map(|a| format!("\"http://{a}\"")).collect();
    format!(
        "[upstreams.pool]\nendpoints = [{}]\n{extra}\n\n[[routes]]\nname = \"chat\"\nupstream = \"pool\"\n",
        endpoints.join(", ")
    )
}

/// Sends one request as `user` and returns which simulator answered it.
async fn served_by(gw: &switchyard::Running, sims: &[Sim], user: &str) -> usize {
    let before: Vec<u64> = sims.iter().map(Sim::requests).collect();
    let answer = post_json(
        gw.traffic,
        "/v1/chat/completions",
        &[("x-user-id", user)],
        chat("gpt-4o", false),
    )
    .await;
    assert_eq!(answer.status, 200, "{user}: {:?}", answer.body);
    let served: Vec<usize> = (0..sims.len())
        .filter(|&i| sims[i].requests() > before[i])
        .collect();
    assert_eq!(served.len(), 1, "{user} was served by {served:?}");
    served[0]
}

fn healthy_gauge(text: &str, addr: SocketAddr) -> f64 {
    let endpoint = format!("http://{addr}");
    metric(
        text,
        "switchyard_endpoint_healthy",
        &[("upstream", "pool"), ("endpoint", &endpoint)],
    )
}

#[tokio::test]
async fn users_stick_to_an_endpoint_and_only_a_dead_ones_users_move() {
    let mut sims = Vec::new();
    let mut addrs = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let (sim, addr, task) = start_sim("127.0.0.1:0").await;
        sims.push(sim);
        addrs.push(addr);
        tasks.push(task);
    }
    // A long ejection: the dead endpoint must not be tried again during the test.
    let gw = gateway(&pool(&addrs, "unhealthy_after = 2\neject_for = \"10m\"")).await;

    let users: Vec<String> = (0..300).map(|i| format!("user-{i}")).collect();
    let mut home = Vec::with_capacity(users.len());
    for user in &users {
        let first = served_by(&gw, &sims, user).await;
        assert_eq!(
            first,
            served_by(&gw, &sims, user).await,
            "{user} changed endpoint"
        );
        home.push(first);
    }
    for i in 0..3 {
        let count = home.iter().filter(|&&h| h == i).count();
        assert!(count >= 50, "endpoint {i} got only {count} of 300 users");
    }

    // Endpoint 2 dies; every request still succeeds and only its users move.
    stop_sim(tasks.remove(2)).await;
    let mut moved = Vec::new();
    for (user, &was) in users.iter().zip(&home) {
        let now = served_by(&gw, &sims, user).await;
        if was == 2 {
            assert_ne!(now, 2);
            moved.push((user, now));
        } else {
            assert_eq!(now, was, "{user} moved off a live endpoint");
        }
    }
    // The moved users found a new home and keep it.
    for (user, now) in &moved {
        assert_eq!(
            *now,
            served_by(&gw, &sims, user).await,
            "{user} is not sticky"
        );
    }
    let text = metrics(&gw).await;
    assert_eq!(healthy_gauge(&text, addrs[2]), 0.0, "{text}");
    assert_eq!(healthy_gauge(&text, addrs[0]), 1.0, "{text}");
    for task in tasks {
        stop_sim(task).await;
    }
}

#[tokio::test]
async fn probes_eject_a_dead_endpoint_and_rejoin_it_when_it_answers() {
    let (_a, a, a_task) = start_sim("127.0.0.1:0").await;
    let (_b, b, b_task) = start_sim("127.0.0.1:0").await;
    let check = "unhealthy_after = 1\neject_for = \"10m\"\n\
                 health_check = { path = \"/health\", interval = \"50ms\", timeout = \"50ms\" }";
    let gw = gateway(&pool(&[a, b], check)).await;
    eventually_metrics(&gw, "both endpoints healthy", |t| {
        healthy_gauge(t, a) == 1.0 && healthy_gauge(t, b) == 1.0
    })
    .await;

    // No client traffic at all: only the probe can notice.
    stop_sim(b_task).await;
    eventually_metrics(&gw, "b ejected", |t| healthy_gauge(t, b) == 0.0).await;

    // Back on the same port: a successful probe rejoins it long before eject_for ends.
    let (_b, _, b_task) = start_sim(&b.to_string()).await;
    eventually_metrics(&gw, "b rejoined", |t| healthy_gauge(t, b) == 1.0).await;
    assert_eq!(healthy_gauge(&metrics(&gw).await, a), 1.0);
    stop_sim(a_task).await;
    stop_sim(b_task).await;
}
