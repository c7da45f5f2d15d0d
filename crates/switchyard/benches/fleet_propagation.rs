//! Fleet propagation: from a kill or revive answered on replica A to the effect on replicas B
//! and C (three in-process gateways, each with its own Redis client, one real redis-server);
//! then the per-request cost of fleet mode and the Redis commands per 1,000 requests.
//!
//! `cargo bench -p switchyard --bench fleet_propagation [-- TOGGLES]` (default 1,000).
//! Needs `redis-server` on the PATH.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// A benchmark times real servers on the real clock.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::time::{Duration, Instant};

#[path = "support/redis.rs"]
mod redis_support;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use redis_support::{redis_conn, start_redis};

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

const TOKEN: &str = "bench-operator-secret-0001";
const BODY: &str =
    r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Where is my parcel?"}]}"#;

async fn call(client: &HttpClient, method: &str, url: &str, body: &str) -> u16 {
    let req = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = client.request(req).await.unwrap();
    let status = response.status().as_u16();
    response.into_body().collect().await.unwrap();
    status
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

fn main() {
    let toggles: usize = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(toggles));
}

async fn commands(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn gateway(
    dir: &Path,
    up: std::net::SocketAddr,
    id: &str,
    fleet: Option<u16>,
) -> switchyard::Running {
    let fleet = fleet.map_or(String::new(), |port| {
        format!("[fleet]\nredis_url = \"redis://127.0.0.1:{port}\"\nnamespace = \"bench\"\ninstance_id = \"{id}\"\n")
    });
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n\
         [[admin.tokens]]\nname = \"bench\"\nrole = \"operator\"\nkind = \"human\"\ntoken_file = \"op.token\"\n\
         [log]\nlevel = \"warn\"\n[upstreams.up]\nurl = \"http://{up}\"\n[[routes]]\nname = \"flip\"\nupstream = \"up\"\n\
         [routes.kill_switch]\nfallback = {{ text = \"resting\" }}\n{fleet}",
        dir.join(format!("state-{id}")).display()
    );
    let config = switchyard_config::Config::parse(&text, "bench.toml", dir).unwrap();
    switchyard::start(config).await.unwrap()
}

/// Waits for the replica's kill board to show `engaged`; returns the milliseconds it took.
async fn effect(gw: &switchyard::Running, engaged: bool, since: Instant) -> f64 {
    while gw.gateway.kills().get("flip").is_some() != engaged {
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "no propagation in 10 s"
        );
        tokio::task::yield_now().await;
    }
    since.elapsed().as_secs_f64() * 1e3
}

/// Median and p99 of `n` sequential requests, in microseconds.
async fn request_cost(client: &HttpClient, gw: &switchyard::Running, n: usize) -> (f64, f64) {
    let url = format!("http://{}/v1/chat/completions", gw.traffic);
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        assert_eq!(call(client, "POST", &url, BODY).await, 200);
        v.push(t.elapsed().as_secs_f64() * 1e6);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    (percentile(&v, 0.5), percentile(&v, 0.99))
}

async fn run(toggles: usize) {
    let dir = std::env::temp_dir().join(format!("switchyard-fleet-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("op.token"), TOKEN).unwrap();
    let (mut redis, port) = start_redis(&dir);
    let mut conn = redis_conn(port).await;
    let sim = switchyard_sim::Sim::new(switchyard_sim::named("instant").unwrap());
    let (up, _task) = switchyard_sim::spawn("127.0.0.1:0".parse().unwrap(), sim)
        .await
        .unwrap();
    let a = gateway(&dir, up, "a", Some(port)).await;
    let b = gateway(&dir, up, "b", Some(port)).await;
    let c = gateway(&dir, up, "c", Some(port)).await;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let kill_url = format!("http://{}/admin/routes/flip/kill", a.admin);
    let (mut answer_ms, mut to_b, mut to_c) = (Vec::new(), Vec::new(), Vec::new());
    let mut from_call = Vec::new();
    let commands_before = commands(&mut conn).await;
    let started = Instant::now();
    for i in 0..toggles {
        let engage = i % 2 == 0;
        let t = Instant::now();
        let status = if engage {
            call(&client, "POST", &kill_url, r#"{"reason":"bench"}"#).await
        } else {
            call(&client, "DELETE", &kill_url, "{}").await
        };
        assert_eq!(status, 200);
        answer_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let answered = Instant::now();
        let (tb, tc) = tokio::join!(effect(&b, engage, answered), effect(&c, engage, answered));
        to_b.push(tb);
        to_c.push(tc);
        from_call.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let elapsed = started.elapsed();
    let per_toggle = (commands(&mut conn).await - commands_before) as f64 / toggles as f64;
    let mut both: Vec<f64> = to_b.iter().chain(&to_c).copied().collect();
    for v in [&mut answer_ms, &mut both, &mut from_call] {
        v.sort_by(|x, y| x.total_cmp(y));
    }
    println!("fleet propagation, {toggles} kill/revive toggles on A in {:.1} s, 3 replicas, one redis-server\n", elapsed.as_secs_f64());
    println!("| measure | p50 | p99 | max |\n|---|---|---|---|");
    for (name, v) in [
        ("admin call on A (CAS in Redis + local apply)", &answer_ms),
        ("A answered → effect on B and C", &both),
        ("call sent to A → effect on both B and C", &from_call),
    ] {
        println!(
            "| {name} | {:.3} ms | {:.3} ms | {:.3} ms |",
            percentile(v, 0.5),
            percentile(v, 0.99),
            v[v.len() - 1]
        );
    }
    println!("\nRedis commands per toggle, whole fleet: {per_toggle:.1}");

    let single = gateway(&dir, up, "single", None).await;
    request_cost(&client, &single, 500).await; // warm-up
    request_cost(&client, &a, 500).await;
    // Alternate the two so machine noise falls on both alike.
    let (mut single_p50, mut single_p99, mut fleet_p50, mut fleet_p99) = (0.0, 0.0, 0.0, 0.0);
    let before = commands(&mut conn).await;
    let measured = Instant::now();
    for _ in 0..5 {
        let (p50, p99) = request_cost(&client, &single, 1000).await;
        (single_p50, single_p99) = (single_p50 + p50 / 5.0, single_p99 + p99 / 5.0);
        let (p50, p99) = request_cost(&client, &a, 1000).await;
        (fleet_p50, fleet_p99) = (fleet_p50 + p50 / 5.0, fleet_p99 + p99 / 5.0);
    }
    let during = commands(&mut conn).await - before - 1; // minus the INFO itself
    let seconds = measured.elapsed().as_secs_f64();
    println!("\n| one request, sequential (5 × 1,000, mean of the runs' figures) | p50 | p99 |\n|---|---|---|");
    println!("| without [fleet] | {single_p50:.0} µs | {single_p99:.0} µs |");
    println!("| with [fleet] | {fleet_p50:.0} µs | {fleet_p99:.0} µs |");
    println!("\nRedis commands while 5,000 requests went to A over {seconds:.1} s: {during} (the fleet's reconciles and heartbeats; requests issue none)");
    for gw in [a, b, c, single] {
        gw.stop().await;
    }
    let _ = redis.kill();
    let _ = redis.wait();
    std::fs::remove_dir_all(&dir).ok();
}
