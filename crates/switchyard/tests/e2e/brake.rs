//! The brake: kill switches with fallbacks, partial kills, persistence, load shedding.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_sim::Profile;

use crate::common::*;

const FALLBACK: &str = "[routes.kill_switch]\nfallback = { text = \"The assistant is resting. A person will answer by email.\" }\n";

async fn kill(gw: &switchyard::Running, route: &str, body: serde_json::Value) -> Answer {
    let answer = admin(
        gw,
        "POST",
        &format!("/admin/routes/{route}/kill"),
        OPERATOR,
        Some(body),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer
}

// Long: one scenario told in order; each step starts from the state the previous one left.
#[tokio::test]
async fn a_kill_under_load_takes_effect_on_the_next_request_and_fails_nothing() {
    let (sim, up) = sim(Profile::default()).await;
    let config = format!(
        "{}{}{FALLBACK}",
        admin_tokens(),
        one_route("k-load", &format!("http://{up}"), "")
    );
    let gw = Arc::new(gateway(&config).await);
    let killed_at = Arc::new(AtomicU64::new(u64::MAX));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..8 {
        let (gw, killed_at, stop) = (gw.clone(), killed_at.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let (mut failures, mut late_upstream) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                let sent_at = started.elapsed().as_micros() as u64;
                let user = format!("user-{worker}");
                let answer = post_json(
                    gw.traffic,
                    "/v1/chat/completions",
                    &[("x-user-id", &user)],
                    chat("gpt-4o", false),
                )
                .await;
                failures += usize::from(answer.status != 200);
                let fallback = answer.headers.contains_key("x-switchyard-fallback");
                late_upstream +=
                    usize::from(sent_at > killed_at.load(Ordering::Relaxed) && !fallback);
            }
            (failures, late_upstream)
        }));
    }
    // The kill lands in the middle of steady traffic.
    until(Duration::from_secs(10), || sim.requests() >= 50)
        .await
        .expect("traffic flows before the kill");
    let answer = kill(&gw, "k-load", serde_json::json!({"reason": "bad answers"})).await;
    killed_at.store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    let upstream_at_kill = sim.requests();
    let json = answer.json();
    assert_eq!(json["engaged"], true);
    assert!(json["effective_at_ms"].as_u64().unwrap() > 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let (failures, late) = worker.await.unwrap();
        assert_eq!(failures, 0, "requests failed around the kill");
        assert_eq!(
            late, 0,
            "a request sent after the kill returned reached the upstream"
        );
    }
    // At most the requests already past the switch when it flipped reach the upstream.
    assert!(
        sim.requests() <= upstream_at_kill + 8,
        "{} > {upstream_at_kill} + 8",
        sim.requests()
    );
    let m = metrics(&gw).await;
    assert_eq!(
        metric(&m, "switchyard_kill_switch_engaged", &[("route", "k-load")]),
        1.0
    );
    Arc::try_unwrap(gw).ok().unwrap().stop().await;
}

