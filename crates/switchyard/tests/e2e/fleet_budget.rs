//! Token budgets enforced by reservation: one replica in-process, several sharing Redis
//! (exact and lease mode), and the outage policies with Redis paused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use switchyard::Running;
use switchyard_control::fleet::budget::GateFleet;
use switchyard_llm::{Dialect, Operation};
use switchyard_sim::Profile;

use crate::common::*;
use crate::redis_server::{redis_namespace, RedisServer};

/// The completion cap every request here sets.
const MAX_TOKENS: u64 = 100;
/// What the simulator reports per request: 10 prompt + 16 completion tokens.
const SPENT: u64 = 26;

fn body() -> serde_json::Value {
    json!({
        "model": "gpt-4o",
        "max_tokens": MAX_TOKENS,
        "messages": [{"role": "user", "content": "Where is my parcel? It was due on Monday."}]
    })
}

/// The tokens the gateway reserves for [`body`]: its prompt estimate and the cap.
fn estimate() -> u64 {
    let bytes = serde_json::to_vec(&body()).unwrap();
    let inspected =
        switchyard_llm::inspect(Dialect::OpenAi, Operation::ChatCompletions, &bytes, &[]);
    inspected.prompt_tokens_estimate + MAX_TOKENS
}

fn profile(ttfb_ms: f64) -> Profile {
    Profile {
        ttfb_ms,
        prompt_tokens: Some(10),
        completion_tokens: 16,
        ..Profile::default()
    }
}

async fn ask(gw: &Running) -> Answer {
    post_json(gw.traffic, "/v1/chat/completions", &[], body()).await
}

/// How a burst of requests was answered.
#[derive(Debug, Default)]
struct Tally {
    ok: usize,
    exhausted: usize,
    unavailable: usize,
    other: Vec<(u16, String)>,
}

impl Tally {
    fn add(&mut self, answer: &Answer) {
        let code = answer
            .headers
            .get("x-switchyard-error")
            .map(|v| v.to_str().unwrap().to_owned());
        match (answer.status.as_u16(), code.as_deref()) {
            (200, None) => self.ok += 1,
            (429, Some("budget_exhausted")) => self.exhausted += 1,
            (503, Some("budget_unavailable")) => self.unavailable += 1,
            (status, code) => self.other.push((status, code.unwrap_or("-").to_owned())),
        }
    }
}

/// `n` requests at once, spread round-robin over the replicas.
async fn burst(replicas: &[Arc<Running>], n: usize) -> Tally {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let gw = replicas[i % replicas.len()].clone();
            tokio::spawn(async move { ask(&gw).await })
        })
        .collect();
    let mut tally = Tally::default();
    for task in tasks {
        tally.add(&task.await.unwrap());
    }
    tally
}

async fn replica(
    redis: &RedisServer,
    ns: &str,
    id: &str,
    upstream: &str,
    budgets: &str,
) -> Running {
    let config = format!(
        "{}\n[budgets]\n{budgets}\n[fleet]\nredis_url = \"{}\"\nnamespace = \"{ns}\"\ninstance_id = \"{id}\"\n\
         reconcile_interval = \"300ms\"\ncommand_timeout = \"1s\"\n",
        one_route("r", upstream, ""),
        redis.url(),
    );
    gateway(&config).await
}

struct Fleet {
    redis: RedisServer,
    ns: String,
    replicas: Vec<Arc<Running>>,
}

async fn fleet(n: usize, ttfb_ms: f64, budgets: &str) -> Option<Fleet> {
    let redis = RedisServer::start().await?;
    let (_sim, up) = sim(profile(ttfb_ms)).await;
    let (ns, upstream) = (redis_namespace("budget-ns"), format!("http://{up}"));
    let mut replicas = Vec::new();
    for i in 0..n {
        let gw = replica(&redis, &ns, &format!("g{i}"), &upstream, budgets).await;
        replicas.push(Arc::new(gw));
    }
    Some(Fleet {
        redis,
        ns,
        replicas,
    })
}

