//! Fleet mode across separate processes: a real redis-server and three `switchyard serve`
//! processes, each with its own config and state_dir, talked to over HTTP only. What one
//! process is told through its admin API, the others do; a process killed with SIGKILL takes
//! nothing shared with it; a percent kill picks the same users everywhere; the enforced token
//! budget holds across processes.

mod harness;

use std::time::Duration;

use serde_json::{json, Value};
use switchyard_llm::{Dialect, Operation};
use switchyard_sim::Profile;

use crate::common::{metric, post_json, sim, Answer};
use harness::{is_fallback, Fleet, Replica, Upstream, INTERVAL_MS};

/// How long a change made on one replica may take to show on another: pub/sub carries it
/// in milliseconds, a lost message costs one reconcile interval; the rest is slack for a
/// busy machine.
const PROPAGATION: Duration = Duration::from_millis(INTERVAL_MS * 4);

async fn kill(replica: &Replica, reason: &str) -> Answer {
    let body = json!({ "reason": reason });
    replica
        .admin("POST", "/admin/routes/r/kill", Some(body))
        .await
}

async fn revive(replica: &Replica) -> Answer {
    replica
        .admin("DELETE", "/admin/routes/r/kill", Some(json!({})))
        .await
}

/// The fleet state version a replica has applied, as `/admin/status` and its metric say.
async fn version(replica: &Replica) -> u64 {
    let doc = replica.status().await;
    assert_eq!(doc["fleet"]["mode"], "shared", "{}", doc["fleet"]);
    assert_eq!(doc["fleet"]["instance_id"], replica.id.as_str());
    let version = doc["fleet"]["state_version"].as_u64().unwrap();
    let exported = metric(
        &replica.metrics().await,
        "switchyard_fleet_state_version",
        &[],
    );
    assert_eq!(exported, version as f64, "replica {}", replica.id);
    version
}

