//! Hot reload: atomic, under load, and refusing anything invalid while the old config serves.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_sim::Profile;

use crate::common::*;
use crate::notify::Receiver;

/// Writes the config to a file and starts a gateway that reloads from it.
pub async fn gateway_from_file(text: &str) -> (switchyard::Running, PathBuf) {
    let path = temp_dir("reload").join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    let mut config = switchyard_config::Config::load(&path).unwrap();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    crate::common::http1_from_env(&mut config);
    (
        switchyard::start_with(config, Some(path.clone()))
            .await
            .unwrap(),
        path,
    )
}

fn base(up: std::net::SocketAddr, error_rate: f64) -> String {
    format!(
        "{}[admin]\nlisten = \"127.0.0.1:0\"\n[server]\nlisten = \"127.0.0.1:0\"\n[alerts]\nerror_rate = {error_rate}\n{}",
        admin_tokens(),
        one_route("r-live", &format!("http://{up}"), "")
    )
}

async fn version(gw: &switchyard::Running) -> String {
    get(gw.traffic, "/health").await.json()["config_version"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn reload(gw: &switchyard::Running) -> Answer {
    admin(gw, "POST", "/admin/reload", OPERATOR, None).await
}

#[tokio::test]
async fn twenty_five_reloads_under_load_fail_no_request() {
    let (_sim, up) = sim(Profile::default()).await;
    let (gw, path) = gateway_from_file(&base(up, 0.01)).await;
    let gw = Arc::new(gw);
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let (gw, stop) = (gw.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut sent, mut failed) = (0, 0);
                while !stop.load(Ordering::Relaxed) {
                    let answer = post_json(
                        gw.traffic,
                        "/v1/chat/completions",
                        &[],
                        chat("gpt-4o", true),
                    )
                    .await;
                    sent += 1;
                    failed += usize::from(
                        answer.status != 200
                            || !String::from_utf8_lossy(&answer.body).contains("[DONE]"),
                    );
                }
                (sent, failed)
            })
        })
        .collect();
    let mut versions = vec![version(&gw).await];
    for i in 0..25 {
        std::fs::write(&path, base(up, 0.01 + f64::from(i + 1) / 1000.0)).unwrap();
        let answer = reload(&gw).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        let now = version(&gw).await;
        assert_ne!(
            versions.last(),
            Some(&now),
            "reload {i} did not change the version"
        );
        versions.push(now);
    }
    stop.store(true, Ordering::Relaxed);
    let (mut sent, mut failed) = (0, 0);
    for worker in workers {
        let (s, f) = worker.await.unwrap();
        sent += s;
        failed += f;
    }
    assert!(sent > 25, "the load was too light to mean anything: {sent}");
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed across 25 reloads"
    );
    Arc::try_unwrap(gw).ok().unwrap().stop().await;
}