fn pending(gw: &Running) -> u64 {
    gw.gateway
        .budget()
        .and_then(|g| g.fleet())
        .map_or(0, |f| f.pending())
}

/// Waits until every replica's settlements reached Redis.
async fn settled(replicas: &[Arc<Running>]) {
    let all = until(Duration::from_secs(10), || {
        replicas.iter().all(|gw| pending(gw) == 0)
    })
    .await
    .is_some();
    assert!(all, "settlements still queued");
}

impl Fleet {
    /// Today's used and reserved tokens, as Redis holds them.
    async fn totals(&self) -> (u64, u64) {
        let mut conn = self.redis.conn().await;
        let pattern = format!("{}:v1:budget:*:totals", self.ns);
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(&pattern)
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
}

#[tokio::test]
async fn fleet_budget_exact_mode_admits_no_more_than_the_budget_across_three_replicas() {
    let e = estimate();
    let budget = 40 * e + e / 2;
    let budgets =
        format!("daily_tokens = {budget}\nenforce = true\noutage_policy = \"fail_closed\"\n");
    // The upstream holds every answer for 3 s: all 300 reservations are made before the
    // first one settles, so the budget bounds the admitted estimates themselves.
    let Some(f) = fleet(3, 3000.0, &budgets).await else {
        return;
    };
    let tally = burst(&f.replicas, 300).await;
    assert!(tally.other.is_empty(), "{:?}", tally.other);
    assert_eq!(tally.unavailable, 0, "Redis was up throughout");
    assert_eq!(tally.ok + tally.exhausted, 300);
    let admitted = tally.ok as u64 * e;
    assert!(
        admitted <= budget,
        "admitted {admitted} tokens of estimates over a budget of {budget}"
    );
    assert_eq!(tally.ok, 40, "every estimate that fitted was admitted");
    settled(&f.replicas).await;
    assert_eq!(
        f.totals().await,
        (40 * SPENT, 0),
        "each admitted request settled once, with what it reported"
    );
}

#[tokio::test]
async fn fleet_budget_lease_mode_overshoot_stays_within_replicas_times_the_lease() {
    let e = estimate();
    let (budget, lease) = (60 * e, 5 * e);
    let budgets = format!(
        "daily_tokens = {budget}\nenforce = true\nlease_tokens = {lease}\noutage_policy = \"fail_closed\"\n"
    );
    let Some(f) = fleet(3, 0.0, &budgets).await else {
        return;
    };
    let tally = burst(&f.replicas, 300).await;
    assert!(tally.other.is_empty(), "{:?}", tally.other);
    assert_eq!(tally.unavailable, 0);
    let spent = tally.ok as u64 * SPENT;
    // Requests settle as they finish and free their lease's room, so more are admitted than
    // the budget over the estimate; what they spend stays within the budget plus the bound.
    assert!(tally.ok as u64 >= budget / e, "admitted {}", tally.ok);
    for gw in &f.replicas {
        let fleet = gw.gateway.budget().and_then(|g| g.fleet()).unwrap();
        fleet.close(Duration::from_secs(5)).await;
    }
    settled(&f.replicas).await;
    let (used, reserved) = f.totals().await;
    assert_eq!(used, spent, "every request's tokens reached Redis, once");
    assert_eq!(reserved, 0, "closed leases hold nothing");
    assert!(
        used <= budget + 3 * lease,
        "used {used}, bound {}",
        budget + 3 * lease
    );
}

/// With Redis paused, a replica admits by its outage policy; nothing fails otherwise, and
/// what was spent reaches Redis once when it is back.
async fn outage(policy: &str) -> Option<(Tally, u64, u64, Fleet)> {
    let e = estimate();
    let budget = 20 * e;
    let budgets = format!(
        "daily_tokens = {budget}\nenforce = true\noutage_policy = \"{policy}\"\n\
         breaker_failures = 2\nbreaker_cooldown = \"200ms\"\n"
    );
    let f = fleet(2, 0.0, &budgets).await?;
    // Both replicas have seen each other and Redis's count before the outage.
    let members = until(Duration::from_secs(5), || {
        f.replicas
            .iter()
            .all(|gw| gw.fleet.as_ref().unwrap().status().members.len() == 2)
    })
    .await
    .is_some();
    assert!(members, "both replicas see two members");
    let before = burst(&f.replicas, 10).await;
    assert_eq!(before.ok, 10);
    settled(&f.replicas).await;
    assert_eq!(f.totals().await, (10 * SPENT, 0));
    f.redis.pause();
    let during = burst(&f.replicas, 100).await;
    f.redis.resume();
    settled(&f.replicas).await;
    let (used, reserved) = f.totals().await;
    assert_eq!(
        reserved, 0,
        "calls that timed out during the pause hold nothing once Redis runs them"
    );
    Some((during, used, budget, f))
}

#[tokio::test]
async fn fleet_budget_outage_fail_open_admits_everything_and_settles_it_once_redis_is_back() {
    let Some((during, used, _, _f)) = outage("fail_open").await else {
        return;
    };
    assert!(during.other.is_empty(), "{:?}", during.other);
    assert_eq!(during.ok, 100, "{during:?}");
    assert_eq!(used, 110 * SPENT, "spent during the outage counted once");
}

#[tokio::test]
async fn fleet_budget_outage_fail_closed_refuses_with_503_and_nothing_else_fails() {
    let Some((during, used, _, f)) = outage("fail_closed").await else {
        return;
    };
    assert!(during.other.is_empty(), "{:?}", during.other);
    assert_eq!(during.ok + during.unavailable, 100);
    assert!(during.unavailable >= 90, "{during:?}");
    assert_eq!(used, (10 + during.ok as u64) * SPENT);
    let mut last = None;
    for _ in 0..100 {
        let answer = ask(&f.replicas[0]).await;
        if answer.status == 200 {
            last = None;
            break;
        }
        last = Some((answer.status, answer.body));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last, None, "Redis back: admitted again");
}

#[tokio::test]
async fn fleet_budget_outage_local_share_admits_each_replicas_share_of_what_was_left() {
    let Some((during, used, budget, _f)) = outage("local_share").await else {
        return;
    };
    assert!(during.other.is_empty(), "{:?}", during.other);
    assert_eq!(during.unavailable, 0);
    // Each of the 2 replicas may spend (budget - used before) / 2 while Redis is away: 50
    // requests each are more than that, so the shares run out and nothing is overspent.
    let remaining = budget - 10 * SPENT;
    assert!(during.exhausted > 0, "the shares ran out: {during:?}");
    assert!(during.ok as u64 * SPENT <= remaining, "{during:?}");
    assert_eq!(used, (10 + during.ok as u64) * SPENT, "counted once");
}

#[tokio::test]
async fn fleet_budget_single_replica_enforce_refuses_in_the_clients_dialect() {
    let (_sim, up) = sim(profile(0.0)).await;
    let e = estimate();
    let budgets = format!("[budgets]\ndaily_tokens = {}\nenforce = true\n", 3 * e);
    let gw = gateway(&one_route("r", &format!("http://{up}"), &budgets)).await;
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(ask(&gw).await.status.as_u16());
    }
    // Each request reserves its estimate and settles 26: the budget admits until the
    // settled tokens leave no room for one more estimate.
    let admitted = statuses.iter().filter(|s| **s == 200).count() as u64;
    assert_eq!(admitted, (3 * e - e) / SPENT + 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429));
    let refused = ask(&gw).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.headers["x-switchyard-error"], "budget_exhausted");
    assert!(refused.headers.contains_key("retry-after"));
    let error = &refused.json()["error"];
    assert_eq!(error["code"], "budget_exhausted");
    assert_eq!(error["type"], "rate_limit_error");
    let anthropic = post_json(
        gw.traffic,
        "/v1/messages",
        &[("anthropic-version", "2023-06-01")],
        messages("claude-sonnet-4-6", false),
    )
    .await;
    assert_eq!(anthropic.status, 429);
    let body = anthropic.json();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(anthropic.headers["x-switchyard-error"], "budget_exhausted");
    let text = metrics(&gw).await;
    assert!(
        metric(
            &text,
            "switchyard_budget_refused_total",
            &[("route", "r"), ("reason", "budget_exhausted")]
        ) >= 2.0,
        "refusals are counted"
    );
}

