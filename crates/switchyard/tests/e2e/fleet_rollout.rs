//! Fleet mode and rollouts: several gateways, each with its own Redis client and state dir,
//! share one rollout per route through a real redis-server; decisions are taken once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard::Running;
use switchyard_sim::{ErrorKind, Profile, Sim};

use crate::common::*;
use crate::redis_server::{redis_namespace, RedisServer};

const INTERVAL_MS: u64 = 500;

fn config(
    redis: &str,
    ns: &str,
    id: &str,
    blue: SocketAddr,
    green: SocketAddr,
    rollout: &str,
) -> String {
    format!(
        r#"
[server]
{tokens}
[models."gpt-4o"]
context_window = 128000
input_usd_per_mtok = 2.5
output_usd_per_mtok = 10.0

[upstreams.blue]
url = "http://{blue}"

[upstreams.green]
url = "http://{green}"

[[routes]]
name = "support"

[routes.rollout]
blue = "blue"
green = "green"
{rollout}

[routes.rollback]
error_rate = 0.05
error_window = "10s"
min_requests = 10
new_error_class_rate = 1.0

[[rules]]
name = "cost_guard"
metric = "cost_per_request"
above = 0.000001
window = "30s"
min_requests = 3
action = "downgrade_model"
downgrade_to = "gpt-4o-mini"

[fleet]
redis_url = "{redis}"
namespace = "{ns}"
instance_id = "{id}"
reconcile_interval = "{INTERVAL_MS}ms"
command_timeout = "200ms"
"#,
        tokens = admin_tokens(),
    )
}

struct Rig {
    redis: RedisServer,
    ns: String,
    green: Sim,
    _blue: Sim,
    replicas: Vec<Running>,
}

async fn rig(n: usize, rollout: &str) -> Option<Rig> {
    let redis = RedisServer::start().await?;
    let (blue, blue_addr) = sim(Profile::default()).await;
    let (green, green_addr) = sim(Profile::default()).await;
    let ns = redis_namespace("ns-rollout");
    let mut replicas = Vec::new();
    for i in 0..n {
        let text = config(
            &redis.url(),
            &ns,
            &format!("g{i}"),
            blue_addr,
            green_addr,
            rollout,
        );
        replicas.push(gateway(&text).await);
    }
    let rig = Rig {
        redis,
        ns,
        green,
        _blue: blue,
        replicas,
    };
    // Every replica runs the rollout the fleet registered: one epoch for all.
    wait(Duration::from_secs(5), "one epoch on every replica", || {
        let epochs: Vec<u64> = rig
            .replicas
            .iter()
            .map(|r| state(r)["epoch"].as_u64().unwrap_or(0))
            .collect();
        epochs.iter().all(|e| *e == 1)
    })
    .await;
    Some(rig)
}

fn state(gw: &Running) -> Value {
    json!(gw.controller.rollout("support"))
}

fn phase(gw: &Running) -> String {
    state(gw)["phase"].as_str().unwrap_or("").to_owned()
}

