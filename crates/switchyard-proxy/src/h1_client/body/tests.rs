use std::time::Duration;

use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// A connected pair on 127.0.0.1: the gateway's end and the upstream's.
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (ours, theirs) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (ours.unwrap(), theirs.unwrap().0)
}

/// The frames a body yields when the upstream writes `parts` one write at a time, and
/// whether the connection went back to the idle list.
async fn read(
    framing: Framing,
    parts: &[&[u8]],
    close: bool,
) -> (Vec<Bytes>, Result<(), String>, bool) {
    let (ours, mut theirs) = pair().await;
    let idle = Arc::new(Idle::default());
    let mut body = OwnBody::new(ours, BytesMut::new(), framing, Some(idle.clone()));
    let parts: Vec<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
    let writer = tokio::spawn(async move {
        for part in parts {
            theirs.write_all(&part).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if close {
            drop(theirs);
        } else {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let mut frames = Vec::new();
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(2), body.frame()).await {
            Err(_) => break Err("hung".to_owned()),
            Ok(None) => break Ok(()),
            Ok(Some(Ok(frame))) => frames.push(frame.into_data().unwrap()),
            Ok(Some(Err(error))) => break Err(error.to_string()),
        }
    };
    let pooled = idle.conns.lock().unwrap().len() == 1;
    writer.abort();
    (frames, ended, pooled)
}

#[tokio::test]
async fn a_length_body_is_read_to_its_end_and_the_connection_pooled() {
    let (frames, ended, pooled) = read(Framing::Length(11), &[b"hello", b" world"], false).await;
    assert_eq!(ended, Ok(()));
    assert_eq!(frames.concat(), b"hello world");
    assert!(pooled);
}

#[tokio::test]
async fn chunks_come_out_one_frame_each_whatever_the_reads() {
    let wire: &[&[u8]] = &[
        b"5\r\nhel",
        b"lo\r\n6;ext=1\r\n worl",
        b"d\r\n0\r\nX-Trailer: 1\r\n\r\n",
    ];
    let (frames, ended, pooled) = read(Framing::Chunked, wire, false).await;
    assert_eq!(ended, Ok(()));
    assert_eq!(frames.concat(), b"hello world");
    assert!(frames.len() >= 3, "{frames:?}");
    assert!(
        pooled,
        "a cleanly ended chunked body returns its connection"
    );
}

#[tokio::test]
async fn malformed_chunks_fail_the_body_and_close_the_connection() {
    for wire in [
        &b"zz\r\nhello\r\n0\r\n\r\n"[..],
        b"ffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        b"3\r\nhello\r\n0\r\n\r\n",
    ] {
        let (_, ended, pooled) = read(Framing::Chunked, &[wire], false).await;
        assert!(ended.is_err(), "{:?}", String::from_utf8_lossy(wire));
        assert!(!pooled);
    }
    let long_extension = format!("5;{}\r\nhello\r\n0\r\n\r\n", "x".repeat(10_000));
    let (_, ended, pooled) = read(Framing::Chunked, &[long_extension.as_bytes()], false).await;
    assert!(ended.is_err());
    assert!(!pooled);
}

#[tokio::test]
async fn a_body_cut_short_is_an_error_and_one_until_close_ends_at_close() {
    let (frames, ended, pooled) = read(Framing::Length(20), &[b"only ten.."], true).await;
    assert_eq!(frames.concat(), b"only ten..");
    assert!(ended.unwrap_err().contains("mid-body"));
    assert!(!pooled);
    let (frames, ended, pooled) = read(Framing::UntilClose, &[b"all ", b"of it"], true).await;
    assert_eq!(ended, Ok(()));
    assert_eq!(frames.concat(), b"all of it");
    assert!(!pooled, "a body framed by the close cannot be followed");
}

#[tokio::test]
async fn bytes_past_the_body_keep_the_connection_out_of_the_pool() {
    let (frames, ended, pooled) = read(Framing::Length(5), &[b"helloEXTRA"], false).await;
    assert_eq!(ended, Ok(()));
    assert_eq!(frames.concat(), b"hello");
    assert!(!pooled);
}