#[tokio::test]
async fn fleet_budget_without_enforce_a_single_replica_only_counts() {
    let (_sim, up) = sim(profile(0.0)).await;
    let budgets = "[budgets]\ndaily_tokens = 30\n";
    let gw = gateway(&one_route("r", &format!("http://{up}"), budgets)).await;
    for _ in 0..5 {
        assert_eq!(
            ask(&gw).await.status,
            200,
            "a budget without enforce refuses nothing"
        );
    }
    assert_eq!(gw.gateway.signals().tokens_today(), 5 * SPENT);
}

#[tokio::test]
async fn fleet_budget_reservations_of_a_vanished_replica_expire() {
    let e = estimate();
    let budgets = format!(
        "daily_tokens = {}\nenforce = true\nreservation_ttl = \"1s\"\n",
        2 * e
    );
    let Some(f) = fleet(1, 0.0, &budgets).await else {
        return;
    };
    // What a replica that died mid-request leaves behind: a hold of the whole budget, due
    // to expire a second from now (Redis time), never settled.
    let mut conn = f.redis.conn().await;
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    let day = secs / 86_400 * 86_400;
    let prefix = format!("{}:v1:budget:{day}", f.ns);
    let expires = secs * 1000 + micros / 1000 + 1000;
    let _: () = redis::pipe()
        .cmd("HSET")
        .arg(format!("{prefix}:holds"))
        .arg("ghost")
        .arg(2 * e)
        .cmd("ZADD")
        .arg(format!("{prefix}:expiry"))
        .arg(expires)
        .arg("ghost")
        .cmd("HINCRBY")
        .arg(format!("{prefix}:totals"))
        .arg("reserved")
        .arg(2 * e)
        .query_async(&mut conn)
        .await
        .unwrap();
    let gw = &f.replicas[0];
    let refused = ask(gw).await;
    assert_eq!(refused.status, 429, "the ghost holds the whole budget");
    let started = Instant::now();
    let mut status = refused.status;
    while status != 200 && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        status = ask(gw).await.status;
    }
    assert_eq!(
        status, 200,
        "the hold expired and its tokens are free again"
    );
    settled(&f.replicas).await;
    assert_eq!(f.totals().await, (SPENT, 0), "the ghost cost nothing");
    let expired: Vec<String> = redis::cmd("SMEMBERS")
        .arg(format!("{prefix}:expired"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        expired,
        ["ghost"],
        "remembered, so a late settlement counts once"
    );
}

#[tokio::test]
async fn fleet_budget_two_requests_with_the_same_client_request_id_are_both_counted() {
    let budgets = "daily_tokens = 1000000\nenforce = true\n";
    let Some(f) = fleet(2, 0.0, budgets).await else {
        return;
    };
    for gw in &f.replicas {
        let answer = post_json(
            gw.traffic,
            "/v1/chat/completions",
            &[("x-request-id", "same")],
            body(),
        )
        .await;
        assert_eq!(answer.status, 200);
    }
    settled(&f.replicas).await;
    assert_eq!(
        f.totals().await,
        (2 * SPENT, 0),
        "one settlement each, neither lost"
    );
}