/// The ids of the members a replica's last heartbeat saw.
async fn members(replica: &Replica) -> Vec<String> {
    let doc = replica.status().await;
    doc["fleet"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["instance_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls (bounded) until a replica's heartbeat sees exactly `wanted`.
async fn until_members(replica: &Replica, wanted: &[&str], within: Duration) {
    let started = std::time::Instant::now();
    loop {
        let seen = members(replica).await;
        if seen == wanted {
            return;
        }
        assert!(
            started.elapsed() < within,
            "replica {} sees members {seen:?}, not {wanted:?}",
            replica.id
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_kill_on_one_process_reaches_the_others_and_a_revive_on_a_third_reaches_all() {
    let Some(f) = Fleet::start(3, Upstream::Embedded("instant"), "").await else {
        return;
    };
    let [a, b, c] = &f.replicas[..] else {
        unreachable!()
    };
    for replica in [a, b, c] {
        let answer = replica.ask().await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert!(!is_fallback(&answer), "replica {} serves", replica.id);
    }

    let killed = kill(a, "bad answers").await;
    assert_eq!(killed.status, 200, "{:?}", killed.body);
    assert!(
        is_fallback(&a.ask().await),
        "A's 200 comes after A applied the kill"
    );
    for replica in [b, c] {
        replica.until_fallback(true, PROPAGATION).await;
        let switch = replica.kill_switch().await;
        assert_eq!(switch["reason"], "bad answers", "{switch}");
        assert_eq!(switch["by"], "oncall", "{switch}");
    }
    let after_kill = version(a).await;
    for replica in [b, c] {
        assert_eq!(version(replica).await, after_kill, "replica {}", replica.id);
    }

    let revived = revive(c).await;
    assert_eq!(revived.status, 200, "{:?}", revived.body);
    assert!(!is_fallback(&c.ask().await), "C serves once its 200 came");
    for replica in [a, b] {
        replica.until_fallback(false, PROPAGATION).await;
        assert_eq!(replica.kill_switch().await, Value::Null);
    }
    let after_revive = version(c).await;
    assert!(after_revive > after_kill, "{after_revive} > {after_kill}");
    for replica in [a, b] {
        assert_eq!(
            version(replica).await,
            after_revive,
            "replica {}",
            replica.id
        );
    }
}

#[tokio::test]
async fn a_replica_killed_with_sigkill_takes_no_kill_with_it_and_a_new_one_starts_killed() {
    let Some(mut f) = Fleet::start(3, Upstream::Embedded("instant"), "").await else {
        return;
    };
    until_members(&f.replicas[0], &["g0", "g1", "g2"], PROPAGATION * 2).await;
    let killed = kill(&f.replicas[0], "bad answers").await;
    assert_eq!(killed.status, 200, "{:?}", killed.body);
    for replica in &f.replicas[1..] {
        replica.until_fallback(true, PROPAGATION).await;
    }

    let status = f.replicas[2].crash();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "{status}"
    );
    drop(f.replicas.pop());
    // The survivors' heartbeats drop the dead replica three intervals after its last one:
    // by then they have reconciled several times without it.
    for replica in &f.replicas {
        until_members(replica, &["g0", "g1"], PROPAGATION * 2).await;
        let answer = replica.ask().await;
        assert!(
            is_fallback(&answer),
            "replica {} keeps the kill",
            replica.id
        );
        assert_eq!(replica.kill_switch().await["reason"], "bad answers");
    }

    // A new process with an empty state_dir: what it knows of the kill comes from Redis.
    let joiner = f.join("g3").await;
    let first = joiner.ask().await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert!(
        is_fallback(&first),
        "the new replica's very first request gets the fallback"
    );
    assert_eq!(joiner.ready().await["fleet"], "shared");
    assert_eq!(joiner.kill_switch().await["reason"], "bad answers");

    // It is a full member: a revive made on it reaches the survivors.
    assert_eq!(revive(&joiner).await.status, 200);
    for replica in &f.replicas {
        replica.until_fallback(false, PROPAGATION).await;
    }
    until_members(&joiner, &["g0", "g1", "g3"], PROPAGATION * 2).await;
}

#[tokio::test]
async fn a_percent_kill_made_on_one_process_kills_the_same_users_on_every_process() {
    let Some(f) = Fleet::start(3, Upstream::Embedded("instant"), "").await else {
        return;
    };
    let [a, b, c] = &f.replicas[..] else {
        unreachable!()
    };
    let body = json!({"reason": "canary", "percent": 30.0});
    let killed = b.admin("POST", "/admin/routes/r/kill", Some(body)).await;
    assert_eq!(killed.status, 200, "{:?}", killed.body);
    for replica in [a, c] {
        let started = std::time::Instant::now();
        while replica.kill_switch().await["percent"] != 30.0 {
            assert!(
                started.elapsed() < PROPAGATION,
                "replica {}: {}",
                replica.id,
                replica.kill_switch().await
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Each process picks the killed users by the same sticky hash of the user key.
    let mut picked = Vec::new();
    for replica in [a, b, c] {
        let mut users = Vec::new();
        for n in 0..60 {
            let user = format!("user-{n}");
            let answer = replica.ask_as(&user).await;
            assert_eq!(answer.status, 200, "{:?}", answer.body);
            if is_fallback(&answer) {
                users.push(user);
            }
        }
        picked.push(users);
    }
    assert!(
        (8..=28).contains(&picked[0].len()),
        "about 30 % of 60 users: {:?}",
        picked[0]
    );
    assert_eq!(picked[0], picked[1], "A and B kill the same users");
    assert_eq!(picked[1], picked[2], "B and C kill the same users");
}

/// The completion cap of every budget request.
const MAX_TOKENS: u64 = 100;
/// What the simulator reports per request: 10 prompt + 16 completion tokens.
const SPENT: u64 = 26;

fn budget_body() -> Value {
    json!({
        "model": "gpt-4o",
        "max_tokens": MAX_TOKENS,
        "messages": [{"role": "user", "content": "Where is my parcel? It was due on Monday."}]
    })
}

/// The tokens a gateway reserves for [`budget_body`]: its prompt estimate and the cap.
fn estimate() -> u64 {
    let bytes = serde_json::to_vec(&budget_body()).unwrap();
    let inspected =
        switchyard_llm::inspect(Dialect::OpenAi, Operation::ChatCompletions, &bytes, &[]);
    inspected.prompt_tokens_estimate + MAX_TOKENS
}

/// Today's used and reserved tokens, as Redis holds them.
async fn totals(f: &Fleet) -> (u64, u64) {
    let mut conn = f.redis.conn().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:v1:budget:*:totals", f.ns))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.len() <= 1, "one budget day: {keys:?}");
    let Some(key) = keys.first() else {
        return (0, 0);
    };
    let (used, reserved): (Option<u64>, Option<u64>) = redis::cmd("HMGET")
        .arg(key)
        .arg("used")
        .arg("reserved")
        .query_async(&mut conn)
        .await
        .unwrap();
    (used.unwrap_or(0), reserved.unwrap_or(0))
}

// Long: one scenario told in order; each step starts from the state the previous one left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_budget_admits_no_more_than_the_budget_across_three_processes() {
    const BURST: usize = 150;
    let e = estimate();
    let budget = 20 * e + e / 2;
    let budgets = format!(
        "[budgets]\ndaily_tokens = {budget}\nenforce = true\noutage_policy = \"fail_closed\"\n"
    );
    // The upstream holds every answer for 3 s: every reservation is made before the first
    // one settles, so the budget bounds the admitted estimates themselves.
    let profile = Profile {
        ttfb_ms: 3000.0,
        prompt_tokens: Some(10),
        completion_tokens: 16,
        ..Profile::default()
    };
    let (upstream, addr) = sim(profile).await;
    let Some(f) = Fleet::start(3, Upstream::At(addr), &budgets).await else {
        return;
    };
    let addrs: Vec<_> = f.replicas.iter().map(|r| r.traffic).collect();
    let burst: Vec<_> = (0..BURST)
        .map(|i| {
            let traffic = addrs[i % addrs.len()];
            tokio::spawn(async move {
                post_json(traffic, "/v1/chat/completions", &[], budget_body()).await
            })
        })
        .collect();
    let (mut ok, mut exhausted, mut other) = (0, 0, Vec::new());
    for task in burst {
        let answer = task.await.unwrap();
        let code = answer.headers.get("x-switchyard-error").cloned();
        match (answer.status.as_u16(), code) {
            (200, None) => ok += 1,
            (429, Some(code)) if code == "budget_exhausted" => exhausted += 1,
            (status, code) => other.push((status, code, answer.body)),
        }
    }
    assert!(other.is_empty(), "{other:?}");
    assert_eq!(ok + exhausted, BURST);
    assert_eq!(ok, 20, "exactly the estimates that fit were admitted");
    assert_eq!(
        upstream.requests(),
        20,
        "only admitted requests went upstream"
    );

    let mut refused = 0.0;
    for replica in &f.replicas {
        let text = replica.metrics().await;
        refused += metric(
            &text,
            "switchyard_budget_refused_total",
            &[("route", "r"), ("reason", "budget_exhausted")],
        );
    }
    assert_eq!(
        refused, exhausted as f64,
        "each process counted its refusals"
    );
    // Settlements are queued and sent by each process's own task.
    let started = std::time::Instant::now();
    while totals(&f).await != (20 * SPENT, 0) && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        totals(&f).await,
        (20 * SPENT, 0),
        "each admitted request settled once, with what it reported"
    );
}