#[tokio::test]
async fn fallbacks_are_shaped_for_streaming_and_json_clients_in_each_dialect() {
    let (_sim, up) = sim(Profile::default()).await;
    let config = format!(
        "{}{}{FALLBACK}",
        admin_tokens(),
        one_route("k-shape", &format!("http://{up}"), "")
    );
    let gw = gateway(&config).await;
    kill(&gw, "k-shape", serde_json::json!({"reason": "drill"})).await;
    let openai = post_json(
        gw.traffic,
        "/v1/chat/completions",
        &[],
        chat("gpt-4o", false),
    )
    .await;
    assert_eq!(openai.status, 200);
    assert_eq!(openai.headers["x-switchyard-fallback"], "kill_switch");
    assert_eq!(
        openai.json()["choices"][0]["message"]["content"],
        "The assistant is resting. A person will answer by email."
    );
    let stream = post_json(
        gw.traffic,
        "/v1/chat/completions",
        &[],
        chat("gpt-4o", true),
    )
    .await;
    assert!(stream.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = String::from_utf8_lossy(&stream.body);
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let claude = post_json(
        gw.traffic,
        "/v1/messages",
        &[],
        messages("claude-sonnet-4-6", true),
    )
    .await;
    let text = String::from_utf8_lossy(&claude.body);
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(events.first(), Some(&"message_start"));
    assert_eq!(events.last(), Some(&"message_stop"));
    assert_eq!(claude.headers["x-switchyard-fallback"], "kill_switch");
    gw.stop().await;
}

#[tokio::test]
async fn a_route_without_fallback_answers_503_with_retry_after_and_revives() {
    let (_sim, up) = sim(Profile::default()).await;
    let config = format!(
        "{}{}",
        admin_tokens(),
        one_route("k-bare", &format!("http://{up}"), "")
    );
    let gw = gateway(&config).await;
    kill(&gw, "k-bare", serde_json::json!({"reason": "drill"})).await;
    let answer = post_json(
        gw.traffic,
        "/v1/messages",
        &[],
        messages("claude-sonnet-4-6", false),
    )
    .await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.headers["retry-after"], "30");
    assert_eq!(
        answer.json()["error"]["type"],
        "overloaded_error",
        "anthropic shape: {:?}",
        answer.body
    );
    let revived = admin(&gw, "DELETE", "/admin/routes/k-bare/kill", OPERATOR, None).await;
    assert_eq!(revived.status, 200);
    let answer = post_json(
        gw.traffic,
        "/v1/messages",
        &[],
        messages("claude-sonnet-4-6", false),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert!(!answer.headers.contains_key("x-switchyard-fallback"));
    gw.stop().await;
}

#[tokio::test]
async fn a_fallback_upstream_serves_the_killed_route() {
    let (main_sim, up) = sim(Profile::default()).await;
    let (faq_sim, faq) = sim(Profile::default()).await;
    let route = one_route("k-faq", &format!("http://{up}"), "");
    let config = format!("{}[upstreams.faq]\nurl = \"http://{faq}\"\n{route}[routes.kill_switch]\nfallback = {{ upstream = \"faq\" }}\n", admin_tokens());
    let gw = gateway(&config).await;
    kill(&gw, "k-faq", serde_json::json!({"reason": "drill"})).await;
    let answer = post_json(
        gw.traffic,
        "/v1/chat/completions",
        &[],
        chat("gpt-4o", false),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["x-switchyard-fallback"], "kill_switch");
    assert_eq!(answer.headers["x-switchyard-upstream"], "faq");
    assert_eq!((main_sim.requests(), faq_sim.requests()), (0, 1));
    gw.stop().await;
}

#[tokio::test]
async fn a_partial_kill_keeps_the_same_users_killed() {
    let (_sim, up) = sim(Profile::default()).await;
    let config = format!(
        "{}{}{FALLBACK}",
        admin_tokens(),
        one_route("k-part", &format!("http://{up}"), "")
    );
    let gw = gateway(&config).await;
    kill(
        &gw,
        "k-part",
        serde_json::json!({"reason": "canary", "percent": 30}),
    )
    .await;
    let mut killed = 0;
    for i in 0..200 {
        let user = format!("user-{i}");
        let mut seen = Vec::new();
        for _ in 0..2 {
            let answer = post_json(
                gw.traffic,
                "/v1/chat/completions",
                &[("x-user-id", &user)],
                chat("gpt-4o", false),
            )
            .await;
            seen.push(answer.headers.contains_key("x-switchyard-fallback"));
        }
        assert_eq!(seen[0], seen[1], "{user} flipped between requests");
        assert_eq!(
            seen[0],
            switchyard_core::split::within(&user, "kill:k-part", 0.30),
            "{user}: not the documented hash"
        );
        killed += usize::from(seen[0]);
    }
    assert!((40..80).contains(&killed), "{killed} of 200 killed at 30 %");
    gw.stop().await;
}

#[tokio::test]
async fn a_kill_switch_survives_a_restart() {
    let (_sim, up) = sim(Profile::default()).await;
    let state = temp_dir("restart");
    let text = format!(
        "{}[admin]\nstate_dir = \"{}\"\n{}{FALLBACK}",
        admin_tokens(),
        state.display(),
        one_route("k-keep", &format!("http://{up}"), "")
    );
    let start = || async {
        let mut config =
            switchyard_config::Config::parse(&text, "test.toml", std::path::Path::new("."))
                .unwrap();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.admin.listen = "127.0.0.1:0".parse().unwrap();
        crate::common::http1_from_env(&mut config);
        switchyard::start(config).await.unwrap()
    };
    let gw = start().await;
    kill(&gw, "k-keep", serde_json::json!({"reason": "outage"})).await;
    gw.stop().await;
    let gw = start().await;
    let answer = post_json(
        gw.traffic,
        "/v1/chat/completions",
        &[],
        chat("gpt-4o", false),
    )
    .await;
    assert_eq!(
        answer.headers["x-switchyard-fallback"], "kill_switch",
        "the kill switch was lost in the restart"
    );
    let status = admin(&gw, "GET", "/admin/status", VIEWER, None)
        .await
        .json();
    assert_eq!(status["routes"][0]["kill_switch"]["reason"], "outage");
    gw.stop().await;
}

#[tokio::test]
async fn shedding_answers_at_once_and_the_upstream_stays_within_its_limit() {
    let (sim, up) = sim(Profile {
        ttfb_ms: 400.0,
        ..Profile::default()
    })
    .await;
    let limits = "[routes.limits]\nmax_concurrency = 2\nmax_queue = 1\nqueue_timeout = \"2s\"\n";
    let gw = gateway(&format!(
        "{}{limits}",
        one_route("k-shed", &format!("http://{up}"), "")
    ))
    .await;
    let started = Instant::now();
    let calls = (0..8).map(|_| {
        let addr = gw.traffic;
        tokio::spawn(async move {
            let answer = post_json(addr, "/v1/chat/completions", &[], chat("gpt-4o", false)).await;
            (answer, Instant::now())
        })
    });
    let mut answers = Vec::new();
    for call in calls.collect::<Vec<_>>() {
        answers.push(call.await.unwrap());
    }
    let ok = answers.iter().filter(|(a, _)| a.status == 200).count();
    let shed: Vec<_> = answers.iter().filter(|(a, _)| a.status == 503).collect();
    assert_eq!(ok, 3, "two slots and one queued request succeed");
    assert_eq!(shed.len(), 5);
    for (answer, at) in &shed {
        assert!(
            *at - started < Duration::from_millis(300),
            "shedding waited for the upstream"
        );
        assert_eq!(answer.headers["retry-after"], "1");
        assert_eq!(answer.json()["error"]["code"], "overloaded");
    }
    assert_eq!(sim.requests(), 3);
    let m = metrics(&gw).await;
    assert_eq!(
        metric(
            &m,
            "switchyard_shed_requests_total",
            &[("route", "k-shed"), ("reason", "queue_full")]
        ),
        5.0
    );
    gw.stop().await;
}

#[tokio::test]
async fn rate_limits_answer_429_per_user() {
    let (_sim, up) = sim(Profile::default()).await;
    let limits = "[routes.limits]\nuser_requests_per_second = 3\n";
    let gw = gateway(&format!(
        "{}{limits}",
        one_route("k-rate", &format!("http://{up}"), "")
    ))
    .await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let answer = post_json(
            gw.traffic,
            "/v1/chat/completions",
            &[("x-user-id", "greedy")],
            chat("gpt-4o", false),
        )
        .await;
        statuses.push(answer.status.as_u16());
    }
    assert!(
        statuses.iter().filter(|s| **s == 429).count() >= 2,
        "{statuses:?}"
    );
    let other = post_json(
        gw.traffic,
        "/v1/chat/completions",
        &[("x-user-id", "polite")],
        chat("gpt-4o", false),
    )
    .await;
    assert_eq!(
        other.status, 200,
        "another user is not limited by the first"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_fallback_upstream_is_not_held_back_by_the_killed_routes_limits() {
    let (_slow, up) = sim(Profile {
        hang_before_headers: true,
        ..Profile::default()
    })
    .await;
    let (faq_sim, faq) = sim(Profile::default()).await;
    let route = one_route("k-limits", &format!("http://{up}"), "");
    let config = format!(
        "{}[upstreams.faq]\nurl = \"http://{faq}\"\n{route}[routes.kill_switch]\nfallback = {{ upstream = \"faq\" }}\n\
         [routes.limits]\nmax_concurrency = 1\nmax_queue = 1\nqueue_timeout = \"10s\"\n",
        admin_tokens()
    );
    let gw = gateway(&config).await;
    // One request holds the only slot on the hung upstream, a second waits in the queue.
    let traffic = gw.traffic;
    let stuck = tokio::spawn(async move {
        post_json(traffic, "/v1/chat/completions", &[], chat("gpt-4o", false)).await
    });
    let queued = tokio::spawn(async move {
        post_json(traffic, "/v1/chat/completions", &[], chat("gpt-4o", false)).await
    });
    let deadline = Instant::now() + Duration::from_secs(3);
    while metric(
        &metrics(&gw).await,
        "switchyard_queued_requests",
        &[("route", "k-limits")],
    ) < 1.0
    {
        assert!(Instant::now() < deadline, "the second request never queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kill(
        &gw,
        "k-limits",
        serde_json::json!({"reason": "upstream hangs"}),
    )
    .await;
    let started = Instant::now();
    let answer = post_json(
        gw.traffic,
        "/v1/chat/completions",
        &[],
        chat("gpt-4o", false),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.headers["x-switchyard-upstream"], "faq");
    assert!(started.elapsed() < Duration::from_secs(1));
    // The queued request was killed while it waited: it goes to the fallback, not the hung upstream.
    stuck.abort();
    let queued = tokio::time::timeout(Duration::from_secs(5), queued)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(queued.headers["x-switchyard-fallback"], "kill_switch");
    assert_eq!(faq_sim.requests(), 2);
    gw.stop().await;
}
