//! The drop-in proxy: what is forwarded, what is added, what is answered locally.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use switchyard_sim::Profile;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

#[tokio::test]
async fn forwards_method_path_query_headers_and_body_faithfully() {
    let (sim, up) = sim(Profile::default()).await;
    let gw = gateway(&one_route(
        "faithful",
        &format!("http://{up}"),
        r#"dialect = "opaque""#,
    ))
    .await;
    let body = Bytes::from_static(b"\x00\x01binary body \xff with bytes");
    let req = Request::put(format!("http://{}/some/path%20x?a=1&b=two", gw.traffic))
        .header("x-custom", "kept")
        .header("x-custom", "twice")
        .header("connection", "x-hop-secret")
        .header("x-hop-secret", "must not pass")
        .header("x-forwarded-for", "10.1.2.3")
        .body(Full::new(body.clone()))
        .unwrap();
    let answer = send(req).await;
    assert_eq!(answer.status, 200);
    let echo = answer.json();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["path"], "/some/path%20x");
    assert_eq!(echo["query"], "a=1&b=two");
    assert_eq!(echo["body_bytes"], body.len());
    assert_eq!(
        echo["body_sha"],
        format!("{:016x}", switchyard_sim::fnv1a64(&body))
    );
    let headers = &echo["headers"];
    assert_eq!(headers["x-custom"], serde_json::json!(["kept", "twice"]));
    assert!(
        headers.get("x-hop-secret").is_none(),
        "a header named by Connection was forwarded"
    );
    assert!(headers.get("connection").is_none());
    assert_eq!(
        headers["x-forwarded-for"],
        serde_json::json!(["10.1.2.3, 127.0.0.1"])
    );
    assert_eq!(headers["x-forwarded-proto"], serde_json::json!(["http"]));
    assert_eq!(headers["host"], serde_json::json!([up.to_string()]));
    assert_eq!(
        headers["x-forwarded-host"],
        serde_json::json!([gw.traffic.to_string()])
    );
    let id = answer.headers["x-request-id"].to_str().unwrap();
    assert_eq!(
        id.len(),
        32,
        "a request id is made when the client sent none"
    );
    assert_eq!(headers["x-request-id"], serde_json::json!([id]));
    assert_eq!(answer.headers["x-switchyard-route"], "faithful");
    assert_eq!(answer.headers["x-switchyard-upstream"], "up");
    assert_eq!(sim.requests(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn a_client_request_id_is_kept_and_routing_headers_can_be_turned_off() {
    let (_sim, up) = sim(Profile::default()).await;
    let config = format!(
        "[server]\nrouting_headers = false\n{}",
        one_route("quiet", &format!("http://{up}"), "")
    );
    let gw = gateway(&config).await;
    let answer = post_json(
        gw.traffic,
        "/v1/chat/completions",
        &[("x-request-id", "req-abc-123")],
        chat("gpt-4o", false),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["x-request-id"], "req-abc-123");
    assert!(answer.headers.get("x-switchyard-route").is_none());
    assert!(answer.headers.get("x-switchyard-upstream").is_none());
    gw.stop().await;
}

/// An upstream that answers every request with hop-by-hop headers a proxy must drop.
async fn hop_by_hop_upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = stream.read(&mut buf).await;
                let response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\
                    Connection: x-upstream-secret\r\nX-Upstream-Secret: 1\r\nKeep-Alive: timeout=5\r\n\
                    X-End-To-End: kept\r\n\r\nok";
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_removed() {
    let up = hop_by_hop_upstream().await;
    let gw = gateway(&one_route(
        "hops",
        &format!("http://{up}"),
        r#"dialect = "opaque""#,
    ))
    .await;
    let answer = get(gw.traffic, "/anything").await;
    assert_eq!(answer.status, 200);
    assert_eq!(&answer.body[..], b"ok");
    assert_eq!(answer.headers["x-end-to-end"], "kept");
    assert!(answer.headers.get("x-upstream-secret").is_none());
    assert!(answer.headers.get("keep-alive").is_none());
    gw.stop().await;
}

#[tokio::test]
async fn health_ready_and_the_reserved_prefix_are_answered_locally() {
    let (sim, up) = sim(Profile::default()).await;
    let gw = gateway(&one_route(
        "local",
        &format!("http://{up}"),
        r#"dialect = "opaque""#,
    ))
    .await;
    let health = get(gw.traffic, "/health").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    assert_eq!(get(gw.traffic, "/ready").await.status, 200);
    let reserved = get(gw.traffic, "/switchyard/v1/nothing-here").await;
    assert_eq!(reserved.status, 404);
    assert!(reserved.json()["error"]["message"].is_string());
    // Admin paths are not served on the traffic listener: they go to the upstream.
    let admin = get(gw.traffic, "/admin/status").await;
    assert_eq!(admin.json()["path"], "/admin/status");
    let metrics = get(gw.traffic, "/metrics").await;
    assert_eq!(metrics.json()["path"], "/metrics");
    assert_eq!(sim.requests(), 2);
    gw.stop().await;
}

#[tokio::test]
async fn no_matching_route_is_a_404_in_the_dialect_and_ready_needs_an_upstream() {
    // Port 9 on loopback: nothing listens there.
    let config = one_route(
        "narrow",
        "http://127.0.0.1:9",
        "match = { path_prefix = \"/v1/\", header = { \"x-agent\" = \"a\" } }",
    );
    let gw = gateway(&config).await;
    let answer = post_json(
        gw.traffic,
        "/v1/messages",
        &[],
        messages("claude-sonnet-4-6", false),
    )
    .await;
    assert_eq!(answer.status, 404);
    let json = answer.json();
    assert_eq!(json["type"], "error", "anthropic shape: {json}");
    assert_eq!(json["error"]["type"], "not_found_error");
    let answer = post_json(
        gw.traffic,
        "/v1/chat/completions",
        &[],
        chat("gpt-4o", false),
    )
    .await;
    assert_eq!(answer.status, 404);
    assert!(
        answer.json()["error"]["message"].is_string(),
        "openai shape"
    );
    let ready = get(gw.traffic, "/ready").await;
    assert_eq!(ready.status, 503);
    gw.stop().await;
}

#[tokio::test]
async fn http2_cleartext_clients_are_served() {
    let (_sim, up) = sim(Profile::default()).await;
    let gw = gateway(&one_route("h2", &format!("http://{up}"), "")).await;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = Request::post(format!("http://{}/v1/chat/completions", gw.traffic))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(chat("gpt-4o", true).to_string())))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), client.request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("data: [DONE]"));
    gw.stop().await;
}

