//! The abuse corpus over HTTP/1: request framing, Host and authority, forwarded addresses,
//! upstreams that send garbage, slow peers. Each case names the RFC answer and checks that
//! the upstream (a strict recorder) saw nothing malformed and nothing twice.

use std::time::Duration;

use crate::common::*;
use crate::wire::*;

/// The request a smuggler hides in a body the gateway might frame differently.
const SMUGGLED: &str = "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

async fn opaque_gateway() -> (switchyard::Running, Recorded) {
    let (recorded, up) = recorder().await;
    let gw = gateway(&one_route(
        "abuse",
        &format!("http://{up}"),
        r#"dialect = "opaque""#,
    ))
    .await;
    (gw, recorded)
}

fn status_of(wire: &str) -> Option<u16> {
    wire.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// What one framing case must get: a 400 and nothing forwarded; exactly one well-formed
/// request forwarded and answered; or (where hyper's reading is the safe one) any single
/// answer with at most the first request forwarded.
enum Want {
    BadRequest,
    OneForwarded,
    NoSmuggling,
}

// Long: a list of cases, each checked the same way.
fn framing_cases() -> Vec<(&'static str, String, Want)> {
    let post = "POST /first HTTP/1.1\r\nHost: x\r\n";
    vec![
        (
            "TE: chunked, identity (chunked not final, RFC 9112 §6.3)",
            format!("{post}Transfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n{SMUGGLED}"),
            Want::BadRequest,
        ),
        (
            "TE: xchunked (unknown coding)",
            format!("{post}Transfer-Encoding: xchunked\r\n\r\n{SMUGGLED}"),
            Want::BadRequest,
        ),
        (
            "space before the colon (RFC 9112 §5.1)",
            format!("{post}Transfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n{SMUGGLED}"),
            Want::BadRequest,
        ),
        (
            "two TE lines, identity last",
            format!("{post}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n{SMUGGLED}"),
            Want::BadRequest,
        ),
        (
            "two TE lines, chunked last, with Content-Length",
            format!("{post}Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{SMUGGLED}"),
            Want::NoSmuggling,
        ),
        (
            "bare LF line endings",
            "POST /first HTTP/1.1\nHost: x\nContent-Length: 5\nConnection: close\n\nhello".to_owned(),
            Want::OneForwarded,
        ),
        (
            "bare LF inside the TE value",
            format!("{post}Transfer-Encoding: chunked\nX: y\r\nContent-Length: 4\r\n\r\n{SMUGGLED}"),
            Want::NoSmuggling,
        ),
        (
            "two different Content-Length lines (RFC 9112 §6.3)",
            format!("{post}Content-Length: 5\r\nContent-Length: 40\r\n\r\nhello{SMUGGLED}"),
            Want::BadRequest,
        ),
        (
            "Content-Length list with different values",
            format!("{post}Content-Length: 5, 40\r\n\r\nhello{SMUGGLED}"),
            Want::BadRequest,
        ),
        (
            "Content-Length with a sign",
            format!("{post}Content-Length: +5\r\n\r\nhello"),
            Want::BadRequest,
        ),
        (
            "negative Content-Length",
            format!("{post}Content-Length: -1\r\n\r\nhello"),
            Want::BadRequest,
        ),
        (
            "hexadecimal Content-Length",
            format!("{post}Content-Length: 0x5\r\n\r\nhello"),
            Want::BadRequest,
        ),
        (
            "Content-Length beyond u64",
            format!("{post}Content-Length: 99999999999999999999999\r\n\r\nhello"),
            Want::BadRequest,
        ),
    ]
}

#[tokio::test]
async fn request_framing_obfuscations_are_refused_or_read_one_way() {
    let (gw, recorded) = opaque_gateway().await;
    for (case, request, want) in framing_cases() {
        let before = recorded.count();
        let (wire, closed) = exchange(gw.traffic, request.as_bytes(), Duration::from_secs(3)).await;
        let answers = wire.matches("HTTP/1.1 ").count();
        let seen = &recorded.requests()[before..];
        assert!(
            seen.iter().all(|r| find(r, b"/smuggled").is_none()),
            "{case}: a smuggled request reached the upstream: {}",
            recorded.heads()
        );
        match want {
            Want::BadRequest => {
                assert_eq!(status_of(&wire), Some(400), "{case}: {wire}");
                assert!(closed, "{case}: the connection stays open after a 400");
                assert!(seen.is_empty(), "{case}: forwarded: {}", recorded.heads());
            }
            Want::OneForwarded => {
                assert_eq!(status_of(&wire), Some(200), "{case}: {wire}");
                assert_eq!(seen.len(), 1, "{case}: {}", recorded.heads());
                assert!(
                    seen[0].ends_with(b"\r\n\r\nhello"),
                    "{case}: {}",
                    recorded.heads()
                );
            }
            Want::NoSmuggling => {
                assert!(answers <= 1, "{case}: {answers} answers: {wire}");
                assert!(seen.len() <= 1, "{case}: {}", recorded.heads());
            }
        }
    }
    gw.stop().await;
}

/// Chunk sizes past u64 and chunk extensions past hyper's budget end the body with an error:
/// on an inspected route nothing is forwarded; on an opaque one the upstream never sees a
/// complete request.
#[tokio::test]
async fn chunk_size_overflow_and_huge_extensions_never_forward_a_complete_request() {
    let (recorded, up) = recorder().await;
    let gw = gateway(&one_route("chunks", &format!("http://{up}"), "")).await;
    let overflow = "ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n".to_owned();
    let extension = format!("5;{}\r\nhello\r\n0\r\n\r\n", "x".repeat(100_000));
    for (case, body) in [("overflow", overflow), ("extension", extension)] {
        for path in ["/v1/chat/completions", "/opaque"] {
            let request = format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
            );
            let (wire, closed) =
                exchange(gw.traffic, request.as_bytes(), Duration::from_secs(3)).await;
            if path != "/opaque" {
                assert_eq!(status_of(&wire), Some(400), "{case} {path}: {wire}");
            }
            assert!(closed, "{case} {path}: connection left open");
        }
    }
    assert_eq!(
        recorded.count(),
        0,
        "a complete request reached the upstream: {}",
        recorded.heads()
    );
    gw.stop().await;
}

