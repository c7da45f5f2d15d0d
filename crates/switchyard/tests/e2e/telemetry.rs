//! Trace context and OpenTelemetry: W3C `traceparent` through the gateway, spans at a real
//! OTLP receiver (decoded with the opentelemetry-proto schema), the GenAI metric families,
//! and a hung or dead collector that never slows traffic.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard_sim::Profile;

use crate::common::*;

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// The `traceparent` the upstream received, split at its dashes.
fn seen_traceparent(echo: &Answer) -> Vec<String> {
    let value = echo.json()["headers"]["traceparent"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no traceparent upstream: {}", echo.json()))
        .to_owned();
    assert_eq!(value.len(), 55, "{value}");
    value.split('-').map(str::to_owned).collect()
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len
        && text.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        && text.bytes().any(|c| c != b'0')
}

// Long: a list of cases, each checked the same way.
#[tokio::test(flavor = "multi_thread")]
async fn traceparent_is_continued_started_or_replaced() {
    let (_sim, up) = sim(Profile::default()).await;
    let gw = gateway(&one_route("traced", &format!("http://{up}"), "")).await;
    let client = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");

    // A valid parent: the same trace, the gateway's own span, the client's flags and state.
    let echo = post_json(
        gw.traffic,
        "/echo",
        &[
            ("traceparent", &client),
            ("tracestate", "congo=t61rcWkgMzE"),
        ],
        json!({}),
    )
    .await;
    let seen = seen_traceparent(&echo);
    assert_eq!(seen[0], "00");
    assert_eq!(seen[1], CLIENT_TRACE, "the trace goes on");
    assert!(
        is_hex(&seen[2], 16) && seen[2] != CLIENT_SPAN,
        "a new span id per hop"
    );
    assert_eq!(seen[3], "01");
    assert_eq!(echo.json()["headers"]["tracestate"][0], "congo=t61rcWkgMzE");
    let first_span = seen[2].clone();
    let again = post_json(gw.traffic, "/echo", &[("traceparent", &client)], json!({})).await;
    assert_ne!(
        seen_traceparent(&again)[2],
        first_span,
        "every hop its own span"
    );

    // Not sampled by the client: passed on as not sampled.
    let unsampled = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-00");
    let echo = post_json(
        gw.traffic,
        "/echo",
        &[("traceparent", &unsampled)],
        json!({}),
    )
    .await;
    assert_eq!(seen_traceparent(&echo)[3], "00");

    // None: a new trace, sampled at the default ratio of 1.
    let echo = post_json(gw.traffic, "/echo", &[], json!({})).await;
    let seen = seen_traceparent(&echo);
    assert!(is_hex(&seen[1], 32) && is_hex(&seen[2], 16), "{seen:?}");
    assert_eq!(seen[3], "01");

    // Invalid (upper-case hex, all-zero span, a bad version): replaced by a new trace, and
    // its tracestate, which belonged to it, dropped.
    for bad in [
        format!("00-{}-{CLIENT_SPAN}-01", CLIENT_TRACE.to_uppercase()),
        format!("00-{CLIENT_TRACE}-0000000000000000-01"),
        format!("ff-{CLIENT_TRACE}-{CLIENT_SPAN}-01"),
        "garbage".to_owned(),
    ] {
        let echo = post_json(
            gw.traffic,
            "/echo",
            &[("traceparent", &bad), ("tracestate", "congo=t61rcWkgMzE")],
            json!({}),
        )
        .await;
        let seen = seen_traceparent(&echo);
        assert_ne!(seen[1], CLIENT_TRACE, "{bad}");
        assert!(
            is_hex(&seen[1], 32) && is_hex(&seen[2], 16),
            "{bad}: {seen:?}"
        );
        assert_eq!(echo.json()["headers"].get("tracestate"), None, "{bad}");
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ratio_of_zero_samples_no_new_trace_but_honours_the_client() {
    let (_sim, up) = sim(Profile::default()).await;
    let extra = "[telemetry]\nsampling_ratio = 0.0\n";
    let gw = gateway(&one_route("unsampled", &format!("http://{up}"), extra)).await;
    let echo = post_json(gw.traffic, "/echo", &[], json!({})).await;
    assert_eq!(seen_traceparent(&echo)[3], "00");
    let client = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let echo = post_json(gw.traffic, "/echo", &[("traceparent", &client)], json!({})).await;
    assert_eq!(
        seen_traceparent(&echo)[3],
        "01",
        "parent-based: the client decided"
    );
    gw.stop().await;
}

// Long: a list of cases, each checked the same way.
#[tokio::test(flavor = "multi_thread")]
async fn gen_ai_families_sit_beside_ours() {
    let (_sim, up) = sim(Profile {
        completion_tokens: 20,
        stream_chunks: 5,
        ..Profile::default()
    })
    .await;
    let gw = gateway(&one_route("genai", &format!("http://{up}"), "")).await;
    let answer = post_json(
        gw.traffic,
        "/v1/chat/completions",
        &[],
        chat("gpt-4o", false),
    )
    .await;
    assert_eq!(answer.status, 200);
    let usage = answer.json()["usage"].clone();
    let streamed = post_json(
        gw.traffic,
        "/v1/chat/completions",
        &[],
        chat("gpt-4o", true),
    )
    .await;
    assert_eq!(streamed.status, 200);
    let claude = post_json(
        gw.traffic,
        "/v1/messages",
        &[],
        messages("claude-sonnet-4-6", false),
    )
    .await;
    assert_eq!(claude.status, 200);
    let _ = post_json(gw.traffic, "/echo", &[], json!({})).await;
    let base = [("route", "genai"), ("upstream", "up"), ("variant", "none")];
    let openai = [
        base.as_slice(),
        &[
            ("model", "gpt-4o"),
            ("gen_ai_operation_name", "chat"),
            ("gen_ai_system", "openai"),
        ],
    ]
    .concat();
    let text = eventually_metrics(&gw, "the GenAI duration of four requests", |t| {
        metric(
            t,
            "switchyard_gen_ai_server_request_duration_seconds_count",
            &[("route", "genai")],
        ) == 3.0
            && metric(t, "switchyard_requests_total", &[("route", "genai")]) == 4.0
    })
    .await;
    let input = [openai.as_slice(), &[("gen_ai_token_type", "input")]].concat();
    let output = [openai.as_slice(), &[("gen_ai_token_type", "output")]].concat();
    let family = "switchyard_gen_ai_client_token_usage";
    assert_eq!(metric(&text, &format!("{family}_count"), &input), 2.0);
    assert_eq!(metric(&text, &format!("{family}_count"), &output), 2.0);
    assert!(
        metric(&text, &format!("{family}_sum"), &input) >= usage["prompt_tokens"].as_f64().unwrap()
    );
    assert!(text.contains(&format!(
        "{family}_bucket{{route=\"genai\",upstream=\"up\",variant=\"none\",model=\"gpt-4o\",gen_ai_operation_name=\"chat\",gen_ai_system=\"openai\",gen_ai_token_type=\"output\",le=\"67108864\"}}"
    )), "the conventions' token buckets");
    let anthropic = [
        ("route", "genai"),
        ("gen_ai_system", "anthropic"),
        ("gen_ai_token_type", "input"),
    ];
    assert_eq!(metric(&text, &format!("{family}_count"), &anthropic), 1.0);
    let ttft = "switchyard_gen_ai_server_time_to_first_token_seconds_count";
    assert_eq!(metric(&text, ttft, &openai), 2.0);
    let tpot = "switchyard_gen_ai_server_time_per_output_token_seconds_count";
    assert_eq!(metric(&text, tpot, &openai), 1.0, "the stream only");
    assert!(
        !text.lines().any(|l| l.starts_with("switchyard_gen_ai")
            && l.contains("route=\"genai\"")
            && l.contains("model=\"other\"")),
        "requests that are not model calls have no GenAI samples"
    );
    let info = text
        .lines()
        .find(|l| l.starts_with("switchyard_build_info{"))
        .expect("build info");
    assert!(info.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))));
    assert!(info.contains("commit=\"") && info.ends_with(" 1"), "{info}");
    gw.stop().await;
}