async fn wait(within: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < within, "never {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

async fn ask(gw: &Running, user: &str) -> u16 {
    post_json(
        gw.traffic,
        "/v1/chat/completions",
        &[("x-user-id", user)],
        chat("gpt-4o", false),
    )
    .await
    .status
    .as_u16()
}

/// GETs an admin read until `check` holds on it.
async fn read_until(gw: &Running, path: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let doc = admin(gw, "GET", path, VIEWER, None).await.json();
        if check(&doc) {
            return doc;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never {what}: {doc}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn entries<'a>(doc: &'a Value, key: &str, filter: impl Fn(&Value) -> bool + 'a) -> Vec<&'a Value> {
    doc[key]
        .as_array()
        .map(|a| a.iter().filter(|e| filter(e)).collect())
        .unwrap_or_default()
}

const HOLD: &str = "stages = [50, 100]\nbake = \"1h\"\nmin_requests = 100000";

// Long: one scenario told in order; each step starts from the state the previous one left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_rollout_manual_rollback_and_promotion_reach_every_replica() {
    let Some(rig) = rig(3, HOLD).await else {
        return;
    };
    let [a, b, c] = &rig.replicas[..] else {
        unreachable!()
    };
    let answer = admin(
        a,
        "POST",
        "/admin/routes/support/rollback",
        OPERATOR,
        Some(json!({"reason": "bad answers"})),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(phase(a), "rolled_back", "answered after the local apply");
    let bound = Duration::from_millis(INTERVAL_MS + 200);
    wait(bound, "rolled back on B and C", || {
        phase(b) == "rolled_back" && phase(c) == "rolled_back"
    })
    .await;
    assert_eq!(state(c)["by"], "oncall");

    // Again on another replica: the fleet already has it.
    let again = admin(
        b,
        "POST",
        "/admin/routes/support/rollback",
        OPERATOR,
        Some(json!({})),
    )
    .await;
    assert_eq!(again.status, 409, "{:?}", again.body);

    let promoted = admin(
        b,
        "POST",
        "/admin/routes/support/promote",
        OPERATOR,
        Some(json!({"reason": "fixed"})),
    )
    .await;
    assert_eq!(promoted.status, 200, "{:?}", promoted.body);
    wait(bound, "promoted on A and C", || {
        phase(a) == "complete" && phase(c) == "complete"
    })
    .await;
    assert_eq!(state(a)["decisions"], 2);

    // The rollback's incident and both audit entries, read from a third replica.
    let incidents = read_until(c, "/admin/incidents", "the incident from A", |d| {
        !entries(d, "incidents", |i| i["kind"] == "rollback").is_empty()
    })
    .await;
    assert_eq!(incidents["source"], "fleet");
    let rollbacks = entries(&incidents, "incidents", |i| i["kind"] == "rollback");
    assert_eq!(rollbacks.len(), 1, "{incidents}");
    assert_eq!(rollbacks[0]["replica"], "g0");
    let id = rollbacks[0]["id"].as_str().unwrap();
    let one = admin(c, "GET", &format!("/admin/incidents/{id}"), VIEWER, None).await;
    assert_eq!(
        one.status, 200,
        "another replica's incident is readable here"
    );
    let audit = read_until(c, "/admin/audit", "both audit entries", |d| {
        entries(d, "entries", |e| {
            e["action"] == "rollback" || e["action"] == "promote"
        })
        .len()
            >= 2
    })
    .await;
    let by_replica: Vec<(&str, &str)> = entries(&audit, "entries", |e| e["result"] == "ok")
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["replica"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(by_replica.contains(&("rollback", "g0")), "{audit}");
    assert!(by_replica.contains(&("promote", "g1")), "{audit}");
}

// Long: one scenario told in order; each step starts from the state the previous one left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_rollout_automatic_rollback_happens_once_and_reaches_every_replica() {
    let Some(rig) = rig(3, HOLD).await else {
        return;
    };
    let [a, b, c] = &rig.replicas[..] else {
        unreachable!()
    };
    rig.green.set_profile(Profile {
        error_rate: 1.0,
        error_kind: ErrorKind::Status500,
        ..Profile::default()
    });
    // Mostly A sees the failing green; B sees enough to decide too.
    for i in 0..120 {
        let gw = if i % 4 == 3 { b } else { a };
        ask(gw, &format!("user-{i}")).await;
        if phase(a) == "rolled_back" && phase(b) == "rolled_back" {
            break;
        }
    }
    let bound = Duration::from_millis(INTERVAL_MS + 500);
    wait(bound, "rolled back everywhere", || {
        [a, b, c].iter().all(|r| phase(r) == "rolled_back")
    })
    .await;
    // One decision in the epoch, one incident and one automatic audit entry for the fleet.
    read_until(c, "/admin/incidents", "the rollback incident", |d| {
        !entries(d, "incidents", |i| i["kind"] == "rollback").is_empty()
    })
    .await;
    // Give a second, duplicate decision every chance to show up before counting.
    tokio::time::sleep(Duration::from_millis(INTERVAL_MS)).await;
    let incidents = admin(c, "GET", "/admin/incidents", VIEWER, None)
        .await
        .json();
    let rollbacks = entries(&incidents, "incidents", |i| i["kind"] == "rollback");
    assert_eq!(rollbacks.len(), 1, "{incidents}");
    let local: usize = [a, b, c]
        .iter()
        .map(|r| {
            r.controller
                .incidents()
                .list()
                .iter()
                .filter(|i| i.kind == "rollback")
                .count()
        })
        .sum();
    assert_eq!(local, 1, "one replica opened it");
    let audit = admin(c, "GET", "/admin/audit", VIEWER, None).await.json();
    let automatic = entries(&audit, "entries", |e| {
        e["action"] == "rollback" && e["kind"] == "automatic"
    });
    assert_eq!(automatic.len(), 1, "{audit}");
    for r in [a, b, c] {
        let s = state(r);
        assert_eq!(
            (s["epoch"].as_u64(), s["decisions"].as_u64()),
            (Some(1), Some(1)),
            "{s}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_rollout_stages_advance_once_for_the_fleet() {
    let rollout = "stages = [10, 50, 100]\nbake = \"300ms\"\nmin_requests = 5";
    let Some(rig) = rig(2, rollout).await else {
        return;
    };
    let [a, b] = &rig.replicas[..] else {
        unreachable!()
    };
    let mut i = 0;
    let started = Instant::now();
    while !(phase(a) == "complete" && phase(b) == "complete") {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never complete: {}",
            state(a)
        );
        ask(if i % 2 == 0 { a } else { b }, &format!("user-{i}")).await;
        i += 1;
    }
    read_until(b, "/admin/audit", "two advances", |d| {
        entries(d, "entries", |e| e["action"] == "advance").len() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(INTERVAL_MS)).await;
    let audit = admin(b, "GET", "/admin/audit", VIEWER, None).await.json();
    let advances = entries(&audit, "entries", |e| e["action"] == "advance");
    let stages: Vec<u64> = advances
        .iter()
        .map(|e| e["after"]["stage"].as_u64().unwrap())
        .collect();
    assert_eq!(stages, vec![1, 2], "each stage once: {audit}");
    // Both by the replica holding the lease.
    let mut conn = rig.redis.conn().await;
    let holder: String = redis::cmd("GET")
        .arg(format!("{}:v1:lease:rollouts", rig.ns))
        .query_async(&mut conn)
        .await
        .unwrap();
    for advance in &advances {
        assert_eq!(advance["replica"], holder.as_str(), "{audit}");
    }
    assert_eq!(state(a)["decisions"], 2);
    assert_eq!(state(b)["decisions"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_rollout_redis_paused_freezes_the_rollout_and_traffic_flows() {
    let rollout = "stages = [10, 50, 100]\nbake = \"200ms\"\nmin_requests = 5";
    let Some(rig) = rig(2, rollout).await else {
        return;
    };
    let [a, b] = &rig.replicas[..] else {
        unreachable!()
    };
    rig.redis.pause();
    wait(Duration::from_secs(5), "degraded", || {
        !a.fleet.as_ref().unwrap().is_up() && !b.fleet.as_ref().unwrap().is_up()
    })
    .await;
    let before = state(a)["stage"].clone();
    let (mut failed, mut n) = (0, 0);
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        for gw in [a, b] {
            n += 1;
            if ask(gw, &format!("user-{n}")).await != 200 {
                failed += 1;
            }
        }
    }
    assert_eq!(failed, 0, "traffic unaffected");
    assert_eq!(state(a)["stage"], before, "no advance without Redis");
    assert_eq!(state(b)["stage"], before);
    let refused = admin(
        a,
        "POST",
        "/admin/routes/support/rollback",
        OPERATOR,
        Some(json!({})),
    )
    .await;
    assert_eq!(refused.status, 503, "{:?}", refused.body);
    assert_eq!(refused.json()["error"]["code"], "fleet_unavailable");
    let forced = admin(
        a,
        "POST",
        "/admin/routes/support/rollback?local=true",
        OPERATOR,
        Some(json!({"reason": "Redis is down and green is bad"})),
    )
    .await;
    assert_eq!(forced.status, 200, "{:?}", forced.body);
    assert_eq!(phase(a), "rolled_back");
    assert_ne!(phase(b), "rolled_back", "only on A while Redis is out");
    rig.redis.resume();
    wait(
        Duration::from_secs(5),
        "the local rollback replayed to B",
        || phase(b) == "rolled_back",
    )
    .await;
}

fn downgrade(gw: &Running) -> Option<String> {
    gw.controller
        .steering()
        .get("support")
        .and_then(|s| s.downgrade_to.as_deref().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_rollout_an_approved_downgrade_reaches_every_replica() {
    let Some(rig) = rig(2, HOLD).await else {
        return;
    };
    let [a, b] = &rig.replicas[..] else {
        unreachable!()
    };
    for i in 0..4 {
        ask(a, &format!("user-{i}")).await;
    }
    wait(
        Duration::from_secs(5),
        "the rule awaiting approval on A",
        || {
            a.controller
                .rules_firing()
                .iter()
                .any(|f| f.awaiting_approval)
        },
    )
    .await;
    let path = "/admin/rules/cost_guard/approve";
    let approved = admin(a, "POST", path, OPERATOR, Some(json!({}))).await;
    assert_eq!(approved.status, 200, "{:?}", approved.body);
    assert_eq!(
        downgrade(a).as_deref(),
        Some("gpt-4o-mini"),
        "answered after the local apply"
    );
    let bound = Duration::from_millis(INTERVAL_MS + 200);
    wait(bound, "the downgrade on B", || {
        downgrade(b).as_deref() == Some("gpt-4o-mini")
    })
    .await;

    // Lifted from the other replica, for both.
    let path = "/admin/rules/cost_guard/release";
    let released = admin(b, "POST", path, OPERATOR, Some(json!({}))).await;
    assert_eq!(released.status, 200, "{:?}", released.body);
    assert_eq!(downgrade(b), None);
    wait(bound, "the downgrade lifted on A", || {
        downgrade(a).is_none()
    })
    .await;
}