/// Absolute-form targets name another host: the gateway is no open proxy, the request goes
/// to the configured upstream with an origin-form target (RFC 9112 §3.2.2).
#[tokio::test]
async fn an_absolute_form_target_for_another_host_goes_only_to_the_configured_upstream() {
    let (gw, recorded) = opaque_gateway().await;
    let request = "GET http://evil.example:81/steal?x=1 HTTP/1.1\r\nHost: x\r\n\r\n";
    let (wire, _) = exchange(gw.traffic, request.as_bytes(), Duration::from_secs(1)).await;
    assert_eq!(status_of(&wire), Some(200), "{wire}");
    let seen = recorded.heads();
    assert_eq!(recorded.count(), 1, "{seen}");
    assert!(seen.starts_with("GET /steal?x=1 HTTP/1.1\r\n"), "{seen}");
    assert!(
        !seen.to_ascii_lowercase().contains("\r\nhost: evil"),
        "{seen}"
    );
    gw.stop().await;
}

/// Two Host lines, or a Host list, is a 400 (RFC 9112 §3.2).
#[tokio::test]
async fn two_host_headers_are_a_400() {
    let (gw, recorded) = opaque_gateway().await;
    for (case, request) in [
        (
            "two Host lines",
            "GET /a HTTP/1.1\r\nHost: x\r\nHost: evil.example\r\n\r\n",
        ),
        (
            "Host list",
            "GET /a HTTP/1.1\r\nHost: x, evil.example\r\n\r\n",
        ),
    ] {
        let (wire, _) = exchange(gw.traffic, request.as_bytes(), Duration::from_secs(1)).await;
        assert_eq!(status_of(&wire), Some(400), "{case}: {wire}");
    }
    assert_eq!(recorded.count(), 0, "{}", recorded.heads());
    gw.stop().await;
}

/// CONNECT asks for a tunnel the gateway does not offer: 405, nothing dialled.
#[tokio::test]
async fn connect_is_a_405() {
    let (gw, recorded) = opaque_gateway().await;
    let request = "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n";
    let (wire, _) = exchange(gw.traffic, request.as_bytes(), Duration::from_secs(1)).await;
    assert_eq!(status_of(&wire), Some(405), "{wire}");
    assert_eq!(recorded.count(), 0, "{}", recorded.heads());
    gw.stop().await;
}

/// Four requests as `client_ip` users, each with its own X-Forwarded-For; how many got 429.
async fn limited_with_forwarded_for(gw: &switchyard::Running, chains: [&str; 4]) -> usize {
    let mut limited = 0;
    for chain in chains {
        let request = format!("GET /a HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {chain}\r\n\r\n");
        let (wire, _) = exchange(gw.traffic, request.as_bytes(), Duration::from_millis(300)).await;
        match status_of(&wire) {
            Some(429) => limited += 1,
            Some(200) => {}
            other => panic!("{chain}: {other:?}: {wire}"),
        }
    }
    limited
}

/// The client address that keys `client_ip` users and rate limits comes from the TCP peer
/// unless `trusted_hops` says how many proxies in front append to X-Forwarded-For.
#[tokio::test]
async fn forwarded_for_cannot_spoof_the_client_address_beyond_trusted_hops() {
    let (recorded, up) = recorder().await;
    let route = one_route(
        "xff",
        &format!("http://{up}"),
        "dialect = \"opaque\"\nuser_key = [\"client_ip\"]\n[routes.limits]\nuser_requests_per_second = 0.01\n",
    );
    let spoofed = ["6.6.6.1", "6.6.6.2", "6.6.6.3", "6.6.6.4"];
    let gw = gateway(&route).await;
    assert_eq!(
        limited_with_forwarded_for(&gw, spoofed).await,
        3,
        "trusted_hops = 0: every request is the TCP peer's"
    );
    gw.stop().await;

    let gw = gateway(&format!("[server]\ntrusted_hops = 1\n{route}")).await;
    let behind_one_proxy = [
        "6.6.6.1, 10.0.0.7",
        "6.6.6.2, 10.0.0.7",
        "garbage, 10.0.0.7",
        "10.0.0.7",
    ];
    assert_eq!(
        limited_with_forwarded_for(&gw, behind_one_proxy).await,
        3,
        "trusted_hops = 1: the address the proxy appended, whatever the client wrote before it"
    );
    let distinct = ["10.0.0.1", "1.1.1.1, 10.0.0.2", "10.0.0.3", "10.0.0.4"];
    assert_eq!(limited_with_forwarded_for(&gw, distinct).await, 0);
    assert_eq!(
        limited_with_forwarded_for(&gw, ["not-an-ip", "", "::zz", "10.0.0.7, ,"]).await,
        3,
        "an unusable hop falls back to the TCP peer"
    );
    assert!(recorded
        .heads()
        .contains("x-forwarded-for: 6.6.6.1, 127.0.0.1\r\n"));
    gw.stop().await;
}
