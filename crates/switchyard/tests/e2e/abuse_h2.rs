//! The abuse corpus over HTTP/2, in raw frames: what must not survive the downgrade to the
//! HTTP/1 upstream, and floods that must leave a healthy client served.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::common::*;
use crate::wire::*;

const PROTOCOL_ERROR: u32 = 0x1;

/// HPACK's static-table encoding of `:status 400` (RFC 7541 Appendix A, index 12).
const STATUS_400: u8 = 0x8c;

/// The answer on `stream`: `Ok(first header byte)` for a response, `Err(code)` for a reset.
fn answer_on(frames: &[Frame], stream: u32) -> Option<Result<u8, u32>> {
    frames
        .iter()
        .find_map(|(kind, _, id, payload)| match *kind {
            h2::HEADERS if *id == stream => payload.first().copied().map(Ok),
            _ => reset_or_goaway(
                std::slice::from_ref(&(*kind, 0, *id, payload.clone())),
                stream,
            )
            .map(|(_, code)| Err(code)),
        })
}

/// Sends one request's frames on a fresh connection; the answer on stream 1.
async fn one_stream(gw: &switchyard::Running, frames: &[Vec<u8>]) -> Option<Result<u8, u32>> {
    let mut conn = h2_connect(gw.traffic).await;
    for f in frames {
        if conn.write_all(f).await.is_err() {
            break;
        }
    }
    let (frames, _) = read_frames(&mut conn, Duration::from_secs(3), |f| {
        answer_on(f, 1).is_some()
    })
    .await;
    answer_on(&frames, 1)
}

/// Malformed per RFC 9113 §8.1.1 / §8.2: the stream is reset or answered 400.
fn refused(answer: Option<Result<u8, u32>>) -> bool {
    matches!(answer, Some(Err(PROTOCOL_ERROR)) | Some(Ok(STATUS_400)))
        || matches!(answer, Some(Err(code)) if code != 0)
}

#[tokio::test]
async fn content_length_mismatches_over_h2_never_reach_the_upstream_complete() {
    let (recorded, up) = recorder().await;
    let gw = gateway(&one_route("h2cl", &format!("http://{up}"), "")).await;
    for path in [&b"/v1/chat/completions"[..], b"/opaque"] {
        for (declared, sent) in [(&b"10"[..], 20usize), (b"20", 10)] {
            let headers = request_block(path, &[(b"content-length", declared)]);
            let answer = one_stream(
                &gw,
                &[
                    frame(h2::HEADERS, h2::END_HEADERS, 1, &headers),
                    frame(h2::DATA, h2::END_STREAM, 1, &vec![b'x'; sent]),
                ],
            )
            .await;
            let case = format!(
                "{} declared {} sent {sent}",
                String::from_utf8_lossy(path),
                String::from_utf8_lossy(declared)
            );
            assert!(refused(answer), "{case}: {answer:?}");
        }
    }
    assert_eq!(recorded.count(), 0, "{}", recorded.heads());
    gw.stop().await;
}

#[tokio::test]
async fn crlf_nul_and_connection_headers_over_h2_are_malformed() {
    let (recorded, up) = recorder().await;
    let gw = gateway(&one_route(
        "h2hdr",
        &format!("http://{up}"),
        r#"dialect = "opaque""#,
    ))
    .await;
    let bad_values: [(&[u8], &[u8]); 9] = [
        (b"x-a", b"v\r\nx-injected: 1"),
        (b"x-a", b"v\nx-injected: 1"),
        (b"x-a", b"v\0x"),
        (b"x-injected\r\nx", b"1"),
        (b"connection", b"keep-alive"),
        (b"transfer-encoding", b"chunked"),
        (b"te", b"gzip"),
        (b"upgrade", b"websocket"),
        (b"keep-alive", b"timeout=5"),
    ];
    for (name, value) in bad_values {
        let headers = request_block(b"/a", &[(name, value)]);
        let answer = one_stream(
            &gw,
            &[frame(
                h2::HEADERS,
                h2::END_HEADERS | h2::END_STREAM,
                1,
                &headers,
            )],
        )
        .await;
        let case = String::from_utf8_lossy(&[name, b": ", value].concat()).into_owned();
        assert!(refused(answer), "{case:?}: {answer:?}");
    }
    for path in [&b"/a\r\nx-injected: 1"[..], b"/a b", b"/a\0", b""] {
        let headers = request_block(path, &[]);
        let answer = one_stream(
            &gw,
            &[frame(
                h2::HEADERS,
                h2::END_HEADERS | h2::END_STREAM,
                1,
                &headers,
            )],
        )
        .await;
        assert!(refused(answer), ":path {path:?}: {answer:?}");
    }
    assert_eq!(recorded.count(), 0, "{}", recorded.heads());
    gw.stop().await;
}

/// A Host that names another server than `:authority` is malformed (RFC 9113 §8.3.1).
#[tokio::test]
async fn an_authority_that_host_contradicts_is_a_400() {
    let (recorded, up) = recorder().await;
    let gw = gateway(&one_route(
        "h2host",
        &format!("http://{up}"),
        r#"dialect = "opaque""#,
    ))
    .await;
    let headers = request_block(b"/a", &[(b"host", b"evil.example")]);
    let answer = one_stream(
        &gw,
        &[frame(
            h2::HEADERS,
            h2::END_HEADERS | h2::END_STREAM,
            1,
            &headers,
        )],
    )
    .await;
    assert_eq!(answer, Some(Ok(STATUS_400)));
    let same = request_block(b"/a", &[(b"host", b"GW.test")]);
    let answer = one_stream(
        &gw,
        &[frame(
            h2::HEADERS,
            h2::END_HEADERS | h2::END_STREAM,
            1,
            &same,
        )],
    )
    .await;
    assert_eq!(answer, Some(Ok(0x88)), "200 when they agree");
    assert_eq!(recorded.count(), 1, "{}", recorded.heads());
    gw.stop().await;
}
