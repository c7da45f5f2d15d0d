use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::rescue::Answer;
use crate::stage::testing::{answer, boards, chat, flow, oneshot, table, table_to};

/// An upstream on 127.0.0.1 that reads one request head, answers `ok` and hands the head
/// back.
async fn upstream() -> (String, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let served = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request head ended early");
            head.extend_from_slice(&buf[..n]);
        }
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        stream.write_all(answer).await.unwrap();
        String::from_utf8_lossy(&head).to_lowercase()
    });
    (url, served)
}

#[tokio::test]
async fn the_request_goes_upstream_with_the_gateways_headers() {
    let (url, served) = upstream().await;
    let (table, boards) = (table_to(&url, ""), boards());
    let mut req = chat("gpt-4o");
    req.headers_mut()
        .insert(http::header::CONNECTION, "x-secret".parse().unwrap());
    req.headers_mut().insert("x-secret", "1".parse().unwrap());
    let flow = flow(&table, &boards, req);
    let id = flow.edge.request_id.1.to_str().unwrap().to_lowercase();
    let forwarded = oneshot(&mut Forward, flow)
        .await
        .unwrap_or_else(|_| panic!("the upstream answered"));
    assert_eq!(forwarded.response.status(), http::StatusCode::OK);
    let head = served.await.unwrap();
    assert!(
        head.starts_with("post /v1/chat/completions http/1.1"),
        "{head}"
    );
    assert!(head.contains("x-forwarded-for: 127.0.0.1"), "{head}");
    assert!(head.contains("x-forwarded-proto: http"), "{head}");
    assert!(head.contains(&format!("x-request-id: {id}")), "{head}");
    assert!(
        !head.contains("x-secret"),
        "a Connection-named header went upstream: {head}"
    );
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_failure() {
    let (table, boards) = (table(""), boards());
    let result = oneshot(&mut Forward, flow(&table, &boards, chat("gpt-4o"))).await;
    assert!(matches!(
        answer(result),
        Answer::Refuse(Refusal::UpstreamConnect)
    ));
}

#[tokio::test(start_paused = true)]
async fn an_upstream_silent_past_the_upstream_timeout_is_a_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let silent = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(stream);
    });
    let (table, boards) = (table_to(&url, ""), boards());
    let started = tokio::time::Instant::now();
    let result = oneshot(&mut Forward, flow(&table, &boards, chat("gpt-4o"))).await;
    assert!(matches!(
        answer(result),
        Answer::Refuse(Refusal::UpstreamTimeout)
    ));
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    silent.abort();
}

/// The request target in origin form, as the legacy client made it from the absolute URI:
/// its path and query, `/` where it had none.
fn legacy_origin_form(endpoint: &crate::upstream::Endpoint, pq: Option<&str>) -> Option<String> {
    let pq = pq.map(|p| http::uri::PathAndQuery::try_from(p).unwrap());
    let uri = forward::upstream_uri(endpoint, pq.as_ref()).ok()?;
    Some(
        uri.path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str)
            .to_string(),
    )
}

#[test]
fn the_origin_form_target_matches_the_absolute_uri_the_legacy_client_cut() {
    let bases = ["", "/v1", "/openai/deployments/x", "/a%20b"];
    let paths = [
        None,
        Some("/"),
        Some("*"),
        Some("/v1/chat/completions"),
        Some("/v1/chat/completions?api-version=2024-06-01&x=%2F"),
        Some("/?"),
        Some("/a//b/../c"),
        Some("/%E2%82%AC?q=%20"),
        Some("/path;params?query#"),
    ];
    for base in bases {
        let endpoint = crate::upstream::Endpoint {
            scheme: http::uri::Scheme::HTTP,
            authority: http::uri::Authority::from_static("127.0.0.1:9"),
            base_path: base.to_string(),
            label: std::sync::Arc::from("x"),
        };
        for pq in paths {
            let parsed = pq.map(|p| http::uri::PathAndQuery::try_from(p).unwrap());
            let new = forward::upstream_target(&endpoint, parsed.as_ref())
                .ok()
                .map(|uri| uri.to_string());
            assert_eq!(
                new,
                legacy_origin_form(&endpoint, pq),
                "base {base:?}, path {pq:?}"
            );
        }
    }
}

#[test]
fn an_address_is_written_as_its_display_writes_it() {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let mut addresses: Vec<IpAddr> = Vec::new();
    for octet in 0..=255u8 {
        for at in 0..4 {
            let mut octets = [1, 20, 255, 0];
            octets[at] = octet;
            addresses.push(IpAddr::V4(Ipv4Addr::from(octets)));
        }
    }
    addresses.extend([
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V4(Ipv4Addr::BROADCAST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped()),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
    ]);
    for ip in addresses {
        assert_eq!(
            crate::headers::forwarded_for(ip).unwrap(),
            ip.to_string().as_str()
        );
    }
}
