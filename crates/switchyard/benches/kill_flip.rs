//! Kill-switch flip-to-effect under load: from the admin call's return to the first
//! fallback answer, over many flips, with other clients hammering the route meanwhile.
//!
//! `cargo bench -p switchyard --bench kill_flip [-- FLIPS]` (default 1,000 flips).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// A benchmark times real servers on the real clock.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

const TOKEN: &str = "bench-operator-secret-0001";
const BODY: &str =
    r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Where is my parcel?"}]}"#;

async fn call(
    client: &HttpClient,
    method: &str,
    url: &str,
    body: &str,
    token: bool,
) -> (u16, bool) {
    let mut req = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json");
    if token {
        req = req.header("authorization", format!("Bearer {TOKEN}"));
    }
    let response = client
        .request(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
        .await
        .unwrap();
    let fallback = response.headers().contains_key("x-switchyard-fallback");
    let status = response.status().as_u16();
    response.into_body().collect().await.unwrap();
    (status, fallback)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

fn main() {
    let flips: usize = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(flips));
}

async fn run(flips: usize) {
    let dir = std::env::temp_dir().join(format!("switchyard-flip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("op.token"), TOKEN).unwrap();
    let sim = switchyard_sim::Sim::new(switchyard_sim::named("instant").unwrap());
    let (up, _task) = switchyard_sim::spawn("127.0.0.1:0".parse().unwrap(), sim)
        .await
        .unwrap();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n\
         [[admin.tokens]]\nname = \"bench\"\nrole = \"operator\"\nkind = \"human\"\ntoken_file = \"op.token\"\n\
         [log]\nlevel = \"warn\"\n[upstreams.up]\nurl = \"http://{up}\"\n[[routes]]\nname = \"flip\"\nupstream = \"up\"\n\
         [routes.kill_switch]\nfallback = {{ text = \"resting\" }}\n",
        dir.join("state").display()
    );
    let config = switchyard_config::Config::parse(&text, "bench.toml", Path::new(&dir)).unwrap();
    let gw = switchyard::start(config).await.unwrap();
    let traffic = format!("http://{}/v1/chat/completions", gw.traffic);
    let kill_url = format!("http://{}/admin/routes/flip/kill", gw.admin);

    let stop = Arc::new(AtomicBool::new(false));
    let background = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for _ in 0..16 {
        let (stop, background, url) = (stop.clone(), background.clone(), traffic.clone());
        load.push(tokio::spawn(async move {
            let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
            while !stop.load(Ordering::Relaxed) {
                let (status, _) = call(&client, "POST", &url, BODY, false).await;
                assert_eq!(status, 200, "a background request failed");
                background.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let probe: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let admin: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let (mut to_fallback, mut to_upstream, mut swap_us, mut baseline) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut extra_probes = 0;
    let started = Instant::now();
    for _ in 0..flips {
        let t = Instant::now();
        call(&probe, "POST", &traffic, BODY, false).await;
        baseline.push(t.elapsed().as_secs_f64() * 1e3);
        let (status, _) = call(
            &admin,
            "POST",
            &kill_url,
            r#"{"reason":"flip benchmark"}"#,
            true,
        )
        .await;
        assert_eq!(status, 200);
        let returned = Instant::now();
        loop {
            let (_, fallback) = call(&probe, "POST", &traffic, BODY, false).await;
            if fallback {
                break;
            }
            extra_probes += 1;
        }
        to_fallback.push(returned.elapsed().as_secs_f64() * 1e3);
        let response = admin
            .request(
                Request::delete(&kill_url)
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let reply: serde_json::Value = serde_json::from_slice(&body).unwrap();
        swap_us.push(reply["took_us"].as_f64().unwrap_or(f64::NAN));
        let revived = Instant::now();
        loop {
            let (_, fallback) = call(&probe, "POST", &traffic, BODY, false).await;
            if !fallback {
                break;
            }
            extra_probes += 1;
        }
        to_upstream.push(revived.elapsed().as_secs_f64() * 1e3);
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    for v in [
        &mut to_fallback,
        &mut to_upstream,
        &mut swap_us,
        &mut baseline,
    ] {
        v.sort_by(|a, b| a.total_cmp(b));
    }
    println!("kill-switch flip-to-effect, {flips} flips in {:.1} s, 16 background clients ({} background requests, all 200)", elapsed.as_secs_f64(), background.load(Ordering::Relaxed));
    println!();
    println!("| measure | p50 | p99 | max |");
    println!("|---|---|---|---|");
    let row = |name: &str, v: &[f64], unit: &str| {
        println!(
            "| {name} | {:.3} {unit} | {:.3} {unit} | {:.3} {unit} |",
            percentile(v, 0.5),
            percentile(v, 0.99),
            v[v.len() - 1]
        );
    };
    row(
        "kill call returned → first fallback answer received",
        &to_fallback,
        "ms",
    );
    row(
        "revive call returned → first upstream answer received",
        &to_upstream,
        "ms",
    );
    row(
        "one probe request, no flip (the floor of the two above)",
        &baseline,
        "ms",
    );
    row(
        "swap inside the gateway (server-reported took_us, revive)",
        &swap_us,
        "µs",
    );
    println!();
    println!("requests sent after a call returned that still saw the old state: {extra_probes}");
    gw.stop().await;
    std::fs::remove_dir_all(&dir).ok();
}
