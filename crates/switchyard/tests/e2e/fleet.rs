//! Fleet mode: several in-process gateways, each with its own Redis client, sharing kill
//! switches through a real redis-server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use switchyard::Running;
use switchyard_sim::Profile;

use crate::common::*;
use crate::redis_server::{redis_namespace, RedisServer};

const FALLBACK: &str =
    "[routes.kill_switch]\nfallback = { text = \"Resting; a person will answer.\" }\n";
const INTERVAL_MS: u64 = 500;

async fn replica(redis_url: &str, ns: &str, id: &str, upstream: &str) -> Running {
    let config = format!(
        "{}{}{FALLBACK}\n[fleet]\nredis_url = \"{redis_url}\"\nnamespace = \"{ns}\"\ninstance_id = \"{id}\"\n\
         reconcile_interval = \"{INTERVAL_MS}ms\"\ncommand_timeout = \"200ms\"\n",
        admin_tokens(),
        one_route("r", upstream, ""),
    );
    gateway(&config).await
}

struct Fleet {
    redis: RedisServer,
    ns: String,
    upstream: String,
    replicas: Vec<Running>,
}

async fn fleet(n: usize) -> Option<Fleet> {
    let redis = RedisServer::start().await?;
    let (_sim, up) = sim(Profile::default()).await;
    let (ns, upstream) = (redis_namespace("ns"), format!("http://{up}"));
    let mut replicas = Vec::new();
    for i in 0..n {
        replicas.push(replica(&redis.url(), &ns, &format!("g{i}"), &upstream).await);
    }
    Some(Fleet {
        redis,
        ns,
        upstream,
        replicas,
    })
}

fn killed(gw: &Running) -> Option<Option<f64>> {
    gw.gateway.kills().get("r").map(|k| k.percent)
}

async fn kill(gw: &Running, query: &str, body: serde_json::Value) -> Answer {
    admin(
        gw,
        "POST",
        &format!("/admin/routes/r/kill{query}"),
        OPERATOR,
        Some(body),
    )
    .await
}

async fn revive(gw: &Running) -> Answer {
    admin(
        gw,
        "DELETE",
        "/admin/routes/r/kill",
        OPERATOR,
        Some(json!({})),
    )
    .await
}

async fn ask(gw: &Running) -> Answer {
    post_json(
        gw.traffic,
        "/v1/chat/completions",
        &[("x-user-id", "u1")],
        chat("gpt-4o", false),
    )
    .await
}

async fn status(gw: &Running) -> serde_json::Value {
    admin(gw, "GET", "/admin/status", VIEWER, None).await.json()
}

#[tokio::test]
async fn kills_partial_kills_and_revives_reach_every_replica() {
    let Some(f) = fleet(3).await else { return };
    let [a, b, c] = &f.replicas[..] else {
        unreachable!()
    };
    let answer = kill(a, "", json!({"reason": "bad answers"})).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(
        killed(a),
        Some(None),
        "the answer comes after the local apply"
    );
    let bound = Duration::from_millis(INTERVAL_MS + 100);
    until(bound, || killed(b).is_some() && killed(c).is_some())
        .await
        .expect("kill reached B and C");
    let fallback = ask(b).await;
    assert!(
        fallback.headers.contains_key("x-switchyard-fallback"),
        "B answers with the fallback"
    );

    let answer = kill(b, "", json!({"reason": "half", "percent": 30.0})).await;
    assert_eq!(answer.status, 200);
    until(bound, || {
        killed(a) == Some(Some(30.0)) && killed(c) == Some(Some(30.0))
    })
    .await
    .expect("the partial kill replaced the full one everywhere");

    assert_eq!(revive(c).await.status, 200);
    until(bound, || killed(a).is_none() && killed(b).is_none())
        .await
        .expect("revive reached A and B");
    let versions: Vec<u64> = [a, b, c]
        .iter()
        .map(|g| g.fleet.as_ref().unwrap().status().state_version)
        .collect();
    assert!(
        versions.iter().all(|v| *v == versions[0] && *v >= 3),
        "{versions:?}"
    );
    let doc = status(a).await;
    assert_eq!(doc["fleet"]["mode"], "shared");
    assert_eq!(doc["fleet"]["instance_id"], "g0");
}