// Long: one scenario told in order; each step starts from the state the previous one left.
#[tokio::test]
async fn a_tls_listener_serves_https_with_h2_and_http1() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};

    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let (_sim, up) = sim(Profile::default()).await;
    let tls = format!(
        "[server]\ntls = {{ cert = \"{}\", key = \"{}\" }}\n",
        fixtures.join("test-cert.pem").display(),
        fixtures.join("test-key.pem").display()
    );
    let gw = gateway(&format!(
        "{tls}{}",
        one_route("secure", &format!("http://{up}"), "")
    ))
    .await;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(fixtures.join("test-ca.pem")).unwrap())
        .unwrap();
    for alpn in [&b"h2"[..], &b"http/1.1"[..]] {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(gw.traffic).await.unwrap();
        let stream = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let io = hyper_util::rt::TokioIo::new(stream);
        let req = Request::post("/v1/chat/completions")
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(chat("gpt-4o", false).to_string())))
            .unwrap();
        let response = if alpn == b"h2" {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let mut req = req;
            *req.uri_mut() = "https://localhost/v1/chat/completions".parse().unwrap();
            sender.send_request(req).await.unwrap()
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            sender.send_request(req).await.unwrap()
        };
        assert_eq!(
            response.status(),
            200,
            "over {}",
            String::from_utf8_lossy(alpn)
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let echo_proto = serde_json::from_slice::<serde_json::Value>(&body).unwrap();
        assert!(echo_proto["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    }
    gw.stop().await;
}