// Long: a list of cases, each checked the same way.
#[tokio::test]
async fn invalid_configs_are_rejected_and_the_old_one_keeps_serving() {
    let (_sim, up) = sim(Profile::default()).await;
    let good = base(up, 0.01);
    let (gw, path) = gateway_from_file(&good).await;
    let before = version(&gw).await;
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../switchyard-config/tests/invalid");
    let mut cases: Vec<(String, String)> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        // Files naming other files by relative path only fail beside their fixtures.
        .filter(|(_, text)| !text.contains("_file"))
        .collect();
    assert!(cases.len() >= 8, "the invalid-config corpus is missing");
    cases.push(("half-written".into(), good[..good.len() / 2].to_string()));
    cases.push((
        "unknown sim profile".into(),
        format!("{good}\n[upstreams.x]\nsim = {{ profile = \"nope\" }}\n"),
    ));
    for (name, text) in &cases {
        std::fs::write(&path, text).unwrap();
        let answer = reload(&gw).await;
        assert_eq!(
            answer.status, 422,
            "{name} was not rejected: {:?}",
            answer.body
        );
        let json = answer.json();
        assert_eq!(json["result"], "rejected");
        assert!(
            json["error"]["message"].as_str().unwrap().contains(':'),
            "{name}: {json}"
        );
        assert_eq!(
            version(&gw).await,
            before,
            "{name} changed the config in force"
        );
        let served = post_json(
            gw.traffic,
            "/v1/chat/completions",
            &[],
            chat("gpt-4o", false),
        )
        .await;
        assert_eq!(served.status, 200, "{name}: the old config stopped serving");
    }
    std::fs::remove_file(&path).unwrap();
    assert_eq!(reload(&gw).await.status, 422, "a deleted file is rejected");
    assert_eq!(version(&gw).await, before);
    let m = metrics(&gw).await;
    assert!(
        metric(
            &m,
            "switchyard_config_reloads_total",
            &[("result", "rejected")]
        ) >= cases.len() as f64 + 1.0
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_reload_may_not_drop_a_route_whose_kill_switch_is_engaged() {
    let (_sim, up) = sim(Profile::default()).await;
    let (gw, path) = gateway_from_file(&base(up, 0.01)).await;
    let killed = admin(
        &gw,
        "POST",
        "/admin/routes/r-live/kill",
        OPERATOR,
        Some(serde_json::json!({"reason": "outage"})),
    )
    .await;
    assert_eq!(killed.status, 200);
    let without = base(up, 0.01).replace("name = \"r-live\"", "name = \"renamed\"");
    std::fs::write(&path, without).unwrap();
    let answer = reload(&gw).await;
    assert_eq!(answer.status, 422);
    let message = answer.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("r-live") && message.contains("revive"),
        "{message}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_edited_file_is_picked_up_without_being_asked() {
    let (_sim, up) = sim(Profile::default()).await;
    let (gw, path) = gateway_from_file(&base(up, 0.01)).await;
    let before = version(&gw).await;
    std::fs::write(&path, base(up, 0.02)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while version(&gw).await == before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(
        version(&gw).await,
        before,
        "the file watcher did not reload the edited config"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_reload_revokes_a_rotated_token_even_when_gateway_toml_is_unchanged() {
    let (_sim, up) = sim(Profile::default()).await;
    let text = base(up, 0.01);
    let token_file = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("token_file = \"")
                .filter(|f| f.contains("oncall"))
        })
        .map(|f| f.trim_end_matches('"').to_string())
        .unwrap();
    let (gw, _path) = gateway_from_file(&text).await;
    assert_eq!(
        admin(&gw, "GET", "/admin/status", OPERATOR, None)
            .await
            .status,
        200
    );
    std::fs::write(&token_file, "rotated-secret-0123456789").unwrap();
    assert_eq!(reload(&gw).await.status, 200);
    assert_eq!(
        admin(&gw, "GET", "/admin/status", OPERATOR, None)
            .await
            .status,
        401,
        "the old secret still works"
    );
    assert_eq!(
        admin(
            &gw,
            "GET",
            "/admin/status",
            "rotated-secret-0123456789",
            None
        )
        .await
        .status,
        200
    );
    gw.stop().await;
}

/// `base` plus a webhook for reload events: what this gateway's reloads did, apart from the
/// other gateways of the test process (the metrics are process-wide).
fn base_with_hook(up: std::net::SocketAddr, error_rate: f64, hook: &Receiver) -> String {
    format!(
        "{}\n[[notify.webhooks]]\nurl = \"{}\"\nevents = [\"reload\"]\n",
        base(up, error_rate),
        hook.url()
    )
}

/// The `result` of every reload event the receiver got, in order.
fn reload_results(hook: &Receiver) -> Vec<String> {
    hook.events()
        .iter()
        .map(|(_, body)| body["result"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// Waits up to 5 s until the receiver got `n` reload events.
async fn reloads_seen(hook: &Receiver, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let results = reload_results(hook);
        if results.len() >= n {
            return results;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} reload events: {results:?}",
            results.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A chat completion through the route `r-live` must be answered by its upstream.
async fn served_by_the_route(gw: &switchyard::Running, what: &str) {
    let answer = post_json(
        gw.traffic,
        "/v1/chat/completions",
        &[],
        chat("gpt-4o", false),
    )
    .await;
    assert_eq!(answer.status, 200, "{what}: {:?}", answer.body);
    assert_eq!(answer.headers["x-switchyard-route"], "r-live", "{what}");
}

#[tokio::test]
async fn the_watcher_refuses_an_empty_or_truncated_file_and_traffic_keeps_flowing() {
    let (_sim, up) = sim(Profile::default()).await;
    let hook = Receiver::up().await;
    let good = base_with_hook(up, 0.01, &hook);
    let (gw, path) = gateway_from_file(&good).await;
    let before = version(&gw).await;
    // Cut where an editor's partial write could leave it: valid TOML, but no routes.
    let truncated = &good[..good.find("[[routes]]").unwrap()];
    for (n, (what, text)) in [("an empty file", ""), ("a truncated file", truncated)]
        .into_iter()
        .enumerate()
    {
        std::fs::write(&path, text).unwrap();
        let results = reloads_seen(&hook, n + 1).await;
        assert_eq!(results[n], "rejected", "{what}: {results:?}");
        assert_eq!(version(&gw).await, before, "{what} was put in force");
        served_by_the_route(&gw, what).await;
    }
    let counted = metric(
        &metrics(&gw).await,
        "switchyard_config_reloads_total",
        &[("result", "rejected")],
    );
    assert!(counted >= 2.0, "rejected reloads counted: {counted}");
    // The same refusal through the admin API names the reason.
    let answer = reload(&gw).await;
    assert_eq!(answer.status, 422);
    let message = answer.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains(":1: routes: no routes"),
        "the reason is not given: {message}"
    );
    // A whole file written afterwards is picked up as usual.
    let next = base_with_hook(up, 0.02, &hook);
    std::fs::write(&path, &next).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while version(&gw).await == before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(version(&gw).await, switchyard_config::version_of(&next));
    served_by_the_route(&gw, "after the good file").await;
    gw.stop().await;
}

/// Rewrites the file in place the way a naive editor does: open with truncate, write half,
/// pause, write the rest. On a thread of its own, so a busy runtime cannot stretch the pause.
async fn rewrite_in_place(path: &Path, text: &str) {
    let (path, text) = (path.to_path_buf(), text.to_string());
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let (first, rest) = text.split_at(text.len() / 2);
        file.write_all(first.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        file.write_all(rest.as_bytes()).unwrap();
    })
    .await
    .unwrap();
}

// Long: one scenario told in order; each step starts from the state the previous one left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_in_place_rewrites_under_load_lose_no_request_and_parse_no_half_file() {
    let (_sim, up) = sim(Profile::default()).await;
    let hook = Receiver::up().await;
    let (gw, path) = gateway_from_file(&base_with_hook(up, 0.01, &hook)).await;
    let gw = Arc::new(gw);
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let (gw, stop) = (gw.clone(), stop.clone());
            tokio::spawn(async move {
                let mut failures = Vec::new();
                let mut sent = 0;
                while !stop.load(Ordering::Relaxed) {
                    let answer = post_json(
                        gw.traffic,
                        "/v1/chat/completions",
                        &[],
                        chat("gpt-4o", true),
                    )
                    .await;
                    sent += 1;
                    let route = answer.headers.get("x-switchyard-route").cloned();
                    if answer.status != 200
                        || route.as_ref().is_none_or(|r| r != "r-live")
                        || !String::from_utf8_lossy(&answer.body).contains("[DONE]")
                    {
                        failures.push((answer.status, route, answer.body));
                    }
                }
                (sent, failures)
            })
        })
        .collect();
    for i in 0..50 {
        let text = base_with_hook(up, 0.01 + f64::from(i + 1) / 1000.0, &hook);
        rewrite_in_place(&path, &text).await;
        let expected = switchyard_config::version_of(&text);
        let deadline = Instant::now() + Duration::from_secs(5);
        while version(&gw).await != expected {
            assert!(
                Instant::now() < deadline,
                "rewrite {i} was not put in force within 5 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (mut sent, mut failures) = (0, Vec::new());
    for worker in workers {
        let (s, f) = worker.await.unwrap();
        sent += s;
        failures.extend(f);
    }
    assert!(sent > 50, "the load was too light to mean anything: {sent}");
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed across 50 rewrites, first: {:?}",
        failures.len(),
        failures.first()
    );
    // The watcher waited for each rewrite to settle: it never parsed a half-written file,
    // which would have been refused (cut TOML, or no routes).
    let results = reloads_seen(&hook, 50).await;
    assert!(
        results.iter().all(|r| r == "applied"),
        "a half-written file was parsed: {results:?}"
    );
    Arc::try_unwrap(gw).ok().unwrap().stop().await;
}