#[tokio::test]
async fn status_lists_the_members_with_their_version_and_config_hash() {
    let Some(f) = fleet(3).await else { return };
    let a = &f.replicas[0];
    let deadline = Instant::now() + Duration::from_millis(3 * INTERVAL_MS + 1000);
    let doc = loop {
        let doc = status(a).await;
        if doc["fleet"]["members"]
            .as_array()
            .is_some_and(|m| m.len() == 3)
        {
            break doc;
        }
        assert!(Instant::now() < deadline, "members: {}", doc["fleet"]);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let members = doc["fleet"]["members"].as_array().unwrap();
    let ids: Vec<&str> = members
        .iter()
        .map(|m| m["instance_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["g0", "g1", "g2"]);
    // Each test replica's file names its own instance_id, so the hashes differ here; with
    // the default (the host name) identical files give identical hashes.
    assert_eq!(members[0]["config_version"], doc["config_version"]);
    assert!(members
        .iter()
        .all(|m| m["config_version"].as_str().unwrap().len() == 16));
    assert!(members
        .iter()
        .all(|m| m["state_version"] == doc["fleet"]["state_version"]));
}

#[tokio::test]
async fn a_replica_joining_while_a_kill_is_engaged_answers_its_first_request_with_the_fallback() {
    let Some(f) = fleet(1).await else { return };
    assert_eq!(
        kill(&f.replicas[0], "", json!({"reason": "x"}))
            .await
            .status,
        200
    );
    let joiner = replica(&f.redis.url(), &f.ns, "late", &f.upstream).await;
    assert_eq!(
        get(joiner.traffic, "/ready").await.json()["fleet"],
        "shared"
    );
    let first = ask(&joiner).await;
    assert!(
        first.headers.contains_key("x-switchyard-fallback"),
        "first request: {:?}",
        first.body
    );
}

#[tokio::test]
async fn a_cut_subscription_costs_at_most_one_reconcile_interval() {
    let Some(f) = fleet(2).await else { return };
    let [a, b] = &f.replicas[..] else {
        unreachable!()
    };
    let mut conn = f.redis.conn().await;
    for round in 0..3 {
        let _: redis::Value = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut conn)
            .await
            .unwrap();
        let reason = format!("round {round}");
        assert_eq!(kill(a, "", json!({"reason": reason})).await.status, 200);
        let took = until(Duration::from_secs(5), || {
            b.gateway
                .kills()
                .get("r")
                .is_some_and(|k| k.reason == reason)
        })
        .await
        .expect("the kill reached B");
        assert!(
            took <= Duration::from_millis(INTERVAL_MS + 100),
            "took {took:?}"
        );
    }
}

#[tokio::test]
async fn with_redis_paused_traffic_flows_changes_are_refused_and_local_overrides_replay() {
    let Some(f) = fleet(2).await else { return };
    let [a, b] = &f.replicas[..] else {
        unreachable!()
    };
    assert_eq!(kill(a, "", json!({"reason": "before"})).await.status, 200);
    until(Duration::from_secs(2), || killed(b).is_some())
        .await
        .expect("kill reached B");
    f.redis.pause();
    // Traffic: answered from the last known state, the kill still honoured.
    for _ in 0..20 {
        let answer = ask(b).await;
        assert_eq!(answer.status, 200);
        assert!(answer.headers.contains_key("x-switchyard-fallback"));
    }
    let refused = revive(a).await;
    assert_eq!(refused.status, 503, "{:?}", refused.body);
    assert_eq!(refused.json()["error"]["code"], "fleet_unavailable");
    assert!(killed(a).is_some(), "a refused revive changes nothing");
    let forced = admin(
        a,
        "DELETE",
        "/admin/routes/r/kill?local=true",
        OPERATOR,
        Some(json!({})),
    )
    .await;
    assert_eq!(forced.status, 200, "{:?}", forced.body);
    assert!(killed(a).is_none());
    let doc = status(a).await;
    assert_eq!(doc["fleet"]["divergent"], true);
    assert_eq!(doc["fleet"]["mode"], "degraded");
    assert!(
        killed(b).is_some(),
        "B is not revived by A's local override"
    );
    f.redis.resume();
    until(Duration::from_millis(3 * INTERVAL_MS + 1000), || {
        killed(b).is_none()
    })
    .await
    .expect("the override was replayed into Redis and reached B");
    let doc = status(a).await;
    assert_eq!(doc["fleet"]["divergent"], false);
    assert_eq!(doc["fleet"]["mode"], "shared");
}

#[tokio::test]
async fn redis_killed_under_load_fails_no_request() {
    let Some(mut f) = fleet(2).await else { return };
    let replicas: Vec<Arc<Running>> = f.replicas.drain(..).map(Arc::new).collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = || answered.load(std::sync::atomic::Ordering::Relaxed);
    let mut workers = Vec::new();
    for gw in replicas.iter().cycle().take(6) {
        let (gw, stop, answered) = (Arc::clone(gw), stop.clone(), answered.clone());
        workers.push(tokio::spawn(async move {
            let (mut sent, mut failed) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                sent += 1;
                failed += usize::from(ask(&gw).await.status != 200);
                answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            (sent, failed)
        }));
    }
    until(Duration::from_secs(10), || count() >= 50)
        .await
        .expect("traffic flows before the outage");
    f.redis.stop();
    until(Duration::from_secs(5), || {
        replicas.iter().all(|g| !g.fleet.as_ref().unwrap().is_up())
    })
    .await
    .expect("both replicas noticed");
    // Traffic goes on while Redis is down.
    let at_outage = count();
    until(Duration::from_secs(10), || count() >= at_outage + 50)
        .await
        .expect("traffic flows during the outage");
    f.redis.restart_empty().await;
    until(Duration::from_secs(5), || {
        replicas.iter().all(|g| g.fleet.as_ref().unwrap().is_up())
    })
    .await
    .expect("both replicas reconnected");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for worker in workers {
        let (sent, failed) = worker.await.unwrap();
        assert!(sent > 0);
        assert_eq!(failed, 0);
    }
}

#[tokio::test]
async fn redis_restarted_empty_gets_the_fleets_last_state_back() {
    let Some(mut f) = fleet(2).await else { return };
    assert_eq!(
        kill(&f.replicas[0], "", json!({"reason": "keep me"}))
            .await
            .status,
        200
    );
    until(Duration::from_secs(2), || killed(&f.replicas[1]).is_some())
        .await
        .expect("kill reached B");
    let version = f.replicas[0].fleet.as_ref().unwrap().status().state_version;
    f.redis.restart_empty().await;
    let mut conn = f.redis.conn().await;
    let key = format!("{}:v1:state", f.ns);
    let mut restored = 0;
    let deadline = Instant::now() + Duration::from_millis(3 * INTERVAL_MS + 2000);
    while Instant::now() < deadline {
        let v: Option<u64> = redis::cmd("HGET")
            .arg(&key)
            .arg("version")
            .query_async(&mut conn)
            .await
            .unwrap();
        restored = v.unwrap_or(0);
        if restored >= version {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        restored >= version,
        "Redis holds version {restored}, the fleet had {version}"
    );
    assert!(
        f.replicas.iter().all(|g| killed(g).is_some()),
        "never auto-revived"
    );
    let joiner = replica(&f.redis.url(), &f.ns, "late", &f.upstream).await;
    assert!(
        killed(&joiner).is_some(),
        "a replica joining after the restart sees the kill"
    );
}

#[tokio::test]
async fn without_redis_at_start_a_replica_serves_degraded() {
    if !crate::redis_server::available() {
        return;
    }
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_sim, up) = sim(Profile::default()).await;
    let gw = replica(
        &format!("redis://127.0.0.1:{closed}"),
        &redis_namespace("ns"),
        "lonely",
        &format!("http://{up}"),
    )
    .await;
    let doc = status(&gw).await;
    assert_eq!(doc["fleet"]["mode"], "degraded");
    assert_eq!(doc["fleet"]["redis_up"], false);
    assert_eq!(ask(&gw).await.status, 200, "traffic flows without Redis");
    let ready = get(gw.traffic, "/ready").await;
    assert_eq!(ready.json()["fleet"], "degraded", "{:?}", ready.body);
    assert_eq!(kill(&gw, "", json!({"reason": "x"})).await.status, 503);
}