/// The Python receiver, killed when dropped.
struct Receiver {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    /// `None` when python3 or the opentelemetry-proto package is missing (outside CI).
    fn start() -> Option<Receiver> {
        let probe = Command::new("python3")
            .args([
                "-c",
                "import opentelemetry.proto.collector.trace.v1.trace_service_pb2",
            ])
            .output();
        if !probe.is_ok_and(|o| o.status.success()) {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI needs the OTLP schema: pip install opentelemetry-proto"
            );
            eprintln!("note: opentelemetry-proto is not installed; OTLP export checks skipped");
            return None;
        }
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/otlp_receiver.py");
        let out = temp_dir("otlp").join("spans.jsonl");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(&out)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the receiver's port");
        Some(Receiver { child, port, out })
    }

    fn spans(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let spans: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if let Some(error) = spans.iter().find(|s| s.get("error").is_some()) {
            panic!("the receiver rejected an export: {error}");
        }
        spans
    }

    /// Waits up to 10 s for `n` spans.
    async fn wait_for(&self, n: usize) -> Vec<Value> {
        for _ in 0..200 {
            let spans = self.spans();
            if spans.len() >= n {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{n} spans expected, got {:?}", self.spans());
    }
}

fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

// Long: one scenario told in order; each step starts from the state the previous one left.
#[tokio::test(flavor = "multi_thread")]
async fn spans_reach_a_real_otlp_receiver_with_the_gen_ai_attributes() {
    let Some(receiver) = tokio::task::block_in_place(Receiver::start) else {
        return;
    };
    let (_sim, up) = sim(Profile {
        completion_tokens: 12,
        stream_chunks: 3,
        ..Profile::default()
    })
    .await;
    let extra = format!(
        "[telemetry]\notlp_endpoint = \"http://127.0.0.1:{}/v1/traces\"\nbatch_delay = \"50ms\"\nservice_name = \"edge-gateway\"\n",
        receiver.port
    );
    let gw = gateway(&one_route("otel", &format!("http://{up}"), &extra)).await;
    let began = unix_nanos();

    // Not sampled by the client: never exported. Sent first, so its absence below is proof.
    let unsampled_trace = "0af7651916cd43dd8448eb211c80319c";
    let unsampled = format!("00-{unsampled_trace}-b7ad6b7169203331-00");
    let answer = post_json(
        gw.traffic,
        "/v1/chat/completions",
        &[("traceparent", &unsampled)],
        chat("gpt-4o", false),
    )
    .await;
    assert_eq!(answer.status, 200);

    let client = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let answer = post_json(
        gw.traffic,
        "/v1/chat/completions",
        &[("traceparent", &client), ("x-request-id", "otel-1")],
        chat("gpt-4o", false),
    )
    .await;
    assert_eq!(answer.status, 200);
    let stats = get(up, "/sim/stats").await.json();
    let upstream_saw = stats["last_headers"]["traceparent"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let streamed = post_json(
        gw.traffic,
        "/v1/chat/completions",
        &[],
        chat("gpt-4o", true),
    )
    .await;
    assert_eq!(streamed.status, 200);
    let claude = post_json(
        gw.traffic,
        "/v1/messages",
        &[],
        messages("claude-sonnet-4-6", false),
    )
    .await;
    assert_eq!(claude.status, 200);

    let spans = receiver.wait_for(3).await;
    assert_eq!(spans.len(), 3, "{spans:#?}");
    assert!(spans.iter().all(|s| s["trace_id"] != unsampled_trace));

    let span = &spans[0];
    let attrs = &span["attributes"];
    let body = answer.json();
    assert_eq!(span["trace_id"], CLIENT_TRACE);
    assert_eq!(span["parent_span_id"], CLIENT_SPAN);
    assert_eq!(
        upstream_saw,
        format!("00-{CLIENT_TRACE}-{}-01", span["span_id"].as_str().unwrap()),
        "the upstream's parent is the exported span"
    );
    assert_eq!(
        (
            span["trace_id_bytes"].as_u64(),
            span["span_id_bytes"].as_u64()
        ),
        (Some(16), Some(8))
    );
    assert_eq!(span["name"], "chat gpt-4o");
    assert_eq!(span["kind"], 3, "SPAN_KIND_CLIENT");
    assert_eq!(span["flags"], 0x301, "sampled, remote parent");
    assert_eq!(span["status_code"], 0);
    assert_eq!(span["resource"]["service.name"], "edge-gateway");
    assert_eq!(span["scope"], "switchyard");
    let (start, end) = (
        span["start"].as_u64().unwrap(),
        span["end"].as_u64().unwrap(),
    );
    assert!(
        began <= end && start <= end && end <= unix_nanos(),
        "{start} {end}"
    );
    assert_eq!(attrs["gen_ai.operation.name"], "chat");
    assert_eq!(attrs["gen_ai.system"], "openai");
    assert_eq!(attrs["gen_ai.request.model"], "gpt-4o");
    assert_eq!(attrs["gen_ai.response.model"], body["model"]);
    assert_eq!(
        attrs["gen_ai.usage.input_tokens"]["int"],
        body["usage"]["prompt_tokens"]
    );
    assert_eq!(
        attrs["gen_ai.usage.output_tokens"]["int"],
        body["usage"]["completion_tokens"]
    );
    assert_eq!(
        attrs["gen_ai.response.finish_reasons"],
        json!([body["choices"][0]["finish_reason"]])
    );
    assert_eq!(attrs["http.response.status_code"]["int"], 200);
    assert_eq!(attrs["switchyard.route"], "otel");
    assert_eq!(attrs["switchyard.upstream"], "up");
    assert_eq!(attrs["switchyard.variant"], "none");
    assert_eq!(attrs["switchyard.request_id"], "otel-1");
    assert!(attrs["switchyard.context_fill"].as_f64().unwrap() > 0.0);

    let root = &spans[1];
    assert_eq!(
        root["parent_span_id"], "",
        "a new trace: the gateway's span is its root"
    );
    assert_eq!(root["flags"], 0x101);
    assert_eq!(root["attributes"]["gen_ai.usage.output_tokens"]["int"], 12);
    assert!(root["attributes"]["switchyard.time_to_first_token"]
        .as_f64()
        .is_some());

    let anthropic = &spans[2]["attributes"];
    assert_eq!(anthropic["gen_ai.system"], "anthropic");
    assert_eq!(anthropic["gen_ai.request.model"], "claude-sonnet-4-6");
    assert_eq!(
        anthropic["gen_ai.response.finish_reasons"],
        json!([claude.json()["stop_reason"]])
    );
    assert_eq!(
        anthropic["gen_ai.usage.input_tokens"]["int"],
        claude.json()["usage"]["input_tokens"]
    );
    gw.stop().await;
}

/// A collector that takes connections and requests and never answers.
async fn hung_collector() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut sink = vec![0u8; 64 * 1024];
                while tokio::io::AsyncReadExt::read(&mut socket, &mut sink)
                    .await
                    .is_ok_and(|n| n > 0)
                {}
            });
        }
    });
    addr
}

