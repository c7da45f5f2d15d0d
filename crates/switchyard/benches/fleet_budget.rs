//! The fleet's token budget: Redis operations per 1,000 requests and the latency a request
//! gains from its reservation, exact mode against lease mode (three in-process replicas, each
//! with its own Redis client, one real redis-server), against the same fleet without an
//! enforced budget.
//!
//! `cargo bench -p switchyard --bench fleet_budget [-- REQUESTS]` (default 1,000 per run).
//! Needs `redis-server` on the PATH.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// A benchmark times real servers on the real clock.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "support/redis.rs"]
mod redis_support;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use redis_support::{redis_conn, start_redis};
use switchyard_control::fleet::budget::GateFleet;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

const BODY: &str = r#"{"model":"gpt-4o","max_tokens":64,"messages":[{"role":"user","content":"Where is my parcel?"}]}"#;
/// Concurrent clients in the throughput runs.
const CONCURRENCY: usize = 24;

fn main() {
    let requests: usize = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(requests));
}

/// `INFO commandstats` as (command, calls), with the total.
async fn commandstats(conn: &mut redis::aio::MultiplexedConnection) -> Vec<(String, u64)> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

/// Calls per command between two snapshots, the `INFO` calls themselves left out.
fn delta(before: &[(String, u64)], after: &[(String, u64)]) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = after
        .iter()
        .filter(|(name, _)| name != "info")
        .map(|(name, calls)| {
            let was = before
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, c)| *c);
            (name.clone(), calls - was)
        })
        .filter(|(_, d)| *d > 0)
        .collect();
    out.sort_by_key(|(_, calls)| std::cmp::Reverse(*calls));
    out
}

async fn gateway(
    dir: &Path,
    up: std::net::SocketAddr,
    id: &str,
    port: u16,
    budgets: &str,
) -> switchyard::Running {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n\
         [log]\nlevel = \"warn\"\n[upstreams.up]\nurl = \"http://{up}\"\n[[routes]]\nname = \"r\"\nupstream = \"up\"\n\
         [budgets]\n{budgets}\n\
         [fleet]\nredis_url = \"redis://127.0.0.1:{port}\"\nnamespace = \"bench-{id}\"\ninstance_id = \"{id}\"\n\
         command_timeout = \"250ms\"\n",
        dir.join(format!("state-{id}")).display()
    );
    let config = switchyard_config::Config::parse(&text, "bench.toml", dir).unwrap();
    switchyard::start(config).await.unwrap()
}

/// The sum of a metric's samples in the admin exposition, labels containing `labels`.
async fn metric(client: &HttpClient, admin: std::net::SocketAddr, name: &str, labels: &str) -> f64 {
    let req = Request::get(format!("http://{admin}/metrics"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let body = client
        .request(req)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap();
    String::from_utf8_lossy(&body.to_bytes())
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn ask(client: &HttpClient, url: &str) -> u16 {
    let req = Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(BODY.as_bytes())))
        .unwrap();
    let response = client.request(req).await.unwrap();
    let status = response.status().as_u16();
    response.into_body().collect().await.unwrap();
    status
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

/// p50 and p99 of `n` sequential requests to one replica, in microseconds.
async fn sequential(client: &HttpClient, url: &str, n: usize) -> (f64, f64) {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        assert_eq!(ask(client, url).await, 200);
        v.push(t.elapsed().as_secs_f64() * 1e6);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    (percentile(&v, 0.5), percentile(&v, 0.99))
}

/// `n` requests from `CONCURRENCY` clients spread over the replicas; requests per second.
async fn concurrent(client: &HttpClient, urls: &[String], n: usize) -> f64 {
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (client, urls, next) = (client.clone(), urls.to_vec(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    assert_eq!(ask(&client, &urls[i % urls.len()]).await, 200);
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

struct Mode {
    name: &'static str,
    budgets: &'static str,
}

const MODES: [Mode; 3] = [
    Mode {
        name: "no enforced budget",
        budgets: "daily_tokens = 1000000000000\n",
    },
    Mode {
        name: "exact",
        budgets: "daily_tokens = 1000000000000\nenforce = true\n",
    },
    Mode {
        name: "lease 20,000",
        budgets: "daily_tokens = 1000000000000\nenforce = true\nlease_tokens = 20000\n",
    },
];

async fn run(requests: usize) {
    let dir = std::env::temp_dir().join(format!("switchyard-budget-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (mut redis, port) = start_redis(&dir);
    let mut conn = redis_conn(port).await;
    let sim = switchyard_sim::Sim::new(switchyard_sim::named("instant").unwrap());
    let (up, _task) = switchyard_sim::spawn("127.0.0.1:0".parse().unwrap(), sim)
        .await
        .unwrap();
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    println!("fleet token budget: 3 replicas, one redis-server, {requests} requests per run\n");
    println!("| mode | sequential p50 | sequential p99 | {CONCURRENCY} clients, req/s | budget scripts (EVALSHA) per 1,000 requests | all Redis commands per 1,000 requests | admissions by the outage policy |");
    println!("|---|---|---|---|---|---|---|");
    for (m, mode) in MODES.iter().enumerate() {
        let mut fleet = Vec::new();
        for r in 0..3 {
            fleet.push(gateway(&dir, up, &format!("m{m}r{r}"), port, mode.budgets).await);
        }
        let urls: Vec<String> = fleet
            .iter()
            .map(|gw| format!("http://{}/v1/chat/completions", gw.traffic))
            .collect();
        sequential(&client, &urls[0], 200).await; // warm-up
        let outage = "switchyard_budget_outage_admissions_total";
        let outage_before = metric(&client, fleet[0].admin, outage, "").await;
        let (p50, p99) = sequential(&client, &urls[0], requests).await;
        let before = commandstats(&mut conn).await;
        let rate = concurrent(&client, &urls, requests).await;
        // The settlements still queued reach Redis before the count is read.
        for gw in &fleet {
            if let Some(f) = gw.gateway.budget().and_then(|g| g.fleet()) {
                f.close(Duration::from_secs(5)).await;
            }
        }
        let d = delta(&before, &commandstats(&mut conn).await);
        let per = |calls: u64| calls as f64 * 1000.0 / requests as f64;
        let evalsha = d
            .iter()
            .filter(|(n, _)| n == "evalsha" || n == "eval")
            .map(|(_, c)| *c)
            .sum::<u64>();
        let all: u64 = d.iter().map(|(_, c)| *c).sum();
        let outage = metric(&client, fleet[0].admin, outage, "").await - outage_before;
        println!(
            "| {} | {p50:.0} µs | {p99:.0} µs | {rate:.0} | {:.1} | {:.1} | {outage} |",
            mode.name,
            per(evalsha),
            per(all)
        );
        eprintln!("  {}: {:?}", mode.name, d);
        for gw in fleet {
            gw.stop().await;
        }
    }
    println!("\n(\"all commands\" counts the commands the scripts run inside Redis too, and the fleet's own reconciles and heartbeats.)");
    let _ = redis.kill();
    let _ = redis.wait();
    std::fs::remove_dir_all(&dir).ok();
}