/// Sends `n` chat requests, four at a time; returns the slowest and the total time.
async fn burst(gw: &switchyard::Running, n: usize) -> (Duration, Duration) {
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let traffic = gw.traffic;
    for _ in 0..n / 4 {
        let rounds = (0..4).map(|_| async move {
            let t = Instant::now();
            // A model without prices: this burst adds to no other test's cost figures.
            let answer = post_json(
                traffic,
                "/v1/chat/completions",
                &[],
                chat("unpriced-model", false),
            )
            .await;
            assert_eq!(answer.status, 200);
            t.elapsed()
        });
        for took in all(rounds).await {
            slowest = slowest.max(took);
        }
    }
    (slowest, started.elapsed())
}

async fn all<F: std::future::Future<Output = Duration> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<Duration> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_or_dead_collector_never_slows_traffic() {
    let (_sim, up) = sim(Profile::default()).await;
    const N: usize = 120;
    let plain = gateway(&one_route("no-otel", &format!("http://{up}"), "")).await;
    let (_, baseline) = burst(&plain, N).await;
    plain.stop().await;

    let hung = hung_collector().await;
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    for (route, collector, timeout) in [("otel-hung", hung, "30s"), ("otel-dead", dead, "1s")] {
        let extra = format!(
            "[telemetry]\notlp_endpoint = \"http://{collector}/v1/traces\"\n\
             batch_size = 2\nbatch_delay = \"10ms\"\nqueue_size = 4\nexport_timeout = \"{timeout}\"\n"
        );
        let gw = gateway(&one_route(route, &format!("http://{up}"), &extra)).await;
        let (slowest, total) = burst(&gw, N).await;
        assert!(
            slowest < Duration::from_secs(2),
            "{route}: a request took {slowest:?}"
        );
        assert!(
            total < baseline * 3 + Duration::from_secs(2),
            "{route}: {N} requests took {total:?}, {baseline:?} without telemetry"
        );
        let reason = if route == "otel-hung" {
            "queue_full"
        } else {
            "export_failed"
        };
        eventually_metrics(&gw, "spans dropped", |t| {
            metric(
                t,
                "switchyard_telemetry_spans_dropped_total",
                &[("reason", reason)],
            ) > 0.0
        })
        .await;
        gw.stop().await;
    }
}
